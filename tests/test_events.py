"""The byte-level event builders produce exactly what the contract's models describe."""

from __future__ import annotations

import orjson
from pydantic import TypeAdapter

from streamchat.apis.native import events
from streamchat.providers.base import TokenUsage
from streamchat.schemas import DeltaEvent, EndEvent, ErrorEvent, StartEvent, StreamEvent

ADAPTER: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


def roundtrip(payload: bytes) -> object:
    parsed = orjson.loads(payload)
    model = ADAPTER.validate_python(parsed)
    assert model.model_dump(mode="json") == parsed
    return model


def test_start() -> None:
    payload = events.start(uid=1, conversation_id="c", message_id="m", stream_id="s", model="x")
    assert isinstance(roundtrip(payload), StartEvent)
    assert payload.startswith(b'{"type":"start","index":0,')


def test_delta_escapes_text() -> None:
    text = 'quote " backslash \\ newline \n 中文 </script>'
    model = roundtrip(events.delta(3, text))
    assert isinstance(model, DeltaEvent)
    assert model.delta == text
    assert model.index == 3


def test_end_with_and_without_usage() -> None:
    assert isinstance(roundtrip(events.end(5, "stop", TokenUsage(3, 4))), EndEvent)
    assert orjson.loads(events.end(5, "cancelled", None))["usage"] is None


def test_error() -> None:
    model = roundtrip(events.error(2, "upstream_error", "boom"))
    assert isinstance(model, ErrorEvent)
    assert model.is_end
