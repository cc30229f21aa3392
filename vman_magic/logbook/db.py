"""The history file: opening it safely, its tables, and every SQL statement the package runs.

One SQLite file (stdlib :mod:`sqlite3`) may be shared by several kernels at
once, so:

* **WAL journal.** Readers never wait for the writer and the writer never
  waits for readers; ``synchronous=NORMAL`` keeps every committed
  transaction through a crash of the process (SIGKILL included), which is
  what resuming a batch needs.
* **Short transactions and a busy timeout.** Each transaction inserts what
  is queued at that moment, or reserves a block of ids; another kernel that
  holds the write lock is waited for up to :data:`BUSY_TIMEOUT` seconds.
* **Ids reserved in blocks.** A completion learns its ``history_id`` the
  moment it ends, before its row is written (the writer thread writes
  later). Each process takes a block of ids from the ``meta`` table in one
  short transaction, so two kernels can never hand out the same id, and
  uses it for at most half a minute (see :mod:`.writer`), so ids follow
  time. Lists are ordered by id, newest first: the search index can then
  walk its matches backwards and stop after the first N, instead of
  sorting every match (0.1 ms instead of 100 ms for a word in each of
  100,000 rows). Two kernels writing in the same half minute may
  interleave a little out of time order.
* **Private file.** Created with mode 0600 (prompts and answers may be
  private); SQLite gives its ``-wal`` and ``-shm`` files the same mode.

Full-text search is an FTS5 index over prompts and answers, kept up to date
by triggers. Where SQLite was built without FTS5, search falls back to
``LIKE``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .rows import Row

__all__ = [
    "BUSY_TIMEOUT",
    "COLUMNS",
    "SCHEMA_VERSION",
    "clear",
    "connect",
    "count",
    "find",
    "get",
    "insert",
    "latest_complete",
    "open_for_reading",
    "reserve_ids",
    "search",
]

SCHEMA_VERSION = 1
#: Seconds to wait for another kernel's write transaction before giving up.
BUSY_TIMEOUT = 5.0
#: Extra ``PRAGMA name=value`` run on every connection (tests cap ``max_page_count`` to fill the "disk").
EXTRA_PRAGMAS: dict[str, Any] = {}

COLUMNS = (
    "id", "created", "host", "model", "notebook", "status", "reason", "prompt", "answer", "choices", "logprobs",
    "usage", "request", "response", "ttft", "elapsed", "cache_key", "cut",
)  # fmt: skip
#: The columns a list of entries needs (not logprobs, request or response, which can be large).
LIST_COLUMNS = (
    "id",
    "created",
    "host",
    "model",
    "notebook",
    "status",
    "reason",
    "prompt",
    "answer",
    "choices",
    "usage",
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS completions (
    id        INTEGER PRIMARY KEY,   -- handed out in blocks from meta.next_id
    created   REAL NOT NULL,         -- unix time the result ended
    host      TEXT NOT NULL,         -- the server's host name (no port, no credentials)
    model     TEXT,
    notebook  TEXT,                  -- the kernel's notebook, where Jupyter says it
    status    TEXT NOT NULL,         -- complete | incomplete | error
    reason    TEXT,                  -- why incomplete, or the error message
    prompt    TEXT NOT NULL,         -- for reading and search (token ids as JSON)
    answer    TEXT NOT NULL,         -- every choice's text, a blank line between choices
    choices   TEXT NOT NULL,         -- JSON [[index, finish_reason, length of its text], ...]
    logprobs  TEXT,                  -- JSON, one object (or null) per choice; NULL when none
    usage     TEXT,                  -- JSON, as the server reported it
    request   TEXT NOT NULL,         -- the JSON body as sent (never a header or the key)
    response  TEXT NOT NULL,         -- JSON: the response's id, object, created, model, notes
    ttft      REAL,                  -- seconds to the first token
    elapsed   REAL,                  -- seconds in total
    cache_key TEXT NOT NULL,         -- sha256 of host + canonical body (rows.cache_key)
    cut       TEXT                   -- what was stored cut to fit; NULL when whole
)""",
    "CREATE INDEX IF NOT EXISTS completions_cache ON completions(cache_key) WHERE status = 'complete'",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)",
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('next_id', (SELECT coalesce(max(id), 0) + 1 FROM completions))",
)

_FTS = (
    # columnsize=0: no per-row sizes (they only serve ranking, which lists by id do not use);
    # automerge=16 (below): fewer merges per small transaction. Together they halve the cost
    # of indexing a row as the writer commits a few rows at a time (benchmarks, figure 8a).
    """CREATE VIRTUAL TABLE IF NOT EXISTS completions_fts
    USING fts5(prompt, answer, content='completions', content_rowid='id', columnsize=0)""",
    "INSERT INTO completions_fts(completions_fts, rank) VALUES ('automerge', 16)",
    """CREATE TRIGGER IF NOT EXISTS completions_ai AFTER INSERT ON completions BEGIN
    INSERT INTO completions_fts(rowid, prompt, answer) VALUES (new.id, new.prompt, new.answer);
END""",
    """CREATE TRIGGER IF NOT EXISTS completions_ad AFTER DELETE ON completions BEGIN
    INSERT INTO completions_fts(completions_fts, rowid, prompt, answer) VALUES ('delete', old.id, old.prompt, old.answer);
END""",
)


