"""The chat service: the streaming path, top to bottom.

`start()` checks the request, has the provider accept it, creates a stream in the hub with
its `start` event, and launches the generation (generation.py) as its own task; the HTTP
response only follows the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Collection

from ..access.limits import FREE, Charge
from ..config import Settings
from ..errors import Failure, Kind
from ..hub import StreamHub, StreamNotFound, Subscription
from ..metrics import Metrics, StreamMeter
from ..providers.base import GenerateRequest, Provider, ProviderError, ProviderStream, answered_by
from .detach import Detach
from .generation import Generation, Recorder, StreamFormat
from .history import History, Turn
from .slots import StreamSlots

log = logging.getLogger(__name__)


class ChatService:
    """Starts, follows and stops chat streams."""

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        hub: StreamHub,
        history: History,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._provider = provider
        self._hub = hub
        self._history = history
        self._generations: dict[str, Generation] = {}
        self._slots = StreamSlots(settings.max_streams)
        self._background: set[asyncio.Task[None]] = set()
        self._detach = Detach(hub, self._generations, self._background)
        self._metrics = metrics or Metrics(enabled=False)
        self.draining = False  # SIGTERM: no new chats (server/drain.py)
        self._start_ended = asyncio.Event()  # a chat left start(): a generation, or refused

    def models(self, allowed: Collection[str] | None = None) -> list[str]:
        """The model ids a request may name (those of `allowed`, a key's), the default first."""
        models = self._provider.models()
        if allowed is None:
            return models
        if models[0] in allowed:
            return [model for model in models if model in allowed]
        return [model for model in allowed if model in models]

    async def provider_ready(self) -> bool:
        """Whether the provider would accept a request now."""
        return await self._provider.ready()

    async def hub_ready(self) -> bool:
        """Whether the stream hub's store (Redis, on several nodes) answers."""
        return await self._hub.ping()

    def stopped_tasks(self) -> list[str]:
        """Background tasks of the stream hub that have stopped (each one fails others)."""
        return self._hub.stopped()

    async def start_turn(
        self,
        *,
        uid: int,
        conversation_id: str | None,
        message: str,
        model: str,
        make_format: Callable[[Turn], StreamFormat],
        charge: Charge = FREE,
        api: str = "native",
    ) -> Subscription:
        """Begin answering `message` as the next turn of a stored conversation of `uid` (a
        new one when `conversation_id` is None); return the subscription its response follows.

        `make_format` writes the stream in the caller's wire format once the turn's ids are
        known; `charge` is settled when the answer ends (or now, if it never begins)."""
        try:
            return await self._start_turn(
                uid, conversation_id, message, model, make_format, charge, api
            )
        except BaseException:
            self._settle(charge, 0)
            raise

    async def _start_turn(
        self,
        uid: int,
        conversation_id: str | None,
        message: str,
        model: str,
        make_format: Callable[[Turn], StreamFormat],
        charge: Charge,
        api: str,
    ) -> Subscription:
        if len(message) > self._settings.max_message_chars:
            raise Failure(Kind.TOO_LONG, "message_too_long", limit=self._settings.max_message_chars)
        meter = self._metrics.meter(api, model)
        # A refusal writes nothing (DESIGN §8): the stream slot is taken before the turn is
        # written, and a turn the provider refuses, or whose stream cannot be made, is taken
        # back. The user's message is still committed before anything is generated.
        self._take_slot()  # given back when the generation task ends (see _launch)
        try:
            turn = await self._history.begin(
                uid=uid, conversation_id=conversation_id, message=message, model=model
            )
            recorder = self._history.recorder(turn)
            try:
                return await self._generate(
                    GenerateRequest(messages=turn.messages, model=model, owner=uid),
                    make_format(turn),
                    recorder,
                    turn.ids.stream_id,
                    uid,
                    charge,
                    meter,
                )
            except BaseException as exc:
                if isinstance(exc, Failure):
                    self._metrics.refused(exc.kind.value)
                await self._history.forget(turn, exc)
                raise
        except BaseException:
            self._slots.give_back()
            self._start_ended.set()
            raise

    async def generate(
        self,
        request: GenerateRequest,
        fmt: StreamFormat,
        *,
        recorder: Recorder | None = None,
        stream_id: str | None = None,
        owner: int | None = None,
        charge: Charge = FREE,
        api: str = "openai",
        detach_grace: float | None = None,
    ) -> Subscription:
        """Have the provider accept `request`, then stream its answer into a new hub stream
        owned by `owner`; `charge` is settled with the tokens it used when it ends.
        `detach_grace` overrides STREAMCHAT_DETACH_GRACE_SECONDS for this stream (0 for a
        stream nobody can resume: its upstream is closed as soon as its client leaves;
        `math.inf` for one that runs to its end whoever follows it, a background response).

        Raises the provider's `Failure` if it refuses, or `Kind.BUSY` beyond STREAMCHAT_MAX_STREAMS;
        returns a subscription from the stream's first event once it has accepted. `recorder`
        saves the answer as it grows; `api` labels its metrics.
        """
        meter = self._metrics.meter(api, request.model)
        try:
            self._take_slot()  # given back when the generation task ends (see _launch)
        except BaseException:
            self._settle(charge, 0)
            raise
        try:
            return await self._generate(
                request, fmt, recorder, stream_id, owner, charge, meter, detach_grace
            )
        except BaseException as exc:
            self._slots.give_back()
            self._start_ended.set()
            self._settle(charge, 0)
            if isinstance(exc, Failure):
                self._metrics.refused(exc.kind.value)
            raise

    def _take_slot(self) -> None:
        try:
            self._refuse_if_draining()
            self._slots.take()
        except Failure as failure:
            self._metrics.refused(failure.kind.value)
            raise

    async def _generate(
        self,
        request: GenerateRequest,
        fmt: StreamFormat,
        recorder: Recorder | None,
        stream_id: str | None,
        owner: int | None,
        charge: Charge,
        meter: StreamMeter | None,
        detach_grace: float | None = None,
    ) -> Subscription:
        if request.owner is None:  # whose prompt cache it may reuse (the embedded model)
            request.owner = owner
        upstream = await self._open(request)
        # The stream names the model that answered: a fallback, when the one asked refused.
        model = answered_by(upstream, request.model)
        if model != request.model:
            fmt.model = model
            if meter is not None:
                meter.answered_by(model)
        stream_id = stream_id or uuid.uuid4().hex
        opening = fmt.opening(stream_id)
        try:
            grace = self._settings.detach_grace_seconds if detach_grace is None else detach_grace
            await self._hub.create(stream_id, self._detach.hooks(stream_id, grace), owner)
            for payload in opening:
                self._hub.append(stream_id, payload)
            subscription = await self._hub.subscribe(stream_id, after=-1)
        except BaseException:
            # Nothing will iterate the accepted upstream: release it now (a local model's
            # queue place, an HTTP connection).
            await upstream.aclose()
            raise
        if meter is not None:
            meter.begin()
        generation = Generation(self._hub, stream_id, upstream, fmt, recorder, meter)
        self._launch(generation, len(opening), charge, _prompt_estimate(request))
        return subscription

    async def follow(self, stream_id: str, after: int, owner: int | None) -> Subscription:
        """Resume a stream after index `after`; `StreamNotFound` (also when `owner` is not
        None and not the stream's) or `HubUnavailable` if not."""
        await self._check_owner(stream_id, owner)
        return await self._hub.subscribe(stream_id, after)

    async def cancel(self, stream_id: str, owner: int | None) -> bool:
        """Stop a generation, on whichever node runs it; False if it had already ended.
        `StreamNotFound` for an unknown stream, or one `owner` (when not None) does not own."""
        await self._check_owner(stream_id, owner)
        return await self._hub.request_cancel(stream_id)

    async def _check_owner(self, stream_id: str, owner: int | None) -> None:
        # Another uid's stream is the same 404 as an unknown one: nothing tells them apart.
        if owner is not None and await self._hub.owner(stream_id) != owner:
            raise StreamNotFound(stream_id)

    async def drain(self, grace_seconds: float) -> None:
        """Take no new chats; give the running generations `grace_seconds` to end, then
        interrupt the rest and wait for their final events."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        # A chat still in start() holds a slot and has no generation yet: wait (within the
        # grace) until it has one or failed, or close() would not end it.
        while self._slots.taken > len(self._generations) and loop.time() < deadline:
            self._start_ended.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._start_ended.wait(), deadline - loop.time())
        tasks = [g.task for g in self._generations.values() if g.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=max(deadline - loop.time(), 0))
        await self.close()

    def _refuse_if_draining(self) -> None:
        if self.draining:
            raise Failure(Kind.BUSY, "shutting_down", retry_after=5)

    async def close(self) -> None:
        """Interrupt every running generation and wait for their final events."""
        running = list(self._generations.values())
        for generation in running:
            generation.stop("shutdown")
        tasks = [g.task for g in running if g.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        # Their usage is being counted (settled charges free shared open-stream places):
        # let that finish before the limiter's connections close.
        if self._background:
            await asyncio.wait(set(self._background), timeout=2)

    def resolve_model(self, requested: str | None, allowed: Collection[str] | None = None) -> str:
        """The model to use: a requested one, or the default (a key's first when the key may
        not use the server's); unknown and not `allowed` for the key are the same 404."""
        models = self.models(allowed)
        if not requested:
            if not models:
                raise Failure(Kind.NOT_FOUND, "model_unknown", model="")
            return models[0]
        if requested not in models:
            raise Failure(Kind.NOT_FOUND, "model_unknown", model=requested)
        return requested

    async def _open(self, request: GenerateRequest) -> ProviderStream:
        try:
            return await self._provider.open(request)
        except ProviderError as exc:
            log.warning("provider refused the request: %s", exc.detail)
            raise

    def _launch(
        self, generation: Generation, first_index: int, charge: Charge, prompt_estimate: int
    ) -> None:
        stream_id = generation.stream_id
        generation.task = asyncio.create_task(
            generation.run(first_index), name=f"generation-{stream_id}"
        )
        self._generations[stream_id] = generation
        self._start_ended.set()
        generation.task.add_done_callback(lambda _: self._generations.pop(stream_id, None))
        generation.task.add_done_callback(self._slots.give_back)
        if charge.limiter is not None:
            generation.task.add_done_callback(
                lambda _: self._settle(charge, generation.tokens_used(prompt_estimate))
            )

    def _settle(self, charge: Charge, tokens: int) -> None:
        """Settle a request's charge in the background (a done callback cannot wait)."""
        if charge.limiter is None:
            return
        task = asyncio.create_task(charge.settle(tokens))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a request's usage was not counted: %s", task.exception())


def _prompt_estimate(request: GenerateRequest) -> int:
    """A prompt's tokens, roughly (four characters a token), for when no usage comes."""
    return sum(len(message.content or "") for message in request.messages) // 4 + 1
