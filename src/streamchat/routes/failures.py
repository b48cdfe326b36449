"""Failures as HTTP: the one place where a failure's kind becomes a status and an envelope code.

Everything below the routes raises `errors.Failure` with a kind and knows no status; the
exception handlers (server/handlers.py) and the non-streamed OpenAI answer
(routes/responses.py) ask here.
"""

from __future__ import annotations

from ..errors import Failure, Kind
from ..schemas import Code

# kind -> (HTTP status, envelope code)
_HTTP: dict[Kind, tuple[int, Code]] = {
    Kind.INVALID_REQUEST: (400, Code.INVALID_REQUEST),
    Kind.UNSUPPORTED_MEDIA: (415, Code.INVALID_REQUEST),
    Kind.VALIDATION: (400, Code.VALIDATION_FAILED),
    Kind.TOO_LONG: (413, Code.VALIDATION_FAILED),
    Kind.BODY_TOO_LARGE: (413, Code.INVALID_REQUEST),
    Kind.HEADERS_TOO_LARGE: (431, Code.INVALID_REQUEST),
    Kind.NOT_FOUND: (404, Code.NOT_FOUND),
    Kind.UNAUTHORIZED: (401, Code.NOT_AUTHORIZED),
    Kind.FORBIDDEN: (403, Code.NOT_AUTHORIZED),
    Kind.METHOD_NOT_ALLOWED: (405, Code.INVALID_REQUEST),
    Kind.RATE_LIMITED: (429, Code.SERVER_BUSY),
    Kind.BUSY: (503, Code.SERVER_BUSY),
    Kind.DATABASE: (503, Code.DB_OPERATION_ERROR),
    Kind.STREAM_UNAVAILABLE: (503, Code.SERVER_BUSY),
    Kind.UPSTREAM_ERROR: (502, Code.OPERATION_FAILED),
    Kind.UPSTREAM_REJECTED: (400, Code.INVALID_REQUEST),  # or the upstream's own 4xx
    Kind.UPSTREAM_UNAVAILABLE: (503, Code.SERVER_BUSY),
    Kind.UPSTREAM_TIMEOUT: (504, Code.OPERATION_FAILED),
    Kind.INTERRUPTED: (503, Code.SERVER_BUSY),
    Kind.INTERNAL: (500, Code.INTERNAL_ERROR),
}


def status_of(failure: Failure) -> int:
    """The HTTP status of a failure (an upstream's refusal of the client's request keeps the
    upstream's status)."""
    if failure.kind is Kind.UPSTREAM_REJECTED and failure.upstream_status is not None:
        return failure.upstream_status
    return _HTTP[failure.kind][0]


def code_of(failure: Failure) -> Code:
    """The envelope code of a failure."""
    return _HTTP[failure.kind][1]


def headers_of(failure: Failure) -> dict[str, str]:
    """The response headers a failure asks for (`Retry-After`, `WWW-Authenticate`)."""
    headers = {}
    if failure.retry_after is not None:
        headers["Retry-After"] = str(failure.retry_after)
    if failure.kind is Kind.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    return headers
