"""Tool calls in a model's text, found as it streams: `<tool_call>` tags and fenced JSON.

Qwen2.5's chat template asks for `<tool_call>{"name": …, "arguments": …}</tool_call>`; its small
models write a fenced ```json block with the same object about as often, or the bare object.
All three become the same `ToolCallDelta`s: the first piece of a call names it (index, id,
name) as soon as its name is read, then its arguments stream in pieces as the model writes
them. Text that is not a call streams on as `TextDelta`; only what could be the start of a
call is held back until the next pieces show whether it is one.

What the model writes after its last call (an explanation of the call, typically) is not
sent: the answer is the calls, and generation stops there.
"""

from __future__ import annotations

import enum
import json
import uuid

from .base import ProviderEvent, TextDelta, ToolCallDelta
from .jsonscan import ARGUMENT_KEYS, BLANKS, ValueScanner, arguments_text, read_head

_TAG, _TAG_END, _FENCE = "<tool_call>", "</tool_call>", "```"


def call_id() -> str:
    """A fresh tool-call id in OpenAI's form."""
    return "call_" + uuid.uuid4().hex[:24]


class _State(enum.Enum):
    TEXT = 1  # answer text; watching for an opener
    HEAD = 2  # an opener was read: is a call's `{"name": …, "arguments":` coming?
    WHOLE = 3  # a call that names its arguments first: read whole, then sent
    ARGS = 4  # inside a call's arguments, sent as they come
    AFTER = 5  # a call ended: only its closer, blanks and more calls may follow


