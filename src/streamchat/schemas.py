"""The API contract: request models, event models, the envelope and the error codes."""

from __future__ import annotations

import math
from datetime import datetime
from enum import IntEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic_core import PydanticCustomError

T = TypeVar("T")

# The largest integer any request may carry where the contract says no less (uid, a resume
# index, `max_tokens`): exact in a JavaScript number (the web page, OpenAI's JS client) and
# well inside every database's 64-bit INTEGER. 2**63 used to reach SQLite and stop its writer.
MAX_INT = 2**53 - 1
# Integers OpenAI documents as 64-bit (`seed`); JSON libraries (orjson) carry no more.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def unportable(value: Any, path: tuple[str, ...] = ()) -> str | None:
    """The dotted path of the first number JSON cannot carry portably (not finite, or an
    integer past 64 bits) in a parsed body that is forwarded unread, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else ".".join(path) or "body"
    if isinstance(value, int) and not isinstance(value, bool):
        return None if INT64_MIN <= value <= INT64_MAX else ".".join(path) or "body"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = unportable(item, (*path, str(key)))
        if found is not None:
            return found
    return None


# The ids we make are hex; anything outside these characters (a NUL, which PostgreSQL refuses
# in text, a slash, a line break) cannot name one and is refused before any query.
ID_PATTERN = r"^[0-9A-Za-z_-]+$"


class Code(IntEnum):
    """Business codes of the envelope, after GoFrame's gcode."""

    OK = 0
    INTERNAL_ERROR = 50
    VALIDATION_FAILED = 51
    DB_OPERATION_ERROR = 52
    OPERATION_FAILED = 60
    NOT_AUTHORIZED = 61
    SERVER_BUSY = 63
    NOT_FOUND = 65
    INVALID_REQUEST = 66


class Envelope(BaseModel, Generic[T]):
    """GoFrame's response envelope: every non-stream answer has this shape."""

    code: int = Field(0, description="0 on success, a gcode otherwise")
    message: str = Field("", description="Empty on success, a human-readable error otherwise")
    data: T | None = None


class ChatRequest(BaseModel):
    """`POST /api/chat`: one user message, answered as a Server-Sent Events stream."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"uid": 1, "message": "舞低杨柳楼心月,歌尽桃花扇底风"}]}
    )

    uid: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_INT,
        description="User id (用户ID), at most 2**53-1: required, except with a user key, "
        "whose own uid it is (another one is 403)",
    )
    message: str = Field(
        description="Message content (消息内容): not blank, at most STREAMCHAT_MAX_MESSAGE_CHARS"
    )
    conversation_id: str | None = Field(
        None,
        max_length=64,
        pattern=ID_PATTERN,
        description="Continue this conversation; it must belong to uid",
    )
    model: str | None = Field(None, max_length=200, description="One of GET /v1/models")

    @field_validator("uid", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Left out, uid may come from the key; sent as null, it is a bad uid, as before keys.
        if value is None:
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return value

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("blank", "message must not be blank")
        if "\x00" in value:  # PostgreSQL stores no NUL in text: refused here, not as a 503
            raise PydanticCustomError("nul_character", "message must not contain NUL")
        return value


class Usage(BaseModel):
    """Token counts of one answer."""

    prompt_tokens: int
    completion_tokens: int


class StartEvent(BaseModel):
    """First event of every stream: where the answer is kept and how to resume it."""

    type: Literal["start"] = "start"
    index: int = 0
    is_end: Literal[False] = False
    uid: int
    conversation_id: str
    message_id: str
    stream_id: str
    model: str


class DeltaEvent(BaseModel):
    """A piece of the answer's text."""

    type: Literal["delta"] = "delta"
    index: int
    is_end: Literal[False] = False
    delta: str


class EndEvent(BaseModel):
    """Last event of a stream that finished normally or was cancelled."""

    type: Literal["end"] = "end"
    index: int
    is_end: Literal[True] = True
    finish_reason: Literal["stop", "length", "cancelled"]
    usage: Usage | None = None


class ErrorEvent(BaseModel):
    """Last event of a stream that failed after it began."""

    type: Literal["error"] = "error"
    index: int
    is_end: Literal[True] = True
    code: str
    message: str


StreamEvent = StartEvent | DeltaEvent | EndEvent | ErrorEvent


MessageStatus = Literal["streaming", "complete", "cancelled", "interrupted", "error"]


class ConversationOut(BaseModel):
    """One conversation of a user, as listed."""

    id: str
    uid: int
    title: str = Field(description="From the first message")
    created_at: datetime
    updated_at: datetime


class ConversationPage(BaseModel):
    """A page of conversations, newest first."""

    items: list[ConversationOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page"
    )


class MessageOut(BaseModel):
    """One stored message: the user's, or an answer (possibly still streaming)."""

    id: str
    conversation_id: str
    role: Literal["user", "assistant", "system"]
    content: str
    status: MessageStatus
    model: str | None = None
    usage: Usage | None = None
    error: str | None = None
    stream_id: str | None = Field(
        None, description="For an answer: its stream, resumable while it is replayable"
    )
    created_at: datetime
    updated_at: datetime


class MessageList(BaseModel):
    """A page of one conversation's messages, oldest first: the latest page unless a
    `cursor` asks for the one before it."""

    conversation_id: str
    items: list[MessageOut]
    next_cursor: str | None = Field(
        None,
        description="Pass as `cursor` to get the older messages before these; null when "
        "these are the first",
    )


class CancelResult(BaseModel):
    """Answer of `POST /api/chat/streams/{stream_id}/cancel`."""

    stream_id: str
    cancelled: bool = Field(description="False when the stream had already ended")


class Health(BaseModel):
    """Answer of the health endpoints."""

    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
