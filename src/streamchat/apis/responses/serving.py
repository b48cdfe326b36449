"""Starting a response: a `POST /v1/responses` becomes a generation, stored or not.

The providers speak Chat Completions, so the request becomes a `GenerateRequest`
(`passthrough` stays None: an OpenAI-compatible upstream is sent a chat completion built
from it, never the Responses body). A stored response (`store`, the default) is a turn of a
conversation: its input is committed before anything is generated, and taken back if the
provider refuses. A background response runs to its end whoever follows it; any other
ends when its client leaves.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from ...access.limits import FREE, Charge
from ...config import Settings
from ...errors import Failure, Kind
from ...hub import Subscription
from ...providers.base import ChatMessage, GenerateRequest, Unsupported
from ...schemas import unportable
from ...service.chat import ChatService
from ...service.history import title_of
from ...store import ItemRow, NewResponse, ResponseStore, Store
from . import items
from .format import ResponsesFormat
from .objects import echo, response_id
from .protocol import CreateResponse
from .recorder import ResponseRecorder
from .state import not_found

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Caller:
    """Who a request acts for: `uid` owns what it stores; `owner` filters what it reads and
    follows (None with auth off and no uid named: anyone's)."""

    uid: int
    owner: int | None
    models: tuple[str, ...] | None = None  # what the key may use (None: every model)


class ResponsesService:
    """Starts responses; the store of their state is shared with the history."""

    def __init__(
        self, chat: ChatService, store: Store, responses: ResponseStore, settings: Settings
    ) -> None:
        self.chat = chat
        self.store = store
        self.responses = responses
        self.settings = settings

    async def start(
        self, body: CreateResponse, caller: Caller, charge: Charge = FREE
    ) -> tuple[Subscription, ResponsesFormat]:
        """Have the provider accept the response; the subscription follows its events, from
        `response.created` on. `charge` is settled when it ends (now if it never begins)."""
        try:
            return await self._start(body, caller, charge)
        except BaseException:
            await charge.settle(0)
            raise

    async def _start(
        self, body: CreateResponse, caller: Caller, charge: Charge
    ) -> tuple[Subscription, ResponsesFormat]:
        chat, settings = self.chat, self.settings
        model = chat.resolve_model(body.model, caller.models)
        where = unportable(body.model_dump(exclude_unset=True))
        if where is not None:  # tools' schemas go upstream as JSON: nothing it cannot carry
            raise Failure(Kind.VALIDATION, "number_out_of_range", param=where)
        if body.background and body.store is False:
            raise items.invalid("background", "a background response must be stored")
        limit = body.max_output_tokens
        if limit is not None and limit > settings.max_tokens_cap:
            raise Failure(Kind.VALIDATION, "max_tokens_too_large", limit=settings.max_tokens_cap)
        new_items = items.normalize(body.input)
        self._check_size(new_items)
        conversation_id, earlier = await self._earlier(body.previous_response_id, caller)
        messages = items.chat_messages(earlier + new_items)
        if body.instructions:
            messages.insert(0, ChatMessage("system", body.instructions))
        tools = _tools(body)
        choice = _tool_choice(body.tool_choice)
        request = GenerateRequest(
            messages=messages,
            model=model,
            max_tokens=limit,
            temperature=body.temperature,
            top_p=body.top_p,
            user=None if caller.owner is None else f"streamchat-uid-{caller.owner}",
            tools=tools,
            tool_choice=choice if tools else None,
            parallel_tool_calls=body.parallel_tool_calls if tools else None,
            response_format=_response_format(body),
        )
        stream_id = uuid.uuid4().hex
        fmt = ResponsesFormat(echo(body, model))
        fmt.id = response_id(stream_id)
        recorder = None
        if body.store is not False:
            answer_id = await self.responses.begin(
                NewResponse(
                    response_id=fmt.id,
                    uid=caller.uid,
                    title=title_of(_first_text(new_items)),
                    previous_response_id=body.previous_response_id,
                    conversation_id=conversation_id,
                    inputs=[_row(item) for item in new_items],
                    model=model,
                    stream_id=stream_id,
                    request=orjson.dumps(fmt.request).decode(),
                )
            )
            if answer_id is None:  # its conversation was deleted meanwhile
                raise not_found(body.previous_response_id or "")
            recorder = ResponseRecorder(
                self.store, self.responses, answer_id, fmt, tokens=settings.history_save_tokens
            )
        try:
            subscription = await chat.generate(
                request,
                fmt,
                recorder=recorder,
                stream_id=stream_id,
                owner=caller.owner,
                charge=charge,
                api="responses",
                # A background response runs to its end; any other stops with its client.
                detach_grace=math.inf if body.background else 0,
            )
        except BaseException as exc:
            if recorder is not None:
                await self._forget(fmt.id, recorder, exc)
            raise
        return subscription, fmt

    async def _forget(self, rid: str, recorder: ResponseRecorder, reason: BaseException) -> None:
        """Take back a response refused before it began (a refusal writes nothing); if the
        database fails meanwhile, its answer records the refusal."""
        try:
            await self.responses.delete(rid, None)
        except Failure as exc:
            log.warning("response %s not taken back: %s", rid, exc.detail)
            recorder.refused(reason)

    async def _earlier(
        self, previous: str | None, caller: Caller
    ) -> tuple[str | None, list[items.Item]]:
        """The conversation and items a response continues (within the history budget)."""
        if previous is None:
            return None, []
        found = await self.responses.chain(previous, caller.owner)
        if found is None:
            raise not_found(previous)
        conversation_id, rows = found
        earlier: list[items.Item] = []
        for row in rows:
            if row.items:
                earlier.extend(orjson.loads(row.items))
            elif row.role == "assistant":  # its items were not saved: its text is
                earlier.append(items.output_message(items.new_id("msg"), row.content, "completed"))
        return conversation_id, _within(earlier, self.settings.history_max_chars)

    def _check_size(self, new_items: list[items.Item]) -> None:
        settings = self.settings
        if len(new_items) > settings.max_messages:
            raise Failure(Kind.VALIDATION, "messages_too_many", limit=settings.max_messages)
        total = 0
        for item in new_items:
            size = len(items.item_text(item))
            if size > settings.max_message_chars:
                raise Failure(Kind.TOO_LONG, "message_too_long", limit=settings.max_message_chars)
            total += size
            if total > settings.max_conversation_chars:
                limit = settings.max_conversation_chars
                raise Failure(Kind.TOO_LONG, "messages_too_long", limit=limit)


def _within(earlier: list[items.Item], budget: int) -> list[items.Item]:
    """The newest items within `budget` characters, from a user's or system message on (a
    cut must not leave a function's output without its call)."""
    kept: list[items.Item] = []
    for item in reversed(earlier):
        budget -= len(items.item_text(item))
        if budget < 0:
            break
        kept.append(item)
    else:
        return earlier
    kept.reverse()
    while kept and not (kept[0]["type"] == "message" and kept[0]["role"] != "assistant"):
        kept.pop(0)
    return kept


def _row(item: items.Item) -> ItemRow:
    return ItemRow(items.item_role(item), items.item_text(item), orjson.dumps([item]).decode())


def _first_text(new_items: list[items.Item]) -> str:
    for item in new_items:
        if item["type"] == "message" and item["role"] == "user":
            return items.item_text(item)
    return "response"


def _tools(body: CreateResponse) -> list[dict[str, Any]] | None:
    """Function tools in the Chat Completions shape the providers take; None when the
    choice is `none`."""
    if not body.tools or body.tool_choice == "none":
        return None
    tools = []
    for position, tool in enumerate(body.tools):
        if tool.get("type") != "function":
            raise Unsupported(f"tools[{position}]", "only function tools are supported")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise items.invalid(f"tools[{position}].name", "a function tool needs a name")
        function: dict[str, Any] = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """`tool_choice` in the Chat Completions shape."""
    if choice is None or isinstance(choice, str):
        if choice not in (None, "auto", "none", "required"):
            raise items.invalid("tool_choice", "must be auto, none, required or a function")
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise Unsupported("tool_choice", "only a function may be named")


def _response_format(body: CreateResponse) -> dict[str, Any] | None:
    """`text.format` as Chat Completions' `response_format`."""
    fmt = body.text.format if body.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.schema_ is None or not fmt.name:
        raise items.invalid("text.format", "a json_schema format needs a name and a schema")
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_}
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    if fmt.description is not None:
        schema["description"] = fmt.description
    return {"type": "json_schema", "json_schema": schema}
