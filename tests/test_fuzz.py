"""A property-based fuzz of the whole API from `/api.json`, against a real server.

Schemathesis (on Hypothesis) generates requests for every operation of the spec, valid ones
and invalid ones, a bounded number of each. The properties: no 5xx, every response in the
shape, status and content type the spec documents, and the server still answers a normal
chat afterwards. The figure (requests run, 5xx) is printed: `pytest -s tests/test_fuzz.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter, ValidationError
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from streamchat.apis.openai_chat.protocol import ChatCompletionChunk, ErrorResponse
from streamchat.schemas import StreamEvent

from .conftest import StartServer
from .sseclient import FrameReader

EXAMPLES = 60  # per operation and generation mode
SECONDS = 240  # the whole fuzz stops generating after this, whatever is left
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Tally:
    """What the fuzz sent and got."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    deadline: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def fuzz(base_url: str, tally: Tally) -> None:
    """Run every operation of the spec, in both generation modes (in a thread: blocking)."""
    schema = schemathesis.openapi.from_url(base_url + "/api.json")
    session = requests.Session()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the spec is invalid: {result.err()}"
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                examples(operation, mode, base_url, session, tally)()
            except Unsatisfiable:
                # No invalid request exists for an operation without parameters (GET /hello).
                assert mode is GenerationMode.NEGATIVE, operation.label


def examples(
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    tally: Tally,
) -> Callable[[], None]:
    """The Hypothesis test of one operation in one mode."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        if time.monotonic() > tally.deadline:
            return
        response = case.call(base_url=base_url, session=session, timeout=30)
        tally.statuses[response.status_code] += 1
        try:
            content_type = response.headers.get("content-type", [""])[0]
            if content_type.startswith("text/event-stream"):
                # Schemathesis reads an SSE schema as OpenAPI 3.2's per-event object; ours
                # documents the payload of `data:`: checked here.
                check_events(case.path, response.text)
                checks = [c for c in CHECKS if c is not response_schema_conformance]
            else:
                checks = CHECKS
            case.validate_response(response, checks=checks)
        except (AssertionError, ValidationError, BaseExceptionGroup) as exc:
            # Every failure is kept, not only the first.
            tally.failures.append(f"{operation.label} ({mode.value}): {exc}")

    return cast(Callable[[], None], run)


_NATIVE_EVENT: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


_RESPONSES_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
# The AI SDK's UI message stream chunks (DESIGN §13); tests/test_ui_js.py checks each against
# the SDK's own schema, this only that nothing else is sent.
_UI_CHUNKS = {
    "start", "start-step", "text-start", "text-delta", "text-end", "reasoning-start",
    "reasoning-delta", "reasoning-end", "tool-input-start", "tool-input-delta",
    "tool-input-available", "tool-input-error", "finish-step", "finish", "error", "abort",
}  # fmt: skip


def check_events(path: str, text: str) -> None:
    """Every `data:` of a stream is an event of its API's contract: native, the UI message
    stream's, OpenAI's chunks, or the Responses API's events."""
    payloads = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert payloads, "a stream without events"
    for payload in payloads:
        if path.startswith("/api/ui/"):
            assert payload == "[DONE]" or json.loads(payload)["type"] in _UI_CHUNKS, payload
        elif not path.startswith("/v1"):
            _NATIVE_EVENT.validate_json(payload)
        elif path.startswith("/v1/responses"):
            _RESPONSES_EVENT.validate_json(payload)
        elif payload != "[DONE]":
            if '"error"' in payload[:10]:
                ErrorResponse.model_validate_json(payload)
            else:
                ChatCompletionChunk.model_validate_json(payload)


async def test_fuzzing_the_whole_api_finds_no_5xx_and_no_broken_shape(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", echo_delay_ms="0", detach_grace_seconds="0")
    tally = Tally(deadline=time.monotonic() + SECONDS)
    await asyncio.to_thread(fuzz, server.url, tally)
    print(
        f"\nfuzz: {tally.requests} requests, {tally.server_errors} with a 5xx, "
        f"statuses {dict(sorted(tally.statuses.items()))}"
    )
    assert tally.requests >= 200, "the fuzz barely ran"
    assert tally.server_errors == 0
    assert not tally.failures, "\n".join(tally.failures[:20])
    assert "Traceback" not in server.log()
    async with http.post(server.url + "/api/chat", json={"uid": 1, "message": "hi"}) as response:
        assert response.status == 200
        frames = await FrameReader(response).all()
    assert frames[-1].event["type"] == "end"
