"""Group commit: the chat path's writes share transactions and never get in each other's way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from streamchat.store import Store, StoreUnavailable, create_engine
from streamchat.store.engine import writer
from streamchat.store.tables import conversations
from streamchat.store.writes import GroupWriter, TurnWrite, now

from .dbs import UNREACHABLE, DatabaseSettings, open_store
from .servers import free_port


class Answer:
    """A growing answer, as the recorder presents it to the store."""

    def __init__(self, message_id: str, text: str) -> None:
        self.message_id = message_id
        self.text = text
        self.snapshots = 0

    def snapshot(self) -> str:
        self.snapshots += 1
        return self.text


async def contents(store: Store, uid: int, conversation_id: str) -> list[tuple[str, str]]:
    got = await store.messages(conversation_id, uid)
    assert got is not None
    return [(m.content, m.status) for m in got]


async def test_turns_that_come_together_share_one_transaction(store: Store) -> None:
    before = store.write_rounds
    turns = await asyncio.gather(
        *(
            store.begin_turn(uid=i, conversation_id=None, title="t", message=f"q{i}", model="m")
            for i in range(50)
        )
    )
    assert store.write_rounds - before <= 2
    for i, new in enumerate(turns):
        assert new is not None
        assert await contents(store, i, new.conversation_id) == [
            (f"q{i}", "complete"),
            ("", "streaming"),
        ]


async def test_a_foreign_conversation_in_a_round_fails_alone(store: Store) -> None:
    mine = await store.begin_turn(uid=1, conversation_id=None, title="t", message="a", model="m")
    assert mine is not None
    results = await asyncio.gather(
        store.begin_turn(
            uid=2, conversation_id=mine.conversation_id, title="", message="x", model="m"
        ),
        store.begin_turn(
            uid=1, conversation_id=mine.conversation_id, title="", message="b", model="m"
        ),
        store.begin_turn(uid=2, conversation_id=None, title="t", message="c", model="m"),
    )
    intruder, continued, other = results
    assert intruder is None
    assert continued is not None
    assert other is not None
    assert [c for c, _ in await contents(store, 1, mine.conversation_id)] == ["a", "", "b", ""]


async def test_an_end_replaces_a_save_queued_in_the_same_round(store: Store) -> None:
    new = await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert new is not None
    answer = Answer(new.answer_id, "half")
    store.save_progress_now(answer)
    await store.finish(new.answer_id, status="complete", content="whole")
    assert answer.snapshots == 0
    assert (await contents(store, 1, new.conversation_id))[1] == ("whole", "complete")


async def test_timed_saves_of_many_answers_go_in_one_round(store: Store) -> None:
    turns = [
        await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
        for _ in range(20)
    ]
    answers = [Answer(t.answer_id, f"text {i}") for i, t in enumerate(turns) if t is not None]
    before = store.write_rounds
    for answer in answers:
        store.save_progress_soon(answer)
        store.save_progress_soon(answer)  # asked twice, written once
    await asyncio.sleep(0.5)  # the interval is 0.2 s
    assert store.write_rounds - before == 1
    assert [a.snapshots for a in answers] == [1] * 20
    for i, t in enumerate(turns):
        assert t is not None
        assert (await contents(store, 1, t.conversation_id))[1] == (f"text {i}", "streaming")


async def test_an_end_without_text_keeps_the_saved_text(store: Store) -> None:
    new = await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert new is not None
    await store.save_progress(new.answer_id, "saved")
    await store.finish(new.answer_id, status="interrupted", error="gone")
    assert (await contents(store, 1, new.conversation_id))[1] == ("saved", "interrupted")


async def test_closing_writes_what_is_queued(database: DatabaseSettings) -> None:
    first = open_store(database, progress_seconds=60)
    await first.start(run_migrations=True)
    new = await first.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert new is not None
    first.save_progress_soon(Answer(new.answer_id, "not due for a minute"))
    await first.close()
    second = open_store(database)
    got = await contents(second, 1, new.conversation_id)
    await second.close()
    assert got[1] == ("not due for a minute", "streaming")


async def test_a_write_the_database_refuses_fails_alone(
    store: Store, database: DatabaseSettings
) -> None:
    engine = open_store(database).engine
    writes = GroupWriter(writer(engine), progress_seconds=1)
    taken = await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert taken is not None
    loop = asyncio.get_running_loop()

    def turn(conversation_id: str, message_id: str) -> TurnWrite:
        at = now()
        row: dict[str, Any] = {"id": message_id, "role": "user", "content": "q"}
        row |= {"status": "complete"}
        row |= {"model": None, "stream_id": None, "conversation_id": conversation_id}
        conversation = {"id": conversation_id, "uid": 1, "title": "t"}
        return TurnWrite(
            conversation | {"created_at": at, "updated_at": at},
            None,
            [row | {"created_at": at, "updated_at": at}],
            loop.create_future(),
        )

    duplicate = turn("c" * 32, taken.user_message_id)  # that message id exists already
    fine = turn("d" * 32, "e" * 32)
    results = await asyncio.gather(
        writes.turn(duplicate), writes.turn(fine), return_exceptions=True
    )
    await writes.close(1)
    await engine.dispose()
    assert isinstance(results[0], StoreUnavailable)
    assert results[1] is True
    assert writes.rounds == 3  # together, then each alone
    assert [c for c, _ in await contents(store, 1, "d" * 32)] == ["q"]
    assert await store.messages("c" * 32, 1) is None


@UNREACHABLE
async def test_an_unreachable_database_fails_every_waiting_write(unreachable_url: str) -> None:
    store = Store(create_engine(unreachable_url.format(port=free_port()), timeout=1))
    results = await asyncio.gather(
        store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m"),
        store.finish("0" * 32, status="complete", content="x"),
        store.save_progress("1" * 32, "y"),
        return_exceptions=True,
    )
    await store.close()
    assert [type(r) for r in results] == [StoreUnavailable] * 3


async def test_a_uid_past_64_bits_fails_only_its_own_turn_and_the_writer_goes_on(
    store: Store,
) -> None:
    # 2**63 passed validation once; SQLite's driver raised OverflowError binding it, which
    # ended the writer task, and every turn after it waited forever.
    poisoned = store.begin_turn(uid=2**63, conversation_id=None, title="t", message="x", model="m")
    fine = store.begin_turn(uid=7, conversation_id=None, title="t", message="q", model="m")
    results = await asyncio.wait_for(asyncio.gather(poisoned, fine, return_exceptions=True), 10)
    assert isinstance(results[0], StoreUnavailable)
    assert not isinstance(results[1], BaseException)
    assert results[1] is not None
    with pytest.raises(StoreUnavailable):  # alone in its round, too
        await asyncio.wait_for(
            store.begin_turn(uid=2**63, conversation_id=None, title="t", message="x", model="m"),
            10,
        )
    assert store.writer_alive()
    after = await asyncio.wait_for(
        store.begin_turn(uid=7, conversation_id=None, title="t", message="next", model="m"), 10
    )
    assert after is not None
    assert await contents(store, 7, after.conversation_id) == [
        ("next", "complete"),
        ("", "streaming"),
    ]


async def test_an_answer_with_nul_costs_no_other_write_in_its_round(store: Store) -> None:
    # PostgreSQL stores no NUL in text: an upstream's "\u0000" failed the whole round, and
    # another user's turn, the round's only awaited write, got a 503 for it.
    mine = await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert mine is not None
    store.save_progress_now(Answer(mine.answer_id, "a\x00b"))
    theirs = await store.begin_turn(uid=2, conversation_id=None, title="t", message="x", model="m")
    assert theirs is not None
    assert await contents(store, 1, mine.conversation_id) == [
        ("q", "complete"),
        ("ab", "streaming"),
    ]
    # The end too, and a code point without UTF-8 (a lone surrogate, from JSON's "\ud800").
    assert await store.finish(mine.answer_id, status="complete", content="a\x00b\ud800!")
    assert (await contents(store, 1, mine.conversation_id))[1] == ("ab\ufffd!", "complete")


async def test_a_write_refused_alone_with_progress_fails_only_itself(store: Store) -> None:
    # The round's only awaited write, with a save beside it: split down to single writes.
    mine = await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert mine is not None
    store.save_progress_now(Answer(mine.answer_id, "saved"))
    with pytest.raises(StoreUnavailable):
        await store.begin_turn(uid=2**63, conversation_id=None, title="t", message="x", model="m")
    # The refused turn learns its fate from its own single write; the save, not awaited by
    # anyone, lands in the next single write of the same split round.
    for _ in range(100):
        if (await contents(store, 1, mine.conversation_id))[1] == ("saved", "streaming"):
            break
        await asyncio.sleep(0.02)
    assert (await contents(store, 1, mine.conversation_id))[1] == ("saved", "streaming")


async def test_a_refused_turn_whose_request_was_cancelled_does_not_stop_the_writer(
    store: Store,
) -> None:
    # Its future was cancelled with its request; giving it its result raised in the writer,
    # after the commit, and every other turn of the round waited for ever.
    mine = await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert mine is not None
    intruder = asyncio.create_task(
        store.begin_turn(
            uid=2, conversation_id=mine.conversation_id, title="", message="x", model="m"
        )
    )
    other = asyncio.create_task(
        store.begin_turn(uid=3, conversation_id=None, title="t", message="y", model="m")
    )
    await asyncio.sleep(0)  # both queued in the next round
    intruder.cancel()
    assert await asyncio.wait_for(other, 10) is not None
    assert store.writer_alive()
    after = await asyncio.wait_for(
        store.begin_turn(uid=3, conversation_id=None, title="t", message="z", model="m"), 10
    )
    assert after is not None


async def test_works_share_the_round_of_the_turns_and_get_what_they_return(
    store: Store,
) -> None:
    before = store.write_rounds

    def count_turns_of(uid: int) -> Any:
        query = select(func.count()).select_from(conversations).where(conversations.c.uid == uid)
        return lambda connection: connection.scalar(query)

    results = await asyncio.gather(
        *(
            store.begin_turn(uid=7, conversation_id=None, title="t", message=f"q{i}", model="m")
            for i in range(10)
        ),
        store.grouped(count_turns_of(7)),
    )
    assert store.write_rounds - before == 1  # one transaction for all of them
    assert results[-1] == 10  # the work ran after the round's turns, in its transaction


async def test_a_work_the_database_refuses_fails_alone_and_the_others_run_again(
    store: Store,
) -> None:
    mine = await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert mine is not None
    ran: list[str] = []

    def duplicate(connection: Any) -> None:
        ran.append("duplicate")
        row = {"id": mine.conversation_id, "uid": 1, "title": "t"}  # that id exists already
        connection.execute(insert(conversations), row | {"created_at": now(), "updated_at": now()})

    def fine(connection: Any) -> str:
        ran.append("fine")
        return "done"

    before = store.write_rounds
    results = await asyncio.gather(
        store.grouped(duplicate),
        store.grouped(fine),
        store.begin_turn(uid=2, conversation_id=None, title="t", message="x", model="m"),
        return_exceptions=True,
    )
    refused, done, theirs = results
    assert isinstance(refused, StoreUnavailable)
    assert done == "done"
    assert not isinstance(theirs, BaseException)
    assert theirs is not None
    assert await contents(store, 2, theirs.conversation_id) == [
        ("x", "complete"),
        ("", "streaming"),
    ]
    # Together (rolled back at the refused work, before the next one ran), then each write
    # alone.
    assert store.write_rounds - before == 4
    assert ran == ["duplicate", "duplicate", "fine"]
