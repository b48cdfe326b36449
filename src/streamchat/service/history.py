"""The conversation side of chatting: a turn's context and records, and the history endpoints.

Between the routes (and the chat service) and the store: builds what the model is sent from
earlier turns, titles new conversations, and turns "not yours" into 404.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..config import Settings
from ..errors import Failure, Kind
from ..providers.base import ChatMessage, Role
from ..schemas import ConversationPage, MessageList
from ..store import NewTurn, Store
from .recorder import AnswerRecorder

log = logging.getLogger(__name__)

TITLE_CHARS = 50
# Messages a page, by default and at most: a client that knows no pages gets the latest 100,
# the answer that may still be streaming among them (docs/architecture.md).
MESSAGES_PAGE = 100
MESSAGES_PAGE_MAX = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"(\d{1,20})_([0-9a-f]{32})")
_ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant", "system": "system"}


@dataclass(slots=True, frozen=True)
class Turn:
    """A committed user message, the answer row waiting for it, and what the model gets."""

    ids: NewTurn
    messages: list[ChatMessage]
    created: bool = False  # the turn began its conversation


def title_of(message: str) -> str:
    """A conversation's title: its first message on one line, cut to `TITLE_CHARS`."""
    line = " ".join(message.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def encode_cursor(updated_at: datetime, conversation_id: str) -> str:
    """The position after a listed conversation, as an opaque string."""
    micros = (updated_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{conversation_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position `encode_cursor` made; a 400 if it did not make this one."""
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise Failure(Kind.VALIDATION, "cursor_invalid")
    micros, conversation_id = match.groups()
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), conversation_id
    except OverflowError:  # 20 digits of microseconds reach past the year 9999
        raise Failure(Kind.VALIDATION, "cursor_invalid") from None


def decode_message_cursor(cursor: str) -> int:
    """The position of a messages page's `next_cursor`; a 400 if it is not one."""
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 16:
        raise Failure(Kind.VALIDATION, "cursor_invalid")
    return int(cursor)


def _not_found(conversation_id: str) -> Failure:
    return Failure(Kind.NOT_FOUND, "conversation_not_found", conversation_id=conversation_id)


class History:
    """Conversations kept in the store, per user."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self._max_chars = settings.history_max_chars
        self._save_tokens = settings.history_save_tokens

    async def begin(
        self,
        *,
        uid: int,
        conversation_id: str | None,
        message: str,
        model: str,
        ui_chat_id: str | None = None,
    ) -> Turn:
        """Commit the user's message (and the empty answer) before anything is generated; a
        new conversation is the UI API's chat `ui_chat_id` when given.

        Raises 404 if `conversation_id` is not `uid`'s, 503 if the database fails (or, for
        a new chat, if `uid` has a chat `ui_chat_id` already).
        """
        earlier: list[tuple[str, str]] = []
        if conversation_id is not None:
            found = await self.store.context(conversation_id, uid, self._max_chars)
            if found is None:
                raise _not_found(conversation_id)
            earlier = found
        ids = await self.store.begin_turn(
            uid=uid,
            conversation_id=conversation_id,
            title=title_of(message),
            message=message,
            model=model,
            ui_chat_id=ui_chat_id,
        )
        if ids is None:  # deleted (or never ours) between the read and the write
            raise _not_found(conversation_id or "")
        messages = [*_context(earlier), ChatMessage("user", message)]
        return Turn(ids, messages, created=conversation_id is None)

    async def again(self, conversation_id: str, uid: int) -> list[ChatMessage]:
        """What the model is sent to answer the conversation's last question again: its
        finished messages up to that question (the answer being replaced left out); 404
        unless it is `uid`'s."""
        found = await self.store.context(conversation_id, uid, self._max_chars)
        if found is None:
            raise _not_found(conversation_id)
        while found and found[-1][0] == "assistant":
            found.pop()
        return _context(found)

    async def forget(self, turn: Turn, reason: BaseException) -> None:
        """Take back a turn that was refused before its stream began (DESIGN §8: a refusal
        writes nothing); if the database fails meanwhile, its answer records the refusal."""
        try:
            await self.store.forget_turn(turn.ids, with_conversation=turn.created)
        except Failure as exc:
            log.warning("turn %s not taken back: %s", turn.ids.answer_id, exc.detail)
            self.recorder(turn).refused(reason)

    def recorder(self, turn: Turn) -> AnswerRecorder:
        """What saves this turn's answer as it is generated."""
        return AnswerRecorder(self.store, turn.ids.answer_id, tokens=self._save_tokens)

    async def conversations(self, uid: int, cursor: str | None, limit: int) -> ConversationPage:
        """A page of `uid`'s conversations, most recently active first."""
        before = decode_cursor(cursor) if cursor else None
        items = await self.store.list_conversations(uid, before=before, limit=limit + 1)
        if len(items) <= limit:
            return ConversationPage(items=items, next_cursor=None)
        last = items[limit - 1]
        return ConversationPage(
            items=items[:limit], next_cursor=encode_cursor(last.updated_at, last.id)
        )

    async def messages(
        self, conversation_id: str, uid: int, cursor: str | None = None, limit: int = MESSAGES_PAGE
    ) -> MessageList:
        """A page of the conversation's messages, oldest first: the latest `limit`, or the
        ones before `cursor`; 404 unless it is `uid`'s."""
        before = decode_message_cursor(cursor) if cursor else None
        rows = await self.store.message_page(conversation_id, uid, before=before, limit=limit + 1)
        if rows is None:
            raise _not_found(conversation_id)
        page = rows[:limit]
        more = len(rows) > limit
        return MessageList(
            conversation_id=conversation_id,
            items=[message for _, message in reversed(page)],
            next_cursor=str(page[-1][0]) if more else None,
        )

    async def delete(self, conversation_id: str, uid: int) -> None:
        """Delete the conversation and its messages; 404 unless it is `uid`'s."""
        if not await self.store.delete(conversation_id, uid):
            raise _not_found(conversation_id)


def _context(earlier: list[tuple[str, str]]) -> list[ChatMessage]:
    """Earlier turns as chat messages, starting with a user's (the trim may cut a pair)."""
    turns = [ChatMessage(_ROLES[role], text) for role, text in earlier]
    while turns and turns[0].role == "assistant":
        turns.pop(0)
    return turns
