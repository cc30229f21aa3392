"""Safe ``{name}`` interpolation of notebook variables into a prompt.

A ``%%complete`` cell is a prompt, and prompts are full of braces: JSON
examples, code, set literals. So the rules are deliberately narrow:

* ``{name}`` is replaced only when ``name`` is a variable in the namespace.
  A field may go on with attribute access (``{row.title}``) and index access
  (``{items[0]}``, ``{d[key]}``, ``{d['key']}``), and end with a conversion
  (``!r``, ``!s``, ``!a``) and a format spec (``{x:.2f}``), as in
  :meth:`str.format`.
* Everything else stays literal: ``{"a": 1}`` is not a field at all, and an
  identifier that is not defined (``{undefined}``) is kept as written and
  reported in :attr:`Rendered.unresolved`, so ``--dry-run`` can warn about a
  typo without breaking code prompts.
* ``{{`` is a literal ``{``, and the ``}}`` that closes it a literal ``}``
  (``{{name}}`` gives ``{name}``). A ``}}`` with no ``{{`` before it stays as
  written, so nested JSON such as ``{"a": {"b": 1}}`` is untouched.
* Nothing is ever evaluated: there are no calls, no operators, and no
  attribute or key that starts with ``_`` (so ``{x.__class__.__init__.__globals__}``
  cannot reach secrets). A field whose variable exists but whose
  attribute/index/format fails raises :class:`TemplateError`, because the user
  clearly meant a substitution and a silent literal would hide the mistake.
  That holds whatever the variable raises (a property, ``__getattr__``,
  ``__getitem__``, ``__format__`` or ``__repr__`` with a bug): the error
  names the field and the exception, never a traceback into user code.
* Widths and precisions in a format spec are capped at :data:`MAX_WIDTH`, so
  ``{x:>9999999999}`` is an error instead of a kernel that allocates until it dies.

Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError

__all__ = ["MAX_WIDTH", "Rendered", "TemplateError", "render"]

#: The largest width or precision a ``{field:spec}`` may ask for.
MAX_WIDTH = 10_000
_SPEC_NUMBER = re.compile(r"\d+")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# one index: a bare word or integer, or a quoted string without the quote inside
_INDEX = r"\[(?:-?\d+|[A-Za-z_][A-Za-z0-9_]*|'[^'\]]*'|\"[^\"\]]*\")\]"
_FIELD = re.compile(
    rf"""\{{
    (?P<path>{_IDENT}(?:\.{_IDENT}|{_INDEX})*)
    (?:!(?P<conv>[rsa]))?
    (?::(?P<spec>[^{{}}\n]*))?
    \}}""",
    re.VERBOSE,
)
_STEP = re.compile(rf"\.(?P<attr>{_IDENT})|\[(?P<index>[^\]]*)\]")
_TOKEN = re.compile(r"\{\{|\}\}|\{")


class TemplateError(ValidationError):
    """A ``{field}`` names a variable but cannot be filled in."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="prompt")


@dataclass(frozen=True)
class Rendered:
    """The prompt after interpolation and what happened to its fields.

    ``names`` are the fields that were substituted, in order of first use;
    ``unresolved`` the identifier-looking fields left literal because no such
    variable exists (a likely typo, or a brace that was meant literally).
    """

    text: str
    names: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)


def render(template: str, namespace: Mapping[str, Any]) -> Rendered:
    """Fill ``{fields}`` of ``template`` from ``namespace``; see the module doc."""
    out: list[str] = []
    names: list[str] = []
    unresolved: list[str] = []
    pos = 0
    escapes_open = 0  # a "}}" is an escape only when it closes a "{{" (keeps JSON's "}}" intact)
    while (token := _TOKEN.search(template, pos)) is not None:
        start = token.start()
        out.append(template[pos:start])
        if token.group() == "{{":
            out.append("{")
            escapes_open += 1
            pos = token.end()
            continue
        if token.group() == "}}":
            out.append("}" if escapes_open else "}}")
            escapes_open = max(0, escapes_open - 1)
            pos = token.end()
            continue
        match = _FIELD.match(template, start)
        if match is None:
            out.append("{")
            pos = start + 1
            continue
        path = match.group("path")
        root = re.match(_IDENT, path).group()  # type: ignore[union-attr]
        if root not in namespace:
            if path not in unresolved:
                unresolved.append(path)
            out.append(match.group())
        else:
            out.append(_fill(match, namespace[root], root))
            if path not in names:
                names.append(path)
        pos = match.end()
    out.append(template[pos:])
    return Rendered("".join(out), names, unresolved)


