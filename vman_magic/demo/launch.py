"""The offline demo model, started on purpose when no base URL is configured.

A fresh notebook with no ``VMAN_BASE_URL`` should still produce text, so the
package serves its own small model on ``127.0.0.1`` (an ephemeral port, in a
daemon thread) and points the client at it. The rest of the package talks to
it over HTTP only, exactly as it would talk to VMAN.

Nothing starts it by accident: resolving settings has no side effects, and
only the doors that are about to send something call :func:`ensure_demo`
(through :func:`vman_magic.core.config.ensure_server`, which the package root
wires to it). The server starts at most once per process, however many
threads ask at the same time. The Python API announces it with one
``logging`` INFO record; the magic prints :func:`demo_notice` once, since a
notebook user reads cell output, not logs.

Imports only the standard library and :mod:`vman_magic.core` at module level;
the model and the h11 server load when the server first starts.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from typing import Any

from ..core.config import DEMO_MODEL, DEMO_URL_SOURCE, Settings

__all__ = ["DEMO_MODEL", "demo_base_url", "demo_notice", "demo_running", "ensure_demo", "is_demo_url"]

_log = logging.getLogger("vman_magic")
_lock = threading.Lock()
_server: Any = None  # the RunningServer, once started


def ensure_demo(settings: Settings) -> Settings:
    """``settings`` as they are when they name a server; else pointed at the demo, started once."""
    if settings.base_url is not None:
        return settings
    return settings.with_server(demo_base_url(), DEMO_URL_SOURCE)


def demo_base_url() -> str:
    """The demo server's ``http://127.0.0.1:PORT/v1``, starting it on the first call."""
    global _server
    with _lock:
        if _server is None:
            from .running import start_server

            _server = start_server("127.0.0.1", port=0)
            _log.info("%s", demo_notice(address=True))
        return str(_server.base_url)


def demo_running() -> bool:
    """True once the demo server was started in this process."""
    return _server is not None


def is_demo_url(base_url: str) -> bool:
    """True when ``base_url`` reaches the auto-started demo server (also after ``%vman demo`` named it).

    Any path on its host and port counts: the notebook faces add a pace knob
    (``/x/tps=25/v1``) to the same server.
    """
    if _server is None:
        return False
    ours, theirs = urllib.parse.urlsplit(_server.base_url), urllib.parse.urlsplit(base_url)
    return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)


def demo_notice(*, address: bool = False) -> str:
    """The one line that tells a user they are talking to the demo model, and how to change it.

    The notebook gets it without the address: the port is random, changes with
    every kernel and would be saved with the notebook; ``%vman config`` shows
    it. The log record (``address=True``) names it.
    """
    where = ""
    if address:
        where = " at " + (_server.base_url if _server is not None else "http://127.0.0.1:<port>/v1")
    return (
        f"vman-magic: no VMAN_BASE_URL set, so this uses the offline demo model{where} "
        "(set VMAN_BASE_URL and VMAN_API_KEY, or %vman key, to use VMAN)"
    )
