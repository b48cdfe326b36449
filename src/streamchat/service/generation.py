"""One answer being generated, and the formats its events are written in.

A `Generation` owns the provider stream and is the only writer of its hub stream: deltas as
they come, then the closing events, whatever happened (finished, failed, cancelled,
abandoned). The response side never touches the provider.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import Failure, Kind
from ..hub import StreamHub
from ..metrics import Ending, StreamMeter
from ..providers.base import (
    Finish,
    ProviderError,
    ProviderEvent,
    ProviderStream,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ToolCall:
    """One tool call of an answer, put together from its deltas."""

    id: str
    name: str
    arguments: list[str] = field(default_factory=list)

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's `tool_calls` item."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": "".join(self.arguments)},
        }


@dataclass(slots=True)
class Outcome:
    """How a generation ended, for the final event and the store."""

    text: list[str]
    usage: TokenUsage | None = None
    finish_reason: str = "stop"
    error: Failure | None = None
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, ToolCall] = field(default_factory=dict)

    def add_tool_call(self, delta: ToolCallDelta) -> None:
        """Put a tool call's piece in its place."""
        call = self.tool_calls.get(delta.index)
        if call is None:
            call = self.tool_calls[delta.index] = ToolCall(delta.id or "", delta.name or "")
        else:
            if delta.id and not call.id:
                call.id = delta.id
            if delta.name and not call.name:
                call.name = delta.name
        if delta.arguments:
            call.arguments.append(delta.arguments)


class Recorder(Protocol):
    """Keeps an answer as it grows and how it ended (the store); stateless paths pass none."""

    def grew(self, text: list[str]) -> None:
        """One more piece arrived (`text` is every piece so far). Called per token: be cheap."""
        ...

    async def finish(self, outcome: Outcome) -> None:
        """The generation ended; called before the closing events are written."""
        ...


class StreamFormat(Protocol):
    """How a generation's events are written to the hub: the native events, or OpenAI's.

    `model` is the model the stream names: set by the service, before `opening`, to the one
    that answered (a fallback of the models file, when the one asked for refused)."""

    model: str

    def opening(self, stream_id: str) -> list[bytes]:
        """The events before the first delta."""
        ...

    def delta(self, index: int, text: str) -> bytes | list[bytes]:
        """The event for one piece of text (`index` is its hub index), or the events, from
        `index` on, where one piece opens more than one (a Responses output item)."""
        ...

    def reasoning(self, index: int, text: str) -> bytes | list[bytes] | None:
        """The event(s) for a piece of reasoning, or None where the format has none."""
        ...

    def tool_call(self, index: int, call: ToolCallDelta) -> bytes | list[bytes] | None:
        """The event(s) for a piece of a tool call, or None where the format has none."""
        ...

    def closing(self, index: int, outcome: Outcome) -> list[bytes]:
        """The events that end the stream (the last one ends it)."""
        ...


# Why a generation was stopped -> the failure it ends with ("cancelled" ends normally).
_STOPPED = {
    "lost": Failure(Kind.STREAM_UNAVAILABLE, "stream_lost"),
    "shutdown": Failure(Kind.INTERRUPTED, "interrupted_shutdown"),
    "interrupted": Failure(Kind.INTERRUPTED, "interrupted"),
}


