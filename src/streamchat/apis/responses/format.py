"""The Responses API's stream: provider events as OpenAI's `response.*` events.

A `StreamFormat` (service/generation.py). Every event is one hub event, and its
`sequence_number` is its index in the hub, so `starting_after=N` is the hub's `after=N` on
any node. One provider event may open an output item first (`output_item.added`,
`content_part.added` before the first text delta; the previous item's `.done` events
before a function call): those pieces return several events, numbered from the index the
generation gives.

A text delta, once per token, is bytes around a prefix encoded once per message item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ...errors import Failure
from ...providers.base import ToolCallDelta
from ...service.generation import Outcome
from . import items
from .objects import ResponseObject, ending_of, response_id, response_object, usage_object


@dataclass(slots=True)
class _Item:
    """An output item being written: a message's text, or a function call's arguments."""

    id: str
    output_index: int
    kind: str  # "message" | "reasoning" | "function_call"
    pieces: list[str] = field(default_factory=list)
    call_index: int = -1
    call_id: str = ""
    name: str = ""
    delta_head: bytes = b""
    done: str | None = None  # its status once its `.done` events are written

    def text_delta(self, text: str, index: int) -> bytes:
        """An `output_text.delta` event (once per token: bytes around a prefix)."""
        self.pieces.append(text)
        return b'%b%b,"sequence_number":%d}' % (self.delta_head, orjson.dumps(text), index)

    def as_item(self, status: str) -> dict[str, Any]:
        text = "".join(self.pieces)
        if self.kind == "message":
            return items.output_message(self.id, text, status)
        if self.kind == "reasoning":
            return items.reasoning(self.id, text, status)
        return items.function_call(self.id, self.call_id, self.name, text, status)


class ResponsesFormat:
    """The events of one response (DESIGN §12), and the response object it ends as."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request  # the fields the response object repeats (objects.echo)
        self.id = ""
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}
        self._final: ResponseObject | None = None
        self._event = "response.completed"
        self._ended = "completed"  # the status of the items still open when it ends
        self.failure: Failure | None = None  # how it failed, once it has ended

    @property
    def model(self) -> str:
        """The model the response names (the service sets the one that answered)."""
        return str(self.request["model"])

    @model.setter
    def model(self, value: str) -> None:
        self.request["model"] = value

    def opening(self, stream_id: str) -> list[bytes]:
        """`response.created` and `response.in_progress`."""
        self.id = response_id(stream_id)
        first = "queued" if self.request["background"] else "in_progress"
        return [
            _event("response.created", 0, response=self.snapshot(first)),
            _event("response.in_progress", 1, response=self.snapshot("in_progress")),
        ]

    def snapshot(self, status: str) -> ResponseObject:
        """The response object as it is now (its output items so far, in progress)."""
        output = [item.as_item(item.done or "in_progress") for item in self._items]
        return response_object(self.id, self.request, status, output)

    def delta(self, index: int, text: str) -> bytes | list[bytes]:
        """A text delta; first the message item and its part when the text begins."""
        item = self._open
        if item is not None and item.kind == "message":
            return item.text_delta(text, index)
        return self._begin_text("message", index, text)

    def reasoning(self, index: int, text: str) -> bytes | list[bytes]:
        """A reasoning delta (`reasoning_content`), in a `reasoning` item of its own."""
        item = self._open
        if item is not None and item.kind == "reasoning":
            return item.text_delta(text, index)
        return self._begin_text("reasoning", index, text)

    def _begin_text(self, kind: str, index: int, text: str) -> list[bytes]:
        events = self._close_open(index)
        events += self._open_text(kind, index + len(events))
        assert self._open is not None
        events.append(self._open.text_delta(text, index + len(events)))
        return events

    def tool_call(self, index: int, call: ToolCallDelta) -> list[bytes]:
        """A piece of a function call's arguments; first its item when the call begins."""
        item = self._calls.get(call.index)
        events: list[bytes] = []
        if item is None:
            events = self._close_open(index)
            item = self._open_call(call)
            events.append(
                _event(
                    "response.output_item.added",
                    index + len(events),
                    output_index=item.output_index,
                    item=item.as_item("in_progress"),
                )
            )
        elif call.name and not item.name:
            item.name = call.name
        if call.arguments:
            item.pieces.append(call.arguments)
            events.append(
                _event(
                    "response.function_call_arguments.delta",
                    index + len(events),
                    item_id=item.id,
                    output_index=item.output_index,
                    delta=call.arguments,
                )
            )
        return events

    def closing(self, index: int, outcome: Outcome) -> list[bytes]:
        """The open item's `.done` events, then `response.completed`, `.incomplete` or
        `.failed` with the whole response object."""
        final = self.final(outcome)
        events = self._close_open(index)
        events.append(_event(self._event, index + len(events), response=final))
        return events

    def final(self, outcome: Outcome) -> ResponseObject:
        """The response object the answer ended as (the same for every caller)."""
        if self._final is None:
            ending = ending_of(outcome)
            self._event = ending.event
            self.failure = outcome.error
            self._ended = "completed" if ending.status == "completed" else "incomplete"
            output = [item.as_item(item.done or self._ended) for item in self._items]
            usage = usage_object(outcome.usage)
            self._final = response_object(
                self.id, self.request, ending.status, output, usage=usage, ending=ending
            )
        return self._final

    def _open_text(self, kind: str, index: int) -> list[bytes]:
        """A `message` (or `reasoning`) item and its text part."""
        item = _Item(items.new_id("msg" if kind == "message" else "rs"), len(self._items), kind)
        self._items.append(item)
        self._open = item
        head: dict[str, Any] = {
            "type": _DELTA[kind],
            "item_id": item.id,
            "output_index": item.output_index,
            "content_index": 0,
        }
        if kind == "message":
            head["logprobs"] = []
        item.delta_head = orjson.dumps(head | {"delta": None})[: -len(b"null}")]
        part = item.as_item("in_progress")["content"][0]
        return [
            _event(
                "response.output_item.added",
                index,
                output_index=item.output_index,
                item=item.as_item("in_progress") | {"content": []},
            ),
            _event(
                "response.content_part.added",
                index + 1,
                item_id=item.id,
                output_index=item.output_index,
                content_index=0,
                part=part,
            ),
        ]

    def _open_call(self, call: ToolCallDelta) -> _Item:
        item = _Item(items.new_id("fc"), len(self._items), "function_call")
        item.call_index = call.index
        item.call_id = call.id or items.new_id("call")
        item.name = call.name or ""
        self._items.append(item)
        self._calls[call.index] = item
        self._open = item
        return item

    def _close_open(self, index: int) -> list[bytes]:
        """The `.done` events of the item being written, if one is."""
        item = self._open
        if item is None:
            return []
        self._open = None
        item.done = "completed" if self._final is None else self._ended
        done = item.as_item(item.done)
        where = {"item_id": item.id, "output_index": item.output_index}
        if item.kind in _DONE:
            part = done["content"][0]
            text_done = {"text": part["text"]} | (
                {"logprobs": []} if item.kind == "message" else {}
            )
            events = [
                _event(_DONE[item.kind], index, **where, content_index=0, **text_done),
                _event(
                    "response.content_part.done", index + 1, **where, content_index=0, part=part
                ),
            ]
        else:
            events = [
                _event(
                    "response.function_call_arguments.done",
                    index,
                    **where,
                    arguments=done["arguments"],
                ),
            ]
        events.append(
            _event(
                "response.output_item.done",
                index + len(events),
                output_index=item.output_index,
                item=done,
            )
        )
        return events


# The delta and done events of the two kinds of item with a text part.
_DELTA = {"message": "response.output_text.delta", "reasoning": "response.reasoning_text.delta"}
_DONE = {"message": "response.output_text.done", "reasoning": "response.reasoning_text.done"}


def _event(kind: str, sequence_number: int, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, "sequence_number": sequence_number, **fields})
