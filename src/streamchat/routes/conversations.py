"""The history endpoints: a user's conversations, their messages, deleting one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from ..access.identity import acting_uid
from ..schemas import ID_PATTERN, ConversationPage, Envelope, MessageList
from ..service.history import MESSAGES_PAGE, MESSAGES_PAGE_MAX
from .deps import HistoryDep, OptionalUid, TicketDep

ConversationId = Annotated[
    str, Path(max_length=64, pattern=ID_PATTERN, description="The conversation's id")
]

router = APIRouter(prefix="/api/conversations", tags=["conversations 会话"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Envelope[None], "description": text}
    for code, text in {
        400: "Validation failed (code 51)",
        404: "No such conversation for this uid (code 65)",
        503: "The database is unavailable (code 52)",
    }.items()
}


@router.get("", summary="List conversations", responses=_ERRORS)
async def list_conversations(
    history: HistoryDep,
    ticket: TicketDep,
    uid: OptionalUid = None,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
) -> Envelope[ConversationPage]:
    """The user's conversations, most recently active first, a page at a time."""
    return Envelope(data=await history.conversations(acting_uid(ticket, uid), cursor, limit))


@router.get("/{conversation_id}/messages", summary="Messages of a conversation", responses=_ERRORS)
async def list_messages(
    conversation_id: ConversationId,
    history: HistoryDep,
    ticket: TicketDep,
    uid: OptionalUid = None,
    cursor: Annotated[
        str | None,
        Query(max_length=64, description="`next_cursor` of the previous page: older messages"),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MESSAGES_PAGE_MAX, description="Page size")
    ] = MESSAGES_PAGE,
) -> Envelope[MessageList]:
    """The latest `limit` messages (100 by default), oldest first, with their status; then,
    page by page with `cursor`, the ones before. An answer still streaming has its
    `stream_id`, to resume with `GET /api/chat/streams/{stream_id}`."""
    owner = acting_uid(ticket, uid)
    return Envelope(data=await history.messages(conversation_id, owner, cursor, limit))


@router.delete("/{conversation_id}", summary="Delete a conversation", responses=_ERRORS)
async def delete_conversation(
    conversation_id: ConversationId,
    history: HistoryDep,
    ticket: TicketDep,
    uid: OptionalUid = None,
) -> Envelope[None]:
    """Delete the conversation and all its messages."""
    await history.delete(conversation_id, acting_uid(ticket, uid))
    return Envelope(data=None)
