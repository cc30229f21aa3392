"""The history of this process: where the file is, whether it records, the cache switch.

This is what the rest of the package calls; all of it is cheap when history
is off and none of it ever raises into a completion:

* :func:`record` -- the client calls it when a result ends, however it ended;
* :func:`answer_from_history` -- the client calls it before sending: with the
  cache on, a complete answer to the same request is put into the caller's
  result and nothing is sent;
* :func:`cached_answers` -- the batch engine asks once for every item of a
  batch, and sends only the items without a complete answer (resume);
* :func:`set_recording`, :func:`set_cache` -- ``%vman history on|off`` and
  ``%vman cache on|off``.

Where the file is (read once, at first use; :func:`reset` forgets it):
``VMAN_HISTORY=/path/to/file.db``, or ``VMAN_HISTORY=off``, else
``history.db`` in the user's data folder as ``platformdirs`` names it
(``~/.local/share/vman-magic`` on Linux, ``~/Library/Application
Support/vman-magic`` on macOS, ``%LOCALAPPDATA%\\vman-magic`` on Windows).

When the file cannot be used, one warning line goes to stderr and history
is off for the rest of the session (``%vman history on`` tries again).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import HistoryError
from ..core.models import Completion, CompletionRequest
from . import db
from .rows import cache_key, host_of, notebook_path, restore, samples
from .writer import Job, Writer

__all__ = [
    "ENV",
    "answer_from_history",
    "cache_default",
    "cached_answers",
    "default_path",
    "flush",
    "location",
    "record",
    "recording",
    "reset",
    "set_cache",
    "set_recording",
]

ENV = "VMAN_HISTORY"
OFF = frozenset({"off", "0", "false", "no", "none"})
FIRST_ID_WAIT = 1.0  # seconds a process's first result may wait for the file to open
FLUSH_WAIT = 5.0  # seconds a cache lookup or a read waits for queued rows to be committed
EXIT_WAIT = 3.0  # seconds the interpreter's exit waits for the last rows


class _State:
    """Mutable, process-wide; every change under ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.resolved = False
        self.path: Path | None = None  # None: VMAN_HISTORY=off
        self.writer: Writer | None = None
        self.paused = False  # %vman history off
        self.broken: str | None = None  # the warning given; nothing is recorded until %vman history on
        self.cache = False  # %vman cache on|off: the default of cache=None
        self.cache_warned = False


_state = _State()


def default_path() -> Path:
    """``history.db`` in the user's data folder for vman-magic (``platformdirs.user_data_path``)."""
    import platformdirs  # imported on first use: only the default location needs it

    return Path(platformdirs.user_data_path("vman-magic", appauthor=False)) / "history.db"


def _resolve() -> None:
    if _state.resolved:
        return
    raw = os.environ.get(ENV, "").strip()
    if raw.lower() in OFF:
        _state.path = None
    else:
        _state.path = Path(raw).expanduser() if raw else default_path()
    _state.resolved = True


def location() -> Path | None:
    """The history file this process uses, or None when ``VMAN_HISTORY=off``."""
    with _state.lock:
        _resolve()
        return _state.path


def recording() -> bool:
    """True when results are being recorded (not off, not paused, not broken)."""
    with _state.lock:
        _resolve()
        return _state.path is not None and not _state.paused and _state.broken is None


def _warn(message: str) -> None:
    print(f"warning: history is off for this session: {message}; completions go on without it", file=sys.stderr)


def _writer() -> Writer | None:
    """The running writer, started on first use; None when history is off. Gives the failure warning once."""
    warning = None
    with _state.lock:
        _resolve()
        writer = _state.writer
        if writer is not None and writer.error is not None:
            warning = _state.broken = writer.error
            _state.writer = writer = None
        elif writer is None and _state.path is not None and not _state.paused and _state.broken is None:
            writer = _state.writer = Writer(_state.path)
    if warning is not None:
        _warn(warning)
    return writer


def _stop_writer(timeout: float) -> None:
    with _state.lock:
        writer, _state.writer = _state.writer, None
    if writer is not None:
        writer.stop(timeout)


atexit.register(lambda: _stop_writer(EXIT_WAIT))


def _after_fork_in_child() -> None:
    """A forked child has no writer thread (only the parent's object): it starts its own on first use."""
    _state.lock = threading.Lock()
    _state.writer = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- switches


def set_recording(on: bool) -> None:
    """``%vman history on|off``: pause recording (and the cache) for this session, or start again after a failure."""
    if not on:
        with _state.lock:
            _state.paused = True
        _stop_writer(EXIT_WAIT)
        return
    with _state.lock:
        _state.paused = False
        _state.broken = None
        _state.cache_warned = False


def set_cache(on: bool) -> None:
    """``%vman cache on|off``: what ``cache=None`` (every call that does not say) means this session."""
    with _state.lock:
        _state.cache = on


