"""complete_many / acomplete_many against the real demo server on 127.0.0.1."""

from __future__ import annotations

import _thread
import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from vman_magic import BadRequestError, ValidationError
from vman_magic.batch.many import BatchInterrupted, Unfinished, acomplete_many, complete_many
from vman_magic.client.client import Client
from vman_magic.testing import serve

PROMPTS = ["Once upon a time", "The cat", "In the morning", "A small village", "The river", "Tomorrow"]
SEEDED = {"max_tokens": 6, "temperature": 1.0, "seed": 11}


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with serve() as srv:
        yield srv


def _one_by_one(base_url: str, prompts: list[str]) -> list[str]:
    with Client(base_url=base_url, model="vman-demo") as client:
        return [client.complete(p, stream=False, **SEEDED).text for p in prompts]


def _interrupt_when_requests_arrive(server: Any, count: int) -> threading.Thread:
    """Interrupt the main thread once the server has seen ``count`` more requests (so the batch is running)."""
    start = server.stats.completions

    def watch() -> None:
        while server.stats.completions < start + count:
            threading.Event().wait(0.01)
        _thread.interrupt_main()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_results_come_back_in_input_order(server: Any) -> None:
    """Each result is the completion of the prompt at the same index, whatever order they finished in."""
    prompts = PROMPTS * 2
    results = complete_many(
        prompts, base_url=server.url(tps=400), model="vman-demo", concurrency=4, progress=False, **SEEDED
    )
    assert results.texts == _one_by_one(server.base_url, prompts)
    assert [c.request.prompt for c in results] == prompts
    assert results.failed == [] and not results.interrupted
    assert results.usage.total_tokens == sum(c.usage.total_tokens for c in results)
    assert results.usage.completion_tokens > 0


def test_concurrency_is_bounded_and_reached(server: Any) -> None:
    """With a throttled server, exactly ``concurrency`` requests are in flight at the busiest moment."""
    server.stats.reset()
    complete_many(
        PROMPTS, base_url=server.url(first_token_ms=200), model="vman-demo", concurrency=3, progress=False, max_tokens=2
    )
    assert server.stats.max_active == 3


def test_bad_items_fail_alone(server: Any) -> None:
    """A malformed prompt and a prompt the server rejects get their own errors; the others succeed."""
    prompts: list[Any] = ["Once upon a time", [-1], "The cat", [10**9, 1]]
    results = complete_many(prompts, base_url=server.base_url, model="vman-demo", progress=False, max_tokens=4)
    assert results.failed == [1, 3]
    assert isinstance(results[1].error, ValidationError) and results[1].incomplete
    assert isinstance(results[3].error, BadRequestError) and results[3].incomplete
    assert results[0].text and results[2].text and results[0].error is None


def test_a_bad_parameter_raises_before_anything_is_sent(server: Any) -> None:
    """An out-of-range parameter would fail every item, so it raises at once and sends nothing."""
    before = server.stats.completions
    with pytest.raises(ValidationError, match=r"temperature must be in 0\.\.2"):
        complete_many(PROMPTS, base_url=server.base_url, model="vman-demo", temperature=5)
    with pytest.raises(ValidationError, match="not one string"):
        complete_many("one prompt", base_url=server.base_url, model="vman-demo")
    assert server.stats.completions == before


def test_retry_after_holds_back_every_worker(server: Any) -> None:
    """429s with Retry-After are retried, and the other workers wait for the same deadline before sending."""
    results = complete_many(
        PROMPTS,
        base_url=server.url(ratelimit=2, retry_after=0.5),
        model="vman-demo",
        concurrency=3,
        progress=False,
        max_tokens=2,
    )
    assert results.failed == []
    assert results.retries == 2
    assert results.rate_limit_waits >= 1


