"""What a magic cell says about itself: one-line errors instead of tracebacks, and the demo notice.

Shared by :mod:`vman_magic.notebook.magic` (single completions, ``%vman``) and
:mod:`vman_magic.notebook.magic_batch` (``--over``, ``--sweep``), so neither
imports the other for them.
"""

from __future__ import annotations

import sys

__all__ = ["MAX_MESSAGE", "shorten", "show_demo_notice"]

MAX_MESSAGE = 300  # characters of an error line under a failed cell
_demo_notice_shown = False


def shorten(exc: BaseException, message: str, note: str = "") -> None:
    """Make IPython show ``message`` (one line, at most ~300 characters) instead of a traceback.

    The exception still propagates, so the cell fails and "Run All" stops;
    IPython and ipykernel call ``_render_traceback_`` instead of formatting
    frames. Server text inside ``message`` may span lines or run long;
    ``note`` is kept whole at the end, so where the partial text went is
    always shown.
    """
    flat = " ".join(message.split())
    if len(flat) + len(note) > MAX_MESSAGE:
        flat = flat[: max(MAX_MESSAGE - len(note) - 3, 40)] + "..."
    line = flat + note
    exc._render_traceback_ = lambda: [line]  # type: ignore[attr-defined]


def show_demo_notice() -> None:
    """Print, once per session, that the offline demo model answers and how to use a real server."""
    global _demo_notice_shown
    if not _demo_notice_shown:
        from ..demo.launch import demo_notice

        _demo_notice_shown = True
        print(demo_notice(), file=sys.stdout)
