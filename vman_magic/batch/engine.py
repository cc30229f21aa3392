"""The engine under :mod:`vman_magic.batch.many`: workers, the shared rate-limit gate, threads.

* Workers pull the next index from a shared iterator, each through its own
  single-connection lane; a worker needs a place in the
  :class:`~vman_magic.batch.budget.Pacer`'s window first, so at most that
  many requests are in flight (``concurrency``, or what the pacer adapts it
  to), and every result lands in its input slot whatever order they finish in.
* Before each send the pacer clears the request against the request and token
  budgets (given, or learned from headers and 429s: see
  :mod:`vman_magic.batch.budget`); a 429 goes back to the pacer, which learns
  from it, and the item is sent again when the budget allows.
* Other retries are the client's (``_retry.RetryPolicy``); every wait before a
  retry goes through a :class:`RateGate` shared by the workers, and every
  worker waits on it before each send, so a ``Retry-After`` told to one
  worker holds back *every* worker until the deadline.
* A :class:`Run` keeps the finished :class:`Completion` objects and a few
  counters; nothing is kept per stream event.
* With ``group_size=k`` a worker takes the next *group* instead: up to k
  consecutive string prompts with the same parameters, sent as one request in
  the API's list-of-prompts form, whose answer :func:`split_group` cuts back
  into one result per prompt.
* Resume: with the cache on, :func:`prepare` asks the history once for the
  whole batch; items it answers completely are settled before anything is
  sent (``Run.cached`` counts them) and only the others are scheduled. Every
  result is recorded as it ends (the client records single items; grouped
  prompts are recorded here, one entry per prompt), so a killed kernel loses
  at most the items in flight.
* Live views (:class:`Watcher`) take immutable snapshots on the batch's loop
  and draw them in the calling thread, so notebook output lands in the
  running cell and widgets are touched from one thread only (the rule of
  :mod:`vman_magic.client.runner`, which the panel follows too).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from ..client.client import AsyncClient
from ..client.retry import RetryPolicy
from ..client.runner import REFRESH_INTERVAL, interrupts_deferred, run_in_worker
from ..core.config import Settings
from ..core.errors import APIResponseError, RateLimitError, ValidationError
from ..core.models import Choice, Completion, CompletionBuilder, CompletionRequest, Prompt
from ..logbook import session as _history
from .budget import RATE_LIMIT_TRIES, Pacer, check_budget, without_rate_limit_retries
from .progress import Progress, Tally

__all__ = [
    "REFRESH_INTERVAL",
    "ProgressWatcher",
    "RateGate",
    "Run",
    "Watcher",
    "execute",
    "interrupts_deferred",
    "prepare",
    "run_sync",
    "split_group",
]

S = TypeVar("S")


class RateGate:
    """A send deadline shared by the workers of one batch.

    The client's retry policy calls :meth:`hold` when the server names a delay
    (``Retry-After``), and waits through :meth:`backoff`; every worker calls
    :meth:`wait` before each send. So one 429 pauses the whole batch instead
    of letting the other workers hammer a server that already said "slow down".
    """

    def __init__(self) -> None:
        self._until = 0.0
        self.retries = 0
        self.waits = 0

    def hold(self, seconds: float) -> None:
        """Nobody sends before ``seconds`` from now."""
        self._until = max(self._until, time.monotonic() + seconds)

    async def wait(self) -> None:
        """Return once the shared deadline has passed."""
        while (delay := self._until - time.monotonic()) > 0:
            self.waits += 1
            await asyncio.sleep(delay)

    async def backoff(self, seconds: float) -> None:
        """The client's sleep before a retry: its own delay, then the shared deadline."""
        self.retries += 1
        await asyncio.sleep(seconds)
        await self.wait()


class Watcher(Protocol[S]):
    """A live view of a running batch, e.g. the progress bar or a sweep grid.

    ``snapshot`` runs on the batch's event loop and returns immutable data;
    ``render`` and ``close`` run in the thread that called the batch, so all
    notebook output comes from the cell's own thread.
    """

    def snapshot(self, run: Run) -> S: ...

    def render(self, snap: S) -> None: ...

    def close(self, snap: S) -> None: ...


