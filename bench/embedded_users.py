"""The embedded model serving several people at once: rows for 1, 2 and 4 concurrent users.

`python -m bench.embedded --users` starts `streamchat serve` with the local provider (greedy,
as many slots as the most users) and measures through `/api/chat`:

- N users asking different questions at once: aggregate tokens/s (all tokens over the time
  from the first first token to the last token) and the median of each user's own rate;
- a request arriving while N-1 others are mid-answer: its time to first token;
- a short follow-up in a conversation with about 1,500 tokens of history, after other users'
  requests ran in between: its time to first token (the slot's cache holds the history).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import BenchError, free_port, pinned

QUESTIONS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a hash table works, with an example.",
    "Describe the water cycle for a child.",
    "Write a short essay on why people keep diaries.",
]
SHORT = "Say hello in one short sentence."


@dataclass
class Answer:
    """One streamed answer: when it was sent, its deltas' arrival times, its end event."""

    sent: float = 0.0
    times: list[float] = field(default_factory=list)
    end: dict[str, Any] = field(default_factory=dict)
    conversation_id: str = ""
    grew: threading.Event = field(default_factory=threading.Event)

    @property
    def first_token_s(self) -> float:
        return self.times[0] - self.sent

    @property
    def rate(self) -> float:
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


def ask(url: str, message: str, *, uid: int = 1, conversation: str = "", into: Answer) -> Answer:
    """Stream one answer to the end, recording arrival times as the events come."""
    payload: dict[str, Any] = {"uid": uid, "message": message}
    if conversation:
        payload["conversation_id"] = conversation
    request = urllib.request.Request(
        url + "/api/chat",
        json.dumps(payload).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    into.sent = time.perf_counter()
    with urllib.request.urlopen(request, timeout=900) as response:
        for line in response:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "start":
                into.conversation_id = event["conversation_id"]
            elif event["type"] == "delta":
                into.times.append(time.perf_counter())
                into.grew.set()
            elif event["type"] in ("end", "error"):
                into.end = event
                break
    if into.end.get("type") != "end" or not into.times:
        raise BenchError(f"an answer failed: {into.end}")
    return into


def history_message() -> str:
    """About 1,450 tokens of notes and a question about them."""
    notes = [
        f"Note {i}: the meeting about project {i * 13 % 97} moved to room {i * 7 % 31} "
        f"at {i % 12 + 1} pm, bring the {['budget', 'plan', 'draft', 'report'][i % 4]}."
        for i in range(48)
    ]
    return "\n".join(notes) + "\nWhich room is note 20 about? Answer in one sentence."


def together(url: str, users: int) -> dict[str, float]:
    """`users` different questions at once: aggregate and per-user tokens/s."""
    answers = [Answer() for _ in range(users)]
    with ThreadPoolExecutor(users) as pool:
        for job in [
            pool.submit(ask, url, QUESTIONS[i % len(QUESTIONS)], uid=i + 1, into=answers[i])
            for i in range(users)
        ]:
            job.result()
    tokens = sum(len(a.times) for a in answers)
    span = max(a.times[-1] for a in answers) - min(a.times[0] for a in answers)
    return {
        "aggregate_tokens_per_s": tokens / span if span > 0 else 0.0,
        "per_user_tokens_per_s": statistics.median(a.rate for a in answers),
    }


def arriving(url: str, users: int, uid: int = 0, after: int = 10) -> dict[str, float]:
    """A request (from `uid`, default `users + 1`) sent once `users - 1` others have `after`
    tokens each: its time to first token, and the others' gaps between tokens (p99 over their
    whole answers, and the longest one while its prompt was decoded beside them)."""
    others = [Answer() for _ in range(users - 1)]
    with ThreadPoolExecutor(users) as pool:
        jobs = [
            pool.submit(ask, url, QUESTIONS[i % len(QUESTIONS)], uid=i + 1, into=others[i])
            for i in range(users - 1)
        ]
        for answer in others:  # mid-answer: 10 tokens in (fewer for short answers)
            while len(answer.times) < after and not answer.end:
                answer.grew.wait(1)
                answer.grew.clear()
        late = ask(url, SHORT, uid=uid or users + 1, into=Answer())
        for job in jobs:
            job.result()
    gaps = [b - a for o in others for a, b in zip(o.times, o.times[1:], strict=False)]
    meanwhile = [
        b - a
        for o in others
        for a, b in zip(o.times, o.times[1:], strict=False)
        if b > late.sent and a < late.times[0]
    ]
    return {
        "arriving_first_token_s": late.first_token_s,
        "others_gap_p99_s": percentile(gaps, 99),
        "others_gap_meanwhile_s": max(meanwhile, default=0.0),
    }


def percentile(values: list[float], p: float) -> float:
    """The `p`th percentile of `values` (nearest rank), 0 if there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def follow_up(url: str, between: int) -> dict[str, float]:
    """First token of a short follow-up in a long conversation, others' requests in between."""
    first = ask(url, history_message(), uid=100, into=Answer())
    for i in range(between):
        ask(url, QUESTIONS[i % len(QUESTIONS)], uid=101 + i, into=Answer())
    again = ask(url, "And note 21?", uid=100, conversation=first.conversation_id, into=Answer())
    return {
        "history_tokens": again.end["usage"]["prompt_tokens"],
        "first_answer_first_token_s": first.first_token_s,
        "follow_up_first_token_s": again.first_token_s,
    }


def server_env(
    *, users: int, threads: int, max_tokens: int, model: str, model_dir: str
) -> dict[str, str]:
    """The server's environment: the local provider, greedy, `users` slots, the rest default
    (`threads` 0: the server's default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
    env |= {
        "STREAMCHAT_PROVIDER": "local",
        "STREAMCHAT_LOCAL_TEMPERATURE": "0",
        "STREAMCHAT_LOCAL_MAX_TOKENS": str(max_tokens),
        "STREAMCHAT_LOCAL_SLOTS": str(users),
        "STREAMCHAT_PORT": str(free_port()),
    }
    if threads:
        env["STREAMCHAT_LOCAL_THREADS"] = str(threads)
    if model:
        env["STREAMCHAT_MODEL"] = model
    if model_dir:
        env["STREAMCHAT_MODEL_DIR"] = model_dir
    return env


@contextlib.contextmanager
def serving(env: dict[str, str], cpus: str) -> Iterator[tuple[str, Path]]:
    """`streamchat serve` with `env`, ready and warmed up: its URL and its log file."""
    from .embedded import _wait_healthy

    url = f"http://127.0.0.1:{env['STREAMCHAT_PORT']}"
    with tempfile.TemporaryDirectory(prefix="streamchat-bench-") as scratch:
        env = env | {"STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{scratch}/bench.db"}
        log_path = Path(scratch, "server.log")
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                pinned([sys.executable, "-m", "streamchat", "serve"], cpus),
                env=env,
                cwd=scratch,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_healthy(url, server, log_path)
            ask(url, SHORT, into=Answer())  # warm-up
            yield url, log_path
        finally:
            server.terminate()
            server.wait(30)


def measure_users(
    *, users: list[int], threads: int, cpus: str, max_tokens: int, model: str, model_dir: str
) -> dict[str, Any]:
    """Every row, from one server with `max(users)` slots."""
    env = server_env(
        users=max(users), threads=threads, max_tokens=max_tokens, model=model, model_dir=model_dir
    )
    after = max(1, min(10, max_tokens // 4))
    with serving(env, cpus) as (url, log_path):
        rows = [{"users": n, **together(url, n), **arriving(url, n, after=after)} for n in users]
        history = follow_up(url, between=max(users) - 1)
        log_lines = log_path.read_text().splitlines()
        kv = [line for line in log_lines if "KV cache" in line]
        # the follow-up's own account: how many of its prompt tokens were found cached
        kv += [line for line in log_lines if "generation:" in line][-1:]
    return {"threads": threads, "max_tokens": max_tokens, "rows": rows, **history, "load": kv}


def report(result: dict[str, Any]) -> str:
    """The rows as a table."""
    one = result["rows"][0]["aggregate_tokens_per_s"]
    lines = [
        f"embedded model, {result['threads']} threads, greedy, {result['max_tokens']} tokens",
        "users  aggregate tok/s  (× one user)  per-user tok/s  first token arriving mid-answer"
        "  (others' gap p99, longest meanwhile)",
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['users']:>5}  {row['aggregate_tokens_per_s']:>15.1f}  "
            f"{row['aggregate_tokens_per_s'] / one:>12.2f}  "
            f"{row['per_user_tokens_per_s']:>14.1f}  {row['arriving_first_token_s']:>8.2f} s"
            f"  ({row['others_gap_p99_s']:.2f} s, {row['others_gap_meanwhile_s']:.2f} s)"
        )
    lines.append(
        f"follow-up with {result['history_tokens']} tokens of history, others in between: "
        f"first token {result['follow_up_first_token_s']:.2f} s "
        f"(the history's own first answer: {result['first_answer_first_token_s']:.2f} s)"
    )
    lines += result["load"]
    return "\n".join(lines)
