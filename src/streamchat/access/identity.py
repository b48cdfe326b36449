"""Who is asking (DESIGN.md §7): the identity gate of the admission seam, and the uid a
request acts for.

With `STREAMCHAT_AUTH=keys` every request under `/api/` or `/v1/` must carry
`Authorization: Bearer <key>`; the key's hash is looked up once (one indexed query) and
remembered for `STREAMCHAT_KEY_CACHE_SECONDS`, so a revoked key stops working within that
time on every node. With `off`, nobody is identified and the uid comes from the request as
in the seed; the host and origin guards (access/guards.py) stay on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TypeVar

from starlette.datastructures import Headers
from starlette.types import Scope

from ..errors import Failure, Kind
from ..store.keys import KeyRecord, KeyStore
from .keys import display_prefix, key_hash, looks_like_a_key
from .ticket import Principal, Ticket

log = logging.getLogger(__name__)
_V = TypeVar("_V")

# How often a key's `last_used_at` is written, at most: a busy key is not a write per request.
TOUCH_SECONDS = 60.0
# Keys remembered at once. Keys that do not exist are remembered apart, in fewer places, so
# that a flood of made-up keys can neither grow the memory nor push the real keys out.
CACHE_ENTRIES = 10_000
MISSES_REMEMBERED = 1_000


class KeyCache:
    """Recent lookups by key hash: the record, or None for a key that does not exist.

    One lookup at a time per key: the requests that come while a key is being looked up
    (a thousand clients of one service key starting together, or arriving when its entry
    has just expired) wait for that lookup instead of each making its own."""

    def __init__(self, store: KeyStore, ttl_seconds: float) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._found: OrderedDict[str, tuple[float, KeyRecord]] = OrderedDict()
        self._missing: OrderedDict[str, float] = OrderedDict()
        self._looking: dict[str, asyncio.Future[KeyRecord | None]] = {}

    async def find(self, digest: str) -> KeyRecord | None:
        """The key with this hash (revoked or not), from memory if looked up recently."""
        now = time.monotonic()
        found = self._found.get(digest)
        if found is not None and found[0] > now:
            self._found.move_to_end(digest)  # least recently used goes first
            return found[1]
        missing = self._missing.get(digest)
        if missing is not None and missing > now:
            return None
        lookup = self._looking.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(digest))
            self._looking[digest] = lookup
            lookup.add_done_callback(lambda _: self._looking.pop(digest, None))
            lookup.add_done_callback(_retrieved)
        # Shielded: a waiter that gives up (its client left) does not end the others' lookup.
        return await asyncio.shield(lookup)

    async def _look_up(self, digest: str) -> KeyRecord | None:
        record = await self._store.find(digest)
        now = time.monotonic()
        if record is None:
            _remember(self._missing, digest, now + self._ttl, MISSES_REMEMBERED)
        else:
            _remember(self._found, digest, (now + self._ttl, record), CACHE_ENTRIES)
        return record


def _retrieved(lookup: asyncio.Future[KeyRecord | None]) -> None:
    """A failed lookup whose waiters all left is not logged as never retrieved: each
    waiter raised it (a 503), or left."""
    if not lookup.cancelled():
        lookup.exception()


def _remember(entries: OrderedDict[str, _V], key: str, value: _V, most: int) -> None:
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > most:
        entries.popitem(last=False)


class IdentityGate:
    """The admission gate that turns a request's key into its `Principal`."""

    def __init__(self, store: KeyStore, *, cache_seconds: float) -> None:
        self._store = store
        self._cache = KeyCache(store, cache_seconds)
        self._touched: dict[int, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def admit(self, ticket: Ticket, scope: Scope) -> None:
        """Identify the caller of a protected route, or refuse with 401."""
        if ticket.api is None:
            return
        key = bearer_key(Headers(scope=scope).get("authorization"))
        if key is None:
            raise Failure(Kind.UNAUTHORIZED, "key_missing")
        record = await self._cache.find(key_hash(key)) if looks_like_a_key(key) else None
        if record is None or record.revoked_at is not None:
            raise Failure(Kind.UNAUTHORIZED, "key_invalid", prefix=display_prefix(key))
        ticket.principal = Principal(
            uid=record.uid,
            kind=record.kind,
            key_id=record.id,
            key_prefix=record.prefix,
            limits=record.limits,
            models=record.models,
        )
        # Written once the response shows the request was served: a refused one (403, 429,
        # 413, …) writes nothing, not even this.
        ticket.on_response.append(lambda status: self._touch(record.id) if status < 400 else None)

    def _touch(self, key_id: int) -> None:
        now = time.monotonic()
        if now - self._touched.get(key_id, -TOUCH_SECONDS) < TOUCH_SECONDS:
            return
        self._touched[key_id] = now
        task = asyncio.create_task(self._write_touch(key_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_touch(self, key_id: int) -> None:
        try:
            await self._store.touch(key_id, datetime.now(UTC))
        except Failure as exc:  # the request goes on; the next use tries again
            log.warning("key %d: last use not saved: %s", key_id, exc.detail)
            self._touched.pop(key_id, None)


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def acting_uid(ticket: Ticket, requested: int | None) -> int:
    """The uid a request acts for: a user key's own (a different one named is 403), or the
    one the request names (a service key, or auth off; none named is 400)."""
    principal = ticket.principal
    if principal is None or principal.kind == "service":
        if requested is None:
            raise Failure(Kind.VALIDATION, "uid_required")
        return requested
    if requested is not None and requested != principal.uid:
        raise Failure(Kind.FORBIDDEN, "uid_forbidden")
    return principal.uid


def owner_filter(ticket: Ticket, requested: int | None) -> int | None:
    """Whose streams a request may follow or cancel: a key's uid as `acting_uid` says (a
    service key must name one); with auth off, the uid the request names, or None (anyone's,
    as in the seed) when it names none."""
    if ticket.principal is None:
        return requested
    return acting_uid(ticket, requested)
