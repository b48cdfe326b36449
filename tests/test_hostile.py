"""A table of hostile inputs against a real server: each is a 4xx in the contract's shape,
none is a 5xx, and the server answers a normal chat afterwards (on SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json

import aiohttp
import pytest

from streamchat.apis.openai_chat.protocol import ErrorResponse

from .conftest import StartServer
from .dbs import Databases
from .servers import ServerProcess
from .sseclient import FrameReader

JSON = {"Content-Type": "application/json"}
NESTED = b"[" * 100_000 + b"]" * 100_000
ID = "a" * 32

# name, method, path, body, headers
CASES: list[tuple[str, str, str, bytes | None, dict[str, str]]] = [
    ("nested JSON", "POST", "/api/chat", b'{"uid":1,"message":"x","model":' + NESTED + b"}", JSON),
    ("nested JSON v1", "POST", "/v1/chat/completions", b'{"messages":' + NESTED + b"}", JSON),
    ("nested body", "POST", "/api/chat", NESTED, JSON),
    ("NUL in message", "POST", "/api/chat", b'{"uid":1,"message":"a\\u0000b"}', JSON),
    (
        "NUL in conversation_id",
        "POST",
        "/api/chat",
        b'{"uid":1,"message":"a","conversation_id":"a\\u0000"}',
        JSON,
    ),
    ("NUL in path id", "GET", "/api/conversations/a%00b/messages?uid=1", None, {}),
    ("NUL in stream id", "GET", "/api/chat/streams/a%00b", None, {}),
    ("NUL in cursor", "GET", "/api/conversations?uid=1&cursor=1_%00", None, {}),
    ("invalid UTF-8 body", "POST", "/api/chat", b'{"uid":1,"message":"\xff\xfe"}', JSON),
    (
        "invalid UTF-8 v1",
        "POST",
        "/v1/chat/completions",
        b'{"messages":[{"role":"user","content":"\xc3("}]}',
        JSON,
    ),
    ("invalid UTF-8 path", "GET", "/api/conversations/%FF%FE/messages?uid=1", None, {}),
    ("invalid UTF-8 query", "GET", "/api/conversations?uid=%FF", None, {}),
    ("uid float", "POST", "/api/chat", b'{"uid":1.0,"message":"x"}', JSON),
    ("uid exponent", "POST", "/api/chat", b'{"uid":1e300,"message":"x"}', JSON),
    ("uid string", "POST", "/api/chat", b'{"uid":"1","message":"x"}', JSON),
    ("uid bool", "POST", "/api/chat", b'{"uid":true,"message":"x"}', JSON),
    ("uid 5000 digits", "POST", "/api/chat", b'{"uid":' + b"9" * 5000 + b',"message":"x"}', JSON),
    ("uid negative huge", "GET", "/api/conversations?uid=-" + "9" * 5000, None, {}),
    ("uid NaN", "POST", "/api/chat", b'{"uid":NaN,"message":"x"}', JSON),
    ("uid Infinity query", "GET", "/api/conversations?uid=Infinity", None, {}),
    ("limit float", "GET", "/api/conversations?uid=1&limit=1.5", None, {}),
    ("limit zero", "GET", "/api/conversations?uid=1&limit=0", None, {}),
    ("after float", "GET", f"/api/chat/streams/{ID}?after=1.5", None, {}),
    ("after 5000 digits", "GET", f"/api/chat/streams/{ID}?after=" + "9" * 5000, None, {}),
    ("Last-Event-ID text", "GET", f"/api/chat/streams/{ID}", None, {"Last-Event-ID": "abc"}),
    (
        "cursor overflow",
        "GET",
        "/api/conversations?uid=1&cursor=" + "9" * 20 + "_" + "f" * 32,
        None,
        {},
    ),
    ("cursor junk", "GET", "/api/conversations?uid=1&cursor=%0A%0D", None, {}),
    (
        "huge message",
        "POST",
        "/api/chat",
        json.dumps({"uid": 1, "message": "x" * 900_000}).encode(),
        JSON,
    ),
    (
        "huge model",
        "POST",
        "/api/chat",
        json.dumps({"uid": 1, "message": "x", "model": "m" * 900_000}).encode(),
        JSON,
    ),
    (
        "many keys",
        "POST",
        "/v1/chat/completions",
        json.dumps({f"k{i}": i for i in range(60_000)}).encode(),
        JSON,
    ),
    (
        "many messages",
        "POST",
        "/v1/chat/completions",
        json.dumps({"messages": [{"role": "user", "content": ""}] * 60_000}).encode(),
        JSON,
    ),
    (
        "temperature NaN",
        "POST",
        "/v1/chat/completions",
        b'{"messages":[{"role":"user","content":"x"}],"temperature":NaN}',
        JSON,
    ),
    (
        "top_p Infinity",
        "POST",
        "/v1/chat/completions",
        b'{"messages":[{"role":"user","content":"x"}],"top_p":Infinity}',
        JSON,
    ),
    (
        "penalty -0.0e999",
        "POST",
        "/v1/chat/completions",
        b'{"messages":[{"role":"user","content":"x"}],"presence_penalty":1e999}',
        JSON,
    ),
    (
        "seed float",
        "POST",
        "/v1/chat/completions",
        b'{"messages":[{"role":"user","content":"x"}],"seed":1.5}',
        JSON,
    ),
    (
        "stop 5000 items",
        "POST",
        "/v1/chat/completions",
        json.dumps({"messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5000}).encode(),
        JSON,
    ),
    (
        "content parts nested",
        "POST",
        "/v1/chat/completions",
        b'{"messages":[{"role":"user","content":[[[[[]]]]]}]}',
        JSON,
    ),
    ("duplicate keys", "POST", "/api/chat", b'{"uid":1,"uid":2**70,"message":"x"}', JSON),
    ("empty body", "POST", "/api/chat", b"", JSON),
    (
        "wrong content type",
        "POST",
        "/v1/chat/completions",
        b"messages=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    ("repeated uid", "GET", f"/api/conversations?uid=1&uid={2**63}", None, {}),
    ("long path", "GET", "/api/chat/streams/" + "a" * 5000, None, {}),
    ("dot segments", "GET", "/api/conversations/..%2F..%2Fetc/messages?uid=1", None, {}),
    ("unknown route", "GET", "/api/%0A%0D", None, {}),
    ("wrong method", "PATCH", "/api/chat", None, {}),
]


def assert_contract_shape(path: str, body: bytes) -> None:
    """A refusal is the native envelope, or OpenAI's error shape under /v1."""
    if path.startswith("/v1"):
        ErrorResponse.model_validate_json(body)
        return
    envelope = json.loads(body)
    assert set(envelope) == {"code", "message", "data"}, envelope
    assert isinstance(envelope["code"], int)
    assert envelope["code"] > 0
    assert isinstance(envelope["message"], str)
    assert envelope["message"]