def cache_default() -> bool:
    return _state.cache


def reset() -> None:
    """Forget everything: the file is looked up again and recording restarts (tests; a changed ``VMAN_HISTORY``)."""
    _stop_writer(EXIT_WAIT)
    with _state.lock:
        _state.resolved = False
        _state.path = None
        _state.paused = False
        _state.broken = None
        _state.cache = False
        _state.cache_warned = False


def flush(timeout: float = FLUSH_WAIT) -> None:
    """Wait until every result recorded so far is in the file (before reading it)."""
    writer = _writer()
    if writer is not None:
        writer.flush(timeout)
        _writer()  # gives the warning now if that write failed


# --------------------------------------------------------------------------- recording


def record(completion: Completion, base_url: str) -> None:
    """Queue ``completion`` for the history and give it its ``history_id``; never raises, never waits long."""
    if completion.cached:
        return  # answered from the history: it is there already
    writer = _writer()
    if writer is None:
        return
    for choice in completion._choices.values():
        choice.text  # noqa: B018 - joins the streamed pieces here, so the writer thread only reads
    completion.history_id = writer.next_id(FIRST_ID_WAIT)
    if writer.error is not None:  # the file failed while opening: say so now, under this result
        _writer()
        return
    writer.put(Job(completion, host_of(base_url), time.time(), notebook_path(), completion.history_id))


# --------------------------------------------------------------------------- cache


def _use_cache(cache: bool | None) -> bool:
    return _state.cache if cache is None else bool(cache)


def answer_from_history(request: CompletionRequest, base_url: str, cache: bool | None, into: Completion) -> bool:
    """With the cache on, fill ``into`` from the newest complete answer to ``request``; True if it did.

    Also starts the writer early (when history is on), so the id is ready by
    the time the answer ends.
    """
    writer = _writer()
    if writer is not None:
        writer.warm()
    if not _use_cache(cache):
        return False
    if writer is None:
        _cache_unavailable(cache)
        return False
    found = _lookup([request], base_url, writer)
    if 0 not in found:
        return False
    _serve(found[0], request, into)
    return True


def cached_answers(
    requests: Sequence[CompletionRequest | BaseException], base_url: str, cache: bool | None
) -> dict[int, Completion]:
    """``{index: Completion}`` for every request the history answers completely (one query for a batch)."""
    writer = _writer()
    if writer is not None:
        writer.warm()
    if not _use_cache(cache):
        return {}
    if writer is None:
        _cache_unavailable(cache)
        return {}
    valid = {i: r for i, r in enumerate(requests) if isinstance(r, CompletionRequest)}
    found = _lookup(list(valid.values()), base_url, writer)
    answers: dict[int, Completion] = {}
    for position, (index, request) in enumerate(valid.items()):
        if position in found:
            answers[index] = _serve(found[position], request, Completion(request))
    return answers


def _lookup(requests: list[CompletionRequest], base_url: str, writer: Writer) -> dict[int, dict[str, object]]:
    """Position in ``requests`` -> the stored row answering it; empty (with the warning) if the file fails."""
    import sqlite3

    writer.flush(FLUSH_WAIT)  # this process's own last results count too
    host = host_of(base_url)
    keys = [cache_key(r, host) for r in requests]
    try:
        conn = db.open_for_reading(writer.path)
        if conn is None:
            return {}
        try:
            rows = db.latest_complete(conn, keys)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        _broken(f"cannot read {writer.path}: {' '.join(str(exc).split())}")
        return {}
    return {i: dict(rows[k]) for i, k in enumerate(keys) if k in rows}


def _serve(values: dict[str, object], request: CompletionRequest, into: Completion) -> Completion:
    completion = restore(values, into)
    completion.cached = True
    if samples(request):
        completion.notes.append(
            f"answered from history #{completion.history_id} because cache is on, although this request samples "
            "(temperature above 0, no seed): a new call would give another text; run without cache to sample again"
        )
    return completion


def _broken(message: str) -> None:
    with _state.lock:
        if _state.broken is not None:
            return
        _state.broken = message
        writer, _state.writer = _state.writer, None
    if writer is not None:
        writer.stop(0)
    _warn(message)


def _cache_unavailable(cache: bool | None) -> None:
    """One line when the cache was asked for explicitly but history is off."""
    with _state.lock:
        if cache is None or _state.cache_warned:
            return
        _state.cache_warned = True
        why = _state.broken or ("VMAN_HISTORY=off" if _state.path is None else "%vman history off")
    print(f"warning: cache=True has no effect: history is off ({why}); every request is sent", file=sys.stderr)


def require_location() -> Path:
    """The history file for reading, or :class:`HistoryError` saying how to turn history on."""
    path = location()
    if path is None:
        raise HistoryError(f"history is off ({ENV}=off): unset {ENV} or set it to a file, e.g. {ENV}=~/history.db")
    return path
