"""A token-probability heatmap of a :class:`~vman_magic.Completion`.

``Completion.show_probabilities()`` returns a :class:`ProbabilityView`: one
chip per token, coloured by the probability the model gave it, whose card
(the token, its probability and logprob, the top alternatives with bars)
shows on hover and stays pinned after a click or a tap. It answers the
classroom question "how sure was the model, token by token?".

The HTML is built for JupyterLab's two ways of rendering it:

* **Untrusted outputs** (a notebook opened from someone else) go through a
  sanitizer that keeps inline ``style`` and tags such as ``details``,
  ``summary`` and ``table``, but drops ``<style>``, ``<script>``, event
  handlers and ``tabindex`` on spans. So each token is a
  ``<details>``/``<summary>`` pair: the browser opens and closes it on a
  click or a tap with no script and no style sheet, which pins the card;
  every colour and position is an inline style.
* **Trusted outputs** (what the kernel just sent, a notebook you saved, the
  panel's HTML widget) also get a small ``<style>`` block, scoped to
  ``.vman-heatmap``: hovering a token shows its card (``::details-content``)
  and the disclosure triangle is hidden.

A newline token is a one-line "↵" chip followed by a line break outside the
chip, so the text keeps its lines and no chip is taller than one line. The
text colour is set next to the background so a token stays readable in
light and dark themes. Model text is always escaped: a model can emit
``<script>`` like any other token.

Standard library only, like the rest of the rendering layer; takes the shapes of
:mod:`vman_magic.core.shapes`, never the models (which call it).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .params import PARAMS_BY_NAME
from .shapes import ChoiceShape, ResultShape

__all__ = ["NO_LOGPROBS_NOTE", "ProbabilityView", "probability_bin"]

NO_LOGPROBS_NOTE = (
    f"no token probabilities: request logprobs ({PARAMS_BY_NAME['logprobs'].range_text()}); some gateways drop them"
)


@dataclass(frozen=True)
class _Bin:
    """One colour band of the scale: tokens with ``lower <= p`` fall in it."""

    lower: float
    background: str
    foreground: str
    label: str


# ColorBrewer RdYlBu (6 classes), rated colour-blind safe: warm = unsure,
# cool = confident. Each band fixes its own text colour so contrast does not
# depend on the notebook theme.
_BINS: tuple[_Bin, ...] = (
    _Bin(0.9, "#4575b4", "#ffffff", "≥ 0.9"),
    _Bin(0.7, "#91bfdb", "#000000", "0.7–0.9"),
    _Bin(0.5, "#e0f3f8", "#000000", "0.5–0.7"),
    _Bin(0.3, "#fee090", "#000000", "0.3–0.5"),
    _Bin(0.1, "#fc8d59", "#000000", "0.1–0.3"),
    _Bin(0.0, "#d73027", "#ffffff", "< 0.1"),
)

_CHIP_STYLE = "white-space:pre;border-radius:2px;padding:0 1px;display:inline-block;cursor:pointer;list-style:none"
_ECHO_STYLE = "color:#888888;white-space:pre;padding:0 1px;display:inline-block;cursor:pointer;list-style:none"
_TOKEN_STYLE = "white-space:pre;border-radius:2px;padding:0 1px;margin:0 1px 1px 0;display:inline-block"  # legend
_DETAILS_STYLE = "display:inline-block;position:relative;vertical-align:top;margin:0 1px 1px 0"
_TIP_STYLE = (
    "position:absolute;z-index:20;left:0;top:100%;margin-top:3px;min-width:13em;max-width:26em;padding:6px 8px;"
    "border-radius:4px;border:1px solid var(--jp-border-color1,#bdbdbd);box-shadow:0 2px 8px rgba(0,0,0,0.25);"
    "background:var(--jp-layout-color0,#ffffff);color:var(--jp-content-font-color1,#000000);"
    "font-size:12px;line-height:1.45;white-space:normal;cursor:auto"
)
_BOX_STYLE = "font-family:var(--jp-code-font-family,monospace);font-size:13px;line-height:1.7;padding-bottom:2px"
_BAR_WIDTH = 80  # pixels of a probability-1 bar in the alternatives table
# JupyterLab right-aligns and stripes table cells in outputs; the card's table wants neither
_ROW = "background:transparent"
_CELL = "padding:0 6px 0 0;text-align:left;background:transparent;border:none"
# Only trusted outputs keep it (JupyterLab's sanitizer drops <style>); without it a click still pins a card.
_STYLE_SHEET = (
    "<style>"
    ".vman-heatmap summary.vman-token::-webkit-details-marker{display:none}"
    ".vman-heatmap summary.vman-token::marker{content:''}"
    ".vman-heatmap details.vman-tok:hover::details-content{content-visibility:visible}"
    ".vman-heatmap details.vman-tok:hover{z-index:30}"
    # JupyterLab's output boxes clip or scroll what overflows them, which would cut a card under the last lines
    ".jp-OutputArea:has(.vman-heatmap),.jp-OutputArea-child:has(.vman-heatmap),"
    ".jp-OutputArea-output:has(.vman-heatmap){overflow:visible}"
    ".vman-heatmap details.vman-tok[open]{z-index:25}"
    ".vman-heatmap details.vman-tok[open]>summary.vman-token{outline:2px solid var(--jp-brand-color1,#1976d2)}"
    ".vman-heatmap details.vman-tok:hover>summary.vman-token{outline:1px solid var(--jp-brand-color1,#1976d2)}"
    "</style>"
)


def probability_bin(p: float) -> _Bin:
    """The colour band for a probability (clamped to 0..1)."""
    for band in _BINS:
        if p >= band.lower:
            return band
    return _BINS[-1]


def _prob(logprob: float | None) -> float | None:
    """exp(logprob), or None for an echoed prompt token (or a garbled value)."""
    if logprob is None or isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
        return None
    if logprob != logprob:  # NaN (math.isnan would overflow on a huge integer)
        return None
    if logprob >= 0:
        return 1.0  # a logprob above 0 (a broken server) is p=1, not an overflow
    try:
        return math.exp(logprob)
    except OverflowError:  # an integer too large for a float: p is 0
        return 0.0


def _visible(token: str) -> str:
    """Token text for the plain-text table: whitespace shown as symbols."""
    shown = token.replace("\r", "␍").replace("\n", "↵").replace("\t", "→")
    if shown.strip(" ") == "":
        shown = shown.replace(" ", "·")
    return shown or "∅"


def _visible_html(token: str) -> str:
    """Escaped text of a one-line chip: a newline is "↵", and spaces around one, or alone, are dots.

    Tokens made only of spaces get middle dots, or a space token would be an
    invisible sliver; other spaces are kept by ``white-space:pre``. The line
    break a newline stands for is drawn after the chip (see ``_token_html``).
    """
    if token == "":
        return "∅"
    if token.strip(" ") == "" or "\n" in token:
        token = token.replace(" ", "·")
    return html.escape(token.replace("\r", "␍").replace("\t", "→").replace("\n", "↵"), quote=False)


def _alternatives(top: Mapping[str, float] | None) -> list[tuple[str, float]]:
    """Top alternatives as (token, probability), most likely first."""
    if not isinstance(top, Mapping):
        return []
    pairs = [(str(tok), p) for tok, lp in top.items() if (p := _prob(lp)) is not None]
    return sorted(pairs, key=lambda pair: -pair[1])


def _tooltip(token: str, p: float | None, logprob: float | None, top: list[tuple[str, float]]) -> str:
    """The card's text, for ``text/plain`` readers and tests: token, p, logprob, alternatives."""
    if p is None:
        return f"{_visible(token)!r}: prompt (echoed), no probability"
    shown = f"{logprob:.3f}" if isinstance(logprob, float) else str(logprob)[:20]
    lines = [f"{_visible(token)!r}: p={p:.3f} (logprob {shown})"]
    if top:
        lines.append("top alternatives:")
        lines.extend(f"  {_visible(tok)!r}  {q:.3f}" for tok, q in top)
    return "\n".join(lines)


