"""Keeping a stored response as it is generated: its text as any answer's, then its items.

The answer's text grows and ends as a native answer's does (service/recorder.py: the same
saves, the same statuses, so the history pages show it). At the end this also keeps what
only the Responses API reads: the output items and the response object it ended as.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from ...schemas import Usage
from ...service.generation import Outcome
from ...service.recorder import FINISH_WAIT_SECONDS, AnswerRecorder, final_status
from ...store import ResponseStore, Store
from .format import ResponsesFormat
from .items import item_text

log = logging.getLogger(__name__)


class ResponseRecorder(AnswerRecorder):
    """Saves one response's answer (a `generation.Recorder`)."""

    __slots__ = ("_format", "_response_id", "_responses")

    def __init__(
        self,
        store: Store,
        responses: ResponseStore,
        message_id: str,
        fmt: ResponsesFormat,
        *,
        tokens: int,
    ) -> None:
        super().__init__(store, message_id, tokens=tokens)
        self._responses = responses
        self._format = fmt
        self._response_id = fmt.id

    async def finish(self, outcome: Outcome) -> None:
        """Save the final text, status, items and response object; never raises."""
        final = self._format.final(outcome)
        output = final["output"]
        status, error = final_status(outcome)
        usage = None
        if outcome.usage is not None:
            usage = Usage(
                prompt_tokens=outcome.usage.prompt_tokens,
                completion_tokens=outcome.usage.completion_tokens,
            )
        # The history pages show the answer and its calls, not the model's reasoning.
        content = "\n".join(item_text(i) for i in output if i["type"] != "reasoning")
        written = self._finish(status, content, usage, error)
        kept = asyncio.ensure_future(self._keep(orjson.dumps(output), orjson.dumps(final)))
        pending: set[asyncio.Future[Any]] = {written, kept}
        await asyncio.wait(pending, timeout=FINISH_WAIT_SECONDS)

    async def _keep(self, output: bytes, final: bytes) -> None:
        try:
            await self._responses.finish(
                self._response_id, self.message_id, output.decode(), final.decode()
            )
        except Exception:
            log.exception("response %s: its items were not saved", self._response_id)
