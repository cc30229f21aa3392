"""Many prompts at once: :func:`complete_many` and :func:`acomplete_many`.

Results come back in input order as a :class:`BatchResult` (a list of
:class:`Completion` with batch-wide usage, failures and retries). A failed
item never sinks the batch: its completion keeps ``error`` and
``incomplete=True`` and the others go on. How the work is scheduled and
retried is in :mod:`vman_magic.batch.engine`; how fast it may go (``rpm``,
``tpm``, limits learned from the server, adaptive concurrency) is in
:mod:`vman_magic.batch.budget`.

Interrupts. Stopping a batch (Ctrl-C, the kernel's interrupt button) stops it
promptly: requests in flight are cancelled, items not finished are marked
``incomplete`` with an :class:`Unfinished` error, and
:class:`BatchInterrupted` is raised with the results so far on ``.partial``.
It is raised rather than returned on purpose: a notebook's "Run All" must stop
at the interrupted cell instead of feeding half a batch to the cells below.
In IPython the partial results are then at ``sys.last_value.partial``; pass
``on_interrupt="return"`` to get them back as the cell's value instead (with a
warning line), which suits exploratory data work.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from ..client.client import settings_at_the_door
from ..core.config import Secret, Settings, as_secret
from ..core.errors import ValidationError, VmanError
from ..core.models import Completion, CompletionRequest, Prompt, Usage
from .engine import ProgressWatcher, Run, Watcher, execute, interrupts_deferred, prepare, run_sync
from .progress import Tally, make_progress, summary_line

__all__ = ["BatchInterrupted", "BatchResult", "Unfinished", "acomplete_many", "complete_many"]

OnInterrupt = Literal["raise", "return"]


class BatchInterrupted(KeyboardInterrupt):
    """A batch was stopped by the user; ``partial`` holds what finished.

    A :class:`KeyboardInterrupt` subclass, so scripts and "Run All" stop as
    they would for any interrupt. ``partial`` is a :class:`BatchResult` from
    :func:`complete_many`, a DataFrame from ``complete_frame``, a
    ``SweepResult`` from ``run_sweep``.
    """

    def __init__(self, message: str, partial: Any) -> None:
        super().__init__(message)
        self.partial = partial


class Unfinished(VmanError):
    """The error of an item that did not finish because its batch was interrupted."""


class BatchResult(list[Completion]):
    """The completions of a batch, in input order, with batch-wide numbers.

    A plain list for everything else (index it, iterate it, make a DataFrame
    of it). ``str()`` is the one-line summary that is printed at the end.
    """

    def __init__(
        self,
        items: Iterable[Completion] = (),
        *,
        retries: int = 0,
        rate_limit_waits: int = 0,
        rate_limited: int = 0,
        budget: str = "",
        interrupted: bool = False,
        elapsed: float = 0.0,
    ) -> None:
        super().__init__(items)
        self.retries = retries
        """Requests sent again after an error or a 429 (all items together)."""
        self.rate_limit_waits = rate_limit_waits
        """Sends that were held back because the server asked the batch to wait (``Retry-After``)."""
        self.rate_limited = rate_limited
        """429 answers the batch met; each such item was sent again once the budget allowed."""
        self.budget = budget
        """The budgets the batch ended under, e.g. ``"1,200 requests/min from the server's headers"``;
        "" when it met no limit."""
        self.interrupted = interrupted
        """True when the batch was stopped before every item finished."""
        self.elapsed = elapsed
        """Wall-clock seconds the batch ran."""

    @property
    def texts(self) -> list[str]:
        """The first choice's text of every item ("" where nothing arrived)."""
        return [c.text for c in self]

    @property
    def failed(self) -> list[int]:
        """Indices of the items that failed (not those an interrupt left unfinished)."""
        return [i for i, c in enumerate(self) if c.error is not None and not isinstance(c.error, Unfinished)]

    @property
    def incomplete(self) -> list[int]:
        """Indices of the items the server cut short: no error, but a choice without a finish reason."""
        return [i for i, c in enumerate(self) if c.incomplete and c.error is None]

    @property
    def unfinished(self) -> list[int]:
        """Indices of the items an interrupt stopped or never sent."""
        return [i for i, c in enumerate(self) if isinstance(c.error, Unfinished)]

    @property
    def errors(self) -> dict[int, BaseException]:
        """``{index: error}`` for the items that failed."""
        return {i: c.error for i, c in enumerate(self) if c.error is not None}

    @property
    def usage(self) -> Usage:
        """Token counts summed over every item that reported usage."""
        total = Usage()
        for c in self:
            if c.usage is not None:
                total.prompt_tokens += c.usage.prompt_tokens
                total.completion_tokens += c.usage.completion_tokens
                total.total_tokens += c.usage.total_tokens
        return total

    @property
    def from_history(self) -> list[int]:
        """Indices of the items answered from the history (``cache=True``) instead of the server."""
        return [i for i, c in enumerate(self) if c.cached]

    def tally(self) -> Tally:
        """The counts shown by the progress bar and the summary line."""
        usage = self.usage
        failed = len(self.failed)
        incomplete = len(self.incomplete)
        return Tally(
            total=len(self),
            done=len(self) - failed - incomplete - len(self.unfinished),
            failed=failed,
            incomplete=incomplete,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            retries=self.retries,
            cached=len(self.from_history),
            rate_limited=self.rate_limited,
        )

    def __str__(self) -> str:
        return summary_line(self.tally(), self.elapsed)

    def __repr__(self) -> str:
        return f"<BatchResult {self}>"


