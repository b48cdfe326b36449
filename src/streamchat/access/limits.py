"""Fair use (DESIGN.md §8): requests per minute, tokens per minute and open streams, per key
(per uid when auth is off).

The counts (access/windows.py) are kept in this process, or in Redis when
`STREAMCHAT_REDIS_URL` is set, so that every node counts the same requests. Tokens are
known only once an answer ends, so each request reserves at admission what it may spend
(`reservation`: its prompt's estimate plus its `max_tokens`, or the operator's cap) and is
refused if that does not fit; its end settles the reservation to the real count (as OpenAI
counts `max_tokens` against the limit). Open streams are a count, not a rate, and so are
followers (resumes), with their own cap.

A refusal is 429 with `Retry-After`; OpenAI's `x-ratelimit-*` headers go on every chat
response that passed these checks, before its first byte.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field

from ..errors import Failure, Kind
from ..metrics import Metrics
from .ticket import Ticket
from .windows import (
    OK,
    REQUESTS,
    STREAMS,
    TOKENS,
    CountersUnavailable,
    LocalWindows,
    Verdict,
    Windows,
)

log = logging.getLogger(__name__)

_REFUSAL_KEYS = {
    REQUESTS: "rate_limited_requests",
    TOKENS: "rate_limited_tokens",
    STREAMS: "rate_limited_streams",
}


@dataclass(slots=True, frozen=True)
class Quota:
    """The limits that apply to one subject; 0: none."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    streams: int = 0

    def limit(self, refused: int) -> int:
        """The limit a refusal was for."""
        return {
            REQUESTS: self.requests_per_minute,
            TOKENS: self.tokens_per_minute,
            STREAMS: self.streams,
        }[refused]


@dataclass(slots=True)
class Charge:
    """One admitted chat request: what it is counted against, settled when it ends."""

    limiter: Limiter | None
    subject: str
    quota: Quota
    stream: str = field(default_factory=lambda: uuid.uuid4().hex)
    settled: bool = False
    reserved: int = 0
    """Tokens counted at admission, in `minute`, taken back when it settles."""
    minute: int = 0

    async def settle(self, tokens: int) -> None:
        """The request ended having used `tokens` (0: it never began): count them instead of
        its reservation, free its stream place. Once: a second call does nothing."""
        if self.limiter is not None and not self.settled:
            self.settled = True
            await self.limiter.settle(self, tokens)


FREE = Charge(None, "", Quota())


def reservation(prompt_chars: int, max_tokens: int | None, cap: int) -> int:
    """The tokens a request reserves at admission: its prompt, roughly (four characters a
    token, as the service's own estimate), and the most it may answer (its `max_tokens`, at
    most the operator's `cap`)."""
    answer = cap if max_tokens is None else min(max_tokens, cap)
    return prompt_chars // 4 + 1 + answer


