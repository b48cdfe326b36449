"""The Responses API's state: responses, their chains, and their messages' structured items.

A stored response is a turn of a conversation (the same conversations and messages as the
native API, the same owner): its input items are messages, its answer is one, and each of
them keeps its Responses items as JSON in `items` beside a text rendering in `content`, which
is what the history pages show. `previous_response_id` links responses into a chain; the
context of a new response is its chain's messages, not the whole conversation (two
responses may continue the same one).

The answer's text and status are written as any answer's (the group writer, by message id);
what only the Responses API needs is written here: a response's beginning and its end in
the group writer's rounds (`Store.grouped`: with the other answers' writes, one transaction
for many), with statements built once; a deletion in a short transaction of its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .conversations import Store
from .engine import guarded
from .tables import conversations, messages, responses
from .writes import now

# How many responses a chain may go back (a loop in the links cannot make a query endless).
MAX_CHAIN = 10_000

# The statements of a response's beginning and end, built once (their values are
# parameters): a statement built with its values is built and keyed again at every call.
_INSERT_CONVERSATION = insert(conversations)
_INSERT_MESSAGES = insert(messages)
_INSERT_RESPONSE = insert(responses)
_TOUCH_CONVERSATION = (
    update(conversations)
    .where(conversations.c.id == bindparam("b_id"))
    .values(updated_at=bindparam("b_at"))
)
_KEEP_ITEMS = (
    update(messages).where(messages.c.id == bindparam("b_id")).values(items=bindparam("b_items"))
)
_KEEP_BODY = (
    update(responses).where(responses.c.id == bindparam("b_id")).values(body=bindparam("b_body"))
)


@dataclass(slots=True, frozen=True)
class ItemRow:
    """One message of a response: its role, its text rendering and its items (JSON)."""

    role: str
    content: str
    items: str | None


@dataclass(slots=True, frozen=True)
class NewResponse:
    """What `ResponseStore.begin` is to write: the response, its input and its answer."""

    response_id: str
    uid: int
    title: str
    previous_response_id: str | None
    conversation_id: str | None  # the previous response's, or None for a new one
    inputs: list[ItemRow]
    model: str
    stream_id: str
    request: str  # JSON


@dataclass(slots=True, frozen=True)
class StoredResponse:
    """A stored response and its answer's state."""

    id: str
    uid: int
    conversation_id: str
    answer_id: str
    previous_response_id: str | None
    request: str
    body: str | None
    status: str
    content: str
    error: str | None
    created_at: datetime


