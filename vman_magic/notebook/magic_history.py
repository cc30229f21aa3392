"""``%vman history`` and ``%vman cache``: the notebook face of :mod:`vman_magic.logbook`.

::

    %vman history                     the 20 newest completions, as a table
    %vman history cat sat -m M -n 50  those whose prompt or answer has every word, of model M
    h = %vman history cat             the History object (h[0].completion(), h.to_pandas())
    %vman history off | on            stop / start recording for this session
    %vman history --clear [--yes]     delete every entry (asks first unless --yes)
    %vman cache on | off              answer repeated requests from the history

``on`` and ``off`` alone are commands; to search for those words, put ``--``
first (``%vman history -- off``).
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError

from ..core.errors import HistoryError
from ..logbook import entries, session

__all__ = ["vman_cache", "vman_history"]

_USAGE = (
    "usage: %vman history [WORDS] [-m MODEL] [-n N] | %vman history on|off | %vman history --clear [--yes]; "
    "e.g. %vman history once upon -n 5"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(f"%vman history: {message}; {_USAGE}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%vman history", add_help=False)
    parser.add_argument("words", nargs="*")
    parser.add_argument("-m", "--model")
    parser.add_argument("-n", "--limit", type=int, default=20)
    parser.add_argument("--clear", action="store_true")
    parser.add_argument("--yes", action="store_true")
    return parser


def vman_history(rest: str) -> Any:
    """Run ``%vman history REST``; returns the :class:`~vman_magic.History` shown (or None for commands)."""
    try:
        argv = shlex.split(rest)
    except ValueError as exc:
        raise UsageError(f"%vman history: {exc} (check the quotes)") from None
    if argv in (["on"], ["off"]):
        _switch(argv[0] == "on")
        return None
    args = _parser().parse_args(argv)
    if args.limit < 1:
        raise UsageError(f"-n must be a whole number >= 1, got {args.limit}; e.g. -n 50")
    try:
        if args.clear:
            if args.words or args.model:
                raise UsageError("--clear deletes the whole history: give it no words or -m")
            _clear(args.yes)
            return None
        if args.yes:
            raise UsageError("--yes only goes with --clear")
        return entries.history(" ".join(args.words) or None, model=args.model, limit=args.limit)
    except HistoryError as exc:
        raise UsageError(str(exc)) from None


def _switch(on: bool) -> None:
    session.set_recording(on)
    path = session.location()
    if not on:
        print("history: not recording for this session (the file and its entries stay; %vman history on resumes)")
    elif path is None:
        print(f"history stays off: {session.ENV}=off; set it to a file (or unset it) and restart the kernel")
    else:
        print(f"history: recording every completion to {path}")


def _clear(yes: bool) -> None:
    path = session.require_location()
    count = entries.size()
    if count == 0:
        print(f"history: nothing to clear in {path}")
        return
    if not yes:
        try:
            answer = input(f"Delete all {count} recorded completions in {path}? This cannot be undone. [y/N] ")
        except (StdinNotImplementedError, EOFError):
            raise UsageError("cannot ask for confirmation here: run %vman history --clear --yes") from None
        if answer.strip().lower() not in ("y", "yes"):
            print("history: nothing deleted")
            return
    deleted = entries.clear()
    print(f"history: deleted {deleted} completions from {path}")


def vman_cache(rest: str) -> None:
    """``%vman cache on|off`` (alone: say which)."""
    word = rest.strip().lower()
    if word not in ("", "on", "off"):
        raise UsageError(f"usage: %vman cache on|off, got {rest.strip()!r}")
    if word:
        session.set_cache(word == "on")
    if not session.cache_default():
        print("cache: off (every request is sent; --cache or cache=True asks for it per call)")
    elif not session.recording():
        print("cache: on, but history is off, so every request is still sent (%vman history on)")
    else:
        print(
            "cache: on for this session: a request the history holds a complete answer to is answered from it, "
            "and batches send only the items without one (cache=False or %vman cache off to sample again)"
        )
