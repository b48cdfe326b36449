"""The OpenAI-compatible API's contract: the request of `POST /v1/chat/completions`.

It accepts what OpenAI accepts (DESIGN §11): tools, tool choice, structured output, content
parts of every kind, `tool` messages, assistant messages that only call tools, and parameters
we do not know, which an OpenAI-compatible upstream gets unchanged. What is checked here is
what makes no sense for any model (a wrong type, a bound); what one model cannot honour (an
image for a text-only model) is refused by its provider, naming the parameter.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ...errors import Failure, Kind
from ...providers.stops import MAX_STOP_CHARS, MAX_STOPS
from ...schemas import INT64_MAX, INT64_MIN, MAX_INT, unportable
from .messages import (
    ChatMessageIn,
    StreamOptions,
    Tool,
    invalid,
    unsupported,
)
from .objects import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceDelta,
    CompletionUsage,
    ErrorDetail,
    ErrorResponse,
    ModelCard,
    ModelList,
)


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`, as OpenAI's Chat Completions API defines it."""

    model_config = ConfigDict(
        extra="allow",
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
    stop: str | list[str] | None = Field(
        None, description=f"Up to {MAX_STOPS} stop sequences of {MAX_STOP_CHARS} characters"
    )
    seed: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    user: str | None = Field(
        None, description="Replaced: the upstream is told the key's uid, not this text"
    )
    n: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX, description="Only 1")
    logprobs: bool | None = Field(None, description="Only false")
    top_logprobs: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX, description="Only 0")
    modalities: list[str] | None = Field(None, description='Only ["text"]')
    tools: list[Tool] | None = Field(None, description="Functions the model may call")
    tool_choice: str | dict[str, Any] | None = Field(
        None, description='`"none"`, `"auto"`, `"required"`, or a named function'
    )
    parallel_tool_calls: bool | None = Field(None, description="Several calls in one answer")
    response_format: dict[str, Any] | None = Field(
        None, description="`text`, `json_object`, or `json_schema` with its schema"
    )
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)

    # One choice of text is what streamchat streams and stores, whatever the model: more
    # choices, log probabilities or audio would be silently dropped, so they are refused.
    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise unsupported("n > 1 is not supported: one choice per request")
        return value

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: object) -> object:
        if value:
            raise unsupported("logprobs are not supported")
        return value

    @field_validator("modalities")
    @classmethod
    def _text_only(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(m != "text" for m in value):
            raise unsupported("only the 'text' output modality is supported")
        return value

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(
        cls, value: StreamOptions | None, info: ValidationInfo
    ) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise invalid("stream_options is only allowed when stream is true")
        return value

    @field_validator("max_completion_tokens")
    @classmethod
    def _one_token_limit(cls, value: int | None, info: ValidationInfo) -> int | None:
        other = info.data.get("max_tokens")
        if value is not None and other is not None and other != value:
            raise invalid("max_tokens and max_completion_tokens differ: set only one")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _up_to_four_stops(cls, value: Any) -> Any:
        if value is None:
            return value
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(v, str) for v in stops):
            raise invalid("stop must be a string or an array of strings")
        if len(stops) > MAX_STOPS:
            raise invalid(f"stop takes at most {MAX_STOPS} sequences")
        if any(len(stop) > MAX_STOP_CHARS for stop in stops):
            raise invalid(f"a stop sequence has at most {MAX_STOP_CHARS} characters")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _a_tool_choice(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value not in ("none", "auto", "required"):
            raise invalid("tool_choice must be 'none', 'auto', 'required' or a named tool")
        if isinstance(value, dict) and value.get("type") == "function":
            function = value.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise invalid("a named tool_choice needs 'function': {'name': …}")
            names = {t.function.name for t in info.data.get("tools") or () if t.function}
            if function["name"] not in names:
                raise invalid(f"tool_choice names '{function['name']}', which is not in tools")
        return value

    @field_validator("response_format")
    @classmethod
    def _a_response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        kind = value.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise invalid("response_format.type must be 'text', 'json_object' or 'json_schema'")
        if kind == "json_schema":
            spec = value.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise invalid("a json_schema response_format needs 'json_schema': {'name', …}")
            if not isinstance(spec.get("schema", {}), dict):
                raise invalid("response_format.json_schema.schema must be a JSON Schema object")
        return value

    def forwarded(self) -> dict[str, Any]:
        """The request as an upstream gets it: what the client set, unknown fields included.

        What is forwarded unread must still be JSON any upstream parses: a number JSON
        cannot carry portably (`1e999`, an integer past 64 bits), wherever it is, is refused
        naming where (the typed fields have their own bounds)."""
        body = self.model_dump(exclude_unset=True)
        where = unportable(body, ())
        if where is not None:
            raise Failure(Kind.VALIDATION, "number_out_of_range", param=where)
        return body

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


__all__ = [
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessageIn",
    "ChoiceDelta",
    "CompletionUsage",
    "ErrorDetail",
    "ErrorResponse",
    "ModelCard",
    "ModelList",
]
