"""A slot that lacks the start of a prompt copies it from another slot's cache (issue 27).

Against a fresh server on the small model with two slots, greedy. The copy is checked by the
answers: token for token the same as the same question answered with nothing copied, in a
batch of the same shape (llama.cpp's matrix kernels round a row differently depending on the
rows beside it, so only same-shaped batches give the same bits).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from .conftest import StartServer
from .localmodel import STORY, generation_line, local_settings
from .servers import ServerProcess
from .test_engine_slots import Answer, chat

QUESTION = "Write a short poem about a lighthouse keeper and the sea."
LONG = STORY["message"]


@pytest_asyncio.fixture(scope="module")
async def two_fresh_slots(start_server: StartServer, model_dir: Path) -> ServerProcess:
    """Two slots that no other test uses (these settings are this module's alone)."""
    settings = local_settings(model_dir, local_max_tokens="40", local_slots="2")
    return await start_server(120, **settings)


async def account(server: ServerProcess, answer: Answer) -> tuple[int, int, str]:
    """From the answer's log line: prompt tokens, how many were cached, the copy's account."""
    line = await generation_line(server, answer.trace_id)
    match = re.search(r"(\d+) prompt tokens \((\d+) cached\), (\d+ copied from slot \d+, )?", line)
    assert match, line
    return int(match.group(1)), int(match.group(2)), match.group(3) or ""


async def beside(
    http: aiohttp.ClientSession, server: ServerProcess, asker: int, **running: Any
) -> tuple[Answer, Answer]:
    """A long answer (`chat` with `running`), and `asker`'s QUESTION asked once it has begun;
    checked: it still ran when the question's first token came, so the question's prompt was
    decoded beside its next token."""
    long = Answer()
    task = asyncio.create_task(chat(http, server, LONG, into=long, **running))
    await long.reach(3)
    answer = await chat(http, server, QUESTION, uid=asker)
    await task
    assert long.times[-1] > answer.times[0], "the long answer ended first"
    return long, answer


@pytest.mark.timeout(180)  # seven answers of 40 tokens on one busy thread
async def test_a_fresh_slot_copies_what_its_owner_may_reuse_and_answers_the_same(
    http: aiohttp.ClientSession, two_fresh_slots: ServerProcess
) -> None:
    server = two_fresh_slots
    running, copying = await beside(http, server, 2, uid=1)
    assert (await account(server, running))[1:] == (0, ""), "nothing to reuse at first"
    # The fresh slot copies from the running one only what every prompt begins with (the
    # template's opening and the system prompt): the rest would be another owner's.
    prompt, public, copied = await account(server, copying)
    assert 20 < public < prompt - 10, (public, prompt)
    assert copied == f"{public} copied from slot 0, ", copied

    # Two more owners, alone: one in each slot, each reusing the opening it holds, copied in
    # one, decoded in the other. Nothing copied now, and the same answer.
    alone = [await chat(http, server, QUESTION, uid=uid) for uid in (3, 4)]
    for answer in alone:
        assert (await account(server, answer))[1:] == (public, "")
    assert alone[0].deltas == alone[1].deltas, alone[0].text

    # Its own owner asking again twice at once: the first takes the slot holding its prompt,
    # the second copies all of it but the last token, which each decodes (two rows: the same
    # kernels as alone).
    await chat(http, server, LONG, uid=1)
    twice = await asyncio.gather(chat(http, server, LONG, uid=1), chat(http, server, LONG, uid=1))
    accounts = sorted([await account(server, answer) for answer in twice])
    prompt = accounts[0][0]
    assert accounts[0] == (prompt, prompt - 1, "")
    assert accounts[1][:2] == (prompt, prompt - 1)
    assert re.fullmatch(rf"{prompt - 1} copied from slot [01], ", accounts[1][2]), accounts
    assert twice[0].deltas == twice[1].deltas
