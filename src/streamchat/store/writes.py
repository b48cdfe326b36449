"""Group commit: the writes of the chat path, many per transaction, from one task.

Every answer makes three kinds of write: its turn (the user's message and the empty answer),
its progress now and then, and its end. Made one transaction each, a thousand streams make
thousands of transactions a second, and on SQLite each waits for the one before (there is
one writer). Here they are queued instead, and one task commits everything queued so far in
one transaction, a *round*: while a round runs, the next one fills. At one stream that is
one transaction per write, as before; at a thousand, one per round, whatever the count.

A round runs, in this order: the conversations that already exist are touched one by one
(whether each still belongs to its user decides whether its turn is written), new
conversations and every turn's two messages are inserted with one statement each, then
progress and ends are each one executemany. A progress write never reopens a finished
answer (its WHERE keeps to `streaming`/`interrupted` rows), and an end queued in the same
round as a progress write of the same answer replaces it.

What awaits a write (a turn, an end) gets its result or `StoreUnavailable` when the round
is done. Progress is not awaited: whoever asked to save it still holds the text, and the
next save carries it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Text, bindparam, func, insert, or_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..metrics import Metrics
from .engine import StoreUnavailable, guarded, values_at_fault
from .tables import conversations, messages

log = logging.getLogger(__name__)

_m = messages.c
_PROGRESS = (
    update(messages)
    # Not IN (…): an expanding parameter, which executemany refuses.
    .where(_m.id == bindparam("b_id"), or_(_m.status == "streaming", _m.status == "interrupted"))
    .values(
        content=bindparam("b_content"), status="streaming", error=None, updated_at=bindparam("b_at")
    )
)
# None for content or tokens keeps what is there.
_FINISH = (
    update(messages)
    .where(_m.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        error=bindparam("b_error", type_=Text),
        updated_at=bindparam("b_at"),
        content=func.coalesce(bindparam("b_content", type_=Text), _m.content),
        prompt_tokens=func.coalesce(
            bindparam("b_prompt", type_=messages.c.prompt_tokens.type), _m.prompt_tokens
        ),
        completion_tokens=func.coalesce(
            bindparam("b_completion", type_=messages.c.completion_tokens.type), _m.completion_tokens
        ),
    )
)
_c = conversations.c
_TOUCH = (
    update(conversations)
    .where(_c.id == bindparam("b_id"), _c.uid == bindparam("b_uid"))
    .values(updated_at=bindparam("b_at"))
)


class Progress(Protocol):
    """A growing answer whose text is read when its save is written, not when it is asked."""

    message_id: str

    def snapshot(self) -> str:
        """The text to save now (the whole answer so far)."""
        ...


@dataclass(slots=True)
class TurnWrite:
    """A turn to insert: its conversation (new, or one `uid` must own) and two messages."""

    conversation: dict[str, Any] | None  # the row of a new conversation
    touch: dict[str, Any] | None  # the update of an existing one
    rows: list[dict[str, Any]]  # the user's message and the empty answer
    done: asyncio.Future[bool]  # False: the existing conversation is not (or no longer) `uid`'s


@dataclass(slots=True)
class FinishWrite:
    """An answer's end to write, and who waits for it."""

    values: dict[str, Any]
    done: asyncio.Future[bool]


@dataclass(slots=True)
class Round:
    """What one transaction writes."""

    turns: list[TurnWrite] = field(default_factory=list)
    progress: dict[str, Progress | str] = field(default_factory=dict)
    finishes: dict[str, FinishWrite] = field(default_factory=dict)
    flushed: asyncio.Future[bool] | None = None  # for those who wait for the whole round

    def __bool__(self) -> bool:
        return bool(self.turns or self.progress or self.finishes or self.flushed)

    def waiting(self) -> list[asyncio.Future[bool]]:
        """The futures that this round's end resolves."""
        waiting = [t.done for t in self.turns] + [f.done for f in self.finishes.values()]
        return waiting if self.flushed is None else [*waiting, self.flushed]

    def split(self) -> list[Round]:
        """One round per awaited write (and one for all the progress)."""
        singles = [Round(turns=[turn]) for turn in self.turns]
        singles += [Round(finishes={key: end}) for key, end in self.finishes.items()]
        if self.progress or self.flushed:
            singles.append(Round(progress=self.progress, flushed=self.flushed))
        return singles


def now() -> datetime:
    """The time written in `updated_at` columns."""
    return datetime.now(UTC)


