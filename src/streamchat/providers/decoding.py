"""What the embedded model is asked for beyond text: tool calls, and JSON under a grammar.

`tool_choice: "required"` or a named function, and `response_format` `json_object` /
`json_schema`, are decoded under a grammar made from a JSON schema by llama.cpp's converter,
so the output always parses and matches the schema: for a forced call, the call object
itself (`{"name": …, "arguments": …}`, the arguments matching that function's parameters).
With `tool_choice: "auto"` the model is free, and its calls are read out of its text.

What this text-only model cannot honour is refused before the stream begins, naming the
parameter (an image, several choices, log probabilities); parameters it does not know are
ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .base import GenerateRequest, Unsupported

# The converter lets a string hold raw control characters, which JSON forbids (and strict
# parsers refuse); llama.cpp's own converter leaves them out the same way.
_LOOSE_CHAR = 'char ::= [^"\\\\]'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F]'
_TEXT_PARTS = ("text", "refusal")
_MAX_RANGE = 1000  # integer bounds enforced as the list of every allowed value up to this


@dataclass(slots=True, frozen=True)
class Decoding:
    """How to decode one request: under which grammar, and whether to read tool calls.

    `tools` are the names a call may use (None: no tools, all output is text); `bare`: the
    output is one call object and nothing else; `parallel`: several calls may follow.
    """

    grammar: str | None = None
    tools: frozenset[str] | None = None
    bare: bool = False
    parallel: bool = True


def refuse_unsupported(request: GenerateRequest, model: str) -> None:
    """Raise `Unsupported` for what a text-only model with one choice cannot do."""
    for i, message in enumerate(request.messages):
        for j, part in enumerate(message.parts or ()):
            kind = part.get("type")
            if kind not in _TEXT_PARTS:
                raise Unsupported(
                    f"messages[{i}].content[{j}]",
                    f"the model {model} reads text only, not a '{kind}' part",
                )
    body = request.passthrough or {}
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise Unsupported("n", f"the model {model} gives one choice per request")
    for param in ("logprobs", "top_logprobs"):
        if body.get(param):
            raise Unsupported(param, f"the model {model} does not report log probabilities")
    for i, tool in enumerate(request.tools or ()):
        if tool.get("type") != "function":
            raise Unsupported(f"tools[{i}]", f"the model {model} can call functions only")


def decoding(request: GenerateRequest) -> Decoding:
    """The grammar and tool-call reading that `request` asks for (`Unsupported` for a schema
    the converter cannot turn into a grammar)."""
    functions = [tool["function"] for tool in request.tools or () if tool.get("function")]
    names = frozenset(f["name"] for f in functions)
    choice = request.tool_choice
    parallel = request.parallel_tool_calls is not False
    if functions and (choice == "required" or isinstance(choice, dict)):
        if isinstance(choice, dict):
            wanted = choice.get("function", {}).get("name")
            functions = [f for f in functions if f["name"] == wanted]
        grammar = _grammar([_call_schema(f) for f in functions], "tools")
        return Decoding(grammar, names, bare=True, parallel=False)
    answer = _answer_schema(request.response_format)
    if answer is None:
        return Decoding(tools=names or None, parallel=parallel)
    # The model answers in the schema, or (when it has tools) calls one as a bare object.
    schemas = [_call_schema(f) for f in functions] + [answer]
    grammar = _grammar(schemas, "response_format")
    return Decoding(grammar, names or None, parallel=parallel)


def _call_schema(function: dict[str, Any]) -> dict[str, Any]:
    """A call of `function` as one JSON object: its name, then arguments of its schema."""
    parameters = function.get("parameters") or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": parameters},
        "required": ["name", "arguments"],
    }


def _answer_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema") or {}
        schema = spec.get("schema")
        return schema if isinstance(schema, dict) and schema else {"type": "object"}
    return None


def _grammar(schemas: list[dict[str, Any]], param: str) -> str:
    """llama.cpp's GBNF for a value matching one of `schemas`; `Unsupported(param)` if the
    converter cannot make one."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # only with the local model

    schema = _bounded(schemas[0] if len(schemas) == 1 else {"anyOf": schemas})
    try:
        grammar = str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # the converter raises bare exceptions of several kinds
        raise Unsupported(param, f"its JSON schema cannot be made a grammar: {exc}") from None
    return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)


def _bounded(schema: Any) -> Any:
    """`schema` with each bounded integer (a range of at most `_MAX_RANGE` values) as the
    list of its values: the converter leaves `minimum` and `maximum` out, an `enum` it keeps."""
    if isinstance(schema, list):
        return [_bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _bounded(value) for key, value in schema.items()}
    low, high = _integer_range(out)
    if low is not None and high is not None and 0 <= high - low <= _MAX_RANGE:
        for key in ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            out.pop(key, None)
        out["enum"] = list(range(low, high + 1))
    return out


def _integer_range(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    if schema.get("type") != "integer" or "enum" in schema or "const" in schema:
        return None, None
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = schema["exclusiveMinimum"] + 1
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = schema["exclusiveMaximum"] - 1
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None, None
    return math.ceil(low), math.floor(high)
