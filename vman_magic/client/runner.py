"""Blocking on async work from synchronous code: one worker-thread runner for the panel and batches.

``Panel.run()``, ``complete_many`` and ``run_sweep`` must return a result to
the code that called them, but inside a notebook the cell runs in the thread
of the kernel's *running* event loop, so ``asyncio.run`` is not allowed there.
The coroutine runs instead on a private event loop in a worker thread, which
the caller waits for.

One rule on threads, for everything built on this: **the calling thread owns
the notebook's output and widgets**. The worker computes and publishes
(immutable snapshots, pending widget updates); the calling thread, while it
waits, calls ``tick()`` every ``interval`` seconds and applies them, so
output lands in the running cell and widgets are changed from one thread.
The calling thread is also where Ctrl-C (the kernel's interrupt) arrives: the
runner then stops the work (``on_interrupt``, by default cancelling it on its
loop), waits until it has settled (so its partial results are complete; at
most :data:`SETTLE_LIMIT`, with further Ctrl-C deferred meanwhile), and raises
``KeyboardInterrupt`` again.

Why not ``nest_asyncio``: it patches the loop class for the whole process and
makes the kernel's own handlers re-entrant (a widget message could start a
second run in the middle of the first); a worker thread needs no patching and
keeps the run isolated. The worker copies the caller's ``contextvars``, so
anything that reads them (the kernel's parent message) sees the cell's.

Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar, cast

__all__ = ["REFRESH_INTERVAL", "SETTLE_LIMIT", "interrupts_deferred", "run_in_worker"]

T = TypeVar("T")

#: How often the waiting thread calls ``tick()`` (redraws live views), in seconds.
REFRESH_INTERVAL = 0.1
#: After an interrupt, how long to wait for the stopped work to settle before giving up on it.
SETTLE_LIMIT = 10.0


def run_in_worker(
    coro: Coroutine[Any, Any, T],
    *,
    tick: Callable[[], None] | None = None,
    on_interrupt: Callable[[], None] | None = None,
    interval: float = REFRESH_INTERVAL,
) -> T:
    """Run ``coro`` on a private loop in a worker thread; wait for it here and return its result.

    ``tick()`` runs in this thread every ``interval`` seconds while waiting
    and once at the end. The coroutine's exception is raised here. On
    ``KeyboardInterrupt`` while waiting, ``on_interrupt()`` (default: cancel
    the coroutine's task) is called, the worker is waited for, and the
    interrupt is raised again.
    """
    box: dict[str, Any] = {}
    started = threading.Event()
    context = contextvars.copy_context()

    async def main() -> T:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await coro

    def target() -> None:
        try:
            box["value"] = context.run(asyncio.run, main())
        except BaseException as exc:  # raised in the caller's thread instead
            box["error"] = exc
        finally:
            started.set()

    def cancel() -> None:
        started.wait()
        loop, task = box.get("loop"), box.get("task")
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing left to cancel
                loop.call_soon_threadsafe(task.cancel)

    thread = threading.Thread(target=target, name="vman-magic-worker", daemon=True)
    thread.start()
    try:
        while True:
            thread.join(interval)
            if tick is not None:
                tick()
            if not thread.is_alive():
                break
    except KeyboardInterrupt:  # the kernel's interrupt lands in this thread, not in the worker
        with interrupts_deferred():  # a second Ctrl-C must not cut the clean-up short and lose the results
            (on_interrupt or cancel)()
            thread.join(SETTLE_LIMIT)
            if tick is not None:
                tick()
        raise
    if "error" in box:
        raise box["error"]
    return cast("T", box["value"])


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ignore Ctrl-C (SIGINT) for the block, when called in the main thread (elsewhere it cannot arrive).

    Used only while work that was already interrupted cleans up and collects
    its results: a user who presses Ctrl-C twice then still gets the partial
    results (``BatchInterrupted.partial``, the panel's kept text) instead of a
    bare ``KeyboardInterrupt`` that loses everything.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.signal(signal.SIGINT, _ignore_signal)
    except ValueError:  # not possible here (e.g. an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ignore_signal(signum: int, frame: Any) -> None:
    """The SIGINT handler while interrupts are deferred: the work is already stopping."""
