"""What a magic cell says about itself: one-line errors instead of tracebacks, and the demo notice.

Shared by :mod:`vman_magic.notebook.magic` (single completions, ``%vman``) and
:mod:`vman_magic.notebook.magic_batch` (``--over``, ``--sweep``), so neither
imports the other for them.
"""

from __future__ import annotations

import html
import sys

from IPython.core.error import UsageError

from ..core.config import Settings
from ..core.kernel import in_kernel

__all__ = ["MAX_MESSAGE", "require_model", "shorten", "show_demo_notice"]

MAX_MESSAGE = 300  # characters of an error line under a failed cell
_demo_notice_shown = False
_NOTICE_STYLE = "font-size:12px;color:var(--jp-ui-font-color2,#777);margin:0 0 4px 0"


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
    """Say once per session that the offline demo model answers, as an output of its own.

    In a kernel it is a display output (``text/plain`` and ``text/html``),
    not printed text: printed text would join the completion's stream
    output, run into its first words and wrap mid-word with it. Elsewhere it
    is one printed line. It names no address: the port is random and would
    be saved with the notebook (``%vman config`` shows it).
    """
    global _demo_notice_shown
    if _demo_notice_shown:
        return
    from ..demo.launch import demo_notice

    _demo_notice_shown = True
    notice = demo_notice()
    if not in_kernel():
        print(notice, file=sys.stdout)
        return
    from IPython.display import display

    html_notice = f'<div class="vman-notice" style="{_NOTICE_STYLE}">{html.escape(notice)}</div>'
    display({"text/plain": notice, "text/html": html_notice}, raw=True)  # type: ignore[no-untyped-call, unused-ignore]


def require_model(settings: Settings) -> str:
    """The model to send, or a ``UsageError`` with the magic's ways to set one (not ``model=...``)."""
    if settings.model:
        return settings.model
    raise UsageError(
        f"no model is set for {settings.base_url}: add -m NAME to the %%complete line, or set one for the "
        "session with %vman model NAME or VMAN_MODEL (%vman models lists them)"
    )
