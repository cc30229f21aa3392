"""A server that replays a pre-rendered SSE completion stream at full speed.

The decode benchmark must measure clients, not a server: this one renders a
block of completion chunks once at start-up and then answers every
``POST .../completions`` by writing that block again and again (one
``sendall`` per block, no per-event work), so the client side is the only
bottleneck. It runs in its own process, on the other core.

``--latency-ms`` makes every answer wait first (the batch benchmark's
stand-in for a model's latency); a request without ``"stream": true`` gets
one small JSON completion.

Usage (prints ``serving http://127.0.0.1:PORT/v1`` once listening)::

    python -m benchmarks.sse_server --events 50000 --choices 8 [--logprobs] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import sys
import time
from typing import Final

BLOCK_EVENTS: Final = 1000  # events rendered once and replayed
_WORDS: Final = (" the", " model", " streams", " text", " 流式", " token", ",", " and", " 数据", " fast", ".", "\n")


def render_event(i: int, choices: int, logprobs: bool) -> bytes:
    """One ``data: {...}`` event in the OpenAI legacy-completions shape; choices interleave."""
    word = _WORDS[i % len(_WORDS)]
    choice: dict[str, object] = {"index": i % choices, "text": word, "logprobs": None, "finish_reason": None}
    if logprobs:
        choice["logprobs"] = {
            "tokens": [word],
            "token_logprobs": [-0.25 - (i % 7) / 10],
            "top_logprobs": [{word: -0.25, " a": -1.5}],
            "text_offset": [i],
        }
    chunk = {"id": "cmpl-bench", "object": "text_completion", "created": 1700000000, "model": "bench",
             "choices": [choice]}  # fmt: skip
    return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def render_tail(choices: int, events: int) -> bytes:
    """Finish reasons for every choice, a usage chunk, then ``[DONE]``."""
    out = bytearray()
    for index in range(choices):
        chunk = {"id": "cmpl-bench", "object": "text_completion", "created": 1700000000, "model": "bench",
                 "choices": [{"index": index, "text": "", "logprobs": None, "finish_reason": "length"}]}  # fmt: skip
        out += b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
    usage = {"prompt_tokens": 1, "completion_tokens": events, "total_tokens": events + 1}
    chunk = {"id": "cmpl-bench", "object": "text_completion", "created": 1700000000, "model": "bench",
             "choices": [], "usage": usage}  # fmt: skip
    out += b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\ndata: [DONE]\n\n"
    return bytes(out)


class Body:
    """The stream, as blocks to send: ``events`` events with ``choices`` interleaved choices."""

    def __init__(self, events: int, choices: int, logprobs: bool) -> None:
        self.events = events
        per_block = BLOCK_EVENTS - BLOCK_EVENTS % choices  # replays keep the choices interleaved
        self.block = b"".join(render_event(i, choices, logprobs) for i in range(per_block))
        self.repeats, rest = divmod(events, per_block)
        self.rest = b"".join(render_event(i, choices, logprobs) for i in range(rest))
        self.tail = render_tail(choices, events)
        self.length = len(self.block) * self.repeats + len(self.rest) + len(self.tail)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        while True:  # keep-alive: one request after another on the connection
            while b"\r\n\r\n" not in pending:
                data = sock.recv(65536)
                if not data:
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(pending) < length:
                data = sock.recv(65536)
                if not data:
                    return
                pending += data
            request, pending = pending[:length], pending[length:]
            self._answer(sock, lines[0].split(b" ")[1] if b" " in lines[0] else b"/", request)

    def _answer(self, sock: socket.socket, path: bytes, request: bytes) -> None:
        body = self.server.body
        if path.endswith(b"/models"):
            payload = b'{"object":"list","data":[{"id":"bench","object":"model","owned_by":"bench"}]}'
            sock.sendall(_head("application/json", len(payload)) + payload)
            return
        time.sleep(self.server.latency)
        if b'"stream":true' not in request.replace(b" ", b""):
            sock.sendall(_head("application/json", len(_PLAIN)) + _PLAIN)
            return
        sock.sendall(_head("text/event-stream", body.length))
        for _ in range(body.repeats):
            sock.sendall(body.block)
        sock.sendall(body.rest + body.tail)


_PLAIN: Final = json.dumps(
    {"id": "cmpl-bench", "object": "text_completion", "created": 1700000000, "model": "bench",
     "choices": [{"index": 0, "text": " the model", "logprobs": None, "finish_reason": "length"}],
     "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
).encode()  # fmt: skip


def _head(ctype: str, length: int) -> bytes:
    return (f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {length}\r\n"
            "connection: keep-alive\r\n\r\n").encode()  # fmt: skip


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 256  # a batch opens dozens of connections at once
    allow_reuse_address = True
    body: Body
    latency: float


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--choices", type=int, default=1)
    parser.add_argument("--logprobs", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="wait this long before each answer")
    args = parser.parse_args(argv)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.body = Body(args.events, args.choices, args.logprobs)
    server.latency = args.latency_ms / 1000
    print(f"serving http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
