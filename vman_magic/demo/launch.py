"""The offline demo model, started on first use when no base URL is configured.

A fresh notebook with no ``VMAN_BASE_URL`` should still produce text, so the
package serves its own small model on ``127.0.0.1`` (an ephemeral port, in a
daemon thread) and points the client at it. The rest of the package talks to
it over HTTP only, exactly as it would talk to VMAN.

The server starts at most once per process, however many threads ask at the
same time. The Python API announces it with one ``logging`` INFO record; the
magic prints :func:`demo_notice` once, since a notebook user reads cell output,
not logs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

__all__ = ["DEMO_MODEL", "demo_base_url", "demo_notice", "demo_running", "is_demo_url"]

DEMO_MODEL: Final = "vman-demo"

_log = logging.getLogger("vman_magic")
_lock = threading.Lock()
_server: Any = None  # the RunningServer, once started


def demo_base_url() -> str:
    """The demo server's ``http://127.0.0.1:PORT/v1``, starting it on the first call."""
    global _server
    with _lock:
        if _server is None:
            from .running import start_server

            _server = start_server("127.0.0.1", port=0)
            _log.info("%s", demo_notice())
        return str(_server.base_url)


def demo_running() -> bool:
    """True once the demo server was started in this process."""
    return _server is not None


def is_demo_url(base_url: str) -> bool:
    """True when ``base_url`` is the auto-started demo server (so a 404 can say why it answered)."""
    return _server is not None and base_url == _server.base_url


def demo_notice() -> str:
    """The one line that tells a user they are talking to the demo model, and how to change it."""
    url = _server.base_url if _server is not None else "http://127.0.0.1:<port>/v1"
    return (
        f"vman-magic: no VMAN_BASE_URL set, using the offline demo model at {url} "
        "(set VMAN_BASE_URL and VMAN_API_KEY, or %vman key, to use VMAN)"
    )
