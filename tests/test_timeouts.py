"""Connect, read and total timeouts: a hung or slow server never hangs a cell forever.

No timing assertions beyond generous upper bounds that prove "it ended".
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import vman_magic
from vman_magic import Timeout
from vman_magic.core import config as _config
from vman_magic.testing import url

NEVER = 30.0  # seconds: far above any expected duration, far below "forever"


@pytest.fixture
def ip(vman_shell: InteractiveShell) -> InteractiveShell:
    """The shell with vman_magic loaded and the test server as the session default."""
    return vman_shell


def test_hung_server_fails_the_cell_with_a_read_timeout(ip: InteractiveShell, demo_server: Any) -> None:
    """Headers then silence: %%complete --timeout 1 fails with APITimeoutError saying how to raise it."""
    started = time.monotonic()
    result = ip.run_cell(f"%%complete --base-url {url(demo_server, fault='hang')} -o r --timeout 1\nHi")
    assert time.monotonic() - started < NEVER
    err = result.error_in_exec
    assert isinstance(err, vman_magic.APITimeoutError)
    line = err._render_traceback_()[0]  # type: ignore[attr-defined]
    assert "read timeout" in line and "--timeout" in line
    assert ip.user_ns["r"].incomplete and ip.user_ns["r"].error is err


def test_total_timeout_stops_a_slow_stream_and_keeps_the_text(demo_server: Any) -> None:
    """A stream at 2 tokens/s hits Timeout(total=1.5): APITimeoutError, not retried, partial text kept."""
    before = demo_server.stats.requests
    started = time.monotonic()
    with pytest.raises(vman_magic.APITimeoutError, match="total timeout") as info:
        vman_magic.complete(
            "Tell me a long story", base_url=url(demo_server, tps=2), model="vman-demo",
            timeout=Timeout(read=10, total=1.5), max_tokens=200, seed=2,
        )  # fmt: skip
    assert time.monotonic() - started < NEVER
    assert demo_server.stats.requests - before == 1
    partial = info.value.partial
    assert partial is not None and partial.incomplete and partial.text and partial.error is info.value


def test_closed_port_fails_fast_with_a_connection_error() -> None:
    """Nothing listens on the port: APIConnectionError telling the user to check the URL, without hanging."""
    with socket.socket() as sock:  # bind, learn the port, close: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(vman_magic.APIConnectionError, match="check the base URL") as info:
        vman_magic.complete(
            "Hi", base_url=f"http://127.0.0.1:{port}/v1", model="vman-demo", timeout=Timeout(connect=2), max_retries=1
        )
    assert time.monotonic() - started < NEVER
    assert info.value.partial is not None and info.value.partial.incomplete


def test_default_timeouts_suit_a_notebook() -> None:
    """By default every limit is finite: connect in seconds, a read within minutes, the whole call bounded."""
    t = _config.resolve(base_url="http://127.0.0.1:9/v1").timeout
    assert t.connect is not None and t.read is not None and t.total is not None
    assert t.connect <= 30 and t.read <= 300 and t.total <= 3600


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_total_timeout_bounds_a_silent_server_without_a_read_timeout(demo_server: Any, use_async: bool) -> None:
    """Headers then silence with read=None: the total timeout still ends the call, and says so."""
    import asyncio

    kwargs: dict[str, Any] = {
        "base_url": url(demo_server, fault="hang"), "model": "vman-demo", "max_tokens": 5,
        "timeout": Timeout(read=None, total=1.5), "max_retries": 0,
    }  # fmt: skip
    started = time.monotonic()
    with pytest.raises(vman_magic.APITimeoutError, match="total timeout") as info:
        if use_async:
            asyncio.run(vman_magic.acomplete("Hi", **kwargs))
        else:
            vman_magic.complete("Hi", **kwargs)
    assert time.monotonic() - started < NEVER
    assert info.value.partial is not None and info.value.partial.incomplete
