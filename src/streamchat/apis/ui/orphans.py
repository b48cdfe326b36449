"""UI answers whose node died (several nodes): the chunk that ends their stream, and their
stored status.

The hub asks one handler (hub/redis_nodes.py `Orphans`); this one knows UI streams by their
`start` chunk (`messageId`) and hands every other stream to the next handler (the native
API's), so each API's followers get an end in their own protocol.
"""

from __future__ import annotations

import logging
from typing import Protocol

import orjson

from ...errors import Failure, Kind
from ...store import Store, StoreUnavailable

log = logging.getLogger(__name__)

_LOST = Failure(Kind.STREAM_UNAVAILABLE, "node_lost")


class Orphans(Protocol):
    """hub/redis_nodes.py's handler of a dead node's streams (not imported: it loads redis)."""

    def final_event(self, opening: bytes, index: int) -> bytes | None:
        """The event that ends the stream at `index` (None: none)."""
        ...

    async def orphaned(self, opening: bytes) -> None:
        """Record that the stream has been ended."""
        ...


class UIOrphans:
    """Ends a dead node's UI streams with an `error` chunk (their answers become
    `interrupted`, keeping the text last saved); other streams go to `then`."""

    def __init__(self, store: Store, then: Orphans) -> None:
        self._store = store
        self._then = then

    def final_event(self, opening: bytes, index: int) -> bytes | None:
        """The `error` chunk for a UI stream; the next handler's event for another."""
        if answer_of(opening) is None:
            return self._then.final_event(opening, index)
        return orjson.dumps({"type": "error", "errorText": _LOST.message("zh")})

    async def orphaned(self, opening: bytes) -> None:
        """Mark a UI stream's answer `interrupted`; another stream is the next handler's."""
        message_id = answer_of(opening)
        if message_id is None:
            await self._then.orphaned(opening)
            return
        try:
            await self._store.finish(message_id, status="interrupted", error=_LOST.message("en"))
        except StoreUnavailable as exc:
            log.error("answer %s: not marked interrupted: %s", message_id, exc.detail)


def answer_of(opening: bytes) -> str | None:
    """The answer's id in a UI stream's `start` chunk; None for another stream's opening."""
    if not opening.startswith(b'{"type":"start","messageId":'):
        return None
    try:
        chunk = orjson.loads(opening)
    except orjson.JSONDecodeError:
        return None
    message_id = chunk.get("messageId") if isinstance(chunk, dict) else None
    return message_id if isinstance(message_id, str) else None
