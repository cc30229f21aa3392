"""``%%complete --over NAME`` and ``%%complete --sweep NAME=V1,V2,...``: batches from the magic.

The magic parses the flags; this module only translates them into calls of the
batch layer, which does the real work:

* ``--over`` a list (or any non-string iterable) renders the cell once per
  item, with ``{item}`` and ``{index}`` on top of the notebook's variables,
  and runs :func:`~vman_magic.complete_many`; the result is a
  :class:`~vman_magic.BatchResult`.
* ``--over`` a DataFrame runs :func:`~vman_magic.complete_frame`: ``{column}``
  fields come from the row (columns only, so a typo is caught before
  anything is sent); the result is a new frame with ``completion``,
  ``completion_finish_reason``, ``completion_tokens`` and ``completion_error``.
* ``--sweep`` (repeatable) runs :func:`~vman_magic.run_sweep` over every
  combination; the result is a :class:`~vman_magic.SweepResult`.
* ``--rpm N`` / ``--tpm N`` are the batch's request and token budgets per
  minute; without them it learns the server's limits (see
  :mod:`vman_magic.batch.budget`).

The rules of a single ``%%complete`` hold: every API flag applies to every
request, requests stream unless ``--no-stream`` (so an interrupt keeps the text
that arrived; ``--best-of`` needs ``--no-stream``), ``--dry-run`` sends
nothing, and the result lands in ``_completion`` (and ``-o NAME``) *before*
any error is raised. One failed item does not fail the cell (it is in the
result and the summary counts it); a batch in which *every* item failed does,
since that is a wrong key, server or model rather than a bad item, and "Run
All" must stop there.

Imported only when one of the two flags is used, so ``%load_ext`` stays cheap;
pandas and tqdm are in turn imported by the batch layer only when needed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import ChainMap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from IPython.core.error import UsageError

from ..batch.frame import complete_frame, render_prompts
from ..batch.many import BatchInterrupted, BatchResult, complete_many
from ..batch.sweep import SweepResult, label, parse_sweep, run_sweep
from ..core.config import Settings, ensure_server
from ..core.errors import ValidationError, VmanError
from ..core.models import CompletionRequest
from ..core.template import Rendered, render
from .messages import require_model, shorten, show_demo_notice

__all__ = ["FRAME_COLUMN", "run_batch"]

#: The column ``--over`` a DataFrame writes the text into (plus ``_finish_reason``, ``_tokens``, ``_error``).
FRAME_COLUMN = "completion"
DRY_RUN_PROMPTS = 3  # how many rendered prompts ``--dry-run --over`` shows
SHOWN_FAILURES = 3  # how many failed items are named, one line each, after a batch


def run_batch(
    user_ns: dict[str, Any], args: argparse.Namespace, template: str, params: dict[str, Any], settings: Settings
) -> Any:
    """Run a ``%%complete`` cell that has ``--over`` or ``--sweep``; ``params`` are its API flags.

    ``user_ns`` is the notebook's namespace: where ``--over`` finds its items,
    ``{name}`` its values, and the result is stored (and returned; None
    for ``--dry-run``). ``settings`` are the cell's, resolved once by the
    magic; the whole batch uses them.
    """
    if args.over is not None and args.sweep:
        raise UsageError("--over and --sweep cannot be combined: sweep one prompt, or run one setting over the items")
    if args.show_probs:
        raise UsageError("--show-probs shows one completion: drop it here, and call r[i].show_probabilities() after")
    if args.over is not None and args.no_template:
        raise UsageError("--over fills {item} or {column} in the cell for each item: drop --no-template")
    for flag, value, unit in (("--rpm", args.rpm, "requests"), ("--tpm", args.tpm, "tokens")):
        if value is not None and not 0 < value < float("inf"):
            raise UsageError(
                f"{flag} must be a number > 0 ({unit} per minute), got {value:g}; "
                "leave it out to learn the limit from the server"
            )
    model = require_model(settings)
    stream = not args.no_stream
    job = (
        _Over(user_ns, args, settings, model, stream)
        if args.over is not None
        else _Sweep(user_ns, args, settings, model, stream)
    )
    job.run(template, params)
    return job.result


class _Job:
    """What both flags share: the magic's namespace, connection flags, storing and failing."""

    def __init__(
        self, user_ns: dict[str, Any], args: argparse.Namespace, settings: Settings, model: str, stream: bool
    ) -> None:
        self.user_ns = user_ns
        self.args = args
        self.settings = settings
        self.result: Any = None  # what was stored (None after --dry-run)
        self.model = model
        self.stream = stream

    def connect(self) -> dict[str, Any]:
        """About to send: the batch layer's arguments (the demo starts here if nothing is set) and the batch flags."""
        self.settings = ensure_server(self.settings)
        if self.settings.is_demo:
            show_demo_notice()
        return {
            "settings": self.settings, "model": self.model, "cache": self.args.cache,
            "rpm": self.args.rpm, "tpm": self.args.tpm,
        }  # fmt: skip

    def store(self, result: Any) -> None:
        """``_completion`` and ``-o NAME``, like a single completion (and before any error is raised)."""
        self.result = result
        self.user_ns["_completion"] = result
        if self.args.output:
            self.user_ns[self.args.output] = result

    def where(self) -> str:
        return " and ".join(f"`{n}`" for n in (self.args.output, "_completion") if n)

    def interrupted(self, interrupt: BatchInterrupted, finished: int, total: int, unit: str) -> NoReturn:
        """Store the partial result and re-raise the interrupt as one line (the cell fails, Run All stops)."""
        self.store(interrupt.partial)
        shorten(
            interrupt, f"BatchInterrupted: {finished} of {total} {unit} finished", f"; results so far in {self.where()}"
        )
        raise interrupt

    def report(self, failures: Sequence[tuple[str, str]], total: int, unit: str) -> None:
        """Name the first failures; fail the cell when nothing succeeded (one line then says it all)."""
        if not total:
            print(f"no {unit}: nothing was sent")
        elif len(failures) == total:
            error = VmanError(f"all {total} {unit} failed, e.g. {failures[0][0]}: {failures[0][1]}")
            shorten(error, f"VmanError: {error}", f" (results in {self.where()})")
            raise error
        for where, message in failures[:SHOWN_FAILURES]:
            print(f"{where} failed: {message}")
        if len(failures) > SHOWN_FAILURES:
            print(f"... and {len(failures) - SHOWN_FAILURES} more")

    def build(self, prompt: str, params: Mapping[str, Any]) -> CompletionRequest:
        """The request a batch would send, for ``--dry-run`` (a bad flag becomes a UsageError)."""
        try:
            return CompletionRequest.build(self.model, prompt, stream=self.stream, **params)
        except ValidationError as exc:
            raise UsageError(str(exc)) from None

    def print_request(self, request: CompletionRequest, what: str) -> None:
        print(f"\nPOST {self.settings.base_url or 'http://127.0.0.1:<port>/v1'}/completions   ({what})")
        print(json.dumps(request.to_body(), ensure_ascii=False, indent=2))


