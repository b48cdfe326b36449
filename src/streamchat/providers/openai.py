"""Any OpenAI-compatible upstream, over our own small HTTP/1.1 client (http1.py).

Not httpx: at a thousand concurrent streams its connection-pool bookkeeping dominated. Not
aiohttp either, since issue 18: its reader's per-chunk work was a quarter of the server's
time at high token rates (http1.py says why).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from ..sse import EventTooLarge, SSEDecoder
from .base import (
    GenerateRequest,
    ProviderError,
    ProviderEvent,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .http1 import ConnectFailure, HTTPFailure, Response, Upstream
from .openai_wire import (
    chunk_events,
    chunks_events,
    error_detail,
    openai_error,
    request_body,
    retry_after_seconds,
)

_ERROR_BODY_LIMIT = 64 * 1024
# Refusals that are the client's own doing: the client gets them as they are (DESIGN §8).
# 401 and 403 are not among them: they are about our key, the operator's business.
_CLIENTS_OWN = frozenset({400, 404, 409, 413, 415, 422})


class OpenAIStream:
    """An accepted upstream response, read as SSE chunk by chunk."""

    def __init__(self, response: Response, url: str, streams: set[OpenAIStream]) -> None:
        self._response = response
        self._url = url
        self._clock = asyncio.get_running_loop().time
        self.last_read = self._clock()  # for the provider's silence check
        self._finished = False  # [DONE] came: the connection may be reused
        self._streams = streams
        streams.add(self)

    def __aiter__(self) -> AsyncIterator[list[ProviderEvent]]:
        return self._events()

    def time_out(self) -> None:
        """The upstream has been silent for too long: fail the read in progress."""
        self._response.fail(TimeoutError("upstream silent"))

    async def _events(self) -> AsyncIterator[list[ProviderEvent]]:
        """Per read from the connection, the events of every chunk it completed; the
        answer's first piece alone, written before the rest of its read is decoded."""
        decoder = SSEDecoder()
        clock = self._clock
        waiting = True  # for the answer's first piece
        try:
            async for read in self._response.reads():
                self.last_read = clock()
                datas = decoder.feed_data(read)
                if len(datas) == 1 and not waiting and datas[0] != b"[DONE]":
                    yield chunk_events(datas[0])  # a chunk a read: a model's own pace
                    continue
                for events in self._batches(datas, alone=waiting):
                    yield events
                    if waiting:  # let the response write it (the time to first token)
                        waiting = False
                        await asyncio.sleep(0)
                if self._finished:
                    return
        except TimeoutError as exc:
            raise UpstreamTimeout(f"no data from {self._url} in time") from exc
        except (HTTPFailure, EventTooLarge) as exc:
            raise UpstreamBadResponse(f"the connection to {self._url} broke: {exc}") from exc
        raise UpstreamBadResponse(f"{self._url} closed the stream before it finished")

    def _batches(self, datas: list[bytes], *, alone: bool) -> Iterator[list[ProviderEvent]]:
        """The events of one read's chunks (their data, up to `[DONE]`) in one batch; with
        `alone`, the first chunk that has events in a batch of its own before them."""
        if b"[DONE]" in datas:
            datas = datas[: datas.index(b"[DONE]")]
            self._finished = True
        if alone:
            for i, data in enumerate(datas):
                events = chunk_events(data)  # a bad one raises: none before it had events
                if events:
                    yield events
                    datas = datas[i + 1 :]
                    break
            else:
                return
        if not datas:
            return
        try:
            events = chunks_events(datas)
        except UpstreamBadResponse:
            yield from _one_by_one(datas)  # to name the bad chunk, after those before it
            return
        if events:
            yield events

    async def aclose(self) -> None:
        """Give the connection back for reuse if the answer was read to its end, else close it.

        A connection is kept only if the body was read to its end; the end of a chunked
        body usually comes with `[DONE]`, so most connections are reused and the next
        request skips the connect.
        """
        self._streams.discard(self)
        if self._finished:
            self._response.release()
        else:
            self._response.close()


def _one_by_one(datas: list[bytes]) -> Iterator[list[ProviderEvent]]:
    """The events of `datas` decoded chunk by chunk: those before a bad chunk, then its
    error."""
    events: list[ProviderEvent] = []
    for data in datas:
        try:
            events += chunk_events(data)
        except UpstreamBadResponse:
            if events:  # what came before the bad chunk is the answer's
                yield events
            raise
    if events:
        yield events


class OpenAIProvider:
    """Streams chat completions from `STREAMCHAT_OPENAI_BASE_URL`.

    Upstream silence (`read_timeout`) is not a read timeout per socket read, which re-arms a
    timer on every chunk received, a tenth of the server's time at a thousand streams: the
    wait for the headers has one deadline per request, and a sweep every quarter of the
    timeout fails the streams that have received nothing for longer.
    """

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = 0,
    ) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._model = model
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._client: Upstream | None = None
        self._streams: set[OpenAIStream] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def models(self) -> list[str]:
        """The configured model."""
        return [self._model]

    async def start(self) -> None:
        """Open the connection pool."""
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._client = Upstream(
            self._url,
            headers=headers,
            connect_timeout=self._connect_timeout,
            max_connections=self._max_connections,
        )
        self._sweeper = asyncio.create_task(self._fail_silent_streams(), name="upstream-silence")

    async def close(self) -> None:
        """Close the connection pool."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._client is not None:
            self._client.close()
            self._client = None

    async def ready(self) -> bool:
        """Ready once the pool is open; the upstream itself is checked per request."""
        return self._client is not None

    async def open(self, request: GenerateRequest) -> OpenAIStream:
        """POST the request; return when the upstream's 2xx headers arrive."""
        assert self._client is not None, "provider not started"
        try:
            async with asyncio.timeout(self._read_timeout):
                response = await self._client.post(request_body(request))
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self._url} did not answer in time") from exc
        except ConnectFailure as exc:
            raise UpstreamUnavailable(f"cannot connect to {self._url} ({exc.reason})") from exc
        except HTTPFailure as exc:
            raise UpstreamBadResponse(f"{self._url} failed: {exc}") from exc
        if response.status < 300:
            return OpenAIStream(response, self._url, self._streams)
        raise await self._refusal(response)

    async def _fail_silent_streams(self) -> None:
        clock = asyncio.get_running_loop().time
        while True:
            await asyncio.sleep(self._read_timeout / 4)
            silent_since = clock() - self._read_timeout
            for stream in [s for s in self._streams if s.last_read < silent_since]:
                stream.time_out()

    async def _refusal(self, response: Response) -> ProviderError:
        status = response.status
        try:
            async with asyncio.timeout(5):
                body = await response.read(_ERROR_BODY_LIMIT)
        except (TimeoutError, HTTPFailure):
            body = b""
        finally:
            response.close()
        detail = f"{self._url} answered {error_detail(status, body)}"
        if status in _CLIENTS_OWN:
            error = openai_error(body)
            return UpstreamRejected(
                detail,
                upstream_status=status,
                text=_text(error.get("message")) or f"the model refused the request ({status})",
                code=_text(error.get("code")),
                param=_text(error.get("param")),
            )
        if status == 429:
            return UpstreamRateLimited(
                detail, upstream_status=status, retry_after=retry_after_seconds(response)
            )
        return UpstreamBadResponse(detail, upstream_status=status)


def _text(value: object) -> str | None:
    return value[:1000] if isinstance(value, str) else None
