"""The local history: every face records, rows hold what was sent and received, reading and search work.

Each test writes a real SQLite file of its own (the ``history_file`` fixture)
and talks to the demo server.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import vman_magic
from vman_magic.logbook import session
from vman_magic.testing import url

DEMO = {"model": "vman-demo", "max_tokens": 6}


def rows(path: Path) -> list[dict[str, Any]]:
    """Every row of the file, oldest first, read with plain sqlite3 (after this process's queue is written)."""
    session.flush()
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM completions ORDER BY created, id")]


def test_python_api_records_request_answer_and_timings(history_file: Path, demo_server: Any) -> None:
    """complete() gets a history_id at once; its row holds the body as sent, host, model, texts, usage, times."""
    c = vman_magic.complete("Once upon a time", base_url=demo_server.base_url, temperature=0, **DEMO)
    assert isinstance(c.history_id, int) and not c.cached
    [row] = rows(history_file)
    assert row["id"] == c.history_id
    assert json.loads(row["request"]) == c.request.to_body()
    assert row["host"] == "127.0.0.1" and row["model"] == "vman-demo"
    assert row["prompt"] == "Once upon a time" and row["answer"] == c.text
    assert row["status"] == "complete" and row["reason"] is None and row["cut"] is None
    assert json.loads(row["usage"]) == c.usage.to_dict()
    assert row["ttft"] == c.time_to_first_token and row["elapsed"] == c.elapsed
    assert json.loads(row["choices"]) == [[0, c.finish_reason, len(c.text)]]


def test_load_gives_back_an_equal_completion(history_file: Path, demo_server: Any) -> None:
    """load(id) equals the original in text, every choice, finish reasons, logprobs and usage."""
    c = vman_magic.complete("The cat", base_url=demo_server.base_url, n=3, logprobs=2, seed=4, **DEMO)
    assert c.choices[0].logprobs is not None
    back = vman_magic.load(c.history_id)
    assert back.to_dict() == c.to_dict()
    assert back.choices == c.choices and back.usage == c.usage
    assert [ch.logprobs for ch in back.choices] == [ch.logprobs for ch in c.choices]
    assert back.request == c.request and back.history_id == c.history_id
    assert not back.incomplete and back.error is None


def test_every_face_records(history_file: Path, vman_shell: InteractiveShell, demo_server: Any) -> None:
    """The magic, the panel, Client, AsyncClient, acomplete, batches (grouped too) and sweeps all record."""
    base = demo_server.base_url
    with capture_output():
        assert vman_shell.run_cell("%%complete -o r --max-tokens 4\nmagic face").success
    ids = [vman_shell.user_ns["r"].history_id]
    with vman_magic.Client(base_url=base, model="vman-demo") as client:
        ids.append(client.complete("client face", max_tokens=4).history_id)
    ids.append(asyncio.run(vman_magic.acomplete("acomplete face", base_url=base, **DEMO)).history_id)

    async def with_async_client() -> int | None:
        async with vman_magic.AsyncClient(base_url=base, model="vman-demo") as client:
            return (await client.complete("async client face", max_tokens=4)).history_id

    ids.append(asyncio.run(with_async_client()))
    p = vman_magic.panel(base_url=base, model="vman-demo", prompt="panel face", max_tokens=4)
    ids.append(p.run().history_id)
    p.close()
    batch = vman_magic.complete_many(["batch face a", "batch face b"], base_url=base, progress=False, **DEMO)
    grouped = vman_magic.complete_many(
        ["group face a", "group face b", "group face c"], base_url=base, progress=False, group_size=3, **DEMO
    )
    sweep = vman_magic.run_sweep("sweep face", {"temperature": [0, 1]}, base_url=base, show=False, max_tokens=4)
    ids += [c.history_id for c in [*batch, *grouped, *sweep.completions]]
    assert None not in ids and len(set(ids)) == len(ids) == 12
    stored = {r["id"]: r for r in rows(history_file)}
    assert set(ids) == set(stored)
    assert stored[grouped[1].history_id]["prompt"] == "group face b"  # one entry per grouped prompt
    assert json.loads(stored[grouped[1].history_id]["request"])["prompt"] == "group face b"


def test_failed_and_interrupted_results_are_recorded_with_their_status(history_file: Path, demo_server: Any) -> None:
    """A broken stream is an error with its message; an interrupt is incomplete; the text that arrived is kept."""
    with pytest.raises(vman_magic.APIConnectionError) as info:
        vman_magic.complete("The sea", base_url=url(demo_server, fault="drop_mid_stream"), max_retries=0, **DEMO)
    broken = info.value.partial

    def stop(c: vman_magic.Completion) -> None:
        if c.text:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vman_magic.complete("The hill", base_url=demo_server.base_url, on_update=stop, **DEMO)
    by_prompt = {r["prompt"]: r for r in rows(history_file)}
    error, interrupted = by_prompt["The sea"], by_prompt["The hill"]
    assert error["status"] == "error" and error["reason"].startswith("APIConnectionError: ")
    assert error["answer"] == broken.text and broken.history_id == error["id"]
    assert interrupted["status"] == "incomplete" and interrupted["reason"] == "incomplete: interrupted"
    assert interrupted["answer"]
    back = vman_magic.load(error["id"])
    assert back.incomplete and back.text == broken.text and str(back.error) == error["reason"]


def test_footer_shows_the_history_id(history_file: Path, vman_shell: InteractiveShell) -> None:
    """The footer under a %%complete cell ends with "#id", the number load() takes."""
    with capture_output() as out:
        assert vman_shell.run_cell("%%complete -o r --max-tokens 4\nOnce").success
    c = vman_shell.user_ns["r"]
    assert f"· #{c.history_id}\n" in out.stdout
    assert f"#{c.history_id}" in c._repr_mimebundle_()["text/html"]


def test_search_is_full_text_newest_first_with_model_and_limit(history_file: Path, demo_server: Any) -> None:
    """history(words) finds every word in prompt or answer, newest first; model= and limit= narrow it."""
    base = demo_server.base_url
    for prompt in ("zebra crossing", "the zebra ran", "a quiet river", "zebra and river"):
        vman_magic.complete(prompt, base_url=base, **DEMO)
    assert [e.prompt for e in vman_magic.history("zebra")] == ["zebra and river", "the zebra ran", "zebra crossing"]
    assert [e.prompt for e in vman_magic.history("river ZEBRA")] == ["zebra and river"]
    assert [e.prompt for e in vman_magic.history("zebra", limit=1)] == ["zebra and river"]
    assert vman_magic.history("zebra", model="other-model") == []
    assert len(vman_magic.history()) == 4
    assert vman_magic.history('"; DROP TABLE completions; --') == []  # words are literal, never SQL or FTS syntax
    entry = vman_magic.history("crossing")[0]
    assert entry.completion().text == entry.text and entry.status == "complete" and entry.model == "vman-demo"


def test_history_shows_as_a_table_and_a_dataframe(history_file: Path, demo_server: Any) -> None:
    """The History list has a text and an escaped HTML table, and to_pandas() one row per entry."""
    vman_magic.complete("<b>bold</b> prompt", base_url=demo_server.base_url, **DEMO)
    h = vman_magic.history()
    assert "<b>bold</b>" not in h._repr_html_() and "&lt;b&gt;bold&lt;/b&gt;" in h._repr_html_()
    assert f"#{h[0].id}" in repr(h) and "vman-demo" in repr(h)
    df = h.to_pandas()
    assert list(df["id"]) == [h[0].id] and df.loc[0, "prompt"] == "<b>bold</b> prompt"
    assert df.loc[0, "completion_tokens"] == h[0].usage.completion_tokens


def test_vman_history_magic_lists_searches_and_returns(history_file: Path, vman_shell: InteractiveShell) -> None:
    """%vman history [WORDS] [-m MODEL] [-n N] returns the History shown; bad flags are one-line errors."""
    with capture_output():
        for word in ("alpha", "beta", "alpha beta"):
            assert vman_shell.run_cell(f"%%complete --max-tokens 3\n{word} gamma").success
    h = vman_shell.run_line_magic("vman", "history alpha -n 1")
    assert [e.prompt for e in h] == ["alpha beta gamma"]
    assert len(vman_shell.run_line_magic("vman", "history -m vman-demo")) == 3
    with capture_output() as out:
        vman_shell.run_cell("%vman history -n zero")
    assert "UsageError" in out.stderr and "%vman history" in out.stderr


def test_file_is_private(history_file: Path, demo_server: Any) -> None:
    """The history file and its WAL companions are created readable by this user only (0600)."""
    vman_magic.complete("private", base_url=demo_server.base_url, **DEMO)
    session.flush()
    files = [history_file, *history_file.parent.glob("history.db-*")]
    assert len(files) == 3
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


def test_history_off_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_server: Any) -> None:
    """VMAN_HISTORY=off: no file, no id, and reading says how to turn it on."""
    monkeypatch.setenv("VMAN_HISTORY", "off")
    monkeypatch.chdir(tmp_path)
    session.reset()
    try:
        c = vman_magic.complete("off", base_url=demo_server.base_url, **DEMO)
        assert c.history_id is None and session.location() is None
        with pytest.raises(vman_magic.HistoryError, match="VMAN_HISTORY=off"):
            vman_magic.history()
    finally:
        session.reset()
    assert list(tmp_path.iterdir()) == []


