"""The panel's "Copy as code": a small front-end widget that copies, frames and inserts the code.

Why a widget of its own (anywidget): ipywidgets runs a button's click in the
kernel, and a kernel can reach neither the browser's clipboard nor the
notebook. ``set_next_input`` only works in the reply to an executing cell, so
from a click the new cell appeared below whatever cell ran next. Here the
click is handled in the browser: the clipboard is written there (with a
"Copied" confirmation), and the cell is inserted right below the panel
through the notebook model that JupyterLab's and Notebook 7's widget manager
holds. Where there is no such model (another front end) the widget asks the
kernel, which falls back to ``set_next_input``.

The kernel side only keeps the code current: :attr:`cell` and :attr:`python`
are set from the validated request (see :mod:`vman_magic.notebook.panel_code`),
and :attr:`error` says what to fix while the settings are invalid. The
JavaScript and CSS ship next to this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

__all__ = ["CodeBox"]

_HERE = Path(__file__).parent


class CodeBox(anywidget.AnyWidget):
    """ "Copy as code" button, the framed code, "Insert below"; see the module docstring."""

    _esm = (_HERE / "code_box.js").read_text(encoding="utf-8")
    _css = (_HERE / "code_box.css").read_text(encoding="utf-8")

    cell = traitlets.Unicode("", help="The %%complete cell that sends what Run sends.").tag(sync=True)
    python = traitlets.Unicode("", help="The equivalent complete(...) call.").tag(sync=True)
    error = traitlets.Unicode("", help="What to fix first, while the settings are invalid.").tag(sync=True)
    shown = traitlets.Bool(False, help="Whether the framed code is shown.").tag(sync=True)
    anchor = traitlets.Unicode("", help="Model id of the panel: the new cell goes below its output.").tag(sync=True)

    def __init__(self, *, on_insert: Callable[[], object], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_insert = on_insert
        self.copies = 0  # confirmed copies, as reported by the browser
        self.on_msg(self._handle)

    def _handle(self, _widget: Any, content: Any, _buffers: Any) -> None:
        event = content.get("event") if isinstance(content, dict) else None
        if event == "insert":
            self._on_insert()
        elif event == "copied":
            self.copies += 1
