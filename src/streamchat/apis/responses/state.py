"""A response after its `POST`: read it, follow it, cancel it, delete it, list its input.

Reads go to the store (a stored response, the owner's only: another's is the same 404 as an
unknown id); following and cancelling go to the hub, on whichever node generates it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

import orjson

from ...errors import Failure, Kind
from ...hub import StreamNotFound, Subscription
from ...service.chat import ChatService
from ...store import ResponseStore, StoredResponse
from . import items
from .objects import Ending, ResponseObject, response_object, stream_of
from .protocol import ItemList

# How long a cancel waits for the response to end (its final state saved) before answering.
CANCEL_WAIT_SECONDS = 10.0

_STATUS = {"streaming": "in_progress", "complete": "completed", "cancelled": "cancelled"}


def not_found(rid: str) -> Failure:
    """The one 404 for an unknown response and another owner's."""
    return Failure(Kind.NOT_FOUND, "response_not_found", response_id=rid)


class ResponseState:
    """What can be done with a response once it exists."""

    def __init__(self, chat: ChatService, responses: ResponseStore) -> None:
        self.chat = chat
        self.responses = responses

    async def retrieve(self, rid: str, owner: int | None) -> ResponseObject:
        """The response object: as it ended, or as far as it is saved while it runs."""
        return as_object(await self._stored(rid, owner))

    async def follow(self, rid: str, starting_after: int, owner: int | None) -> Subscription:
        """Its events after `starting_after` (a sequence number: the hub's index), then
        live, from any node."""
        try:
            return await self.chat.follow(stream_of(rid), starting_after, owner)
        except StreamNotFound:
            raise not_found(rid) from None

    async def cancel(self, rid: str, owner: int | None) -> ResponseObject:
        """Stop a background response, keeping what it said; the response as it ended."""
        stored = await self._stored(rid, owner)
        if not orjson.loads(stored.request).get("background"):
            raise items.invalid("background", "only a background response can be cancelled")
        if stored.body is None:
            await self._stop_and_wait(rid, owner)
            stored = await self._stored(rid, owner)
        return as_object(stored)

    async def delete(self, rid: str, owner: int | None) -> None:
        """Delete a stored response (stopping it first if it runs)."""
        await self._stored(rid, owner)
        with contextlib.suppress(StreamNotFound):
            await self.chat.cancel(stream_of(rid), owner)
        if not await self.responses.delete(rid, owner):
            raise not_found(rid)

    async def input_items(
        self,
        rid: str,
        owner: int | None,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemList:
        """A page of the items the response was given, OpenAI's way (newest first unless
        `order` is `asc`, after the item `after`)."""
        rows = await self.responses.input_items(rid, owner)
        if rows is None:
            raise not_found(rid)
        found = [item for row in rows for item in orjson.loads(row)]
        if order == "desc":
            found.reverse()
        if after is not None:
            ids = [item["id"] for item in found]
            found = found[ids.index(after) + 1 :] if after in ids else []
        page = found[:limit]
        return ItemList(
            data=page,
            first_id=page[0]["id"] if page else None,
            last_id=page[-1]["id"] if page else None,
            has_more=len(found) > limit,
        )

    async def _stored(self, rid: str, owner: int | None) -> StoredResponse:
        stored = await self.responses.get(rid, owner)
        if stored is None:
            raise not_found(rid)
        return stored

    async def _stop_and_wait(self, rid: str, owner: int | None) -> None:
        """Cancel the generation and wait for its last event (its state is saved first)."""
        try:
            await self.chat.cancel(stream_of(rid), owner)
            subscription = await self.chat.follow(stream_of(rid), -1, owner)
        except StreamNotFound:
            return  # ended, and expired from the hub: its state is what the store says
        try:
            async with asyncio.timeout(CANCEL_WAIT_SECONDS):
                while True:
                    batch = await subscription.next(CANCEL_WAIT_SECONDS)
                    if batch is not None and batch.ended:
                        return
        except TimeoutError:
            return
        finally:
            await subscription.close()


def as_object(stored: StoredResponse) -> ResponseObject:
    """A stored response as its response object: the one it ended as, or one made from its
    saved state (while it runs, or when its process died before it could end it)."""
    if stored.body is not None:
        ended: ResponseObject = orjson.loads(stored.body)
        return ended
    request = orjson.loads(stored.request)
    status = _STATUS.get(stored.status, "failed")
    output = []
    if stored.content:
        item_status = "in_progress" if status == "in_progress" else "incomplete"
        message_id = f"msg_{stored.answer_id}"
        output.append(items.output_message(message_id, stored.content, item_status))
    ending = None
    if status == "failed":
        error = {"code": "server_error", "message": stored.error or "the response failed"}
        ending = Ending("failed", error=error, event="response.failed")
    return response_object(stored.id, request, status, output, ending=ending)
