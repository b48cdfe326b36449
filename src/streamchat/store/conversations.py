"""The conversation store: every query the service makes.

Reads and the history endpoints' writes run in their own short transactions; the chat path's
writes (a turn, progress, an end) are queued to the group writer (writes.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..metrics import Metrics
from ..schemas import ConversationOut, MessageOut, MessageStatus, Usage
from .engine import guarded, migrate, sqlite_writer, writer
from .tables import conversations, messages
from .writes import GroupWriter, Progress, TurnWrite, WriterThread, now

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class NewTurn:
    """What `begin_turn` created: the user's message and the answer to come."""

    conversation_id: str
    user_message_id: str
    answer_id: str
    stream_id: str


def _new_id() -> str:
    return uuid.uuid4().hex


class Store:
    """Conversations and messages. Every method raises `StoreUnavailable` on database failure."""

    def __init__(
        self, engine: AsyncEngine, *, progress_seconds: float = 1.0, metrics: Metrics | None = None
    ) -> None:
        self.engine = engine
        self._writer = writer(engine)
        sync = sqlite_writer(engine)
        self._thread = WriterThread(sync) if sync is not None else None
        self._writes = GroupWriter(
            self._writer, progress_seconds=progress_seconds, thread=self._thread, metrics=metrics
        )

    def sync_engines(self) -> list[Engine]:
        """The synchronous engines statements go through (to listen to their events)."""
        engines = [self.engine.sync_engine]
        return engines if self._thread is None else [*engines, self._thread.engine]

    @property
    def write_rounds(self) -> int:
        """Transactions the group writer has tried so far (for the measurements)."""
        return self._writes.rounds

    async def start(self, *, run_migrations: bool) -> None:
        """Migrate if asked, then mark the answers a killed process left `streaming`."""
        if run_migrations:
            revision = await migrate(self.engine)
            log.info("database %s at revision %s", self.engine.url.render_as_string(), revision)
        interrupted = await self.interrupt_leftovers()
        if interrupted:
            log.warning(
                "%d answer(s) left streaming by a previous process: interrupted", interrupted
            )

    async def close(self, wait_seconds: float = 5.0) -> None:
        """Write what is queued (waiting up to `wait_seconds`), then close the pool."""
        await self._writes.close(wait_seconds)
        await self.engine.dispose()

    def writer_alive(self) -> bool:
        """Whether the group writer's task is up (or not needed yet)."""
        return self._writes.alive()

    async def transaction(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one write transaction: for a SQLite file in the group writer's
        thread (one trip for the whole transaction, and no second connection contending
        for the file's lock), else through the async engine. Raises `StoreUnavailable`."""
        async with guarded():
            thread = self._thread
            if thread is not None:

                def run() -> T:
                    with thread.engine.begin() as connection:
                        return work(connection)

                return await asyncio.get_running_loop().run_in_executor(thread.executor, run)
            async with self._writer.begin() as connection:
                return await connection.run_sync(work)

    async def grouped(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in the group writer's next round: in one transaction with the chat
        path's other writes (and, for a SQLite file, in its thread: one trip, where a read
        of its own through aiosqlite is five or six). Raises `StoreUnavailable`; if the round
        is refused for another write's values, `work` runs again in a round of its own."""
        return await self._writes.work(work)

    async def ping(self) -> bool:
        """Whether the database answers now."""
        try:
            async with guarded(), self.engine.connect() as connection:
                await connection.execute(select(1))
        except Exception:
            return False
        return True

    async def context(
        self, conversation_id: str, uid: int, budget: int
    ) -> list[tuple[str, str]] | None:
        """The conversation's finished messages (role, content), oldest first, the newest
        `budget` characters of them; None if it is not `uid`'s."""
        m = messages.c
        running = func.sum(func.length(m.content)).over(order_by=m.seq.desc()).label("running")
        recent = (
            select(m.seq, m.role, m.content, running)
            .where(m.conversation_id == conversation_id, m.content != "", m.status != "streaming")
            .subquery()
        )
        query = (
            select(recent.c.role, recent.c.content)
            .where(recent.c.running <= budget)
            .order_by(recent.c.seq)
        )
        async with guarded(), self.engine.connect() as connection:
            if not await _owns(connection, conversation_id, uid):
                return None
            return [(row.role, row.content) for row in await connection.execute(query)]

    async def begin_turn(
        self,
        *,
        uid: int,
        conversation_id: str | None,
        title: str,
        message: str,
        model: str,
        ui_chat_id: str | None = None,
    ) -> NewTurn | None:
        """Commit the user's message and an empty `streaming` answer, in a new conversation
        (with `title`, and the UI API's chat id if given) or in `conversation_id`; None if
        that is not `uid`'s."""
        at = now()
        turn = NewTurn(conversation_id or _new_id(), _new_id(), _new_id(), _new_id())
        new = touch = None
        if conversation_id is None:
            # Every new conversation of a round names the same columns (one executemany).
            new = {"id": turn.conversation_id, "uid": uid, "title": title, "ui_chat_id": ui_chat_id}
            new |= {"created_at": at, "updated_at": at}
        else:
            touch = {"b_id": conversation_id, "b_uid": uid}
        # One executemany for every turn of a round: every row names the same columns.
        common = {"conversation_id": turn.conversation_id, "created_at": at, "updated_at": at}
        question = {
            "id": turn.user_message_id,
            "role": "user",
            "content": message,
            "status": "complete",
            "model": None,
            "stream_id": None,
        }
        answer = {
            "id": turn.answer_id,
            "role": "assistant",
            "content": "",
            "status": "streaming",
            "model": model,
            "stream_id": turn.stream_id,
        }
        done = asyncio.get_running_loop().create_future()
        written = await self._writes.turn(
            TurnWrite(new, touch, [question | common, answer | common], done)
        )
        return turn if written else None

    def save_progress_soon(self, answer: Progress) -> None:
        """Save a growing answer's text within the progress interval (not awaited)."""
        self._writes.progress_soon(answer)

    def save_progress_now(self, answer: Progress) -> None:
        """Save a growing answer's text in the next round (not awaited)."""
        self._writes.progress_now(answer.message_id, answer)

    async def save_progress(self, message_id: str, content: str) -> None:
        """Save a growing answer's text, unless it has already been finished; wait for it.

        An `interrupted` answer being saved is alive: another process sharing the database
        started and took it for one a crash left behind. It is `streaming` again.
        """
        self._writes.progress_now(message_id, content)
        await self._writes.flush()

    def finish(
        self,
        message_id: str,
        *,
        status: MessageStatus,
        content: str | None = None,
        usage: Usage | None = None,
        error: str | None = None,
    ) -> asyncio.Future[bool]:
        """Record how an answer ended, with its final text (None keeps the saved text).

        Queued for the next round; the future is done once it is written, or fails with
        `StoreUnavailable`. Await it to wait.
        """
        values: dict[str, Any] = {
            "b_status": status,
            "b_error": error,
            "b_content": content,
            "b_prompt": usage.prompt_tokens if usage is not None else None,
            "b_completion": usage.completion_tokens if usage is not None else None,
        }
        return self._writes.finish(message_id, values)

    async def forget_turn(self, turn: NewTurn, *, with_conversation: bool) -> None:
        """Delete a turn's two messages, and its conversation if the turn began it."""
        ids = [turn.user_message_id, turn.answer_id]
        async with guarded(), self._writer.begin() as connection:
            await connection.execute(delete(messages).where(messages.c.id.in_(ids)))
            if with_conversation:
                await connection.execute(
                    delete(conversations).where(conversations.c.id == turn.conversation_id)
                )

    async def interrupt_leftovers(self) -> int:
        """Mark every answer still `streaming` as `interrupted`, keeping its saved text."""
        m = messages.c
        statement = (
            update(messages)
            .where(m.status == "streaming")
            .values(status="interrupted", error="the server stopped during the answer")
        )
        async with guarded(), self._writer.begin() as connection:
            result = await connection.execute(statement)
        return int(result.rowcount)

    async def list_conversations(
        self, uid: int, *, before: tuple[datetime, str] | None, limit: int
    ) -> list[ConversationOut]:
        """`uid`'s conversations, most recently active first, after the `before` position."""
        c = conversations.c
        query = select(conversations).where(c.uid == uid)
        if before is not None:
            at, last_id = before
            query = query.where(or_(c.updated_at < at, and_(c.updated_at == at, c.id < last_id)))
        query = query.order_by(c.updated_at.desc(), c.id.desc()).limit(limit)
        async with guarded(), self.engine.connect() as connection:
            rows = await connection.execute(query)
            return [ConversationOut.model_validate(row, from_attributes=True) for row in rows]

    async def messages(self, conversation_id: str, uid: int) -> list[MessageOut] | None:
        """The conversation's messages, oldest first; None if it is not `uid`'s."""
        page = await self.message_page(conversation_id, uid, before=None, limit=None)
        return None if page is None else [message for _, message in reversed(page)]

    async def message_page(
        self, conversation_id: str, uid: int, *, before: int | None, limit: int | None
    ) -> list[tuple[int, MessageOut]] | None:
        """Up to `limit` of the conversation's latest messages before position `before`
        (None: the end), newest first, each with its position; None if it is not `uid`'s."""
        m = messages.c
        query = select(messages).where(m.conversation_id == conversation_id)
        if before is not None:
            query = query.where(m.seq < before)
        query = query.order_by(m.seq.desc()).limit(limit)
        async with guarded(), self.engine.connect() as connection:
            if not await _owns(connection, conversation_id, uid):
                return None
            return [(row.seq, _message_out(row)) for row in await connection.execute(query)]

    async def delete(self, conversation_id: str, uid: int) -> bool:
        """Delete the conversation and its messages; False if it is not `uid`'s."""
        async with guarded(), self._writer.begin() as connection:
            if not await _owns(connection, conversation_id, uid):
                return False
            await connection.execute(
                delete(messages).where(messages.c.conversation_id == conversation_id)
            )
            await connection.execute(
                delete(conversations).where(conversations.c.id == conversation_id)
            )
        return True


async def _owns(connection: AsyncConnection, conversation_id: str, uid: int) -> bool:
    owner = await connection.scalar(
        select(conversations.c.uid).where(conversations.c.id == conversation_id)
    )
    return owner == uid


def _message_out(row: Row[Any]) -> MessageOut:
    usage = None
    if row.prompt_tokens is not None and row.completion_tokens is not None:
        usage = Usage(prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens)
    return MessageOut(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,
        content=row.content,
        status=row.status,
        model=row.model,
        usage=usage,
        error=row.error,
        stream_id=row.stream_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
