"""Serving the OpenAI-compatible API: a request in, a hub stream out, and the non-streamed reply.

A chat completion goes through `ChatService.generate` like a native chat, only with an OpenAI
stream format, so it gets the same hub, pings, send deadline and cancellation when its client
leaves. The API is stateless: the client sends the whole conversation every time.
"""

from __future__ import annotations

import time

from ..access.limits import FREE, Charge
from ..chat import ChatService
from ..errors import Failure, Kind
from ..generation import StreamFormat
from ..hub import Subscription
from ..providers.base import ChatMessage, GenerateRequest
from .formats import CompletionFormat, OpenAIChunkFormat
from .protocol import ChatCompletionRequest


async def start_completion(
    chat: ChatService,
    body: ChatCompletionRequest,
    *,
    max_message_chars: int,
    owner: int | None = None,
    charge: Charge = FREE,
) -> tuple[Subscription, StreamFormat]:
    """Have the provider accept the request; the subscription follows its answer (a stream
    `owner` may follow and cancel), written in the returned format (a `CompletionFormat`
    when not streamed)."""
    try:
        return await _start(chat, body, max_message_chars, owner, charge)
    except BaseException:
        await charge.settle(0)  # refused before it began: its stream place is free again
        raise


async def _start(
    chat: ChatService,
    body: ChatCompletionRequest,
    max_message_chars: int,
    owner: int | None,
    charge: Charge,
) -> tuple[Subscription, StreamFormat]:
    if body.model and body.model not in chat.models():
        raise Failure(Kind.NOT_FOUND, "model_unknown", model=body.model)
    model = chat.resolve_model(body.model)
    request = GenerateRequest(
        messages=_messages(body, max_message_chars),
        model=model,
        max_tokens=body.token_limit(),
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop_list(),
        seed=body.seed,
        user=body.user,
    )
    created = int(time.time())
    fmt: StreamFormat
    if body.stream:
        fmt = OpenAIChunkFormat(model=model, created=created, include_usage=body.include_usage())
    else:
        fmt = CompletionFormat(model=model, created=created)
    return await chat.generate(request, fmt, owner=owner, charge=charge), fmt


def _messages(body: ChatCompletionRequest, limit: int) -> list[ChatMessage]:
    messages = []
    for message in body.messages:
        text = message.text()
        if len(text) > limit:
            raise Failure(Kind.TOO_LONG, "message_too_long", limit=limit)
        role = "system" if message.role == "developer" else message.role
        messages.append(ChatMessage(role, text))
    return messages
