"""The Responses API's objects: the response, its usage and error, and how an answer's end
becomes a status.

One builder for every place a response object appears: the stream's opening and closing
events, the non-streamed answer, and `GET /v1/responses/{id}` of a stored one (from the
request fields kept with it). `tests/test_responses_format.py` checks them against the
official `openai` package's `Response` type.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ...errors import Failure, Kind
from ...providers.base import TokenUsage
from ...service.generation import Outcome
from .protocol import CreateResponse

ResponseObject = dict[str, Any]


def response_id(stream_id: str) -> str:
    """A response's id: its stream's, so that any node can follow it by the id alone."""
    return f"resp_{stream_id}"


def stream_of(response_id: str) -> str:
    """The stream of a response id (`protocol.ResponseId` has checked its shape)."""
    return response_id.removeprefix("resp_")


def echo(body: CreateResponse, model: str) -> dict[str, Any]:
    """What a response object repeats of its request, kept with a stored response."""
    fmt = body.text.format if body.text is not None else None
    text_format = {"type": "text"} if fmt is None else fmt.model_dump(by_alias=True)
    return {
        "model": model,
        "instructions": body.instructions,
        "tools": [_tool_echo(tool) for tool in body.tools or ()],
        "tool_choice": body.tool_choice or "auto",
        "text": {"format": {k: v for k, v in text_format.items() if v is not None}},
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "parallel_tool_calls": True
        if body.parallel_tool_calls is None
        else body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "metadata": body.metadata or {},
        "background": bool(body.background),
        "store": body.store is not False,
        "created_at": int(time.time()),
    }


def _tool_echo(tool: dict[str, Any]) -> dict[str, Any]:
    keep = ("type", "name", "description", "parameters", "strict")
    return {key: tool[key] for key in keep if tool.get(key) is not None}


@dataclass(slots=True, frozen=True)
class Ending:
    """How a response ended: its status, and why it is incomplete or failed."""

    status: str
    incomplete_reason: str | None = None
    error: dict[str, str] | None = None
    event: str = "response.completed"


def ending_of(outcome: Outcome) -> Ending:
    """The status an answer's end gives its response, and the closing event's type.

    A cancelled response ends its stream with `response.incomplete` (OpenAI's stream events
    have none for a cancellation), its status `cancelled`.
    """
    error = outcome.error
    if error is not None and error.key != "interrupted":
        return Ending("failed", error=error_object(error), event="response.failed")
    reason = outcome.finish_reason
    # Cancelled, or abandoned by the client that left (DESIGN §12: that cancels it).
    if reason == "cancelled" or error is not None:
        return Ending("cancelled", event="response.incomplete")
    if reason == "length":
        return Ending("incomplete", "max_output_tokens", event="response.incomplete")
    if reason == "content_filter":
        return Ending("incomplete", "content_filter", event="response.incomplete")
    return Ending("completed")


def error_object(failure: Failure) -> dict[str, str]:
    """A failed response's `error`: OpenAI has `rate_limit_exceeded` and, for every other
    failure after the answer began, `server_error`."""
    code = "rate_limit_exceeded" if failure.kind is Kind.RATE_LIMITED else "server_error"
    return {"code": code, "message": failure.message("en")}


def usage_object(usage: TokenUsage | None) -> dict[str, Any] | None:
    """The Responses API's usage object."""
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def response_object(
    rid: str,
    request: dict[str, Any],
    status: str,
    output: list[dict[str, Any]],
    *,
    usage: dict[str, Any] | None = None,
    ending: Ending | None = None,
) -> ResponseObject:
    """The `response` object."""
    incomplete = None
    if ending is not None and ending.incomplete_reason is not None:
        incomplete = {"reason": ending.incomplete_reason}
    finished = status in ("completed", "incomplete", "failed", "cancelled")
    return {
        "id": rid,
        "object": "response",
        **request,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": ending.error if ending is not None else None,
        "incomplete_details": incomplete,
        "output": output,
        "usage": usage if finished else None,
        "truncation": "disabled",
        "user": None,
    }