class ResponseStore:
    """The queries of the Responses API, over the conversation store's engine."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._engine = store.engine

    async def chain(self, response_id: str, uid: int | None) -> tuple[str, list[ItemRow]] | None:
        """The conversation of a response and its chain's messages, oldest first (answers
        still being generated left out); None if it is not `uid`'s (None: anyone's)."""
        r = responses.c
        link = (
            select(r.id, r.previous_response_id, literal(1, Integer).label("depth"))
            .where(r.id == response_id)
            .cte("chain", recursive=True)
        )
        link = link.union_all(
            select(r.id, r.previous_response_id, (link.c.depth + 1).label("depth"))
            .join(link, r.id == link.c.previous_response_id)
            .where(link.c.depth < MAX_CHAIN)
        )
        m = messages.c
        query = (
            select(m.role, m.content, m["items"])
            .where(m.response_id.in_(select(link.c.id)), m.status != "streaming")
            .order_by(m.seq)
        )
        async with guarded(), self._engine.connect() as connection:
            conversation_id = await _conversation_of(connection, response_id, uid)
            if conversation_id is None:
                return None
            rows = await connection.execute(query)
            return conversation_id, [ItemRow(role, content, items) for role, content, items in rows]

    async def begin(self, new: NewResponse) -> str | None:
        """Commit the response's input and its empty `streaming` answer, in the previous
        response's conversation or a new one; the answer's id, or None if that conversation
        is gone (deleted meanwhile)."""
        at = now()
        answer_id = uuid.uuid4().hex
        conversation_id = new.conversation_id or uuid.uuid4().hex
        common = {"conversation_id": conversation_id, "created_at": at, "updated_at": at}
        common |= {"response_id": new.response_id, "model": None, "stream_id": None}
        rows = [
            common
            | {"id": uuid.uuid4().hex, "role": row.role, "content": row.content}
            | {"items": row.items, "status": "complete"}
            for row in new.inputs
        ]
        answer = {"id": answer_id, "role": "assistant", "content": "", "items": None}
        answer |= {"status": "streaming", "model": new.model, "stream_id": new.stream_id}
        rows.append(common | answer)

        conversation = {"id": conversation_id, "uid": new.uid, "title": new.title}
        conversation |= {"created_at": at, "updated_at": at}
        response = {
            "id": new.response_id,
            "conversation_id": conversation_id,
            "answer_id": answer_id,
            "previous_response_id": new.previous_response_id,
            "request": new.request,
            "body": None,
            "created_at": at,
        }

        def write(connection: Connection) -> str | None:
            if new.conversation_id is None:
                connection.execute(_INSERT_CONVERSATION, conversation)
            else:
                touched = connection.execute(
                    _TOUCH_CONVERSATION, {"b_id": conversation_id, "b_at": at}
                )
                if touched.rowcount == 0:
                    return None
            connection.execute(_INSERT_MESSAGES, rows)
            connection.execute(_INSERT_RESPONSE, response)
            return answer_id

        return await self._store.grouped(write)

    async def finish(self, response_id: str, answer_id: str, items: str, body: str) -> None:
        """Keep the answer's items and the response object it ended as (in the round that
        writes the answer's end, when they are queued together)."""

        def write(connection: Connection) -> None:
            connection.execute(_KEEP_ITEMS, {"b_id": answer_id, "b_items": items})
            connection.execute(_KEEP_BODY, {"b_id": response_id, "b_body": body})

        await self._store.grouped(write)

    async def get(self, response_id: str, uid: int | None) -> StoredResponse | None:
        """A response and its answer's state; None unless it is `uid`'s (None: anyone's)."""
        r, c, m = responses.c, conversations.c, messages.c
        query = (
            select(
                r.id,
                c.uid,
                r.conversation_id,
                r.answer_id,
                r.previous_response_id,
                r.request,
                r.body,
                m.status,
                m.content,
                m.error,
                r.created_at,
            )
            .join(conversations, c.id == r.conversation_id)
            .join(messages, m.id == r.answer_id)
            .where(r.id == response_id)
        )
        async with guarded(), self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None or (uid is not None and row.uid != uid):
            return None
        return StoredResponse(*row)

    async def input_items(self, response_id: str, uid: int | None) -> list[str] | None:
        """The input items (JSON) of a response, in order; None unless it is `uid`'s."""
        m = messages.c
        query = select(m["items"]).where(m.response_id == response_id).order_by(m.seq)
        answer = select(responses.c.answer_id).where(responses.c.id == response_id)
        query = query.where(m.id.not_in(answer.scalar_subquery()))
        async with guarded(), self._engine.connect() as connection:
            if await _conversation_of(connection, response_id, uid) is None:
                return None
            return [items for (items,) in await connection.execute(query) if items]

    async def delete(self, response_id: str, uid: int | None) -> bool:
        """Delete a response and its messages (and its conversation if nothing is left);
        False unless it is `uid`'s."""
        m = messages.c

        def write(connection: Connection) -> bool:
            owner = connection.execute(_owner_query(response_id)).first()
            if owner is None or (uid is not None and owner.uid != uid):
                return False
            conversation_id = owner.id
            connection.execute(delete(messages).where(m.response_id == response_id))
            connection.execute(delete(responses).where(responses.c.id == response_id))
            left = connection.scalar(
                select(func.count())
                .select_from(messages)
                .where(m.conversation_id == conversation_id)
            )
            if not left:
                connection.execute(
                    delete(conversations).where(conversations.c.id == conversation_id)
                )
            return True

        return await self._store.transaction(write)


def _owner_query(response_id: str) -> Any:
    """The conversation of a response and its owner."""
    return (
        select(conversations.c.id, conversations.c.uid)
        .join(responses, responses.c.conversation_id == conversations.c.id)
        .where(responses.c.id == response_id)
    )


async def _conversation_of(
    connection: AsyncConnection, response_id: str, uid: int | None
) -> str | None:
    """The conversation of a response, if it is `uid`'s (None: anyone's)."""
    row = (await connection.execute(_owner_query(response_id))).first()
    if row is None or (uid is not None and row.uid != uid):
        return None
    return str(row.id)