def _create_private(path: Path) -> None:
    """Create the file (and its folder) readable by this user only, if it does not exist."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    for name, value in EXTRA_PRAGMAS.items():
        conn.execute(f"PRAGMA {name} = {value}")


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the history file for writing: WAL, schema, private mode.

    Raises :class:`sqlite3.Error` or :class:`OSError` for a file that is not a
    database, is locked, read-only or on a full disk; the caller turns that
    into one warning.
    """
    if not path.exists():
        _create_private(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        _configure(conn)
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.OperationalError("cannot switch the history file to WAL mode")
        conn.execute("PRAGMA synchronous = NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"the history file was written by a newer vman-magic (schema {version}); upgrade vman-magic"
            )
        if version < SCHEMA_VERSION:
            _create_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _create_schema(conn: sqlite3.Connection) -> None:
    """Tables, indexes and the search index, in one transaction (two kernels may both try at once).

    The search index is skipped where SQLite lacks FTS5 (search then uses LIKE).
    """
    with transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
        try:
            conn.execute(_FTS[0])
        except sqlite3.OperationalError as exc:
            if "fts5" not in str(exc):
                raise
        else:
            for statement in _FTS[1:]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def open_for_reading(path: Path) -> sqlite3.Connection | None:
    """A connection to read an existing history file; None when there is no file yet."""
    if not path.exists():
        return None
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    _configure(conn)
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error): takes the write lock up front, briefly."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if conn.in_transaction:
        conn.execute("COMMIT")


# --------------------------------------------------------------------------- writing


def reserve_ids(conn: sqlite3.Connection, count: int) -> range:
    """Take ``count`` ids no other process will use, in one short transaction."""
    with transaction(conn):
        row = conn.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        top = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM completions").fetchone()[0]
        start = max(int(row[0]) if row is not None else 1, top)
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('next_id', ?)", (start + count,))
    return range(start, start + count)


_INSERT = f"INSERT INTO completions({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def insert(conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
    """Write ``rows`` in one transaction (every row has its reserved id)."""
    with transaction(conn):
        conn.executemany(_INSERT, [row.values() for row in rows])


def clear(conn: sqlite3.Connection) -> int:
    """Delete every entry; return how many there were. Ids are not reused."""
    with transaction(conn):
        count = int(conn.execute("SELECT count(*) FROM completions").fetchone()[0])
        conn.execute("DELETE FROM completions")
        if _has_table(conn, "completions_fts"):
            conn.execute("INSERT INTO completions_fts(completions_fts) VALUES ('delete-all')")
    conn.execute("VACUUM")
    return count


# --------------------------------------------------------------------------- reading


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM completions").fetchone()[0])


def get(conn: sqlite3.Connection, id: int) -> sqlite3.Row | None:
    """Every column of entry ``id``."""
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM completions WHERE id = ?", (id,)
    ).fetchone()
    return row


def latest_complete(conn: sqlite3.Connection, keys: Iterable[str]) -> dict[str, sqlite3.Row]:
    """For each cache key, the newest complete row stored whole (what the cache may serve)."""
    found: dict[str, sqlite3.Row] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 500):  # SQLite limits the number of ? per statement
        chunk = unique[start : start + 500]
        rows = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM completions WHERE status = 'complete' AND cut IS NULL"
            f" AND cache_key IN ({', '.join('?' * len(chunk))}) ORDER BY id",
            chunk,
        ).fetchall()
        for row in rows:  # lowest id first, so the newest of each key wins
            found[row["cache_key"]] = row
    return found


def find(conn: sqlite3.Connection, *, model: str | None, limit: int) -> list[sqlite3.Row]:
    """The newest ``limit`` entries, of ``model`` if given."""
    where, args = ("WHERE model = ?", [model]) if model else ("", [])
    return conn.execute(
        f"SELECT {', '.join(LIST_COLUMNS)} FROM completions {where} ORDER BY id DESC LIMIT ?", [*args, limit]
    ).fetchall()


def search(conn: sqlite3.Connection, words: Sequence[str], *, model: str | None, limit: int) -> list[sqlite3.Row]:
    """The newest ``limit`` entries whose prompt or answer contains every word (FTS5, else LIKE).

    With FTS5 the index is walked from the highest id down and stops after
    ``limit`` matches, so a word found in every row costs no more than a rare one.
    """
    columns = ", ".join(f"c.{name}" for name in LIST_COLUMNS)
    model_filter, model_args = (" AND c.model = ?", [model]) if model else ("", [])
    if _has_table(conn, "completions_fts"):
        query = " ".join('"' + word.replace('"', '""') + '"' for word in words)  # each word a literal phrase
        sql = (
            f"SELECT {columns} FROM completions_fts f JOIN completions c ON c.id = f.rowid"
            f" WHERE completions_fts MATCH ?{model_filter} ORDER BY f.rowid DESC LIMIT ?"
        )
        return conn.execute(sql, [query, *model_args, limit]).fetchall()
    sql = f"SELECT {columns} FROM completions c WHERE 1"
    likes: list[Any] = []
    for word in words:
        sql += " AND (c.prompt LIKE ? ESCAPE '\\' OR c.answer LIKE ? ESCAPE '\\')"
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        likes += [pattern, pattern]
    sql += f"{model_filter} ORDER BY c.id DESC LIMIT ?"
    return conn.execute(sql, [*likes, *model_args, limit]).fetchall()
