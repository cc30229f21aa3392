"""The one thread per process that writes the history, so no completion waits for the disk.

The client hands every finished :class:`Completion` to :meth:`Writer.put`
(a queue append) and goes on; this thread turns queued results into rows
(:func:`~vman_magic.logbook.rows.to_row`) and commits whatever is queued at
that moment in one short transaction. So a batch commits each item within
milliseconds of its end, and a killed kernel loses at most what was in
flight.

Ids: :meth:`Writer.next_id` hands out ids this process reserved in the file
(see :mod:`vman_magic.logbook.db`), so a result knows its ``history_id`` at
once. Lists are ordered by id (newest first), which is what makes search
fast, so ids must follow time across kernels too: a block of ids is used
for at most :data:`BLOCK_TTL` seconds, and a request that starts after that
(:meth:`Writer.warm`) has a fresh block reserved while it waits for its
answer. Blocks start at one id and double up to :data:`MAX_BLOCK` while ids
are used fast (batches), so a notebook used now and then sees consecutive
ids. A result that finds no id ready (the file is still opening, or a fast
batch outran the reservations) waits briefly, else leaves it to this
thread, which sets ``history_id`` when it writes the row.

Any failure (the file is corrupt, locked by another kernel for longer than
the busy timeout, read-only, on a full disk, or a bug here) stops the
thread and sets :attr:`Writer.error`; the session prints one warning line
and records nothing more. Completions never see the exception.
"""

from __future__ import annotations

import collections
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.models import Completion
from . import db
from .rows import to_row

__all__ = ["BLOCK_TTL", "FIRST_BLOCK", "MAX_BLOCK", "Writer"]

FIRST_BLOCK = 1  # ids reserved at a time at first; doubles while they are used fast, up to MAX_BLOCK
MAX_BLOCK = 512
BLOCK_TTL = 30.0  # seconds a reserved id stays usable, so ids follow time across kernels
ID_WAIT = 0.05  # seconds a result waits for a reservation in progress once the file is open
MAX_ROWS_PER_TRANSACTION = 256


@dataclass(frozen=True)
class Job:
    """One result to write, with what the caller knew when it ended."""

    completion: Completion
    host: str
    created: float
    notebook: str | None
    id: int | None


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_RESERVE = _Signal("reserve ids")
_STOP = _Signal("stop")
_Item = Job | _Signal


class Writer:
    """Writes queued results to ``path`` on its own daemon thread; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        """Why writing stopped (one line), or None while it works."""
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._ids: collections.deque[int] = collections.deque()
        self._ids_at = 0.0  # time.monotonic() of the last reservation
        self._block = FIRST_BLOCK
        self._reserving = True  # the first block is reserved as soon as the file is open
        self._opened = False
        self._pending = 0  # results queued and not yet committed
        self._thread = threading.Thread(target=self._main, name="vman-history-writer", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        state = f"error={self.error!r}" if self.error else f"pending={self._pending}"
        return f"<Writer {str(self.path)!r} {state}>"

    @property
    def alive(self) -> bool:
        return self.error is None and self._thread.is_alive()

    # -- called from any thread --------------------------------------------
    def warm(self) -> None:
        """A request starts: make sure fresh ids will be ready when its answer ends."""
        with self._cond:
            self._refill()

    def next_id(self, first_wait: float) -> int | None:
        """A reserved id, or None when none is ready (this thread then assigns one when writing).

        Waits up to ``first_wait`` seconds while the file is still being
        opened (a process's first result), else at most :data:`ID_WAIT` for a
        reservation in progress.
        """
        with self._cond:
            self._refill()
            if not self._ids and self.error is None:
                wait = first_wait if not self._opened else ID_WAIT
                self._cond.wait_for(lambda: bool(self._ids) or self.error is not None, wait)
            id = self._ids.popleft() if self._ids else None
            self._refill()
            return id

    def _refill(self) -> None:
        """(Under the lock.) Drop ids held too long; ask for more when half the block is used."""
        if not self._opened or self.error is not None or self._reserving:
            return
        if self._ids and time.monotonic() - self._ids_at > BLOCK_TTL:
            self._ids.clear()
            self._block = FIRST_BLOCK  # they were not needed: start small again
        if len(self._ids) <= self._block // 2:
            self._reserving = True
            self._queue.put(_RESERVE)

    def put(self, job: Job) -> None:
        """Queue one result; returns at once."""
        with self._cond:
            if self.error is not None:
                return
            self._pending += 1
        self._queue.put(job)

    def flush(self, timeout: float) -> bool:
        """Wait until the file is open and everything queued so far is committed; False on timeout or failure."""

        def settled() -> bool:
            return (self._opened and self._pending == 0) or self.error is not None

        with self._cond:
            self._cond.wait_for(settled, timeout)
            return settled() and self.error is None

    def stop(self, timeout: float) -> None:
        """Write what is queued, then end the thread (waits up to ``timeout`` seconds)."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the thread ----------------------------------------------------------
    def _main(self) -> None:
        try:
            conn = db.connect(self.path)
        except BaseException as exc:  # any failure turns history off, never a crash
            self._fail(exc)
            return
        try:
            self._reserve(conn)
            with self._cond:
                self._opened = True
                self._cond.notify_all()
            while self._step(conn):
                pass
        except BaseException as exc:
            self._fail(exc)
        finally:
            conn.close()

    def _step(self, conn: sqlite3.Connection) -> bool:
        """Write one transaction's worth of queued results; False after a stop signal."""
        items = [self._queue.get()]
        while len(items) < MAX_ROWS_PER_TRANSACTION:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        jobs = [item for item in items if isinstance(item, Job)]
        if _RESERVE in items:
            self._reserve(conn)
        if jobs:
            rows = [
                to_row(job.completion, id=self._id_for(conn, job), host=job.host, created=job.created,
                       notebook=job.notebook)
                for job in jobs
            ]  # fmt: skip
            db.insert(conn, rows)
            with self._cond:
                self._pending -= len(jobs)
                self._cond.notify_all()
        return _STOP not in items

    def _id_for(self, conn: sqlite3.Connection, job: Job) -> int:
        """The job's id; one from the reserve (set on its completion) when the caller found none ready."""
        if job.id is not None:
            return job.id
        with self._cond:
            id = self._ids.popleft() if self._ids else None
        if id is None:
            self._reserve(conn)
            with self._cond:
                id = self._ids.popleft()
        job.completion.history_id = id
        return id

    def _reserve(self, conn: sqlite3.Connection) -> None:
        with self._cond:
            count = self._block
        ids = db.reserve_ids(conn, count)
        with self._cond:
            self._ids.extend(ids)
            self._ids_at = time.monotonic()
            self._reserving = False
            self._block = min(count * 2, MAX_BLOCK)
            self._cond.notify_all()

    def _fail(self, exc: BaseException) -> None:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, (sqlite3.Error, OSError)):
            reason = f"{type(exc).__name__}: {reason}"
        with self._cond:
            self.error = f"cannot write {self.path}: {reason}"
            self._pending = 0
            self._cond.notify_all()
