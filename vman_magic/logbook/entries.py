"""Reading the history: :func:`history`, :func:`load`, and the entries they return.

``vman_magic.history("cat", model="vman-demo", limit=20)`` is a
:class:`History` (a list of :class:`HistoryEntry`, newest first) that shows itself as
a compact table; ``entry.completion()`` and ``vman_magic.load(id)`` give back
the :class:`~vman_magic.Completion` as it was. ``%vman history`` shows the
same table.

Reading waits for this process's queued rows first, so what was just
completed is there.
"""

from __future__ import annotations

import datetime
import html
import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import HistoryError, ValidationError
from ..core.models import Completion, Usage
from . import db, session
from .rows import restore

__all__ = ["History", "HistoryEntry", "clear", "history", "load", "size"]

_PREVIEW = 60  # characters of prompt and answer shown per row of the table


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded completion, as listed; :meth:`completion` loads all of it."""

    id: int
    created: datetime.datetime
    """When the result ended (local time)."""
    model: str | None
    prompt: str
    text: str
    """The first choice's text, as ``Completion.text``."""
    status: str
    """``complete``, ``incomplete`` or ``error``."""
    reason: str | None
    """Why it is incomplete, or the error message."""
    host: str
    notebook: str | None
    usage: Usage | None
    choices: int
    path: Path = field(repr=False)

    def completion(self) -> Completion:
        """The full :class:`~vman_magic.Completion` (choices, logprobs, usage, timings)."""
        return load(self.id, path=self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "model": self.model,
            "status": self.status,
            "reason": self.reason,
            "prompt": self.prompt,
            "text": self.text,
            "choices": self.choices,
            "completion_tokens": self.usage.completion_tokens if self.usage is not None else None,
            "host": self.host,
            "notebook": self.notebook,
        }