def _fill(match: re.Match[str], value: Any, root: str) -> str:
    """Resolve one field's attribute/index chain, conversion and format spec."""
    path = match.group("path")
    where = match.group()
    for step in _STEP.finditer(path, len(root)):
        attr, index = step.group("attr"), step.group("index")
        value = _attribute(value, attr, where) if attr is not None else _item(value, index, where)
    spec = match.group("spec") or ""
    too_wide = [n for n in _SPEC_NUMBER.findall(spec) if len(n) > 6 or int(n) > MAX_WIDTH]
    if too_wide:
        raise TemplateError(
            f"{where}: the format spec {spec!r} asks for {too_wide[0]} characters; widths and precisions "
            f"go up to {MAX_WIDTH}: use a smaller number"
        )
    conv = match.group("conv")
    try:
        if conv == "r":
            value = repr(value)
        elif conv == "a":
            value = ascii(value)
        elif conv == "s":
            value = str(value)
        text = format(value, spec)
    except (ValueError, TypeError) as exc:
        raise TemplateError(
            f"cannot format {where} with spec {spec!r}: {_said(exc)}; fix the spec, or write "
            "{{ and }} for literal braces (or use --no-template)"
        ) from None
    except Exception as exc:  # the variable's own __format__/__str__/__repr__ failed
        raise TemplateError(
            f"{where}: turning {root!r} into text raised {_said(exc)}; fix the variable, or write "
            "{{ and }} for literal braces (or use --no-template)"
        ) from None
    if not isinstance(text, str):  # a __format__ that returns something else
        raise TemplateError(f"{where}: formatting {root!r} gave a {type(text).__name__}, not text; fix its __format__")
    return text


def _said(exc: BaseException) -> str:
    """``TypeName: message`` of an exception raised by user code, on one short line."""
    try:
        message = " ".join(str(exc).split())
    except Exception:  # an exception whose __str__ fails as well
        message = ""
    message = message if len(message) <= 120 else message[:117] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _attribute(value: Any, name: str, where: str) -> Any:
    if name.startswith("_"):
        raise TemplateError(
            f"{where}: attributes starting with '_' are not allowed in templates; put the value in a variable first"
        )
    try:
        return getattr(value, name)
    except AttributeError:
        raise TemplateError(
            f"{where}: {type(value).__name__} object has no attribute {name!r}; "
            "fix the name, or write {{ and }} for literal braces (or use --no-template)"
        ) from None
    except Exception as exc:  # a property or __getattr__ with a bug
        raise TemplateError(
            f"{where}: reading .{name} of the {type(value).__name__} raised {_said(exc)}; fix the variable, "
            "or write {{ and }} for literal braces (or use --no-template)"
        ) from None


def _item(value: Any, raw: str, where: str) -> Any:
    key: Any
    if raw[:1] in ("'", '"'):
        key = raw[1:-1]
    elif raw.lstrip("-").isdigit():
        key = int(raw)
    else:
        key = raw  # like str.format: a bare word is a string key, not a variable
    if isinstance(key, str) and key.startswith("_") and not isinstance(value, Mapping):
        raise TemplateError(f"{where}: keys starting with '_' are only allowed on dicts")
    try:
        return value[key]
    except (KeyError, IndexError, TypeError) as exc:
        raise TemplateError(
            f"{where}: cannot look up [{raw}] in a {type(value).__name__} ({_said(exc)}); "
            "fix the key, or write {{ and }} for literal braces (or use --no-template)"
        ) from None
    except Exception as exc:  # a __getitem__ with a bug
        raise TemplateError(
            f"{where}: looking up [{raw}] in the {type(value).__name__} raised {_said(exc)}; fix the variable, "
            "or write {{ and }} for literal braces (or use --no-template)"
        ) from None
