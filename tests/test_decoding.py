"""What the embedded model is asked to decode: the grammar a request gets, and what it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from streamchat.providers.base import ChatMessage, GenerateRequest, Unsupported
from streamchat.providers.decoding import decoding, refuse_unsupported

ADD: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"days": {"type": "integer", "minimum": 1, "maximum": 14}},
            "required": ["days"],
        },
    },
}


def request(**fields: Any) -> GenerateRequest:
    return GenerateRequest(messages=[ChatMessage("user", "Hi")], model="m", **fields)


def test_a_named_tool_choice_is_one_bare_call_under_a_grammar() -> None:
    wanted = decoding(
        request(tools=[ADD], tool_choice={"type": "function", "function": {"name": "add"}})
    )
    assert wanted.bare
    assert not wanted.parallel
    assert wanted.tools == frozenset({"add"})
    assert wanted.grammar is not None
    assert '"\\"add\\""' in wanted.grammar


def test_integer_bounds_are_kept_in_the_grammar_as_the_allowed_values() -> None:
    wanted = decoding(request(tools=[ADD], tool_choice="required"))
    assert wanted.grammar is not None
    assert '"1" | "2" | "3"' in wanted.grammar
    assert '"14"' in wanted.grammar
    assert '"15"' not in wanted.grammar


def test_strings_under_a_grammar_hold_no_raw_control_characters() -> None:
    wanted = decoding(request(response_format={"type": "json_object"}))
    assert wanted.grammar is not None
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in wanted.grammar
    assert wanted.tools is None


def test_tools_on_auto_are_read_from_free_text() -> None:
    wanted = decoding(request(tools=[ADD], tool_choice="auto", parallel_tool_calls=False))
    assert wanted.grammar is None
    assert wanted.tools == frozenset({"add"})
    assert not wanted.parallel


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"messages": [ChatMessage("user", None, parts=[{"type": "input_audio"}])]},
            "messages[0].content[0]",
        ),
        ({"passthrough": {"n": 2}}, "n"),
        ({"passthrough": {"logprobs": True}}, "logprobs"),
        ({"passthrough": {"top_logprobs": 3}}, "top_logprobs"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
    ],
)
def test_what_a_text_model_cannot_do_is_refused_naming_the_parameter(
    fields: dict[str, Any], param: str
) -> None:
    fields = {"messages": [ChatMessage("user", "Hi")], "model": "m", **fields}
    with pytest.raises(Unsupported) as caught:
        refuse_unsupported(GenerateRequest(**fields), "m")
    assert caught.value.param == param


def test_a_schema_the_converter_cannot_read_is_refused_naming_the_parameter() -> None:
    bad = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"$ref": "https://example.com/s.json"}},
    }
    with pytest.raises(Unsupported) as caught:
        decoding(request(response_format=bad))
    assert caught.value.param == "response_format"
