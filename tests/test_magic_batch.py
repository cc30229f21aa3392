"""Tests for ``%%complete --over`` and ``--sweep`` through a real IPython shell and the demo server."""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from vman_magic.batch.many import BatchInterrupted, BatchResult, Unfinished
from vman_magic.batch.sweep import SweepResult
from vman_magic.core.errors import BadRequestError, VmanError
from vman_magic.testing import url

SEEDED = "--max-tokens 6 --seed 3 -t 1"
QUESTIONS = ["The sea", "A small village", "Tomorrow", "The river", "In the morning"]


@pytest.fixture
def ip(vman_shell: InteractiveShell) -> Iterator[InteractiveShell]:
    """The shell with vman_magic loaded and pointed at the demo server; our variables removed afterwards."""
    vman_shell.user_ns.update(qs=list(QUESTIONS), tone="calm")
    yield vman_shell
    for name in ("one", "df", "qs", "tone"):
        vman_shell.user_ns.pop(name, None)


def run(ip: InteractiveShell, cell: str) -> Any:
    """Run one cell as a user would and return IPython's ExecutionResult."""
    return ip.run_cell(cell, store_history=False)


def single(ip: InteractiveShell, flags: str, prompt: str) -> Any:
    """The Completion of a separate ``%%complete`` cell with the prompt as written."""
    result = run(ip, f"%%complete --no-template -o one {flags}\n{prompt}")
    assert result.success, result.error_in_exec
    return ip.user_ns["one"]


# --------------------------------------------------------------------------- --over a list


