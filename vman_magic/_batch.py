"""Many prompts at once: :func:`complete_many` and :func:`acomplete_many`.

How a batch runs:

* One :class:`~vman_magic.AsyncClient` (one connection pool) serves the whole
  batch; ``concurrency`` workers pull the next index from a shared iterator,
  so at most ``concurrency`` requests are in flight and results land in input
  order whatever order they finish in.
* A failed item never sinks the batch: its :class:`Completion` keeps
  ``error`` and ``incomplete=True`` and the others go on. Retries are the
  client's (``_retry.RetryPolicy``); every wait before a retry goes through a
  :class:`RateGate` shared by the workers, so a 429 with ``Retry-After`` told
  to one worker holds back *every* worker's next send until the deadline.
* Results hold only the finished :class:`Completion` objects (non-streamed by
  default, which is faster for batches) and a few counters; nothing is kept
  per stream event.

Interrupts. Stopping a batch (Ctrl-C, the kernel's interrupt button, or
cancelling the task) stops promptly: requests in flight are cancelled, items
not finished are marked ``incomplete`` with an error saying so, and
:class:`BatchInterrupted` is raised with the results so far on ``.partial``.
It is raised rather than returned on purpose: a notebook's "Run All" must stop
at the interrupted cell instead of feeding half a batch to the cells below.
In IPython the partial results are then at ``sys.last_value.partial``; pass
``on_interrupt="return"`` to get them back as the cell's value instead (with a
warning line), which suits exploratory data work.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, TypeVar

from ._config import resolve
from ._errors import ValidationError, VmanError
from ._models import Completion, CompletionBuilder, CompletionRequest, Prompt, Usage
from ._progress import Progress, Tally, make_progress, summary_line
from ._retry import RetryPolicy

__all__ = ["BatchInterrupted", "BatchResult", "RateGate", "Unfinished", "acomplete_many", "complete_many"]

OnInterrupt = Literal["raise", "return"]
S = TypeVar("S")

#: How often live views (progress bar, sweep grid) are redrawn, in seconds.
REFRESH_INTERVAL = 0.1


class BatchInterrupted(KeyboardInterrupt):
    """A batch was stopped by the user; ``partial`` holds what finished.

    A :class:`KeyboardInterrupt` subclass, so scripts and "Run All" stop as
    they would for any interrupt. ``partial`` is a :class:`BatchResult` from
    :func:`complete_many`, or a DataFrame from ``complete_frame``.
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
        interrupted: bool = False,
        elapsed: float = 0.0,
    ) -> None:
        super().__init__(items)
        self.retries = retries
        """Requests sent again after an error (all items together)."""
        self.rate_limit_waits = rate_limit_waits
        """Sends that were held back because the server asked the batch to slow down."""
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

    def tally(self) -> Tally:
        """The counts shown by the progress bar and the summary line."""
        usage = self.usage
        failed = len(self.failed)
        return Tally(
            total=len(self),
            done=len(self) - failed - len(self.unfinished),
            failed=failed,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            retries=self.retries,
        )

    def __str__(self) -> str:
        return summary_line(self.tally(), self.elapsed)

    def __repr__(self) -> str:
        return f"<BatchResult {self}>"


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

    def __init__(self, requests: list[CompletionRequest | ValidationError]) -> None:
        self.requests = requests
        self.slots: list[Completion | None] = [None] * len(requests)
        self.live: dict[int, CompletionBuilder] = {}
        self.gate = RateGate()
        self.done = self.failed = self.prompt_tokens = self.completion_tokens = 0
        self.version = 0  # bumped on every change a live view may want to redraw
        self.started = time.perf_counter()

    @property
    def total(self) -> int:
        return len(self.requests)

    def settle(self, index: int, completion: Completion) -> None:
        self.slots[index] = completion
        self.live.pop(index, None)
        if completion.error is None:
            self.done += 1
        else:
            self.failed += 1
        if completion.usage is not None:
            self.prompt_tokens += completion.usage.prompt_tokens
            self.completion_tokens += completion.usage.completion_tokens
        self.version += 1

    def tally(self) -> Tally:
        return Tally(self.total, self.done, self.failed, self.prompt_tokens, self.completion_tokens, self.gate.retries)

    def current(self, index: int) -> Completion | None:
        """The finished result of an item, or the one still arriving."""
        settled = self.slots[index]
        if settled is not None:
            return settled
        builder = self.live.get(index)
        return builder.completion if builder is not None else None

    def result(self) -> BatchResult:
        """Every item, unfinished ones marked incomplete with an error saying why."""
        items: list[Completion] = []
        for index, settled in enumerate(self.slots):
            if settled is None:
                builder = self.live.get(index)
                if builder is not None:
                    settled = builder.fail(
                        Unfinished("interrupted while the answer was arriving; what arrived is kept")
                    )
                else:
                    request = self.requests[index]
                    settled = Completion(request if isinstance(request, CompletionRequest) else None)
                    settled.incomplete = True
                    settled.error = Unfinished("not sent: the batch was interrupted before this prompt's turn")
            items.append(settled)
        interrupted = any(s is None for s in self.slots)
        return BatchResult(
            items,
            retries=self.gate.retries,
            rate_limit_waits=self.gate.waits,
            interrupted=interrupted,
            elapsed=time.perf_counter() - self.started,
        )


