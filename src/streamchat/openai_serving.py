"""Serving the OpenAI-compatible API: a request in, a hub stream out, and the non-streamed reply.

A chat completion goes through `ChatService.generate` like a native chat, only with an OpenAI
stream format, so it gets the same hub, pings, send deadline and cancellation when its client
leaves. The API is stateless: the client sends the whole conversation every time.
"""

from __future__ import annotations

import time

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import openai_errors
from .chat import ChatService
from .errors import AppError
from .generation import StreamFormat
from .hub import Subscription
from .openai_protocol import ChatCompletionRequest
from .openai_stream import CompletionFormat, OpenAIChunkFormat
from .providers.base import ChatMessage, GenerateRequest
from .schemas import Code
from .streaming import until_disconnect


async def start_completion(
    chat: ChatService, body: ChatCompletionRequest, *, max_message_chars: int
) -> Subscription:
    """Have the provider accept the request; the subscription follows its answer."""
    if body.model and body.model not in chat.models():
        raise AppError(404, Code.NOT_FOUND, "model_unknown", model=body.model)
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
    return await chat.generate(request, fmt)


def _messages(body: ChatCompletionRequest, limit: int) -> list[ChatMessage]:
    messages = []
    for message in body.messages:
        text = message.text()
        if len(text) > limit:
            raise AppError(413, Code.VALIDATION_FAILED, "message_too_long", limit=limit)
        role = "system" if message.role == "developer" else message.role
        messages.append(ChatMessage(role, text))
    return messages


class CompletionResponse(Response):
    """A non-streamed answer: waits for the generation's last event and sends it as JSON.

    Its lifetime is a race with the client's disconnect, as for a stream: a client that
    leaves closes the subscription, which lets the generation be abandoned (after the grace
    period). The status is decided at the end, so a generation that fails is an HTTP error.
    """

    media_type = "application/json"

    def __init__(self, subscription: Subscription, *, idle_seconds: float) -> None:
        self.subscription = subscription
        self.idle_seconds = idle_seconds
        self.status_code = 200
        self.background = None
        self.raw_headers = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            answer = await until_disconnect(receive, self._last_event())
        finally:
            await self.subscription.close()
        if answer is None:
            return  # the client went away
        payload = answer.result()
        status = 200
        if payload.startswith(b'{"error"'):
            status = openai_errors.failure_status(orjson.loads(payload)["error"]["code"])
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _last_event(self) -> bytes:
        last = b""
        while True:
            batch = await self.subscription.next(self.idle_seconds)
            if batch is None:
                continue
            if batch.payloads:
                last = batch.payloads[-1]
            if batch.ended:
                return last
