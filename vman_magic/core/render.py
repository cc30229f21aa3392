"""Text and HTML views of a :class:`~vman_magic.Completion`.

Used by ``Completion._repr_mimebundle_`` and by the live view's footer. Two
rules shape everything here:

* Model text is untrusted. Every piece of it goes through :func:`html.escape`
  before it reaches HTML, so a completion that says ``<script>`` shows the
  characters, never runs them.
* The HTML must read well in JupyterLab's light *and* dark themes, so colours
  are JupyterLab CSS variables with fallbacks for classic Notebook, VS Code
  and exported HTML.

Standard library only. Takes any object of the shape in :mod:`vman_magic.core.shapes`
and never imports the models, which call it (one-way dependency).
"""

from __future__ import annotations

import asyncio
import html

from .shapes import ChoiceShape, ResultShape

__all__ = [
    "BOX_STYLE",
    "FOOTER_STYLE",
    "LABEL_STYLE",
    "TEXT_STYLE",
    "card_html",
    "completion_html",
    "completion_text",
    "footer_html",
    "footer_text",
    "grid_html",
    "incomplete_reason",
    "stats_parts",
]

# word-break:break-word overrides JupyterLab's "break-all" for <pre> in outputs, which cuts words ("sa|me")
_TEXT_STYLE = (
    "white-space:pre-wrap;word-break:break-word;overflow-wrap:anywhere;margin:0;"
    "font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,13px);"
    "color:var(--jp-content-font-color1,inherit)"
)
_BOX_STYLE = (
    "border:1px solid var(--jp-border-color2,#ddd);border-radius:4px;padding:6px 8px;"
    "background:var(--jp-layout-color1,transparent);min-width:0"
)
_LABEL_STYLE = "font-size:11px;color:var(--jp-ui-font-color2,#777);margin-bottom:4px"
_FOOTER_STYLE = "font-size:12px;color:var(--jp-ui-font-color2,#777);margin-top:4px"
_WARN_STYLE = "color:var(--jp-warn-color0,#b36b00);font-weight:600"
# auto-fit, not auto-fill: empty tracks collapse, so three cards fill the width instead of three quarters of it
_GRID_STYLE = "display:grid;gap:8px;grid-template-columns:repeat(auto-fit,minmax(16em,1fr))"
_SEPARATOR = '<hr style="border:none;border-top:1px dashed var(--jp-border-color2,#ddd);margin:4px 0">'
TEXT_STYLE, BOX_STYLE, LABEL_STYLE, FOOTER_STYLE = _TEXT_STYLE, _BOX_STYLE, _LABEL_STYLE, _FOOTER_STYLE


def stats_parts(c: ResultShape) -> list[str]:
    """The footer facts in reading order: where it came from, finish, tokens, first token, speed, history id.

    Shared by the text and HTML footers so they always say the same thing.
    An answer served by the cache starts with "from history #id" (its
    timings are the original call's); any other recorded result ends with
    its "#id", the number ``vman_magic.load`` takes.
    """
    parts: list[str] = []
    if c.cached:
        parts.append(f"from history #{c.history_id}")
    reasons = sorted({ch.finish_reason for ch in c.choices if ch.finish_reason})
    if reasons:
        parts.append("finish: " + ", ".join(reasons))
    if c.usage is not None:
        u = c.usage
        if u.counted_by_client:
            parts.append(f"{u.completion_tokens} tokens (counted by the client: the server sent no usage)")
        else:
            parts.append(f"{u.completion_tokens} tokens (+{u.prompt_tokens} prompt)")
    if c.time_to_first_token is not None:
        parts.append(f"first token {_seconds(c.time_to_first_token)}")
    rate = c.tokens_per_second
    if rate is not None:
        parts.append(f"{rate:.0f} tok/s")
    elif c.elapsed is not None:
        parts.append(f"{_seconds(c.elapsed)} total")
    if c.model:
        parts.append(c.model)
    if c.history_id is not None and not c.cached:
        parts.append(f"#{c.history_id}")
    return parts