# --------------------------------------------------------------------------- running


def prepare(
    jobs: Iterable[tuple[Prompt, Mapping[str, Any]]],
    *,
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    timeout: Any,
    max_retries: int | None,
    concurrency: int,
) -> tuple[Run, dict[str, Any]]:
    """Validate every ``(prompt, params)`` job before anything is sent.

    Returns the run and the client's arguments. A bad *parameter* raises
    :class:`ValidationError` at once (it would fail every item); a bad
    *prompt* only fails its own item. ``stream`` defaults to ``False``: a
    batch shows no text as it arrives, and one JSON body is faster to get.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError(f"concurrency must be a whole number >= 1, got {concurrency!r}", param="concurrency")
    client_args: dict[str, Any] = {
        "base_url": base_url,
        "api_key": api_key,
        "model": model,
        "timeout": timeout,
        "max_retries": max_retries,
    }
    settings = resolve(**client_args)
    model_name = settings.require_model(model)
    requests: list[CompletionRequest | ValidationError] = []
    for prompt, params in jobs:
        options = dict(params)
        stream = options.pop("stream", False)
        try:
            requests.append(CompletionRequest.build(model_name, prompt, stream=stream, **options))
        except ValidationError as exc:
            if exc.param != "prompt":
                raise
            requests.append(exc)
    client_args["max_retries"] = settings.max_retries
    client_args["concurrency"] = concurrency
    return Run(requests), client_args


def _prompt_list(prompts: Iterable[Prompt]) -> list[Prompt]:
    if isinstance(prompts, (str, bytes)):
        raise ValidationError(
            "prompts must be a list of prompts, not one string: "
            "use complete(prompt) for a single prompt, or wrap it in a list",
            param="prompt",
        )
    return list(prompts)


async def execute(
    run: Run,
    client_args: dict[str, Any],
    publish: Callable[[], None],
) -> None:
    """Run every item of ``run`` with one client, calling ``publish`` every refresh interval."""
    from ._client import AsyncClient

    args = dict(client_args)
    concurrency = args.pop("concurrency")
    gate = run.gate
    args["retry"] = RetryPolicy(max_retries=args.pop("max_retries"), async_sleep=gate.backoff, on_retry_after=gate.hold)
    ticker = asyncio.ensure_future(_tick(publish))
    try:
        async with AsyncClient(**args) as client:
            await _drive(run, client, concurrency)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


async def _tick(publish: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(REFRESH_INTERVAL)
        publish()


async def _drive(run: Run, client: Any, concurrency: int) -> None:
    indices = iter(range(run.total))  # shared: each worker takes the next unclaimed index

    async def worker() -> None:
        for index in indices:
            run.settle(index, await _one(run, client, index))

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, run.total))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _one(run: Run, client: Any, index: int) -> Completion:
    request = run.requests[index]
    if isinstance(request, ValidationError):
        failed = Completion()
        failed.incomplete, failed.error = True, request
        return failed
    await run.gate.wait()
    builder = CompletionBuilder(request)
    run.live[index] = builder

    def updated(completion: Completion) -> None:
        run.version += 1  # tells live views (the sweep grid) that text arrived

    try:
        completion: Completion = await client.run(request, builder, on_update=updated)
        return completion
    except Exception as exc:  # recorded on the item: one failure never sinks the batch
        return builder.fail(exc)


def run_sync(
    run: Run,
    client_args: dict[str, Any],
    watcher: Watcher[Any],
) -> BatchResult:
    """Run a batch from synchronous code, in a notebook or a script alike.

    The batch gets a private event loop in a worker thread. ``asyncio.run``
    cannot be used in a notebook (ipykernel's loop already runs in the main
    thread) and ``nest_asyncio`` would patch that loop for the whole kernel,
    which breaks other libraries. The calling thread meanwhile waits in short
    steps, draws the live views (so output lands in the running cell), and is
    where Ctrl-C / the kernel's interrupt arrives: it then cancels the batch
    on its loop, waits for the cancellation to settle and raises
    :class:`BatchInterrupted` (a ``KeyboardInterrupt``) with the partial result.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_serve_loop, args=(loop,), name="vman-batch", daemon=True)
    settled = threading.Event()
    latest: list[Any] = [None]

    def publish() -> None:
        latest[0] = watcher.snapshot(run)

    async def body() -> None:
        try:
            await execute(run, client_args, publish)
        finally:
            settled.set()

    thread.start()
    future = asyncio.run_coroutine_threadsafe(body(), loop)
    try:
        while True:
            try:
                future.result(timeout=REFRESH_INTERVAL)
                break
            except TimeoutError:
                if latest[0] is not None:
                    watcher.render(latest[0])
    except KeyboardInterrupt:
        future.cancel()
        settled.wait()
        interrupted = True
    else:
        interrupted = False
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
    watcher.close(watcher.snapshot(run))
    result = run.result()
    if interrupted:
        raise BatchInterrupted(_interrupt_message(result), result)
    return result


