"""The UI message stream's chunks as bytes (apis/ui/format.py), without a server.

Their shape is checked by the SDK's own schema in tests/test_ui_js.py; these check the
order of parts and the paths a model rarely takes (input that is not JSON, a call without id).
"""

from __future__ import annotations

from typing import Any

import orjson

from streamchat.apis.ui.format import UIMessageFormat
from streamchat.apis.ui.orphans import answer_of
from streamchat.errors import Failure, Kind
from streamchat.providers.base import ToolCallDelta
from streamchat.service.generation import Outcome


def chunks(written: bytes | list[bytes] | None) -> list[Any]:
    if written is None:
        return []
    items = [written] if isinstance(written, bytes) else written
    return [item.decode() if item == b"[DONE]" else orjson.loads(item) for item in items]


def test_each_kind_of_piece_ends_the_part_before_it() -> None:
    fmt = UIMessageFormat(message_id="m1")
    got = chunks(fmt.opening("s1"))
    got += chunks(fmt.reasoning(2, "think"))
    got += chunks(fmt.reasoning(3, "ing"))
    got += chunks(fmt.delta(4, "Hi"))
    got += chunks(fmt.delta(5, "!"))
    got += chunks(fmt.reasoning(6, "more"))
    got += chunks(fmt.closing(7, Outcome(text=["Hi", "!"])))
    assert got == [
        {"type": "start", "messageId": "m1"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "think"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "ing"},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Hi"},
        {"type": "text-delta", "id": "text-2", "delta": "!"},
        {"type": "text-end", "id": "text-2"},
        {"type": "reasoning-start", "id": "reasoning-3"},
        {"type": "reasoning-delta", "id": "reasoning-3", "delta": "more"},
        {"type": "reasoning-end", "id": "reasoning-3"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
        "[DONE]",
    ]


def test_a_tool_input_that_is_not_json_is_a_tool_input_error() -> None:
    fmt = UIMessageFormat(message_id="m1")
    outcome = Outcome(text=[])
    pieces = [ToolCallDelta(0, None, "f", ""), ToolCallDelta(0, None, None, '{"a":')]
    got: list[Any] = []
    for piece in pieces:
        outcome.add_tool_call(piece)
        got += chunks(fmt.tool_call(3, piece))
    assert got == [
        {"type": "tool-input-start", "toolCallId": "m1-call-0", "toolName": "f"},
        {"type": "tool-input-delta", "toolCallId": "m1-call-0", "inputTextDelta": '{"a":'},
    ]
    outcome.finish_reason = "length"
    end = chunks(fmt.closing(4, outcome))
    assert end[0]["type"] == "tool-input-error"
    assert end[0]["toolCallId"] == "m1-call-0"
    assert end[0]["input"] == '{"a":'
    assert end[1:] == [
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "length"},
        "[DONE]",
    ]


def test_a_stopped_answer_aborts_and_a_failed_one_errs() -> None:
    fmt = UIMessageFormat(message_id="m1", lang="en")
    fmt.delta(2, "Hel")
    stopped = chunks(fmt.closing(3, Outcome(text=["Hel"], finish_reason="cancelled")))
    assert stopped == [
        {"type": "text-end", "id": "text-1"},
        {"type": "finish-step"},
        {"type": "abort", "reason": "cancelled"},
        "[DONE]",
    ]
    failed = UIMessageFormat(message_id="m2", lang="en")
    outcome = Outcome(text=[], error=Failure(Kind.UPSTREAM_ERROR, "upstream_bad_response"))
    assert chunks(failed.closing(2, outcome)) == [
        {"type": "error", "errorText": "upstream model failed"},
        "[DONE]",
    ]


def test_a_dead_nodes_ui_stream_is_known_by_its_start_chunk() -> None:
    opening = UIMessageFormat(message_id="m1").opening("s1")[0]
    assert answer_of(opening) == "m1"
    native = b'{"type":"start","index":0,"is_end":false,"uid":1,"message_id":"m2"}'
    assert answer_of(native) is None
