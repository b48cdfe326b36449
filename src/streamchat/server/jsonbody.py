"""Lone surrogates in a JSON body are a 400 on every path (issue 23).

JSON may escape a UTF-16 surrogate alone (`"\\ud800"`). The routes DirectRoutes serves parse
with pydantic's parser, which refuses it; FastAPI's own routes parse with `json.loads`, which
lets it through as a `str` no UTF-8 encoder accepts, so the first write (the store, an
upstream request) failed with a 503 and a traceback. `StrictJson` sits where FastAPI's routes
begin and refuses such a body with the same 400 DirectRoutes gives. Only a body that has a
surrogate escape at all is parsed a second time: every other passes after one byte search.
"""

from __future__ import annotations

import re

import pydantic_core
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import handlers

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_WRITES = {"POST", "PUT", "PATCH"}


class StrictJson:
    """ASGI middleware: a JSON request body with a lone surrogate escape gets a 400."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITES:
            await self.app(scope, receive, send)
            return
        body, messages = await _read(receive)
        if _SURROGATE_ESCAPE.search(body) is not None:
            try:
                pydantic_core.from_json(body)
            except ValueError as exc:
                error = {
                    "type": "json_invalid",
                    "loc": ("body", 0),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": str(exc)},
                }
                request = Request(scope)
                handler = handlers.handler_for(RequestValidationError([error]))
                assert handler is not None  # validation errors always have one
                response = await handler(request, RequestValidationError([error]))
                await response(scope, receive, send)
                return
        await self.app(scope, _replay(messages, receive), send)


async def _read(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole body (BodyLimit, outside, bounds it) and the messages that carried it."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
    return body, messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that gives the messages already read first, then the client's next ones."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
