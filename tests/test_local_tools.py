"""Tools and structured output on the embedded model, through the official `openai` client.

Against one real server on the small test model (temperature 0, so every answer is the same
each run): forced calls and JSON answers come out of a grammar and always validate; a free
call is read out of the model's text while it streams; what the model cannot read is refused
before the stream, naming the parameter.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from .conftest import StartServer
from .localmodel import SMALL, client_for, local_settings
from .servers import ServerProcess
from .test_engine_prompts import INJECTION, Count, tokenize

__all__ = ["tokenize"]  # the fixture, shared with test_engine_prompts

WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": WEATHER_PARAMETERS,
    },
}
CONTACT_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "email": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "vip": {"type": "boolean"},
    },
    "required": ["name", "email", "tags", "vip"],
    "additionalProperties": False,
}
SAVE_CONTACT: Any = {
    "type": "function",
    "function": {
        "name": "save_contact",
        "description": "Save a person to the address book",
        "parameters": CONTACT_PARAMETERS,
    },
}
SAVE_CONTACT_CHOICE: Any = {"type": "function", "function": {"name": "save_contact"}}
FILM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "year": {"type": "integer"},
        "genre": {"type": "string", "enum": ["comedy", "drama", "horror", "science fiction"]},
        # Bounded: a small model may repeat one name until its tokens run out.
        "cast": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        "rating": {"type": "object", "properties": {"stars": {"type": "number"}}},
    },
    "required": ["title", "year", "genre", "cast", "rating"],
    "additionalProperties": False,
}
PEOPLE = ["Ana", "Bo", "Chen", "Dara", "Emil", "Fatou", "Goran", "Hana", "Ivo", "Jun"]
FILMS = ["Alien", "Amélie", "Heat", "Up", "Jaws", "Rocky", "Psycho", "Fargo", "Tron", "Big"]


SLOTS = 4


@pytest_asyncio.fixture(scope="module")
async def model(start_server: StartServer, model_dir: Path) -> ServerProcess:
    """The small model answering four requests at once (on one thread, four answers decoded
    together take little longer than one)."""
    settings = local_settings(model_dir, local_slots=str(SLOTS), local_context_tokens="1024")
    return await start_server(120, **settings)


async def each(prompts: list[str], ask: Callable[[str], Awaitable[None]]) -> None:
    """`ask` every prompt, four at a time."""
    room = asyncio.Semaphore(SLOTS)

    async def one(prompt: str) -> None:
        async with room:
            await ask(prompt)

    await asyncio.gather(*(one(prompt) for prompt in prompts))


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.mark.timeout(300)  # 20 answers of 30 to 50 tokens on one busy thread
async def test_a_named_tool_choice_gives_arguments_that_match_the_schema_20_of_20(
    model: ServerProcess,
) -> None:
    client = client_for(model)
    prompts = [f"Add {p} ({p.lower()}@example.com) as a new contact." for p in PEOPLE] + [
        f"Remember {p}: a customer we met in {city}." for p, city in zip(PEOPLE, FILMS, strict=True)
    ]

    async def ask(prompt: str) -> None:
        answer = await client.chat.completions.create(
            model=SMALL,
            messages=user(prompt),
            tools=[WEATHER, SAVE_CONTACT],
            tool_choice=SAVE_CONTACT_CHOICE,
            max_tokens=80,
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls", (prompt, choice)
        calls = choice.message.tool_calls or []
        assert len(calls) == 1, (prompt, choice)
        call = calls[0]
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        assert call.type == "function"
        assert call.function.name == "save_contact"
        assert call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), CONTACT_PARAMETERS)

    await each(prompts, ask)


@pytest.mark.timeout(300)
async def test_json_schema_answers_validate_20_of_20(model: ServerProcess) -> None:
    client = client_for(model)
    prompts = [f"Describe the film {film} as JSON." for film in FILMS] + [
        f"Give me a {genre} film with {person} in it, as JSON."
        for genre, person in zip(["comedy", "drama"] * 5, PEOPLE, strict=True)
    ]
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "film", "schema": FILM}}

    async def ask(prompt: str) -> None:
        answer = await client.chat.completions.create(
            model=SMALL, messages=user(prompt), response_format=response_format, max_tokens=120
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "stop", (prompt, choice)
        jsonschema.validate(json.loads(choice.message.content or ""), FILM)

    await each(prompts, ask)


async def test_json_object_answers_are_one_json_object(model: ServerProcess) -> None:
    answer = await client_for(model).chat.completions.create(
        model=SMALL,
        messages=user("List three fruits and their colours in JSON."),
        response_format={"type": "json_object"},
        max_tokens=80,
    )
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


async def test_whats_the_weather_in_paris_calls_get_weather_with_paris(
    model: ServerProcess,
) -> None:
    answer = await client_for(model).chat.completions.create(
        model=SMALL, messages=user("What's the weather in Paris?"), tools=[WEATHER], max_tokens=60
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] == "Paris"


async def test_a_streamed_call_arrives_in_openais_chunk_shapes(model: ServerProcess) -> None:
    stream = await client_for(model).chat.completions.create(
        model=SMALL,
        messages=user("What's the weather in Paris?"),
        tools=[WEATHER],
        max_tokens=60,
        stream=True,
    )
    pieces: list[Any] = []
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            pieces += choice.delta.tool_calls or []
            assert not choice.delta.content
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    first, rest = pieces[0], pieces[1:]
    assert first.index == 0
    assert first.id.startswith("call_")
    assert first.type == "function"
    assert first.function.name == "get_weather"
    assert len(rest) >= 2, "the arguments come in pieces, as the model writes them"
    assert all(p.index == 0 and p.id is None and p.function.name is None for p in rest)
    arguments = (first.function.arguments or "") + "".join(p.function.arguments for p in rest)
    assert json.loads(arguments)["city"] == "Paris"


async def test_control_tokens_in_tools_calls_and_results_are_read_as_text(
    model: ServerProcess, tokenize: Count
) -> None:
    async def prompt_tokens(extra: str) -> int:
        tool: Any = {
            **WEATHER,
            "function": {**WEATHER["function"], "description": "Weather" + extra},
        }
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris" + extra})},
        }
        messages: Any = [
            *user("What's the weather in Paris?"),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny" + extra},
        ]
        answer = await client_for(model).chat.completions.create(
            model=SMALL, messages=messages, tools=[tool], max_tokens=1
        )
        assert answer.usage is not None
        return answer.usage.prompt_tokens

    grown = await prompt_tokens(INJECTION) - await prompt_tokens("")
    escaped = json.dumps(INJECTION)[1:-1]  # in the tool and the call, it is inside JSON
    as_text = 2 * tokenize(escaped, False) + tokenize(INJECTION, False)
    as_control = 2 * tokenize(escaped, True) + tokenize(INJECTION, True)
    assert as_text - as_control > 10
    assert abs(grown - as_text) <= 3, (grown, as_text, as_control)


async def test_tool_choice_none_answers_in_text(model: ServerProcess) -> None:
    answer = await client_for(model).chat.completions.create(
        model=SMALL,
        messages=user("What's the weather in Paris?"),
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=20,
    )
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content


@pytest.mark.parametrize(
    ("extra", "messages", "param"),
    [
        (
            {},
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                }
            ],
            "messages[0].content[1]",
        ),
        ({"n": 2}, user("Hi"), "n"),
        ({"logprobs": True}, user("Hi"), "logprobs"),
    ],
)
async def test_what_a_text_model_cannot_do_is_a_400_naming_the_parameter(
    model: ServerProcess, extra: dict[str, Any], messages: Any, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client_for(model).chat.completions.create(
            model=SMALL, messages=messages, max_tokens=5, **extra
        )
    assert caught.value.status_code == 400
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == param


async def test_parameters_the_model_does_not_know_are_ignored(model: ServerProcess) -> None:
    answer = await client_for(model).chat.completions.create(
        model=SMALL,
        messages=user("Say hi."),
        max_tokens=5,
        extra_body={"top_k": 5, "min_p": 0.1, "safety_identifier": "x", "verbosity": "low"},
    )
    assert answer.choices[0].message.content
