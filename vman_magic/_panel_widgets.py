"""The parameter widgets of the Playground panel, and the code they stand for.

Every control is built from :data:`vman_magic._params.PARAMS` (range, help,
default), so the panel cannot drift from the ``%%complete`` flags. The
controls only turn widget state into plain Python values; deciding whether a
combination is valid is left to :class:`~vman_magic.CompletionRequest`, whose
``ValidationError.param`` tells :meth:`ParamControls.show_error` which
widget's message line to fill.

A parameter left at the API's documented default is not sent, so the server's
default applies and "Copy as code" stays short. ``max_tokens`` is the
exception: it is always sent, because it decides what a run costs and the
magic may fill in its own default (``%config VmanMagic.default_max_tokens``). That code (:func:`magic_cell`,
:func:`python_call`) is generated from the validated request, never from the
widgets' strings, so it sends exactly what Run sends.
"""

from __future__ import annotations

import html
import json
import shlex
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._errors import ValidationError
from ._params import MAX_STOP, PARAMS_BY_NAME

if TYPE_CHECKING:
    from ._models import CompletionRequest

__all__ = [
    "SLIDERS",
    "WIDGET_PARAMS",
    "ParamControls",
    "decode_escapes",
    "encode_escapes",
    "magic_cell",
    "message_html",
    "python_call",
]

# name -> slider step; min/max come from PARAMS
SLIDERS: dict[str, float] = {"temperature": 0.05, "top_p": 0.01, "presence_penalty": 0.1, "frequency_penalty": 0.1}
_INTS = ("max_tokens", "n", "best_of")
WIDGET_PARAMS = (*SLIDERS, *_INTS, "logprobs", "seed", "stop", "echo")
_LOGPROBS_OFF = "off"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_LABEL = {"description_width": "130px"}
# the look of a 130px description: right-aligned, 8px before the control
_TAG_LABEL_LAYOUT = {"width": "130px", "display": "flex", "justify_content": "flex-end", "margin": "2px 8px 2px 2px"}


def decode_escapes(tag: str) -> str:
    r"""Turn the backslash escapes typed into a stop tag into characters.

    A tag input cannot hold a real newline, so ``\n`` (two characters) means a
    newline, as in the ``--stop`` flag; ``\\`` is a backslash and any other
    backslash stays as written.
    """
    out: list[str] = []
    i = 0
    while i < len(tag):
        ch = tag[i]
        if ch == "\\" and i + 1 < len(tag) and tag[i + 1] in _ESCAPES:
            out.append(_ESCAPES[tag[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def encode_escapes(text: str) -> str:
    r"""The inverse of :func:`decode_escapes`: ``"\n"`` becomes the two characters ``\n``."""
    reverse = {v: "\\" + k for k, v in _ESCAPES.items()}
    return "".join(reverse.get(ch, ch) for ch in text)


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
            )
        for name in _INTS:
            spec = PARAMS_BY_NAME[name]
            self.widgets[name] = w.IntText(value=int(initial.get(name, spec.default)))
        logprobs = initial.get("logprobs")
        self.widgets["logprobs"] = w.Dropdown(
            options=[_LOGPROBS_OFF, *(str(k) for k in range(6))],
            value=_LOGPROBS_OFF if logprobs is None else str(logprobs),
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
            rows.append(w.HBox(parts))
        return rows

    def values(self) -> dict[str, Any]:
        """Current API values, leaving out those at the API's documented default."""
        out: dict[str, Any] = {}
        for name in (*SLIDERS, *_INTS):
            value = self.widgets[name].value
            if value != PARAMS_BY_NAME[name].default or name == "max_tokens":
                out[name] = round(value, 4) if isinstance(value, float) else value
        logprobs = self.widgets["logprobs"].value
        if logprobs != _LOGPROBS_OFF:
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
                widget.value = _LOGPROBS_OFF if value is None else str(value)
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


# --------------------------------------------------------------------------- "Copy as code"


def _flag_value(value: Any) -> str:
    """One flag value as the shell-like ``%%complete`` line expects it."""
    if isinstance(value, str):
        return shlex.quote(encode_escapes(value))
    if isinstance(value, Mapping):
        return shlex.quote(json.dumps(dict(value), ensure_ascii=False))
    return shlex.quote(repr(value))


def magic_cell(request: CompletionRequest, body: str, *, var: str, base_url: str | None = None) -> str:
    """The ``%%complete`` cell that sends ``request`` (flags spelled from ``_params``).

    ``body`` is the prompt as typed, ``{var}`` fields included: the magic
    fills them from the same namespace, so the cell sends the same text.
    """
    parts = ["%%complete", "--model", shlex.quote(request.model), "-o", var]
    if base_url:
        parts += ["--base-url", shlex.quote(base_url)]
    if not request.stream:
        parts.append("--no-stream")
    for name, value in request.params().items():
        flag = PARAMS_BY_NAME[name].flag
        if name == "stream_options" and dict(value) == {"include_usage": True}:
            continue  # what a streamed request asks for anyway
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        elif name == "stop":
            for stop in [value] if isinstance(value, str) else value:
                # "--stop=-x": a value starting with "-" must not look like a flag
                quoted = _flag_value(stop)
                parts.append(f"{flag}={quoted}" if stop.startswith("-") else f"{flag} {quoted}")
        else:
            parts += [flag, _flag_value(value)]
    return " ".join(parts) + "\n" + body


def python_call(request: CompletionRequest, *, base_url: str | None = None) -> str:
    """The equivalent Python call, with the prompt after templating."""
    args = [repr(request.prompt), f"model={request.model!r}"]
    if not request.stream:
        args.append("stream=False")
    args += [f"{name}={_py(value)}" for name, value in request.params().items()]
    call = "vman_magic.complete" if base_url is None else f"vman_magic.Client(base_url={base_url!r}).complete"
    return f"import vman_magic\n\ncompletion = {call}({', '.join(args)})"


def _py(value: Any) -> str:
    if isinstance(value, Mapping):
        return repr(dict(value))
    if isinstance(value, tuple):
        return repr(list(value))
    return repr(value)
