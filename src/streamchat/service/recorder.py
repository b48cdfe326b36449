"""Saving an answer while it is generated: its text as it grows, then how it ended.

The generation calls `grew()` once per token, so that is a counter and nothing else; the
text is saved when 64 tokens (`STREAMCHAT_HISTORY_SAVE_TOKENS`) have come, or at most 1 s
(`STREAMCHAT_HISTORY_SAVE_SECONDS`) after the first unsaved one. The store writes saves in
rounds, many answers per transaction (store/writes.py), and reads the text only then, so a
save asked for twice is written once. A slow database delays saves, never tokens. The final
write (`finish`) is awaited, up to `FINISH_WAIT_SECONDS`, before the stream's end event.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import Failure, Kind
from ..schemas import MessageStatus, Usage
from ..store import Store, StoreUnavailable
from .generation import Outcome

log = logging.getLogger(__name__)

# How long the end of a stream waits for its answer to be saved; then the save goes on alone.
FINISH_WAIT_SECONDS = 2.0


def final_status(outcome: Outcome) -> tuple[MessageStatus, str | None]:
    """The stored status of an answer that ended with `outcome`, and its error text."""
    error = outcome.error
    if error is not None:
        message = error.message("en")
        return ("interrupted", message) if error.kind is Kind.INTERRUPTED else ("error", message)
    if outcome.finish_reason == "cancelled":
        return "cancelled", None
    return "complete", None


class AnswerRecorder:
    """Keeps one answer in the store as it grows (a `generation.Recorder`, a `store.Progress`)."""

    __slots__ = ("_store", "_text", "_tokens", "_unsaved", "message_id", "writes")

    def __init__(self, store: Store, message_id: str, *, tokens: int) -> None:
        self._store = store
        self.message_id = message_id
        self._tokens = tokens
        self._unsaved = 0
        self._text: list[str] = []
        self.writes = 0  # progress saves written (or tried), for the measurements

    def grew(self, text: list[str]) -> None:
        """Count a token: the first unsaved one asks for a timed save, the `tokens`-th for one
        now."""
        self._text = text
        self._unsaved += 1
        if self._unsaved == 1:
            self._store.save_progress_soon(self)
        elif self._unsaved == self._tokens:
            self._store.save_progress_now(self)

    def snapshot(self) -> str:
        """The text to save now (called by the store when it writes the save)."""
        self._unsaved = 0
        self.writes += 1
        return "".join(self._text)

    async def finish(self, outcome: Outcome) -> None:
        """Save the final text and status; never raises (the stream must still end)."""
        status, error = final_status(outcome)
        usage = None
        if outcome.usage is not None:
            usage = Usage(
                prompt_tokens=outcome.usage.prompt_tokens,
                completion_tokens=outcome.usage.completion_tokens,
            )
        written = self._finish(status, "".join(outcome.text), usage, error)
        await asyncio.wait({written}, timeout=FINISH_WAIT_SECONDS)

    def refused(self, reason: BaseException) -> None:
        """The provider refused (or the request died) before the stream began."""
        if isinstance(reason, asyncio.CancelledError):
            status: MessageStatus = "interrupted"
            error = "the client left before the answer began"
        else:
            status, error = "error", _describe(reason)
        self._finish(status, "", None, error)

    def _finish(
        self, status: MessageStatus, content: str, usage: Usage | None, error: str | None
    ) -> asyncio.Future[bool]:
        written = self._store.finish(
            self.message_id, status=status, content=content, usage=usage, error=error
        )
        written.add_done_callback(self._finished)
        return written

    def _finished(self, written: asyncio.Future[bool]) -> None:
        failure = None if written.cancelled() else written.exception()
        if isinstance(failure, StoreUnavailable):
            # The answer stays `streaming` with its last saved text; the next start-up
            # marks it `interrupted`.
            log.error("answer %s: final state not saved: %s", self.message_id, failure.detail)
        elif failure is not None:
            log.error("answer %s: final state not saved", self.message_id, exc_info=failure)


def _describe(error: BaseException) -> str:
    failure = error if isinstance(error, Failure) else Failure(Kind.INTERNAL, "internal_error")
    return failure.message("en")
