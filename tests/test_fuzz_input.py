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


_NUMBER = st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True, allow_infinity=True))
_TOKEN = st.text(max_size=4)
_CHOICE = st.fixed_dictionaries(
    {"index": st.integers(min_value=0, max_value=5), "text": st.one_of(st.none(), st.text(max_size=8))},
    optional={
        "finish_reason": st.one_of(st.none(), st.sampled_from(["stop", "length"]), st.text(max_size=5)),
        "logprobs": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "tokens": st.lists(_TOKEN, max_size=3),
                    "token_logprobs": st.lists(st.one_of(st.none(), _NUMBER), max_size=3),
                    "top_logprobs": st.lists(
                        st.one_of(st.none(), st.dictionaries(_TOKEN, _NUMBER, max_size=2)), max_size=3
                    ),
                    "text_offset": st.lists(st.integers(min_value=-5, max_value=10**12), max_size=3),
                },
            ),
        ),
    },
)
_CHUNK = st.fixed_dictionaries(
    {"choices": st.lists(_CHOICE, max_size=3)},
    optional={
        "model": st.text(max_size=6),
        "id": st.text(max_size=6),
        "usage": st.fixed_dictionaries(
            {},
            optional={k: st.integers(min_value=0, max_value=10**12) for k in ("prompt_tokens", "completion_tokens")},
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(_CHUNK, min_size=1, max_size=4), incomplete=st.booleans())
def test_views_never_raise_on_a_stored_result(chunks: list[dict[str, Any]], incomplete: bool) -> None:
    """Whatever passes the shape check, every view of the stored result renders without raising."""
    from vman_magic.client.shape import AnswerShape
    from vman_magic.core.models import CompletionBuilder, CompletionRequest
    from vman_magic.core.render import completion_html, completion_text, footer_text

    builder = CompletionBuilder(CompletionRequest.build("m", "p", n=2, logprobs=2))
    shape = AnswerShape("host")
    for chunk in chunks:
        builder.add(shape.chunk(chunk))
    result = builder.fail(KeyboardInterrupt()) if incomplete else builder.finish()
    view = result.show_probabilities()
    for text in (repr(result), completion_text(result), completion_html(result), footer_text(result)):
        assert isinstance(text, str)
    assert isinstance(view.html, str) and isinstance(str(view), str)
    result._repr_mimebundle_()
