"""Just enough JSON scanning to read a tool call while it streams, without parsing it.

`read_head` tells, from the first characters of an object, whether it is a call and of
which function; `ValueScanner` finds where the arguments' value ends, piece by piece, so
that they can be sent on as they come.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

BLANKS = " \t\r\n"
ARGUMENT_KEYS = ("arguments", "parameters")


@dataclass(slots=True, frozen=True)
class Head:
    """A call's head was read: the function's name, and where its arguments begin."""

    name: str
    end: int  # where the arguments' value begins


class ValueScanner:
    """Finds where a JSON value ends, piece by piece, without parsing it."""

    def __init__(self) -> None:
        self._kind = ""  # "" before the value, "{" object or array, '"' string, "1" literal
        self._depth = 0
        self._string = False
        self._escape = False
        self._held = ""  # a string or literal, sent whole at its end

    def feed(self, text: str) -> tuple[str, int, bool]:
        """(the value's text to send now, characters of `text` used, whether it ended)."""
        i = 0
        if not self._kind:
            while i < len(text) and text[i] in BLANKS:
                i += 1
            if i == len(text):
                return "", i, False
            first = text[i]
            self._kind = "{" if first in "{[" else '"' if first == '"' else "1"
        end = self._end(text, i)
        used = len(text) if end < 0 else end
        if self._kind == "{":
            return text[i:used], used, end >= 0
        self._held += text[i:used]
        if end < 0:
            return "", used, False
        try:
            return arguments_text(json.loads(self._held)), used, True
        except ValueError:
            return self._held.strip(), used, True

    def end_of(self, text: str) -> int:
        """The end of the JSON object that `text` begins with (after blanks), or -1."""
        self._kind = "{"
        return self._end(text, 0)

    def _end(self, text: str, i: int) -> int:
        """The index after the value's end in `text` (scanning on from `i`), or -1."""
        if self._kind == "1":
            return _literal_end(text, i)
        while i < len(text):
            ch = text[i]
            if self._string:
                self._in_string(ch)
                if not self._string and self._kind == '"':
                    return i + 1
            elif ch == '"':
                self._string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1
            i += 1
        return -1

    def _in_string(self, ch: str) -> None:
        if self._escape:
            self._escape = False
        elif ch == "\\":
            self._escape = True
        elif ch == '"':
            self._string = False


def _literal_end(text: str, i: int) -> int:
    """Where a number or literal (`true`, `null`) that began earlier ends, or -1."""
    while i < len(text):
        if text[i] in ",}]" or text[i] in BLANKS:
            return i
        i += 1
    return -1


def read_head(buf: str) -> Head | str | None:
    """`{"name": "…", "arguments": ` at the start of `buf`: a `Head`; `"whole"` when the
    arguments come first; `"none"` when this is no call; None while it cannot be told."""
    lexemes: list[str] = []
    i = 0
    while len(lexemes) < 7:
        while i < len(buf) and buf[i] in BLANKS:
            i += 1
        if i == len(buf):
            return None
        if buf[i] == '"':
            end = _string_end(buf, i)
            if end < 0:
                return None
            try:
                lexemes.append('"' + json.loads(buf[i:end]))
            except ValueError:
                return "none"
            i = end
        else:
            lexemes.append(buf[i])
            i += 1
        if not _head_so_far(lexemes):
            if len(lexemes) == 2 and lexemes[1][1:] in ARGUMENT_KEYS:
                return "whole"
            return "none"
    return Head(lexemes[3][1:], i)


_HEAD_SHAPE = ("{", '"name', ":", '"', ",", '"', ":")


def _head_so_far(lexemes: list[str]) -> bool:
    """Whether the lexemes read so far begin `{"name": "x", "arguments":`."""
    for n, (got, want) in enumerate(zip(lexemes, _HEAD_SHAPE, strict=False)):
        if n == 3:
            if not got.startswith('"'):
                return False
        elif n == 5:
            if got[1:] not in ARGUMENT_KEYS or not got.startswith('"'):
                return False
        elif got != want:
            return False
    return True


def _string_end(buf: str, start: int) -> int:
    """The index after the JSON string beginning at `start`, or -1 if it is not closed yet."""
    i = start + 1
    while i < len(buf):
        if buf[i] == "\\":
            i += 2
            continue
        if buf[i] == '"':
            return i + 1
        i += 1
    return -1


def arguments_text(value: object) -> str:
    """A call's arguments as OpenAI sends them: a string of JSON (the model may have written
    that string itself, or nothing)."""
    if isinstance(value, str):
        return value
    return "{}" if value is None else json.dumps(value, ensure_ascii=False)
