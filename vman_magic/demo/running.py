"""Run the demo server in a background thread with its own event loop.

The kernel (and every test) needs the server *next to* its own code, not
instead of it: a daemon thread owns an event loop, the listening socket is
bound before :func:`start_server` returns, and the model loads in a worker
thread so the first ``/v1/models`` answers at once.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Any, Final

from .app import IDLE_TIMEOUT_S, Server, Stats, load_model_in_thread
from .faults import knob_url
from .ratelimit import RateLimiter

_START_TIMEOUT_S: Final = 30.0


class RunningServer:
    """A demo server on a port: ``base_url``, ``port``, ``stats``, ``stop()``; a context manager."""

    def __init__(self, host: str, server: Server, port: int, loop: asyncio.AbstractEventLoop,
                 thread: threading.Thread, listener: asyncio.base_events.Server) -> None:  # fmt: skip
        self.host = host
        self.port = port
        self._server = server
        self._loop = loop
        self._thread = thread
        self._listener = listener

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: what an OpenAI client takes as ``base_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def url(self, **knobs: Any) -> str:
        """``base_url`` with a fault/throttle prefix, e.g. ``url(fault="drop_mid_stream", tps=20)``."""
        return knob_url(self.base_url, **knobs)

    @property
    def stats(self) -> Stats:
        return self._server.stats

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Close the socket, end hanging responses, and join the thread (idempotent)."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            self._listener.close()
            await self._server.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RunningServer {self.base_url} {state}>"


def start_server(host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 tokens_per_second: float | None = None, first_token_ms: float | None = None,
                 idle_timeout: float | None = IDLE_TIMEOUT_S, *, rpm: float | None = None, tpm: float | None = None,
                 ratelimit_headers: bool = True) -> RunningServer:  # fmt: skip
    """Start the demo server in a daemon thread; returns once the socket is listening.

    ``port=0`` picks a free port (read it from ``.port``). With ``api_key``
    every request needs ``Authorization: Bearer <api_key>``. A connection idle
    for ``idle_timeout`` seconds is closed. The throttles
    apply to every stream unless a ``/x/tps=...`` prefix overrides them.
    ``rpm``/``tpm`` limit completions per minute as gateways do (see
    :mod:`.ratelimit`); ``ratelimit_headers=False`` answers 429s without
    ``x-ratelimit-*`` or retry headers.
    """
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be a number > 0 (per minute), got {value!r}")
    limiter = RateLimiter(rpm, tpm, headers=ratelimit_headers) if rpm or tpm else None
    loop = asyncio.new_event_loop()
    ready: threading.Event = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def open_socket() -> None:
            server = Server(api_key=api_key, tokens_per_second=tokens_per_second, first_token_ms=first_token_ms,
                            model_ready=load_model_in_thread(loop), idle_timeout=idle_timeout,
                            limiter=limiter)  # fmt: skip
            listener = await asyncio.start_server(server.handle_connection, host, port, backlog=1024)
            for sock in listener.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            box.update(server=server, listener=listener, port=listener.sockets[0].getsockname()[1])

        try:
            loop.run_until_complete(open_socket())
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            _cancel_all(loop)
            loop.close()

    thread = threading.Thread(target=run, name="vman-magic-demo-server", daemon=True)
    thread.start()
    if not ready.wait(_START_TIMEOUT_S):
        raise RuntimeError(f"the demo server did not start listening within {_START_TIMEOUT_S:.0f} s")
    err = box.get("error")
    if isinstance(err, BaseException):
        raise OSError(f"could not start the demo server on {host}:{port}: {err}") from err
    return RunningServer(host, box["server"], box["port"], loop, thread, box["listener"])  # type: ignore[arg-type]


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