def test_over_a_list_matches_separate_seeded_cells(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """Each item's prompt is the template with {index}, {item} and notebook variables, and its text equals a lone cell."""
    result = run(ip, f"%%complete --over qs -o r {SEEDED}\n{{index}}. {{item}} ({{tone}})")
    assert result.success and result.result is None
    r = ip.user_ns["r"]
    assert isinstance(r, BatchResult) and ip.user_ns["_completion"] is r
    prompts = [f"{i}. {q} (calm)" for i, q in enumerate(QUESTIONS)]
    assert [c.request.prompt for c in r] == prompts
    assert r.failed == [] and all(r.texts)
    assert "5 prompts: 5 done" in capsys.readouterr().out
    assert r.texts == [single(ip, SEEDED, p).text for p in prompts]


def test_every_api_flag_applies_to_every_item(ip: InteractiveShell) -> None:
    """Model, sampling, n, stop, logit bias and seed reach each request; streaming unless --no-stream."""
    flags = "-m vman-demo -t 0.5 --top-p 0.9 -n 2 --max-tokens 4 --stop '\\n' --logit-bias '{\"5\": -100}' --seed 9"
    assert run(ip, f"%%complete --over qs -o r {flags}\n{{item}}").success
    for c in ip.user_ns["r"]:
        req = c.request
        assert (req.model, req.temperature, req.top_p, req.n, req.max_tokens) == ("vman-demo", 0.5, 0.9, 2, 4)
        assert (list(req.stop), dict(req.logit_bias), req.seed, req.stream) == (["\n"], {"5": -100}, 9, True)
        assert len(c.choices) == 2
    assert run(ip, "%%complete --over qs -o r --no-stream --best-of 2 --max-tokens 3\n{item}").success
    assert all(not c.request.stream and c.request.best_of == 2 for c in ip.user_ns["r"])


def test_line_form_runs_over_a_list(ip: InteractiveShell) -> None:
    """%complete --over NAME takes the template from the rest of the line."""
    assert run(ip, "%complete --over qs -o r --max-tokens 2 Say {item}").success
    assert [c.request.prompt for c in ip.user_ns["r"]] == [f"Say {q}" for q in QUESTIONS]


def test_over_an_empty_list_or_a_generator(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty list stores an empty result and says nothing was sent; a generator's items are used once."""
    ip.user_ns["qs"] = []
    assert run(ip, "%%complete --over qs -o r\n{item}").success
    assert ip.user_ns["r"] == [] and "no items: nothing was sent" in capsys.readouterr().out
    run(ip, "qs = (q.upper() for q in ['a', 'b'])")
    assert run(ip, "%%complete --over qs -o r --max-tokens 2\n{item}").success
    assert [c.request.prompt for c in ip.user_ns["r"]] == ["A", "B"]


def test_one_failed_item_does_not_fail_the_cell(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """An item the server rejects (a prompt longer than the context) keeps its error; the others finish."""
    ip.user_ns["qs"] = ["The sea", "word " * 20000, "A cat"]
    result = run(ip, "%%complete --over qs -o r --max-tokens 4 --seed 1\n{item}")
    assert result.success, result.error_in_exec
    r = ip.user_ns["r"]
    assert r.failed == [1] and isinstance(r[1].error, BadRequestError)
    assert r[0].text and r[2].text
    out = capsys.readouterr().out
    assert "1 failed" in out and "item 1 failed: BadRequestError: " in out


def test_a_batch_where_every_item_failed_fails_the_cell(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """When nothing succeeded (here a 401 for every item) the cell fails in one line after storing the results."""
    result = run(ip, f"%%complete --over qs -o r --base-url {url(demo_server, status=401)} --max-tokens 2\n{{item}}")
    assert isinstance(result.error_in_exec, VmanError)
    r = ip.user_ns["r"]
    assert ip.user_ns["_completion"] is r and len(r.failed) == len(QUESTIONS)
    shown = capsys.readouterr()
    assert "all 5 items failed, e.g. item 0: AuthenticationError" in shown.out + shown.err
    assert "(results in `r` and `_completion`)" in shown.out + shown.err
    assert "Traceback" not in shown.out + shown.err


@pytest.mark.parametrize(
    ("setup", "flags", "needle"),
    [
        ("", "--over missing", "no variable named 'missing'"),
        ("", "--over tone", "one string, not a list"),
        ("n5 = 5", "--over n5", "a int holds no items"),
        ("", "--over 1x", "needs the name of a list or DataFrame"),
        ("", "--over qs --no-template", "drop --no-template"),
        ("", "--over qs --show-probs", "drop it here"),
        ("", "--over qs --sweep temperature=0,1", "cannot be combined"),
        ("", "--over qs -t 3", "temperature must be in 0..2"),
        ("", "--over qs --best-of 2", "--no-stream"),
        ("class X: pass", "--over qs", "item 0: {item.nope}"),
    ],
)
def test_bad_over_usage_is_a_short_usage_error(
    ip: InteractiveShell, demo_server: Any, setup: str, flags: str, needle: str
) -> None:
    """A bad NAME, flag combination, parameter or template fails the cell with a UsageError and sends nothing."""
    run(ip, setup)
    before = demo_server.stats.completions
    template = "{item.nope}" if "class X" in setup else "{item}"
    result = run(ip, f"%%complete -o r {flags}\n{template}")
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    assert needle in str(result.error_in_exec)
    assert demo_server.stats.completions == before
    assert "r" not in ip.user_ns


def test_dry_run_over_shows_three_prompts_and_the_first_request(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """--dry-run --over prints the first three rendered prompts and the JSON of the first; nothing is sent."""
    before = demo_server.stats.completions
    assert run(ip, "%%complete --over qs --dry-run --max-tokens 7\nQ{index}: {item} {typo}").success
    out = capsys.readouterr().out
    assert "--over qs: 5 items; the first 3 (nothing sent):" in out
    assert "Q0: The sea {typo}" in out and "Q2: Tomorrow {typo}" in out and "The river" not in out
    assert "kept literally (no such variable): {typo}" in out
    assert f"POST {demo_server.base_url}/completions   (item 0)" in out
    assert '"prompt": "Q0: The sea {typo}"' in out and '"max_tokens": 7' in out
    assert demo_server.stats.completions == before and "_completion" not in ip.user_ns


# --------------------------------------------------------------------------- --over a DataFrame


def test_over_a_dataframe_adds_columns_and_leaves_the_input_alone(ip: InteractiveShell) -> None:
    """Rows fill {column} fields; -o gets a new frame with the result columns whose texts equal lone cells."""
    df = pd.DataFrame({"title": ["Dune", "Emma", "Ulysses"], "year": [1965, 1815, 1922]}, index=[10, 20, 30])
    original = df.copy()
    ip.user_ns["df"] = df
    assert run(ip, f"%%complete --over df -o r {SEEDED}\nThe book {{title}} ({{year}}) is").success
    frame = ip.user_ns["r"]
    assert ip.user_ns["_completion"] is frame and frame is not df
    pd.testing.assert_frame_equal(df, original)
    assert list(frame.columns) == [
        "title",
        "year",
        "completion",
        "completion_finish_reason",
        "completion_tokens",
        "completion_error",
    ]
    assert list(frame.index) == [10, 20, 30] and (frame["completion_error"] == "").all()
    expected = [single(ip, SEEDED, f"The book {t} ({y}) is").text for t, y in zip(df.title, df.year, strict=True)]
    assert list(frame["completion"]) == expected


def test_over_a_dataframe_fields_must_be_columns(ip: InteractiveShell, demo_server: Any) -> None:
    """A {field} that is no column (even a notebook variable) is a UsageError naming the columns; nothing is sent."""
    ip.user_ns["df"] = pd.DataFrame({"title": ["Dune"]})
    before = demo_server.stats.completions
    result = run(ip, "%%complete --over df\n{title} in a {tone} voice")
    assert isinstance(result.error_in_exec, UsageError)
    assert "the columns are: title" in str(result.error_in_exec)
    assert "df.assign(tone=tone)" in str(result.error_in_exec)
    assert demo_server.stats.completions == before


def test_dry_run_over_a_dataframe_labels_rows(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """A DataFrame dry run shows the rows' prompts under their index labels."""
    ip.user_ns["df"] = pd.DataFrame({"title": ["Dune", "Emma"]}, index=["a", "b"])
    assert run(ip, "%%complete --over df --dry-run\nBook: {title}").success
    out = capsys.readouterr().out
    assert "--over df: 2 rows (nothing sent):" in out
    assert "['a']\nBook: Dune\n['b']\nBook: Emma" in out and "(row 'a')" in out


# --------------------------------------------------------------------------- interrupt


@pytest.mark.usefixtures("interruptible")
def test_interrupt_during_over_keeps_partial_results_and_the_next_cell_works(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """Ctrl-C during a throttled --over stores the partial BatchResult, fails the cell in one line, and the shell stays usable."""
    start = demo_server.stats.completions
    cell_done = threading.Event()

    def interrupt_once_every_item_is_sent() -> None:
        while demo_server.stats.completions < start + 3 and not cell_done.is_set():
            threading.Event().wait(0.01)
        if not cell_done.is_set():  # never interrupt whatever runs after the cell
            _thread.interrupt_main()

    ip.user_ns["qs"] = QUESTIONS[:3]
    threading.Thread(target=interrupt_once_every_item_is_sent, daemon=True).start()
    # token 0 (end of text) is banned so no slow stream can end before the interrupt
    cell = (
        f"%%complete --over qs -o r --max-tokens 400 --logit-bias '{{\"0\": -100}}' "
        f"--base-url {url(demo_server, tps=5)}\n{{item}}"
    )
    try:
        result = run(ip, cell)
    finally:
        cell_done.set()
    assert isinstance(result.error_in_exec, BatchInterrupted)
    r = ip.user_ns["r"]
    assert isinstance(r, BatchResult) and ip.user_ns["_completion"] is r
    assert r.interrupted and len(r) == 3 and r.unfinished == [0, 1, 2]
    assert all(c.incomplete and isinstance(c.error, Unfinished) for c in r)
    shown = capsys.readouterr()
    assert "BatchInterrupted: 0 of 3 items finished; results so far in `r` and `_completion`" in shown.out + shown.err
    assert "Traceback" not in shown.out + shown.err
    assert run(ip, "%%complete --over qs -o r --max-tokens 2\n{item}").success
    assert ip.user_ns["r"].failed == [] and not ip.user_ns["r"].interrupted


# --------------------------------------------------------------------------- --sweep


def test_sweep_grid_matches_separate_seeded_cells(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """Every combination × n is a labelled cell and a table row whose text equals a lone seeded cell's choice."""
    cell = "%%complete --sweep temperature=0,1.4 --sweep top-p=0.5,1 -n 2 --max-tokens 5 --seed 4 -o r\nOnce {tone}"
    assert run(ip, cell).success
    r = ip.user_ns["r"]
    assert isinstance(r, SweepResult) and ip.user_ns["_completion"] is r
    assert r.settings == [{"temperature": t, "top_p": p} for t in (0.0, 1.4) for p in (0.5, 1.0)]
    table = r.table
    assert list(table.columns) == ["temperature", "top_p", "choice", "text", "finish_reason", "tokens", "error"]
    assert len(table) == 8 and list(table["choice"]) == [0, 1] * 4 and (table["error"] == "").all()
    out = capsys.readouterr().out
    for setting in r.settings:
        assert f"== temperature={setting['temperature']} top_p={setting['top_p']} [" in out
        alone = single(
            ip, f"-t {setting['temperature']} --top-p {setting['top_p']} -n 2 --max-tokens 5 --seed 4", "Once calm"
        )
        rows = table[(table.temperature == setting["temperature"]) & (table.top_p == setting["top_p"])]
        assert list(rows["text"]) == alone.texts
    assert all(c.request.prompt == "Once calm" and c.request.stream for c in r.completions)


def test_sweep_without_streaming_allows_best_of(ip: InteractiveShell) -> None:
    """--sweep with --no-stream sends whole-answer requests, so --best-of works."""
    assert run(ip, "%%complete --sweep temperature=0,1 --no-stream --best-of 2 --max-tokens 3 -o r\nOnce").success
    assert all(not c.request.stream and c.request.best_of == 2 for c in ip.user_ns["r"].completions)


def test_sweeping_max_tokens_overrides_the_configured_default(ip: InteractiveShell) -> None:
    """%config VmanMagic.default_max_tokens gives way to a sweep of max_tokens instead of clashing with it."""
    run(ip, "%config VmanMagic.default_max_tokens = 9")
    assert run(ip, "%%complete --sweep max_tokens=1,2 -o r\nOnce").success
    assert [c.request.max_tokens for c in ip.user_ns["r"].completions] == [1, 2]


def test_dry_run_sweep_lists_the_settings_and_sends_nothing(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """--dry-run --sweep shows the prompt, every setting and the first request; nothing is sent."""
    before = demo_server.stats.completions
    assert run(ip, "%%complete --sweep temperature=0,1 --sweep n=1,3 --dry-run\nOnce {tone}").success
    out = capsys.readouterr().out
    assert "prompt:\nOnce calm" in out and "--sweep: 4 settings" in out
    assert "  temperature=0.0 n=1\n  temperature=0.0 n=3\n  temperature=1.0 n=1\n  temperature=1.0 n=3" in out
    assert '"temperature": 0.0' in out and '"n": 1' in out
    assert demo_server.stats.completions == before and "_completion" not in ip.user_ns


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ("--sweep temprature=0,1", "did you mean temperature?"),
        ("--sweep temperature=hot", "'hot' is not a number"),
        ("--sweep temperature=0,3", "temperature must be in 0..2"),
        ("--sweep stop=a,b", "cannot sweep stop"),
        ("--sweep temperature", "NAME=V1,V2"),
        (
            "--sweep temperature=0,1 -t 1",
            "temperature is both swept (--sweep temperature=...) and given as --temperature",
        ),
        ("--sweep n=1,2 -n 1", "given as -n"),
        ("--sweep temperature=0 --sweep temperature=1", "twice"),
        ("--sweep temperature=0,1 --show-probs", "drop it here"),
    ],
)
def test_bad_sweeps_are_short_usage_errors(ip: InteractiveShell, demo_server: Any, flags: str, needle: str) -> None:
    """A bad sweep name, value or a swept name also given as a flag fails with a UsageError and sends nothing."""
    before = demo_server.stats.completions
    result = run(ip, f"%%complete -o r {flags}\nOnce")
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    assert needle in str(result.error_in_exec)
    assert demo_server.stats.completions == before and "r" not in ip.user_ns


# --------------------------------------------------------------------------- help and cost


def test_help_documents_both_flags_with_examples(ip: InteractiveShell) -> None:
    """%%complete? shows --over and --sweep with what they store and an example of each."""
    doc = " ".join(ip.magics_manager.registry["VmanMagic"].complete.__doc__.split())
    assert "--over NAME" in doc and "E.g. --over questions." in doc
    assert "--sweep NAME=V1,V2,..." in doc and "E.g. --sweep temperature=0,0.7,1.4" in doc
    assert "%%complete --over questions" in doc


def test_load_ext_imports_no_batch_machinery() -> None:
    """%load_ext vman_magic loads neither this module nor the batch/sweep layers, pandas or tqdm."""
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().extension_manager.load_extension('vman_magic')\n"
        "import sys\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert "vman_magic.notebook.magic" in loaded
    for name in (
        "vman_magic.notebook.magic_batch",
        "vman_magic.batch.many",
        "vman_magic.batch.sweep",
        "pandas",
        "tqdm",
    ):
        assert name not in loaded, name
