"""The routes that start streams, served without FastAPI's per-request machinery.

`POST /api/chat`, `/v1/chat/completions`, `/v1/responses` and `/api/ui/chat` begin every
stream, so their fixed cost is added to every time to first token and, at a thousand
streams, paid a few hundred times a second. Through FastAPI that cost was mostly not ours:
routing past every route, the exception and exit-stack middlewares, a `Request` per layer,
dependency solving, the body parsed by `json.loads` and then validated again as Python
objects. `DirectRoutes` sits inside `TraceMiddleware` (trace id and access log stay) and
answers these routes itself: the body is validated by the same pydantic model in one pass
from its bytes (and the query, where the route takes one, by a model of its parameters), the
endpoint is the very function FastAPI declares (routes/: the OpenAPI spec and the behaviour
come from one place), and errors go through the same handlers (handlers.py), so a response
is the same byte for byte whichever way it was served (tests/test_admission.py). Every other
request, and every other method on these paths, goes on to FastAPI.
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
    """A POST route answered by `endpoint(body, request, **query)` with a body of type
    `model` and, if `query` is given, the query parameters its fields name."""

    __slots__ = ("endpoint", "model", "query")

    def __init__(
        self, model: type[BaseModel], endpoint: Endpoint, query: type[BaseModel] | None = None
    ) -> None:
        self.model = model
        self.endpoint = endpoint
        self.query = query


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
            body_bytes = await request.body()
            if route.query is None:
                body = parse_body(route.model, body_bytes, content_type)
                response = await route.endpoint(body, request)
            else:
                body, query = parse_with_query(
                    route.model, body_bytes, content_type, route.query, request
                )
                response = await route.endpoint(body, request, **query)
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


def parse_with_query(
    model: type[BaseModel],
    body: bytes,
    content_type: str | None,
    query: type[BaseModel],
    request: Request,
) -> tuple[Any, dict[str, Any]]:
    """The body as `model` and the query parameters that `query`'s fields name, or FastAPI's
    `RequestValidationError` for the same request: a body that is not JSON alone, else the
    query's errors (`("query", name)`) before the body's, as FastAPI lists them."""
    body_errors: list[Any] = []
    parsed: Any = None
    try:
        parsed = parse_body(model, body, content_type)
    except RequestValidationError as exc:
        body_errors = list(exc.errors())
        if any(error["type"] == "json_invalid" for error in body_errors):
            raise  # FastAPI parses the JSON before it looks at the query
    params = request.query_params
    values = {name: params[name] for name in query.model_fields if name in params}
    try:
        fields = dict(query.model_validate(values))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        query_errors = [{**error, "loc": ("query", *error["loc"])} for error in errors]
        raise RequestValidationError(query_errors + body_errors, body=body) from None
    if body_errors:
        raise RequestValidationError(body_errors, body=body)
    return parsed, fields


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
