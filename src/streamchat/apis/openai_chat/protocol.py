"""The OpenAI-compatible API's contract: the request of `POST /v1/chat/completions`.

It accepts what OpenAI accepts (DESIGN §11): tools, tool choice, structured output, content
parts of every kind, `tool` messages, assistant messages that only call tools, and parameters
we do not know, which an OpenAI-compatible upstream gets unchanged. What is checked here is
what makes no sense for any model (a wrong type, a bound); what one model cannot honour (an
image for a text-only model) is refused by its provider, naming the parameter.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ...providers.stops import MAX_STOP_CHARS, MAX_STOPS
from ...schemas import MAX_INT
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

# Unknown fields are kept (and forwarded upstream): OpenAI adds parameters every few months.
_OPEN = ConfigDict(extra="allow")
# Integers OpenAI documents as 64-bit (`seed`, `n`); every other one is bounded by MAX_INT.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})


def _invalid(message: str) -> PydanticCustomError:
    """A value that makes no sense (shown as it is, code `invalid_value`)."""
    return PydanticCustomError("invalid_request", message)


class ChatMessageIn(BaseModel):
    """One turn of the conversation the client sends (the API is stateless)."""

    model_config = _OPEN

    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        description="`developer` is read as `system`"
    )
    content: str | list[dict[str, Any]] | None = Field(
        None,
        description="A string, or an array of content parts (`text`, `image_url`, "
        "`input_audio`, `file`); null for an assistant turn that only calls tools",
    )
    name: str | None = Field(None, description="The participant's name, passed on")
    tool_calls: list[dict[str, Any]] | None = Field(
        None, description="An assistant turn's tool calls, as the model made them"
    )
    tool_call_id: str | None = Field(None, description="The call a `tool` message answers")
    refusal: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _string_or_parts(cls, value: Any) -> Any:
        # Checked here, before pydantic tries each member of the union, so that the client
        # gets one clear message instead of one per member.
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise _invalid("content must be a string or an array of content parts")
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if not isinstance(kind, str):
                raise _invalid("each content part must be an object with a 'type'")
            if kind not in _PART_TYPES:
                raise _invalid(
                    f"content parts of type '{kind}' are unknown: "
                    "'text', 'image_url', 'input_audio', 'file' or 'refusal'"
                )
            if kind == "text" and not isinstance(part.get("text"), str):
                raise _invalid("a text content part needs a string 'text'")
        return value

    @field_validator("tool_calls")
    @classmethod
    def _calls_are_functions(cls, value: list[dict[str, Any]] | None) -> Any:
        for call in value or ():
            function = call.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _invalid("each tool call needs a 'function' with a 'name'")
            if not isinstance(function.get("arguments", ""), str):
                raise _invalid("a tool call's 'arguments' must be a string of JSON")
        return value

    def text(self) -> str:
        """The text of the content (its text parts joined with newlines)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(
            part["text"]
            for part in self.content
            if part.get("type") in ("text", "refusal") and isinstance(part.get("text"), str)
        )

    def media_parts(self) -> list[dict[str, Any]] | None:
        """The content parts when some are not text (images, audio, files), else None."""
        if isinstance(self.content, list) and any(
            part.get("type") not in ("text", "refusal") for part in self.content
        ):
            return self.content
        return None

    def size(self) -> int:
        """Characters of the message that a model reads, for the conversation's bound."""
        size = len(self.text())
        for call in self.tool_calls or ():
            size += len(str(call.get("function", {}).get("arguments", "")))
        return size


class StreamOptions(BaseModel):
    """Options of a streamed answer."""

    model_config = _OPEN

    include_usage: bool | None = Field(
        None, description="Send a last chunk with the usage and no choices before `[DONE]`"
    )


class FunctionDefinition(BaseModel):
    """A function the model may call."""

    model_config = _OPEN

    name: str = Field(description="Letters, digits, `_`, `-`, `.`, `:`; at most 64")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON Schema object")
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _a_function_name(cls, value: str) -> str:
        if not _FUNCTION_NAME.match(value):
            raise _invalid("a function name must be 1 to 64 letters, digits, '_', '-', '.' or ':'")
        return value


class Tool(BaseModel):
    """One tool: a function (other kinds go to an upstream as they are)."""

    model_config = _OPEN

    type: str = Field(description="`function`")
    function: FunctionDefinition | None = None

    @field_validator("function")
    @classmethod
    def _functions_are_defined(
        cls, value: FunctionDefinition | None, info: ValidationInfo
    ) -> FunctionDefinition | None:
        if info.data.get("type") == "function" and value is None:
            raise _invalid("a tool of type 'function' needs its 'function'")
        return value


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
    seed: int | None = Field(None, ge=_INT64_MIN, le=_INT64_MAX)
    user: str | None = Field(
        None, description="Replaced: the upstream is told the key's uid, not this text"
    )
    n: int | None = Field(None, ge=1, le=128, description="Choices; the embedded model: 1")
    tools: list[Tool] | None = Field(None, description="Functions the model may call")
    tool_choice: str | dict[str, Any] | None = Field(
        None, description='`"none"`, `"auto"`, `"required"`, or a named function'
    )
    parallel_tool_calls: bool | None = Field(None, description="Several calls in one answer")
    response_format: dict[str, Any] | None = Field(
        None, description="`text`, `json_object`, or `json_schema` with its schema"
    )

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
        if value is None:
            return value
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(v, str) for v in stops):
            raise _invalid("stop must be a string or an array of strings")
        if len(stops) > MAX_STOPS:
            raise _invalid(f"stop takes at most {MAX_STOPS} sequences")
        if any(len(stop) > MAX_STOP_CHARS for stop in stops):
            raise _invalid(f"a stop sequence has at most {MAX_STOP_CHARS} characters")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _a_tool_choice(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value not in ("none", "auto", "required"):
            raise _invalid("tool_choice must be 'none', 'auto', 'required' or a named tool")
        if isinstance(value, dict) and value.get("type") == "function":
            function = value.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _invalid("a named tool_choice needs 'function': {'name': …}")
            names = {t.function.name for t in info.data.get("tools") or () if t.function}
            if function["name"] not in names:
                raise _invalid(f"tool_choice names '{function['name']}', which is not in tools")
        return value

    @field_validator("response_format")
    @classmethod
    def _a_response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        kind = value.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise _invalid("response_format.type must be 'text', 'json_object' or 'json_schema'")
        if kind == "json_schema":
            spec = value.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise _invalid("a json_schema response_format needs 'json_schema': {'name', …}")
            if not isinstance(spec.get("schema", {}), dict):
                raise _invalid("response_format.json_schema.schema must be a JSON Schema object")
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

    def tool_list(self) -> list[dict[str, Any]] | None:
        """The tools in OpenAI's shape, as the client sent them."""
        if not self.tools:
            return None
        return [tool.model_dump(exclude_unset=True) for tool in self.tools]


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