def test_default_file_is_in_the_user_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without VMAN_HISTORY the file is history.db in platformdirs' user data folder (XDG_DATA_HOME on Linux)."""
    if sys.platform != "linux":
        pytest.skip("XDG_DATA_HOME moves the data folder on Linux only")
    monkeypatch.delenv("VMAN_HISTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    session.reset()
    try:
        assert session.location() == tmp_path / "vman-magic" / "history.db"
    finally:
        session.reset()


def test_pause_and_resume_for_the_session(history_file: Path, vman_shell: InteractiveShell) -> None:
    """%vman history off stops recording (ids are None), on starts again."""
    with capture_output() as out:
        vman_shell.run_line_magic("vman", "history off")
        assert vman_shell.run_cell("%%complete -o r --max-tokens 3\nnot kept").success
        paused = vman_shell.user_ns["r"]
        vman_shell.run_line_magic("vman", "history on")
        assert vman_shell.run_cell("%%complete -o r --max-tokens 3\nkept").success
    assert paused.history_id is None and vman_shell.user_ns["r"].history_id is not None
    assert "not recording" in out.stdout and f"recording every completion to {history_file}" in out.stdout
    assert [r["prompt"] for r in rows(history_file)] == ["kept"]


def test_notebook_path_is_recorded(history_file: Path, demo_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Jupyter names the kernel's notebook (JPY_SESSION_NAME), the row keeps it."""
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/analysis.ipynb")
    vman_magic.complete("where", base_url=demo_server.base_url, **DEMO)
    assert rows(history_file)[0]["notebook"] == "/home/me/analysis.ipynb"


def test_several_processes_share_one_file(history_file: Path, demo_server: Any) -> None:
    """Three processes completing at once into one file: every row is there, every id unique."""
    script = textwrap.dedent(
        f"""
        import vman_magic
        ids = [vman_magic.complete(f"proc {{i}}", base_url={demo_server.base_url!r}, model="vman-demo",
                                   max_tokens=2).history_id for i in range(40)]
        print(len(set(ids)))
        """
    )
    env = {**os.environ, "VMAN_HISTORY": str(history_file)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [p.communicate(timeout=90)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0] and outputs == ["40\n"] * 3
    stored = rows(history_file)
    assert len(stored) == 120 and len({r["id"] for r in stored}) == 120


def test_search_without_fts5_falls_back_to_like(history_file: Path, demo_server: Any) -> None:
    """Where SQLite has no FTS5 index, search still finds every word (LIKE, with % and _ taken literally)."""
    for prompt in ("100% sure", "a_b test", "plain words"):
        vman_magic.complete(prompt, base_url=demo_server.base_url, **DEMO)
    session.flush()
    with sqlite3.connect(history_file) as conn:
        conn.executescript("DROP TRIGGER completions_ai; DROP TRIGGER completions_ad; DROP TABLE completions_fts;")
    assert [e.prompt for e in vman_magic.history("100%")] == ["100% sure"]
    assert [e.prompt for e in vman_magic.history("a_b")] == ["a_b test"]
    assert [e.prompt for e in vman_magic.history("words PLAIN")] == ["plain words"]


def test_ids_follow_time_across_processes(
    history_file: Path, demo_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel's reserved ids expire, so a later completion here gets a higher id than another process's earlier one."""
    from vman_magic.logbook import writer

    monkeypatch.setattr(writer, "BLOCK_TTL", 0.0)
    first = vman_magic.complete("first here", base_url=demo_server.base_url, **DEMO).history_id
    script = (
        "import vman_magic\n"
        f"print(vman_magic.complete('then there', base_url={demo_server.base_url!r}, model='vman-demo',"
        " max_tokens=2).history_id)"
    )
    env = {**os.environ, "VMAN_HISTORY": str(history_file)}
    there = int(
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    )
    later = vman_magic.complete("later here", base_url=demo_server.base_url, **DEMO).history_id
    assert first is not None and later is not None and first < there < later
    assert [e.prompt for e in vman_magic.history()] == ["later here", "then there", "first here"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_records_with_its_own_writer(history_file: Path, demo_server: Any) -> None:
    """After fork (multiprocessing's default on Linux) the child starts its own writer; both processes record."""
    vman_magic.complete("parent before", base_url=demo_server.base_url, **DEMO)
    script = (
        "import os, sys, vman_magic\n"
        f"vman_magic.complete('parent', base_url={demo_server.base_url!r}, model='vman-demo', max_tokens=2)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    c = vman_magic.complete('child', base_url={demo_server.base_url!r}, model='vman-demo', max_tokens=2)\n"
        "    vman_magic.logbook.session.flush(); os._exit(0 if c.history_id else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    env = {**os.environ, "VMAN_HISTORY": str(history_file)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert {"parent", "child"} <= {r["prompt"] for r in rows(history_file)}
