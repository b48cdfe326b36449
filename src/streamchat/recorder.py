"""Saving an answer while it is generated: its text as it grows, then how it ended.

The generation calls `grew()` once per token, so that is a counter and nothing else; the
text is saved by a background write when 64 tokens (`STREAMCHAT_HISTORY_SAVE_TOKENS`) have
come or 1 s (`STREAMCHAT_HISTORY_SAVE_SECONDS`) after the first unsaved one, whichever is
first. One write at a time: a slow database delays saves, never tokens. The final write
(`finish`) is awaited, up to `FINISH_WAIT_SECONDS`, before the stream's end event goes out.
"""

from __future__ import annotations

import asyncio
import logging

from .errors import AppError
from .generation import Outcome
from .schemas import MessageStatus, Usage
from .store import Store, StoreUnavailable

log = logging.getLogger(__name__)

# How long the end of a stream waits for its answer to be saved; then the save goes on alone.
FINISH_WAIT_SECONDS = 2.0


def final_status(outcome: Outcome) -> tuple[MessageStatus, str | None]:
    """The stored status of an answer that ended with `outcome`, and its error text."""
    if outcome.error is not None:
        code, message = outcome.error
        return ("interrupted", message) if code == "interrupted" else ("error", message)
    if outcome.finish_reason == "cancelled":
        return "cancelled", None
    return "complete", None


class AnswerRecorder:
    """Keeps one answer in the store as it grows (a `generation.Recorder`)."""

    def __init__(self, store: Store, message_id: str, *, seconds: float, tokens: int) -> None:
        self._store = store
        self.message_id = message_id
        self._seconds = seconds
        self._tokens = tokens
        self._unsaved = 0
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._text: list[str] = []
        self._warned = False
        self._done = False
        self.writes = 0  # progress writes attempted, for the measurements

    def grew(self, text: list[str]) -> None:
        """Count a token; start a save when enough have come (or arm the timer for one)."""
        self._text = text
        self._unsaved += 1
        if self._writing is not None:
            return  # the write in flight saves again when it is done
        if self._unsaved >= self._tokens:
            self._save()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._seconds, self._save)

    def _save(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unsaved = 0
        self.writes += 1
        self._writing = asyncio.create_task(self._write("".join(self._text)))
        self._writing.add_done_callback(self._written)

    async def _write(self, content: str) -> None:
        try:
            await self._store.save_progress(self.message_id, content)
        except StoreUnavailable as exc:
            if not self._warned:  # the text stays in memory; the next save carries it all
                log.warning("answer %s: progress not saved: %s", self.message_id, exc.detail)
                self._warned = True

    def _written(self, _task: asyncio.Task[None]) -> None:
        self._writing = None
        if self._done:
            return
        if self._unsaved >= self._tokens:
            self._save()
        elif self._unsaved and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._seconds, self._save)

    async def finish(self, outcome: Outcome) -> None:
        """Save the final text and status; never raises (the stream must still end)."""
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unsaved = 0
        pending = self._writing
        status, error = final_status(outcome)
        usage = None
        if outcome.usage is not None:
            usage = Usage(
                prompt_tokens=outcome.usage.prompt_tokens,
                completion_tokens=outcome.usage.completion_tokens,
            )
        final = self._final(pending, "".join(outcome.text), status, usage, error)
        task = asyncio.create_task(final)
        self._store.track(task)
        await asyncio.wait({task}, timeout=FINISH_WAIT_SECONDS)

    def refused(self, reason: BaseException) -> None:
        """The provider refused (or the request died) before the stream began."""
        if isinstance(reason, asyncio.CancelledError):
            status: MessageStatus = "interrupted"
            error = "the client left before the answer began"
        else:
            status, error = "error", _describe(reason)
        self._done = True
        self._store.track(asyncio.create_task(self._final(None, "", status, None, error)))

    async def _final(
        self,
        pending: asyncio.Task[None] | None,
        content: str,
        status: MessageStatus,
        usage: Usage | None,
        error: str | None,
    ) -> None:
        if pending is not None:
            await asyncio.wait({pending})  # a late progress write must not follow the final one
        try:
            await self._store.finish(
                self.message_id, status=status, content=content, usage=usage, error=error
            )
        except StoreUnavailable as exc:
            # The answer stays `streaming` with its last saved text; the next start-up
            # marks it `interrupted`.
            log.error(
                "answer %s: final state %s not saved: %s", self.message_id, status, exc.detail
            )


def _describe(error: BaseException) -> str:
    if isinstance(error, AppError):
        return error.message("en")
    return "internal server error"
