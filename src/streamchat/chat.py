"""The chat service: the streaming path, top to bottom.

`start()` checks the request, has the provider accept it, creates a stream in the hub with
its `start` event, and launches the generation as its own task; the HTTP response only
follows the hub. The generation task pumps provider events into the hub until the answer
ends, fails, is cancelled, or is abandoned by its followers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from . import events
from .config import Settings
from .errors import AppError
from .hub import StreamHub, StreamNotFound, Subscription
from .providers.base import (
    ChatMessage,
    Finish,
    GenerateRequest,
    Provider,
    ProviderError,
    ProviderStream,
    TextDelta,
    Usage,
)
from .schemas import ChatRequest, Code

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """How a generation ended, for the final event (and the store, later)."""

    text: list[str]
    usage: Usage | None = None
    finish_reason: str = "stop"
    error: tuple[str, str] | None = None


class Generation:
    """One answer being generated: owns the provider stream and writes the hub."""

    def __init__(self, hub: StreamHub, stream_id: str, upstream: ProviderStream) -> None:
        self.hub = hub
        self.stream_id = stream_id
        self.upstream = upstream
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        """Stop generating: `cancelled` by a user, `interrupted` when abandoned or on shutdown."""
        if self.task is not None and not self.task.done() and self.stop_reason is None:
            self.stop_reason = reason
            self.task.cancel()

    async def run(self) -> None:
        """Pump the provider into the hub, then write the one final event."""
        outcome = Outcome(text=[])
        index = 1  # the start event is index 0
        try:
            async for event in self.upstream:
                if type(event) is TextDelta:
                    outcome.text.append(event.text)
                    await self.hub.append(self.stream_id, events.delta(index, event.text))
                    index += 1
                elif type(event) is Usage:
                    outcome.usage = event
                elif type(event) is Finish:
                    outcome.finish_reason = event.reason
        except asyncio.CancelledError:
            if self.stop_reason is None:
                raise
            _uncancel()
            if self.stop_reason == "cancelled":
                outcome.finish_reason = "cancelled"
            else:
                outcome.error = ("interrupted", "the answer was interrupted: nobody was listening")
        except ProviderError as exc:
            log.warning("stream %s: provider failed: %s", self.stream_id, exc.detail)
            outcome.error = (exc.code, exc.detail)
        except Exception:
            log.exception("stream %s: generation failed", self.stream_id)
            outcome.error = ("internal_error", "internal server error")
        finally:
            await self.upstream.aclose()
        await self.hub.append(self.stream_id, _final_event(index, outcome), last=True)


def _uncancel() -> None:
    # We cancelled this task ourselves to stop it; it goes on to write its final event.
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _final_event(index: int, outcome: Outcome) -> bytes:
    if outcome.error is not None:
        return events.error(index, *outcome.error)
    return events.end(index, outcome.finish_reason, outcome.usage)


class ChatService:
    """Starts, follows and stops chat streams."""

    def __init__(self, settings: Settings, provider: Provider, hub: StreamHub) -> None:
        self._settings = settings
        self._provider = provider
        self._hub = hub
        self._generations: dict[str, Generation] = {}
        self._background: set[asyncio.Task[None]] = set()

    def models(self) -> list[str]:
        """The model ids a request may name."""
        return self._provider.models()

    async def provider_ready(self) -> bool:
        """Whether the provider would accept a request now."""
        return await self._provider.ready()

    async def start(self, request: ChatRequest) -> Subscription:
        """Begin answering `request`; return the subscription its response follows."""
        model = self._resolve_model(request.model)
        if len(request.message) > self._settings.max_message_chars:
            raise AppError(
                413,
                Code.VALIDATION_FAILED,
                "message_too_long",
                limit=self._settings.max_message_chars,
            )
        messages = [ChatMessage("user", request.message)]
        upstream = await self._open(GenerateRequest(messages=messages, model=model))
        stream_id = uuid.uuid4().hex
        generation = Generation(self._hub, stream_id, upstream)
        await self._hub.create(stream_id, on_idle=lambda: self._on_idle(stream_id))
        await self._hub.append(
            stream_id,
            events.start(
                uid=request.uid,
                conversation_id=request.conversation_id or uuid.uuid4().hex,
                message_id=uuid.uuid4().hex,
                stream_id=stream_id,
                model=model,
            ),
        )
        subscription = await self._hub.subscribe(stream_id, after=-1)
        self._launch(generation)
        return subscription

    async def follow(self, stream_id: str, after: int) -> Subscription:
        """Resume a stream after index `after`."""
        try:
            return await self._hub.subscribe(stream_id, after)
        except StreamNotFound:
            raise AppError(404, Code.NOT_FOUND, "stream_not_found", stream_id=stream_id) from None

    async def cancel(self, stream_id: str) -> bool:
        """Stop a running generation; False if it had already ended."""
        generation = self._generations.get(stream_id)
        if generation is not None:
            generation.stop("cancelled")
            return True
        await self.follow(stream_id, 0)  # 404 for unknown streams
        return False

    async def close(self) -> None:
        """Interrupt every running generation and wait for their final events."""
        running = list(self._generations.values())
        for generation in running:
            generation.stop("interrupted")
        tasks = [g.task for g in running if g.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def _resolve_model(self, requested: str | None) -> str:
        models = self._provider.models()
        if requested is None or requested == "":
            return models[0]
        if requested not in models:
            raise AppError(400, Code.VALIDATION_FAILED, "model_unknown", model=requested)
        return requested

    async def _open(self, request: GenerateRequest) -> ProviderStream:
        try:
            return await self._provider.open(request)
        except ProviderError as exc:
            log.warning("provider refused the request: %s", exc.detail)
            raise AppError(
                exc.status,
                Code.SERVER_BUSY if exc.status == 503 else Code.OPERATION_FAILED,
                exc.message_key,
                detail=exc.detail,
            ) from exc

    def _launch(self, generation: Generation) -> None:
        stream_id = generation.stream_id
        generation.task = asyncio.create_task(generation.run(), name=f"generation-{stream_id}")
        self._generations[stream_id] = generation
        generation.task.add_done_callback(lambda _: self._generations.pop(stream_id, None))

    def _on_idle(self, stream_id: str) -> None:
        """The last follower left: keep generating for the grace period, then give up."""
        grace = self._settings.detach_grace_seconds
        if grace <= 0:
            self._abandon_if_idle(stream_id, 0)
            return
        asyncio.get_running_loop().call_later(grace, self._check_followers, stream_id)

    def _check_followers(self, stream_id: str) -> None:
        task = asyncio.create_task(self._abandon_if_unfollowed(stream_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abandon_if_unfollowed(self, stream_id: str) -> None:
        if stream_id in self._generations:
            self._abandon_if_idle(stream_id, await self._hub.followers(stream_id))

    def _abandon_if_idle(self, stream_id: str, followers: int) -> None:
        generation = self._generations.get(stream_id)
        if generation is not None and followers == 0:
            log.info("stream %s: no follower left, interrupting the generation", stream_id)
            generation.stop("interrupted")
