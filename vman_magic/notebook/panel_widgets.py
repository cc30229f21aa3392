"""The parameter widgets of the Playground panel.

Every control is built from :data:`vman_magic.core.params.PARAMS` (range, help,
default), so the panel cannot drift from the ``%%complete`` flags. The
controls only turn widget state into plain Python values; deciding whether a
combination is valid is left to :class:`~vman_magic.CompletionRequest`, whose
``ValidationError.param`` tells :meth:`ParamControls.show_error` which
widget's message line to fill.

A parameter left at the API's documented default is not sent, so the server's
default applies and "Copy as code" stays short. ``max_tokens`` is the
exception: it is always sent, because it decides what a run costs and the
magic may fill in its own default (``%config VmanMagic.default_max_tokens``). That code is generated
by :mod:`vman_magic.notebook.panel_code` from the validated request, never from the
widgets' strings, so it sends exactly what Run sends; :class:`~vman_magic.notebook.code_box.CodeBox` shows it.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from ..core.errors import ValidationError
from ..core.params import MAX_STOP, PARAMS_BY_NAME
from .panel_code import decode_escapes, encode_escapes

__all__ = [
    "LOGPROBS_OFF",
    "LOGPROBS_RANGE",
    "SLIDERS",
    "WIDGET_PARAMS",
    "ParamControls",
    "message_html",
]

# name -> slider step; min/max come from PARAMS
SLIDERS: dict[str, float] = {"temperature": 0.05, "top_p": 0.01, "presence_penalty": 0.1, "frequency_penalty": 0.1}
_INTS = ("max_tokens", "n", "best_of")
WIDGET_PARAMS = (*SLIDERS, *_INTS, "logprobs", "seed", "stop", "echo")
LOGPROBS_OFF = "off"  # the logprobs dropdown's "do not ask" entry
LOGPROBS_RANGE = PARAMS_BY_NAME["logprobs"].range_text()  # "0..5", as the dropdown offers
_LABEL = {"description_width": "130px"}
# the look of a 130px description: right-aligned, 8px before the control
_TAG_LABEL_LAYOUT = {"width": "130px", "display": "flex", "justify_content": "flex-end", "margin": "2px 8px 2px 2px"}


def message_html(text: str, *, error: bool = True) -> str:
    """An inline message (escaped), red for errors and muted for hints."""
    if not text:
        return ""
    colour = "var(--jp-error-color1,#d32f2f)" if error else "var(--jp-ui-font-color2,#777)"
    return f'<span style="color:{colour};font-size:12px">{html.escape(text)}</span>'


class ParamControls:
    """One widget per API parameter, each with a message line beside it.

    ``values()`` reads the widgets as API values (raising ``ValidationError``
    for text that is not a number, e.g. a seed of ``"abc"``); ``on_change``
    is called after any of them changes.
    """

    def __init__(self, initial: Mapping[str, Any], on_change: Callable[[], object]) -> None:
        self.widgets: dict[str, w.ValueWidget] = {}
        self.messages: dict[str, w.HTML] = {}
        for name, step in SLIDERS.items():
            spec = PARAMS_BY_NAME[name]
            self.widgets[name] = w.FloatSlider(
                value=float(initial.get(name, spec.default)),
                min=spec.minimum,
                max=spec.maximum,
                step=step,
                readout_format=".2f",
                continuous_update=False,
                # the default 300px leaves a 74px track after the 130px label: 0..2 in 0.05 steps needs room
                layout={"flex": "1 1 auto", "min_width": "300px", "max_width": "520px"},
            )
        for name in _INTS:
            spec = PARAMS_BY_NAME[name]
            self.widgets[name] = w.IntText(value=int(initial.get(name, spec.default)))
        logprobs = initial.get("logprobs")
        self.widgets["logprobs"] = w.Dropdown(
            options=[LOGPROBS_OFF, *(str(k) for k in range(6))],
            value=LOGPROBS_OFF if logprobs is None else str(logprobs),
        )
        seed = initial.get("seed")
        self.widgets["seed"] = w.Text(value="" if seed is None else str(seed), placeholder="blank = none")
        stop = initial.get("stop")
        tags = [stop] if isinstance(stop, str) else list(stop or [])
        self.widgets["stop"] = w.TagsInput(
            value=[encode_escapes(t) for t in tags],
            allow_duplicates=False,
            placeholder=f"up to {MAX_STOP}; \\n = newline",
        )
        self.widgets["echo"] = w.Checkbox(value=bool(initial.get("echo", False)), indent=False)
        for name, widget in self.widgets.items():
            spec = PARAMS_BY_NAME[name]
            widget.description = name
            widget.tooltip = f"{spec.help} ({spec.range_text()})"
            widget.style = _LABEL if not isinstance(widget, w.Checkbox) else {}
            self.messages[name] = w.HTML()
            widget.observe(lambda _change: on_change(), names="value")

    def rows(self) -> list[w.Widget]:
        """One ``HBox(widget, message)`` per parameter, in a stable order.

        The tag input's front end draws no ``description``, so its row gets a
        label of its own, right-aligned and as wide as the other descriptions.
        """
        rows = []
        for name in WIDGET_PARAMS:
            widget = self.widgets[name]
            parts = [widget, self.messages[name]]
            if isinstance(widget, w.TagsInput):
                label = w.Label(name, tooltip=widget.tooltip, layout=_TAG_LABEL_LAYOUT)
                parts.insert(0, label)
            rows.append(w.HBox(parts, layout={"flex_flow": "row wrap"}))  # a long message wraps below its control
        return rows

    def values(self) -> dict[str, Any]:
        """Current API values, leaving out those at the API's documented default."""
        out: dict[str, Any] = {}
        for name in (*SLIDERS, *_INTS):
            value = self.widgets[name].value
            if value != PARAMS_BY_NAME[name].default or name == "max_tokens":
                out[name] = round(value, 4) if isinstance(value, float) else value
        logprobs = self.widgets["logprobs"].value
        if logprobs != LOGPROBS_OFF:
            out["logprobs"] = int(logprobs)
        seed = self.widgets["seed"].value.strip()
        if seed:
            try:
                out["seed"] = int(seed)
            except ValueError:
                raise ValidationError(
                    f"seed must be an integer, got {seed!r}: type a whole number or leave it blank", param="seed"
                ) from None
        stops = [decode_escapes(t) for t in self.widgets["stop"].value]
        if stops:
            out["stop"] = stops
        if self.widgets["echo"].value:
            out["echo"] = True
        return out

    def set_values(self, params: Mapping[str, Any]) -> None:
        """Set widgets from API values (``None`` resets one to its default)."""
        for name, value in params.items():
            spec = PARAMS_BY_NAME[name]
            widget = self.widgets[name]
            if name == "logprobs":
                widget.value = LOGPROBS_OFF if value is None else str(value)
            elif name == "seed":
                widget.value = "" if value is None else str(value)
            elif name == "stop":
                tags = [value] if isinstance(value, str) else list(value or [])
                widget.value = [encode_escapes(t) for t in tags]
            elif name == "echo":
                widget.value = bool(value)
            else:
                widget.value = spec.default if value is None else value

    def show_error(self, error: ValidationError | None) -> None:
        """Show ``error`` next to its parameter's widget and clear the others."""
        for name, message in self.messages.items():
            message.value = message_html(str(error)) if error is not None and error.param == name else ""
