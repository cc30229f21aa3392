"""Every bad input a user can type into ``%%complete``: a one-line ``UsageError`` that says what to change.

Ranges are generated from ``_params.PARAMS``, so a new parameter is covered
the day it is added. Each case also proves that nothing was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from vman_magic.core import config as _config
from vman_magic.core.params import PARAMS, ParamSpec


@pytest.fixture
def ip(vman_shell: InteractiveShell) -> InteractiveShell:
    """The shell with vman_magic loaded and the test server as the session default."""
    return vman_shell


def _out_of_range(spec: ParamSpec) -> Iterator[tuple[str, str]]:
    """(flags, expected fragment) for a value just below and just above the allowed range."""
    flag = "-n" if spec.name == "n" else spec.flag  # n has only the short flag
    step = 1 if spec.kind == "int" else 0.5
    extra = " --no-stream" if spec.name == "best_of" else ""
    allowed = spec.range_text()
    for bound, delta in ((spec.minimum, -step), (spec.maximum, step)):
        if bound is not None:
            yield f"{flag} {bound + delta:g}{extra}", f"{spec.name} must be {'in ' if '..' in allowed else ''}"


RANGE_CASES = [case for spec in PARAMS if spec.kind in ("int", "float") for case in _out_of_range(spec)]

BAD_INPUTS = [
    *RANGE_CASES,
    ("--seed 9223372036854775808", "64-bit"),
    ("-n two", "n must be in 1..128"),
    ("-t hot", "temperature must be in 0..2"),
    ("--max-tokens 1.5", "max_tokens must be >= 0"),
    ("--logprobs x", "logprobs must be in 0..5"),
    ("-o 1x", "variable name"),
    ("-o class", "not a Python keyword"),
    ("-o a-b", "letters, digits and _"),
    ("--logit-bias nope", "not valid JSON"),
    ("--logit-bias '[1]'", "JSON object"),
    ("--logit-bias '{\"x\": 1}'", "token ids"),
    ("--logit-bias '{\"5\": 200}'", "-100..100"),
    ('--logit-bias \'{"5": "a"}\'', "-100..100"),
    ("--stop a b c d e", "at most 4"),
    ("--stop ''", "must not be empty"),
    ("--temprature 1", "did you mean --temperature?"),
    ("--bogus", "%%complete? lists the flags"),
    ("--best-of 2", "--no-stream"),
    ("--no-stream -n 3 --best-of 2", "raise best_of or lower n"),
    ("--base-url ftp://example.com/v1", "http:// or https://"),
    ("--base-url localhost:8000", "http:// or https://"),
    ("--base-url 'http://example.com/v1?x=1'", "?query"),
    ("--timeout -1", "positive number of seconds"),
    ("--timeout 0", "positive number of seconds"),
    ("--stop 'a", "check the quotes"),
]


@pytest.mark.parametrize(("flags", "fragment"), BAD_INPUTS, ids=[flags for flags, _ in BAD_INPUTS])
def test_bad_input_is_a_one_line_usage_error(
    ip: InteractiveShell, demo_server: Any, capsys: pytest.CaptureFixture[str], flags: str, fragment: str
) -> None:
    """The cell fails with a UsageError naming what to change, shows no traceback, and sends nothing."""
    before = demo_server.stats.requests
    result = ip.run_cell(f"%%complete {flags}\nhello", store_history=False)
    err = result.error_in_exec
    assert isinstance(err, UsageError), err
    assert fragment in str(err) and "\n" not in str(err) and len(str(err)) <= 300
    shown = capsys.readouterr()
    assert "Traceback" not in shown.out + shown.err and str(err) in shown.err
    assert demo_server.stats.requests == before and "_completion" not in ip.user_ns


def test_every_range_of_the_spec_is_covered() -> None:
    """Each bounded numeric parameter contributes a case below and/or above its range."""
    bounded = {s.name for s in PARAMS if s.kind in ("int", "float") and (s.minimum, s.maximum) != (None, None)}
    covered = {flags.split()[0].lstrip("-").replace("-", "_") for flags, _ in RANGE_CASES}
    assert covered == bounded


@pytest.mark.parametrize("cell", ["%%complete\n", "%%complete -t 0\n   \n\n", "%complete -t 0"])
def test_empty_prompt_says_where_to_write_it(ip: InteractiveShell, cell: str) -> None:
    """An empty cell or line fails before sending and says where the prompt goes (IPython's own check first)."""
    err = ip.run_cell(cell, store_history=False).error_in_exec
    assert isinstance(err, UsageError) and "empty" in str(err) and ("%complete" in str(err) or "write it" in str(err))


def test_missing_model_with_a_real_server_names_the_ways_to_set_one(ip: InteractiveShell, demo_server: Any) -> None:
    """A non-demo base URL without any model fails before sending and lists how to set the model."""
    _config.clear_session()
    before = demo_server.stats.requests
    err = ip.run_cell(f"%%complete --base-url {demo_server.base_url}\nhello", store_history=False).error_in_exec
    assert isinstance(err, UsageError)
    assert "no model is set" in str(err) and "-m NAME" in str(err) and "VMAN_MODEL" in str(err)
    assert "model=" not in str(err)  # Python advice has no place under a magic
    assert demo_server.stats.requests == before


def test_model_for_a_real_server_used_on_the_demo_says_no_base_url_is_set(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VMAN_MODEL without VMAN_BASE_URL reaches the offline demo, and its 404 says why and what to set."""
    _config.clear_session()
    monkeypatch.setenv("VMAN_MODEL", "gpt-3.5-turbo-instruct")
    err = ip.run_cell("%%complete -o r --max-tokens 2\nhello", store_history=False).error_in_exec
    assert type(err).__name__ == "NotFoundError"
    line = err._render_traceback_()[0]  # type: ignore[union-attr]
    assert "no VMAN_BASE_URL is set" in line and "set VMAN_BASE_URL" in line and ".;" not in line
    assert line.count("gpt-3.5-turbo-instruct") == 1 and line.count("vman-demo") == 1 and len(line) < 250
    ip.user_ns.pop("r", None)


def test_connection_errors_name_the_port(ip: InteractiveShell) -> None:
    """Nothing listening: the error names host and port, since on one machine the port tells servers apart."""
    err = ip.run_cell("%%complete --base-url http://127.0.0.1:9/v1 -m m\nhi", store_history=False).error_in_exec
    assert type(err).__name__ == "APIConnectionError" and "could not connect to 127.0.0.1:9 " in str(err)


@pytest.mark.parametrize(
    ("max_tokens", "words", "says", "not_says"),
    [
        (4, 20_000, "the prompt alone is", "max_tokens"),  # no max_tokens can help
        (16_000, 1_000, "lower max_tokens to", "change max_tokens"),  # said once, by the server
    ],
)
def test_context_length_errors_say_what_can_help_once(
    ip: InteractiveShell, max_tokens: int, words: int, says: str, not_says: str
) -> None:
    """Too long a prompt is "shorten the prompt"; too many max_tokens names the most that fits, without a repeat."""
    ip.user_ns["long_prompt"] = "word " * words
    err = ip.run_cell(f"%%complete --max-tokens {max_tokens}\n{{long_prompt}}", store_history=False).error_in_exec
    line = err._render_traceback_()[0]  # type: ignore[union-attr]
    assert type(err).__name__ == "BadRequestError" and says in line and not_says not in line.split(says)[1]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [("bogus", "unknown %vman command"), ("key sk-typed-in-the-cell", "do not type the key"), ("model", "usage:")],
)
def test_bad_vman_commands_say_what_to_type(ip: InteractiveShell, line: str, fragment: str) -> None:
    """%vman with an unknown command, a key typed inline, or a missing value is a UsageError with the fix."""
    err = ip.run_cell(f"%vman {line}", store_history=False).error_in_exec
    assert isinstance(err, UsageError) and fragment in str(err)
    assert "sk-typed-in-the-cell" not in str(err)
