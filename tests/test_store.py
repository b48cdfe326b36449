"""The conversation store itself, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from streamchat.config import Settings
from streamchat.errors import Failure, Kind
from streamchat.schemas import Usage
from streamchat.service.history import History, decode_cursor, title_of
from streamchat.store import Store, StoreUnavailable, create_engine, migrate
from streamchat.store.engine import HEAD_REVISION, alembic_config
from streamchat.store.tables import metadata
from streamchat.store.ui_chats import UIChats

from .dbs import UNREACHABLE, DatabaseSettings, open_store
from .servers import free_port


def history(store: Store, **settings: int) -> History:
    return History(store, Settings(**settings))  # type: ignore[arg-type]


async def turn(store: Store, uid: int, message: str, conversation_id: str | None = None) -> str:
    """One user message and its complete answer (the message reversed); the conversation."""
    new = await store.begin_turn(
        uid=uid,
        conversation_id=conversation_id,
        title=title_of(message),
        message=message,
        model="m",
    )
    assert new is not None
    await store.finish(new.answer_id, status="complete", content=message[::-1])
    return new.conversation_id


async def test_migrations_create_exactly_the_tables_and_run_once(store: Store) -> None:
    def differences(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async with store.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
    assert await migrate(store.engine) == "0005"


def test_the_head_revision_known_without_alembic_is_the_scripts_head() -> None:
    # A database at HEAD_REVISION is not migrated: a new migration must move it.
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION


async def test_a_turn_commits_the_question_and_a_streaming_answer(store: Store) -> None:
    new = await store.begin_turn(
        uid=1, conversation_id=None, title="hi", message="hi there", model="gpt"
    )
    assert new is not None
    got = await store.messages(new.conversation_id, 1)
    assert got is not None
    question, answer = got
    assert (question.id, question.role, question.content, question.status) == (
        new.user_message_id,
        "user",
        "hi there",
        "complete",
    )
    assert (answer.id, answer.role, answer.content, answer.status) == (
        new.answer_id,
        "assistant",
        "",
        "streaming",
    )
    assert answer.model == "gpt"
    assert answer.stream_id == new.stream_id
    assert answer.created_at.tzinfo is not None


async def test_finish_keeps_usage_and_error(store: Store) -> None:
    new = await store.begin_turn(uid=1, conversation_id=None, title="t", message="q", model="m")
    assert new is not None
    await store.save_progress(new.answer_id, "par")
    await store.finish(
        new.answer_id,
        status="error",
        content="partial",
        usage=Usage(prompt_tokens=3, completion_tokens=2),
        error="boom",
    )
    await store.save_progress(new.answer_id, "late progress must not win")
    got = await store.messages(new.conversation_id, 1)
    assert got is not None
    answer = got[1]
    assert (answer.status, answer.content, answer.error) == ("error", "partial", "boom")
    assert answer.usage == Usage(prompt_tokens=3, completion_tokens=2)


async def test_context_keeps_the_newest_turns_within_the_budget(store: Store) -> None:
    conversation = await turn(store, 5, "aaaa")  # answer "aaaa"
    await turn(store, 5, "bbbbbb", conversation)  # answer "bbbbbb"
    await turn(store, 5, "cc", conversation)
    everything = await store.context(conversation, 5, 1000)
    assert everything == [
        ("user", "aaaa"),
        ("assistant", "aaaa"),
        ("user", "bbbbbb"),
        ("assistant", "bbbbbb"),
        ("user", "cc"),
        ("assistant", "cc"),
    ]
    assert await store.context(conversation, 5, 16) == everything[2:]
    assert await store.context(conversation, 5, 15) == everything[3:]
    assert await store.context(conversation, 5, 0) == []


async def test_context_leaves_out_answers_still_streaming_and_empty_ones(store: Store) -> None:
    conversation = await turn(store, 5, "first")
    new = await store.begin_turn(
        uid=5, conversation_id=conversation, title="", message="second", model="m"
    )
    assert new is not None
    await store.save_progress(new.answer_id, "half an ans")
    assert await store.context(conversation, 5, 1000) == [
        ("user", "first"),
        ("assistant", "tsrif"),
        ("user", "second"),
    ]


async def test_history_sends_earlier_turns_starting_with_a_question(store: Store) -> None:
    conversation = await turn(store, 6, "aaaa")
    await turn(store, 6, "bbbbbb", conversation)
    chat = history(store, history_max_chars=10)
    new = await chat.begin(uid=6, conversation_id=conversation, message="next", model="m")
    # The budget keeps the second answer alone; an answer without its question is dropped.
    assert [(m.role, m.content) for m in new.messages] == [("user", "next")]
    chat = history(store, history_max_chars=10)
    new = await chat.begin(uid=6, conversation_id=conversation, message="last", model="m")
    assert [(m.role, m.content) for m in new.messages] == [("user", "next"), ("user", "last")]


async def test_another_uid_can_neither_continue_read_nor_delete(store: Store) -> None:
    conversation = await turn(store, 1, "mine")
    assert await store.context(conversation, 2, 100) is None
    assert await store.messages(conversation, 2) is None
    assert await store.delete(conversation, 2) is False
    intruder = await store.begin_turn(
        uid=2, conversation_id=conversation, title="", message="x", model="m"
    )
    assert intruder is None
    assert await store.list_conversations(2, before=None, limit=10) == []
    chat = history(store)
    for attempt in (
        chat.begin(uid=2, conversation_id=conversation, message="x", model="m"),
        chat.messages(conversation, 2),
        chat.delete(conversation, 2),
    ):
        with pytest.raises(Failure) as caught:
            await attempt
        assert caught.value.kind is Kind.NOT_FOUND
    got = await store.messages(conversation, 1)
    assert got is not None
    assert [m.content for m in got] == ["mine", "enim"]


async def test_conversations_come_newest_first_a_page_at_a_time(store: Store) -> None:
    ids = [await turn(store, 9, f"conversation {i}") for i in range(5)]
    await turn(store, 9, "continued", ids[0])  # the oldest becomes the most recent
    chat = history(store)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await chat.conversations(9, cursor, 2)
        seen += [c.id for c in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [ids[0], ids[4], ids[3], ids[2], ids[1]]
    assert pages == 3
    first = (await chat.conversations(9, None, 1)).items[0]
    assert first.title == "conversation 0"
    assert first.updated_at > first.created_at


async def test_a_cursor_we_did_not_make_is_400() -> None:
    for cursor in ("nope", "12_XYZ", "1_" + "g" * 32):
        with pytest.raises(Failure) as caught:
            decode_cursor(cursor)
        assert caught.value.kind is Kind.VALIDATION


async def test_delete_takes_the_messages_with_it(store: Store) -> None:
    conversation = await turn(store, 3, "bye")
    assert await store.delete(conversation, 3) is True
    assert await store.messages(conversation, 3) is None
    async with store.engine.connect() as connection:
        left = await connection.exec_driver_sql("SELECT count(*) FROM messages")
        assert left.scalar() == 0


async def test_start_up_interrupts_answers_left_streaming(database: DatabaseSettings) -> None:
    first = open_store(database)
    await first.start(run_migrations=True)
    new = await first.begin_turn(uid=4, conversation_id=None, title="t", message="q", model="m")
    assert new is not None
    await first.save_progress(new.answer_id, "saved before the crash")
    await first.engine.dispose()  # gone without finishing the answer

    second = open_store(database)
    await second.start(run_migrations=True)
    got = await second.messages(new.conversation_id, 4)
    await second.close()
    assert got is not None
    assert got[1].status == "interrupted"
    assert got[1].content == "saved before the crash"
    assert got[1].error


async def test_an_answer_alive_elsewhere_survives_another_start_up(
    database: DatabaseSettings,
) -> None:
    live = open_store(database)
    await live.start(run_migrations=True)
    new = await live.begin_turn(uid=4, conversation_id=None, title="t", message="q", model="m")
    assert new is not None
    other = open_store(database)
    await other.start(run_migrations=True)  # a second node starting while `live` streams
    await other.close()
    await live.save_progress(new.answer_id, "still going")
    got = await live.messages(new.conversation_id, 4)
    await live.close()
    assert got is not None
    assert (got[1].status, got[1].content, got[1].error) == ("streaming", "still going", None)


def test_titles_are_one_short_line() -> None:
    assert title_of("  hello\n  world ") == "hello world"
    long = title_of("x" * 80)
    assert len(long) == 50
    assert long.endswith("…")


@UNREACHABLE
async def test_an_unreachable_database_is_store_unavailable(unreachable_url: str) -> None:
    store = Store(create_engine(unreachable_url.format(port=free_port()), timeout=2))
    assert await store.ping() is False
    with pytest.raises(StoreUnavailable) as caught:
        await store.list_conversations(1, before=None, limit=1)
    assert caught.value.kind is Kind.DATABASE
    with pytest.raises(StoreUnavailable):
        await store.start(run_migrations=True)
    await store.close()


async def test_a_ui_chat_is_made_by_its_first_turn_and_only_once(store: Store) -> None:
    chats = UIChats(store)
    assert await chats.find_for_turn(3, "chat-a") is None
    first = await store.begin_turn(
        uid=3, conversation_id=None, title="t", message="q", model="m", ui_chat_id="chat-a"
    )
    assert first is not None
    assert await chats.find(3, "chat-a") == first.conversation_id
    assert await chats.find_for_turn(3, "chat-a") == first.conversation_id
    assert await chats.find_for_turn(4, "chat-a") is None  # another user's chat of that id
    # A second first turn of the same chat (another tab, at once) is refused alone.
    with pytest.raises(StoreUnavailable):
        await store.begin_turn(
            uid=3, conversation_id=None, title="t", message="x", model="m", ui_chat_id="chat-a"
        )
    got = await store.messages(first.conversation_id, 3)
    assert got is not None
    assert [m.content for m in got] == ["q", ""]