@pytest.mark.usefixtures("interruptible")
def test_interrupt_raises_with_the_partial_results(server: Any) -> None:
    """Ctrl-C during a batch stops it and raises BatchInterrupted holding every item, unfinished ones marked."""
    prompts = PROMPTS * 4
    watcher = _interrupt_when_requests_arrive(server, 1)
    with pytest.raises(BatchInterrupted) as info:
        complete_many(
            prompts,
            base_url=server.url(tps=5),
            model="vman-demo",
            concurrency=2,
            progress=False,
            max_tokens=20,
            stream=True,
        )
    watcher.join()
    partial = info.value.partial
    assert len(partial) == len(prompts) and partial.interrupted
    assert partial.unfinished, "a throttled batch cannot have finished"
    for index in partial.unfinished:
        assert partial[index].incomplete and isinstance(partial[index].error, Unfinished)
    assert "prompts finished" in str(info.value)


@pytest.mark.usefixtures("interruptible")
def test_interrupt_can_return_the_partial_results(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """With on_interrupt='return' the partial list is the return value, announced by one warning line."""
    watcher = _interrupt_when_requests_arrive(server, 1)
    results = complete_many(
        PROMPTS * 4,
        base_url=server.url(tps=5),
        model="vman-demo",
        concurrency=2,
        progress=False,
        max_tokens=20,
        on_interrupt="return",
    )
    watcher.join()
    assert results.interrupted and len(results) == len(PROMPTS) * 4
    assert "returning the partial results" in capsys.readouterr().err


def test_sync_batch_runs_inside_a_running_event_loop(server: Any) -> None:
    """complete_many works where a notebook runs it: on a thread whose event loop is already running."""

    async def cell() -> list[str]:
        return complete_many(PROMPTS[:3], base_url=server.base_url, model="vman-demo", progress=False, **SEEDED).texts

    assert asyncio.run(cell()) == _one_by_one(server.base_url, PROMPTS[:3])


def test_async_batch_matches_the_sync_one(server: Any) -> None:
    """acomplete_many gives the same ordered results on the caller's loop."""
    results = asyncio.run(
        acomplete_many(PROMPTS, base_url=server.base_url, model="vman-demo", progress=False, **SEEDED)
    )
    assert results.texts == _one_by_one(server.base_url, PROMPTS)


def test_cancelling_the_async_batch_propagates(server: Any) -> None:
    """Cancelling the awaiting task cancels the batch and re-raises CancelledError, as asyncio expects."""

    async def main() -> None:
        task = asyncio.ensure_future(
            acomplete_many(PROMPTS * 4, base_url=server.url(tps=5), model="vman-demo", progress=False, max_tokens=20)
        )
        start = server.stats.completions
        while server.stats.completions == start:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_progress_prints_one_summary_line(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The bar goes to stderr and the batch ends with one summary line of counts and tokens."""
    results = complete_many([*PROMPTS[:2], [-1]], base_url=server.base_url, model="vman-demo", max_tokens=3)
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("3 prompts: 2 done, 1 failed; tokens ")
    assert out.split("; ")[:2] == str(results).split("; ")[:2]
    assert "prompt" in err  # tqdm's bar on the terminal
    complete_many(PROMPTS[:2], base_url=server.base_url, model="vman-demo", max_tokens=3, progress=False)
    assert capsys.readouterr() == ("", "")


def test_the_api_key_never_shows(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A key passed to a batch appears in no result, error, summary or progress output."""
    key = "sk-batch-SECRET-1234567890"
    results = complete_many(["Once", [10**9]], base_url=server.base_url, model="vman-demo", api_key=key, max_tokens=2)
    shown = " ".join([repr(results), str(results), *map(repr, results), *(str(e) for e in results.errors.values())])
    out, err = capsys.readouterr()
    assert key not in shown + out + err


def test_streamed_batches_leave_no_pending_tasks(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Streams that end at [DONE] close httpx's byte generator on their own task, so asyncio logs nothing."""
    caplog.set_level("ERROR", logger="asyncio")
    for _ in range(15):
        complete_many(
            ["a", "b", "c", "d"], base_url=server.base_url, model="vman-demo", max_tokens=4, stream=True, progress=False
        )
    assert not [r for r in caplog.records if r.name == "asyncio"]