# --------------------------------------------------------------------------- --over


class _Over(_Job):
    """``--over NAME``: the cell's template once per item of a list or row of a DataFrame."""

    def run(self, template: str, params: dict[str, Any]) -> None:
        name = self.args.over
        value = _items(self.user_ns, name)
        if _is_frame(value):
            self._frame(name, value, template, params)
        elif _small(value):
            self._list(name, list(value), template, params)
        else:
            self._lazy(name, value, template, params)

    def _list(self, name: str, items: list[Any], template: str, params: dict[str, Any]) -> None:
        count = DRY_RUN_PROMPTS if self.args.dry_run else len(items)
        rendered = [self._render(template, index, item) for index, item in enumerate(items[:count])]
        if self.args.dry_run:
            self._dry_run(f"--over {name}", len(items), "item", [f"[{i}]" for i in range(len(rendered))], rendered)
            if rendered:
                self.print_request(self.build(rendered[0].text, params), "item 0")
            return
        if rendered and rendered[0].unresolved:
            print(_unresolved_note(rendered[0]))
        self._send([r.text for r in rendered], params)

    def _send(self, prompts: Iterable[Any], params: dict[str, Any]) -> None:
        """Send the items' prompts as one batch; store and report the result, or the partial one on interrupt.

        ``prompts`` are strings, or (lazily rendered items only) a ``ValidationError``
        that the batch turns into that one item's failure.
        """
        connection = self.connect()
        try:
            result = complete_many(prompts, stream=self.stream, **connection, **params)
        except ValidationError as exc:
            raise UsageError(str(exc)) from None
        except BatchInterrupted as interrupt:
            partial: BatchResult = interrupt.partial
            self.interrupted(interrupt, sum(not c.incomplete for c in partial), len(partial), "items")
        self._finish(result)

    def _finish(self, result: BatchResult) -> None:
        self.store(result)
        failures = [(f"item {i}", f"{type(c.error).__name__}: {c.error}") for i, c in enumerate(result) if c.error]
        self.report(failures, len(result), "items")

    def _lazy(self, name: str, iterable: Any, template: str, params: dict[str, Any]) -> None:
        """An iterable that is long, unsized or an iterator: read item by item, never all at once.

        ``range(10**9)`` or ``itertools.count()`` work: ``--dry-run`` renders
        the first few, a real run sends as the workers need items (memory
        holds the results, not the input) until the end or an interrupt.
        The first item is rendered here, so a template error still fails the
        cell before anything is sent; a later item's template error fails that item.
        """
        total = _length(iterable)
        items = iter(iterable)
        head = list(itertools.islice(items, DRY_RUN_PROMPTS if self.args.dry_run else 1))
        rendered = [self._render(template, index, item) for index, item in enumerate(head)]
        if self.args.dry_run:
            self._dry_run(f"--over {name}", total, "item", [f"[{i}]" for i in range(len(rendered))], rendered)
            if items is iterable and head:
                print(f"note: {name} is an iterator: showing these used them up; make it again before the real run")
            if rendered:
                self.print_request(self.build(rendered[0].text, params), "item 0")
            return
        if not rendered:
            self._finish(BatchResult())
            return
        if rendered[0].unresolved:
            print(_unresolved_note(rendered[0]))

        def prompts() -> Iterator[str | ValidationError]:  # runs on the batch's thread, one item at a time
            yield rendered[0].text
            for index, item in enumerate(items, start=1):
                try:
                    yield self._render(template, index, item).text
                except UsageError as exc:
                    yield ValidationError(str(exc), param="prompt")

        self._send(_Sized(prompts(), total), params)

    def _frame(self, name: str, df: Any, template: str, params: dict[str, Any]) -> None:
        if self.args.dry_run:
            head = df.head(DRY_RUN_PROMPTS)
            prompts = self._frame_prompts(head, template)
            labels = [f"[{i!r}]" for i in head.index]
            self._dry_run(f"--over {name}", len(df), "row", labels, [Rendered(p) for p in prompts])
            if prompts:
                self.print_request(self.build(prompts[0], params), f"row {head.index[0]!r}")
            return
        self._frame_prompts(df.head(1), template)  # a field that is no column fails here, before the progress bar
        connection = self.connect()
        try:
            frame = complete_frame(df, template, out=FRAME_COLUMN, stream=self.stream, **connection, **params)
        except ValidationError as exc:
            raise UsageError(str(exc)) from None
        except BatchInterrupted as interrupt:
            partial = interrupt.partial
            finished = int((partial[FRAME_COLUMN + "_finish_reason"] != "").sum())
            self.interrupted(interrupt, finished, len(partial), "rows")
        self.store(frame)
        errors = frame[FRAME_COLUMN + "_error"]
        self.report([(f"row {i!r}", e) for i, e in errors.items() if e], len(frame), "rows")

    def _render(self, template: str, index: int, item: Any) -> Rendered:
        """One item's prompt: ``{item}`` and ``{index}`` first, then the notebook's variables."""
        try:
            return render(template, ChainMap({"item": item, "index": index}, self.user_ns))
        except ValidationError as exc:
            raise UsageError(f"--over {self.args.over}, item {index}: {exc}") from None

    def _frame_prompts(self, df: Any, template: str) -> list[str]:
        try:
            return render_prompts(df, template)
        except ValidationError as exc:
            raise UsageError(
                f"--over {self.args.over}: {exc}. Over a DataFrame only its columns fill {{fields}}; "
                "add a notebook value as a column first, e.g. df.assign(tone=tone)"
            ) from None

    def _dry_run(self, heading: str, total: int | None, unit: str, labels: list[str], rendered: list[Rendered]) -> None:
        shown = f"; the first {len(rendered)}" if total is None or len(rendered) < total else ""
        count = f"an unknown number of {unit}s" if total is None else _plural(total, unit)
        print(f"{heading}: {count}{shown} (nothing sent):")
        for where, r in zip(labels, rendered, strict=True):
            print(f"{where}\n{r.text}")
        if rendered and rendered[0].names:
            print("substituted: " + ", ".join("{" + n + "}" for n in rendered[0].names))
        if rendered and rendered[0].unresolved:
            print(_unresolved_note(rendered[0]))


