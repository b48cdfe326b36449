"""The local model's speed through the HTTP API: start-up, first token, tokens/s, memory.

    .venv/bin/python bench/local_model.py                 # the default 1.5B model, 5 runs
    .venv/bin/python bench/local_model.py --fresh-cache   # also time assembling the GGUF
    .venv/bin/python bench/local_model.py --model qwen2.5-coder-0.5b-instruct

Starts its own `streamchat serve` on a free port, sends the same question --runs times, one
after the other, and prints the medians. First token is measured from sending the request to
receiving the first delta; tokens/s from the first delta to the end event. The JSON result
goes to bench/results/ (not committed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

QUESTION = "Explain Server-Sent Events in two sentences."
RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        while proc.poll() is None:
            try:
                async with session.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError("the server exited")


async def measure(url: str, proc: subprocess.Popen[bytes], runs: int) -> dict[str, Any]:
    started = time.monotonic()
    await wait_healthy(url, proc)
    startup = time.monotonic() - started
    async with aiohttp.ClientSession() as session:
        answers = [await one_answer(session, url, run) for run in range(1, runs + 1)]
    return {"startup_s": startup, "runs": answers, **memory_mb(proc.pid)}


async def one_answer(session: aiohttp.ClientSession, url: str, run: int) -> dict[str, float]:
    # A different question each time: an identical prompt would be answered from the KV cache.
    body = {"uid": 1, "message": f"Question {run}: {QUESTION}"}
    sent = time.monotonic()
    first = 0.0
    async with session.post(url + "/api/chat", json=body) as response:
        async for line in response.content:
            if not line.startswith(b"data: "):
                continue
            event = orjson.loads(line[6:])
            if event["type"] == "delta" and not first:
                first = time.monotonic()
            elif event["type"] in ("end", "error"):
                break
    done = time.monotonic()
    tokens = event.get("usage", {}).get("completion_tokens", 0)
    return {
        "first_token_s": first - sent,
        "tokens": tokens,
        "tokens_per_s": (tokens - 1) / (done - first) if tokens > 1 else 0.0,
    }


def memory_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
    return {"rss_mb": int(found["VmRSS"]) / 1024, "peak_rss_mb": int(found["VmHWM"]) / 1024}


def log_seconds(log: str, pattern: str) -> float | None:
    match = re.search(pattern, log)
    return float(match.group(1)) if match else None


def bench(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    cache = Path(tempfile.mkdtemp(prefix="streamchat-bench-")) if args.fresh_cache else None
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
    env |= {"STREAMCHAT_PORT": str(port), "STREAMCHAT_PROVIDER": "local"}
    if args.threads:
        env["STREAMCHAT_LOCAL_THREADS"] = str(args.threads)
    if args.model:
        env["STREAMCHAT_MODEL"] = args.model
    if cache:
        env["STREAMCHAT_MODEL_DIR"] = str(cache)
    log_path = Path(tempfile.mkstemp(prefix="streamchat-bench-", suffix=".log")[1])
    with log_path.open("wb") as log:
        cmd = [sys.executable, "-m", "streamchat", "serve"]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        result = asyncio.run(measure(f"http://127.0.0.1:{port}", proc, args.runs))
    except RuntimeError:
        sys.exit(f"the server exited:\n{log_path.read_text()}")
    finally:
        proc.terminate()
        proc.wait()
        if cache:
            shutil.rmtree(cache)
    server_log = log_path.read_text()
    runs = result["runs"]
    return {
        "model": args.model or "default",
        "cpus": os.cpu_count(),
        "load_average_after": os.getloadavg(),
        "assembly_s": log_seconds(server_log, r"assembled \S+ in ([\d.]+) s"),
        "load_s": log_seconds(server_log, r"loaded in ([\d.]+) s"),
        "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a built-in model (default: the server's default)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, help="STREAMCHAT_LOCAL_THREADS (default: all)")
    parser.add_argument("--fresh-cache", action="store_true", help="assemble the GGUF anew")
    result = bench(parser.parse_args())
    RESULTS.mkdir(exist_ok=True)
    name = f"local-{result['model']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    median = result["median"]
    print(f"model {result['model']} on {result['cpus']} CPUs, {len(result['runs'])} runs", end="")
    print(f" (load average after: {result['load_average_after'][0]:.1f})")
    print(f"start-up (to /healthz) {result['startup_s']:.1f} s", end="")
    if result["assembly_s"] is not None:
        print(f", of which assembling the GGUF {result['assembly_s']:.1f} s", end="")
    print(f"; model load {result['load_s']} s")
    print(f"first token (median) {median['first_token_s'] * 1000:.0f} ms")
    print(f"generation (median) {median['tokens_per_s']:.1f} tokens/s, {median['tokens']} tokens")
    print(f"RSS {result['rss_mb']:.0f} MB, peak {result['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