def _serve_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The batch thread: run ``loop`` until stopped, then close it here (it belongs to this thread)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


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
    concurrency: int = 8,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: Any = None,
    max_retries: int | None = None,
    progress: bool = True,
    on_interrupt: OnInterrupt = "raise",
    **params: Any,
) -> BatchResult:
    """Complete every prompt, ``concurrency`` at a time; results in input order.

    ``params`` are the API parameters (``max_tokens=``, ``temperature=``, ...),
    the same for every prompt; ``stream`` defaults to ``False`` because a batch
    does not show text as it arrives. Each prompt may be anything the API
    accepts (a string, a list of token ids, ...). A bad parameter raises
    :class:`ValidationError` before anything is sent; a bad prompt or a failed
    request only marks its own item (``.error``, ``incomplete=True``).

    Works in scripts and notebook cells alike (see :func:`run_sync`); shows a
    progress bar unless ``progress=False``. On interrupt raises
    :class:`BatchInterrupted` with ``.partial``, or returns the partial
    :class:`BatchResult` when ``on_interrupt="return"``.
    """
    _check_on_interrupt(on_interrupt)
    jobs = [(prompt, params) for prompt in _prompt_list(prompts)]
    run, client_args = prepare(
        jobs,
        model=model,
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=max_retries,
        concurrency=concurrency,
    )
    watcher = ProgressWatcher(make_progress(progress, run.total))
    try:
        return run_sync(run, client_args, watcher)
    except BatchInterrupted as interrupt:
        result: BatchResult = _give_back(interrupt, on_interrupt)
        return result


async def acomplete_many(
    prompts: Iterable[Prompt],
    *,
    concurrency: int = 8,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: Any = None,
    max_retries: int | None = None,
    progress: bool = True,
    on_interrupt: OnInterrupt = "raise",
    **params: Any,
) -> BatchResult:
    """:func:`complete_many` for async code, on the caller's event loop.

    Cancelling the awaiting task cancels the batch and re-raises
    ``CancelledError`` (so ``asyncio.timeout`` and task groups work as
    usual); a ``KeyboardInterrupt`` is handled as in :func:`complete_many`.
    """
    _check_on_interrupt(on_interrupt)
    jobs = [(prompt, params) for prompt in _prompt_list(prompts)]
    run, client_args = prepare(
        jobs,
        model=model,
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=max_retries,
        concurrency=concurrency,
    )
    watcher = ProgressWatcher(make_progress(progress, run.total))
    try:
        await execute(run, client_args, lambda: watcher.render(watcher.snapshot(run)))
    except KeyboardInterrupt:
        interrupted = True
    except asyncio.CancelledError:
        watcher.close(watcher.snapshot(run))
        raise
    else:
        interrupted = False
    watcher.close(watcher.snapshot(run))
    result = run.result()
    if interrupted:
        partial: BatchResult = _give_back(BatchInterrupted(_interrupt_message(result), result), on_interrupt)
        return partial
    return result
