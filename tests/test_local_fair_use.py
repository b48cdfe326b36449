"""The embedded model between owners: no prompt learnt from another's cache, the operator's
system prompt always first, the operator's answer length a cap on every API (issue 23).

Against one real server on the small test model, one slot (so that every request meets the
cache the one before left), an operator system prompt, and answers of 4 tokens.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from .conftest import StartServer
from .localmodel import SMALL, client_for, generation_line, local_settings
from .servers import ServerProcess
from .test_engine_prompts import Count, tokenize
from .test_engine_slots import chat

__all__ = ["tokenize"]  # the fixture, shared with test_engine_prompts

SYSTEM = "You are the assistant of Example Bank. Never reveal internal codes. Answer briefly."
FILLER = " ".join(f"Line {i}: please keep this note for my records." for i in range(12))


@pytest_asyncio.fixture(scope="module")
async def guarded(start_server: StartServer, model_dir: Path) -> ServerProcess:
    settings = local_settings(
        model_dir,
        local_slots="1",
        local_max_tokens="4",
        local_context_tokens="1024",
        local_system_prompt=SYSTEM,
    )
    return await start_server(120, **settings)


def note(code: str) -> str:
    """A message that begins with a secret: guessing it right shares the whole prompt."""
    return f"My one-time code is {code}. {FILLER}"


async def first_token_after(
    http: aiohttp.ClientSession, server: ServerProcess, uid: int, message: str
) -> tuple[float, str]:
    """Seconds from the request to the answer's first token, and the request's trace id."""
    started = time.monotonic()
    answer = await chat(http, server, message, uid=uid)
    assert answer.times, answer
    return answer.times[0] - started, answer.trace_id


@pytest.mark.timeout(240)  # eight prompts of 150 tokens on one busy thread
async def test_another_owner_cannot_tell_a_right_guess_from_a_wrong_one_by_the_first_token(
    http: aiohttp.ClientSession, guarded: ServerProcess
) -> None:
    secret, wrong = note("482913"), note("771046")
    right_times, wrong_times = [], []
    for _ in range(2):
        await first_token_after(http, guarded, 7, secret)  # uid 7's prompt is in the cache
        right, trace = await first_token_after(http, guarded, 8, secret)
        right_times.append(right)
        await first_token_after(http, guarded, 7, secret)
        wrong_times.append((await first_token_after(http, guarded, 8, wrong))[0])
    right, wrong_time = min(right_times), min(wrong_times)
    assert abs(right - wrong_time) <= 0.2 * max(right, wrong_time), (right_times, wrong_times)
    # What every owner shares, the template's opening and the operator's prompt, is reused.
    line = await generation_line(guarded, trace)
    match = re.search(r"(\d+) prompt tokens \((\d+) cached\)", line)
    assert match, line
    assert 20 < int(match.group(2)) < 40, line
    # The cache does serve its own owner, and this measure tells when it does.
    await first_token_after(http, guarded, 7, secret)
    own, _ = await first_token_after(http, guarded, 7, secret)
    assert own < 0.5 * wrong_time, (own, wrong_time)


async def test_a_client_system_message_follows_the_operators_and_never_replaces_it(
    guarded: ServerProcess, tokenize: Count
) -> None:
    client = client_for(guarded)
    mine = "Answer in French."

    async def prompt_tokens(*messages: dict[str, str]) -> int:
        answer = await client.chat.completions.create(
            model=SMALL,
            messages=[*messages, {"role": "user", "content": "Hi"}],  # type: ignore[list-item]
        )
        assert answer.usage is not None
        return answer.usage.prompt_tokens

    alone = await prompt_tokens()
    both = await prompt_tokens({"role": "system", "content": mine})
    developer = await prompt_tokens({"role": "developer", "content": mine})
    # One more system turn, the operator's still before it.
    turn = tokenize("<|im_start|>system\n", True) + tokenize("<|im_end|>\n", True)
    assert both - alone == turn + tokenize(mine, False)
    assert developer == both


async def test_the_operators_max_tokens_caps_a_v1_request_that_asks_for_more(
    guarded: ServerProcess,
) -> None:
    answer = await client_for(guarded).chat.completions.create(
        model=SMALL,
        messages=[{"role": "user", "content": "Write a very long story about a lighthouse."}],
        max_tokens=200,
    )
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 4
    assert answer.choices[0].finish_reason == "length"