class Generation:
    """One answer being generated: owns the provider stream and writes the hub."""

    def __init__(
        self,
        hub: StreamHub,
        stream_id: str,
        upstream: ProviderStream,
        fmt: StreamFormat,
        recorder: Recorder | None = None,
        meter: StreamMeter | None = None,
    ) -> None:
        self.hub = hub
        self.stream_id = stream_id
        self.upstream = upstream
        self.format = fmt
        self.recorder = recorder
        self.meter = meter
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: str | None = None
        self.closing = False  # past the provider: no more stopping, the end is being written
        self.index = 0  # of the next event
        self.outcome = Outcome(text=[])

    def stop(self, reason: str) -> None:
        """Stop generating: `cancelled` by a user, `interrupted` when abandoned, `shutdown`."""
        if self.task is not None and not self.task.done() and self.stop_reason is None:
            if self.closing:
                return
            self.stop_reason = reason
            self.task.cancel()

    async def run(self, index: int) -> None:
        """Pump the provider into the hub from event `index` on, then write the closing events."""
        self.index = index
        outcome = self.outcome
        try:
            await self._pump(outcome)
        except asyncio.CancelledError:
            if self.stop_reason is None:
                raise
            _uncancel()
            if self.stop_reason == "cancelled":
                outcome.finish_reason = "cancelled"
            else:
                outcome.error = _STOPPED.get(self.stop_reason, _STOPPED["interrupted"])
        except ProviderError as exc:
            log.warning("stream %s: provider failed: %s", self.stream_id, exc.detail)
            outcome.error = exc
        except Exception:
            log.exception("stream %s: generation failed", self.stream_id)
            outcome.error = Failure(Kind.INTERNAL, "internal_error")
        finally:
            await self.upstream.aclose()
        self.closing = True
        if self.recorder is not None:
            # Saved first, so a client that sees the end and reloads finds the answer final.
            await self.recorder.finish(outcome)
        if self.meter is not None:
            self.meter.ended(_ending(outcome))
        *leading, last = self.format.closing(self.index, outcome)
        for payload in leading:
            self.hub.append(self.stream_id, payload)
        self.hub.append(self.stream_id, last, last=True)

    def tokens_used(self, prompt_estimate: int) -> int:
        """The tokens this answer cost: the provider's count; without one (cancelled, cut
        off, failed before its usage came), `prompt_estimate` and a token a piece, so that
        stopping an answer early does not make its prompt free."""
        usage = self.outcome.usage
        if usage is not None:
            return usage.prompt_tokens + usage.completion_tokens
        return prompt_estimate + len(self.outcome.text)

    async def _pump(self, outcome: Outcome) -> None:
        """The provider's events into the hub: each read's events in one append."""
        hub, stream_id, delta = self.hub, self.stream_id, self.format.delta
        grew = self.recorder.grew if self.recorder is not None else None
        meter = self.meter
        text = outcome.text
        async for batch in self.upstream:
            start = self.index
            out: list[bytes] = []  # the events this read makes, from index `start` on
            pieces = 0
            for event in batch:
                if type(event) is TextDelta:
                    text.append(event.text)
                    payload = delta(start + len(out), event.text)
                    if isinstance(payload, bytes):
                        out.append(payload)
                    else:
                        out += payload
                    if grew is not None:
                        grew(text)
                    pieces += 1
                elif type(event) is ToolCallDelta:  # a call's arguments come a token a piece
                    pieces += self._tool_call(event, start + len(out), out)
                elif self._other(event, start + len(out), out):
                    pieces += 1
            if out:
                hub.extend(stream_id, out)
                self.index = start + len(out)
            if meter is not None and pieces:
                meter.token(pieces)

    def _tool_call(self, event: ToolCallDelta, index: int, out: list[bytes]) -> int:
        """A piece of a tool call: kept, and its events put in `out` from `index` on if the
        format has some; how many pieces it wrote (0 or 1)."""
        self.outcome.add_tool_call(event)
        payload = self.format.tool_call(index, event)
        if payload is None:
            return 0
        _put(out, payload)
        return 1

    def _other(self, event: ProviderEvent, index: int, out: list[bytes]) -> bool:
        """The usage, the finish reason, a reasoning piece (kept, and its events put in
        `out` from `index` on if the format has some); whether it wrote any."""
        if type(event) is TokenUsage:
            self.outcome.usage = event
        elif type(event) is Finish:
            self.outcome.finish_reason = event.reason
        elif type(event) is ReasoningDelta:
            self.outcome.reasoning.append(event.text)
            payload = self.format.reasoning(index, event.text)
            if payload is not None:
                _put(out, payload)
                return True
        return False


def _put(out: list[bytes], payload: bytes | list[bytes]) -> None:
    """Add a format's event, or its events, to `out`."""
    if isinstance(payload, bytes):
        out.append(payload)
    else:
        out += payload


def _ending(outcome: Outcome) -> Ending:
    usage = outcome.usage
    return Ending(
        finish_reason=outcome.finish_reason,
        error_code=None if outcome.error is None else outcome.error.kind.value,
        prompt_tokens=None if usage is None else usage.prompt_tokens,
        completion_tokens=None if usage is None else usage.completion_tokens,
    )


def _uncancel() -> None:
    # We cancelled this task ourselves to stop it; it goes on to write its final event.
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
