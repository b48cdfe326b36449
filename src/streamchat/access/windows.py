"""Per-minute windows and open-stream counts behind the limits (access/limits.py).

Sliding window counters, as Cloudflare describes them and the `limits` library implements
them: a count per fixed minute, and the estimate of the last sixty seconds is the current
minute's count plus the previous minute's, weighted by how much of it still overlaps. Two
integers per subject and minute, exact enough for fair use, and cheap.

Written here rather than taken from `limits` (5.8), measured on this machine: its
in-process storage cost 139 µs per chat request (hit and window stats for requests and
tokens, settle), and its Redis storage 6.6 ms, five or six round trips. Here one request is
one dictionary lookup in-process, or one Lua script (one round trip) in Redis, and settling
is one more, off the request's path. The Redis counters are in redis_windows.py, imported
only when Redis is configured.

Tokens are reserved at admission (issue 23): a request is admitted only if its reservation
(its prompt's estimate and the most it may answer) fits in what the window has left, and the
reservation is counted at once, so a burst of parallel requests cannot all pass before any
has ended. When it ends the reservation is taken back from the minute it was made in and
the tokens really used are counted in the current one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

WINDOW_SECONDS = 60.0
# How long an open stream counts if its end is never reported (its node died).
STREAM_LEASE_SECONDS = 900.0
# Subjects remembered in-process before the stale ones are swept.
_SWEEP_AT = 10_000

OK, REQUESTS, TOKENS, STREAMS = 0, 1, 2, 3


@dataclass(slots=True, frozen=True)
class Verdict:
    """What a check found: `refused` (OK, REQUESTS, TOKENS or STREAMS), the requests and
    tokens left in the window (after this request), and when the window is whole again."""

    refused: int
    requests_left: int
    tokens_left: int
    reset_seconds: float
    minute: int = 0
    """The minute the reservation was counted in (for settling it)."""


class CountersUnavailable(Exception):
    """The counters could not be reached (Redis down): the request is not counted."""


class Windows(Protocol):
    """Counts per subject: requests and tokens a minute, open streams."""

    async def admit(
        self, subject: str, stream: str, requests: int, tokens: int, streams: int, reserve: int
    ) -> Verdict:
        """Count one request for `subject` within the limits (0: none), with `reserve` tokens
        (capped at the limit), or refuse it; `CountersUnavailable` (or `OSError`) when they
        cannot be reached."""
        ...

    async def settle(
        self, subject: str, stream: str, tokens: int, reserved: int, minute: int
    ) -> None:
        """The request with `stream` ended having used `tokens`; `reserved` tokens counted
        in `minute` at its admission are taken back."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class LocalWindows:
    """The counters of one process."""

    def __init__(self) -> None:
        # (subject, "r" | "t") -> [minute, previous minute's count, this minute's count]
        self._counts: dict[tuple[str, str], list[int]] = {}
        self._open: dict[str, set[str]] = {}

    def _estimate(
        self, key: tuple[str, str], minute: int, elapsed: float
    ) -> tuple[list[int], float]:
        entry = self._counts.get(key)
        if entry is None:
            if len(self._counts) >= _SWEEP_AT:
                self._sweep(minute)
            entry = self._counts[key] = [minute, 0, 0]
        elif entry[0] != minute:
            entry[1] = entry[2] if entry[0] == minute - 1 else 0
            entry[0], entry[2] = minute, 0
        weight = 1.0 - elapsed / WINDOW_SECONDS
        return entry, entry[1] * weight + entry[2]

    def _sweep(self, minute: int) -> None:
        stale = [key for key, entry in self._counts.items() if entry[0] < minute - 1]
        for key in stale:
            del self._counts[key]

    async def admit(
        self, subject: str, stream: str, requests: int, tokens: int, streams: int, reserve: int
    ) -> Verdict:
        """Count one request and its token reservation for `subject` within the limits, or
        refuse it."""
        now = time.time()
        minute = int(now // WINDOW_SECONDS)
        elapsed = now - minute * WINDOW_SECONDS
        reset = WINDOW_SECONDS - elapsed
        requests_left = tokens_left = 0
        if requests:
            entry, used = self._estimate((subject, "r"), minute, elapsed)
            if used + 1 > requests:
                return Verdict(REQUESTS, 0, 0, reset)
            requests_left = math.floor(requests - used - 1)
        if tokens:
            spending, spent = self._estimate((subject, "t"), minute, elapsed)
            # At least one token: a request that reserves nothing still needs room.
            reserve = max(1, min(reserve, tokens))
            if spent + reserve > tokens:
                return Verdict(TOKENS, requests_left, max(math.floor(tokens - spent), 0), reset)
            tokens_left = math.floor(tokens - spent - reserve)
        if streams:
            open_ = self._open.setdefault(subject, set())
            if len(open_) >= streams:
                return Verdict(STREAMS, requests_left, tokens_left, 1.0)
            open_.add(stream)
        if requests:
            entry[2] += 1
        if tokens:
            spending[2] += reserve
        return Verdict(OK, requests_left, tokens_left, reset, minute)

    async def settle(
        self, subject: str, stream: str, tokens: int, reserved: int, minute: int
    ) -> None:
        """Free the stream's place; take the reservation back; add the tokens to this minute."""
        open_ = self._open.get(subject)
        if open_ is not None:
            open_.discard(stream)
            if not open_:
                del self._open[subject]
        if tokens <= 0 and reserved <= 0:
            return
        now = time.time()
        current = int(now // WINDOW_SECONDS)
        entry, _ = self._estimate((subject, "t"), current, now - current * WINDOW_SECONDS)
        if reserved > 0:
            if minute == current:
                entry[2] = max(entry[2] - reserved, 0)
            elif minute == current - 1:  # reserved last minute: that is now the previous count
                entry[1] = max(entry[1] - reserved, 0)
        entry[2] += max(tokens, 0)

    async def aclose(self) -> None:
        """Nothing to release."""