class Limiter:
    """Counts and refuses per subject: a key's id, or `uid:N` with auth off."""

    def __init__(
        self,
        defaults: Quota,
        *,
        followers: int = 0,
        redis_url: str = "",
        key_prefix: str = "",
        redis_connections: int = 16,
        fail_closed: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self._defaults = defaults
        self._followers = followers
        self._metrics = metrics or Metrics(enabled=False)
        self._windows: Windows = _windows(redis_url, key_prefix, redis_connections, fail_closed)

    def quota(self, ticket: Ticket) -> Quota:
        """The subject's limits: its key's own where set, else the defaults."""
        own = ticket.principal.limits if ticket.principal is not None else None
        if own is None:
            return self._defaults
        return Quota(
            own.requests_per_minute or self._defaults.requests_per_minute,
            own.tokens_per_minute or self._defaults.tokens_per_minute,
            own.streams or self._defaults.streams,
        )

    async def admit(self, ticket: Ticket, uid: int | None, reserve: int = 0) -> Charge:
        """Count one chat request and reserve `reserve` tokens for it (see `reservation`),
        or raise a 429 `Failure`; the headers go on the ticket.

        When the counters cannot be reached (Redis down) the request is let through and
        the outage logged (the limits protect the service, they must not stop it), unless
        STREAMCHAT_LIMITS_UNREACHABLE is `closed`: then the counters refuse it (503).
        """
        quota = self.quota(ticket)
        if not (quota.requests_per_minute or quota.tokens_per_minute or quota.streams):
            return FREE
        charge = Charge(self, _subject(ticket, uid), quota)
        verdict = await self._count(charge, reserve)
        if verdict is None:
            return FREE
        if quota.tokens_per_minute:  # what the counters added (windows.py caps it alike)
            charge.reserved = max(1, min(reserve, quota.tokens_per_minute))
            charge.minute = verdict.minute
        _headers(ticket, quota, verdict)
        if verdict.refused != OK:
            self._metrics.rate_limited()
            limit = quota.limit(verdict.refused)
            raise Failure(
                Kind.RATE_LIMITED,
                _REFUSAL_KEYS[verdict.refused],
                retry_after=max(1, math.ceil(verdict.reset_seconds)),
                limit=limit,
            )
        return charge

    async def follow(self, ticket: Ticket, uid: int | None) -> Charge:
        """Count one follower (a resume) of the key, or raise a 429 `Failure`; settle the
        charge when it stops following."""
        if not self._followers or (ticket.principal is None and uid is None):
            return FREE  # with auth off, a resume naming no uid is nobody's to count
        quota = Quota(streams=self._followers)
        charge = Charge(self, _subject(ticket, uid) + ":f", quota)
        verdict = await self._count(charge, 0)
        if verdict is None:
            return FREE
        if verdict.refused != OK:
            self._metrics.rate_limited()
            raise Failure(
                Kind.RATE_LIMITED,
                "rate_limited_followers",
                retry_after=1,
                limit=self._followers,
            )
        return charge

    async def _count(self, charge: Charge, reserve: int) -> Verdict | None:
        """Ask the counters; None when they are out of reach."""
        quota = charge.quota
        try:
            return await self._windows.admit(
                charge.subject,
                charge.stream,
                quota.requests_per_minute,
                quota.tokens_per_minute,
                quota.streams,
                reserve,
            )
        except (CountersUnavailable, OSError) as exc:
            log.warning("limits not counted (the counters are out of reach): %s", exc)
            return None

    async def settle(self, charge: Charge, tokens: int) -> None:
        """Count the tokens an admitted request used in place of its reservation; free its
        open-stream place."""
        try:
            await self._windows.settle(
                charge.subject, charge.stream, tokens, charge.reserved, charge.minute
            )
        except (CountersUnavailable, OSError) as exc:
            log.warning("usage of %s not counted: %s", charge.subject, exc)

    async def close(self) -> None:
        """Close the connections to the counters."""
        await self._windows.aclose()


def _subject(ticket: Ticket, uid: int | None) -> str:
    """Whom a request is counted for: its key, or its uid with auth off."""
    principal = ticket.principal
    return f"key:{principal.key_id}" if principal is not None else f"uid:{uid or 0}"


def _windows(redis_url: str, key_prefix: str, connections: int, fail_closed: bool) -> Windows:
    """The counters: in Redis when it is configured (imported only then), else in-process."""
    if not redis_url:
        return LocalWindows()
    from .redis_windows import RedisWindows

    return RedisWindows(redis_url, key_prefix, max_connections=connections, fail_closed=fail_closed)


def _headers(ticket: Ticket, quota: Quota, verdict: Verdict) -> None:
    """OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` on the response."""
    reset = _duration(verdict.reset_seconds).encode()
    for what, limit, left in (
        ("requests", quota.requests_per_minute, verdict.requests_left),
        ("tokens", quota.tokens_per_minute, verdict.tokens_left),
    ):
        if limit:
            ticket.headers += [
                (b"x-ratelimit-limit-" + what.encode(), str(limit).encode()),
                (b"x-ratelimit-remaining-" + what.encode(), str(max(left, 0)).encode()),
                (b"x-ratelimit-reset-" + what.encode(), reset),
            ]


def _duration(seconds: float) -> str:
    """OpenAI's form of a reset time: `1s`, `6m0s`, `850ms`."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 0)}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
