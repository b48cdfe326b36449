"""The native stream format: provider events as the seed's `start`, `delta`, `end` events."""

from __future__ import annotations

from ...errors import Lang
from ...providers.base import ToolCallDelta
from ...service.generation import Outcome
from . import events

# The native contract's finish reasons (DESIGN §3).
_NATIVE_REASONS = frozenset({"stop", "length", "cancelled"})


class NativeFormat:
    """The native `/api/chat` events (DESIGN.md §3)."""

    def __init__(
        self, *, uid: int, conversation_id: str, message_id: str, model: str, lang: Lang = "zh"
    ) -> None:
        self.uid = uid
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.model = model
        self.lang: Lang = lang

    def opening(self, stream_id: str) -> list[bytes]:
        """The `start` event."""
        return [
            events.start(
                uid=self.uid,
                conversation_id=self.conversation_id,
                message_id=self.message_id,
                stream_id=stream_id,
                model=self.model,
            )
        ]

    def delta(self, index: int, text: str) -> bytes:
        """A `delta` event."""
        return events.delta(index, text)

    def reasoning(self, index: int, text: str) -> None:
        """None: the native stream is the answer's text alone, as in the seed."""
        return None

    def tool_call(self, index: int, call: ToolCallDelta) -> None:
        """None: the native API offers no tools."""
        return None

    def closing(self, index: int, outcome: Outcome) -> list[bytes]:
        """One `end` or `error` event."""
        if outcome.error is not None:
            error = outcome.error
            return [events.error(index, error.kind.value, error.message(self.lang))]
        reason = outcome.finish_reason
        if reason not in _NATIVE_REASONS:  # a model's own (`content_filter`): the text stopped
            reason = "stop"
        return [events.end(index, reason, outcome.usage)]
