"""The native chat API: start a stream, resume it, cancel it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request

from ..access.identity import acting_uid, owner_filter
from ..access.limits import Charge, reservation
from ..access.ticket import allowed_models, ticket_of
from ..apis.native.serving import start_chat
from ..errors import pick_language
from ..hub import Batch, Subscription
from ..schemas import ID_PATTERN, MAX_INT, CancelResult, ChatRequest, Envelope, StreamEvent
from .deps import (
    ChatDep,
    LimiterDep,
    OptionalUid,
    SettingsDep,
    TicketDep,
    chat_of,
    limiter_of,
    settings_of,
)
from .streaming import EventStreamResponse, event_stream

router = APIRouter(prefix="/api", tags=["chat 聊天"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Envelope[None], "description": text}
    for code, text in {
        400: "Validation failed (code 51) or invalid request (code 66)",
        404: "Unknown model, or unknown or expired stream (code 65)",
        413: "Message too long (code 51), or the body too large (code 66)",
        502: "The upstream model failed before the stream began (code 60)",
        503: "The model is unavailable or busy (code 63)",
        504: "The upstream model timed out (code 60)",
    }.items()
}
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: one `data: <json>` line per event, then a blank line",
        "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/StreamEvent"}}},
    },
    **_ERRORS,
}
StreamId = Annotated[
    str,
    Path(max_length=64, pattern=ID_PATTERN, description="The `stream_id` of the start event"),
]


@router.post(
    "/chat",
    summary="聊天请求 Chat",
    status_code=200,
    response_class=EventStreamResponse,
    responses=_STREAM_DOC,
)
async def chat(body: ChatRequest, request: Request) -> EventStreamResponse:
    """Answer one message as a stream of `start`, `delta`…, then `end` or `error` events."""
    # Also served by DirectRoutes (routes/direct.py), which calls this function as it is.
    settings = settings_of(request)
    lang = pick_language(request.headers.get("accept-language"))
    ticket = ticket_of(request.scope)
    uid = acting_uid(ticket, body.uid)
    reserve = reservation(len(body.message), None, settings.local_max_tokens)
    charge = await limiter_of(request).admit(ticket, uid, reserve)
    subscription = await start_chat(
        chat_of(request), body, uid, lang, charge, allowed_models(ticket)
    )
    return event_stream(subscription, settings)


@router.get(
    "/chat/streams/{stream_id}",
    summary="Resume a stream",
    status_code=200,
    response_class=EventStreamResponse,
    responses=_STREAM_DOC,
)
async def resume(
    stream_id: StreamId,
    chat: ChatDep,
    settings: SettingsDep,
    ticket: TicketDep,
    limiter: LimiterDep,
    after: Annotated[
        int | None, Query(ge=-1, le=MAX_INT, description="Replay events after this index")
    ] = None,
    last_event_id: Annotated[int | None, Header(ge=-1, le=MAX_INT)] = None,
    uid: OptionalUid = None,
) -> EventStreamResponse:
    """Replay the events after `after` (or `Last-Event-ID`), then follow live to the end."""
    position = after if after is not None else last_event_id
    owner = owner_filter(ticket, uid)
    # Counted per key (per uid with auth off) while it follows: settled when it stops.
    charge = await limiter.follow(ticket, owner)
    try:
        subscription = await chat.follow(stream_id, -1 if position is None else position, owner)
    except BaseException:
        await charge.settle(0)
        raise
    return event_stream(Counted(subscription, charge), settings, with_ids=True)


@router.post("/chat/streams/{stream_id}/cancel", summary="Stop a generation", responses=_ERRORS)
async def cancel(
    stream_id: StreamId, chat: ChatDep, ticket: TicketDep, uid: OptionalUid = None
) -> Envelope[CancelResult]:
    """Stop the generation; its stream ends with `finish_reason: "cancelled"`."""
    cancelled = await chat.cancel(stream_id, owner_filter(ticket, uid))
    return Envelope(data=CancelResult(stream_id=stream_id, cancelled=cancelled))


class Counted:
    """A subscription whose follower is counted against its key until it closes."""

    def __init__(self, subscription: Subscription, charge: Charge) -> None:
        self._subscription = subscription
        self._charge = charge

    async def next(self, idle_seconds: float) -> Batch | None:
        """The subscription's next batch."""
        return await self._subscription.next(idle_seconds)

    async def close(self) -> None:
        """Close the subscription, then free the follower's place."""
        try:
            await self._subscription.close()
        finally:
            await self._charge.settle(0)


__all__ = ["StreamEvent", "router"]
