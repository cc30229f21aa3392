"""A history file that cannot be used never breaks a completion: one warning line, history off, text kept.

Each case makes the fault for real on a file of its own: garbage bytes, a
write lock held by another connection, a read-only file, a path whose folder
cannot exist, a database that is full.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import vman_magic
from vman_magic.logbook import db, rows, session

DEMO = {"model": "vman-demo", "max_tokens": 6}


def two_completions(server: Any) -> list[vman_magic.Completion]:
    """Two completions through the broken history; both must work."""
    out = [vman_magic.complete(f"fault {i}", base_url=server.base_url, **DEMO) for i in range(2)]
    session.flush()
    assert all(c.text and not c.incomplete for c in out)
    return out


def one_warning(err: str, reason: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("warning: history is off for this session: cannot ")
    assert reason in lines[0] and lines[0].endswith("completions go on without it")


def test_corrupt_file(history_file: Path, demo_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not a database: the completions work, one warning, no ids, recording off."""
    history_file.write_bytes(b"this is not a database, just text that was here before " * 100)
    completions = two_completions(demo_server)
    assert [c.history_id for c in completions] == [None, None]
    one_warning(capsys.readouterr().err, "file is not a database")
    assert not session.recording()
    with pytest.raises(vman_magic.HistoryError, match="cannot read the history file"):
        vman_magic.history()


def test_locked_file(
    history_file: Path, demo_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another kernel holds the write lock past the busy timeout: completions go on, one warning."""
    db.connect(history_file).close()
    monkeypatch.setattr(db, "BUSY_TIMEOUT", 0.2)
    holder = sqlite3.connect(history_file, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        completions = two_completions(demo_server)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert completions[1].history_id is None
    one_warning(capsys.readouterr().err, "database is locked")


def test_lock_shorter_than_the_busy_timeout_is_waited_for(history_file: Path, demo_server: Any) -> None:
    """A short write by another kernel only delays the row, off the display path: nothing is lost."""
    import threading

    db.connect(history_file).close()
    holder = sqlite3.connect(history_file, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.5, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        c = vman_magic.complete("waited", base_url=demo_server.base_url, **DEMO)
        assert c.text and not c.incomplete
    finally:
        release.join()
        holder.close()
    [entry] = vman_magic.history()
    assert session.recording() and entry.prompt == "waited" and entry.id == c.history_id
    assert vman_magic.load(entry.id).text == c.text


def test_read_only_file(
    history_file: Path, demo_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only database: completions go on, one warning; what was recorded before can still be read."""
    vman_magic.complete("before", base_url=demo_server.base_url, **DEMO)
    session.reset()
    if os.geteuid() == 0:  # root writes through file modes; SQLite's own read-only switch is the same error
        monkeypatch.setitem(db.EXTRA_PRAGMAS, "query_only", "ON")
    else:
        for path in history_file.parent.iterdir():
            path.chmod(0o444)
        history_file.parent.chmod(0o555)
    try:
        two_completions(demo_server)
        one_warning(capsys.readouterr().err, "readonly database")
        monkeypatch.delitem(db.EXTRA_PRAGMAS, "query_only", raising=False)
        assert [e.prompt for e in vman_magic.history()] == ["before"]
    finally:
        history_file.parent.chmod(0o755)
        for path in history_file.parent.iterdir():
            path.chmod(0o644)


def test_folder_that_cannot_exist(
    tmp_path: Path, demo_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """VMAN_HISTORY under a regular file: the folder cannot be made; completions go on, one warning."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("VMAN_HISTORY", str(blocker / "history.db"))
    session.reset()
    try:
        two_completions(demo_server)
    finally:
        session.reset()
    one_warning(capsys.readouterr().err, f"{blocker}")


def test_missing_folder_is_created(tmp_path: Path, demo_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file in folders that do not exist yet: they are made (0700) and recording works."""
    path = tmp_path / "new" / "deeper" / "history.db"
    monkeypatch.setenv("VMAN_HISTORY", str(path))
    session.reset()
    try:
        c = vman_magic.complete("fresh", base_url=demo_server.base_url, **DEMO)
        assert vman_magic.load(c.history_id).text == c.text
    finally:
        session.reset()
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_full_disk(
    history_file: Path, demo_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database cannot grow (SQLite's page limit, as on a full disk): completions go on, one warning."""
    conn = db.connect(history_file)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    monkeypatch.setitem(db.EXTRA_PRAGMAS, "max_page_count", pages)
    big = "a long prompt that does not fit " * 400
    for _ in range(2):
        c = vman_magic.complete(big, base_url=demo_server.base_url, **DEMO)
        assert c.text and not c.incomplete
    session.flush()
    one_warning(capsys.readouterr().err, "database or disk is full")
    assert not session.recording()


def test_too_large_answer_is_stored_cut_and_never_served(
    history_file: Path, demo_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer over the size limit is stored cut, marked, noted on load, and not served by the cache."""
    monkeypatch.setattr(rows, "MAX_STORED_CHARS", 10)
    c = vman_magic.complete("Long", base_url=demo_server.base_url, temperature=0, logprobs=1, cache=True, **DEMO)
    assert len(c.text) > 10
    back = vman_magic.load(c.history_id)
    assert back.text == c.text[:10] and back.choices[0].logprobs is None
    assert any("stored this result cut to fit: its text and logprobs were too large" in note for note in back.notes), (
        back.notes
    )
    sent = demo_server.stats.completions
    again = vman_magic.complete("Long", base_url=demo_server.base_url, temperature=0, logprobs=1, cache=True, **DEMO)
    assert not again.cached and demo_server.stats.completions == sent + 1


def test_clear_asks_first(history_file: Path, vman_shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    """%vman history --clear asks; "n" keeps everything, "y" deletes; --yes does not ask."""
    with capture_output():
        assert vman_shell.run_cell("%%complete --max-tokens 3\nkeep me").success
    answers = iter(["n", "y"])
    questions: list[str] = []
    monkeypatch.setattr(builtins, "input", lambda q="": questions.append(q) or next(answers))
    with capture_output() as out:
        vman_shell.run_line_magic("vman", "history --clear")
        assert len(vman_magic.history()) == 1
        vman_shell.run_line_magic("vman", "history --clear")
        assert len(vman_magic.history()) == 0
        assert vman_shell.run_cell("%%complete --max-tokens 3\nagain").success
        vman_shell.run_line_magic("vman", "history --clear --yes")
    assert len(questions) == 2 and "Delete all 1 recorded completions" in questions[0]
    assert "nothing deleted" in out.stdout and out.stdout.count("deleted 1 completions") == 2
    assert vman_magic.history() == []
    with capture_output() as out:
        vman_shell.run_cell("%vman history --clear alpha")
    assert "UsageError" in out.stderr


def test_load_of_an_unknown_id_says_where_to_look(history_file: Path, demo_server: Any) -> None:
    """load() of an id that is not there, or of a non-number, is a one-line error saying what to do."""
    vman_magic.complete("exists", base_url=demo_server.base_url, **DEMO)
    with pytest.raises(vman_magic.HistoryError, match=r"history #999999 does not exist .* lists ids"):
        vman_magic.load(999999)
    with pytest.raises(vman_magic.ValidationError, match="a whole number"):
        vman_magic.load("7")  # type: ignore[arg-type]
