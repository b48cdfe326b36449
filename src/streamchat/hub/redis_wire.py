"""What streamchat keeps in Redis, and how: keys, entry ids, live messages, scripts, clients.

Per stream (the `{id}` hash tag keeps a stream's keys together; a writer round touches many
streams, so one Redis primary is assumed, not Redis Cluster):

- `<prefix>{id}:events` — a Redis Stream; event `i` is entry `i-1`, field `d` its payload,
  field `e` on the last one. Explicit ids make a retried write idempotent: Redis refuses an
  id at or below the top, so a batch sent twice after a connection blip cannot duplicate or
  reorder anything.
- `<prefix>{id}:meta` — a hash: `owner` (the writing node), `ended`, `cancel`, `reaped`
  (the node that ended it for a dead owner: no write of the owner's is taken after that),
  and one `f:<node>` follower count per node following it from elsewhere.
- `<prefix>{id}:live` — a pub/sub channel carrying each written batch to following nodes.

Per node: `<prefix>node:<node>` — the channel on which the writing node hears `cancel <id>`
and `idle <id>` from the others; `<prefix>alive:<node>`, `<prefix>streams:<node>`,
`<prefix>dead:<node>` and the set `<prefix>nodes`, for noticing dead nodes (redis_nodes.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as redis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .base import Batch, HubUnavailable

T = TypeVar("T")

# What "Redis is out of reach" looks like (a server still loading its data counts too).
REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
)

# What makes a write fail: the above, or Redis refusing it (out of memory, say).
WRITE_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, redis_errors.ResponseError)

END_FIELD = b"e"
DATA_FIELD = b"d"


class Keys:
    """The names of one deployment's keys and channels, under a common prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.node_prefix = f"{prefix}node:"

    def events(self, stream_id: str) -> str:
        """The Redis Stream holding the events."""
        return f"{self.prefix}{{{stream_id}}}:events"

    def meta(self, stream_id: str) -> str:
        """The hash with the owner, end and cancel flags, and follower counts."""
        return f"{self.prefix}{{{stream_id}}}:meta"

    def live(self, stream_id: str) -> str:
        """The channel that carries batches as they are written."""
        return f"{self.prefix}{{{stream_id}}}:live"

    def node(self, node_id: str) -> str:
        """The channel a node hears control messages on."""
        return f"{self.node_prefix}{node_id}"

    def alive(self, node_id: str) -> str:
        """The key that exists while `node_id` beats (redis_nodes.py)."""
        return f"{self.prefix}alive:{node_id}"

    def written_by(self, node_id: str) -> str:
        """The set of the unfinished streams `node_id` writes, as it last said."""
        return f"{self.prefix}streams:{node_id}"

    def dead(self, node_id: str) -> str:
        """Taken (SET NX) by the node that ends the streams of `node_id`, once dead."""
        return f"{self.prefix}dead:{node_id}"

    @property
    def nodes(self) -> str:
        """The set of the nodes that write streams, alive or not yet found dead."""
        return f"{self.prefix}nodes"


def entry_id(index: int) -> str:
    """The Redis Stream entry id of event `index` (`0-0` is not a valid id, `0-1` is)."""
    return f"{index}-1"


def entry_index(entry: bytes) -> int:
    """The event index of a Redis Stream entry id."""
    return int(entry.partition(b"-")[0])


def encode_batch(batch: Batch) -> bytes:
    """A live message: `<first> <ended> <len>,<len>…` on one line, then the payloads."""
    lengths = b",".join(b"%d" % len(p) for p in batch.payloads)
    return b"%d %d %b\n%b" % (batch.first_index, batch.ended, lengths, b"".join(batch.payloads))


def decode_batch(message: bytes) -> Batch:
    """The batch a live message carries. Raises ValueError on a malformed message."""
    head, _, body = message.partition(b"\n")
    first, ended, lengths = head.split(b" ")
    payloads: list[bytes] = []
    offset = 0
    for length in (int(n) for n in lengths.split(b",") if n):
        payloads.append(body[offset : offset + length])
        offset += length
    if offset != len(body):
        raise ValueError("live message length mismatch")
    return Batch(int(first), payloads, ended == b"1")


# One writer round: every dirty stream of a node in one command (one round trip, one reply).
# KEYS: events, meta of each stream. ARGV: owner, ttl ms, max events, then per stream:
# live channel, first index, count, flags (1: ends, 2: first round), live message, owner uid
# ("" for none), payloads.
# Returns per stream: 1 written, 0 vanished (to be written again from 0), 2 reaped (another
# node ended it, taking this one for dead: nothing more is written), or an error text.
FLUSH = """
local owner, ttl, maxlen = ARGV[1], ARGV[2], ARGV[3]
local results = {}
local a = 4
for k = 1, #KEYS, 2 do
  local events, meta = KEYS[k], KEYS[k + 1]
  local live, first, count = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local flags, message, uid = tonumber(ARGV[a + 3]), ARGV[a + 4], ARGV[a + 5]
  local ends, fresh = flags % 2 == 1, flags >= 2
  a = a + 6
  local result = 1
  if redis.call('hexists', meta, 'reaped') == 1 then
    result = 2
  elseif not fresh and redis.call('exists', events) == 0 then
    result = 0
  else
    if fresh then redis.call('hset', meta, 'owner', owner, 'uid', uid) end
    for i = 0, count - 1 do
      local id = string.format('%d-1', first + i)
      local r
      if ends and i == count - 1 then
        r = redis.pcall('xadd', events, 'MAXLEN', '~', maxlen, id, 'd', ARGV[a + i], 'e', '1')
      else
        r = redis.pcall('xadd', events, 'MAXLEN', '~', maxlen, id, 'd', ARGV[a + i])
      end
      -- An id at or below the top: this round was sent before and did arrive.
      if type(r) == 'table' and r.err and not string.find(r.err, 'equal or smaller', 1, true) then
        result = r.err
      end
    end
    if ends then redis.call('hset', meta, 'ended', '1') end
    if fresh or ends then
      redis.call('pexpire', events, ttl)
      redis.call('pexpire', meta, ttl)
    end
    if count > 0 then redis.call('publish', live, message) end
  end
  a = a + count
  results[#results + 1] = result
end
return results
"""

