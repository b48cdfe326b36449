"""Every rule of `POST /api/chat`, in Chinese (the default) and English."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from .conftest import StartServer
from .fakeupstream import FakeUpstream
from .servers import ServerProcess

CASES: list[tuple[Any, int, int, str, str]] = [
    # body, status, code, Chinese message, English message
    ({"message": "hi"}, 400, 51, "用户ID不能为空", "uid is required"),
    (
        {"uid": None, "message": "hi"},
        400,
        51,
        "用户ID必须是正整数",
        "uid must be a positive integer",
    ),
    ({"uid": 0, "message": "hi"}, 400, 51, "用户ID必须是正整数", "uid must be a positive integer"),
    ({"uid": -3, "message": "hi"}, 400, 51, "用户ID必须是正整数", "uid must be a positive integer"),
    (
        {"uid": "abc", "message": "hi"},
        400,
        51,
        "用户ID必须是正整数",
        "uid must be a positive integer",
    ),
    (
        {"uid": 1.5, "message": "hi"},
        400,
        51,
        "用户ID必须是正整数",
        "uid must be a positive integer",
    ),
    ({"uid": 1}, 400, 51, "消息内容不能为空", "message is required"),
    ({"uid": 1, "message": ""}, 400, 51, "消息内容不能为空", "message is required"),
    ({"uid": 1, "message": " \n\t "}, 400, 51, "消息内容不能为空", "message is required"),
    ({"uid": 1, "message": 42}, 400, 51, "消息内容不能为空", "message is required"),
    (
        {"uid": 1, "message": "hi", "conversation_id": 5},
        400,
        51,
        "参数 conversation_id 无效",
        "invalid conversation_id",
    ),
    ([1, 2], 400, 66, "请求体必须是 JSON 对象", "request body must be a JSON object"),
]


@pytest.mark.parametrize(("body", "status", "code", "zh", "en"), CASES)
async def test_validation_messages_in_both_languages(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    upstream: FakeUpstream,
    body: Any,
    status: int,
    code: int,
    zh: str,
    en: str,
) -> None:
    url = server.url + "/api/chat"
    for language, expected in ((None, zh), ("en-US,en;q=0.9", en), ("zh-CN", zh)):
        headers = {"Accept-Language": language} if language else {}
        async with http.post(url, json=body, headers=headers) as response:
            assert response.status == status
            envelope = await response.json()
        assert envelope["code"] == code
        assert envelope["message"].startswith(expected), envelope
        assert envelope["data"] is None
    assert upstream.records == [], "a refused request must not reach the model"


async def test_message_longer_than_the_limit_is_413(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    small = await start_server(max_message_chars="10", provider="echo")
    url = small.url + "/api/chat"
    async with http.post(url, json={"uid": 1, "message": "x" * 11}) as response:
        assert response.status == 413
        assert (await response.json())["message"] == "消息内容不能超过 10 个字符"
    headers = {"Accept-Language": "en"}
    async with http.post(url, json={"uid": 1, "message": "x" * 11}, headers=headers) as response:
        assert (await response.json())["message"] == "message must be at most 10 characters"
    async with http.post(url, json={"uid": 1, "message": "x" * 10}) as response:
        assert response.status == 200
        await response.read()


async def test_malformed_json_is_400(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    headers = {"Content-Type": "application/json", "Accept-Language": "en"}
    async with http.post(server.url + "/api/chat", data=b'{"uid": 1,', headers=headers) as r:
        assert r.status == 400
        assert await r.json() == {
            "code": 66,
            "message": "request body is not valid JSON",
            "data": None,
        }


async def test_wrong_content_type_is_415(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    body = b'{"uid": 1, "message": "hi"}'
    headers = {"Content-Type": "text/plain"}
    async with http.post(server.url + "/api/chat", data=body, headers=headers) as response:
        assert response.status == 415
        assert (await response.json())["message"] == "Content-Type 必须是 application/json"


async def test_empty_body_is_400(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    headers = {"Content-Type": "application/json"}
    async with http.post(server.url + "/api/chat", data=b"", headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["code"] in (51, 66)


async def test_wrong_method_is_405_envelope(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/api/chat") as response:
        assert response.status == 405
        assert (await response.json())["code"] == 66
