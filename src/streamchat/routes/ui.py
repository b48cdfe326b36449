"""The AI SDK's UI API (DESIGN.md §13): what `useChat` with `DefaultChatTransport` calls.

`POST /api/ui/chat` answers as a UI message stream; `GET /api/ui/chat/{id}/stream` is the
transport's `reconnectToStream` (its default URL when `api` is `…/api/ui/chat`);
`POST /api/ui/chat/{id}/stop` stops the running answer; `GET /api/ui/chat/{id}` restores a
page. Every route is behind the admission seam (its path is under `/api/`); a chat is its
caller's, and another user's is the same 404 as an unknown one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from ..access.identity import acting_uid
from ..access.limits import reservation
from ..access.ticket import allowed_models, ticket_of
from ..apis.ui.format import HEADERS
from ..apis.ui.protocol import UIChatRequest, UIStopResult
from ..apis.ui.serving import UIChatServing, question
from ..errors import pick_language
from ..schemas import ID_PATTERN, Envelope
from .deps import OptionalUid, TicketDep, limiter_of, settings_of
from .streaming import EventStreamResponse, event_stream

router = APIRouter(prefix="/api/ui", tags=["AI SDK UI (useChat)"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Envelope[None], "description": text}
    for code, text in {
        400: "Validation failed (code 51) or invalid request (code 66)",
        404: "No such chat for this uid (code 65)",
        413: "Message too long (code 51), or the body too large (code 66)",
        502: "The upstream model failed before the stream began (code 60)",
        503: "The model or the database is unavailable or busy (code 63, 52)",
    }.items()
}
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The AI SDK's UI message stream (`x-vercel-ai-ui-message-stream: v1`): "
        "`data: <chunk>` events, then `data: [DONE]`",
        "content": {"text/event-stream": {}},
    },
    **_ERRORS,
}
ChatId = Annotated[
    str, Path(max_length=64, pattern=ID_PATTERN, description="The chat's id (the client's)")
]


def serving_of(request: Request) -> UIChatServing:
    """The UI API's serving, made by `create_app`."""
    serving: UIChatServing = request.app.state.ui_serving
    return serving


def _stream(subscription: Any, request: Request) -> EventStreamResponse:
    settings = settings_of(request)
    return event_stream(subscription, settings, headers=HEADERS)


@router.post("/chat", summary="useChat: send a message", responses=_STREAM_DOC)
async def ui_chat(body: UIChatRequest, request: Request, uid: OptionalUid = None) -> Response:
    """Answer the last user message of chat `id` (or, with `trigger: "regenerate-message"`,
    its last question again, replacing the last answer) as a UI message stream."""
    ticket = ticket_of(request.scope)
    acting = acting_uid(ticket, uid)
    lang = pick_language(request.headers.get("accept-language"))
    # What a burst may spend is reserved at admission, as on the other chat routes.
    prompt = len(question(body.last())) if body.trigger != "regenerate-message" else 0
    settings = settings_of(request)
    reserve = reservation(prompt, None, settings.local_max_tokens)
    charge = await limiter_of(request).admit(ticket, acting, reserve)
    subscription = await serving_of(request).start(
        body, acting, lang, charge, allowed_models(ticket)
    )
    return _stream(subscription, request)


@router.get(
    "/chat/{chat_id}/stream",
    summary="useChat: resume the running answer",
    responses={
        **_STREAM_DOC,
        204: {"description": "No answer is running in this chat (or no such chat of yours)"},
    },
)
async def ui_resume(
    chat_id: ChatId, request: Request, ticket: TicketDep, uid: OptionalUid = None
) -> Response:
    """The chat's running answer from its first chunk, then live; 204 when none runs."""
    subscription = await serving_of(request).resume(chat_id, acting_uid(ticket, uid))
    if subscription is None:
        return Response(status_code=204)
    return _stream(subscription, request)


@router.post("/chat/{chat_id}/stop", summary="useChat: stop the running answer", responses=_ERRORS)
async def ui_stop(
    chat_id: ChatId, request: Request, ticket: TicketDep, uid: OptionalUid = None
) -> Envelope[UIStopResult]:
    """Stop the running answer; it keeps its partial text (stored as `cancelled`)."""
    stopped = await serving_of(request).stop(chat_id, acting_uid(ticket, uid))
    return Envelope(data=UIStopResult(id=chat_id, stopped=stopped))


@router.get("/chat/{chat_id}", summary="useChat: the chat's messages", responses=_ERRORS)
async def ui_messages(
    chat_id: ChatId, request: Request, ticket: TicketDep, uid: OptionalUid = None
) -> list[dict[str, Any]]:
    """The chat's `UIMessage[]`, oldest first, to give `useChat` as `messages`."""
    return await serving_of(request).restore(chat_id, acting_uid(ticket, uid))
