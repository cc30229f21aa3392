"""A token-probability heatmap of a :class:`~vman_magic.Completion`.

``Completion.show_probabilities()`` returns a :class:`ProbabilityView`: one
``<span>`` per token, coloured by the probability the model gave it, with a
hover tooltip listing the top alternatives. It answers the classroom question
"how sure was the model, token by token?".

The HTML is built to survive JupyterLab's sanitizer, which renders untrusted
outputs (any notebook opened from disk) with an allowlist: ``<style>`` blocks,
``<script>`` and CSS hover cards are stripped, but inline ``style`` (colours,
``white-space``) and the ``title`` attribute are kept. So every colour is an
inline style, every tooltip a ``title``, and the text colour is set next to the
background so a token stays readable in light and dark themes alike. Model text
is always escaped: a model can emit ``<script>`` like any other token.

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

_TOKEN_STYLE = "white-space:pre-wrap;border-radius:2px;padding:0 1px;margin:0 1px 1px 0;display:inline-block"
_ECHO_STYLE = "color:#888888;white-space:pre-wrap;padding:0 1px;margin:0 1px 1px 0;display:inline-block"
_BOX_STYLE = "font-family:var(--jp-code-font-family,monospace);font-size:13px;line-height:1.7"


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
    """Escaped token HTML: newlines become ↵ plus a real line break.

    Tokens made only of spaces get middle dots, or a space token would be an
    invisible sliver; other spaces are kept by ``white-space:pre-wrap``.
    """
    if token == "":
        return "∅"
    if token.strip(" ") == "":
        return "·" * len(token)
    out = html.escape(token.replace("\r", "␍").replace("\t", "→"), quote=False)
    return out.replace("\n", "↵<br>")


def _alternatives(top: Mapping[str, float] | None) -> list[tuple[str, float]]:
    """Top alternatives as (token, probability), most likely first."""
    if not isinstance(top, Mapping):
        return []
    pairs = [(str(tok), p) for tok, lp in top.items() if (p := _prob(lp)) is not None]
    return sorted(pairs, key=lambda pair: -pair[1])


def _tooltip(token: str, p: float | None, logprob: float | None, top: list[tuple[str, float]]) -> str:
    if p is None:
        return f"{_visible(token)!r}: prompt (echoed), no probability"
    shown = f"{logprob:.3f}" if isinstance(logprob, float) else str(logprob)[:20]
    lines = [f"{_visible(token)!r}: p={p:.3f} (logprob {shown})"]
    if top:
        lines.append("top alternatives:")
        lines.extend(f"  {_visible(tok)!r}  {q:.3f}" for tok, q in top)
    return "\n".join(lines)


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
        parts = [f'<div class="vman-heatmap" style="{_BOX_STYLE}">']
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
        spans = []
        for i, token in enumerate(lp.tokens):
            logprob = lp.token_logprobs[i] if i < len(lp.token_logprobs) else None
            top = _alternatives(lp.top_logprobs[i] if i < len(lp.top_logprobs) else None)
            p = _prob(logprob)
            title = html.escape(_tooltip(token, p, logprob, top), quote=True)
            if p is None:
                style = _ECHO_STYLE
            else:
                band = probability_bin(p)
                style = f"background-color:{band.background};color:{band.foreground};{_TOKEN_STYLE}"
            spans.append(f'<span class="vman-token" style="{style}" title="{title}">{_visible_html(token)}</span>')
        return "".join(spans)

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
    return f'<div style="font-size:11px;margin-top:4px">probability: {swatches} {echo} · hover a token for alternatives</div>'
