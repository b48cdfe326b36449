"""Exception handlers: every failure before a stream begins becomes an HTTP error.

The envelope of GoFrame (`{"code", "message", "data"}`) on the native API; under `/v1`, the
OpenAI-compatible API, OpenAI's error shape (`respond`). The status and code of a failure
come from its kind (routes/failures.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from ..apis.openai_chat import errors as openai_errors
from ..errors import Failure, Kind, pick_language
from ..routes import failures

log = logging.getLogger(__name__)

_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type"}


def respond(
    request: Request,
    failure: Failure,
    headers: Mapping[str, str] | None = None,
    status: int | None = None,
) -> Response:
    """The failure as an HTTP error in the shape of the API the request is for (`status`
    overrides the kind's, for Starlette's own HTTP errors)."""
    status = status or failures.status_of(failure)
    all_headers = {**failures.headers_of(failure), **(headers or {})}
    if openai_errors.is_openai_path(request.url.path):
        status, body = openai_errors.from_failure(failure, status)
    else:
        lang = pick_language(request.headers.get("accept-language"))
        envelope = {"code": int(failures.code_of(failure)), "message": failure.message(lang)}
        body = orjson.dumps({**envelope, "data": None})
    return Response(body, status_code=status, headers=all_headers, media_type="application/json")


def validation_failure(errors: Sequence[Any], content_type: str) -> Failure:
    """Our failure for the first of pydantic's errors on a request."""
    first = errors[0]
    loc, kind = tuple(first.get("loc", ())), first.get("type", "")
    if kind == "json_invalid":
        return Failure(Kind.INVALID_REQUEST, "body_invalid_json")
    if loc == ("body",):
        if "json" not in content_type:
            return Failure(Kind.UNSUPPORTED_MEDIA, "body_content_type")
        if kind == "missing" or kind in _NOT_AN_OBJECT:
            return Failure(Kind.INVALID_REQUEST, "body_not_object")
    field = str(loc[-1]) if loc else "body"
    if loc[:1] == ("body",) and field == "uid":
        return Failure(Kind.VALIDATION, "uid_required" if kind == "missing" else "uid_invalid")
    if loc[:1] == ("body",) and field == "message" and kind != "nul_character":
        return Failure(Kind.VALIDATION, "message_required")
    return Failure(Kind.VALIDATION, "field_invalid", field=field, detail=first["msg"])


async def _on_failure(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Failure)
    return respond(request, exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "").lower()
    if openai_errors.is_openai_path(request.url.path):
        status, body = openai_errors.from_validation(exc.errors(), content_type)
        return Response(body, status_code=status, media_type="application/json")
    return respond(request, validation_failure(exc.errors(), content_type))


_OF_HTTP_STATUS = {
    404: Failure(Kind.NOT_FOUND, "not_found"),
    405: Failure(Kind.METHOD_NOT_ALLOWED, "method_not_allowed"),
    413: Failure(Kind.BODY_TOO_LARGE, "body_too_large"),
}


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    failure = _OF_HTTP_STATUS.get(exc.status_code)
    if failure is None:
        failure = Failure(Kind.INVALID_REQUEST, "field_invalid", field="request", detail=exc.detail)
    return respond(request, failure, exc.headers, status=exc.status_code)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return respond(request, Failure(Kind.INTERNAL, "internal_error"))


Handler = Callable[[Request, Exception], Awaitable[Response]]

# The errors a request can end with before its stream begins, and their handlers.
_HANDLERS: dict[type[Exception], Handler] = {
    Failure: _on_failure,
    RequestValidationError: _on_validation_error,
    HTTPException: _on_http_error,
}


def handler_for(exc: Exception) -> Handler | None:
    """The handler of an expected error (not of an unexpected one: that is a 500)."""
    for kind, handler in _HANDLERS.items():
        if isinstance(exc, kind):
            return handler
    return None


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    for kind, handler in _HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(Exception, _on_unexpected)
