"""What a saved notebook shows where a Playground panel was: a static snapshot of it.

A widget lives in its kernel. A notebook saved without widget state and opened
again (later, elsewhere, on GitHub) has no model for the panel's view, and
JupyterLab shows "Error displaying widget: model not found". So the panel is
displayed as two outputs: this snapshot (plain escaped HTML with inline
styles, which every renderer and JupyterLab's sanitizer keep: the model, the
prompt, the parameters and the last result with its footer), then the live
widget. The snapshot is replaced after every run through its display id, so
the saved notebook holds the last state.

Which of the two a reader sees is decided by CSS, without script:

* while the live panel is on the page, a ``<style>`` inside it (widget HTML is
  not sanitized) hides the snapshot output that comes right before it;
* when the panel is gone, the snapshot's own ``<style>`` (kept in trusted
  outputs, such as a notebook you saved yourself) hides the empty widget
  output with its error; in an untrusted notebook both styles are dropped,
  the widget output shows its one-line ``text/plain`` and the snapshot above it.

Standard library only, apart from the result views of :mod:`vman_magic.core.render`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.render import FOOTER_STYLE, completion_html

if TYPE_CHECKING:
    from ..core.models import Completion

__all__ = ["LIVE_STYLE", "PANEL_CLASS", "SNAPSHOT_CLASS", "snapshot_bundle"]

SNAPSHOT_CLASS = "vman-panel-snapshot"
PANEL_CLASS = "vman-panel"
_OUTPUT = ".jp-OutputArea-child"
#: Put inside the live panel: hides the snapshot output just before a rendered panel.
LIVE_STYLE = f"<style>{_OUTPUT}:has(.{SNAPSHOT_CLASS}):has(+ {_OUTPUT} .{PANEL_CLASS}){{display:none}}</style>"
#: Put inside the snapshot: hides the widget output after it while it shows no panel (model not found).
_DEAD_STYLE = f"<style>{_OUTPUT}:has(.{SNAPSHOT_CLASS}) + {_OUTPUT}:not(:has(.{PANEL_CLASS})){{display:none}}</style>"
_BOX = (
    "border:1px dashed var(--jp-border-color1,#bdbdbd);border-radius:4px;padding:6px 8px;"
    "background:var(--jp-layout-color1,transparent)"
)
# JupyterLab right-aligns and stripes table cells in outputs: a key/value list wants neither
_KEY = (
    "padding:1px 10px 1px 0;vertical-align:top;text-align:left;color:var(--jp-ui-font-color2,#777777);"
    "white-space:nowrap;background:transparent"
)
_VALUE = "padding:1px 0;text-align:left;background:transparent"
_PRE = (
    "white-space:pre-wrap;word-break:break-word;margin:0;font-family:var(--jp-code-font-family,monospace);"
    "font-size:var(--jp-code-font-size,13px)"
)


def snapshot_bundle(
    *, model: str, prompt: str, params: Mapping[str, Any], var: str, result: Completion | None
) -> dict[str, str]:
    """The snapshot as ``text/html`` and ``text/plain``: settings, and the last result or "no run yet"."""
    settings = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "(the server's defaults)"
    rows = [("model", html.escape(model) or "—"), ("prompt", f'<pre style="{_PRE}">{html.escape(prompt)}</pre>')]
    rows += [("parameters", html.escape(settings)), ("stored as", html.escape(var))]
    table = "".join(
        f'<tr style="background:transparent"><td style="{_KEY}">{k}</td><td style="{_VALUE}">{v}</td></tr>'
        for k, v in rows
    )
    last = completion_html(result) if result is not None else "<em>no run yet</em>"
    heading = "vman-magic Playground panel, as saved (a snapshot: the live panel needs its kernel; run the cell again)"
    body = (
        f'<div class="{SNAPSHOT_CLASS}" style="{_BOX}">{_DEAD_STYLE}'
        f'<div style="{FOOTER_STYLE};margin:0 0 4px 0">{html.escape(heading)}</div>'
        f'<table style="border-collapse:collapse;font-size:13px">{table}</table>'
        f'<div style="{FOOTER_STYLE}">last result</div>{last}</div>'
    )
    text = [f"{heading}", f"model: {model}", f"prompt: {prompt!r}", f"parameters: {settings}", f"stored as: {var}"]
    text.append("last result: " + (repr(result.text) if result is not None else "no run yet"))
    return {"text/html": body, "text/plain": "\n".join(text)}
