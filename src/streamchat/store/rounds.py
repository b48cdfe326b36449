"""What one group-commit round writes (writes.py queues them): the writes, the statements,
and the text a database can store.

A round is turns (a conversation and two messages each), progress saves, ends, and the
other APIs' own statements (`WorkWrite`: a function run in the round's transaction). Written
together they are one transaction; a round the database refuses because of one write's
values is split into single writes (`Round.split`), so that only that write fails.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Text, bindparam, func, insert, or_, update

from .tables import conversations, messages

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

# What PostgreSQL's `text` cannot hold: NUL, and a surrogate code point (a Python string
# may carry one, from JSON's "\ud800"; it has no UTF-8 form). A user's message with NUL is
# refused at the request (schemas.py); generated text is the model's, so it is cleaned here.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` as every database stores it: NUL removed, a surrogate replaced by U+FFFD."""
    if _UNSTORABLE.search(text) is None:  # the usual case: one scan, no copy
        return text
    return _UNSTORABLE.sub(lambda found: "" if found.group() == "\x00" else "\ufffd", text)


def now() -> datetime:
    """The time written in `updated_at` columns."""
    return datetime.now(UTC)


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
class WorkWrite:
    """A function to run in a round's transaction (in the writer's thread on SQLite), and
    who waits for what it returns. Run again alone if its round is split."""

    work: Callable[[Connection], Any]
    done: asyncio.Future[Any]
    result: Any = None  # what `work` returned, once the round is written


@dataclass(slots=True)
class Round:
    """What one transaction writes."""

    turns: list[TurnWrite] = field(default_factory=list)
    progress: dict[str, Progress | str] = field(default_factory=dict)
    finishes: dict[str, FinishWrite] = field(default_factory=dict)
    works: list[WorkWrite] = field(default_factory=list)
    flushed: asyncio.Future[bool] | None = None  # for those who wait for the whole round

    def __bool__(self) -> bool:
        return bool(self.turns or self.progress or self.finishes or self.works or self.flushed)

    def writes(self) -> int:
        """How many writes the round holds (a turn, a save, an end, a work are one each)."""
        return len(self.turns) + len(self.progress) + len(self.finishes) + len(self.works)

    def waiting(self) -> list[asyncio.Future[Any]]:
        """The futures that this round's end resolves."""
        waiting: list[asyncio.Future[Any]] = [t.done for t in self.turns]
        waiting += [f.done for f in self.finishes.values()]
        waiting += [w.done for w in self.works]
        return waiting if self.flushed is None else [*waiting, self.flushed]

    def split(self) -> list[Round]:
        """One round per write: a turn, a save, an end, a work (`flushed` stays with the
        caller)."""
        singles = [Round(turns=[turn]) for turn in self.turns]
        singles += [Round(progress={key: text}) for key, text in self.progress.items()]
        singles += [Round(finishes={key: end}) for key, end in self.finishes.items()]
        singles += [Round(works=[work]) for work in self.works]
        return singles


def write_round(connection: Connection, batch: Round, at: datetime) -> list[int]:
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
            {"b_id": message_id, "b_content": text, "b_at": at}  # texts by now (writes.py)
            for message_id, text in batch.progress.items()
        ]
        connection.execute(_PROGRESS, saves)
    if batch.finishes:
        connection.execute(_FINISH, [end.values | {"b_at": at} for end in batch.finishes.values()])
    for work in batch.works:
        work.result = work.work(connection)
    return refused
