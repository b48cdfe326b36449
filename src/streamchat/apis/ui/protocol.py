"""The AI SDK UI API's contract (DESIGN.md §13): what `DefaultChatTransport` (`useChat`)
sends, and the `UIMessage`s a chat is restored from.

The client sends its whole copy of the chat with every request; only its last user message
is read (the server's stored history is the one the model gets), but all of it is bounded,
since all of it is parsed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...schemas import ID_PATTERN

# Bounds on what is parsed. The body bound (STREAMCHAT_MAX_BODY_BYTES) caps the total; these
# cap the counts, so that a body of tiny items cannot be a million objects.
MAX_MESSAGES = 10_000  # a client sends every message of the chat, each time
MAX_PARTS = 1_000  # parts of one message
MAX_ID_CHARS = 256  # a message or part id: the client's own (the chat id is ours: 64)


class UIPart(BaseModel):
    """One part of a `UIMessage`: `text` is read; the rest (`step-start`, `reasoning`,
    `tool-*`, `data-*`, …) is accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=200, description="`text`, `file`, `reasoning`, `tool-…`, …")
    text: str | None = Field(None, description="The text of a `text` or `reasoning` part")


class UIMessage(BaseModel):
    """A chat message as the AI SDK holds it: an id, a role and its parts."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(max_length=MAX_ID_CHARS, description="The client's id of the message")
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart] = Field(max_length=MAX_PARTS)
    metadata: Any = None


class UIChatRequest(BaseModel):
    """`POST /api/ui/chat`: the body `DefaultChatTransport` sends, plus an optional `model`.

    `message` (the last message alone) may stand for `messages`, as the AI SDK's docs suggest
    for chats kept on the server (`prepareSendMessagesRequest`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "chat-1",
                    "messages": [
                        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}
                    ],
                    "trigger": "submit-message",
                }
            ]
        }
    )

    id: str = Field(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="The chat: the client's id, naming one of the caller's conversations "
        "(made by its first message)",
    )
    messages: list[UIMessage] | None = Field(
        None, max_length=MAX_MESSAGES, description="The client's copy of the chat"
    )
    message: UIMessage | None = Field(None, description="Only the last message (instead)")
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: str | None = Field(
        None,
        alias="messageId",
        max_length=MAX_ID_CHARS,
        description="`regenerate-message`: the answer to replace (the last one is)",
    )
    model: str | None = Field(None, max_length=200, description="One of GET /v1/models")

    @model_validator(mode="after")
    def _some_message(self) -> UIChatRequest:
        if self.messages is None and self.message is None:
            raise ValueError("messages is required")
        return self

    def last(self) -> UIMessage | None:
        """The last message the client sent."""
        if self.message is not None:
            return self.message
        return self.messages[-1] if self.messages else None


class UIStopResult(BaseModel):
    """`POST /api/ui/chat/{id}/stop`: whether an answer was running and is being stopped."""

    id: str
    stopped: bool


def text_part(text: str) -> dict[str, str]:
    """A restored message's text part."""
    return {"type": "text", "text": text}
