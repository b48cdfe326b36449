"""The per-minute windows and open-stream counts in Redis, shared by every node (the
algorithm is windows.py's): one Lua script per request, one more to settle it.

Its own module so that a single node, counting in-process, never imports redis-py.

The client is bounded (STREAMCHAT_REDIS_MAX_CONNECTIONS) and a script waits its turn for a
connection, up to the Redis timeout: redis-py's default pool opened up to 100 and then
failed, and the limiter took that failure for Redis being down and let the request through
uncounted (200 of 300 in a burst on a 5-stream limit). A request that waits out its turn is
refused as busy (503), never let through. Redis itself out of reach is the operator's choice
(STREAMCHAT_LIMITS_UNREACHABLE): `open`, let requests through uncounted, or `closed`, refuse
them. A settle that fails is retried (with backoff, for `SETTLE_SECONDS`): an open-stream
place it leaves behind counts against its key for the whole lease (15 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ..errors import Failure, Kind
from .windows import STREAM_LEASE_SECONDS, STREAMS, WINDOW_SECONDS, CountersUnavailable, Verdict

log = logging.getLogger(__name__)

# How long a settle is retried, by default, with backoff from 0.1 s up to 5 s between tries.
SETTLE_SECONDS = 120.0

# KEYS: requests base, tokens base, open streams (sorted set).
# ARGV: now, window, request limit, token limit, stream limit, stream id, lease seconds,
# tokens to reserve. Returns {refused, requests left, tokens left, minute}.
_ADMIT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local minute = math.floor(now / window)
local weight = 1 - (now - minute * window) / window
local function estimate(base)
  local current = tonumber(redis.call('get', base .. ':' .. minute) or '0')
  local previous = tonumber(redis.call('get', base .. ':' .. (minute - 1)) or '0')
  return previous * weight + current
end
local rlimit, tlimit, slimit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local rleft, tleft = 0, 0
if rlimit > 0 then
  local used = estimate(KEYS[1])
  if used + 1 > rlimit then return {1, 0, 0, minute} end
  rleft = math.floor(rlimit - used - 1)
end
local reserve = 0
if tlimit > 0 then
  local spent = estimate(KEYS[2])
  reserve = math.max(1, math.min(tonumber(ARGV[8]), tlimit))
  if spent + reserve > tlimit then
    return {2, rleft, math.max(math.floor(tlimit - spent), 0), minute}
  end
  tleft = math.floor(tlimit - spent - reserve)
end
if slimit > 0 then
  redis.call('zremrangebyscore', KEYS[3], '-inf', now)
  if redis.call('zcard', KEYS[3]) >= slimit then return {3, rleft, tleft, minute} end
  redis.call('zadd', KEYS[3], now + tonumber(ARGV[7]), ARGV[6])
  redis.call('expire', KEYS[3], math.ceil(tonumber(ARGV[7])))
end
if rlimit > 0 then
  local key = KEYS[1] .. ':' .. minute
  redis.call('incr', key)
  redis.call('expire', key, math.ceil(window * 2))
end
if reserve > 0 then
  local key = KEYS[2] .. ':' .. minute
  redis.call('incrby', key, reserve)
  redis.call('expire', key, math.ceil(window * 2))
end
return {0, rleft, tleft, minute}
"""

# KEYS: tokens base, open streams. ARGV: now, window, stream id, tokens, tokens reserved,
# the minute they were reserved in.
_SETTLE = """
redis.call('zrem', KEYS[2], ARGV[3])
local reserved = tonumber(ARGV[5])
if reserved > 0 then
  local key = KEYS[1] .. ':' .. ARGV[6]
  if redis.call('exists', key) == 1 and redis.call('decrby', key, reserved) < 0 then
    redis.call('set', key, 0, 'KEEPTTL')
  end
end
local tokens = tonumber(ARGV[4])
if tokens > 0 then
  local key = KEYS[1] .. ':' .. math.floor(tonumber(ARGV[1]) / tonumber(ARGV[2]))
  redis.call('incrby', key, tokens)
  redis.call('expire', key, math.ceil(tonumber(ARGV[2]) * 2))
end
return 1
"""


class RedisWindows:
    """The counters in Redis, shared by every node: one script per request."""

    def __init__(
        self,
        url: str,
        key_prefix: str,
        *,
        timeout: float = 2.0,
        max_connections: int = 16,
        fail_closed: bool = False,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._client = redis.Redis.from_pool(pool)
        # Turns for the pool's connections: waiting for one is told apart from Redis failing.
        self._turns = asyncio.Semaphore(max_connections)
        self._timeout = timeout
        self._fail_closed = fail_closed
        self._settle_seconds = settle_seconds
        self._prefix = key_prefix + "limits:"
        self._admit = self._client.register_script(_ADMIT)
        self._settle = self._client.register_script(_SETTLE)

    def _keys(self, subject: str) -> list[str]:
        base = self._prefix + subject
        return [base + ":r", base + ":t", base + ":s"]

    async def admit(
        self, subject: str, stream: str, requests: int, tokens: int, streams: int, reserve: int
    ) -> Verdict:
        """Count one request and its token reservation for `subject` within the limits, or
        refuse it; `CountersUnavailable` when Redis fails."""
        now = time.time()
        args: list[float | int | str] = [
            now,
            WINDOW_SECONDS,
            requests,
            tokens,
            streams,
            stream,
            STREAM_LEASE_SECONDS,
            reserve,
        ]
        try:
            answer = await self._call(self._admit, self._keys(subject), args)
        except CountersUnavailable as exc:
            if self._fail_closed:
                log.warning("request refused: the limits cannot be counted: %s", exc)
                raise Failure(Kind.BUSY, "server_busy", retry_after=5, detail=str(exc)) from exc
            raise
        refused, requests_left, tokens_left, minute = answer
        reset = 1.0 if refused == STREAMS else WINDOW_SECONDS - now % WINDOW_SECONDS
        return Verdict(int(refused), int(requests_left), int(tokens_left), reset, int(minute))

    async def settle(
        self, subject: str, stream: str, tokens: int, reserved: int, minute: int
    ) -> None:
        """Free the stream's place; take the reservation back; add the tokens to this minute."""
        _, token_key, stream_key = self._keys(subject)
        args: list[float | int | str] = [
            time.time(),
            WINDOW_SECONDS,
            stream,
            tokens,
            reserved,
            minute,
        ]
        deadline = time.monotonic() + self._settle_seconds
        pause = 0.1
        while True:
            try:
                await self._call(self._settle, [token_key, stream_key], args)
                return
            except (CountersUnavailable, Failure) as exc:
                if time.monotonic() + pause > deadline:
                    raise CountersUnavailable(f"not settled: {exc}") from exc
                log.debug("settle of %s failed, trying again: %s", subject, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def _call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run `script` once a connection is free; `CountersUnavailable` when Redis fails,
        a busy `Failure` when no connection came in time."""
        async with self._turn():
            try:
                return await script(keys=keys, args=args)
            except RedisError as exc:
                raise CountersUnavailable(str(exc)) from exc

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout):
                await self._turns.acquire()
        except TimeoutError:
            # Every connection busy for the whole wait: Redis is slow or the burst is large.
            # Not "unreachable": letting the request through uncounted would open the limit.
            raise Failure(Kind.BUSY, "server_busy", retry_after=1, detail="limits busy") from None
        try:
            yield
        finally:
            self._turns.release()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
