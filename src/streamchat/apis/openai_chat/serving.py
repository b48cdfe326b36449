"""Serving the OpenAI-compatible API: a request in, a hub stream out, and the non-streamed reply.

A chat completion goes through `ChatService.generate` like a native chat, only with an OpenAI
stream format, so it gets the same hub, pings, send deadline and cancellation when its client
leaves. The API is stateless: the client sends the whole conversation every time.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from ...access.limits import FREE, Charge
from ...config import Settings
from ...errors import Failure, Kind
from ...hub import Subscription
from ...providers.base import ChatMessage, GenerateRequest, Role
from ...service.chat import ChatService
from ...service.generation import StreamFormat
from .formats import CompletionFormat, OpenAIChunkFormat
from .protocol import ChatCompletionRequest, ChatMessageIn


async def start_completion(
    chat: ChatService,
    body: ChatCompletionRequest,
    settings: Settings,
    *,
    owner: int | None = None,
    charge: Charge = FREE,
    allowed: Collection[str] | None = None,
) -> tuple[Subscription, StreamFormat]:
    """Have the provider accept the request; the subscription follows its answer (a stream
    `owner` may follow and cancel), written in the returned format (a `CompletionFormat`
    when not streamed). `allowed`: the models the key may use (None: every one)."""
    try:
        return await _start(chat, body, settings, owner, charge, allowed)
    except BaseException:
        await charge.settle(0)  # refused before it began: its stream place is free again
        raise


async def _start(
    chat: ChatService,
    body: ChatCompletionRequest,
    settings: Settings,
    owner: int | None,
    charge: Charge,
    allowed: Collection[str] | None,
) -> tuple[Subscription, StreamFormat]:
    model = chat.resolve_model(body.model, allowed)
    token_limit = body.token_limit()
    if token_limit is not None and token_limit > settings.max_tokens_cap:
        raise Failure(Kind.VALIDATION, "max_tokens_too_large", limit=settings.max_tokens_cap)
    tool_choice = body.tool_choice
    passthrough = body.forwarded()
    # The tools as the client sent them: the forwarded body's own (dumping them again cost
    # a twentieth of a tool-call stream's time in the C=64 burst benchmark).
    tools = None if tool_choice == "none" else passthrough.get("tools") or None
    request = GenerateRequest(
        messages=_messages(body, settings),
        model=model,
        max_tokens=token_limit,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop_list(),
        seed=body.seed,
        user=upstream_user(owner),
        tools=tools,
        tool_choice=tool_choice if tools else None,
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=body.response_format,
        passthrough=passthrough,
        owner=owner,
    )
    created = int(time.time())
    fmt: StreamFormat
    if body.stream:
        fmt = OpenAIChunkFormat(model=model, created=created, include_usage=body.include_usage())
    else:
        fmt = CompletionFormat(model=model, created=created)
    # A /v1 stream cannot be resumed: when its client goes, so does the upstream request.
    subscription = await chat.generate(request, fmt, owner=owner, charge=charge, detach_grace=0)
    return subscription, fmt


def upstream_user(owner: int | None) -> str | None:
    """The `user` an upstream is told: the key's uid, never the client's own text."""
    return None if owner is None else f"streamchat-uid-{owner}"


def _messages(body: ChatCompletionRequest, settings: Settings) -> list[ChatMessage]:
    """The conversation for the provider, within the bounds of one message, the number of
    messages and their total length."""
    if len(body.messages) > settings.max_messages:
        raise Failure(Kind.VALIDATION, "messages_too_many", limit=settings.max_messages)
    limit, total = settings.max_message_chars, 0
    messages = []
    for message in body.messages:
        size = message.size()
        if size > limit:
            raise Failure(Kind.TOO_LONG, "message_too_long", limit=limit)
        total += size
        if total > settings.max_conversation_chars:
            raise Failure(Kind.TOO_LONG, "messages_too_long", limit=settings.max_conversation_chars)
        messages.append(_message(message))
    return messages


def _message(message: ChatMessageIn) -> ChatMessage:
    role: Role
    if message.role == "developer":
        role = "system"
    elif message.role == "function":
        role = "tool"
    else:
        role = message.role
    text = message.text()
    return ChatMessage(
        role,
        text if text or message.content is not None else None,
        parts=message.media_parts(),
        tool_calls=message.tool_calls or None,
        tool_call_id=message.tool_call_id,
        name=message.name,
    )