class History(list[HistoryEntry]):
    """Entries of the history, newest first: a list that shows itself as a table.

    ``to_pandas()`` gives a DataFrame with one row per entry.
    """

    def __init__(
        self, entries: Iterable[HistoryEntry] = (), *, query: str | None = None, path: Path | None = None
    ) -> None:
        super().__init__(entries)
        self.query = query
        self.path = path

    def to_pandas(self) -> Any:
        """A DataFrame: id, created, model, status, reason, prompt, text, choices, tokens, host, notebook."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install 'vman-magic[pandas]'") from None
        columns = list(HistoryEntry.__dataclass_fields__)
        columns = [c for c in columns if c not in ("usage", "path")]
        columns.insert(columns.index("choices") + 1, "completion_tokens")
        frame = pd.DataFrame([e.to_dict() for e in self], columns=columns)
        frame["completion_tokens"] = frame["completion_tokens"].astype("Int64")
        return frame

    def _caption(self) -> str:
        what = f"{len(self)} entr{'y' if len(self) == 1 else 'ies'}"
        if self.query:
            what += f" matching {self.query!r}"
        where = f" in {self.path}" if self.path is not None else ""
        return f"history: {what}, newest first{where}"

    def __repr__(self) -> str:
        lines = [self._caption()]
        for e in self:
            lines.append(
                f"#{e.id:<6} {e.created:%Y-%m-%d %H:%M}  {_mark(e):<2} {(e.model or '')[:20]:<20} "
                f"{_one_line(e.prompt, 30)!s:<30} -> {_one_line(e.text, 40)}"
            )
        if not self:
            lines.append("(nothing recorded yet)" if not self.query else "(no match)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cell = 'style="text-align:left;padding:2px 8px;vertical-align:top;font-family:var(--jp-code-font-family,monospace)"'
        head = "".join(f"<th {cell}>{h}</th>" for h in ("#", "when", "model", "status", "prompt", "answer"))
        rows = []
        for e in self:
            status = e.status if e.reason is None else f"{e.status}: {e.reason}"
            rows.append(
                "<tr>"
                f"<td {cell}>{e.id}</td>"
                f"<td {cell}>{e.created:%Y-%m-%d %H:%M:%S}</td>"
                f"<td {cell}>{html.escape(e.model or '')}</td>"
                f'<td {cell} title="{html.escape(status)}">{html.escape(_mark(e))}</td>'
                f"<td {cell}>{html.escape(_one_line(e.prompt, _PREVIEW))}</td>"
                f"<td {cell}>{html.escape(_one_line(e.text, _PREVIEW))}</td>"
                "</tr>"
            )
        caption = html.escape(self._caption())
        empty = "" if self else f"<p>{'nothing recorded yet' if not self.query else 'no match'}</p>"
        return (
            f'<div class="vman-history"><div style="font-size:12px;color:var(--jp-ui-font-color2,#777)">{caption}</div>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{empty}</div>"
        )


def _mark(e: HistoryEntry) -> str:
    return {"complete": "✓", "incomplete": "⚠", "error": "✗"}.get(e.status, "?")


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# --------------------------------------------------------------------------- reading


def _open(path: Path | None) -> tuple[Path, sqlite3.Connection | None]:
    if path is None:
        session.flush()
        path = session.require_location()
    try:
        return path, db.open_for_reading(path)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the history file {path}: {exc}") from None


def _entry(values: Mapping[str, Any], path: Path) -> HistoryEntry:
    choices = json.loads(values["choices"])
    first = choices[0][2] if choices else 0
    return HistoryEntry(
        id=values["id"],
        created=datetime.datetime.fromtimestamp(values["created"]),
        model=values["model"],
        prompt=values["prompt"],
        text=values["answer"][:first],
        status=values["status"],
        reason=values["reason"],
        host=values["host"],
        notebook=values["notebook"],
        usage=Usage.from_dict(json.loads(values["usage"])) if values["usage"] else None,
        choices=len(choices),
        path=path,
    )


def history(
    query: str | None = None, *, model: str | None = None, limit: int = 20, path: Path | None = None
) -> History:
    """The newest ``limit`` recorded completions, those matching ``query`` if given.

    ``query`` is words that must all occur in the prompt or the answer (each
    word matched whole, case-insensitively); ``model`` keeps one model's
    entries. ``path`` reads another history file than this session's.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"limit must be a whole number >= 1, got {limit!r}", param="limit")
    words = query.split() if query else []
    path, conn = _open(path)
    if conn is None:
        return History(query=query, path=path)
    try:
        rows = db.search(conn, words, model=model, limit=limit) if words else db.find(conn, model=model, limit=limit)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the history file {path}: {exc}") from None
    finally:
        conn.close()
    return History((_entry(dict(r), path) for r in rows), query=query, path=path)


def load(id: int, *, path: Path | None = None) -> Completion:
    """The recorded :class:`~vman_magic.Completion` ``id`` (its ``history_id``), as it was."""
    if isinstance(id, bool) or not isinstance(id, int):
        raise ValidationError(f"load takes a history id (a whole number, as shown after #), got {id!r}", param="id")
    path, conn = _open(path)
    if conn is None:
        raise HistoryError(f"history #{id} does not exist: nothing is recorded in {path} yet")
    try:
        row = db.get(conn, id)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the history file {path}: {exc}") from None
    finally:
        conn.close()
    if row is None:
        raise HistoryError(f"history #{id} does not exist in {path}; %vman history (or vman_magic.history()) lists ids")
    return restore(dict(row))


def clear(path: Path | None = None) -> int:
    """Delete every entry of the history file; return how many there were."""
    path, conn = _open(path)
    if conn is None:
        return 0
    try:
        return db.clear(conn)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot clear the history file {path}: {exc}") from None
    finally:
        conn.close()


def size(path: Path | None = None) -> int:
    """How many entries the history file holds."""
    path, conn = _open(path)
    if conn is None:
        return 0
    try:
        return db.count(conn)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the history file {path}: {exc}") from None
    finally:
        conn.close()
