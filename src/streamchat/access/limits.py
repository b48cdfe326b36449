"""Fair use (DESIGN.md §8): requests per minute, tokens per minute and open streams, per key
(per uid when auth is off).

Windows are counted by the `limits` library (sliding window counters): in this process, or
in Redis when `STREAMCHAT_REDIS_URL` is set, so that every node counts the same requests.
Tokens are known only once an answer ends: they are added then, and a key whose window is
spent is refused its next request (as OpenAI and LiteLLM do). Open streams are a count, not
a rate: a set per key (in Redis a sorted set whose entries expire, so a node that dies
cannot hold a key's streams for ever).

A refusal is 429 with `Retry-After`; OpenAI's `x-ratelimit-*` headers go on every chat
response that passed these checks, before its first byte.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as redis
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from ..errors import Failure, Kind
from .ticket import Ticket

log = logging.getLogger(__name__)

# How long an open stream counts if its end is never reported (its node died).
STREAM_LEASE_SECONDS = 900.0


@dataclass(slots=True, frozen=True)
class Quota:
    """The limits that apply to one subject; 0: none."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    streams: int = 0


class StreamCounter(Protocol):
    """Open streams per subject."""

    async def open(self, subject: str, stream: str, limit: int) -> bool:
        """Count `stream` open for `subject`, unless `limit` are already; False then."""
        ...

    async def close(self, subject: str, stream: str) -> None:
        """`stream` has ended."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class LocalStreams:
    """Open streams counted in this process."""

    def __init__(self) -> None:
        self._open: dict[str, set[str]] = {}

    async def open(self, subject: str, stream: str, limit: int) -> bool:
        """Count `stream` open for `subject`, unless `limit` are already."""
        streams = self._open.setdefault(subject, set())
        if len(streams) >= limit:
            return False
        streams.add(stream)
        return True

    async def close(self, subject: str, stream: str) -> None:
        """`stream` has ended."""
        streams = self._open.get(subject)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._open[subject]

    async def aclose(self) -> None:
        """Nothing to release."""


# KEYS: the subject's sorted set. ARGV: now, lease expiry, limit, stream.
_OPEN = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[4])
redis.call('expire', KEYS[1], math.ceil(ARGV[2] - ARGV[1]))
return 1
"""


