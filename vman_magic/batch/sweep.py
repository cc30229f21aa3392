"""Parameter sweeps for teaching: one prompt, every combination of some settings.

``run_sweep("Once upon a time", {"temperature": [0, 0.7, 1.4]}, seed=1)``
runs the prompt once per combination (through the batch machinery, so with
one connection pool, bounded concurrency and the shared rate-limit gate),
shows the outputs side by side while they stream in, labelled by setting, and
returns a :class:`SweepResult` with a tidy table (one row per setting and
choice) and the completions.

In a kernel the grid is one display handle redrawn at most every
``REFRESH_INTERVAL`` with escaped HTML; in a terminal or script a text table
is printed once at the end. ``%%complete --sweep temperature=0,0.7,1.4`` is
parsed by :func:`parse_sweep`.
"""

from __future__ import annotations

import difflib
import html
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..client.client import settings_at_the_door
from ..core.config import Secret, Settings, as_secret
from ..core.errors import ValidationError
from ..core.kernel import in_kernel
from ..core.models import Completion, CompletionRequest, Prompt
from ..core.pacing import Pacer
from ..core.params import PARAMS, PARAMS_BY_NAME
from ..core.render import FOOTER_STYLE, card_html, grid_html
from .engine import Run, Watcher, interrupts_deferred, prepare
from .frame import error_text
from .many import BatchInterrupted, BatchResult, run_blocking
from .progress import Tally

__all__ = ["SweepResult", "parse_sweep", "run_sweep"]

#: Parameter kinds a sweep can vary (the structured ones make no sense on a grid axis).
SWEEPABLE = ("int", "float", "bool", "str")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


# --------------------------------------------------------------------------- parsing


def parse_sweep(specs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``["temperature=0,0.7,1.4", "top-p=0.5,1"]`` into ``{"temperature": [0.0, 0.7, 1.4], ...}``.

    Names may use ``-`` or ``_``; every value is converted to the parameter's
    type and checked against its allowed range, so a typo fails here with a
    message that says what to change, before anything is sent.
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, raw = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ValidationError(f"--sweep {spec!r}: write NAME=V1,V2,... e.g. temperature=0,0.7,1.4", param="sweep")
        check_name(name)
        if name in grid:
            raise ValidationError(
                f"--sweep names {name} twice: give all its values once, e.g. {name}=A,B,C", param=name
            )
        values = [v.strip() for v in raw.split(",")]
        if not raw.strip() or any(v == "" for v in values):
            raise ValidationError(
                f"--sweep {name}: empty value in {raw!r}; list values separated by commas", param=name
            )
        grid[name] = [_convert(name, v) for v in values]
    return grid


def check_name(name: str) -> None:
    """Raise unless ``name`` is an API parameter a sweep can vary."""
    spec = PARAMS_BY_NAME.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, [p.name for p in PARAMS], n=1)
        hint = f"did you mean {close[0]}?" if close else "sweepable: " + ", ".join(_sweepable())
        raise ValidationError(f"cannot sweep {name!r}: not a Completions parameter; {hint}", param=name)
    if spec.kind not in SWEEPABLE:
        raise ValidationError(
            f"cannot sweep {name}: it is not a single number, flag or string; sweepable: {', '.join(_sweepable())}",
            param=name,
        )


def _sweepable() -> list[str]:
    return [p.name for p in PARAMS if p.kind in SWEEPABLE]


def _convert(name: str, raw: str) -> Any:
    kind = PARAMS_BY_NAME[name].kind
    value: Any = raw
    try:
        if kind == "int":
            value = int(raw)
        elif kind == "float":
            value = float(raw)
    except ValueError:
        raise ValidationError(
            f"--sweep {name}: {raw!r} is not {'an integer' if kind == 'int' else 'a number'}", param=name
        ) from None
    if kind == "bool":
        if raw.lower() not in _TRUE | _FALSE:
            raise ValidationError(f"--sweep {name}: {raw!r} is not true or false", param=name)
        value = raw.lower() in _TRUE
    _check_value(name, value)
    return value


def _check_value(name: str, value: Any) -> None:
    """Validate one value with the request's own rules, so the messages are the same."""
    try:
        CompletionRequest.build("sweep", "sweep", stream=False, **{name: value})
    except ValidationError as exc:
        raise ValidationError(f"--sweep {name}={value!r}: {exc.message}", param=name) from None


# --------------------------------------------------------------------------- running


@dataclass
class SweepResult:
    """What a sweep returns: ``settings[i]`` produced ``completions[i]``.

    ``table`` is tidy: one row per setting and choice, with a column per swept
    parameter and ``choice``, ``text``, ``finish_reason``, ``tokens`` (the
    completion tokens the server reported for that setting: with ``n > 1``
    the total of its choices) and ``error`` (``""`` when it worked, as in
    ``complete_frame``). A pandas DataFrame when pandas is installed, else a
    list of dicts.
    """

    settings: list[dict[str, Any]]
    completions: BatchResult
    table: Any

    def __repr__(self) -> str:
        return f"<SweepResult {len(self.settings)} settings; .table, .completions, .settings>"


