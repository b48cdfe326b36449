"""The Responses stream format against the official `openai` types: every event of text,
function calls, text between calls, and every ending (completed, length, cancelled, failed),
numbered as the generation numbers hub events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from streamchat.apis.responses import items
from streamchat.apis.responses.format import ResponsesFormat
from streamchat.apis.responses.objects import echo
from streamchat.apis.responses.protocol import CreateResponse
from streamchat.errors import Failure, Kind
from streamchat.providers.base import ReasoningDelta, TokenUsage, ToolCallDelta
from streamchat.service.generation import Outcome

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
RESPONSE = TypeAdapter(Response)


def run(
    pieces: list[str | ToolCallDelta | ReasoningDelta], outcome: Outcome, **request: Any
) -> list[Any]:
    """Drive a format as `Generation` does: hub indices from the opening's length on."""
    fmt = ResponsesFormat(echo(CreateResponse(**request), "m"))
    payloads = fmt.opening("0" * 32)
    for piece in pieces:
        index = len(payloads)
        out: bytes | list[bytes]
        if isinstance(piece, str):
            outcome.text.append(piece)
            out = fmt.delta(index, piece)
        elif isinstance(piece, ReasoningDelta):
            outcome.reasoning.append(piece.text)
            out = fmt.reasoning(index, piece.text)
        else:
            outcome.add_tool_call(piece)
            out = fmt.tool_call(index, piece)
        payloads += [out] if isinstance(out, bytes) else out
    payloads += fmt.closing(len(payloads), outcome)
    events = [EVENTS.validate_python(orjson.loads(p)) for p in payloads]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    RESPONSE.validate_python(orjson.loads(payloads[-1])["response"])
    return events


def test_text_between_function_calls_makes_one_item_each() -> None:
    pieces: list[str | ToolCallDelta | ReasoningDelta] = [
        "Look",
        "ing.",
        ToolCallDelta(0, "call_a", "f", '{"x":'),
        ToolCallDelta(0, None, None, "1}"),
        ToolCallDelta(1, "call_b", "g", "{}"),
        "done",
    ]
    events = run(
        pieces, Outcome(text=[], usage=TokenUsage(3, 4)), tools=[{"type": "function", "name": "f"}]
    )
    final = events[-1].response
    assert final.status == "completed"
    assert [item.type for item in final.output] == [
        "message",
        "function_call",
        "function_call",
        "message",
    ]
    assert [item.arguments for item in final.output[1:3]] == ['{"x":1}', "{}"]
    assert final.usage.total_tokens == 7
    done = [e.item.id for e in events if e.type == "response.output_item.done"]
    assert done == [item.id for item in final.output]
    args = [e.arguments for e in events if e.type == "response.function_call_arguments.done"]
    assert args == ['{"x":1}', "{}"]


@pytest.mark.parametrize(
    ("outcome", "event", "status"),
    [
        (Outcome(text=[], finish_reason="length"), "response.incomplete", "incomplete"),
        (Outcome(text=[], finish_reason="cancelled"), "response.incomplete", "cancelled"),
        (
            Outcome(text=[], error=Failure(Kind.UPSTREAM_ERROR, "upstream_bad_response")),
            "response.failed",
            "failed",
        ),
        (
            Outcome(text=[], error=Failure(Kind.INTERRUPTED, "interrupted_shutdown")),
            "response.failed",
            "failed",
        ),
        # Its client left: that cancels a response (not a background one: it never does).
        (
            Outcome(text=[], error=Failure(Kind.INTERRUPTED, "interrupted")),
            "response.incomplete",
            "cancelled",
        ),
    ],
)
def test_every_ending_is_one_of_openais(outcome: Outcome, event: str, status: str) -> None:
    events = run(["partial"], outcome, background=True)
    assert events[0].response.status == "queued"
    assert events[-1].type == event
    final = events[-1].response
    assert final.status == status
    assert final.output[0].content[0].text == "partial"
    assert final.output[0].status == "incomplete"
    if status == "failed":
        assert final.error.code == "server_error"


def test_an_answer_with_no_output_completes_empty() -> None:
    events = run([], Outcome(text=[]))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert events[-1].response.output == []


def test_reasoning_is_an_item_of_its_own_before_the_answer() -> None:
    pieces: list[str | ToolCallDelta | ReasoningDelta] = [
        ReasoningDelta("hmm, "),
        ReasoningDelta("greet."),
        "Hi",
    ]
    events = run(pieces, Outcome(text=[]))
    types = [e.type for e in events]
    assert "response.reasoning_text.delta" in types
    assert types.index("response.reasoning_text.done") < types.index("response.output_text.delta")
    reasoning, message = events[-1].response.output
    assert reasoning.type == "reasoning"
    assert reasoning.content[0].text == "hmm, greet."
    assert message.content[0].text == "Hi"
    assert events[-1].response.output_text == "Hi"


def test_a_stored_reasoning_item_is_not_sent_back_to_the_model() -> None:
    stored = [
        items.user_message("hi"),
        items.reasoning("rs_1", "hmm", "completed"),
        items.output_message("msg_1", "Hello", "completed"),
    ]
    sent = items.chat_messages(stored)
    assert [(m.role, m.content) for m in sent] == [("user", "hi"), ("assistant", "Hello")]
