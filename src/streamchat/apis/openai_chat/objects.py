"""The OpenAI Chat Completions API's answers: completion, chunk, model and error objects.

They document `/api.json` and let the tests check the byte-level builders of `formats.py`;
the hot path writes bytes, not these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class CompletionUsage(BaseModel):
    """Token counts of one completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCallPiece(BaseModel):
    """A piece of a function call: its name first, then its arguments in pieces."""

    name: str | None = None
    arguments: str | None = None


class ToolCallPiece(BaseModel):
    """One item of `delta.tool_calls`."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallPiece | None = None


class ChoiceDelta(BaseModel):
    """What one chunk adds to the answer."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallPiece] | None = None


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


class FunctionCall(BaseModel):
    """A whole function call."""

    name: str
    arguments: str = Field(description="JSON, as the model wrote it")


class ToolCallOut(BaseModel):
    """A tool call of a non-streamed answer."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    """The answer of a non-streamed completion."""

    role: Literal["assistant"]
    content: str | None = Field(description="null when the answer is only tool calls")
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = None
    reasoning_content: str | None = None


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