def run_sweep(
    prompt: Prompt,
    grid: Mapping[str, Sequence[Any]],
    *,
    n: int = 1,
    show: bool = True,
    concurrency: int | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | Secret | None = None,
    timeout: Any = None,
    max_retries: int | None = None,
    settings: Settings | None = None,
    cache: bool | None = None,
    **params: Any,
) -> SweepResult:
    """Run ``prompt`` for every combination in ``grid``; show them side by side; return a table.

    ``params`` are the API parameters shared by every run (``max_tokens=``,
    ``seed=`` makes the sweep repeatable). Streams by default so the grid
    fills in live; pass ``stream=False`` for ``best_of``. ``show=False``
    draws nothing. ``cache=True`` takes settings the history answers
    completely from there (a sweep without ``seed`` samples, so only ask
    for it to see the same texts again). ``rpm``/``tpm``
    and ``concurrency`` pace the runs as in :func:`~vman_magic.complete_many`.
    An interrupt raises
    :class:`~vman_magic.batch.many.BatchInterrupted` whose ``.partial`` is the
    :class:`SweepResult` so far. ``settings=`` takes a resolved
    :class:`~vman_magic.Settings` instead of the connection arguments.
    """
    api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
    if not grid:
        raise ValidationError(
            "the sweep grid is empty: give at least one parameter and its values, e.g. {'temperature': [0, 0.7, 1.4]}",
            param="sweep",
        )
    for name, values in grid.items():
        check_name(name)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValidationError(f"sweep values of {name} must be a non-empty list, got {values!r}", param=name)
        if name in params or (name == "n" and n != 1):
            raise ValidationError(f"{name} is both swept and given as an argument: drop one of them", param=name)
    names = list(grid)
    combos = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in names))]
    shared = {"stream": True, **params}
    if "n" not in grid:
        shared["n"] = n
    jobs = [(prompt, {**shared, **setting}) for setting in combos]
    given = {"base_url": base_url, "api_key": api_key, "timeout": timeout, "max_retries": max_retries}
    connection = settings_at_the_door(settings, given)
    run = prepare(jobs, settings=connection, model=model, concurrency=concurrency, cache=cache, rpm=rpm, tpm=tpm)
    try:
        completions = run_blocking(run, _view(combos, show))
    except BatchInterrupted as interrupt:
        with interrupts_deferred():  # a second Ctrl-C while the table is built must not lose it
            partial = SweepResult(combos, interrupt.partial, tidy(combos, interrupt.partial))
        raise BatchInterrupted(interrupt.args[0].replace("prompts", "settings"), partial) from None
    return SweepResult(combos, completions, tidy(combos, completions))


def tidy(settings: Sequence[Mapping[str, Any]], completions: Sequence[Completion]) -> Any:
    """One row per setting and choice: a DataFrame when pandas is installed, else a list of dicts."""
    rows: list[dict[str, Any]] = []
    for setting, c in zip(settings, completions, strict=True):
        common = {
            "tokens": c.usage.completion_tokens if c.usage is not None else None,
            "error": error_text(c),
        }
        if not c.choices:  # failed before any text: one row, so the setting is not silently missing
            rows.append({**setting, "choice": 0, "text": "", "finish_reason": "", **common})
        for choice in c.choices:
            rows.append(
                {
                    **setting,
                    "choice": choice.index,
                    "text": choice.text,
                    "finish_reason": choice.finish_reason or "",
                    **common,
                }
            )
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


def label(setting: Mapping[str, Any]) -> str:
    """``temperature=0.7 top_p=1`` for a grid cell's heading."""
    return " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in setting.items())


# --------------------------------------------------------------------------- views

_Cell = tuple[str, tuple[str, ...], str]  # label, texts of the choices, status


@dataclass(frozen=True)
class _Snapshot:
    """What the grid shows at one moment: a card per setting, and the totals for its footer."""

    cells: tuple[_Cell, ...]
    tally: Tally


def _cells(settings: Sequence[Mapping[str, Any]], run: Run) -> _Snapshot:
    cells: list[_Cell] = []
    done = failed = incomplete = prompt_tokens = completion_tokens = 0
    for index, setting in enumerate(settings):
        c = run.current(index)
        if c is None:
            cells.append((label(setting), (), "waiting"))
            continue
        settled = run.slots[index] is not None
        status = "running"
        if c.error is not None:
            status = f"error: {type(c.error).__name__}: {c.error}"
            failed += settled
        elif settled and c.cut_short:
            status = f"incomplete: {c.cut_short}"
            incomplete += 1
        elif settled:
            status = ", ".join(str(ch.finish_reason) for ch in c.choices) or "done"
            done += 1
        if c.usage is not None:
            prompt_tokens += c.usage.prompt_tokens
            completion_tokens += c.usage.completion_tokens
        cells.append((label(setting), tuple(c.texts), status))
    tally = Tally(len(settings), done, failed, prompt_tokens, completion_tokens, incomplete=incomplete)
    return _Snapshot(tuple(cells), tally)


