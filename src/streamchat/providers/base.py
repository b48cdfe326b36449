"""What every provider is: chat messages in, an async stream of typed events out.

Providers know nothing of our HTTP side. Foreign errors (aiohttp, llama.cpp, …) become the
`ProviderError` family (our `Failure`s) at the provider boundary, exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..errors import Failure, Kind

Role = Literal["system", "user", "assistant"]


@dataclass(slots=True, frozen=True)
class ChatMessage:
    """One turn of a conversation."""

    role: Role
    content: str


@dataclass(slots=True)
class GenerateRequest:
    """What to generate: the conversation so far and the sampling parameters."""

    messages: Sequence[ChatMessage]
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    user: str | None = None


@dataclass(slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(slots=True)
class TokenUsage:
    """Token counts reported for the whole exchange."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class Finish:
    """Why generation stopped: `stop` or `length`."""

    reason: Literal["stop", "length"]


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per field, twice
# the cost of a plain one, and a TextDelta is made per token.
ProviderEvent = TextDelta | TokenUsage | Finish


class ProviderStream(Protocol):
    """An accepted generation: iterate it for events, close it to stop the upstream at once.

    Each item is the events that arrived together (never empty): an HTTP upstream's read
    may carry a hundred chunks, and handing them over as one list costs one step of the
    iteration instead of one per token."""

    def __aiter__(self) -> AsyncIterator[list[ProviderEvent]]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    """A source of answers: the embedded model, an OpenAI-compatible upstream, or echo."""

    name: str

    def models(self) -> list[str]:
        """The model ids this provider answers to; the first is the default."""
        ...

    async def start(self) -> None:
        """Acquire resources (connection pools, model weights)."""
        ...

    async def close(self) -> None:
        """Release what `start` acquired."""
        ...

    async def ready(self) -> bool:
        """Whether a request now would be accepted."""
        ...

    async def open(self, request: GenerateRequest) -> ProviderStream:
        """Return once the provider has accepted the request; raise `ProviderError` if not."""
        ...


class ProviderError(Failure):
    """A provider could not do what was asked: the upstream failed or answered badly."""

    kind = Kind.UPSTREAM_ERROR
    key = "upstream_bad_response"

    def __init__(self, detail: str, *, upstream_status: int | None = None) -> None:
        super().__init__(detail=detail, upstream_status=upstream_status)


class UpstreamUnavailable(ProviderError):
    """The provider refused or could not be reached (connection refused, full queue)."""

    kind = Kind.UPSTREAM_UNAVAILABLE
    key = "upstream_unavailable"


class UpstreamTimeout(ProviderError):
    """The provider did not answer in time."""

    kind = Kind.UPSTREAM_TIMEOUT
    key = "upstream_timeout"


class UpstreamBadResponse(ProviderError):
    """The provider answered with an error status, an error event or malformed data."""
