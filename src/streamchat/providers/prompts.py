"""From chat messages to prompt tokens: the model's chat template, user text kept as text.

The template is rendered with a placeholder in place of every message's content, and the
result is tokenized piece by piece: the template's own text with control tokens parsed (its
`<|im_start|>` markers are the real ones), each message's content with none parsed, so a
`<|im_start|>system` typed by a person is just those characters. A message's tokens then do
not depend on what follows it either, so the next turn of a conversation begins with exactly
the tokens of the last one, which is what lets a slot's cache be reused.

The conversation is trimmed to the context in tokens: oldest turns first, the system prompt
kept; a last message that does not fit alone is refused before the stream begins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Failure, Kind
from .base import ChatMessage, UpstreamBadResponse

# Private-use characters: no message content reaches the rendered text, so they cannot clash.
_HOLE = "\ue000{}\ue001"
_HOLES = re.compile("\ue000(\\d+)\ue001")

Tokenize = Callable[[str, bool], list[int]]


@dataclass(slots=True, frozen=True)
class Prompt:
    """A conversation's tokens, and how many of its oldest messages did not fit.

    `head` is where the first message after the system prompt begins: a cache that shares
    no more than that with the prompt belongs to another conversation.
    """

    tokens: list[int]
    dropped: int
    head: int


class PromptBuilder:
    """Renders and tokenizes conversations for one model; safe to use from several threads."""

    def __init__(self, render: Callable[[list[dict[str, str]]], str], tokenize: Tokenize):
        self._render = render
        self._tokenize = tokenize

    def tokens(
        self, messages: Sequence[ChatMessage], memo: dict[str, list[int]] | None = None
    ) -> tuple[list[int], list[int]]:
        """The whole conversation's tokens, and where each message's content begins in them.

        `memo` keeps contents' tokens between calls (trimming renders the same messages often).
        """
        memo = {} if memo is None else memo
        starts = [0] * len(messages)
        holes = [{"role": m.role, "content": _HOLE.format(i)} for i, m in enumerate(messages)]
        try:
            text = self._render(holes)
        except Exception as exc:  # the model's Jinja template refused the conversation
            raise UpstreamBadResponse(f"the model's chat template failed: {exc}") from exc
        tokens: list[int] = []
        seen = 0
        for i, part in enumerate(_HOLES.split(text)):
            if i % 2 == 0:
                tokens += self._tokenize(part, True) if part else []
            else:
                content = messages[int(part)].content or ""
                starts[int(part)] = len(tokens)
                if content not in memo:
                    memo[content] = self._tokenize(content, False)
                tokens += memo[content]
                seen += 1
        if seen != len(messages):
            raise UpstreamBadResponse(
                "the model's chat template changes or leaves out message contents; "
                "it cannot be tokenized safely"
            )
        return tokens, starts

    def fit(self, messages: Sequence[ChatMessage], room: int) -> Prompt:
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
        while True:
            tokens, starts = self.tokens(system + turns[start:], memo)
            if len(tokens) <= room:
                return Prompt(tokens, start, starts[len(system)] if turns else len(tokens))
            if start >= len(turns) - 1:
                raise Failure(
                    Kind.TOO_LONG, "message_too_many_tokens", tokens=len(tokens), limit=room
                )
            start += 1
            while start < len(turns) - 1 and turns[start].role != "user":
                start += 1


def template_renderer(
    template: str, *, bos: str, eos: str, formats: Any
) -> Callable[[list[dict[str, str]]], str]:
    """A function rendering a Jinja chat template the way Hugging Face's transformers do."""
    formatter = formats.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def render(messages: list[dict[str, str]]) -> str:
        return str(formatter(messages=messages).prompt)

    return render
