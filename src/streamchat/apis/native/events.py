"""Builders of the native stream's event payloads (JSON bytes), matching `schemas.py`.

They run once per token, so they format bytes directly instead of building pydantic models;
`tests/test_events.py` checks every builder against the models of the contract.
"""

from __future__ import annotations

import orjson

from ...providers.base import TokenUsage


def start(*, uid: int, conversation_id: str, message_id: str, stream_id: str, model: str) -> bytes:
    """The `start` event (always index 0)."""
    return orjson.dumps(
        {
            "type": "start",
            "index": 0,
            "is_end": False,
            "uid": uid,
            "conversation_id": conversation_id,
            "message_id": message_id,
            "stream_id": stream_id,
            "model": model,
        }
    )


def delta(index: int, text: str) -> bytes:
    """A `delta` event carrying a piece of the answer."""
    return b'{"type":"delta","index":%d,"is_end":false,"delta":%b}' % (index, orjson.dumps(text))


def end(index: int, finish_reason: str, usage: TokenUsage | None) -> bytes:
    """The final `end` event."""
    return orjson.dumps(
        {
            "type": "end",
            "index": index,
            "is_end": True,
            "finish_reason": finish_reason,
            "usage": None
            if usage is None
            else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            },
        }
    )


def error(index: int, code: str, message: str) -> bytes:
    """The final `error` event of a stream that failed after it began."""
    return orjson.dumps(
        {"type": "error", "index": index, "is_end": True, "code": code, "message": message}
    )
