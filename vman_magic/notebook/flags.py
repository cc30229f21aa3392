"""The ``%%complete`` flags: built from ``_params.PARAMS``, read from a line.

Split out of :mod:`vman_magic.notebook.magic` so the magic itself only translates a
parsed line into a request. Every API parameter's flag, help text and range
come from the table in :mod:`vman_magic.core.params`, so ``%%complete?`` cannot
drift from the API layer. Reading a line keeps the prompt exactly as typed
(``%complete -t 0 Once upon a time``), decodes shell quoting that IPython's
``parse_argstring`` would keep, and turns argparse's errors into a
``UsageError`` that says what to type instead.

Imports only the standard library, IPython's argument helpers and
``_params``, so ``%load_ext vman_magic`` stays cheap.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.params import PARAMS, PARAMS_BY_NAME, ParamSpec

__all__ = ["complete_arguments", "parse_flags", "split_line"]

# IPython's decorator factories are untyped; these aliases give them a type once.
_argument: Callable[..., Callable[[Any], Any]] = argument
_magic_arguments: Callable[[], Callable[[Any], Any]] = magic_arguments

_SHORT_FLAGS = {"temperature": "-t", "n": "-n"}
_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "stop": "S", "logit_bias": "JSON"}


def _unescape(text: str) -> str:
    r"""``'\n'`` typed in a flag becomes a newline; other text (including Chinese) is kept."""
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as exc:
        raise UsageError(f"bad escape in {text!r}: {exc.reason}; write a literal backslash as \\\\") from None


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg}); quote it, e.g. --logit-bias '{{\"50256\": -100}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. {"50256": -100}')
    return value


def _param_argument(spec: ParamSpec) -> Callable[[Any], Any]:
    """The ``@argument`` for one API parameter, with its help and range from the table."""
    flags = [_SHORT_FLAGS[spec.name]] if spec.name in _SHORT_FLAGS else []
    if spec.name != "n":
        flags.append(spec.flag)
    help_text = f"{spec.help} Allowed: {spec.range_text()}."
    if spec.kind == "bool":
        return _argument(*flags, action="store_true", default=None, help=help_text)
    kwargs: dict[str, Any] = {"dest": spec.name, "metavar": _METAVARS[spec.kind], "help": help_text}
    if spec.kind == "int":
        kwargs["type"] = int
    elif spec.kind == "float":
        kwargs["type"] = float
    elif spec.kind == "stop":
        kwargs.update(nargs="+", action="extend", type=_unescape)
        kwargs["help"] += r" Escapes are decoded: --stop '\n' stops at a newline (quote it)."
    elif spec.kind == "logit_bias":
        kwargs["type"] = _json_object
    return _argument(*flags, **kwargs)


def complete_arguments(func: Any) -> Any:
    """Apply every ``%%complete`` flag: model, the API parameters, then the magic's own."""
    decorators = [
        _argument("-m", "--model", metavar="MODEL", help="Model id (default: %%vman model, VMAN_MODEL, ...)."),
        *(_param_argument(spec) for spec in PARAMS if spec.kind != "stream_options"),
        _argument("--no-stream", action="store_true", help="Wait for the whole answer instead of streaming."),
        _argument("-o", "--output", metavar="NAME", help="Also store the Completion in this variable."),
        _argument("--base-url", metavar="URL", help="Server for this call only, e.g. http://host:8000/v1."),
        _argument("--timeout", type=float, metavar="S", help="Read timeout in seconds for this call."),
        _argument("--dry-run", action="store_true", help="Show the prompt and request JSON; send nothing."),
        _argument("--no-template", action="store_true", help="Send {braces} as written, without variables."),
        _argument("--show-probs", action="store_true", help="Show a token-probability heatmap afterwards."),
        _argument(
            "--cache",
            action="store_true",
            default=None,
            help="Answer from the local history when it holds a complete answer to the same request (send nothing); "
            "with --over or --sweep, send only the items without one. %%vman cache on makes it the default.",
        ),
        _argument(
            "--over",
            metavar="NAME",
            help="Run the cell once per item of the list NAME ({item}, {index}) or row of the DataFrame NAME "
            "({column}); -o gets a BatchResult or a DataFrame with the completions. E.g. --over questions.",
        ),
        _argument(
            "--rpm",
            type=float,
            metavar="N",
            help="With --over/--sweep: send at most N requests per minute (default: learn the limit from the "
            "server's rate-limit headers and 429s).",
        ),
        _argument(
            "--tpm",
            type=float,
            metavar="N",
            help="With --over/--sweep: send at most N tokens per minute (prompt + max_tokens per request, "
            "corrected from usage).",
        ),
        _argument(
            "--sweep",
            action="append",
            metavar="NAME=V1,V2,...",
            help="Run the prompt for every combination of these values (repeat for more parameters) side by side; "
            "-o gets a SweepResult (.table). E.g. --sweep temperature=0,0.7,1.4 --sweep top_p=0.5,1.",
        ),
    ]
    for deco in reversed(decorators):
        func = deco(func)
    return _magic_arguments()(func)


_TOKEN = re.compile(r"""(?:[^\s'"]+|'[^']*'|"[^"]*")+""")


def split_line(line: str, parser: argparse.ArgumentParser) -> tuple[str, str]:
    """Split ``%complete`` flags from the prompt, keeping the prompt exactly as typed.

    Flags are read while tokens look like options; each option that takes a
    value takes exactly one here (repeat ``--stop`` for several). The first
    other token, or whatever follows ``--``, starts the prompt.
    """
    pos = 0
    expect_value = False
    for match in _TOKEN.finditer(line):
        token = match.group()
        if expect_value:
            expect_value = False
        elif token == "--":
            return line[: match.start()], line[match.end() :].strip()
        elif token.startswith("-") and len(token) > 1:
            name, has_value, _ = token.partition("=")
            action = parser._option_string_actions.get(name)
            if action is not None and not has_value:
                expect_value = action.nargs != 0
            # unknown options and attached values (-t0.7) go to argparse as typed
        else:
            return line[: match.start()], line[match.start() :].strip()
        pos = match.end()
    return line[:pos], ""


def parse_flags(parser: Any, line: str) -> argparse.Namespace:
    """Parse flags with shell quoting, so ``--stop '\\n'`` and ``--logit-bias '{...}'`` arrive unquoted.

    (IPython's ``parse_argstring`` keeps the quotes in the values.)
    """
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot read the flags: {exc} (check the quotes)") from None
    try:
        return parser.parse_args(argv)  # type: ignore[no-any-return]
    except UsageError as exc:
        raise UsageError(_explain_flag_error(str(exc), parser)) from None


def _explain_flag_error(message: str, parser: argparse.ArgumentParser) -> str:
    """Add what to type instead to argparse's message: a did-you-mean, or the allowed range."""
    unknown = re.match(r"unrecognized arguments: (\S+)", message)
    if unknown:
        flag = unknown.group(1).partition("=")[0]
        close = difflib.get_close_matches(flag, list(parser._option_string_actions), n=1, cutoff=0.75)
        return message + (f"; did you mean {close[0]}?" if close else "") + " (%%complete? lists the flags)"
    bad_value = re.match(r"argument (\S+?)(?:/\S+)?: invalid \w+ value", message)
    if bad_value:
        action = parser._option_string_actions.get(bad_value.group(1))
        spec = PARAMS_BY_NAME.get(action.dest) if action is not None else None
        if spec is not None:
            allowed = spec.range_text()
            return f"{message}; {spec.name} must be {'in ' if '..' in allowed else ''}{allowed}"
    return message
