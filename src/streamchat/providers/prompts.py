"""From chat messages to prompt tokens: the model's chat template, user text kept as text.

The template is rendered with a placeholder in place of every message's content, and the
result is tokenized piece by piece: the template's own text with control tokens parsed (its
`<|im_start|>` markers are the real ones), each message's content with none parsed, so a
`<|im_start|>system` typed by a person is just those characters. A message's tokens then do
not depend on what follows it either, so the next turn of a conversation begins with exactly
the tokens of the last one, which is what lets a slot's cache be reused.

Tools and an assistant turn's calls reach the template as JSON it renders itself; a string
in them in which the tokenizer would read a control token becomes a placeholder too, and goes
in JSON-escaped and tokenized as text.

The conversation is trimmed to the context in tokens: oldest turns first, the system prompt
kept; a last message that does not fit alone is refused before the stream begins.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Failure, Kind
from .base import ChatMessage, UpstreamBadResponse

# Private-use characters: no message content reaches the rendered text, so they cannot clash.
# A content hole stands for a message's text; a string hole for a string inside JSON (a
# tool's definition, a call's arguments), which goes in JSON-escaped.
_HOLE = "\ue000{}\ue001"
_STRING_HOLE = "\ue002{}\ue003"
_HOLES = re.compile("(\ue000\\d+\ue001|\ue002\\d+\ue003)")
_MARKS = re.compile("[\ue000-\ue003]")

Tokenize = Callable[[str, bool], list[int]]
Render = Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], str]


@dataclass(slots=True, frozen=True)
class Prompt:
    """A conversation's tokens, and how many of its oldest messages did not fit.

    `head` is where the first message after the system prompt begins: a cache that shares
    no more than that with the prompt belongs to another conversation.
    """

    tokens: list[int]
    dropped: int
    head: int


class _Strings:
    """The strings inside JSON that a template renders (tools, a call's name and arguments).

    Most go in as they are: they are rendered between JSON quotes, and no control token has
    a quote in it, so one can only be read inside a string. A string in which the tokenizer
    would read a control token becomes a hole, tokenized apart as text.
    """

    def __init__(self, tokenize: Tokenize) -> None:
        self._tokenize = tokenize
        self.holes: list[str] = []
        self._safe: dict[str, bool] = {}

    def json(self, value: Any) -> Any:
        """`value` with every unsafe string (keys too) replaced by its hole."""
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, dict):
            return {self.json(k): self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value

    def string(self, text: str) -> str:
        """`text`, or a hole standing for it."""
        safe = self._safe.get(text)
        if safe is None:
            safe = not _MARKS.search(text) and (
                self._tokenize(text, True) == self._tokenize(text, False)
            )
            self._safe[text] = safe
        if safe:
            return text
        self.holes.append(text)
        return _STRING_HOLE.format(len(self.holes) - 1)

    def call(self, call: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI tool call as chat templates take it: arguments as an object."""
        function = call.get("function") or {}
        arguments: Any = function.get("arguments") or "{}"
        with contextlib.suppress(ValueError):  # not JSON: the template gets the string
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        name = function.get("name")
        return {
            "id": self.string(str(call.get("id", ""))),
            "type": "function",
            "function": {"name": self.string(str(name)), "arguments": self.json(arguments)},
        }


class PromptBuilder:
    """Renders and tokenizes conversations for one model; safe to use from several threads."""

    def __init__(self, render: Render, tokenize: Tokenize):
        self._render = render
        self._tokenize = tokenize

    def tokens(
        self,
        messages: Sequence[ChatMessage],
        memo: dict[str, list[int]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        strings: _Strings | None = None,
    ) -> tuple[list[int], list[int]]:
        """The whole conversation's tokens, and where each message's content begins in them.

        `memo` keeps contents' tokens between calls (trimming renders the same messages often).
        `tools` (OpenAI's shape) are rendered by the template as it renders them.
        """
        memo = {} if memo is None else memo
        strings = strings or _Strings(self._tokenize)
        try:
            text = self._render(
                [_message(i, m, strings) for i, m in enumerate(messages)],
                strings.json(tools) if tools else None,
            )
        except Exception as exc:  # the model's Jinja template refused the conversation
            raise UpstreamBadResponse(f"the model's chat template failed: {exc}") from exc
        tokens: list[int] = []
        starts = [-1] * len(messages)
        for i, part in enumerate(_HOLES.split(text)):
            if i % 2 == 0:
                tokens += self._tokenize(part, True) if part else []
            elif part[0] == "\ue002":
                escaped = json.dumps(strings.holes[int(part[1:-1])], ensure_ascii=False)
                tokens += self._tokenize(escaped[1:-1], False)
            else:
                n = int(part[1:-1])
                content = messages[n].content or ""
                if starts[n] >= 0:
                    raise _unsafe_template()
                starts[n] = len(tokens)
                if content not in memo:
                    memo[content] = self._tokenize(content, False)
                tokens += memo[content]
        return tokens, _filled(starts, messages, len(tokens))

    def public(self, system: str) -> list[int]:
        """The tokens every conversation begins with: the template's opening and the
        operator's system prompt, up to where the first message of a client begins."""
        first = ChatMessage("user", "x")
        messages = [ChatMessage("system", system), first] if system else [first]
        tokens, starts = self.tokens(messages)
        return tokens[: starts[-1]]

    def fit(
        self,
        messages: Sequence[ChatMessage],
        room: int,
        tools: list[dict[str, Any]] | None = None,
    ) -> Prompt:
        """The longest recent part of the conversation whose tokens fit in `room`.

        Leading system messages always stay; older turns go first, and the kept part begins
        with a user message. `Failure` (too long) if not even the last message fits.
        """
        head = 0
        while head < len(messages) and messages[head].role == "system":
            head += 1
        system, turns = list(messages[:head]), list(messages[head:])
        start = 0
        memo: dict[str, list[int]] = {}
        strings = _Strings(self._tokenize)
        while True:
            tokens, starts = self.tokens(system + turns[start:], memo, tools, strings)
            if len(tokens) <= room:
                return Prompt(tokens, start, starts[len(system)] if turns else len(tokens))
            if start >= len(turns) - 1:
                raise Failure(
                    Kind.TOO_LONG, "message_too_many_tokens", tokens=len(tokens), limit=room
                )
            start += 1
            while start < len(turns) - 1 and turns[start].role != "user":
                start += 1


def template_renderer(template: str, *, bos: str, eos: str, formats: Any) -> Render:
    """A function rendering a Jinja chat template the way Hugging Face's transformers do."""
    formatter = formats.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        return str(formatter(messages=messages, tools=tools).prompt)

    return render


def _message(i: int, message: ChatMessage, strings: _Strings) -> dict[str, Any]:
    """Message `i` as the template gets it: a hole for its text (none for no text, so that a
    template's `if message.content` reads it as absent)."""
    content = _HOLE.format(i) if message.content else ""
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [strings.call(call) for call in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = strings.string(message.tool_call_id)
    if message.name:
        out["name"] = strings.string(message.name)
    return out


def _filled(starts: list[int], messages: Sequence[ChatMessage], end: int) -> list[int]:
    """Where each message's content begins; a message without text begins where the next
    one's does. A message whose text the template left out cannot be tokenized safely."""
    for i in range(len(starts) - 1, -1, -1):
        if starts[i] < 0:
            if messages[i].content:
                raise _unsafe_template()
            starts[i] = starts[i + 1] if i + 1 < len(starts) else end
    return starts


def _unsafe_template() -> UpstreamBadResponse:
    return UpstreamBadResponse(
        "the model's chat template changes or leaves out message contents; "
        "it cannot be tokenized safely"
    )