class ProgressWatcher:
    """Feeds a :class:`Progress` bar with the batch's :class:`Tally`."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def snapshot(self, run: Run) -> Tally:
        return run.tally()

    def render(self, snap: Tally) -> None:
        self.progress.update(snap)

    def close(self, snap: Tally) -> None:
        self.progress.close(snap)


class Run:
    """The state of one batch: validated requests, results so far, counters.

    Only the batch's event loop mutates it; views read it through
    :meth:`Watcher.snapshot` on that same loop.
    """

    def __init__(
        self,
        requests: list[CompletionRequest | ValidationError],
        settings: Settings,
        *,
        concurrency: int | None = None,
        group_size: int = 1,
        cached: Mapping[int, Completion] | None = None,
        source: Iterator[CompletionRequest | ValidationError] | None = None,
        expected: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
    ) -> None:
        self.requests = requests
        self.settings = settings
        """Where every request of the batch goes, resolved once by the public function."""
        cached = cached or {}
        self.lazy = source is not None
        """Items come from ``source`` one group at a time (``--over`` a generator, ``range(10**9)``)."""
        self.expected = expected
        """How many items a lazy run will have, when the iterable knows its length."""
        self._source = source
        self._peek: CompletionRequest | ValidationError | None = None
        self._group_size = group_size
        self._next_group = 0
        self.groups = _groups(requests, group_size, cached)
        """The items to send, together, as index ranges in input order (all of length 1 without grouping)."""
        self.group_of: dict[int, range] = {index: group for group in self.groups for index in group}
        self.slots: list[Completion | None] = [None] * len(requests)
        self.live: dict[int, CompletionBuilder] = {}  # every index of a group maps to the group's builder
        self.gate = RateGate()
        self.pacer = Pacer(rpm=rpm, tpm=tpm, concurrency=concurrency, hold=self.gate.hold)
        self.done = self.failed = self.incomplete = self.prompt_tokens = self.completion_tokens = 0
        self.cached = 0
        """Items answered from the history, not sent."""
        self.version = 0  # bumped on every change a live view may want to redraw
        self.started = time.perf_counter()
        for index, completion in cached.items():
            self.settle(index, completion)
            self.cached += 1

    @property
    def total(self) -> int:
        """Items in the batch: all of them, or for a lazy run the expected count (else those taken so far)."""
        if self.lazy and self.expected is not None:
            return self.expected
        return len(self.requests)

    @property
    def exhausted(self) -> bool:
        """True when every item was handed to a worker."""
        if self.lazy:
            return self._source is None and self._peek is None
        return self._next_group >= len(self.groups)

    def next_group(self) -> range | None:
        """The next items to send (runs on the batch's loop), or None when there are no more.

        A lazy run takes them from its source now, so only the items in
        flight and the results are held, never the whole input.
        """
        if not self.lazy:
            if self._next_group >= len(self.groups):
                return None
            self._next_group += 1
            return self.groups[self._next_group - 1]
        first = self._take()
        if first is None:
            return None
        start = len(self.requests)
        self._append(first)
        while len(self.requests) - start < self._group_size:
            other = self._take()
            if other is None:
                break
            if not _joinable(first, other):
                self._peek = other
                break
            self._append(other)
        group = range(start, len(self.requests))
        self.groups.append(group)
        for index in group:
            self.group_of[index] = group
        return group

    def _take(self) -> CompletionRequest | ValidationError | None:
        if self._peek is not None:
            item, self._peek = self._peek, None
            return item
        if self._source is None:
            return None
        try:
            return next(self._source)
        except StopIteration:
            self._source = None
            return None
        except Exception as exc:  # the user's iterable failed: that item fails, and there are no more
            self._source = None
            return ValidationError(f"reading the next item raised {type(exc).__name__}: {exc}", param="prompt")

    def _append(self, item: CompletionRequest | ValidationError) -> None:
        self.requests.append(item)
        self.slots.append(None)

    def settle(self, index: int, completion: Completion) -> None:
        self.slots[index] = completion
        self.live.pop(index, None)
        if completion.error is not None:
            self.failed += 1
        elif completion.incomplete:  # no error, yet not whole: the server cut it short
            self.incomplete += 1
        else:
            self.done += 1
        if completion.usage is not None:
            self.prompt_tokens += completion.usage.prompt_tokens
            self.completion_tokens += completion.usage.completion_tokens
        self.version += 1

    def tally(self) -> Tally:
        waiting, pace = self.pacer.status()
        return Tally(
            self.total, self.done, self.failed, self.prompt_tokens, self.completion_tokens, self.gate.retries,
            self.cached, self.incomplete, rate_limited=self.pacer.rate_limited, waiting=waiting, pace=pace,
        )  # fmt: skip

    def current(self, index: int) -> Completion | None:
        """The finished result of an item, or the one still arriving."""
        settled = self.slots[index]
        if settled is not None:
            return settled
        builder = self.live.get(index)
        return self.own_part(index, builder.completion) if builder is not None else None

    def own_part(self, index: int, completion: Completion) -> Completion:
        """Item ``index``'s share of the result of its request (the result itself when sent alone)."""
        group = self.group_of[index]
        if len(group) == 1:
            return completion
        return split_group(completion, _requests(self, group))[index - group.start]


def _groups(
    requests: list[CompletionRequest | ValidationError], size: int, skip: Mapping[int, Completion]
) -> list[range]:
    """Runs of up to ``size`` consecutive string prompts with equal parameters; anything else alone.

    Indices in ``skip`` (answered from the history) are in no group.
    """
    groups: list[range] = []
    start = 0
    while start < len(requests):
        if start in skip:
            start += 1
            continue
        end = start + 1
        while (
            end < len(requests) and end - start < size and end not in skip and _joinable(requests[start], requests[end])
        ):
            end += 1
        groups.append(range(start, end))
        start = end
    return groups


def _joinable(first: CompletionRequest | ValidationError, other: CompletionRequest | ValidationError) -> bool:
    """Whether ``other`` can ride in ``first``'s request: both string prompts, the same everything else."""
    return (
        isinstance(first, CompletionRequest)
        and isinstance(other, CompletionRequest)
        and isinstance(first.prompt, str)
        and isinstance(other.prompt, str)
        and (first.model, first.stream, first.params()) == (other.model, other.stream, other.params())
    )


def _requests(run: Run, group: range) -> list[CompletionRequest]:
    return [r for r in (run.requests[i] for i in group) if isinstance(r, CompletionRequest)]


def split_group(group: Completion, requests: list[CompletionRequest]) -> list[Completion]:
    """One :class:`Completion` per prompt of a list-of-prompts answer, in prompt order.

    The API numbers the choices ``prompt_index * n + j``; prompt i gets choices
    ``i * n .. i * n + n - 1`` renumbered ``0 .. n - 1``, with their texts,
    finish reasons and logprobs, and its own ``request``. Ids, timings, notes,
    ``incomplete`` and ``error`` are the request's, so a failed request fails
    every prompt of it. A prompt the answer holds no choice for (an endpoint
    that ignores the list form) fails with :class:`APIResponseError`.

    Usage: the server counts tokens per request, not per prompt, and an exact
    split is not knowable from the answer, so the first prompt's result
    carries the request's whole ``usage`` and the others ``usage=None`` (with
    a note saying where their tokens are counted). Batch totals stay exact.
    """
    n = requests[0].n or 1
    parts: list[Completion] = []
    for position, request in enumerate(requests):
        part = Completion(request)
        for name in ("id", "object", "model", "created", "system_fingerprint", "elapsed", "time_to_first_token"):
            setattr(part, name, getattr(group, name))
        part.incomplete, part.error, part.notes = group.incomplete, group.error, list(group.notes)
        for j in range(n):
            choice = group._choices.get(position * n + j)
            if choice is not None:
                part._choices[j] = Choice(j, choice.text, choice.finish_reason, choice.logprobs)
        if position == 0:
            part.usage = group.usage
        elif group.usage is not None:
            part.notes.append(
                f"usage: this prompt was sent in one request with {len(requests) - 1} others; the server counts "
                "tokens per request, so they are all in the usage of the first prompt of that request"
            )
        if not part._choices and group.error is None:
            part.incomplete = True
            part.error = APIResponseError(
                f"the answer holds no choice for prompt {position} of a request of {len(requests)} prompts: "
                "this endpoint may not support a list of prompts; use group_size=1",
                partial=part,
            )
        parts.append(part)
    return parts


# --------------------------------------------------------------------------- running


def prepare(
    jobs: Iterable[tuple[Prompt | ValidationError, Mapping[str, Any]]],
    *,
    settings: Settings,
    model: str | None = None,
    concurrency: int | None,
    group_size: int = 1,
    cache: bool | None = None,
    expected: int | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
) -> Run:
    """Validate every ``(prompt, params)`` job before anything is sent; the run carries ``settings``.

    ``settings`` are resolved by the public function (one batch, one
    :class:`Settings`); ``model`` overrides their model. A bad *parameter*
    raises :class:`ValidationError` at once (it would fail every item); a bad
    *prompt* only fails its own item. ``stream`` defaults to ``False``: a
    batch shows no text as it arrives, and one JSON body is faster to get.
    With ``cache`` on, items the history answers completely are settled
    here and never sent.

    ``jobs`` that is not a list is read lazily, as the workers need items
    (``expected`` is its length when known): only the first job is checked
    here, a later one with a bad parameter fails alone, and the history is
    not asked for cached answers.
    ``concurrency=None`` lets the pacer adapt it; ``rpm``/``tpm`` are budgets.
    """
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValidationError(
            f"concurrency must be a whole number >= 1, or None to adapt it, got {concurrency!r}", param="concurrency"
        )
    rpm, tpm = check_budget("rpm", rpm), check_budget("tpm", tpm)
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValidationError(
            f"group_size must be a whole number >= 1 (prompts sent per request; 1 sends each alone), got {group_size!r}",
            param="group_size",
        )
    model_name = settings.require_model(model)
    if not isinstance(jobs, list):
        source = iter(jobs)
        first = [_build(model_name, job, strict=True) for job in itertools.islice(source, 1)]
        rest = (_build(model_name, job, strict=False) for job in source)
        return Run(
            [], settings, concurrency=concurrency, group_size=group_size,
            source=itertools.chain(first, rest), expected=expected, rpm=rpm, tpm=tpm,
        )  # fmt: skip
    requests = [_build(model_name, job, strict=True) for job in jobs]
    cached = _history.cached_answers(requests, settings.url, cache)
    return Run(requests, settings, concurrency=concurrency, group_size=group_size, cached=cached, rpm=rpm, tpm=tpm)


def _build(
    model: str, job: tuple[Prompt | ValidationError, Mapping[str, Any]], *, strict: bool
) -> CompletionRequest | ValidationError:
    """One job's request; a bad prompt (or, when not ``strict``, any bad field) is the item's error."""
    prompt, params = job
    if isinstance(prompt, ValidationError):  # the caller could not even make the prompt (a template failed)
        return prompt
    options = dict(params)
    stream = options.pop("stream", False)
    try:
        return CompletionRequest.build(model, prompt, stream=stream, **options)
    except ValidationError as exc:
        if strict and exc.param != "prompt":
            raise
        return exc


async def execute(run: Run, publish: Callable[[], None]) -> None:
    """Run every item of ``run``, one lane per worker, calling ``publish`` every refresh interval.

    Each worker gets its own single-connection pool ("lane") instead of all
    workers sharing one big pool: httpcore checks every pooled connection on
    every request it schedules, so a shared pool of 32 connections spent
    three quarters of the batch's client CPU on bookkeeping (benchmarks,
    figure 5). The lanes share one TLS context, so the CA bundle loads once,
    and each keeps its connection alive across the items it runs. Every lane
    uses the run's one :class:`Settings`. A lane is made when its worker
    first sends, so workers the pacer's window never lets in cost nothing.
    """
    import httpx

    planned = (run.pacer.ceiling if run.expected is None else run.expected) if run.lazy else len(run.groups)
    if not run.groups and not run.lazy:  # everything came from the history
        publish()
        return
    workers = max(1, min(run.pacer.ceiling, planned))
    gate = run.gate
    policy = RetryPolicy(max_retries=run.settings.max_retries, async_sleep=gate.backoff, on_retry_after=gate.hold)
    retry = without_rate_limit_retries(policy)
    tls = httpx.create_ssl_context()
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    pools: list[httpx.AsyncClient] = []

    def lane() -> AsyncClient:
        pools.append(httpx.AsyncClient(verify=tls, limits=one))
        return AsyncClient(settings=run.settings, http_client=pools[-1], retry=retry)

    ticker = asyncio.ensure_future(_tick(publish))
    try:
        await _drive(run, lane, workers)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await asyncio.gather(*(pool.aclose() for pool in pools), return_exceptions=True)


async def _tick(publish: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(REFRESH_INTERVAL)
        publish()


async def _drive(run: Run, lane: Callable[[], Any], count: int) -> None:
    window = run.pacer.window

    async def worker() -> None:
        client = None
        while True:
            await window.enter()  # a place among the requests in flight, then the next group
            try:
                group = run.next_group()  # shared: each worker takes the next unclaimed group
                if group is None:
                    return
                client = client or lane()
                for index, completion in zip(group, await _one(run, client, group), strict=True):
                    run.settle(index, completion)
            finally:
                window.leave()

    workers = [asyncio.ensure_future(worker()) for _ in range(count)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _one(run: Run, client: Any, group: range) -> list[Completion]:
    """The results of one request: one item, or a group sent as a list of prompts."""
    request = run.requests[group.start]
    if isinstance(request, ValidationError):
        failed = Completion()
        failed.incomplete, failed.error = True, request
        return [failed]
    requests = _requests(run, group)
    if len(group) > 1:
        request = request.with_changes(prompt=[r.prompt for r in requests])
    completion = await _send(run, client, request, group)
    parts = split_group(completion, requests) if len(group) > 1 else [completion]
    for part in parts:  # one history entry per prompt, so each can be found and resumed alone
        _history.record(part, client.settings.url)
    return parts


async def _send(run: Run, client: Any, request: CompletionRequest, group: range) -> Completion:
    """One request through the budgets; after a 429 it is sent again once they allow (the pacer decides)."""

    def updated(completion: Completion) -> None:
        run.version += 1  # tells live views (the sweep grid) that text arrived

    tries = 0
    while True:
        tries += 1
        ticket = await run.pacer.clear(request)
        await run.gate.wait()
        builder = CompletionBuilder(request)
        for index in group:
            run.live[index] = builder
        try:
            completion: Completion = await client.run(  # the history was asked in prepare(); recorded below
                request, builder, on_update=updated, on_response=ticket.heard, cache=False, record=False
            )
        except RateLimitError as exc:
            if run.pacer.limited(ticket, exc) and tries < RATE_LIMIT_TRIES:
                run.gate.retries += 1
                continue
            completion = builder.fail(exc)
        except Exception as exc:  # recorded on the item(s): one failure never sinks the batch
            completion = builder.fail(exc)
        except BaseException:  # interrupted: what arrived goes to the history, as the client's own record would
            if len(group) == 1:
                _history.record(builder.completion, client.settings.url)
            raise
        run.pacer.done(ticket, request, completion)
        return completion


def run_sync(run: Run, watcher: Watcher[Any]) -> bool:
    """Run a batch from synchronous code, in a notebook or a script alike.

    The batch runs on :func:`~vman_magic.client.runner.run_in_worker`'s
    private loop in a worker thread; the calling thread meanwhile draws the
    live views from the snapshots the batch's loop publishes (so output lands
    in the running cell), and is where Ctrl-C / the kernel's interrupt
    arrives: the batch is then cancelled on its loop and waited for.

    Returns True when the batch was interrupted; ``run`` holds what finished.
    """
    latest: list[Any] = [None]
    shown: list[Any] = [None]

    def publish() -> None:  # on the batch's loop: reads the run, builds an immutable snapshot
        latest[0] = watcher.snapshot(run)

    def draw() -> None:  # in the calling thread
        if latest[0] is not None and latest[0] is not shown[0]:
            shown[0] = latest[0]
            watcher.render(latest[0])

    try:
        run_in_worker(execute(run, publish), tick=draw)
    except KeyboardInterrupt:
        interrupted = True
    else:
        interrupted = False
    with interrupts_deferred():  # a second Ctrl-C must not cut the clean-up short and lose the results
        watcher.close(watcher.snapshot(run))
    return interrupted
