"""What the AI SDK's UI API asks of the store: a client's chat id as a conversation, the
answer running in a chat, and a turn answered again (regenerate).

A `useChat` id is the client's (or its app's) own string, so it names a conversation only
within one user's chats (`conversations.ui_chat_id`, unique per uid): two users who pick the
same id get two conversations, and neither can tell that the other exists. A chat is made
by its first turn (`Store.begin_turn` with its `ui_chat_id`), in that turn's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .conversations import NewTurn, Store
from .engine import guarded, writer
from .tables import conversations, messages
from .writes import now


@dataclass(slots=True, frozen=True)
class Retry:
    """A turn to answer again: its question is kept, a new answer row waits for the model,
    and the old answer (`replaced`) goes once the new one has begun."""

    turn: NewTurn
    replaced: str


RetryRefusal = Literal["running", "nothing"]


def _new_id() -> str:
    return uuid.uuid4().hex


class UIChats:
    """The UI API's queries; every method raises `StoreUnavailable` on database failure."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._engine = store.engine
        self._writer = writer(store.engine)

    async def find(self, uid: int, chat_id: str) -> str | None:
        """The conversation `uid` calls `chat_id`, or None."""
        async with guarded(), self._engine.connect() as connection:
            return await _find(connection, uid, chat_id)

    async def find_for_turn(self, uid: int, chat_id: str) -> str | None:
        """`find`, in the group writer's next round: where a turn goes next, so this costs
        a part of a round (on SQLite one trip to the writer's thread, instead of aiosqlite's
        five or six for a read of its own)."""
        params = {"b_uid": uid, "b_chat_id": chat_id}

        def find(connection: Connection) -> str | None:
            found: str | None = connection.scalar(_FIND, params)
            return found

        return await self._store.grouped(find)

    async def running_stream(self, conversation_id: str) -> str | None:
        """The stream of the conversation's newest answer still being generated, or None."""
        m = messages.c
        query = (
            select(m.stream_id)
            .where(
                m.conversation_id == conversation_id,
                m.role == "assistant",
                m.status == "streaming",
            )
            .order_by(m.seq.desc())
            .limit(1)
        )
        async with guarded(), self._engine.connect() as connection:
            stream_id: str | None = await connection.scalar(query)
            return stream_id

    async def retry(self, conversation_id: str, model: str) -> Retry | RetryRefusal:
        """Add a new `streaming` answer after the conversation's last one, for its question
        to be answered again: "running" if the last answer is still being generated,
        "nothing" if the conversation has no answer to replace."""
        m = messages.c
        last_two = (
            select(m.id, m.role, m.status)
            .where(m.conversation_id == conversation_id)
            .order_by(m.seq.desc())
            .limit(2)
        )
        async with guarded(), self._writer.begin() as connection:
            rows = list(await connection.execute(last_two))
            if len(rows) < 2 or rows[0].role != "assistant" or rows[1].role != "user":
                return "nothing"
            if rows[0].status == "streaming":
                return "running"
            at = now()
            turn = NewTurn(conversation_id, rows[1].id, _new_id(), _new_id())
            await connection.execute(
                insert(messages).values(
                    id=turn.answer_id,
                    conversation_id=conversation_id,
                    role="assistant",
                    content="",
                    status="streaming",
                    model=model,
                    stream_id=turn.stream_id,
                    created_at=at,
                    updated_at=at,
                )
            )
            await connection.execute(
                update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(updated_at=at)
            )
            return Retry(turn, replaced=rows[0].id)

    async def drop_message(self, message_id: str) -> None:
        """Delete one message (an answer replaced, or one whose turn never began)."""
        async with guarded(), self._writer.begin() as connection:
            await connection.execute(delete(messages).where(messages.c.id == message_id))


_FIND = select(conversations.c.id).where(
    conversations.c.uid == bindparam("b_uid"), conversations.c.ui_chat_id == bindparam("b_chat_id")
)


async def _find(connection: AsyncConnection, uid: int, chat_id: str) -> str | None:
    found: str | None = await connection.scalar(_FIND, {"b_uid": uid, "b_chat_id": chat_id})
    return found