def footer_line(tally: Tally, elapsed: float | None = None) -> str:
    """The grid's totals, worded like the ``-n`` grid's footer: ``3 settings: 3 done · 75 tokens (+15 prompt)``."""
    parts = [f"{tally.total} setting{'s' if tally.total != 1 else ''}: {tally.done} done"]
    if tally.incomplete:
        parts[0] += f", {tally.incomplete} incomplete (cut short by the server)"
    if tally.failed:
        parts[0] += f", {tally.failed} failed"
    running = tally.total - tally.finished
    if running:
        parts[0] += f", {running} to go"
    if tally.prompt_tokens or tally.completion_tokens:
        parts.append(f"{tally.completion_tokens:,} tokens (+{tally.prompt_tokens:,} prompt)")
    if elapsed is not None:
        parts.append(f"{elapsed:.1f} s")
    return " · ".join(parts)


class GridView:
    """The live side-by-side grid in a kernel: one display handle, redrawn when changed and paced.

    Every redraw re-sends the whole grid, so redraws are paced by a
    :class:`~vman_magic.core.pacing.Pacer` (the bytes sent stay within a few
    times the final grid plus a budget per second; ``paced=False`` redraws on
    every change, for the benchmark's before/after); the end state is always drawn.
    """

    def __init__(
        self, settings: Sequence[Mapping[str, Any]], pacer: Pacer | None = None, *, paced: bool = True
    ) -> None:
        from IPython.display import display

        self._settings = settings
        self._version = -1
        self._started = time.perf_counter()
        self._cache = _Snapshot(tuple((label(s), (), "waiting") for s in settings), Tally(len(settings)))
        self._shown: _Snapshot | None = None
        self._pacer = (pacer or Pacer()) if paced else None
        self._handle = display(_bundle(self._cache), raw=True, display_id=True)  # type: ignore[no-untyped-call]

    def snapshot(self, run: Run) -> _Snapshot:
        if run.version != self._version:  # runs on the batch loop: reads only, no text joins elsewhere
            self._version = run.version
            self._cache = _cells(self._settings, run)
        return self._cache

    def render(self, snap: _Snapshot) -> None:
        if snap is self._shown:
            return
        if self._pacer is not None:
            size, now = _size(snap), time.monotonic()
            if not self._pacer.due(size, now):
                return
            self._pacer.sent(size, now)
        self._shown = snap
        self._handle.update(_bundle(snap), raw=True)

    def close(self, snap: _Snapshot) -> None:
        self._shown = snap
        self._handle.update(_bundle(snap, time.perf_counter() - self._started), raw=True)


def _size(snap: _Snapshot) -> int:
    """Characters of a grid's content: what a redraw re-sends, give or take the markup."""
    return sum(len(heading) + len(status) + sum(len(t) for t in texts) for heading, texts, status in snap.cells)


class TextView:
    """Terminals and scripts: nothing while running, one text table at the end."""

    def __init__(self, settings: Sequence[Mapping[str, Any]]) -> None:
        self._settings = settings

    def snapshot(self, run: Run) -> _Snapshot:
        return _cells(self._settings, run)

    def render(self, snap: _Snapshot) -> None:
        pass

    def close(self, snap: _Snapshot) -> None:
        print(text_table(snap))


class _SilentView:
    def snapshot(self, run: Run) -> None:
        return None

    def render(self, snap: None) -> None:
        pass

    def close(self, snap: None) -> None:
        pass


def _view(settings: Sequence[Mapping[str, Any]], show: bool) -> Watcher[Any]:
    if not show:
        return _SilentView()
    return GridView(settings) if in_kernel() else TextView(settings)


def text_table(snap: _Snapshot, width: int = 72) -> str:
    """Plain-text grid: one block per setting, one line per choice, the totals last."""
    lines: list[str] = []
    for heading, texts, status in snap.cells:
        lines.append(f"== {heading} [{status}]")
        for j, text in enumerate(texts or ("",)):
            flat = text.replace("\n", "⏎ ")
            flat = flat if len(flat) <= width else flat[: width - 1] + "…"
            lines.append(f"   {j}: {flat}" if len(texts) > 1 else f"   {flat}")
    lines.append("── " + footer_line(snap.tally))
    return "\n".join(lines)


def _bundle(snap: _Snapshot, elapsed: float | None = None) -> dict[str, str]:
    """The grid as escaped HTML (cards like the ``-n`` grid's, totals in a footer) and as text."""
    cards = []
    for heading, texts, status in snap.cells:
        cards.append(card_html(heading, texts, status))
    footer = f'<div class="vman-footer" style="{FOOTER_STYLE}">{html.escape(footer_line(snap.tally, elapsed))}</div>'
    return {"text/html": f'<div class="vman-sweep">{grid_html(cards)}{footer}</div>', "text/plain": text_table(snap)}