def _card_html(token: str, p: float | None, logprob: float | None, top: list[tuple[str, float]]) -> str:
    """The card a hover shows and a click pins: the token, its probability and logprob, the alternatives as bars."""
    head = f'<div style="font-family:var(--jp-code-font-family,monospace);font-weight:600">{html.escape(repr(_visible(token)))}</div>'
    if p is None:
        return head + "<div>prompt (echoed): no probability</div>"
    parts = [head, f"<div>p = {p:.3f} · logprob {logprob:.3f}</div>"]
    if top:
        rows = []
        for tok, q in top:
            band = probability_bin(q)
            chosen = "font-weight:600;" if tok == token else ""  # the token the model picked
            bar = (
                f'<span style="display:inline-block;height:8px;width:{max(1, round(q * _BAR_WIDTH))}px;'
                f'background-color:{band.background};border-radius:2px"></span>'
            )
            rows.append(
                f'<tr style="{chosen}{_ROW}"><td style="font-family:var(--jp-code-font-family,monospace);'
                f'white-space:pre;{_CELL}">{html.escape(repr(_visible(tok)))}</td>'
                f'<td style="{_CELL}">{bar}</td><td style="{_CELL};text-align:right">{q:.3f}</td></tr>'
            )
        parts.append('<div style="margin-top:4px;color:var(--jp-ui-font-color2,#777777)">top alternatives</div>')
        parts.append(f'<table style="border-collapse:collapse;font-size:12px">{"".join(rows)}</table>')
    return "".join(parts)


