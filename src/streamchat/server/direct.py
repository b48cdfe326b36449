"""The routes that start streams, served without FastAPI's per-request machinery.

`POST /api/chat` and `POST /v1/chat/completions` begin every stream, so their fixed cost is
added to every time to first token and, at a thousand streams, paid a few hundred times a
second. Through FastAPI that cost was mostly not ours: routing past every route, the
exception and exit-stack middlewares, a `Request` per layer, dependency solving, the body
parsed by `json.loads` and then validated again as Python objects. `DirectRoutes` sits
inside `TraceMiddleware` (trace id and access log stay) and answers these two routes itself:
the body is validated by the same pydantic model in one pass from its bytes, the endpoint is
the very function FastAPI declares (routes/chat.py, routes/openai.py: the OpenAPI spec and
the behaviour come from one place), and errors go through the same handlers
(handlers.py), so a response is the same byte for byte whichever way it was served. Every
other request, and every other method on these paths, goes on to FastAPI.
"""

from __future__ import annotations

import email.message
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import handlers

Endpoint = Callable[[Any, Request], Awaitable[Response]]


class DirectRoute:
    """A POST route answered by `endpoint(body, request)` with a body of type `model`."""

    __slots__ = ("endpoint", "model")

    def __init__(self, model: type[BaseModel], endpoint: Endpoint) -> None:
        self.model = model
        self.endpoint = endpoint


class DirectRoutes:
    """ASGI middleware: serves the POST routes of `routes` (by exact path), passes the rest on."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, DirectRoute]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            content_type = request.headers.get("content-type")
            body = parse_body(route.model, await request.body(), content_type)
            response = await route.endpoint(body, request)
        except Exception as exc:
            handler = handlers.handler_for(exc)
            if handler is None:
                raise  # to ServerErrorMiddleware, which answers 500 with the same handler
            response = await handler(request, exc)
        await response(scope, receive, send)


def parse_body(model: type[BaseModel], body: bytes, content_type: str | None) -> Any:
    """The request body as `model`, or FastAPI's `RequestValidationError` for the same body.

    The errors have FastAPI's locations (`("body", field…)`) and kinds for an empty body, a
    body that is not JSON by its Content-Type, and JSON that does not parse, so the handlers
    turn them into the same messages.
    """
    if not body:
        raise RequestValidationError([_error("missing", "Field required", None)])
    if not _is_json(content_type):
        message = "Input should be a valid dictionary or object to extract fields from"
        raise RequestValidationError([_error("model_attributes_type", message, body)])
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors], body=body
        ) from None


def _error(kind: str, message: str, value: object) -> dict[str, Any]:
    return {"type": kind, "loc": ("body",), "msg": message, "input": value}


def _is_json(content_type: str | None) -> bool:
    """FastAPI's test: `application/json` or `application/*+json`; a missing type is not JSON."""
    if not content_type:
        return False
    if content_type == "application/json":  # the usual case, without a parser
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
