"""Answers whose node died (several nodes): their last event, and their stored status.

The hub notices a dead node (hub/redis_nodes.py) and ends its streams; what the end says and
what the store keeps are decided here.
"""

from __future__ import annotations

import logging

import orjson

from ...errors import Failure, Kind
from ...store import Store, StoreUnavailable
from . import events

log = logging.getLogger(__name__)

_LOST = Failure(Kind.STREAM_UNAVAILABLE, "node_lost")


class OrphanedAnswers:
    """Ends native streams of a dead node with `stream_unavailable`; their answers become
    `interrupted`, keeping the text last saved."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def final_event(self, opening: bytes, index: int) -> bytes | None:
        """The `error` event at `index` for a native stream (OpenAI streams get none)."""
        start = _start_event(opening)
        if start is None:
            return None
        return events.error(index, _LOST.kind.value, _LOST.message("zh"))

    async def orphaned(self, opening: bytes) -> None:
        """Mark the stream's answer `interrupted`."""
        start = _start_event(opening)
        message_id = None if start is None else start.get("message_id")
        if not isinstance(message_id, str):
            return
        try:
            await self._store.finish(message_id, status="interrupted", error=_LOST.message("en"))
        except StoreUnavailable as exc:
            log.error("answer %s: not marked interrupted: %s", message_id, exc.detail)


def _start_event(opening: bytes) -> dict[str, object] | None:
    try:
        event = orjson.loads(opening)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and event.get("type") == "start" else None
