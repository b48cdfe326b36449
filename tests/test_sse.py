"""The SSE wire format: framing and the incremental decoder."""

from __future__ import annotations

import aiohttp
import pytest

from streamchat import sse

from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .sseclient import FrameReader, events


def test_frame_single_and_many() -> None:
    assert sse.frame([b"{}"]) == b"data: {}\n\n"
    assert sse.frame([b"1", b"2"]) == b"data: 1\n\ndata: 2\n\n"


def test_frame_with_ids_puts_id_after_data() -> None:
    assert sse.frame_with_ids(4, [b"a", b"b"]) == b"data: a\nid: 4\n\ndata: b\nid: 5\n\n"


def test_decoder_handles_split_chunks_crlf_comments_and_multiline_data() -> None:
    decoder = sse.SSEDecoder()
    stream = b': ping\n\ndata: {"a":\r\ndata: 1}\r\nid: 7\r\nevent: x\r\n\r\ndata: [DONE]\n\n'
    messages = [m for i in range(len(stream)) for m in decoder.feed(stream[i : i + 1])]
    assert [(m.data, m.event, m.id) for m in messages] == [
        (b'{"a":\n1}', "x", "7"),
        (b"[DONE]", None, "7"),
    ]


def test_decoder_ignores_blank_blocks_and_unknown_fields() -> None:
    decoder = sse.SSEDecoder()
    assert decoder.feed(b"\n\nretry: 10\nfoo\n\n") == []
    assert [m.data for m in decoder.feed(b"data:no-space\n\n")] == [b"no-space"]


MIXED = (
    b"data: a\n\n: ping\n\ndata: b\ndata: c\n\nevent: x\ndata: d\n\ndata: e\r\n\r\n"
    b'\n\ndata: f\n\n\nid: 3\ndata: g\n\ndata: {"content":"\\n\\ndata: h"}\n\n'
)


def test_feed_data_gives_the_data_feed_gives_however_the_bytes_are_cut() -> None:
    """The hot path's one-split shortcut and the line-by-line parse agree, for streams of
    one-line events only and for streams mixing comments, multi-line events and CRLF."""
    simple = b"".join(b"data: %d\n\n" % i for i in range(50))
    for stream in (simple, MIXED, simple + MIXED + simple):
        for cut in range(len(stream) + 1):
            fast, full = sse.SSEDecoder(), sse.SSEDecoder()
            datas = fast.feed_data(stream[:cut]) + fast.feed_data(stream[cut:])
            messages = full.feed(stream[:cut]) + full.feed(stream[cut:])
            assert datas == [m.data for m in messages], cut


@pytest.mark.parametrize("method", ["feed", "feed_data"])
def test_an_event_that_does_not_end_is_bounded(method: str) -> None:
    decoder = sse.SSEDecoder(max_event_bytes=1000)
    feed = getattr(decoder, method)
    assert len(feed(b"data: " + b"x" * 900 + b"\n\n")) == 1  # within the bound: whole
    feed(b"data: " + b"y" * 900)
    with pytest.raises(sse.EventTooLarge):
        feed(b"y" * 200)  # 1,106 bytes and no end yet
    with pytest.raises(sse.EventTooLarge):  # and one that came whole at once
        getattr(sse.SSEDecoder(max_event_bytes=1000), method)(b"data: " + b"z" * 1200 + b"\n\n")


async def test_an_upstream_event_over_a_mebibyte_is_a_bad_response(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    # The decoder kept whatever came until a blank line: an upstream could grow it without
    # end.
    upstream.reset(Script(tokens=["ok", "x" * (sse.MAX_EVENT_BYTES + 1)]))
    async with http.post(server.url + "/api/chat", json={"uid": 1, "message": "hi"}) as response:
        assert response.status == 200
        got = events(await FrameReader(response).all())
    assert [e["delta"] for e in got if e["type"] == "delta"] == ["ok"]
    assert (got[-1]["type"], got[-1]["code"]) == ("error", "upstream_error")
