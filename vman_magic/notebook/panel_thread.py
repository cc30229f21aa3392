"""Blocking on a coroutine from a notebook cell, whose thread already runs a loop.

``Panel.run()`` and ``Panel.refresh_models()`` must return a result to the
cell that called them, but inside a kernel the cell runs in the thread of the
kernel's running event loop, so ``asyncio.run`` is not allowed there. The
coroutine runs on a private loop in a worker thread that the caller joins.

This is chosen over ``nest_asyncio``: that patches the loop class
process-wide and makes the kernel's own handlers re-entrant (a widget message
could start a second run in the middle of the first), while a worker thread
isolates the run and needs no patching. The worker copies the caller's
``contextvars`` so output keeps the cell's parent message.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

__all__ = ["run_in_thread"]

T = TypeVar("T")


def run_in_thread(coro: Coroutine[Any, Any, T], stop: Callable[[], None]) -> T:
    """Run ``coro`` on a private loop in a worker thread and wait for it; return its result.

    Exceptions from ``coro`` are raised here. A ``KeyboardInterrupt`` while
    waiting calls ``stop`` (which must be thread-safe), waits for the worker
    to end and is raised again.
    """
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = context.run(asyncio.run, coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="vman-panel-run", daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:  # the kernel's interrupt lands here, not in the worker: stop it there
        stop()
        thread.join()
        raise
    if "error" in box:
        raise box["error"]
    return cast("T", box["value"])
