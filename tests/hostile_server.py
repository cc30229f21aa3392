"""A tiny hostile server for the tests: 127.0.0.1, an ephemeral port, answers chosen by path.

``http://127.0.0.1:PORT/<case>/v1`` is a base URL whose ``/completions`` and
``/models`` answer as :data:`CASES` says, the way a broken or malicious
gateway might: valid JSON of the wrong shape, JSON nested 10,000 deep, the
``Authorization`` header echoed back in every place a client might print it,
absurd ``Retry-After`` values, keep-alive comments forever.

``/<case>+marked/v1`` is hostile only for prompts that contain ``@@`` (or
requests with ``temperature`` 0.25, for sweeps); the others get a good
answer, so a batch can hold one bad item among good ones.
Streamed answers always start with one good chunk (text ``"Hello"``), so a
test can check that the text that arrived before the bad part is kept.

Standard library only; it is a test double for *servers*, never for the
package (whose code under test always runs for real).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GOOD_TEXT = "Hello"
DEEP = 10_000


def _chunk(text: str = GOOD_TEXT, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "cmpl-hostile",
        "object": "text_completion",
        "created": 1,
        "model": "hostile",
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": reason}],
        **extra,
    }


def _deep(depth: int = DEEP) -> bytes:
    return b'{"choices":[{"index":0,"text":"x","extra":' + b"[" * depth + b"]" * depth + b"}]}"


# Bad payloads (bytes of one data line / one body) by case; ``key`` is the Authorization header as received.
SHAPES: dict[str, Callable[[str], bytes]] = {
    "int_event": lambda key: b"5",
    "list_event": lambda key: b"[]",
    "str_event": lambda key: b'"x"',
    "choices_int": lambda key: b'{"choices": 5}',
    "choices_nonobj": lambda key: b'{"choices": [1, "two"]}',
    "text_number": lambda key: b'{"choices": [{"index": 0, "text": 5}]}',
    "usage_str": lambda key: b'{"choices": [], "usage": "lots"}',
    "usage_list": lambda key: b'{"choices": [], "usage": [1, 2]}',
    "reason_int": lambda key: b'{"choices": [{"index": 0, "text": "", "finish_reason": 7}]}',
    "model_list": lambda key: b'{"model": [1], "choices": []}',
    "logprobs_str": lambda key: b'{"choices": [{"index": 0, "text": "a", "logprobs": "x"}]}',
    "index_str": lambda key: b'{"choices": [{"index": "0", "text": "a"}]}',
    "deep": lambda key: _deep(),
}

ECHOES: dict[str, Callable[[str], bytes]] = {
    "echo_error_event": lambda key: json.dumps(
        {"error": {"message": f"rejected header Authorization: {key}", "type": f"t {key}", "code": key}}
    ).encode(),
    "echo_bad_line": lambda key: f"not json, you sent Authorization: {key}".encode(),
}

STATUS_ECHOES = {
    "echo_status_json": 400,
    "echo_status_text": 502,
    "echo_redirect": 307,
    "echo_partial": 401,
}

RETRY_AFTER = {
    "retry_after_huge": ("Retry-After", "99999999"),
    "retry_after_inf": ("Retry-After", "inf"),
    "retry_after_ms_huge": ("retry-after-ms", "1e12"),
    "retry_after_small": ("Retry-After", "0"),
}

CASES = sorted(
    [
        *SHAPES,
        *ECHOES,
        *STATUS_ECHOES,
        *RETRY_AFTER,
        "echo_model",
        "logprob_1000",
        "keepalive_forever",
        "models_deep",
        "models_bad",
        "good",
    ]
)


class HostileServer:
    """The running server: ``url(case)`` is a base URL; ``requests`` counts what it answered."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.requests = 0
        self.stopping = threading.Event()

    def url(self, case: str, *, marked: bool = False) -> str:
        if case not in CASES:
            raise ValueError(f"unknown hostile case {case!r}")
        return f"http://127.0.0.1:{self.port}/{case}{'+marked' if marked else ''}/v1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing -----------------------------------------------------------------
    def _case(self) -> tuple[str, bool, str]:
        path = urllib.parse.urlsplit(self.path).path
        first, _, rest = path.lstrip("/").partition("/")
        case, _, flag = first.partition("+")
        return case, flag == "marked", "/" + rest

    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, events: Iterator[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for event in events:
                self.wfile.write(event)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- routes ---------------------------------------------------------------------
    def do_GET(self) -> None:
        self.server.hostile.requests += 1
        case, _, path = self._case()
        if path != "/v1/models":
            self._send(404, b'{"error": {"message": "no such path"}}')
        elif case == "models_deep":
            self._send(200, b'{"data": ' + b"[" * DEEP + b"]" * DEEP + b"}")
        elif case == "models_bad":
            self._send(200, b'{"data": 5}')
        else:
            self._send(200, b'{"object": "list", "data": [{"id": "hostile", "object": "model"}]}')

    def do_POST(self) -> None:
        self.server.hostile.requests += 1
        case, marked, path = self._case()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        key = self.headers.get("Authorization", "")
        if path != "/v1/completions":
            self._send(404, b'{"error": {"message": "no such path"}}')
            return
        if marked and "@@" not in json.dumps(body.get("prompt")) and body.get("temperature") != 0.25:
            case = "good"
        stream = bool(body.get("stream"))
        self._answer(case, key, stream)

    def _answer(self, case: str, key: str, stream: bool) -> None:
        good = json.dumps(_chunk()).encode()
        done = json.dumps(_chunk("", "stop")).encode()
        if case in RETRY_AFTER:
            name, value = RETRY_AFTER[case]
            self._send(429, b'{"error": {"message": "slow down", "type": "requests"}}', headers={name: value})
        elif case in STATUS_ECHOES:
            self._status_echo(case, key)
        elif case == "good" or case == "echo_model" or case == "logprob_1000":
            extra: dict[str, Any] = {}
            if case == "echo_model":
                extra["model"] = f"model-for-{key}"
            chunk = _chunk(GOOD_TEXT, "stop", **extra)
            if case == "logprob_1000":
                chunk["choices"][0]["logprobs"] = {
                    "tokens": [GOOD_TEXT], "token_logprobs": [1000], "top_logprobs": [{GOOD_TEXT: 1000, "x": -1e308}],
                    "text_offset": [0],
                }  # fmt: skip
            data = json.dumps(chunk).encode()
            if stream:
                self._stream(iter([b"data: " + data + b"\n\n", b"data: [DONE]\n\n"]))
            else:
                self._send(200, data)
        elif case == "keepalive_forever":
            self._stream(self._keepalive(good))
        else:
            bad = (SHAPES.get(case) or ECHOES[case])(key)
            if stream:
                self._stream(iter([b"data: " + good + b"\n\n", b"data: " + bad + b"\n\n", b"data: " + done + b"\n\n"]))
            else:
                self._send(200, bad)

    def _keepalive(self, good: bytes) -> Iterator[bytes]:
        yield b"data: " + good + b"\n\n"
        while not self.server.hostile.stopping.is_set():
            time.sleep(0.05)
            yield b": keep-alive\n\n"

    def _status_echo(self, case: str, key: str) -> None:
        status = STATUS_ECHOES[case]
        if case == "echo_redirect":
            where = "https://elsewhere.example/v1?auth=" + urllib.parse.quote(key, safe="")
            self._send(status, b"", headers={"Location": where})
        elif case == "echo_status_json":
            message = f"bad request; the header was Authorization: {key}"
            self._send(status, json.dumps({"error": {"message": message, "param": key}}).encode())
        elif case == "echo_partial":
            raw = key.removeprefix("Bearer ")
            message = f"Incorrect API key provided: {raw[:12]}***{raw[-4:]} (and once cut: {raw[:-3]})"
            self._send(status, json.dumps({"error": {"message": message}}).encode())
        else:
            self._send(status, f"upstream said: {key}".encode(), ctype="text/plain")


@contextmanager
def hostile_server() -> Iterator[HostileServer]:
    """Run the hostile server in a thread for the ``with`` block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    server = HostileServer(httpd)
    httpd.hostile = server  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, name="hostile-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
