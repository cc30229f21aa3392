"""The SSE decoder on hand-built byte streams, split at every possible byte boundary."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vman_magic.client.sse import SSEDecoder, aiter_chunks, iter_chunks
from vman_magic.core.errors import StreamError

CHUNKS = [
    {"id": "c1", "choices": [{"index": 0, "text": "你好，", "finish_reason": None}]},
    {"id": "c1", "choices": [{"index": 0, "text": "世界 🌏", "finish_reason": None}]},
    {"id": "c1", "choices": [{"index": 0, "text": "!", "finish_reason": "stop"}]},
]


def _event(chunk: Any, *, sep: bytes = b"\n", space: bool = True) -> bytes:
    prefix = b"data: " if space else b"data:"
    return prefix + json.dumps(chunk, ensure_ascii=False).encode() + sep + sep


def _decode_in_pieces(stream: bytes, cut: int) -> tuple[list[Any], bool]:
    """Feed ``stream`` in two pieces cut at ``cut``, then close; return chunks and done."""
    decoder = SSEDecoder()
    out = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
    out += decoder.close()
    return out, decoder.done


def _every_split(stream: bytes, expected: list[Any], done: bool = True) -> None:
    for cut in range(len(stream) + 1):
        chunks, saw_done = _decode_in_pieces(stream, cut)
        assert chunks == expected, f"split at byte {cut}"
        assert saw_done is done, f"split at byte {cut}"


def test_lf_stream_decodes_at_every_split() -> None:
    """A plain ``data: `` stream with multibyte Chinese text decodes intact wherever it is split."""
    stream = b"".join(_event(c) for c in CHUNKS) + b"data: [DONE]\n\n"
    _every_split(stream, CHUNKS)


def test_crlf_stream_decodes_at_every_split() -> None:
    """CRLF line endings work, including a CR ending one chunk and its LF starting the next."""
    stream = b"".join(_event(c, sep=b"\r\n") for c in CHUNKS) + b"data: [DONE]\r\n\r\n"
    _every_split(stream, CHUNKS)


def test_cr_only_stream_decodes_at_every_split() -> None:
    """Bare CR line endings (old Mac style) are line endings too."""
    stream = b"".join(_event(c, sep=b"\r") for c in CHUNKS) + b"data: [DONE]\r\r"
    _every_split(stream, CHUNKS)


def test_data_without_space_comments_and_fields_at_every_split() -> None:
    """``data:`` without a space, comments, keep-alives and event/id/retry fields are handled."""
    stream = (
        b": keep-alive\n\n"
        b"event: completion\nid: 1\nretry: 1000\n" + _event(CHUNKS[0], space=False) + b":ping\n\n"
        b"\n\n" + _event(CHUNKS[1]) + b"id: 2\n" + _event(CHUNKS[2], space=False) + b"data:[DONE]\n\n"
    )
    _every_split(stream, CHUNKS)


def test_multiline_data_is_joined_with_newlines() -> None:
    """Several ``data`` lines of one event are joined with a newline before parsing."""
    stream = b'data: {"a":\ndata: [1,\ndata:2]}\n\ndata: [DONE]\n\n'
    _every_split(stream, [{"a": [1, 2]}])


def test_missing_done_is_reported_as_not_done() -> None:
    """Without ``[DONE]`` the chunks still arrive and ``done`` stays false."""
    stream = b"".join(_event(c) for c in CHUNKS)
    _every_split(stream, CHUNKS, done=False)


def test_last_event_without_blank_line_is_accepted_at_close() -> None:
    """A final ``data: [DONE]\\n`` with no blank line after it still counts at end of input."""
    stream = _event(CHUNKS[0]) + b"data: [DONE]\n"
    _every_split(stream, CHUNKS[:1])


def test_cut_off_last_line_is_dropped_at_close() -> None:
    """A trailing line with no newline was truncated in transit and is not parsed."""
    decoder = SSEDecoder()
    assert decoder.feed(_event(CHUNKS[0]) + b'data: {"id": "c1", "cho') == CHUNKS[:1]
    assert decoder.close() == []
    assert not decoder.done


def test_events_after_done_are_ignored() -> None:
    """Nothing after the ``[DONE]`` sentinel is returned."""
    decoder = SSEDecoder()
    assert decoder.feed(_event(CHUNKS[0]) + b"data: [DONE]\n\n" + _event(CHUNKS[1])) == CHUNKS[:1]
    assert decoder.done
    assert decoder.feed(_event(CHUNKS[2])) == []


def test_error_payload_is_passed_through() -> None:
    """An ``{"error": ...}`` event is an ordinary chunk here; the builder raises for it."""
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    assert SSEDecoder().feed(_event(error)) == [error]


def test_non_json_event_raises_stream_error_with_a_short_excerpt() -> None:
    """A data line that is not JSON raises StreamError quoting at most ~200 characters of it."""
    bad = b"<html>" + b"x" * 5000
    with pytest.raises(StreamError) as info:
        SSEDecoder().feed(b"data: " + bad + b"\n\n")
    message = str(info.value)
    assert "not JSON" in message and "<html>" in message
    assert len(message) < 300


def test_invalid_utf8_raises_stream_error() -> None:
    """Bytes that are not UTF-8 are reported as a bad event, not a UnicodeDecodeError."""
    with pytest.raises(StreamError):
        SSEDecoder().feed(b'data: "\xff\xfe"\n\n')


def test_one_megabyte_line_in_small_pieces() -> None:
    """A 1 MB event fed 1 KB at a time decodes to the same text."""
    text = "长" * 350_000  # ~1 MB of UTF-8
    stream = _event({"choices": [{"index": 0, "text": text}]}) + b"data: [DONE]\n\n"
    decoder = SSEDecoder()
    out: list[Any] = []
    for start in range(0, len(stream), 1024):
        out += decoder.feed(stream[start : start + 1024])
    assert decoder.done
    assert out[0]["choices"][0]["text"] == text


def test_every_byte_separately() -> None:
    """Feeding one byte at a time gives the same chunks as feeding everything at once."""
    stream = b"".join(_event(c, sep=b"\r\n") for c in CHUNKS) + b"data: [DONE]\r\n\r\n"
    decoder = SSEDecoder()
    out: list[Any] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert out == CHUNKS and decoder.done


def test_iter_chunks_stops_at_done() -> None:
    """``iter_chunks`` decodes an iterable of byte pieces and stops reading at ``[DONE]``."""
    pieces = [_event(CHUNKS[0]), b"data: [DONE]\n\n", b"never read"]
    consumed: list[bytes] = []

    def source() -> Any:
        for p in pieces:
            consumed.append(p)
            yield p

    assert list(iter_chunks(source())) == CHUNKS[:1]
    assert len(consumed) == 2


async def _collect(pieces: list[bytes]) -> list[Any]:
    async def source() -> Any:
        for p in pieces:
            yield p

    return [chunk async for chunk in aiter_chunks(source())]


def test_aiter_chunks_decodes_an_async_stream() -> None:
    """``aiter_chunks`` is the async twin of ``iter_chunks``."""
    import asyncio

    stream = b"".join(_event(c) for c in CHUNKS)
    assert asyncio.run(_collect([stream[:7], stream[7:], b"data: [DONE]\n\n"])) == CHUNKS


def test_stdlib_parser_matches_the_fast_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without orjson the stdlib fallback decodes the same chunks, Chinese included, and rejects bad JSON alike."""
    from vman_magic.client import shape as _shape

    events = [{"choices": [{"index": 0, "text": "长城 wall"}]}, {"choices": [], "usage": {"total_tokens": 3}}]
    stream = b"".join(_event(e) for e in events) + b"data: [DONE]\n\n"
    fast = SSEDecoder().feed(stream)
    monkeypatch.setattr(_shape, "loads", _shape.json_loads)
    assert SSEDecoder().feed(stream) == fast == events
    with pytest.raises(StreamError, match="not JSON"):
        SSEDecoder().feed(b"data: {oops\n\n")
    with pytest.raises(StreamError, match="not JSON"):
        SSEDecoder().feed(b"data: \xff\xfe\n\n")
