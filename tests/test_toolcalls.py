"""Tool calls read out of a model's text as it streams: every form the small Qwen models
write, any split of the text into pieces, and text that only looks like a call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamchat.providers.base import TextDelta, ToolCallDelta
from streamchat.providers.toolcalls import ToolCallParser

NAMES = frozenset({"get_weather", "add"})
WEATHER_CALL = '{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, {"a": "}"}]}}'


def read(text: str, size: int, **options: Any) -> tuple[str, list[dict[str, Any]], str]:
    """(text, calls, finish reason) from `text` fed `size` characters at a time."""
    parser = ToolCallParser(NAMES, **options)
    events = []
    for i in range(0, len(text), size):
        events += parser.feed(text[i : i + size])
        if parser.done:
            break
    events += parser.flush()
    calls: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, ToolCallDelta):
            if event.name is not None:
                assert event.index == len(calls)
                assert event.id is not None
                assert event.id.startswith("call_")
                calls.append({"name": event.name, "arguments": ""})
            calls[event.index]["arguments"] += event.arguments
    said = "".join(e.text for e in events if isinstance(e, TextDelta))
    return said, calls, parser.finish_reason("stop")


CALLS = {
    "tags": f"<tool_call>\n{WEATHER_CALL}\n</tool_call>",
    "fence": f"```json\n{WEATHER_CALL}\n```\nThis calls the weather tool.",
    "bare fence": f"```\n{WEATHER_CALL}\n```",
    "bare object": f"\n{WEATHER_CALL}",
    "text first": f"Let me check. <tool_call>\n{WEATHER_CALL}\n</tool_call>",
    "arguments first": '<tool_call>{"arguments": {"city": "Paris", "days": [1, {"a": "}"}]}, '
    '"name": "get_weather"}</tool_call>',
    "arguments as a string": '<tool_call>{"name": "get_weather", "arguments": '
    + json.dumps(json.dumps({"city": "Paris", "days": [1, {"a": "}"}]}))
    + "}</tool_call>",
}


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
@pytest.mark.parametrize("form", list(CALLS))
def test_every_form_of_a_call_gives_the_same_call_however_the_text_is_split(
    form: str, size: int
) -> None:
    said, calls, reason = read(CALLS[form], size)
    assert said == ("Let me check. " if form == "text first" else "")
    assert [c["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "days": [1, {"a": "}"}]}
    assert reason == "tool_calls"


@pytest.mark.parametrize("size", [1, 3, 1000])
@pytest.mark.parametrize(
    "text",
    [
        "a < b, `x` and ```python\nprint(1)\n```\n",
        '```json\n{"city": "Paris"}\n```',
        '{"name": "Ada", "age": 3}',
        '<tool_call>\n{"name": "unknown", "arguments": {}}\n</tool_call>',
        "```",
        "<tool_c",
    ],
)
def test_text_that_only_looks_like_a_call_is_sent_whole(text: str, size: int) -> None:
    assert read(text, size) == (text, [], "stop")


def test_two_calls_in_a_row_are_two_calls_unless_parallel_calls_are_off() -> None:
    one = '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>\n'
    two = '<tool_call>\n{"name": "add", "arguments": {"a": 2}}\n</tool_call>'
    _, calls, _ = read(one + two, 3)
    assert [c["arguments"] for c in calls] == ['{"a": 1}', '{"a": 2}']
    _, calls, _ = read(one + two, 3, parallel=False)
    assert [c["arguments"] for c in calls] == ['{"a": 1}']


def test_a_call_cut_inside_its_arguments_finishes_as_cut() -> None:
    said, calls, reason = read('<tool_call>{"name": "add", "arguments": {"a": 1', 4)
    assert said == ""
    assert calls == [{"name": "add", "arguments": '{"a": 1'}]
    assert reason == "stop"  # the engine's own reason (`length` when the tokens ran out)


def test_arguments_stream_in_pieces_as_they_are_written() -> None:
    parser = ToolCallParser(NAMES)
    assert parser.feed('<tool_call>{"name": "add", ') == []
    named, first = parser.feed('"arguments": {"a"')
    assert isinstance(named, ToolCallDelta)
    assert named.name == "add"
    assert first == ToolCallDelta(0, arguments='{"a"')
    assert parser.feed(": 1") == [ToolCallDelta(0, arguments=": 1")]