def incomplete_reason(c: ResultShape) -> str | None:
    """Why a result is incomplete, in one line, or None when it is complete."""
    if not c.incomplete:
        return None
    if c.error is None:
        return f"incomplete: {c.cut_short}" if c.cut_short else "incomplete"
    if isinstance(c.error, KeyboardInterrupt):
        return "incomplete: interrupted"
    if isinstance(c.error, asyncio.CancelledError):  # the canceller says why, e.g. the panel's Stop
        return f"{str(c.error) or 'cancelled'}; the text so far is kept"
    message = str(c.error).splitlines()[0] if str(c.error) else type(c.error).__name__
    return f"incomplete: {type(c.error).__name__}: {message}"


def footer_text(c: ResultShape) -> str:
    """A short status line (plus notes), for terminals and ``text/plain``."""
    parts = stats_parts(c)
    reason = incomplete_reason(c)
    if reason:
        parts.insert(0, "⚠ " + reason)
    lines = ["── " + " · ".join(parts)] if parts else []
    lines.extend(f"note: {note}" for note in c.notes)
    return "\n".join(lines)


def footer_html(c: ResultShape) -> str:
    """The footer as escaped HTML; empty when there is nothing to say."""
    parts = [html.escape(p) for p in stats_parts(c)]
    reason = incomplete_reason(c)
    if reason:
        parts.insert(0, f'<span style="{_WARN_STYLE}">⚠ {html.escape(reason)}</span>')
    if not parts and not c.notes:
        return ""
    out = [f'<div class="vman-footer" style="{_FOOTER_STYLE}">{" · ".join(parts)}</div>']
    out.extend(f'<div class="vman-note" style="{_FOOTER_STYLE}">note: {html.escape(note)}</div>' for note in c.notes)
    return "".join(out)


def completion_text(c: ResultShape, *, footer: bool = True) -> str:
    """Plain text: the text itself for one choice, labelled blocks for several."""
    choices = c.choices
    body = c.text if len(choices) <= 1 else "\n\n".join(f"[{_label(c, ch)}]\n{ch.text}" for ch in choices)
    if not footer:
        return body
    tail = footer_text(c)
    if not tail:
        return body
    return f"{body}\n{tail}" if body else tail


def completion_html(c: ResultShape, *, footer: bool = True) -> str:
    """Escaped HTML: one text box, or several choices side by side in a grid."""
    choices = c.choices
    if len(choices) <= 1:
        body = f'<pre class="vman-text" style="{_TEXT_STYLE}">{html.escape(c.text)}</pre>'
    else:
        body = grid_html([_choice_box(c, ch) for ch in choices])
    tail = footer_html(c) if footer else ""
    return f'<div class="vman-completion">{body}{tail}</div>'


def grid_html(cards: list[str]) -> str:
    """Cards side by side, as many per row as fit at 16em or more each, filling the width."""
    return f'<div class="vman-grid" style="{_GRID_STYLE}">{"".join(cards)}</div>'


def card_html(label: str, texts: list[str] | tuple[str, ...], status: str = "") -> str:
    """One card of a grid: a small label, the texts (escaped, words kept whole), a status line under them.

    The ``-n`` grid and the sweep grid both draw their cards with it, so they look alike.
    """
    body = _SEPARATOR.join(f'<pre class="vman-text" style="{_TEXT_STYLE}">{html.escape(t)}</pre>' for t in texts)
    tail = f'<div style="{_LABEL_STYLE};margin:4px 0 0 0">{html.escape(status)}</div>' if status else ""
    return (
        f'<div class="vman-choice" style="{_BOX_STYLE}">'
        f'<div style="{_LABEL_STYLE}">{html.escape(label)}</div>{body}{tail}</div>'
    )


def _choice_box(c: ResultShape, ch: ChoiceShape) -> str:
    label = _label(c, ch) + (f" · {ch.finish_reason}" if ch.finish_reason else "")
    return card_html(label, [ch.text])


def _label(c: ResultShape, ch: ChoiceShape) -> str:
    """``choice 2``, or ``prompt 1 · choice 0`` when several prompts were sent.

    The API numbers choices prompt-major: index = prompt * n + choice.
    """
    req = c.request
    n = (req.n or 1) if req is not None else 1
    prompts = req.choices_expected // n if req is not None else 1
    if prompts > 1:
        return f"prompt {ch.index // n} · choice {ch.index % n}"
    return f"choice {ch.index}"


def _seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"
