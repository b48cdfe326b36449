"""What one engine step costs: three answers generating and k prompt tokens of a fourth.

`python -m bench.engine_steps MODEL.gguf [k,k,…] [repeats]` loads the model twice in this
process, with 1 and 2 threads, and times `NativeModel.decode` of such batches, every
(threads, k) pair once per round so that a machine slowing down for a while slows all of
them. It prints the median of each, and what copying a sequence's cache adds to a step
(`NativeModel.copy`). The figures behind the prompt chunk and thread defaults (issue 27,
docs/performance.md).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from streamchat.providers.llamacpp import NativeModel

HISTORY = 200  # tokens each answer's sequence holds
PUBLIC = 24  # the prefix the fourth sequence keeps (the system prompt's size)


def step(model: NativeModel, text: list[int], k: int) -> float:
    """Seconds for one decode of three answers' next tokens and k prompt tokens."""
    model.forget(3, PUBLIC)
    entries = [(text[HISTORY], HISTORY, seq, True) for seq in range(3)]
    entries += [(text[PUBLIC + i], PUBLIC + i, 3, i == k - 1) for i in range(k)]
    return _timed(model, entries)


def copy_cost(model: NativeModel, text: list[int]) -> float:
    """Seconds a copy of sequence 0's cache adds to a one-token decode of the target."""
    entry = [(text[PUBLIC], PUBLIC, 3, True)]
    model.forget(3, PUBLIC)
    alone = _timed(model, entry)
    model.copy(0, 3, PUBLIC)
    return _timed(model, entry) - alone


def _timed(model: NativeModel, entries: list[tuple[int, int, int, bool]]) -> float:
    started = time.perf_counter()
    if model.decode(entries) != 0:
        raise SystemExit("llama_decode failed")
    took = time.perf_counter() - started
    for seq in range(3):
        model.forget(seq, HISTORY)  # the answers' tokens just decoded, if any
    return took


def main(path: Path, ks: list[int], repeats: int) -> None:
    models = {
        threads: NativeModel(path, context_tokens=4096, slots=4, threads=threads)
        for threads in (1, 2)
    }
    text = models[1].tokenize("Write a short story about a lighthouse keeper. " * 40, special=False)
    for model in models.values():
        for seq in range(4):
            model.decode([(t, i, seq, i == HISTORY - 1) for i, t in enumerate(text[:HISTORY])])
    times: dict[tuple[int, int], list[float]] = {(t, k): [] for t in models for k in ks}
    copies: dict[int, list[float]] = {t: [] for t in models}
    loads = []
    for _ in range(repeats):
        loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
        for k in ks:
            for threads, model in models.items():
                times[threads, k].append(step(model, text, k))
        for threads, model in models.items():
            copies[threads].append(copy_cost(model, text))
    print(f"load average {min(loads):.2f}–{max(loads):.2f}; medians of {repeats}")
    for threads in models:
        row = "  ".join(f"{k}: {statistics.median(times[threads, k]) * 1000:.0f}" for k in ks)
        copy = statistics.median(copies[threads]) * 1000
        print(f"{threads} thread(s), ms per step by prompt tokens  {row};  a copy adds {copy:.0f}")
    for model in models.values():
        model.close()


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        [int(k) for k in (sys.argv[2] if len(sys.argv) > 2 else "0,8,16,32,64,128,256").split(",")],
        int(sys.argv[3]) if len(sys.argv) > 3 else 7,
    )
