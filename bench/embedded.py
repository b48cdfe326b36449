"""The embedded model through streamchat's HTTP API against the same model called directly.

Two processes, both pinned to the server's CPUs with the same thread count, the same GGUF,
the same prompt (the server's default system prompt and the question) and greedy sampling:

- `python -m bench.embedded --child`: llama-cpp-python's own `create_chat_completion(stream=
  True)`, the way a Python user would call the model; it answers one question per line read
  on standard input, with one JSON line of figures;
- `streamchat serve` with `STREAMCHAT_PROVIDER=local`, asked the same questions on
  `/api/chat` by this process, which reads the events as they arrive.

Runs alternate between the two, so that a machine that slows down for a while slows both.
Per run: time to first token, and tokens/s from the first token to the last (the decode
rate, which is what the gateway could slow down), with the number of tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from .procs import BenchError, free_port, pinned

QUESTION = "Write a short story about a lighthouse keeper, in about 300 words."
MAX_TOKENS = 128  # per answer, unless BENCH_EMBEDDED_TOKENS says otherwise


def available() -> bool:
    """Whether llama-cpp-python is installed (`make run` installs it; `--extra local`)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def measure(
    cpus: str, runs: int, *, max_tokens: int = MAX_TOKENS, model: str = "", model_dir: str = ""
) -> dict[str, Any]:
    """Alternate `runs` answers directly and through HTTP; every figure, and the medians.

    `model` and `model_dir` (STREAMCHAT_MODEL, STREAMCHAT_MODEL_DIR) default to the server's.
    """
    threads = len(_cpu_list(cpus)) or (os.cpu_count() or 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
    env |= {
        "STREAMCHAT_PROVIDER": "local",
        "STREAMCHAT_LOCAL_THREADS": str(threads),
        "STREAMCHAT_LOCAL_TEMPERATURE": "0",
        "STREAMCHAT_LOCAL_MAX_TOKENS": str(max_tokens),
    }
    if model:
        env["STREAMCHAT_MODEL"] = model
    if model_dir:
        env["STREAMCHAT_MODEL_DIR"] = model_dir
    direct: list[dict[str, float]] = []
    served: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="streamchat-bench-") as scratch:
        child = subprocess.Popen(
            pinned([sys.executable, "-m", "bench.embedded", "--child"], cpus),
            env=env,
            cwd=Path(__file__).parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        # The child assembles the model file if it is not there yet; the server starts after,
        # so that the two never assemble it at once.
        _ask_child(child, None)
        port = free_port()
        env |= {
            "STREAMCHAT_PORT": str(port),
            "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{scratch}/bench.db",
        }
        with Path(scratch, "server.log").open("wb") as log:  # the server keeps its own copy
            server = subprocess.Popen(
                pinned([sys.executable, "-m", "streamchat", "serve"], cpus),
                env=env,
                cwd=scratch,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_healthy(f"http://127.0.0.1:{port}", server, Path(scratch, "server.log"))
            for run in range(runs + 1):  # run 0 warms both up and is not counted
                question = f"{QUESTION} ({run})"
                one_direct = _ask_child(child, question)
                one_served = _ask_server(f"http://127.0.0.1:{port}", question)
                if run:
                    direct.append(one_direct)
                    served.append(one_served)
        finally:
            for proc in (child, server):
                proc.terminate()
                proc.wait(30)
    return {
        "threads": threads,
        "max_tokens": max_tokens,
        "direct": {"runs": direct, **_medians(direct)},
        "http": {"runs": served, **_medians(served)},
    }


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {f"median_{k}": statistics.median(r[k] for r in runs) for k in runs[0]}


def _cpu_list(cpus: str) -> list[int]:
    found: list[int] = []
    for part in filter(None, cpus.split(",")):
        first, _, last = part.partition("-")
        found += range(int(first), int(last or first) + 1)
    return found


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 600  # the first start may assemble the model (a few s)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError("the server with the embedded model did not become ready")


def _ask_child(child: subprocess.Popen[str], question: str | None) -> dict[str, float]:
    """The figures of one answer (None: wait for the child's model to be loaded)."""
    assert child.stdin is not None
    assert child.stdout is not None
    if question is not None:
        child.stdin.write(question + "\n")
        child.stdin.flush()
    line = child.stdout.readline()
    if not line:
        raise BenchError("the direct llama-cpp-python process exited")
    figures: dict[str, float] = json.loads(line)
    return figures


def _ask_server(url: str, question: str) -> dict[str, float]:
    body = json.dumps({"uid": 1, "message": question}).encode()
    request = urllib.request.Request(
        url + "/api/chat", body, {"Content-Type": "application/json"}, method="POST"
    )
    sent = time.perf_counter()
    times: list[float] = []
    with urllib.request.urlopen(request, timeout=600) as response:
        for line in response:  # the body is read as it arrives, a line at a time
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "delta":
                times.append(time.perf_counter())
            elif event["type"] in ("end", "error"):
                break
    return _figures(sent, times)


def _figures(sent: float, times: list[float]) -> dict[str, float]:
    """Both sides count pieces of text as they arrive (one per token, but for a character
    split over two tokens), so their rates compare."""
    if not times:
        raise BenchError("an answer came without any text")
    span = times[-1] - times[0]
    tokens = len(times)
    return {
        "first_token_ms": (times[0] - sent) * 1000,
        "tokens": tokens,
        "tokens_per_s": (tokens - 1) / span if span > 0 and tokens > 1 else 0.0,
    }


def _child() -> None:
    """Load the model as the server would, then answer each question read on stdin."""
    from llama_cpp import Llama

    from streamchat.config import Settings
    from streamchat.providers.model_files import model_path

    settings = Settings()
    path = model_path(settings, lambda message: print(message, file=sys.stderr))
    llama = Llama(
        model_path=str(path),
        n_ctx=settings.local_context_tokens,
        n_threads=settings.local_threads,
        n_threads_batch=settings.local_threads,
        verbose=False,
    )
    print("{}", flush=True)  # loaded
    for question in sys.stdin:
        messages: list[Any] = [
            {"role": "system", "content": settings.local_system_prompt},
            {"role": "user", "content": question.strip()},
        ]
        sent = time.perf_counter()
        times: list[float] = []
        chunks: Any = llama.create_chat_completion(
            messages, stream=True, max_tokens=settings.local_max_tokens, temperature=0.0
        )
        for chunk in chunks:
            if chunk["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
        print(json.dumps(_figures(sent, times)), flush=True)


def _users(args: argparse.Namespace) -> None:
    """The concurrent-users rows (bench/embedded_users.py), printed and saved as JSON."""
    from .embedded_users import measure_users, report

    result = measure_users(
        users=[int(n) for n in args.users.split(",")],
        threads=args.threads,
        cpus=args.cpus,
        max_tokens=args.tokens,
        model=os.environ.get("BENCH_EMBEDDED_MODEL", ""),
        model_dir=os.environ.get("BENCH_EMBEDDED_MODEL_DIR", ""),
    )
    print(report(result))
    out = (
        Path(__file__).parent / "results" / f"embedded-users-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"figures: {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help="be the direct process")
    parser.add_argument("--users", default="", help="concurrent users per row, e.g. 1,2,4")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cpus", default="", help="taskset CPU list for the server")
    parser.add_argument("--tokens", type=int, default=MAX_TOKENS)
    parsed = parser.parse_args()
    if parsed.users:
        _users(parsed)
    elif parsed.child:
        _child()
    else:
        sys.exit("run by `python -m bench` (BENCH_SCENARIOS=embedded), or with --users 1,2,4")
