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

What awaits a write (a turn, an end, a work) gets its result or `StoreUnavailable` when
the round is done. Progress is not awaited: whoever asked to save it still holds the text, and the
next save carries it all.

One write must never cost others theirs. Generated text is made storable first (rounds.py:
an answer with NUL failed its whole round on PostgreSQL). A round the database refuses for
its values is split down to single writes, so only the write at fault fails, even when it
is the round's only awaited one. Every future is resolved through `_resolve`, which leaves
alone one that is done already (its waiter was cancelled: a client that left). And nothing
a round raises reaches the loop: the writer cannot die of a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from ..metrics import Metrics
from .engine import StoreUnavailable, guarded, values_at_fault
from .rounds import FinishWrite, Progress, Round, TurnWrite, WorkWrite, now, storable, write_round

__all__ = ["GroupWriter", "Progress", "TurnWrite", "WriterThread", "now"]

log = logging.getLogger(__name__)

T = TypeVar("T")


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
        for row in write.rows:
            row["content"] = storable(row["content"])
        self._next.turns.append(write)
        self._kick()
        return await write.done

    async def work(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in the next round's transaction and wait for what it returns."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._next.works.append(WorkWrite(work, done))
        self._kick()
        return await done

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
        values = values | {"b_id": message_id}
        for text in ("b_content", "b_error"):
            if values.get(text) is not None:
                values[text] = storable(values[text])
        self._next.finishes[message_id] = FinishWrite(values, done)
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
            if not batch:
                continue
            self._idle.clear()
            try:
                failure = await self._commit(batch)
                if batch.flushed is not None:
                    _resolve(batch.flushed, failure or True)
            except Exception as exc:  # a bug: it fails this round's writes, not the writer
                log.exception("the store writer failed a round")
                _fail(batch.waiting(), StoreUnavailable(f"not written: {type(exc).__name__}"))
            finally:
                self._idle.set()

    async def _commit(self, batch: Round) -> StoreUnavailable | None:
        """Write `batch` (split into single writes if its values are refused) and resolve
        its writes' futures, but not `flushed`; the first failure, if any."""
        self.rounds += 1
        started = time.perf_counter()
        try:
            # The texts are read here, on the event loop, whichever thread writes them.
            batch.progress = {key: storable(_text(text)) for key, text in batch.progress.items()}
            async with guarded():
                refused = await self._write(batch, now())
        except Exception as exc:
            if values_at_fault(exc) and batch.writes() > 1:
                # Write each alone, so that only the one at fault fails.
                failures = [await self._commit(single) for single in batch.split()]
                return next((failure for failure in failures if failure is not None), None)
            failure = _as_unavailable(exc, len(batch.progress))
            _fail(batch.waiting(), failure)
            return failure
        except BaseException as exc:  # cancelled at shutdown: nobody waits forever
            _fail(batch.waiting(), StoreUnavailable(f"not written: {exc!r}"))
            raise
        self._metrics.store_round(time.perf_counter() - started)
        for index in refused:
            _resolve(batch.turns[index].done, False)
        for written in (t.done for t in batch.turns):
            _resolve(written, True)
        for end in batch.finishes.values():
            _resolve(end.done, True)
        for work in batch.works:
            _resolve(work.done, work.result)
        return None

    async def _write(self, batch: Round, at: datetime) -> list[int]:
        if self._thread is None:
            async with self._engine.begin() as connection:
                return await connection.run_sync(write_round, batch, at)
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
            return write_round(connection, batch, at)

    def close(self) -> None:
        """Close the connection and end the thread."""
        self.executor.submit(self.engine.dispose).result()
        self.executor.shutdown()


def _as_unavailable(exc: Exception, unsaved: int) -> StoreUnavailable:
    """The failure the waiting writes get (the task goes on)."""
    if isinstance(exc, StoreUnavailable):
        if unsaved:
            log.warning("%d answer(s) not saved: %s", unsaved, exc.detail)
        return exc
    log.error("a write was refused before the database saw it: %r", exc, exc_info=exc)
    return StoreUnavailable(f"not written: {type(exc).__name__}")


def _resolve(future: asyncio.Future[Any], outcome: object) -> None:
    """Give `future` its outcome, unless it has one: a waiter cancelled (a client that left)
    cancels its future, and setting a result then raises, which once ended this task."""
    if future.done():
        return
    if isinstance(outcome, StoreUnavailable):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _fail(waiting: list[asyncio.Future[Any]], error: StoreUnavailable) -> None:
    for future in waiting:
        _resolve(future, error)


def _text(answer: Progress | str) -> str:
    return answer if isinstance(answer, str) else answer.snapshot()
