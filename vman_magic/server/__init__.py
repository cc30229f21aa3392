"""The offline demo model ``vman-demo`` and its OpenAI-compatible HTTP server.

Talks to the rest of vman-magic only over HTTP, exactly as VMAN would::

    from vman_magic.server import start_server
    with start_server() as server:          # 127.0.0.1, a free port
        print(server.base_url)              # http://127.0.0.1:PORT/v1

Standard library plus h11. Faults and throttles for tests are described in
:mod:`vman_magic.testing`.
"""

from __future__ import annotations

from .app import Stats
from .model import MODEL_ID
from .running import RunningServer, start_server

__all__ = ["MODEL_ID", "RunningServer", "Stats", "start_server"]
