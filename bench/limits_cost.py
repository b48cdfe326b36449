"""What the token reservation costs per token, in process: `python -m bench.limits_cost`.

As with the metrics (metrics_cost.py), the `burst` scenario's CPU per token moves by more
between two runs on a shared machine than this costs, so this times the in-process limiter
alone: one chat request's admission and settling, with a tokens-a-minute limit (its
reservation computed, counted and settled to the real count) against the same limits
without one (requests and open streams only), per request and per token of a `TOKENS`-token
answer; the minimum over the rounds, which other processes disturb least.
"""

from __future__ import annotations

import asyncio
import time

from streamchat.access.limits import Limiter, Quota, reservation
from streamchat.access.ticket import Api, Principal, Ticket

TOKENS = 200
REQUESTS = 20_000
ROUNDS = 10
HIGH = 10**9  # far above the load: nothing is refused, everything is counted


async def _run(limiter: Limiter) -> float:
    """µs per request of REQUESTS admissions and settlements by `limiter`."""
    ticket = Ticket("POST", "/api/chat", Api.NATIVE)
    ticket.principal = Principal(uid=1, kind="service", key_id=1, key_prefix="sc-bench")
    started = time.perf_counter()
    for _ in range(REQUESTS):
        ticket.headers = []
        charge = await limiter.admit(ticket, 1, reservation(40, None, 1024))
        await charge.settle(TOKENS + 10)
    return (time.perf_counter() - started) / REQUESTS * 1e6


async def main() -> None:
    """Print the cost of the reservation per request and per token."""
    reserving = Limiter(Quota(HIGH, HIGH, HIGH))
    counting = Limiter(Quota(HIGH, 0, HIGH))
    with_tokens = min([await _run(reserving) for _ in range(ROUNDS)])
    without = min([await _run(counting) for _ in range(ROUNDS)])
    added = with_tokens - without
    print(
        f"limiter per request: {with_tokens:.2f} µs with a tokens limit, {without:.2f} µs "
        f"without; the reservation adds {added:.2f} µs, {added / TOKENS:.4f} µs per token "
        f"of a {TOKENS}-token answer (the whole limiter: {with_tokens / TOKENS:.4f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
