"""Property tests: any flag line and any template give a result or a one-line error, never a raw exception."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from vman_magic.core.template import MAX_WIDTH, Rendered, TemplateError, render
from vman_magic.notebook.flags import parse_flags, split_line

pytestmark = pytest.mark.timeout(120)

_FLAGS = ["-t", "-n", "--max-tokens", "--top-p", "--stop", "--logit-bias", "--seed", "-o", "--over", "--sweep",
          "--timeout", "--base-url", "--no-stream", "--dry-run", "--logprobs", "--echo", "--", "-m", "--bogus"]  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["0", "-1", "1e309", "nan", "inf", "2", "0.5", "'\\n'", '"a b"', "'{\"1\": 5}'", "'", '"']),
)


@st.composite
def flag_lines(draw: Any) -> str:
    """Plausible and implausible %%complete flag lines: known flags, junk values, stray quotes."""
    parts = draw(st.lists(st.one_of(st.sampled_from(_FLAGS), _VALUES), max_size=8))
    return " ".join(parts)


@pytest.fixture(scope="module")
def parser(shell: Any) -> Any:
    shell.run_line_magic("load_ext", "vman_magic")
    return shell.magics_manager.registry["VmanMagic"].complete.parser


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=flag_lines())
def test_any_flag_line_parses_or_is_a_usage_error(parser: Any, line: str) -> None:
    """parse_flags and split_line either succeed or raise a one-line UsageError."""
    for text in (line, line + " Once upon a time"):
        try:
            flags, _prompt = split_line(text, parser)
            parse_flags(parser, flags)
        except UsageError as exc:
            assert str(exc).strip(), text


class _Odd:
    """A variable that fails in every way it can be read, to stand in for buggy user objects."""

    def __getattr__(self, name: str) -> Any:
        raise ValueError(name)

    def __getitem__(self, key: Any) -> Any:
        raise KeyError(key)

    def __format__(self, spec: str) -> str:
        raise TypeError(spec)


_NAMESPACE = {"x": 1.5, "s": "text", "d": {"k": [1, 2]}, "items": [1, "two", None], "odd": _Odd(), "none": None}
_PIECES = st.sampled_from(
    ["{", "}", "{{", "}}", "{x}", "{x:>8.2f}", "{s!r}", "{d[k][1]}", "{items[5]}", "{odd.a}", "{odd[0]}", "{odd}",
     "{none.real}", "{x:>99999999}", "{s:.{x}}", "{undefined}", "{d['k']}", "{x.__class__}", '{"a": {"b": 1}}',
     "{x:%Y}", "{s:ç}", "text ", "\n", "{x!z}", "{0}"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(template=st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=10).map("".join))
def test_any_template_renders_or_is_a_template_error(template: str) -> None:
    """render() returns text or raises TemplateError (one line, naming a field), whatever the variables do."""
    try:
        rendered = render(template, _NAMESPACE)
    except TemplateError as exc:
        assert "\n" not in str(exc) and "{" in str(exc), str(exc)
        return
    assert isinstance(rendered, Rendered) and isinstance(rendered.text, str)
    assert len(rendered.text) <= len(template) * (MAX_WIDTH + 100)
