"""The Responses API's contract: what `POST /v1/responses` and the routes after it take.

OpenAI's request has far more than streamchat can honour; what it does not know is accepted
and ignored (as OpenAI's own clients send defaults such as `truncation` or `include`), and
what it would have to do otherwise (a built-in tool, an image) is a 400 naming the
parameter. Input items stay dicts here: items.py reads them, one kind at a time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...schemas import MAX_INT

ResponseId = Annotated[
    str, Field(max_length=64, pattern=r"^resp_[0-9a-f]{32}$", description="A response's id")
]


class TextFormat(BaseModel):
    """`text.format`: plain text, any JSON object, or JSON matching a schema."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(None, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(BaseModel):
    """`text`: the output's format (and OpenAI's `verbosity`, accepted)."""

    model_config = ConfigDict(extra="allow")

    format: TextFormat | None = None


class CreateResponse(BaseModel):
    """`POST /v1/responses`: OpenAI's request; unknown parameters are accepted."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, max_length=200, description="A model of `GET /v1/models`")
    input: str | list[dict[str, Any]] = Field(
        "", description="Text, or items: messages, `function_call` and `function_call_output`"
    )
    instructions: str | None = Field(None, description="A system message before the input")
    tools: list[dict[str, Any]] | None = Field(
        None, description='Function tools: `{type: "function", name, parameters, strict}`'
    )
    tool_choice: str | dict[str, Any] | None = Field(
        None, description='`"auto"`, `"none"`, `"required"` or `{type: "function", name}`'
    )
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    parallel_tool_calls: bool | None = None
    stream: bool | None = False
    background: bool | None = False
    store: bool | None = True
    previous_response_id: ResponseId | None = None
    metadata: dict[str, str] | None = Field(None, max_length=16)


class DeletedResponse(BaseModel):
    """What `DELETE /v1/responses/{id}` answers."""

    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class ItemList(BaseModel):
    """A page of a response's input items (`GET /v1/responses/{id}/input_items`)."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool
