"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Every error of a path under `/v1` goes through here (handlers.py picks this shape for them),
and so does the error chunk that ends a stream that failed after it began. Messages are in
English: OpenAI's clients show them as they are, and none of them sends Accept-Language.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ...access.ticket import Api, api_of
from ...errors import Failure
from ...providers.base import ProviderError, Unsupported, UpstreamRateLimited, UpstreamRejected

# OpenAI's `code` for our message keys, where it has one, and the parameter at fault.
_CODE_OF_KEY = {
    "model_unknown": "model_not_found",
    "not_found": "unknown_url",
    "message_too_long": "string_above_max_length",
    "message_too_many_tokens": "context_length_exceeded",
    "rate_limited_requests": "rate_limit_exceeded",
    "rate_limited_tokens": "rate_limit_exceeded",
    "rate_limited_streams": "rate_limit_exceeded",
    "key_missing": "invalid_api_key",
    "key_invalid": "invalid_api_key",
    "messages_too_long": "string_above_max_length",
    "messages_too_many": "array_above_max_length",
    "max_tokens_too_large": "invalid_value",
    "number_out_of_range": "invalid_value",
    "body_over_limit": "request_too_large",
    "body_too_large": "request_too_large",
    "headers_too_large": "request_header_fields_too_large",
}
_PARAM_OF_KEY = {
    "model_unknown": "model",
    "message_too_long": "messages",
    "message_too_many_tokens": "messages",
    "messages_too_long": "messages",
    "messages_too_many": "messages",
    "max_tokens_too_large": "max_tokens",
}

# Pydantic's error types for the messages we wrote ourselves (openai_protocol.py), and codes.
_OUR_KINDS = {"unsupported": "unsupported_parameter", "invalid_request": "invalid_value"}
_CODE_OF_KIND = {"missing": "missing_required_parameter", "extra_forbidden": "unknown_parameter"}
_TYPE_NAMES = {"str", "int", "float", "bool", "dict", "list", "none"}


def is_openai_path(path: str) -> bool:
    """Whether a request path belongs to the OpenAI-compatible API."""
    return api_of(path) is Api.OPENAI


def error_type(status: int) -> str:
    """OpenAI's `type` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def body(status: int, message: str, *, code: str | None, param: str | None = None) -> bytes:
    """The JSON error object."""
    detail = {"message": message, "type": error_type(status), "param": param, "code": code}
    return orjson.dumps({"error": detail})


def from_failure(failure: Failure, status: int) -> tuple[int, bytes]:
    """Status and body for one of our failures, whose status at the HTTP edge is `status`.

    A provider's refusal is our status (502, 503, 504) and a generic message, never the
    upstream's own: its 401 means our key is wrong, which is the operator's problem, not the
    caller's, and its text may name its address. Both are in the log, with the trace id.
    """
    if isinstance(failure, UpstreamRejected):
        # What the client sent was refused: it gets the upstream's own words about it.
        return status, body(
            status, str(failure.params["reason"]), code=failure.code, param=failure.param
        )
    if isinstance(failure, UpstreamRateLimited):
        return status, body(status, failure.message("en"), code="rate_limit_exceeded")
    if isinstance(failure, ProviderError):
        return status, body(status, failure.message("en"), code=failure.kind.value)
    if isinstance(failure, Unsupported):
        return status, body(
            status, failure.message("en"), code="unsupported_parameter", param=failure.param
        )
    code = _CODE_OF_KEY.get(failure.key, failure.key)
    named = failure.params.get("param")
    param = _PARAM_OF_KEY.get(failure.key) or (named if isinstance(named, str) else None)
    return status, body(status, failure.message("en"), code=code, param=param)


def stream_error(failure: Failure) -> bytes:
    """The error object of an answer that failed after it began: always the server's fault
    (upstream, interruption, the stream store), so OpenAI's `server_error`."""
    return body(500, failure.message("en"), code=failure.kind.value)


def from_validation(errors: Sequence[Any], content_type: str) -> tuple[int, bytes]:
    """Status and body for the first of pydantic's errors on a request under `/v1`."""
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    kind, detail = first.get("type", ""), first.get("msg", "invalid")
    if kind == "json_invalid":
        return 400, body(400, "the request body is not valid JSON", code="invalid_json")
    if loc == ("body",) and "json" not in content_type:
        return 415, body(415, "Content-Type must be application/json", code="invalid_content_type")
    param = _dotted(loc[1:])
    if param is None:
        return 400, body(400, "the request body must be a JSON object", code="invalid_json")
    if kind in _OUR_KINDS:
        message = detail
    elif kind == "missing":
        message = f"Missing required parameter: '{param}'."
    elif kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    else:
        message = f"Invalid value for '{param}': {detail}"
    code = _OUR_KINDS.get(kind) or _CODE_OF_KIND.get(kind, "invalid_value")
    return 400, body(400, message, code=code, param=param)


def _dotted(loc: Sequence[int | str]) -> str | None:
    """`messages.0.content` from pydantic's location, without the union members it tried.

    Union members appear as type names (`str`, `list[TextContentPart]`), which no field of
    the contract is called.
    """
    parts = [str(p) for p in loc if not (isinstance(p, str) and (p in _TYPE_NAMES or "[" in p))]
    return ".".join(parts) or None
