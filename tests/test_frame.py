"""complete_frame: a completion per DataFrame row, against the real demo server."""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
import pytest

from vman_magic import ValidationError
from vman_magic.batch.frame import complete_frame, error_text, render_prompts
from vman_magic.batch.many import complete_many

SEEDED = {"max_tokens": 5, "temperature": 1.0, "seed": 3, "progress": False}


def _books() -> pd.DataFrame:
    return pd.DataFrame({"title": ["Dune", "Emma", "Ulysses"], "year": [1965, 1815, 1922]}, index=["a", "b", "c"])


def test_frame_round_trip_adds_result_columns_to_a_copy(demo_server: Any) -> None:
    """The result is a new frame with the text, finish reason, tokens and error of every row; the input is untouched."""
    df = _books()
    template = 'Book: {title} ({year}). JSON: {"keep": 1}. Summary:'
    out = complete_frame(df, template, base_url=demo_server.base_url, model="vman-demo", **SEEDED)
    assert list(df.columns) == ["title", "year"]
    assert list(out.columns) == [
        "title",
        "year",
        "completion",
        "completion_finish_reason",
        "completion_tokens",
        "completion_error",
    ]
    assert list(out.index) == ["a", "b", "c"]
    prompts = [f'Book: {t} ({y}). JSON: {{"keep": 1}}. Summary:' for t, y in zip(df.title, df.year, strict=True)]
    expected = complete_many(prompts, base_url=demo_server.base_url, model="vman-demo", **SEEDED)
    assert list(out["completion"]) == expected.texts
    assert list(out["completion_finish_reason"]) == [c.finish_reason for c in expected]
    assert list(out["completion_tokens"]) == [c.usage.completion_tokens for c in expected]
    assert (out["completion_error"] == "").all()


def test_inplace_and_custom_column_names(demo_server: Any) -> None:
    """inplace=True writes into the given frame and returns it; out= names the columns."""
    df = _books()
    out = complete_frame(
        df, "{title}", out="gen", inplace=True, base_url=demo_server.base_url, model="vman-demo", **SEEDED
    )
    assert out is df
    assert {"gen", "gen_finish_reason", "gen_tokens", "gen_error"} <= set(df.columns)


def test_failed_rows_carry_their_error(demo_server: Any) -> None:
    """A row the server rejects (prompt longer than the context window) gets its error; the other rows are filled."""
    df = pd.DataFrame({"text": ["Once upon a time", "word " * 20_000, "The cat"]})
    out = complete_frame(df, "{text}", base_url=demo_server.base_url, model="vman-demo", **SEEDED)
    errors = list(out["completion_error"])
    assert errors[0] == "" and errors[2] == ""  # "empty for rows that worked", as notebook 03 says
    assert errors[1].startswith("BadRequestError: ") and "context length" in errors[1]
    assert out["completion"][0] and out["completion"][2] and out["completion"][1] == ""
    assert list(out["completion_finish_reason"]) == ["length", "", "length"]  # "", never NaN or None
    assert out["completion_tokens"].isna().tolist() == [False, True, False]
    # the same rows through --over a list: the failed one is "" there too
    batch = complete_many(list(df["text"]), base_url=demo_server.base_url, model="vman-demo", **SEEDED)
    assert batch.texts[1] == out["completion"][1] == "" and error_text(batch[1]) == errors[1]


def test_a_missing_column_lists_the_columns_and_sends_nothing(demo_server: Any) -> None:
    """A {field} that is not a column raises before sending, naming the field and the available columns."""
    before = demo_server.stats.completions
    with pytest.raises(ValidationError) as info:
        complete_frame(_books(), "About {titel} from {year}", base_url=demo_server.base_url, model="vman-demo")
    assert "{titel} is not a column" in str(info.value)
    assert "the columns are: title, year" in str(info.value)
    assert demo_server.stats.completions == before


def test_templates_keep_format_specs_and_literal_braces() -> None:
    """Rows render like str.format fields, while JSON braces and {{ }} escapes stay literal."""
    df = pd.DataFrame({"name": ["Ann"], "score": [0.91234]})
    assert render_prompts(df, '{name!r}: {score:.2f} {{name}} {"a": 1}') == ["'Ann': 0.91 {name} {\"a\": 1}"]
    assert render_prompts(df.iloc[:0], "{nope}") == []


def test_not_a_frame_is_a_clear_error() -> None:
    """Passing a list instead of a DataFrame says what is needed."""
    with pytest.raises(ValidationError, match="needs a pandas DataFrame, got list"):
        complete_frame([{"a": 1}], "{a}")  # type: ignore[arg-type]


def test_missing_pandas_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pandas, complete_frame raises ImportError with the pip command."""
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'vman-magic\[pandas\]'"):
        complete_frame(object(), "{a}")  # type: ignore[arg-type]
