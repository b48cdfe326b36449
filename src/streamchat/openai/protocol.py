"""The OpenAI-compatible API's contract: request, response, chunk, model and error shapes.

Requests are validated strictly, as OpenAI's own API does: an unknown argument is refused, and
so is any parameter streamchat cannot honour unless it has the value that asks for nothing
(`n: 1`, `tools: []`, `logprobs: false`, …). Silently ignoring one would give the client an
answer it did not ask for. The response models document `/api.json` and let the tests check
the byte-level builders in `openai_stream.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ..schemas import MAX_INT

_STRICT = ConfigDict(extra="forbid")
# Integers OpenAI documents as 64-bit (`seed`); every other one is bounded by MAX_INT.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _unsupported(message: str) -> PydanticCustomError:
    """A parameter streamchat cannot honour (shown as it is, code `unsupported_parameter`)."""
    return PydanticCustomError("unsupported", message)


def _invalid(message: str) -> PydanticCustomError:
    """A value that makes no sense (shown as it is, code `invalid_value`)."""
    return PydanticCustomError("invalid_request", message)


class TextContentPart(BaseModel):
    """The one kind of content part streamchat reads: text."""

    model_config = _STRICT

    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """One turn of the conversation the client sends (the API is stateless)."""

    model_config = _STRICT

    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="`developer` is read as `system`"
    )
    content: str | list[TextContentPart] = Field(
        description="A string, or an array of text parts (joined with newlines)"
    )
    name: str | None = Field(None, description="Accepted; not passed to the model")
    tool_calls: list[Any] | None = Field(None, description="Only empty: no tools")
    refusal: str | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _no_tool_roles(cls, value: Any) -> Any:
        if value in ("tool", "function"):
            raise _unsupported(
                f"messages with role '{value}' are not supported: there are no tools"
            )
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _string_or_text_parts(cls, value: Any) -> Any:
        # Checked here, before pydantic tries each member of the union, so that the client
        # gets one clear message instead of one per member.
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise _invalid("content must be a string or an array of content parts")
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if not isinstance(kind, str):
                raise _invalid("each content part must be an object with a 'type'")
            if kind != "text":
                raise _unsupported(f"content parts of type '{kind}' are not supported: only 'text'")
            if not isinstance(part.get("text"), str):
                raise _invalid("a text content part needs a string 'text'")
        return value

    @field_validator("tool_calls")
    @classmethod
    def _no_tool_calls(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise _unsupported("tool calls are not supported")
        return value

    def text(self) -> str:
        """The content as one string."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    """Options of a streamed answer."""

    model_config = _STRICT

    include_usage: bool | None = Field(
        None, description="Send a last chunk with the usage and no choices before `[DONE]`"
    )
    include_obfuscation: bool | None = Field(None, description="Accepted; nothing to obfuscate")


# Parameters streamchat cannot honour: accepted only with a value that asks for nothing, and
# the message when it does ask for something.
_NEUTRAL: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n": (lambda v: v in (None, 1), "n > 1 is not supported: one choice per request"),
    "presence_penalty": (lambda v: not v, "presence_penalty is not supported"),
    "frequency_penalty": (lambda v: not v, "frequency_penalty is not supported"),
    "logit_bias": (lambda v: not v, "logit_bias is not supported"),
    "logprobs": (lambda v: not v, "logprobs are not supported"),
    "top_logprobs": (lambda v: not v, "top_logprobs is not supported"),
    "tools": (lambda v: not v, "tools are not supported"),
    "tool_choice": (lambda v: v in (None, "none"), "tool_choice is not supported: no tools"),
    "functions": (lambda v: not v, "functions are not supported"),
    "function_call": (lambda v: v in (None, "none"), "function_call is not supported"),
    "response_format": (
        lambda v: v is None or v == {"type": "text"},
        "response_format is not supported: the answer is plain text",
    ),
    "modalities": (lambda v: v in (None, ["text"]), "only the 'text' modality is supported"),
    "audio": (lambda v: v is None, "audio output is not supported"),
    "prediction": (lambda v: v is None, "predicted outputs are not supported"),
    "web_search_options": (lambda v: v is None, "web search is not supported"),
    "reasoning_effort": (lambda v: v is None, "reasoning_effort is not supported"),
    "store": (lambda v: not v, "store is not supported: streamchat keeps no completions"),
    "service_tier": (
        lambda v: v in (None, "auto", "default"),
        "service_tier is not supported: there is one tier",
    ),
}


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`, as OpenAI's Chat Completions API defines it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"model": "echo", "messages": [{"role": "user", "content": "Hello"}]}]
        },
    )

    messages: list[ChatMessageIn] = Field(min_length=1, description="The whole conversation")
    model: str | None = Field(
        None, max_length=200, description="One of `GET /v1/models`; default: the first"
    )
    stream: bool | None = Field(False, description="Answer as Server-Sent Events chunks")
    stream_options: StreamOptions | None = Field(None, description="Only with `stream: true`")
    max_tokens: int | None = Field(
        None, ge=1, le=MAX_INT, description="Deprecated name of the next"
    )
    max_completion_tokens: int | None = Field(
        None,
        ge=1,
        le=MAX_INT,
        description="Most tokens to generate, at most STREAMCHAT_MAX_TOKENS_CAP",
    )
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = Field(None, description="Up to 4 stop sequences")
    seed: int | None = Field(None, ge=_INT64_MIN, le=_INT64_MAX)
    user: str | None = Field(None, description="End-user id, passed upstream")
    metadata: dict[str, str] | None = Field(None, description="Accepted; not stored")
    parallel_tool_calls: bool | None = Field(None, description="Accepted; there are no tools")

    n: int | None = Field(None, ge=_INT64_MIN, le=_INT64_MAX, description="Only 1")
    presence_penalty: float | None = Field(None, description="Only 0")
    frequency_penalty: float | None = Field(None, description="Only 0")
    logit_bias: dict[str, float] | None = Field(None, description="Only empty")
    logprobs: bool | None = Field(None, description="Only false")
    top_logprobs: int | None = Field(None, ge=_INT64_MIN, le=_INT64_MAX, description="Only 0")
    tools: list[Any] | None = Field(None, description="Only empty")
    tool_choice: Any = Field(None, description='Only "none"')
    functions: list[Any] | None = Field(None, description="Only empty")
    function_call: Any = Field(None, description='Only "none"')
    response_format: dict[str, Any] | None = Field(None, description='Only {"type": "text"}')
    modalities: list[str] | None = Field(None, description='Only ["text"]')
    audio: Any = Field(None, description="Only null")
    prediction: Any = Field(None, description="Only null")
    web_search_options: Any = Field(None, description="Only null")
    reasoning_effort: str | None = Field(None, description="Only null")
    store: bool | None = Field(None, description="Only false")
    service_tier: str | None = Field(None, description='Only "auto" or "default"')

    @field_validator(*_NEUTRAL)
    @classmethod
    def _refuse_what_cannot_be_honoured(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        neutral, message = _NEUTRAL[info.field_name]
        if not neutral(value):
            raise _unsupported(message)
        return value

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(
        cls, value: StreamOptions | None, info: ValidationInfo
    ) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise _invalid("stream_options is only allowed when stream is true")
        return value

    @field_validator("max_completion_tokens")
    @classmethod
    def _one_token_limit(cls, value: int | None, info: ValidationInfo) -> int | None:
        other = info.data.get("max_tokens")
        if value is not None and other is not None and other != value:
            raise _invalid("max_tokens and max_completion_tokens differ: set only one")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _up_to_four_stops(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _invalid("stop must be a string or an array of strings")
        if len(value) > 4:
            raise _invalid("stop takes at most 4 sequences")
        return value

    def token_limit(self) -> int | None:
        """The most tokens to generate, whichever name the client used."""
        return self.max_completion_tokens or self.max_tokens

    def stop_list(self) -> list[str]:
        """The stop sequences as a list (OpenAI accepts one string too)."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


FinishReason = Literal["stop", "length"]


class CompletionUsage(BaseModel):
    """Token counts of one completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChoiceDelta(BaseModel):
    """What one chunk adds to the answer."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a chunk."""

    index: int
    delta: ChoiceDelta
    logprobs: None = None
    finish_reason: FinishReason | None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed answer (the last is `data: [DONE]`)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice] = Field(description="Empty in the usage chunk")
    usage: CompletionUsage | None = Field(
        None, description="Present (null until the last chunk) with `include_usage`"
    )


class AssistantMessage(BaseModel):
    """The answer of a non-streamed completion."""

    role: Literal["assistant"]
    content: str
    refusal: None = None


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    """The answer to a request without `stream: true`."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None


class ModelCard(BaseModel):
    """One model of `GET /v1/models`."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """`GET /v1/models`."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    """What went wrong, as OpenAI describes errors."""

    message: str
    type: str = Field(description="invalid_request_error, authentication_error, server_error, …")
    param: str | None = Field(None, description="The request field at fault, dotted")
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error under `/v1`, and the last data chunk of a stream that failed."""

    error: ErrorDetail
