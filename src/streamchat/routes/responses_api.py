"""The OpenAI Responses API (DESIGN §12): create, retrieve or follow, cancel, delete, list input."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from ..access.identity import acting_uid, owner_filter
from ..access.limits import reservation
from ..access.ticket import Ticket, allowed_models, ticket_of
from ..apis.openai_chat import errors as openai_errors
from ..apis.openai_chat.protocol import ErrorResponse
from ..apis.responses.format import ResponsesFormat
from ..apis.responses.protocol import CreateResponse, DeletedResponse, ItemList, ResponseId
from ..apis.responses.serving import Caller, ResponsesService
from ..apis.responses.state import ResponseState
from ..hub import Subscription
from ..schemas import MAX_INT
from . import failures
from .deps import OptionalUid, TicketDep, limiter_of, settings_of
from .streaming import LastEventResponse, event_stream

router = APIRouter(prefix="/v1", tags=["OpenAI Responses"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Invalid request, or a parameter streamchat cannot honour (`param` names it)",
        404: "Unknown model, or a response that is not the caller's (or does not exist)",
        413: "An input item, all of them, or the body is too large",
        502: "The upstream model failed",
        503: "The model is unavailable or busy",
        504: "The upstream model timed out",
    }.items()
}
_OBJECT_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A `response` object; with `stream: true`, Server-Sent Events: "
        "`data: <response.* event>` with `sequence_number`s from 0",
        "content": {"application/json": {}, "text/event-stream": {}},
    },
    **_ERRORS,
}
Id = Annotated[ResponseId, Path(description="A response's id (`resp_…`)")]


def _service(request: Request) -> ResponsesService:
    service: ResponsesService = request.app.state.responses
    return service


def _state(request: Request) -> ResponseState:
    state: ResponseState = request.app.state.response_state
    return state


def _owner(ticket: Ticket, uid: int | None) -> int | None:
    return owner_filter(ticket, uid)


@router.post("/responses", summary="Create a response", response_model=None, responses=_OBJECT_DOC)
async def create_response(
    body: CreateResponse, request: Request, uid: OptionalUid = None
) -> Response:
    """Answer the input: streamed as events, as one `response` object, or in the background
    (the object at once, `queued`; retrieve it, or follow it with `stream=true`)."""
    settings = settings_of(request)
    ticket = ticket_of(request.scope)
    owner = _owner(ticket, uid)
    caller = Caller(
        uid=acting_uid(ticket, uid) if ticket.principal else (uid or 0),
        owner=owner,
        models=allowed_models(ticket),
    )
    # What a burst may spend is reserved at admission, as on the other chat routes.
    prompt = len(body.instructions or "") + len(str(body.input))
    reserve = reservation(prompt, body.max_output_tokens, settings.local_max_tokens)
    charge = await limiter_of(request).admit(ticket, owner, reserve)
    subscription, fmt = await _service(request).start(body, caller, charge)
    if body.stream:
        return event_stream(subscription, settings)
    if body.background:
        await subscription.close()  # it runs on without a follower
        return _json(fmt.snapshot("queued"))
    return response_object(subscription, fmt, idle_seconds=settings.ping_seconds)


@router.get(
    "/responses/{response_id}",
    summary="Retrieve a response, or follow its events",
    response_model=None,
    responses=_OBJECT_DOC,
)
async def retrieve_response(
    response_id: Id,
    request: Request,
    ticket: TicketDep,
    stream: bool = False,
    starting_after: Annotated[
        int, Query(ge=-1, le=MAX_INT, description="Replay the events after this sequence number")
    ] = -1,
    uid: OptionalUid = None,
) -> Response:
    """The response object; with `stream=true`, its events after `starting_after`, then
    live to the end (on any node)."""
    owner = _owner(ticket, uid)
    if not stream:
        return _json(await _state(request).retrieve(response_id, owner))
    settings = settings_of(request)
    subscription = await _state(request).follow(response_id, starting_after, owner)
    return event_stream(subscription, settings)


@router.post(
    "/responses/{response_id}/cancel",
    summary="Cancel a background response",
    response_model=None,
    responses=_ERRORS,
)
async def cancel_response(
    response_id: Id, request: Request, ticket: TicketDep, uid: OptionalUid = None
) -> Response:
    """Stop a background response; its output so far is kept (`status: "cancelled"`)."""
    return _json(await _state(request).cancel(response_id, _owner(ticket, uid)))


@router.delete("/responses/{response_id}", summary="Delete a response", responses=_ERRORS)
async def delete_response(
    response_id: Id, request: Request, ticket: TicketDep, uid: OptionalUid = None
) -> DeletedResponse:
    """Delete a stored response and its messages."""
    await _state(request).delete(response_id, _owner(ticket, uid))
    return DeletedResponse(id=response_id)


@router.get(
    "/responses/{response_id}/input_items", summary="List a response's input", responses=_ERRORS
)
async def list_input_items(
    response_id: Id,
    request: Request,
    ticket: TicketDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    uid: OptionalUid = None,
) -> ItemList:
    """The items the response was given, newest first (`order=asc`: oldest first)."""
    owner = _owner(ticket, uid)
    return await _state(request).input_items(
        response_id, owner, after=after, limit=limit, order=order
    )


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def response_object(
    subscription: Subscription, fmt: ResponsesFormat, *, idle_seconds: float
) -> LastEventResponse:
    """The response object once it has ended (a client that leaves first cancels it), or
    the error it failed with, in OpenAI's shape."""

    def render(last: bytes) -> tuple[int, bytes]:
        failure = fmt.failure
        if failure is None:
            return 200, orjson.dumps(orjson.loads(last)["response"])
        return openai_errors.from_failure(failure, failures.status_of(failure))

    return LastEventResponse(subscription, render, idle_seconds=idle_seconds)