# Ends a stream whose writing node stopped beating, as that node would have, unless it has
# ended, or its node beats again, or it grew since it was read (then read it again).
# KEYS: events, meta, the owner's alive key. ARGV: this node, the final event's index, the
# final event ("": none, only the flag), the live channel, the live message, ttl ms.
# Returns 1 ended here, 0 ended already, 2 its node beats again, -1 grew meanwhile.
REAP = """
if redis.call('hexists', KEYS[2], 'ended') == 1 then return 0 end
if redis.call('exists', KEYS[3]) == 1 then return 2 end
local top = redis.call('xrevrange', KEYS[1], '+', '-', 'COUNT', 1)
local next_index = 0
if #top > 0 then next_index = tonumber(string.match(top[1][1], '^(%d+)')) + 1 end
if next_index ~= tonumber(ARGV[2]) then return -1 end
if ARGV[3] ~= '' then
  redis.call('xadd', KEYS[1], string.format('%d-1', tonumber(ARGV[2])), 'd', ARGV[3], 'e', '1')
  redis.call('publish', ARGV[4], ARGV[5])
end
redis.call('hset', KEYS[2], 'ended', '1', 'reaped', ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[6])
redis.call('pexpire', KEYS[2], ARGV[6])
return 1
"""

# KEYS: meta. ARGV: follower field, delta, node channel prefix, stream id.
# Returns nil for an unknown stream, else {followers on all nodes, ended}; tells the owner
# when the last follower elsewhere leaves an unfinished stream.
FOLLOW = """
if redis.call('exists', KEYS[1]) == 0 then return false end
local n = redis.call('hincrby', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('hdel', KEYS[1], ARGV[1]) end
local fields = redis.call('hgetall', KEYS[1])
local total, owner, ended = 0, false, 0
for i = 1, #fields, 2 do
  local k = fields[i]
  if string.sub(k, 1, 2) == 'f:' then total = total + tonumber(fields[i + 1])
  elseif k == 'owner' then owner = fields[i + 1]
  elseif k == 'ended' then ended = 1 end
end
if total == 0 and owner and ended == 0 and tonumber(ARGV[2]) < 0 then
  redis.call('publish', ARGV[3] .. owner, 'idle ' .. ARGV[4])
end
return {total, ended}
"""

# KEYS: meta. ARGV: follower field, count. Sets a node's count again after a reconnect.
REGISTER = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
if tonumber(ARGV[2]) > 0 then redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
else redis.call('hdel', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS: meta. ARGV: node channel prefix, stream id.
# Returns -1 for an unknown stream, 0 if it has ended, 1 once the owner has been told.
# The flag stays so that an owner that missed the message (reconnecting) still sees it.
CANCEL = """
if redis.call('exists', KEYS[1]) == 0 then return -1 end
if redis.call('hexists', KEYS[1], 'ended') == 1 then return 0 end
redis.call('hset', KEYS[1], 'cancel', '1')
local owner = redis.call('hget', KEYS[1], 'owner')
if owner then redis.call('publish', ARGV[1] .. owner, 'cancel ' .. ARGV[2]) end
return 1
"""


def followers(meta: dict[bytes, bytes]) -> int:
    """The followers on other nodes than the writing one, from a stream's meta hash."""
    return sum(int(count) for name, count in meta.items() if name.startswith(b"f:"))


def connect(url: str, *, max_connections: int, timeout: float) -> redis.Redis:
    """A client whose pool never opens more than `max_connections` connections.

    Commands wait for a free connection rather than opening more. One immediate retry
    covers connections that died while idle (a restarted server); longer outages are
    handled by our callers against their own deadlines, not by sleeping in the client.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )
    return redis.Redis.from_pool(pool)


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (from 0): 50 ms doubling up to 1 s."""
    return float(min(0.05 * 2**attempt, 1.0))


async def retrying(operation: Callable[[], Awaitable[T]], *, budget: float) -> T:
    """Run `operation`, retrying while Redis is out of reach; `HubUnavailable` after `budget` s."""
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        try:
            return await operation()
        except REDIS_ERRORS as exc:
            if time.monotonic() >= deadline:
                raise HubUnavailable(f"redis out of reach for {budget:g}s: {exc}") from exc
        await asyncio.sleep(backoff(attempt))
        attempt += 1
