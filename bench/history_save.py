"""What saving answers costs: database writes per answered token, and latency added per event.

    .venv/bin/python bench/history_save.py [--database-url URL] [--schema NAME]

In-process, on the real Generation, MemoryHub, AnswerRecorder and Store (a temporary SQLite
file unless --database-url is given), with a token source at the provider boundary. Writes
are counted with SQLAlchemy's cursor events; latency is from a token leaving the source to
a follower receiving its event, with and without the recorder.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy import event

from streamchat.apis.native.format import NativeFormat
from streamchat.hub import Hooks, MemoryHub
from streamchat.providers.base import Finish, ProviderEvent, TextDelta
from streamchat.service.generation import Generation, Recorder
from streamchat.service.recorder import AnswerRecorder
from streamchat.store import Store, create_engine


class Source:
    """`tokens` tokens, one every `interval` seconds (0: as fast as the loop turns); when
    each left is kept in `sent`."""

    def __init__(self, tokens: int, interval: float) -> None:
        self.tokens = tokens
        self.interval = interval
        self.sent: list[float] = []

    def __aiter__(self) -> AsyncIterator[list[ProviderEvent]]:
        return self._events()

    async def _events(self) -> AsyncIterator[list[ProviderEvent]]:
        for i in range(self.tokens):
            # A real provider yields to the loop at least once per token (its socket read).
            await asyncio.sleep(self.interval)
            self.sent.append(time.perf_counter())
            yield [TextDelta(f"tok{i} ")]
        yield [Finish("stop")]

    async def aclose(self) -> None:
        """Nothing to release."""


async def one_answer(
    store: Store, tokens: int, interval: float, record: bool
) -> tuple[list[float], float]:
    """Generate one answer; per-event latencies (s) and the whole generation's time (s)."""
    hub = MemoryHub(ttl_seconds=60, retain_bytes=1 << 30)
    stream_id = f"s{time.perf_counter_ns()}"
    await hub.create(stream_id, Hooks())
    source = Source(tokens, interval)
    recorder: Recorder | None = None
    if record:
        turn = await store.begin_turn(
            uid=1, conversation_id=None, title="bench", message="bench", model="m"
        )
        assert turn is not None
        recorder = AnswerRecorder(store, turn.answer_id, tokens=64)
    fmt = NativeFormat(uid=1, conversation_id="c", message_id="m", model="m")
    generation = Generation(hub, stream_id, source, fmt, recorder)
    subscription = await hub.subscribe(stream_id, -1)
    received: list[float] = []
    started = time.perf_counter()
    generation.task = asyncio.create_task(generation.run(0))
    while True:
        batch = await subscription.next(10)
        assert batch is not None
        now = time.perf_counter()
        received += [now] * len(batch.payloads)
        if batch.ended:
            break
    elapsed = time.perf_counter() - started
    await generation.task
    # received[i] is event i; event 0.. are deltas, the last one the end.
    latencies = [r - s for r, s in zip(received, source.sent, strict=False)]
    return latencies, elapsed


def count_writes(store: Store) -> list[int]:
    counter = [0]

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            counter[0] += 1

    for engine in store.sync_engines():  # on SQLite the writes go through a second engine
        event.listen(engine, "before_cursor_execute", on_execute)
    return counter


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(url: str, schema: str) -> None:
    store = Store(create_engine(url, schema=schema, timeout=10))
    await store.start(run_migrations=True)
    writes = count_writes(store)
    print(f"database: {url}\n")
    print("write amplification (writes counted by SQLAlchemy, incl. the turn's INSERTs):")
    print(f"{'tokens':>7} {'tok/s':>7} {'writes':>7} {'writes/token':>13}")
    for tokens, interval in ((20, 0.02), (200, 0.02), (1000, 0.005), (5000, 0.0)):
        before = writes[0]
        await one_answer(store, tokens, interval, record=True)
        n = writes[0] - before
        rate = "max" if interval == 0 else f"{1 / interval:.0f}"
        print(f"{tokens:>7} {rate:>7} {n:>7} {n / tokens:>13.4f}")

    print("\ngroup commit: answers of 200 tokens at once, transactions (rounds) per answer:")
    for concurrent in (1, 64, 512):
        before = store.write_rounds
        await asyncio.gather(*(one_answer(store, 200, 0, record=True) for _ in range(concurrent)))
        rounds = store.write_rounds - before
        print(f"  {concurrent:>4} at once: {rounds / concurrent:.3f} rounds per answer")

    print("\nhot path, 20,000 tokens as fast as they come (5 runs each, median):")
    plain = [(await one_answer(store, 20_000, 0, record=False))[1] for _ in range(5)]
    saved = [(await one_answer(store, 20_000, 0, record=True))[1] for _ in range(5)]
    per_plain = statistics.median(plain) / 20_000 * 1e6
    per_saved = statistics.median(saved) / 20_000 * 1e6
    print(f"  without saving {per_plain:.2f} µs/event, with saving {per_saved:.2f} µs/event")
    print(f"  added: {per_saved - per_plain:+.2f} µs per event")

    print("\nlatency token -> follower, 2,000 tokens at 500 tok/s:")
    for record in (False, True):
        latencies, _ = await one_answer(store, 2000, 0.002, record=record)
        us = [x * 1e6 for x in latencies]
        label = "with saving   " if record else "without saving"
        print(
            f"  {label} p50 {pct(us, 0.5):7.1f} µs  p99 {pct(us, 0.99):7.1f} µs"
            f"  max {max(us):8.1f} µs"
        )
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(tempfile.mkdtemp()) / "bench.db"
    parser.add_argument("--database-url", default=f"sqlite+aiosqlite:///{default}")
    parser.add_argument("--schema", default="")
    args = parser.parse_args()
    uvloop.run(main(args.database_url, args.schema))
