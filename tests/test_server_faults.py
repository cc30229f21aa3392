"""Every fault knob is reachable and sends the documented bytes (checked with raw httpx and sockets)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from vman_magic.demo.running import RunningServer
from vman_magic.testing import FAULT_AFTER, serve, url

BODY: dict[str, Any] = {"model": "vman-demo", "prompt": "The", "max_tokens": 8, "stream": True, "temperature": 0}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve() as srv:
        yield srv


def _raw(server: RunningServer, body: dict[str, Any] = BODY, **knobs: Any) -> tuple[httpx.Response, bytes]:
    with httpx.stream("POST", url(server, **knobs) + "/completions", json=body, timeout=30) as r:
        return r, r.read()


def _events(raw: bytes) -> list[str]:
    return [e for e in raw.decode().replace("\r\n", "\n").split("\n\n") if e]


def _data(raw: bytes) -> list[str]:
    return [line[5:].strip() for e in _events(raw) for line in e.split("\n") if line.startswith("data:")]


def test_plain_stream_reference(server: RunningServer) -> None:
    """Without knobs every event is 'data: {json}' + blank line, ending with [DONE]."""
    r, raw = _raw(server)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert all(e.startswith("data: ") for e in _events(raw))
    assert raw.endswith(b"data: [DONE]\n\n") and b"\r" not in raw


def test_no_space_and_crlf(server: RunningServer) -> None:
    """no_space drops the space after 'data:'; crlf ends every line with CRLF."""
    _, raw = _raw(server, fault=["no_space", "crlf"])
    assert raw.startswith(b"data:{") and raw.endswith(b"data:[DONE]\r\n\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_keepalive_adds_comments_and_sse_fields(server: RunningServer) -> None:
    """keepalive interleaves ': ping' comments and event/id/retry lines."""
    _, raw = _raw(server, fault="keepalive")
    text = raw.decode()
    assert text.startswith(": ping\n\nretry: 3000\nevent: completion\nid: 1\ndata: {")
    assert text.count(": ping") == text.count("event: completion") >= 2
    assert [json.loads(d)["object"] for d in _data(raw)[:-1]] == ["text_completion"] * (len(_data(raw)) - 1)


def test_split_utf8_splits_characters_across_writes(server: RunningServer) -> None:
    """split_utf8 streams Chinese text and cuts multibyte characters between HTTP chunks."""
    host, port = "127.0.0.1", server.port
    body = json.dumps({**BODY, "max_tokens": 6}).encode()
    request = (
        f"POST /x/split_utf8/v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, chunked = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    parts = []
    while chunked:
        size_line, _, rest = chunked.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        parts.append(rest[:size])
        chunked = rest[size + 2 :]
    broken = [p for p in parts if _ends_mid_character(p)]
    assert broken, "some HTTP chunk should end inside a multibyte character"
    texts = [json.loads(d)["choices"][0]["text"] for d in _data(b"".join(parts))[:-1]]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in "".join(texts))


def _ends_mid_character(part: bytes) -> bool:
    try:
        part.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_usage_chunk_is_forced(server: RunningServer) -> None:
    """usage_chunk sends the choices=[] usage chunk without include_usage."""
    _, raw = _raw(server, fault="usage_chunk")
    last = json.loads(_data(raw)[-2])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] >= 1


@pytest.mark.parametrize(("fault", "code"), [("error_in_stream", 500), ("error_in_stream_strcode", "internal_error")])
def test_error_in_stream(server: RunningServer, fault: str, code: int | str) -> None:
    """An OpenAI error object arrives as a data event mid-stream, then the stream ends without [DONE]."""
    _, raw = _raw(server, fault=fault)
    data = _data(raw)
    assert len(data) == FAULT_AFTER + 1 and "[DONE]" not in data
    error = json.loads(data[-1])["error"]
    assert (
        error["code"] == code and error["type"] == "server_error" and set(error) == {"message", "type", "param", "code"}
    )


def test_drop_mid_stream_breaks_the_body(server: RunningServer) -> None:
    """drop_mid_stream aborts the connection after some events: the client sees a broken chunked body."""
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", url(server, fault="drop_mid_stream") + "/completions", json=BODY) as r,
    ):
        for chunk in r.iter_raw():
            received += chunk
    assert len(_data(received)) == FAULT_AFTER


def test_no_done_keeps_finish_reasons(server: RunningServer) -> None:
    """no_done ends cleanly after the finish reason but without [DONE]."""
    _, raw = _raw(server, fault="no_done")
    data = _data(raw)
    assert "[DONE]" not in data and json.loads(data[-1])["choices"][0]["finish_reason"] == "length"


def test_no_done_unfinished_has_no_finish_reason(server: RunningServer) -> None:
    """no_done_unfinished ends cleanly mid-stream: no finish reason, no [DONE]."""
    _, raw = _raw(server, fault="no_done_unfinished")
    data = _data(raw)
    assert len(data) == FAULT_AFTER
    assert all(json.loads(d)["choices"][0]["finish_reason"] is None for d in data)


def test_bad_json_line_mid_stream(server: RunningServer) -> None:
    """bad_json inserts one non-JSON data line and then continues to [DONE]."""
    _, raw = _raw(server, fault="bad_json")
    data = _data(raw)
    assert data[FAULT_AFTER] == '{"id": "cmpl-broken", "choices": [' and data[-1] == "[DONE]"


def test_bad_json_non_stream(server: RunningServer) -> None:
    """A non-streamed request under bad_json gets a truncated JSON body."""
    r = httpx.post(url(server, fault="bad_json") + "/completions", json={**BODY, "stream": False})
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_hang_sends_headers_then_nothing(server: RunningServer) -> None:
    """hang answers 200 and then stays silent until the client times out."""
    timeout = httpx.Timeout(5.0, read=0.5)
    with httpx.stream("POST", url(server, fault="hang") + "/completions", json=BODY, timeout=timeout) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            r.read()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 503])
def test_injected_status(server: RunningServer, status: int) -> None:
    """status=N answers N with an OpenAI error body; 429 and 503 carry Retry-After."""
    r = httpx.post(url(server, status=status) + "/completions", json=BODY)
    assert r.status_code == status
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    if status in (429, 503):
        assert r.headers["retry-after"] == "1"
    if status == 401:
        assert r.json()["error"]["code"] == "invalid_api_key"


def test_injected_status_applies_to_models_too(server: RunningServer) -> None:
    """A knob prefix covers every route, so listing models can fail as well."""
    assert httpx.get(url(server, status=500) + "/models").status_code == 500


def test_ratelimit_then_success(server: RunningServer) -> None:
    """ratelimit=2 gives two 429s with Retry-After, then the normal answer."""
    target = url(server, ratelimit=2, retry_after=0.25) + "/completions"
    body = {**BODY, "stream": False}
    first, second, third = (httpx.post(target, json=body) for _ in range(3))
    assert first.status_code == second.status_code == 429
    assert first.headers["retry-after"] == "0.25"
    assert third.status_code == 200 and third.json()["choices"]


def test_html_error_and_html_200(server: RunningServer) -> None:
    """html_error=502 and html_200 answer with text/html pages."""
    bad = httpx.post(url(server, html_error=502) + "/completions", json=BODY)
    assert bad.status_code == 502 and bad.headers["content-type"].startswith("text/html")
    page = httpx.post(url(server, fault="html_200") + "/completions", json=BODY)
    assert page.status_code == 200 and page.text.lstrip().startswith("<!DOCTYPE html>")


def test_json_when_stream(server: RunningServer) -> None:
    """json_when_stream answers a stream request with one application/json completion."""
    r, raw = _raw(server, fault="json_when_stream")
    assert r.headers["content-type"] == "application/json"
    assert json.loads(raw)["choices"][0]["finish_reason"] == "length"


def test_long_line(server: RunningServer) -> None:
    """long_line sends one valid JSON event of about 1 MB on a single line."""
    _, raw = _raw(server, fault="long_line")
    longest = max(_data(raw), key=len)
    assert len(longest) > 1_000_000
    assert len(json.loads(longest)["choices"][0]["text"]) == 1_000_000


def test_chinese_knob(server: RunningServer) -> None:
    """chinese makes the completion a Chinese passage, sent as UTF-8."""
    r = httpx.post(url(server, fault="chinese") + "/completions", json={**BODY, "stream": False, "max_tokens": 10})
    text = r.json()["choices"][0]["text"]
    assert len(text) == 10 and all(not ch.isascii() for ch in text)
    assert text.encode("utf-8") in r.content  # sent as raw UTF-8, not \\u escapes


def test_tps_throttle_and_first_token_are_accepted(server: RunningServer) -> None:
    """tps and first_token_ms knobs still produce a complete stream."""
    _, raw = _raw(server, tps=500, first_token_ms=10)
    assert _data(raw)[-1] == "[DONE]"


@pytest.mark.parametrize("prefix", ["/x/fault=nope/v1", "/x/bogus=1/v1", "/x/tps=fast/v1", "/x/status=200/v1"])
def test_unknown_knobs_are_400(server: RunningServer, prefix: str) -> None:
    """A misspelt knob or fault is a 400 naming what is valid."""
    r = httpx.get(f"http://127.0.0.1:{server.port}{prefix}/models")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_fault"
