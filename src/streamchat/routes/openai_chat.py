"""The OpenAI-compatible API: chat completions and models, for OpenAI's own clients."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from ..access.limits import reservation
from ..access.ticket import allowed_models, ticket_of
from ..apis.openai_chat.formats import CompletionFormat
from ..apis.openai_chat.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from ..apis.openai_chat.serving import start_completion
from ..errors import Failure, Kind
from ..providers.router import Router
from .deps import ChatDep, ModelsDep, TicketDep, chat_of, limiter_of, settings_of
from .streaming import completion_response, event_stream

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

# `created` of the models: when this process started serving them.
_STARTED = int(time.time())

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Invalid request, or a parameter streamchat cannot honour (`param` names it)",
        404: "Unknown model",
        413: "A message, all messages together, or the body is too large",
        502: "The upstream model failed (its own status and text go to the server's log)",
        503: "The model is unavailable or busy",
        504: "The upstream model timed out",
    }.items()
}
_COMPLETION_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ChatCompletion,
        "description": "A `chat.completion` object; with `stream: true`, Server-Sent Events: "
        "`data: <chat.completion.chunk>` events, then `data: [DONE]`",
        "content": {
            "text/event-stream": {"schema": {"$ref": "#/components/schemas/ChatCompletionChunk"}},
        },
    },
    **_ERRORS,
}


@router.post(
    "/chat/completions",
    summary="Create a chat completion",
    response_model=None,
    responses=_COMPLETION_DOC,
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Answer the conversation, streamed as chunks or as one `chat.completion` object."""
    # Also served by DirectRoutes (routes/direct.py), which calls this function as it is.
    settings = settings_of(request)
    ticket = ticket_of(request.scope)
    owner = None if ticket.principal is None else ticket.principal.uid
    prompt = sum(message.size() for message in body.messages)
    reserve = reservation(prompt, body.token_limit(), settings.local_max_tokens)
    charge = await limiter_of(request).admit(ticket, owner, reserve)
    subscription, fmt = await start_completion(
        chat_of(request), body, settings, owner=owner, charge=charge, allowed=allowed_models(ticket)
    )
    if not isinstance(fmt, CompletionFormat):
        return event_stream(subscription, settings)
    return completion_response(subscription, fmt, idle_seconds=settings.ping_seconds)


@router.get("/models", summary="List the models", responses=_ERRORS)
async def list_models(chat: ChatDep, models: ModelsDep, ticket: TicketDep) -> ModelList:
    """The models a request with this key may name; the first is the default."""
    names = chat.models(allowed_models(ticket))
    return ModelList(data=[_card(name, models) for name in names])


@router.get("/models/{model}", summary="Retrieve a model", responses=_ERRORS)
async def retrieve_model(
    model: Annotated[str, Path(description="A model id")],
    chat: ChatDep,
    models: ModelsDep,
    ticket: TicketDep,
) -> ModelCard:
    """One model, or 404 (also for one this key may not use: the two look the same)."""
    if model not in chat.models(allowed_models(ticket)):
        raise Failure(Kind.NOT_FOUND, "model_unknown", model=model)
    return _card(model, models)


def _card(name: str, models: Router) -> ModelCard:
    owner = models.route(name).provider.name
    return ModelCard(id=name, created=_STARTED, owned_by=f"streamchat-{owner}")
