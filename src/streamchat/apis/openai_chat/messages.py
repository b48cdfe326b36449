"""The parts of a chat completion request: messages, content parts, tools, stream options.

Unknown fields are kept everywhere, so that an OpenAI-compatible upstream gets them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

# Unknown fields are kept (and forwarded upstream): OpenAI adds parameters every few months.
OPEN = ConfigDict(extra="allow")
# Integers OpenAI documents as 64-bit (`seed`, `n`); every other one is bounded by MAX_INT.
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})


def unsupported(message: str) -> PydanticCustomError:
    """What streamchat itself cannot pass back, whatever the model (code
    `unsupported_parameter`)."""
    return PydanticCustomError("unsupported", message)


def invalid(message: str) -> PydanticCustomError:
    """A value that makes no sense (shown as it is, code `invalid_value`)."""
    return PydanticCustomError("invalid_request", message)


class ChatMessageIn(BaseModel):
    """One turn of the conversation the client sends (the API is stateless)."""

    model_config = OPEN

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
            raise invalid("content must be a string or an array of content parts")
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if not isinstance(kind, str):
                raise invalid("each content part must be an object with a 'type'")
            if kind not in _PART_TYPES:
                raise invalid(
                    f"content parts of type '{kind}' are unknown: "
                    "'text', 'image_url', 'input_audio', 'file' or 'refusal'"
                )
            if kind == "text" and not isinstance(part.get("text"), str):
                raise invalid("a text content part needs a string 'text'")
        return value

    @field_validator("tool_calls")
    @classmethod
    def _calls_are_functions(cls, value: list[dict[str, Any]] | None) -> Any:
        for call in value or ():
            function = call.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise invalid("each tool call needs a 'function' with a 'name'")
            if not isinstance(function.get("arguments", ""), str):
                raise invalid("a tool call's 'arguments' must be a string of JSON")
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

    model_config = OPEN

    include_usage: bool | None = Field(
        None, description="Send a last chunk with the usage and no choices before `[DONE]`"
    )


class FunctionDefinition(BaseModel):
    """A function the model may call."""

    model_config = OPEN

    name: str = Field(description="Letters, digits, `_`, `-`, `.`, `:`; at most 64")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON Schema object")
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _a_function_name(cls, value: str) -> str:
        if not _FUNCTION_NAME.match(value):
            raise invalid("a function name must be 1 to 64 letters, digits, '_', '-', '.' or ':'")
        return value


class Tool(BaseModel):
    """One tool: a function (other kinds go to an upstream as they are)."""

    model_config = OPEN

    type: str = Field(description="`function`")
    function: FunctionDefinition | None = None

    @field_validator("function")
    @classmethod
    def _functions_are_defined(
        cls, value: FunctionDefinition | None, info: ValidationInfo
    ) -> FunctionDefinition | None:
        if info.data.get("type") == "function" and value is None:
            raise invalid("a tool of type 'function' needs its 'function'")
        return value
