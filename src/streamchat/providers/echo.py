"""The seed's demo as a provider: streams the user's last message back in small pieces."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from .base import Finish, GenerateRequest, ProviderEvent, TextDelta, TokenUsage

# A piece is one CJK character, or a run of other non-space characters with the spaces
# before it: deterministic, and small enough that a stream visibly grows.
_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"
_PIECE = re.compile(rf"\s*[{_CJK}]|\s*[^\s{_CJK}]+|\s+")


def pieces(text: str) -> list[str]:
    """Split text into the pieces echo streams (and counts as tokens)."""
    return _PIECE.findall(text)


def _until_stop(text: str, stops: list[str]) -> str:
    """The text before the first stop sequence, which is left out, as OpenAI does."""
    ends = [i for i in (text.find(stop) for stop in stops if stop) if i >= 0]
    return text[: min(ends)] if ends else text


class EchoStream:
    """One echo generation."""

    def __init__(self, request: GenerateRequest, delay: float) -> None:
        self._request = request
        self._delay = delay

    def __aiter__(self) -> AsyncIterator[list[ProviderEvent]]:
        return self._events()

    async def _events(self) -> AsyncIterator[list[ProviderEvent]]:
        messages = self._request.messages
        answer = _until_stop(
            next((m.content or "" for m in reversed(messages) if m.role == "user"), ""),
            self._request.stop,
        )
        parts = pieces(answer)
        limit = self._request.max_tokens
        if limit is not None:
            parts = parts[:limit]
        for i, part in enumerate(parts):
            if i and self._delay:
                await asyncio.sleep(self._delay)
            yield [TextDelta(part)]
        prompt_tokens = sum(len(pieces(m.content or "")) for m in messages)
        truncated = limit is not None and len(pieces(answer)) > limit
        yield [
            TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=len(parts)),
            Finish("length" if truncated else "stop"),
        ]

    async def aclose(self) -> None:
        """Nothing to release: echo holds no connection."""


class EchoProvider:
    """Deterministic provider for tests and demos; `STREAMCHAT_ECHO_DELAY_MS` between pieces."""

    name = "echo"

    def __init__(self, model: str, delay_ms: int) -> None:
        self._model = model
        self._delay = delay_ms / 1000

    def models(self) -> list[str]:
        """Echo answers to one model id."""
        return [self._model]

    async def start(self) -> None:
        """Nothing to acquire."""

    async def close(self) -> None:
        """Nothing to release."""

    async def ready(self) -> bool:
        """Always ready."""
        return True

    async def open(self, request: GenerateRequest) -> EchoStream:
        """Echo accepts every request at once."""
        return EchoStream(request, self._delay)
