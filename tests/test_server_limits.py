"""The demo server under hostile requests: limits answered 400/413/408, idle sockets closed, no client stalled."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest

from vman_magic.testing import serve

pytestmark = pytest.mark.timeout(90)


def _post(base_url: str, content: bytes) -> httpx.Response:
    return httpx.post(base_url + "/completions", content=content, headers={"Content-Type": "application/json"})


def test_deep_json_and_huge_integers_are_400(demo_server: Any) -> None:
    """A body nested 100,000 deep, or an integer of 5,000 digits, is a 400 with a message, and the server lives on."""
    deep = b"[" * 100_000 + b"]" * 100_000
    assert _post(demo_server.base_url, deep).status_code == 400
    digits = b'{"model": "vman-demo", "prompt": "hi", "seed": ' + b"7" * 5000 + b"}"
    answer = _post(demo_server.base_url, digits)
    assert answer.status_code == 400 and "digits" in answer.json()["error"]["message"]
    nested = b'{"model": "vman-demo", "prompt": "hi", "logit_bias": ' + b'{"a":' * 70 + b"1" + b"}" * 71
    assert "nested more than 64" in _post(demo_server.base_url, nested).json()["error"]["message"]
    ok = _post(demo_server.base_url, b'{"model": "vman-demo", "prompt": "hi", "max_tokens": 2}')
    assert ok.status_code == 200


def test_a_body_announced_too_large_is_413_before_it_is_read(demo_server: Any) -> None:
    """Content-Length beyond the limit gets 413 at once."""
    host, port = demo_server.host, demo_server.port
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999999\r\n\r\n{"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413")


def test_idle_connections_are_closed() -> None:
    """A connection that sends nothing is closed after the idle timeout; one that stops mid-request gets 408."""
    with serve(idle_timeout=0.3) as server:
        with socket.create_connection((server.host, server.port)) as idle:
            assert idle.recv(100) == b""  # closed by the server (the test's own timeout bounds the wait)
        with socket.create_connection((server.host, server.port)) as half:
            half.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            assert half.recv(4096).startswith(b"HTTP/1.1 408")


def test_a_huge_request_does_not_stall_other_clients() -> None:
    """While n=128 x 100 prompts is generated, small requests on other connections are still answered.

    Checked by order, not by time: the small requests finish before the big one does.
    """
    with serve() as server:
        big_done: list[float] = []

        def big() -> None:
            body = {"model": "vman-demo", "prompt": ["Once upon a time"] * 100, "n": 128, "max_tokens": 16}
            httpx.post(server.base_url + "/completions", json=body, timeout=120)
            big_done.append(time.monotonic())

        thread = threading.Thread(target=big)
        thread.start()
        while server.stats.active == 0 and thread.is_alive():
            time.sleep(0.01)
        small_done = []
        with httpx.Client(timeout=60) as client:
            for i in range(5):
                answer = client.post(
                    server.base_url + "/completions", json={"model": "vman-demo", "prompt": f"hi {i}", "max_tokens": 2}
                )
                assert answer.status_code == 200
                small_done.append(time.monotonic())
        thread.join()
        assert big_done and max(small_done) < big_done[0]
