"""The SSE wire format: framing and the incremental decoder."""

from __future__ import annotations

from streamchat import sse


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
