"""The Playground panel's "Copy as code": the code that sends what Run sends.

The panel shows a ``%%complete`` cell and the equivalent ``complete(...)``
call, and can insert the cell below. Both are generated from the validated
:class:`~vman_magic.CompletionRequest`, never from the widgets' strings, so the
code sends exactly what Run sends; flags are spelled from
:data:`vman_magic.core.params.PARAMS`. Kept apart from :mod:`vman_magic.notebook.panel`
so the code generation can be read, and tested, without widgets: this
module imports neither ipywidgets nor IPython. The toggle that shows the code
is :class:`~vman_magic.notebook.panel_widgets.CodeSection`.

Stop strings are spelled the same way in a stop tag and in a ``--stop``
flag (``\\n`` for a newline), so the escape helpers live here too and the
parameter widgets import them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.params import PARAMS_BY_NAME

if TYPE_CHECKING:
    from ..core.models import CompletionRequest

__all__ = ["copy_as_code", "decode_escapes", "encode_escapes", "magic_cell", "python_call", "python_code"]

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


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


def python_code(request: CompletionRequest, body: str, *, base_url: str | None = None, key_given: bool = False) -> str:
    """The Python call, after notes on what the code does not carry over.

    Trailing newlines of ``body`` (the magic drops them, the call keeps them)
    and the API key (never copied) get a comment line each.
    """
    notes = []
    if body.endswith("\n"):
        notes.append("# note: %%complete drops trailing newlines of the prompt; the call below keeps them\n")
    if key_given:
        notes.append("# note: the API key is not copied; set it with %vman key or VMAN_API_KEY\n")
    return "".join(notes) + python_call(request, base_url=base_url)


def copy_as_code(
    request: CompletionRequest, body: str, *, var: str, base_url: str | None = None, key_given: bool = False
) -> str:
    """The "Copy as code" text: the ``%%complete`` cell, then the equivalent Python call (see :func:`python_code`)."""
    python = python_code(request, body, base_url=base_url, key_given=key_given)
    cell = magic_cell(request, body, var=var, base_url=base_url)
    return f"{cell}\n\n# or, from Python:\n{python}"
