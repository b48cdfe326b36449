"""What every provider is: chat messages in, an async stream of typed events out.

Providers know nothing of our HTTP side. Foreign errors (aiohttp, llama.cpp, …) become the
`ProviderError` family (our `Failure`s) at the provider boundary, exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..errors import Failure, Kind

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True)
class ChatMessage:
    """One turn of a conversation.

    `content` is the text (None for an assistant turn that only called tools); `parts` keeps
    an OpenAI content array as the client sent it (images, audio, files beside text), for a
    provider that can read it; `tool_calls` are an assistant turn's calls in OpenAI's shape
    (`{id, type: "function", function: {name, arguments}}`), and `tool_call_id` says which
    call a `tool` turn answers.
    """

    role: Role
    content: str | None
    parts: list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(slots=True)
class GenerateRequest:
    """What to generate: the conversation so far and the sampling parameters.

    `tools`, `tool_choice` and `response_format` are in OpenAI's shapes. `passthrough` is the
    client's own OpenAI request body, when there is one: an OpenAI-compatible upstream is
    sent that, unchanged but for the model, the stream options and `user`, so that what we
    do not know still reaches the model. `owner` is the uid the answer is for: the local
    model reuses one owner's cached prompt only for that owner.
    """

    messages: Sequence[ChatMessage]
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    passthrough: dict[str, Any] | None = None
    owner: int | None = None


@dataclass(slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning (`reasoning_content`), apart from the answer."""

    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a tool call: the first piece of call `index` names it (`id`, `name`), the
    next ones carry more of its JSON `arguments`, as OpenAI streams them."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class TokenUsage:
    """Token counts reported for the whole exchange."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class Finish:
    """Why generation stopped, as the model said it: `stop`, `length`, `tool_calls`,
    `content_filter` (an OpenAI-compatible upstream's own value passes through)."""

    reason: str


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per field, twice
# the cost of a plain one, and a TextDelta is made per token.
ProviderEvent = TextDelta | ReasoningDelta | ToolCallDelta | TokenUsage | Finish


class ProviderStream(Protocol):
    """An accepted generation: iterate it for events, close it to stop the upstream at once.

    Each item is the events that arrived together (never empty): an HTTP upstream's read
    may carry a hundred chunks, and handing them over as one list costs one step of the
    iteration instead of one per token."""

    def __aiter__(self) -> AsyncIterator[list[ProviderEvent]]: ...

    async def aclose(self) -> None: ...


def answered_by(stream: ProviderStream, asked: str) -> str:
    """The model that accepted a request: the router's stream names the entry that answered
    (a fallback, perhaps); any other provider's stream answered as `asked`."""
    model = getattr(stream, "model", None)
    return model if isinstance(model, str) else asked


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


class UpstreamRejected(ProviderError):
    """The upstream refused the request for what the client sent (400, 404, 422): the client
    gets the upstream's status and its OpenAI error (`text`, `code`, `param`)."""

    kind = Kind.UPSTREAM_REJECTED
    key = "upstream_rejected"

    def __init__(
        self,
        detail: str,
        *,
        upstream_status: int,
        text: str,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(detail, upstream_status=upstream_status)
        self.params = {"reason": text}
        self.code = code
        self.param = param


class UpstreamRateLimited(ProviderError):
    """The upstream said 429: the client is told to wait as long as the upstream said."""

    kind = Kind.RATE_LIMITED
    key = "upstream_rate_limited"

    def __init__(
        self, detail: str, *, upstream_status: int, retry_after: int | None = None
    ) -> None:
        super().__init__(detail, upstream_status=upstream_status)
        self.retry_after = retry_after


class Unsupported(Failure):
    """A parameter the serving model cannot honour (an image for a text-only model): 400,
    naming the parameter."""

    kind = Kind.VALIDATION
    key = "parameter_unsupported"

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(param=param, reason=reason)
        self.param = param