def collect(run: Run) -> BatchResult:
    """Every item of ``run``, unfinished ones marked incomplete with an :class:`Unfinished` error."""
    items: list[Completion] = []
    for index, settled in enumerate(run.slots):
        if settled is None:
            builder = run.live.get(index)
            if builder is not None:
                arrived = builder.fail(Unfinished("interrupted while the answer was arriving; what arrived is kept"))
                settled = run.own_part(index, arrived)
            else:
                request = run.requests[index]
                settled = Completion(request if isinstance(request, CompletionRequest) else None)
                settled.incomplete = True
                settled.error = Unfinished("not sent: the batch was interrupted before this prompt's turn")
        items.append(settled)
    return BatchResult(
        items,
        retries=run.gate.retries,
        rate_limit_waits=run.gate.waits,
        rate_limited=run.pacer.rate_limited,
        budget=run.pacer.describe(),
        interrupted=any(s is None for s in run.slots) or not run.exhausted,
        elapsed=time.perf_counter() - run.started,
    )


def run_blocking(run: Run, watcher: Watcher[Any]) -> BatchResult:
    """:func:`~vman_magic.batch.engine.run_sync`, then the result, or :class:`BatchInterrupted` with it."""
    interrupted = run_sync(run, watcher)
    if not interrupted:
        return collect(run)
    with interrupts_deferred():  # the second Ctrl-C of an impatient user must not lose the results
        result = collect(run)
        error = BatchInterrupted(_interrupt_message(result), result)
    raise error


def _prompt_jobs(prompts: Iterable[Prompt], params: Mapping[str, Any]) -> tuple[Any, int | None]:
    """The batch's jobs: a list for a list or tuple; otherwise a lazy generator, and the length if known.

    A generator, ``range(10**9)`` or ``itertools.count()`` is read as the
    workers need items, so memory holds the results, not the input.
    """
    if isinstance(prompts, (str, bytes)):
        raise ValidationError(
            "prompts must be a list of prompts, not one string: "
            "use complete(prompt) for a single prompt, or wrap it in a list",
            param="prompt",
        )
    if isinstance(prompts, (list, tuple)):
        return [(prompt, params) for prompt in prompts], None
    try:
        expected: int | None = len(prompts)  # type: ignore[arg-type]
    except TypeError:
        expected = None
    try:
        items = iter(prompts)
    except TypeError:
        raise ValidationError(
            f"prompts must be a list (or another iterable) of prompts, got {type(prompts).__name__}", param="prompt"
        ) from None
    return ((prompt, params) for prompt in items), expected


def _interrupt_message(result: BatchResult) -> str:
    finished = sum(1 for c in result if not c.incomplete)
    return (
        f"batch interrupted: {finished} of {len(result)} prompts finished; the results so far are "
        "on this exception's .partial (in IPython: sys.last_value.partial), "
        "or pass on_interrupt='return' to get them back instead"
    )


def _give_back(interrupt: BatchInterrupted, on_interrupt: OnInterrupt) -> Any:
    """``on_interrupt="return"``: one warning line, then the partial result as the value."""
    if on_interrupt == "raise":
        raise interrupt
    print(f"warning: {interrupt.args[0].split(';')[0]}; returning the partial results", file=sys.stderr)
    return interrupt.partial


def _check_on_interrupt(on_interrupt: str) -> None:
    if on_interrupt not in ("raise", "return"):
        raise ValidationError(f"on_interrupt must be 'raise' or 'return', got {on_interrupt!r}", param="on_interrupt")


# --------------------------------------------------------------------------- public


