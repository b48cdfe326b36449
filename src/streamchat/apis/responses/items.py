"""Responses items: read from a request, kept in the store, and turned into chat messages.

The providers speak Chat Completions, so a conversation of items (messages, function calls,
their outputs) becomes chat messages here: a `function_call` is an assistant turn's
`tool_calls` entry, a `function_call_output` a `tool` turn. Items are normalized once, as
they come in (each with an `id` and a `status`, in the shape `input_items` lists them), and
kept so; the store keeps them as JSON beside a text rendering for the history pages.
"""

from __future__ import annotations

import uuid
from typing import Any

from ...errors import Failure, Kind
from ...providers.base import ChatMessage, Role, Unsupported

Item = dict[str, Any]

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_ROLES: dict[str, Role] = {
    "user": "user",
    "system": "system",
    "developer": "system",
    "assistant": "assistant",
}


def new_id(prefix: str) -> str:
    """An item id in OpenAI's style: a prefix and 32 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex}"


def invalid(param: str, detail: str) -> Failure:
    """A 400 naming the parameter at fault."""
    return Failure(Kind.VALIDATION, "field_invalid", field=param, detail=detail)


def normalize(raw: str | list[dict[str, Any]]) -> list[Item]:
    """The request's `input` as items, each with an id; a 400 for what cannot be read."""
    if isinstance(raw, str):
        return [user_message(raw)]
    items = []
    for position, item in enumerate(raw):
        kind = item.get("type", "message")
        where = f"input[{position}]"
        if kind == "message":
            items.append(_message(item, where))
        elif kind == "function_call":
            items.append(_function_call(item, where))
        elif kind == "function_call_output":
            items.append(_function_output(item, where))
        elif kind != "reasoning":  # the model's own reasoning is not sent back to it
            raise Unsupported(where, f"items of type {str(kind)[:40]!r} are not supported")
    return items


def user_message(text: str) -> Item:
    """A user message item of one text part."""
    content = [{"type": "input_text", "text": text}]
    return {"id": new_id("msg"), "type": "message", "role": "user", "content": content}


def output_message(item_id: str, text: str, status: str) -> Item:
    """An assistant message item of one `output_text` part."""
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [part],
    }


def reasoning(item_id: str, text: str, status: str) -> Item:
    """A `reasoning` item: the model's reasoning as text (no summary, nothing encrypted)."""
    content = [{"type": "reasoning_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content, "status": status}


def function_call(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Item:
    """A `function_call` item."""
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _message(item: dict[str, Any], where: str) -> Item:
    role = item.get("role")
    if role not in _ROLES:
        raise invalid(f"{where}.role", "must be user, system, developer or assistant")
    text = _text(item.get("content"), f"{where}.content")
    if role == "assistant":
        return output_message(_id(item, "msg"), text, "completed")
    content = [{"type": "input_text", "text": text}]
    message = {"id": _id(item, "msg"), "type": "message", "role": role, "content": content}
    return message | {"status": "completed"}


def _function_call(item: dict[str, Any], where: str) -> Item:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise invalid(where, "a function_call needs a call_id and a name")
    if not isinstance(arguments, str):
        raise invalid(f"{where}.arguments", "must be a string of JSON")
    return function_call(_id(item, "fc"), call_id, name, arguments, "completed")


def _function_output(item: dict[str, Any], where: str) -> Item:
    call_id = item.get("call_id")
    if not isinstance(call_id, str):
        raise invalid(f"{where}.call_id", "a function_call_output needs the call_id it answers")
    output = item.get("output")
    text = output if isinstance(output, str) else _text(output, f"{where}.output")
    return {
        "id": _id(item, "fco"),
        "type": "function_call_output",
        "call_id": call_id,
        "output": text,
        "status": "completed",
    }


def _id(item: dict[str, Any], prefix: str) -> str:
    given = item.get("id")
    return given if isinstance(given, str) and 0 < len(given) <= 64 else new_id(prefix)


def _text(content: object, where: str) -> str:
    """The text of a message's content: a string, or text parts (joined by newlines)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(where, "must be a string or a list of content parts")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("refusal" if kind == "refusal" else "text") if kind else None
        if (kind in _TEXT_PARTS or kind == "refusal") and isinstance(text, str):
            texts.append(text)
        else:
            raise Unsupported(where, f"content parts of type {str(kind)[:40]!r} are not supported")
    return "\n".join(texts)


def item_text(item: Item) -> str:
    """An item as text, for the history pages (and a native turn that continues it)."""
    kind = item["type"]
    if kind == "function_call":
        return f"[function_call {item['name']} {item['arguments']}]"
    if kind == "function_call_output":
        return f"[function_call_output {item['call_id']}] {item['output']}"
    return "\n".join(part.get("text", part.get("refusal", "")) for part in item["content"])


def item_role(item: Item) -> str:
    """The stored role of an item's message (a function's output counts as the user's)."""
    if item["type"] == "function_call":
        return "assistant"
    if item["type"] == "function_call_output":
        return "user"
    return "system" if item["role"] == "developer" else str(item["role"])


def chat_messages(items: list[Item]) -> list[ChatMessage]:
    """Items as the chat messages a provider reads: function calls join the assistant turn
    before them, or make one; their outputs are `tool` turns."""
    out: list[ChatMessage] = []
    for item in items:
        kind = item["type"]
        if kind == "reasoning":  # the model's own, kept in the store, not sent back
            continue
        if kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                out.append(ChatMessage("assistant", None, tool_calls=[call]))
        elif kind == "function_call_output":
            out.append(ChatMessage("tool", item["output"], tool_call_id=item["call_id"]))
        else:
            out.append(ChatMessage(_ROLES[item["role"]], item_text(item)))
    return out