class RedisStreams:
    """Open streams counted in Redis, shared by every node."""

    def __init__(self, url: str, key_prefix: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._prefix = key_prefix + "streams:"
        self._open = self._client.register_script(_OPEN)

    async def open(self, subject: str, stream: str, limit: int) -> bool:
        """Count `stream` open for `subject`, unless `limit` are already."""
        now = time.time()
        args: list[float | int | str] = [now, now + STREAM_LEASE_SECONDS, limit, stream]
        return bool(await self._open(keys=[self._prefix + subject], args=args))

    async def close(self, subject: str, stream: str) -> None:
        """`stream` has ended."""
        await self._client.zrem(self._prefix + subject, stream)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


@dataclass(slots=True)
class Charge:
    """One admitted chat request: what it is counted against, settled when it ends."""

    limiter: Limiter | None
    subject: str
    quota: Quota
    stream: str = field(default_factory=lambda: uuid.uuid4().hex)
    counted: bool = False  # holds an open-stream place

    async def settle(self, tokens: int) -> None:
        """The request ended having used `tokens`: count them, free its stream place."""
        if self.limiter is not None:
            await self.limiter.settle(self, tokens)


FREE = Charge(None, "", Quota())


class Limiter:
    """Counts and refuses per subject: a key's id, or `uid:N` with auth off."""

    def __init__(self, defaults: Quota, *, redis_url: str = "", key_prefix: str = "") -> None:
        self._defaults = defaults
        storage: Storage
        if redis_url:
            uri = "async+" + redis_url.replace("rediss://", "redis+ssl://", 1)
            storage = RedisStorage(
                uri, implementation="redispy", key_prefix=key_prefix + "rl", wrap_exceptions=True
            )
            self._streams: StreamCounter = RedisStreams(redis_url, key_prefix)
        else:
            storage = MemoryStorage()
            self._streams = LocalStreams()
        self._window = SlidingWindowCounterRateLimiter(storage)

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

    async def admit(self, ticket: Ticket, uid: int | None) -> Charge:
        """Count one chat request, or raise a 429 `Failure`; the headers go on the ticket.

        When the counters cannot be reached (Redis down) the request is let through and
        the outage logged: the limits protect the service, they must not stop it.
        """
        try:
            return await self._admit(ticket, uid)
        except (RedisError, OSError, StorageError) as exc:
            log.warning("limits not counted (the counters are out of reach): %s", exc)
            return FREE

    async def _admit(self, ticket: Ticket, uid: int | None) -> Charge:
        principal = ticket.principal
        subject = f"key:{principal.key_id}" if principal is not None else f"uid:{uid or 0}"
        quota = self.quota(ticket)
        charge = Charge(self, subject, quota)
        if quota.requests_per_minute:
            await self._count_request(ticket, subject, quota.requests_per_minute)
        if quota.tokens_per_minute:
            await self._check_tokens(ticket, subject, quota.tokens_per_minute)
        if quota.streams:
            if not await self._streams.open(subject, charge.stream, quota.streams):
                raise Failure(
                    Kind.RATE_LIMITED, "rate_limited_streams", retry_after=1, limit=quota.streams
                )
            charge.counted = True
        return charge

    async def settle(self, charge: Charge, tokens: int) -> None:
        """Count the tokens an admitted request used; free its open-stream place."""
        try:
            await self._settle(charge, tokens)
        except (RedisError, OSError, StorageError) as exc:
            log.warning("usage of %s not counted: %s", charge.subject, exc)

    async def close(self) -> None:
        """Close the connections to the counters."""
        await self._streams.aclose()

    async def _settle(self, charge: Charge, tokens: int) -> None:
        if charge.counted:
            charge.counted = False
            await self._streams.close(charge.subject, charge.stream)
        if charge.quota.tokens_per_minute and tokens > 0:
            item = RateLimitItemPerMinute(charge.quota.tokens_per_minute)
            # hit() refuses (and counts nothing) past the limit: count what fits, then the
            # window is spent and the next request is refused until it slides.
            if not await self._window.hit(item, charge.subject, "tokens", cost=tokens):
                stats = await self._window.get_window_stats(item, charge.subject, "tokens")
                if stats.remaining > 0:
                    await self._window.hit(item, charge.subject, "tokens", cost=stats.remaining)

    async def _count_request(self, ticket: Ticket, subject: str, limit: int) -> None:
        item = RateLimitItemPerMinute(limit)
        allowed = await self._window.hit(item, subject, "requests")
        stats = await self._window.get_window_stats(item, subject, "requests")
        _headers(ticket, "requests", limit, stats.remaining, stats.reset_time)
        if not allowed:
            raise Failure(
                Kind.RATE_LIMITED,
                "rate_limited_requests",
                retry_after=_seconds_until(stats.reset_time),
                limit=limit,
            )

    async def _check_tokens(self, ticket: Ticket, subject: str, limit: int) -> None:
        item: RateLimitItem = RateLimitItemPerMinute(limit)
        stats = await self._window.get_window_stats(item, subject, "tokens")
        _headers(ticket, "tokens", limit, stats.remaining, stats.reset_time)
        if stats.remaining <= 0:
            raise Failure(
                Kind.RATE_LIMITED,
                "rate_limited_tokens",
                retry_after=_seconds_until(stats.reset_time),
                limit=limit,
            )


def _seconds_until(moment: float) -> int:
    return max(1, math.ceil(moment - time.time()))


def _headers(ticket: Ticket, what: str, limit: int, remaining: int, reset: float) -> None:
    """OpenAI's `x-ratelimit-{limit,remaining,reset}-{what}` on the ticket's response."""
    ticket.headers += [
        (f"x-ratelimit-limit-{what}".encode(), str(limit).encode()),
        (f"x-ratelimit-remaining-{what}".encode(), str(max(remaining, 0)).encode()),
        (f"x-ratelimit-reset-{what}".encode(), _duration(reset - time.time()).encode()),
    ]


def _duration(seconds: float) -> str:
    """OpenAI's form of a reset time: `1s`, `6m0s`, `850ms`."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 0)}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