@pytest.fixture(params=["sqlite", "postgresql"])
async def hostile_target(
    request: pytest.FixtureRequest, start_server: StartServer, databases: Databases
) -> ServerProcess:
    """A server on each database: a NUL in text is refused by PostgreSQL, not by SQLite."""
    db = await databases.shared(request.param)
    return await start_server(detach_grace_seconds="0", **db)


async def test_hostile_inputs_are_4xx_in_the_contracts_shape(
    http: aiohttp.ClientSession, hostile_target: ServerProcess
) -> None:
    failures = []
    for name, method, path, body, headers in CASES:
        data = io.BytesIO(body) if body is not None else None  # aiohttp warns of large bytes
        async with http.request(
            method, hostile_target.url + path, data=data, headers=headers
        ) as response:
            answer = await response.read()
            if not 400 <= response.status < 500:
                failures.append(f"{name}: {response.status} {answer[:200]!r}")
                continue
            try:
                assert_contract_shape(path, answer)
            except (AssertionError, ValueError) as exc:
                failures.append(f"{name}: shape {exc!r} of {answer[:200]!r}")
    assert not failures, "\n".join(failures)
    assert "Traceback" not in hostile_target.log()
    async with http.post(hostile_target.url + "/api/chat", json={"uid": 1, "message": "hi"}) as r:
        assert r.status == 200
        frames = await FrameReader(r).all()
    assert frames[-1].event["type"] == "end"
    async with http.get(hostile_target.url + "/readyz") as r:
        assert r.status == 200
