"""Exception handlers: every error before a stream begins becomes GoFrame's envelope.

Under `/v1`, the OpenAI-compatible API, errors take OpenAI's shape instead (`_respond`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from . import openai_errors
from .errors import AppError, pick_language
from .schemas import Code

log = logging.getLogger(__name__)

_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type"}


def _envelope(request: Request, error: AppError) -> Response:
    lang = pick_language(request.headers.get("accept-language"))
    body = {"code": int(error.code), "message": error.message(lang), "data": None}
    return Response(
        orjson.dumps(body),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )


def _respond(request: Request, error: AppError) -> Response:
    """The error in the shape of the API the request is for."""
    if not openai_errors.is_openai_path(request.url.path):
        return _envelope(request, error)
    status, body = openai_errors.from_app_error(error)
    return Response(body, status_code=status, headers=error.headers, media_type="application/json")


def validation_error(errors: Sequence[Any], content_type: str) -> AppError:
    """Our error for the first of pydantic's errors on a request."""
    first = errors[0]
    loc, kind = tuple(first.get("loc", ())), first.get("type", "")
    if kind == "json_invalid":
        return AppError(400, Code.INVALID_REQUEST, "body_invalid_json")
    if loc == ("body",):
        if "json" not in content_type:
            return AppError(415, Code.INVALID_REQUEST, "body_content_type")
        if kind == "missing" or kind in _NOT_AN_OBJECT:
            return AppError(400, Code.INVALID_REQUEST, "body_not_object")
    field = str(loc[-1]) if loc else "body"
    if loc[:1] == ("body",) and field == "uid":
        return AppError(
            400, Code.VALIDATION_FAILED, "uid_required" if kind == "missing" else "uid_invalid"
        )
    if loc[:1] == ("body",) and field == "message":
        return AppError(400, Code.VALIDATION_FAILED, "message_required")
    return AppError(400, Code.VALIDATION_FAILED, "field_invalid", field=field, detail=first["msg"])


async def _on_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return _respond(request, exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "").lower()
    if openai_errors.is_openai_path(request.url.path):
        status, body = openai_errors.from_validation(exc.errors(), content_type)
        return Response(body, status_code=status, media_type="application/json")
    return _envelope(request, validation_error(exc.errors(), content_type))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = AppError(404, Code.NOT_FOUND, "not_found")
    elif exc.status_code == 405:
        error = AppError(405, Code.INVALID_REQUEST, "method_not_allowed")
    elif exc.status_code == 413:
        error = AppError(413, Code.INVALID_REQUEST, "body_too_large")
    else:
        error = AppError(
            exc.status_code,
            Code.INVALID_REQUEST,
            "field_invalid",
            field="request",
            detail=exc.detail,
        )
    error.headers = dict(exc.headers or {})
    return _respond(request, error)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return _respond(request, AppError(500, Code.INTERNAL_ERROR, "internal_error"))


Handler = Callable[[Request, Exception], Awaitable[Response]]

# The errors a request can end with before its stream begins, and their handlers.
_HANDLERS: dict[type[Exception], Handler] = {
    AppError: _on_app_error,
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