class GroupWriter:
    """Queues the chat path's writes and commits them a round at a time, from one task."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        progress_seconds: float,
        thread: WriterThread | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics or Metrics(enabled=False)  # a writer (BEGIN IMMEDIATE on SQLite)
        self._thread = thread  # SQLite: rounds are written there instead
        self._progress_seconds = progress_seconds
        self._next = Round()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        # Answers with unsaved text, saved together when `_tick` fires.
        self._dirty: dict[str, Progress] = {}
        self._tick: asyncio.TimerHandle | None = None
        self.rounds = 0  # transactions tried, for the measurements

    async def turn(self, write: TurnWrite) -> bool:
        """Queue a turn and wait for its round; False if its conversation is not the user's."""
        self._next.turns.append(write)
        self._kick()
        return await write.done

    def progress_soon(self, answer: Progress) -> None:
        """Save `answer`'s text within `progress_seconds`, with every other one due then."""
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(self._progress_seconds, self._due)
        self._dirty[answer.message_id] = answer

    def progress_now(self, message_id: str, answer: Progress | str) -> None:
        """Save `answer`'s text in the next round."""
        self._dirty.pop(message_id, None)
        self._next.progress[message_id] = answer
        self._kick()

    def finish(self, message_id: str, values: dict[str, Any]) -> asyncio.Future[bool]:
        """Queue an answer's end (it replaces a pending save); done when its round is."""
        self._dirty.pop(message_id, None)
        self._next.progress.pop(message_id, None)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._next.finishes[message_id] = FinishWrite(values | {"b_id": message_id}, done)
        self._kick()
        return done

    async def flush(self) -> None:
        """Wait until everything queued so far is written; raises `StoreUnavailable`."""
        if self._next.flushed is None:
            self._next.flushed = asyncio.get_running_loop().create_future()
        flushed = self._next.flushed
        self._kick()
        await flushed

    async def close(self, wait_seconds: float) -> None:
        """Write what is queued, waiting up to `wait_seconds`, then stop (and the thread)."""
        if self._tick is not None:
            self._tick.cancel()
            self._due()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_seconds):
                    while self._next or not self._idle.is_set():
                        await self._idle.wait()
                        await asyncio.sleep(0)  # the loop takes the next round
            self._task.cancel()
            self._task = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.close)
            self._thread = None

    def _due(self) -> None:
        self._tick = None
        if self._dirty:
            self._next.progress.update(self._dirty)
            self._dirty = {}
            self._kick()

    def alive(self) -> bool:
        """Whether the writer task is running, or has not been needed yet (for /readyz)."""
        return self._task is None or not self._task.done()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            if self._task is not None:  # it died (a bug): back, not every later chat waiting
                log.error("the store writer had stopped: restarting it")
            self._task = asyncio.create_task(self._loop(), name="store-writer")
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._next = self._next, Round()
            if batch:
                self._idle.clear()
                try:
                    await self._commit(batch)
                finally:
                    self._idle.set()

    async def _commit(self, batch: Round) -> None:
        self.rounds += 1
        waiting = batch.waiting()
        # The texts are read here, on the event loop, whichever thread writes them.
        batch.progress = {key: _text(answer) for key, answer in batch.progress.items()}
        started = time.perf_counter()
        try:
            async with guarded():
                refused = await self._write(batch, now())
            self._metrics.store_round(time.perf_counter() - started)
        except Exception as exc:
            if values_at_fault(exc) and len(waiting) > 1:
                # Write each alone, so that only the one at fault fails.
                for single in batch.split():
                    await self._commit(single)
                return
            _fail(waiting, _as_unavailable(exc, len(batch.progress)))
            return
        except BaseException as exc:  # cancelled at shutdown: nobody waits forever
            _fail(waiting, StoreUnavailable(f"not written: {exc!r}"))
            raise
        for index in refused:
            batch.turns[index].done.set_result(False)
        for future in waiting:
            if not future.done():
                future.set_result(True)

    async def _write(self, batch: Round, at: datetime) -> list[int]:
        if self._thread is None:
            async with self._engine.begin() as connection:
                return await connection.run_sync(_write_round, batch, at)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread.executor, self._thread.write, batch, at)


class WriterThread:
    """A synchronous engine on the same SQLite file, used by one thread of its own.

    aiosqlite hands every statement to its thread and back, five or six trips for a round;
    here the whole round is one trip: 0.6 ms instead of 1.7 for a turn.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="store-writer")

    def write(self, batch: Round, at: datetime) -> list[int]:
        """Write `batch` in one transaction (in the writer thread)."""
        with self.engine.begin() as connection:
            return _write_round(connection, batch, at)

    def close(self) -> None:
        """Close the connection and end the thread."""
        self.executor.submit(self.engine.dispose).result()
        self.executor.shutdown()


def _write_round(connection: Connection, batch: Round, at: datetime) -> list[int]:
    """Write a round in the transaction of `connection`; the indices of the turns refused
    because their conversation is not (or no longer) their user's."""
    refused: list[int] = []
    new: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for index, turn in enumerate(batch.turns):
        if turn.touch is not None:
            touched = connection.execute(_TOUCH, turn.touch | {"b_at": at})
            if touched.rowcount != 1:
                refused.append(index)
                continue
        if turn.conversation is not None:
            new.append(turn.conversation)
        rows.extend(turn.rows)
    if new:
        connection.execute(insert(conversations), new)
    if rows:
        connection.execute(insert(messages), rows)
    if batch.progress:
        saves = [
            {"b_id": message_id, "b_content": text, "b_at": at}  # texts by now (_commit)
            for message_id, text in batch.progress.items()
        ]
        connection.execute(_PROGRESS, saves)
    if batch.finishes:
        connection.execute(_FINISH, [end.values | {"b_at": at} for end in batch.finishes.values()])
    return refused


def _as_unavailable(exc: Exception, unsaved: int) -> StoreUnavailable:
    """The failure the waiting writes get (the task goes on)."""
    if isinstance(exc, StoreUnavailable):
        if unsaved:
            log.warning("%d answer(s) not saved: %s", unsaved, exc.detail)
        return exc
    log.error("a write was refused before the database saw it: %r", exc, exc_info=exc)
    return StoreUnavailable(f"not written: {type(exc).__name__}")


def _fail(waiting: list[asyncio.Future[bool]], error: StoreUnavailable) -> None:
    for future in waiting:
        if not future.done():
            future.set_exception(error)


def _text(answer: Progress | str) -> str:
    return answer if isinstance(answer, str) else answer.snapshot()