def complete_many(
    prompts: Iterable[Prompt],
    *,
    concurrency: int | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    group_size: int = 1,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | Secret | None = None,
    timeout: Any = None,
    max_retries: int | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    on_interrupt: OnInterrupt = "raise",
    cache: bool | None = None,
    **params: Any,
) -> BatchResult:
    """Complete every prompt, as fast as the server's limits allow; results in input order.

    ``params`` are the API parameters (``max_tokens=``, ``temperature=``, ...),
    the same for every prompt; ``stream`` defaults to ``False`` because a batch
    does not show text as it arrives. Each prompt may be anything the API
    accepts (a string, a list of token ids, ...). A bad parameter raises
    :class:`ValidationError` before anything is sent; a bad prompt or a failed
    request only marks its own item (``.error``, ``incomplete=True``).

    ``group_size=k`` (k > 1) sends up to k consecutive string prompts per
    request, in the API's list-of-prompts form, and splits the answer back
    into one result per prompt (choice ``i * n + j`` is prompt i's choice j);
    it saves requests where the endpoint supports the form (measure it: see
    ``benchmarks/README.md``). Streaming works the same. Prompts that are not
    strings (token lists, lists of prompts) are still sent alone. A failed
    request fails every prompt of it, and a prompt the answer holds no choice
    for fails with :class:`APIResponseError` (an endpoint that ignores the
    list form). The server counts tokens per request, so the first prompt of
    each request carries that request's whole ``usage`` and the others
    ``usage=None`` with a note; ``BatchResult.usage`` stays exact.

    Every item is recorded in the local history as it finishes. With
    ``cache=True`` (or ``%vman cache on``) items the history holds a complete
    answer for are not sent again, so re-running a batch after an interrupt,
    an error or a killed kernel sends only the rest; the progress bar and
    the summary say how many came from history (``.from_history``).

    Speed. ``rpm``/``tpm`` are budgets in requests and tokens per minute
    (token estimates before sending: prompt length and ``max_tokens``,
    corrected from ``usage``). Without them the batch learns the limits from
    the server's ``x-ratelimit-*`` headers, or from its 429s, and sends at
    that pace; a 429 is not an item's failure, the item is sent again when
    the budget allows (``BatchResult.rate_limited`` counts them). With no
    limit in sight it sends 8 requests at a time, as before. ``concurrency``
    is how many requests may be in flight: ``None`` starts at 8 and grows
    (to 64) when a known limit and a slow server need more; a number fixes
    it as the most in flight. See :mod:`vman_magic.batch.budget`.

    Works in scripts and notebook cells alike (see :func:`run_sync`); shows a
    progress bar unless ``progress=False``. On interrupt raises
    :class:`BatchInterrupted` with ``.partial``, or returns the partial
    :class:`BatchResult` when ``on_interrupt="return"``.

    ``settings=`` takes a resolved :class:`~vman_magic.Settings` instead of
    ``base_url``, ``api_key``, ``timeout`` and ``max_retries``.
    """
    api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
    given = {"base_url": base_url, "api_key": api_key, "timeout": timeout, "max_retries": max_retries}
    run, watcher = _begin(
        prompts, params, on_interrupt, progress, settings=settings_at_the_door(settings, given), model=model,
        concurrency=concurrency, group_size=group_size, cache=cache, rpm=rpm, tpm=tpm,
    )  # fmt: skip
    try:
        return run_blocking(run, watcher)
    except BatchInterrupted as interrupt:
        result: BatchResult = _give_back(interrupt, on_interrupt)
        return result


def _begin(
    prompts: Iterable[Prompt], params: Mapping[str, Any], on_interrupt: str, progress: bool, **options: Any
) -> tuple[Run, ProgressWatcher]:
    """What both entry points do before sending: check the options, validate every item, make the bar."""
    _check_on_interrupt(on_interrupt)
    jobs, expected = _prompt_jobs(prompts, params)
    run = prepare(jobs, expected=expected, **options)
    total = None if run.lazy and run.expected is None else run.total
    return run, ProgressWatcher(make_progress(progress, total))


async def acomplete_many(
    prompts: Iterable[Prompt],
    *,
    concurrency: int | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    group_size: int = 1,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | Secret | None = None,
    timeout: Any = None,
    max_retries: int | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    on_interrupt: OnInterrupt = "raise",
    cache: bool | None = None,
    **params: Any,
) -> BatchResult:
    """:func:`complete_many` for async code, on the caller's event loop.

    Cancelling the awaiting task cancels the batch and re-raises
    ``CancelledError`` (so ``asyncio.timeout`` and task groups work as
    usual); a ``KeyboardInterrupt`` is handled as in :func:`complete_many`.
    """
    api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
    given = {"base_url": base_url, "api_key": api_key, "timeout": timeout, "max_retries": max_retries}
    run, watcher = _begin(
        prompts, params, on_interrupt, progress, settings=settings_at_the_door(settings, given), model=model,
        concurrency=concurrency, group_size=group_size, cache=cache, rpm=rpm, tpm=tpm,
    )  # fmt: skip
    try:
        await execute(run, lambda: watcher.render(watcher.snapshot(run)))
    except KeyboardInterrupt:
        interrupted = True
    except asyncio.CancelledError:
        watcher.close(watcher.snapshot(run))
        raise
    else:
        interrupted = False
    watcher.close(watcher.snapshot(run))
    result = collect(run)
    if interrupted:
        partial: BatchResult = _give_back(BatchInterrupted(_interrupt_message(result), result), on_interrupt)
        return partial
    return result
