"""What the metrics cost per token, in process: `python -m bench.metrics_cost`.

The `burst` scenario's CPU per token moves by ±2 µs between runs on a shared machine, more
than the metrics cost, so this times the meter alone: streams of `TOKENS` tokens through
`StreamMeter` (begin, a token each, the end) against the same loop without a meter; the
minimum over the rounds, which other processes disturb least.
"""

from __future__ import annotations

import time

from streamchat.metrics import Ending, Metrics

TOKENS = 200
STREAMS = 500
ROUNDS = 15


def _run(metrics: Metrics) -> float:
    """µs per token of STREAMS streams through `metrics`'s meters (none when it is off)."""
    started = time.perf_counter()
    for _ in range(STREAMS):
        meter = metrics.meter("native", "bench")
        if meter is not None:
            meter.begin()
        for _ in range(TOKENS):
            if meter is not None:
                meter.token(1)
        if meter is not None:
            meter.ended(Ending("stop", None, 10, TOKENS))
    return (time.perf_counter() - started) / STREAMS / TOKENS * 1e6


def main() -> None:
    """Print the cost per token with metrics on and off."""
    on, off = Metrics(enabled=True), Metrics(enabled=False)
    with_metrics = min(_run(on) for _ in range(ROUNDS))
    without = min(_run(off) for _ in range(ROUNDS))
    print(
        f"metrics on {with_metrics:.3f} µs/token, off {without:.3f} µs/token: "
        f"{with_metrics - without:.3f} µs/token added"
    )


if __name__ == "__main__":
    main()