class ToolCallParser:
    """Turns a model's text, piece by piece, into text and tool-call events.

    `names` are the tools the request offers (a call to any other name is text); `bare`: the
    whole output is one call object (a grammar made it so); `parallel`: more than one call
    may follow, otherwise generation may stop after the first (`done`).
    """

    def __init__(self, names: frozenset[str], *, bare: bool = False, parallel: bool = True):
        self._names = names
        self._parallel = parallel
        self._state = _State.HEAD if bare else _State.TEXT
        self._buf = ""  # text read and not yet sent or consumed
        self._opener = ""  # the opener of the call being read, sent as text if it is none
        self._closer = ""  # what closes the last call (`</tool_call>`, the fence) if anything
        self._leading = not bare  # only blanks so far: a bare `{` may begin a call
        self._scan = ValueScanner()
        self.calls = 0  # calls begun (named)
        self.complete = 0  # calls whose arguments ended
        self.done = False  # nothing more is wanted from the model

    def feed(self, text: str) -> list[ProviderEvent]:
        """The events for the next piece of the model's text."""
        out: list[ProviderEvent] = []
        if self.done:
            return out
        self._buf += text
        while self._buf and not self.done and self._step(out):
            pass
        return _merged(out)

    def flush(self) -> list[ProviderEvent]:
        """The events for what is held back when the model has stopped."""
        out: list[ProviderEvent] = []
        if not self.done and self._state in (_State.TEXT, _State.HEAD, _State.WHOLE):
            self._text(out, self._opener + self._buf)
        self._buf = self._opener = ""
        return _merged(out)

    def finish_reason(self, reason: str) -> str:
        """The answer's finish reason: `tool_calls` once a call is whole, unless cut inside one."""
        if self.complete and self._state is not _State.ARGS:
            return "tool_calls"
        return reason

    def _step(self, out: list[ProviderEvent]) -> bool:
        """Consume what can be decided in the buffer; False when more text is needed."""
        if self._state is _State.TEXT:
            return self._in_text(out)
        if self._state is _State.HEAD:
            return self._in_head(out)
        if self._state is _State.WHOLE:
            return self._in_whole(out)
        if self._state is _State.ARGS:
            return self._in_args(out)
        return self._after(out)

    def _text(self, out: list[ProviderEvent], text: str) -> None:
        if not text:
            return
        if self.complete:  # text after the calls: the model is done calling
            self.done = True
            return
        out.append(TextDelta(text))

    def _in_text(self, out: list[ProviderEvent]) -> bool:
        buf = self._buf
        if self._leading:
            body = buf.lstrip(BLANKS)
            if not body:
                return False  # blanks: held until what follows shows if a call begins
            if body[0] == "{":
                self._open(len(buf) - len(body))
                return True
            self._leading = False
        at = _first_of(buf, "<`")
        if at < 0:
            self._text(out, buf)
            self._buf = ""
            return False
        self._text(out, buf[:at])
        rest = self._buf = buf[at:]
        if rest.startswith(_TAG):
            self._closer = _TAG_END
            self._open(len(_TAG))
            return True
        if rest.startswith(_FENCE):
            return self._fence(out)
        if _TAG.startswith(rest) or _FENCE.startswith(rest):
            return False  # could be an opener: wait
        self._text(out, rest[0])
        self._buf = rest[1:]
        return True

    def _fence(self, out: list[ProviderEvent]) -> bool:
        """```, ```json, then blanks and `{`: maybe a call; any other fence is text."""
        rest = self._buf
        i = len(_FENCE)
        while i < len(rest) and rest[i].isalpha():
            i += 1
        language = rest[len(_FENCE) : i].lower()
        if i == len(rest) and "json".startswith(language):
            return False  # the language may go on
        j = i
        while j < len(rest) and rest[j] in BLANKS:
            j += 1
        if language in ("", "json"):
            if j == len(rest):
                return False  # blanks: a `{` may follow
            if rest[j] == "{":
                self._closer = _FENCE
                self._open(j)
                return True
        self._text(out, rest[:i])  # not a call: the fence and its language are text
        self._buf = rest[i:]
        return True

    def _open(self, skip: int) -> None:
        """An opener was read (the first `skip` characters of the buffer): read the head."""
        self._opener, self._buf = self._buf[:skip], self._buf[skip:]
        self._leading = False
        self._state = _State.HEAD

    def _not_a_call(self, out: list[ProviderEvent]) -> bool:
        """What looked like an opener is text after all (in bare mode: the whole output)."""
        self._text(out, self._opener)
        self._opener = self._closer = ""
        self._state = _State.TEXT
        return True

    def _in_head(self, out: list[ProviderEvent]) -> bool:
        head = read_head(self._buf)
        if head is None:
            return False
        if head == "whole":
            self._state = _State.WHOLE
            return True
        if isinstance(head, str) or head.name not in self._names:  # "none": no call
            return self._not_a_call(out)
        out.append(ToolCallDelta(self.calls, id=call_id(), name=head.name))
        self.calls += 1
        self._opener = ""
        self._buf = self._buf[head.end :]
        self._scan = ValueScanner()
        self._state = _State.ARGS
        return True

    def _in_whole(self, out: list[ProviderEvent]) -> bool:
        end = ValueScanner().end_of(self._buf)
        if end < 0:
            return False
        try:
            call = json.loads(self._buf[:end])
        except ValueError:
            return self._not_a_call(out)
        name = call.get("name") if isinstance(call, dict) else None
        key = next((k for k in ARGUMENT_KEYS if isinstance(call, dict) and k in call), None)
        if not isinstance(name, str) or name not in self._names or key is None:
            return self._not_a_call(out)
        out.append(ToolCallDelta(self.calls, id=call_id(), name=name))
        out.append(ToolCallDelta(self.calls, arguments=arguments_text(call[key])))
        self.calls += 1
        self._opener = ""
        self._buf = self._buf[end:]
        self._ended()
        return True

    def _in_args(self, out: list[ProviderEvent]) -> bool:
        piece, used, ended = self._scan.feed(self._buf)
        self._buf = self._buf[used:]
        if piece:
            out.append(ToolCallDelta(self.calls - 1, arguments=piece))
        if not ended:
            return False
        self._ended()
        return True

    def _ended(self) -> None:
        self.complete += 1
        self._state = _State.AFTER
        if not self._parallel:
            self.done = True

    def _after(self, out: list[ProviderEvent]) -> bool:
        """Past a call: its closing brace and closer, blanks; then another call or the end."""
        buf = self._buf.lstrip(BLANKS + "}")
        if self._closer and buf.startswith(self._closer):
            buf = buf[len(self._closer) :].lstrip(BLANKS)
            self._closer = ""
        self._buf = buf
        if not buf or (self._closer and self._closer.startswith(buf)):
            return False
        self._closer = ""
        self._state = _State.TEXT
        return True


def _first_of(text: str, chars: str) -> int:
    found = [i for i in (text.find(c) for c in chars) if i >= 0]
    return min(found) if found else -1


def _merged(events: list[ProviderEvent]) -> list[ProviderEvent]:
    """Neighbouring text events as one."""
    out: list[ProviderEvent] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta):
            out[-1] = TextDelta(last.text + event.text)
        else:
            out.append(event)
    return out