def _items(user_ns: Mapping[str, Any], name: str) -> Any:
    """The value ``--over`` names, or a UsageError that says what to pass instead."""
    if not name.isidentifier():
        raise UsageError(f"--over needs the name of a list or DataFrame variable, got {name!r}")
    if name not in user_ns:
        raise UsageError(
            f"--over {name}: no variable named {name!r}; define a list or DataFrame first, "
            f"e.g. {name} = ['first', 'second'] and {{item}} in the cell"
        )
    value = user_ns[name]
    if isinstance(value, (str, bytes)):
        raise UsageError(
            f"--over {name}: {name} is one string, not a list of items; wrap it in a list ([{name}]) "
            "or drop --over to complete it once"
        )
    if not _is_frame(value):
        try:
            iter(value)
        except TypeError:
            raise UsageError(
                f"--over {name}: a {type(value).__name__} holds no items; pass a list, tuple, Series or DataFrame"
            ) from None
    return value


#: ``--over`` a sized collection up to this length is copied into a list first (and rendered up front);
#: anything longer, unsized, or an iterator is read lazily.
MATERIALIZE_LIMIT = 100_000


def _length(value: Any) -> int | None:
    try:
        return len(value)
    except Exception:  # no len(), or a len() that fails
        return None


def _small(value: Any) -> bool:
    """Whether ``--over`` may copy ``value`` into a list: a short collection, not an iterator."""
    if isinstance(value, (list, tuple)):
        return True
    length = _length(value)
    return length is not None and length <= MATERIALIZE_LIMIT and iter(value) is not value


