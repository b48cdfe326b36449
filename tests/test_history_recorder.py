"""Saving an answer as it grows: how often, what a failing database does, and the end."""

from __future__ import annotations

import asyncio
import time

from streamchat.apis.native.format import NativeFormat
from streamchat.hub import Hooks, MemoryHub
from streamchat.providers.base import GenerateRequest, TokenUsage
from streamchat.providers.echo import EchoStream
from streamchat.service.generation import Generation, Outcome
from streamchat.service.recorder import FINISH_WAIT_SECONDS, AnswerRecorder
from streamchat.store import NewTurn, Store, create_engine

from .dbs import UNREACHABLE
from .servers import free_port


async def new_turn(store: Store) -> NewTurn:
    turn = await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert turn is not None
    return turn


async def saved(store: Store, turn: NewTurn) -> tuple[str, str]:
    got = await store.messages(turn.conversation_id, 1)
    assert got is not None
    return got[-1].content, got[-1].status


async def test_a_thousand_tokens_make_at_most_one_write_per_64(store: Store) -> None:
    turn = await new_turn(store)
    recorder = AnswerRecorder(store, turn.answer_id, tokens=64)
    text: list[str] = []
    for i in range(1000):
        text.append(f"{i} ")
        recorder.grew(text)
        await asyncio.sleep(0)  # the provider's socket read, where writes get to run
    await recorder.finish(Outcome(text=text, usage=TokenUsage(3, 1000)))
    # Counted when written; timed saves (every 0.2 s) could add some, not in a loop this fast.
    assert 1 <= recorder.writes <= 1000 // 64
    assert await saved(store, turn) == ("".join(text), "complete")


async def test_a_few_tokens_are_saved_after_the_interval(store: Store) -> None:
    turn = await new_turn(store)
    recorder = AnswerRecorder(store, turn.answer_id, tokens=64)
    text = ["a", "b", "c"]
    for i in range(3):
        recorder.grew(text[: i + 1])
    assert await saved(store, turn) == ("", "streaming")
    await asyncio.sleep(0.5)
    assert await saved(store, turn) == ("abc", "streaming")
    assert recorder.writes == 1


@UNREACHABLE
async def test_a_failing_database_never_holds_up_the_answer(unreachable_url: str) -> None:
    store = Store(
        create_engine(unreachable_url.format(port=free_port()), timeout=1), progress_seconds=0.05
    )
    recorder = AnswerRecorder(store, "0" * 32, tokens=2)
    text: list[str] = []
    started = time.monotonic()
    for i in range(100):
        text.append(str(i))
        recorder.grew(text)  # never raises, never waits
        await asyncio.sleep(0.001)
    await recorder.finish(Outcome(text=text))
    assert time.monotonic() - started < 1 + FINISH_WAIT_SECONDS
    await store.close()


class SlowRecorder:
    """A recorder whose final save takes until `release` is set."""

    def __init__(self) -> None:
        self.finishing = asyncio.Event()
        self.release = asyncio.Event()

    def grew(self, text: list[str]) -> None:
        """Nothing to do per token."""

    async def finish(self, outcome: Outcome) -> None:
        """Block until released."""
        self.finishing.set()
        await self.release.wait()


async def test_a_cancel_during_the_final_save_still_ends_the_stream() -> None:
    hub = MemoryHub(ttl_seconds=60, retain_bytes=1 << 20)
    recorder = SlowRecorder()
    request = GenerateRequest(messages=[], model="echo")
    fmt = NativeFormat(uid=1, conversation_id="c", message_id="m", model="echo")
    await hub.create("s", Hooks())
    generation = Generation(hub, "s", EchoStream(request, 0), fmt, recorder)
    generation.task = asyncio.create_task(generation.run(0))
    await asyncio.wait_for(recorder.finishing.wait(), 2)
    generation.stop("cancelled")  # too late to stop anything: the answer is being saved
    recorder.release.set()
    await asyncio.wait_for(generation.task, 2)
    batch = await (await hub.subscribe("s", -1)).next(1)
    assert batch is not None
    assert batch.ended
    assert b'"finish_reason":"stop"' in batch.payloads[-1]
