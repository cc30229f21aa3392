"""Tests for parameter sweeps: the ``--sweep`` parser and ``run_sweep`` against the demo server."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from vman_magic.batch.progress import Tally
from vman_magic.batch.sweep import _bundle, _Snapshot, footer_line, label, parse_sweep, run_sweep
from vman_magic.client.client import Client
from vman_magic.core.errors import ValidationError
from vman_magic.core.render import completion_html

PROMPT = "Once upon a time"
SHARED = {"max_tokens": 6, "seed": 5}


def test_parse_sweep_converts_values_to_the_parameter_types() -> None:
    """Numbers, integers and flags are converted; dashed names become the API's underscored names."""
    grid = parse_sweep(["temperature=0,0.7,1.4", "top-p=0.5,1", "max_tokens=4,8", "echo=true,false"])
    assert grid == {"temperature": [0.0, 0.7, 1.4], "top_p": [0.5, 1.0], "max_tokens": [4, 8], "echo": [True, False]}
    assert all(isinstance(v, int) for v in grid["max_tokens"])


@pytest.mark.parametrize(
    ("spec", "param", "needle"),
    [
        ("temperature", "sweep", "NAME=V1,V2"),
        ("=1,2", "sweep", "NAME=V1,V2"),
        ("temprature=0,1", "temprature", "did you mean temperature?"),
        ("stop=a,b", "stop", "sweepable: max_tokens"),
        ("temperature=0,,1", "temperature", "empty value"),
        ("temperature=", "temperature", "empty value"),
        ("temperature=hot", "temperature", "'hot' is not a number"),
        ("max_tokens=1.5", "max_tokens", "'1.5' is not an integer"),
        ("echo=maybe", "echo", "not true or false"),
        ("temperature=0,3", "temperature", "temperature must be in 0..2, got 3.0"),
        ("top_p=1.5", "top_p", "top_p must be in 0..1"),
    ],
)
def test_parse_sweep_errors_name_the_parameter_and_what_to_change(spec: str, param: str, needle: str) -> None:
    """Every malformed or out-of-range spec raises a ValidationError naming the field and the fix."""
    with pytest.raises(ValidationError) as info:
        parse_sweep([spec])
    assert info.value.param == param
    assert needle in str(info.value)


def test_parse_sweep_rejects_a_parameter_given_twice() -> None:
    """Naming one parameter in two specs is an error that says to list the values once."""
    with pytest.raises(ValidationError, match="twice"):
        parse_sweep(["temperature=0", "temperature=1"])


def test_sweep_runs_every_combination_like_separate_seeded_calls(demo_server: Any) -> None:
    """One row per combination, labelled by its settings, with the text a separate seeded call gives."""
    grid = {"temperature": [0.0, 0.7, 1.4], "top_p": [0.5, 1.0]}
    result = run_sweep(PROMPT, grid, show=False, base_url=demo_server.base_url, model="vman-demo", **SHARED)
    assert result.settings == [{"temperature": t, "top_p": p} for t in grid["temperature"] for p in grid["top_p"]]
    table = result.table
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["temperature", "top_p", "choice", "text", "finish_reason", "tokens", "error"]
    assert len(table) == 6 and (table["error"] == "").all()
    with Client(base_url=demo_server.base_url, model="vman-demo") as client:
        for row in table.itertuples():
            alone = client.complete(PROMPT, temperature=row.temperature, top_p=row.top_p, **SHARED)
            assert row.text == alone.text
            assert row.finish_reason == alone.finish_reason
            assert row.tokens == alone.usage.completion_tokens


def test_sweep_with_n_gives_a_row_per_choice(demo_server: Any) -> None:
    """With n=2 every setting has two rows, choice 0 and 1."""
    result = run_sweep(
        PROMPT, {"temperature": [0.5, 1.0]}, n=2, show=False, base_url=demo_server.base_url, model="vman-demo", **SHARED
    )
    assert list(result.table["choice"]) == [0, 1, 0, 1]
    assert [len(c.choices) for c in result.completions] == [2, 2]


def test_terminal_sweep_prints_a_labelled_text_table(demo_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Outside a kernel the grid is printed once, one labelled block per setting."""
    result = run_sweep(PROMPT, {"temperature": [0.0, 1.0]}, base_url=demo_server.base_url, model="vman-demo", **SHARED)
    out = capsys.readouterr().out
    assert "== temperature=0.0 [" in out and "== temperature=1.0 [" in out
    for c in result.completions:
        assert c.text.replace("\n", "⏎ ")[:20] in out


def test_grid_html_escapes_model_text() -> None:
    """Text and labels in the live grid are HTML-escaped; the plain-text form carries the same cells."""
    bundle = _bundle(_Snapshot((("stop='</b>'", ("<script>alert(1)</script> & more",), "length"),), Tally(1, 1)))
    assert "<script>" not in bundle["text/html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in bundle["text/html"]
    assert "stop=&#x27;&lt;/b&gt;&#x27;" in bundle["text/html"]
    assert "<script>alert(1)</script> & more" in bundle["text/plain"]


@pytest.mark.parametrize(
    ("grid", "kwargs", "needle"),
    [
        ({}, {}, "grid is empty"),
        ({"temperature": []}, {}, "non-empty list"),
        ({"temperature": "0.7"}, {}, "non-empty list"),
        ({"temperature": [0, 1]}, {"temperature": 0.5}, "both swept and given"),
        ({"logit_bias": [{}]}, {}, "cannot sweep logit_bias"),
        ({"temperature": [0, 9]}, {}, "temperature must be in 0..2"),
    ],
)
def test_run_sweep_rejects_bad_grids_before_sending(
    demo_server: Any, grid: dict[str, Any], kwargs: dict[str, Any], needle: str
) -> None:
    """Empty, malformed, duplicated or out-of-range grids raise a ValidationError and send nothing."""
    before = demo_server.stats.completions
    with pytest.raises(ValidationError, match=needle.replace(".", r"\.")):
        run_sweep(PROMPT, grid, show=False, base_url=demo_server.base_url, model="vman-demo", **kwargs)
    assert demo_server.stats.completions == before


def test_sweep_cards_fill_the_width_keep_words_whole_and_end_with_totals(demo_server: Any) -> None:
    """The sweep grid draws its cards like the -n grid (auto-fit columns, words kept whole) and adds a totals footer."""
    result = run_sweep(
        PROMPT, {"temperature": [0.0, 1.0, 1.4]}, show=False, base_url=demo_server.base_url, model="vman-demo", **SHARED
    )
    cells = tuple(
        (label(s), tuple(c.texts), "length") for s, c in zip(result.settings, result.completions, strict=True)
    )
    usage = result.completions.usage
    html = _bundle(_Snapshot(cells, Tally(3, 3, 0, usage.prompt_tokens, usage.completion_tokens)), 1.25)["text/html"]
    n_grid = completion_html(client_complete(demo_server, n=2))
    for needle in ("repeat(auto-fit,minmax(16em,1fr))", "word-break:break-word"):
        assert needle in html and needle in n_grid
    assert "auto-fill" not in html
    footer = f"3 settings: 3 done · {usage.completion_tokens} tokens (+{usage.prompt_tokens} prompt) · 1.2 s"
    assert 'class="vman-footer"' in html and footer in html
    assert footer_line(Tally(3, 1, 1)) == "3 settings: 1 done, 1 failed, 1 to go"


def client_complete(demo_server: Any, **params: Any) -> Any:
    with Client(base_url=demo_server.base_url, model="vman-demo") as client:
        return client.complete(PROMPT, **SHARED, **params)