def _token_html(token: str, p: float | None, logprob: float | None, top: list[tuple[str, float]]) -> str:
    """One token: a ``<details>`` whose ``<summary>`` is the coloured chip and whose body is the card."""
    if p is None:
        chip = _ECHO_STYLE
    else:
        band = probability_bin(p)
        chip = f"background-color:{band.background};color:{band.foreground};{_CHIP_STYLE}"
    out = (
        f'<details class="vman-tok" style="{_DETAILS_STYLE}">'
        f'<summary class="vman-token" style="{chip}">{_visible_html(token)}</summary>'
        f'<div class="vman-tip" style="{_TIP_STYLE}">{_card_html(token, p, logprob, top)}</div></details>'
    )
    return out + "<br>" if "\n" in token else out


class ProbabilityView:
    """Token heatmap of a completion; display it, or read ``.html``.

    One heatmap per choice (so ``n > 1`` compares the samples), greyed tokens
    for an echoed prompt, and a one-line note instead of an empty view when
    the server returned no ``logprobs``.
    """

    def __init__(self, completion: ResultShape) -> None:
        self.completion = completion

    # -- html ------------------------------------------------------------
    @property
    def html(self) -> str:
        """The whole view as sanitizer-safe HTML."""
        choices = [c for c in self.completion.choices if c.logprobs is not None and c.logprobs.tokens]
        if not choices:
            return f'<div style="{_BOX_STYLE}"><em>{html.escape(self._empty_note())}</em></div>'
        parts = [f'<div class="vman-heatmap" style="{_BOX_STYLE}">{_STYLE_SHEET}']
        many = len(self.completion.choices) > 1
        for choice in choices:
            if many:
                parts.append(f"<div><strong>choice {choice.index}</strong></div>")
            parts.append(f'<div class="vman-heatmap-choice">{self._choice_html(choice)}</div>')
        if self.completion.incomplete:
            parts.append("<div><em>incomplete: the stream was interrupted</em></div>")
        parts.append(_legend_html())
        parts.append("</div>")
        return "".join(parts)

    def _choice_html(self, choice: ChoiceShape) -> str:
        lp = choice.logprobs
        assert lp is not None  # filtered by the caller
        out = []
        for i, token in enumerate(lp.tokens):
            logprob = lp.token_logprobs[i] if i < len(lp.token_logprobs) else None
            top = _alternatives(lp.top_logprobs[i] if i < len(lp.top_logprobs) else None)
            out.append(_token_html(token, _prob(logprob), logprob, top))
        return "".join(out)

    def _empty_note(self) -> str:
        notes = [*self.completion.notes]
        if not self.completion.choices:
            return "no tokens arrived, so there is nothing to show"
        return "; ".join([NO_LOGPROBS_NOTE, *notes])

    # -- text ------------------------------------------------------------
    def __str__(self) -> str:
        """A compact table: token, probability, top alternatives."""
        choices = [c for c in self.completion.choices if c.logprobs is not None and c.logprobs.tokens]
        if not choices:
            return self._empty_note()
        lines: list[str] = []
        many = len(self.completion.choices) > 1
        for choice in choices:
            if many:
                lines.append(f"choice {choice.index}")
            lp = choice.logprobs
            assert lp is not None
            rows = []
            for i, token in enumerate(lp.tokens):
                p = _prob(lp.token_logprobs[i] if i < len(lp.token_logprobs) else None)
                top = _alternatives(lp.top_logprobs[i] if i < len(lp.top_logprobs) else None)
                alts = "  ".join(f"{_visible(t)!r} {q:.2f}" for t, q in top)
                rows.append((repr(_visible(token)), "prompt" if p is None else f"{p:.3f}", alts))
            width = max(len("token"), *(len(r[0]) for r in rows))
            lines.append(f"{'token':<{width}}  {'p':>6}  top alternatives")
            lines.extend(f"{tok:<{width}}  {p:>6}  {alts}".rstrip() for tok, p, alts in rows)
        if self.completion.incomplete:
            lines.append("(incomplete: the stream was interrupted)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ProbabilityView of {self.completion!r}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": str(self), "text/html": self.html}


def _legend_html() -> str:
    swatches = "".join(
        f'<span style="background-color:{b.background};color:{b.foreground};{_TOKEN_STYLE}">{html.escape(b.label)}</span>'
        for b in reversed(_BINS)
    )
    echo = f'<span style="{_ECHO_STYLE}">prompt</span>'
    hint = "hover a token for its alternatives; a click or a tap pins them"
    return f'<div style="font-size:11px;margin-top:4px">probability: {swatches} {echo} · {hint}</div>'