class _Sized:
    """An iterator that tells the batch its length (for the progress bar) without being read."""

    def __init__(self, items: Iterator[Any], length: int | None) -> None:
        self._items = items
        self._length = length

    def __iter__(self) -> Iterator[Any]:
        return self._items

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("unknown length")
        return self._length


def _is_frame(value: Any) -> bool:
    """True for a pandas DataFrame, without importing pandas (if it is not loaded, no value is a frame)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _unresolved_note(rendered: Rendered) -> str:
    names = ", ".join("{" + n + "}" for n in rendered.unresolved)
    return f"kept literally (no such variable): {names}; define it, or write {{{{ }}}} to make the braces explicit"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --------------------------------------------------------------------------- --sweep


class _Sweep(_Job):
    """``--sweep NAME=V1,V2,...`` (repeatable): one prompt, every combination, side by side."""

    def run(self, template: str, params: dict[str, Any]) -> None:
        try:
            grid = parse_sweep(self.args.sweep)
        except ValidationError as exc:
            raise UsageError(str(exc)) from None
        for name in grid:
            if getattr(self.args, name, None) is not None:
                flag = "-n" if name == "n" else "--" + name.replace("_", "-")
                raise UsageError(f"{name} is both swept (--sweep {name}=...) and given as {flag}: drop one of them")
            params.pop(name, None)  # a configured default (max_tokens) gives way to the sweep
        prompt = template
        if not self.args.no_template:
            try:
                prompt = render(template, self.user_ns).text
            except ValidationError as exc:
                raise UsageError(str(exc)) from None
        n = params.pop("n", 1)
        if self.args.dry_run:
            self._dry_run(prompt, grid, n, params)
            return
        connection = self.connect()
        try:
            result = run_sweep(prompt, grid, n=n, stream=self.stream, **connection, **params)
        except ValidationError as exc:
            raise UsageError(str(exc)) from None
        except BatchInterrupted as interrupt:
            partial: SweepResult = interrupt.partial
            finished = sum(not c.incomplete for c in partial.completions)
            self.interrupted(interrupt, finished, len(partial.settings), "settings")
        self.store(result)
        failures = [
            (label(s), f"{type(c.error).__name__}: {c.error}")
            for s, c in zip(result.settings, result.completions, strict=True)
            if c.error is not None
        ]
        self.report(failures, len(result.settings), "settings")
        cut = [label(s) for s, c in zip(result.settings, result.completions, strict=True) if c.cut_short]
        if cut:
            shown = "; ".join(cut[:SHOWN_FAILURES]) + ("; ..." if len(cut) > SHOWN_FAILURES else "")
            print(
                f"{len(cut)} of {_plural(len(result.settings), 'setting')} incomplete (cut short by the server): {shown}"
            )

    def _dry_run(self, prompt: str, grid: Mapping[str, list[Any]], n: int, params: Mapping[str, Any]) -> None:
        settings = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
        print("prompt:")
        print(prompt)
        print(f"\n--sweep: {_plural(len(settings), 'setting')}, n={n} each (nothing sent):")
        for setting in settings:
            print("  " + label(setting))
        first = {**params, **({} if "n" in grid else {"n": n}), **settings[0]}
        self.print_request(self.build(prompt, first), label(settings[0]))
