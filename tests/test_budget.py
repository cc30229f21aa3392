"""Batches at a gateway's limit: budgets, limits learned from headers and 429s, adaptive concurrency.

Every batch test runs against the package's demo server limited the way
gateways limit (``serve(rpm=..., tpm=...)``, with and without rate-limit
headers) and asserts on counts the server kept: completions admitted, 429s
answered, peak concurrency. None asserts on timings.
"""

from __future__ import annotations

import _thread
import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from vman_magic import RateLimitError, ValidationError
from vman_magic.batch.budget import Pacer
from vman_magic.batch.frame import complete_frame
from vman_magic.batch.many import BatchInterrupted, Unfinished, acomplete_many, complete_many
from vman_magic.batch.progress import Tally, TqdmProgress
from vman_magic.batch.sweep import run_sweep
from vman_magic.core.models import Completion, CompletionRequest
from vman_magic.testing import serve

RPM = 1200  # a bucket of 20 requests, refilled 20 a second
COUNT = 60
PROMPTS = [f"Prompt number {i} is about" for i in range(COUNT)]


@pytest.fixture
def limited() -> Iterator[Any]:
    """1,200 requests a minute, 200 ms per completion, with OpenAI's rate-limit headers (a fresh, full bucket)."""
    with serve(rpm=RPM, first_token_ms=200) as server:
        yield server


@pytest.fixture
def silent() -> Iterator[Any]:
    """The same limit, but 429s come without any rate-limit or retry header."""
    with serve(rpm=RPM, first_token_ms=200, ratelimit_headers=False) as server:
        yield server


def _batch(server: Any, **kwargs: Any) -> Any:
    server.stats.reset()
    kwargs.setdefault("max_tokens", 2)
    result = complete_many(PROMPTS, base_url=server.base_url, model="vman-demo", progress=False, **kwargs)
    assert result.failed == [] and not result.interrupted, result.errors
    assert server.stats.completions == COUNT, "every item was admitted exactly once"
    assert result.rate_limited == server.stats.rate_limited, "the batch counted every 429 the server sent"
    return result


async def _unpaced(server: Any, concurrency: int = 8) -> int:
    """What a hand-written AsyncClient + Semaphore loop meets at the same server: the number of 429s."""
    refused = 0
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(prompt: str) -> None:
            nonlocal refused
            async with gate:
                while True:
                    body = {"model": "vman-demo", "prompt": prompt, "max_tokens": 2}
                    answer = await http.post(server.base_url + "/completions", json=body)
                    if answer.status_code != 429:
                        return
                    refused += 1

        await asyncio.gather(*(one(p) for p in PROMPTS))
    return refused


# --------------------------------------------------------------------------- learning the limit


def test_headers_teach_the_limit_so_no_429_is_needed(limited: Any) -> None:
    """With no configuration the batch reads x-ratelimit-* from the first answers and paces to them."""
    result = _batch(limited)
    assert result.rate_limited <= 3  # none in a quiet run; a loaded machine can delay a burst past the bucket
    assert result.budget == "1,200 requests/min from the server's headers"
    limited.stats.reset()
    assert asyncio.run(_unpaced(limited)) > 5 * max(result.rate_limited, 1)  # the same server pushes back on a loop


def test_without_headers_the_limit_is_learned_from_429s(silent: Any) -> None:
    """Bare 429s: one wave of them (at most the 8 in flight), then the learned pace keeps them rare."""
    result = _batch(silent)
    assert 1 <= result.rate_limited <= 15
    assert result.budget.endswith("requests/min learned from 429s")
    assert result.retries == result.rate_limited  # each 429 was sent again, none failed an item
    assert "rate-limited (429)" in str(result)


def test_explicit_budgets_send_under_the_limit(silent: Any) -> None:
    """rpm= paces from the first request: a silent gateway never has to say no."""
    result = _batch(silent, rpm=RPM)
    assert result.rate_limited <= 3
    assert result.budget == "1,200 requests/min given"


def test_token_budget_binds_first() -> None:
    """tpm= with estimates corrected from usage keeps a token-limited server from refusing."""
    with serve(tpm=30_000, first_token_ms=50, ratelimit_headers=False) as server:  # 500 tokens a second
        result = _batch(server, tpm=30_000, max_tokens=16)
        assert result.rate_limited <= 3
        assert result.usage.total_tokens == server.stats.tokens
        assert result.budget == "30,000 tokens/min given"


def test_token_limit_is_learned_from_headers_and_429s() -> None:
    """Without tpm= the token limit comes from x-ratelimit-limit-tokens, or from 429s of type "tokens"."""
    for headers in (True, False):
        with serve(tpm=30_000, first_token_ms=50, ratelimit_headers=headers) as server:
            result = _batch(server, max_tokens=16)
            assert "tokens/min" in result.budget
            assert result.rate_limited <= (3 if headers else 15)


def test_concurrency_grows_when_the_limit_needs_more_in_flight() -> None:
    """A known limit and a slow server (0.6 s a completion) call for more than 8 in flight: the window grows."""
    with serve(rpm=RPM, first_token_ms=600) as server:
        _batch(server)
        assert server.stats.max_active > 8
        server.stats.reset()
        complete_many(PROMPTS[:12], base_url=server.base_url, model="vman-demo", progress=False, concurrency=4)
        assert server.stats.max_active == 4, "an explicit concurrency stays the most in flight"


def test_no_limit_no_change(limited: Any) -> None:
    """Without any limit signal a batch keeps 8 requests in flight and no budget, as before."""
    with serve(first_token_ms=200) as server:
        result = _batch(server)
        assert server.stats.max_active == 8 and result.budget == "" and result.rate_limited == 0


# --------------------------------------------------------------------------- 429s are not failures


def test_a_429_does_not_spend_an_items_retries() -> None:
    """With max_retries=0 a rate-limited item is still sent again when the budget allows, and completes."""
    with serve() as server:
        result = complete_many(
            PROMPTS[:6], base_url=server.url(ratelimit=4, retry_after=0.2), model="vman-demo",
            progress=False, max_retries=0, max_tokens=2,
        )  # fmt: skip
        assert result.failed == [] and result.rate_limited == 4 and result.retries == 4


def test_an_item_that_keeps_meeting_429s_fails_with_the_last_one() -> None:
    """A gateway that always says 429 fails each item after RATE_LIMIT_TRIES, with a RateLimitError."""
    with serve() as server:
        result = complete_many(
            PROMPTS[:2], base_url=server.url(status=429, retry_after=0), model="vman-demo", progress=False,
            concurrency=2, max_tokens=2,
        )  # fmt: skip
        assert result.failed == [0, 1] and isinstance(result[0].error, RateLimitError)
        assert result.rate_limited == 2 * 10


def test_out_of_quota_fails_at_once() -> None:
    """A 429 with code insufficient_quota is no reason to wait: the pacer says do not send it again."""
    pacer = Pacer()
    ticket = asyncio.run(pacer.clear(CompletionRequest.build("m", "p")))
    quota = RateLimitError("You exceeded your current quota", status_code=429, code="insufficient_quota")
    assert pacer.limited(ticket, quota) is False
    assert pacer.limited(ticket, RateLimitError("slow down", status_code=429)) is True


# --------------------------------------------------------------------------- the other entry points


def test_acomplete_many_frame_and_sweep_take_budgets(limited: Any) -> None:
    """rpm=/tpm= reach the async batch, complete_frame and run_sweep alike."""
    limited.stats.reset()
    result = asyncio.run(
        acomplete_many(
            PROMPTS[:10], base_url=limited.base_url, model="vman-demo", progress=False, rpm=600, max_tokens=2
        )
    )
    assert result.failed == [] and result.budget.startswith("600 requests/min given")
    frame = complete_frame(
        pd.DataFrame({"n": range(10)}), "Number {n} is", base_url=limited.base_url, model="vman-demo",
        progress=False, rpm=600, tpm=60_000, max_tokens=2,
    )  # fmt: skip
    assert (frame["completion_error"] == "").all()
    sweep = run_sweep(
        "Once upon a time", {"temperature": [0.0, 1.0]}, show=False, base_url=limited.base_url,
        model="vman-demo", rpm=600, max_tokens=2,
    )  # fmt: skip
    assert sweep.completions.failed == [] and sweep.completions.budget.startswith("600 requests/min given")


@pytest.mark.parametrize(("name", "value"), [("rpm", 0), ("tpm", -5), ("rpm", "fast"), ("tpm", True)])
def test_bad_budgets_are_one_line_errors(limited: Any, name: str, value: Any) -> None:
    """A budget that is not a positive number is refused before anything is sent."""
    with pytest.raises(ValidationError, match=rf"^{name} must be a number > 0 \(\w+ per minute\)"):
        complete_many(PROMPTS, base_url=limited.base_url, model="vman-demo", **{name: value})


def test_interrupt_while_waiting_for_the_budget() -> None:
    """Ctrl-C while the batch sleeps off its budget stops it; the items not sent are marked so."""
    with serve(rpm=6) as server:  # one request, then one every 10 s
        start = server.stats.completions

        def interrupt_after_the_first() -> None:
            while server.stats.completions < start + 1:
                threading.Event().wait(0.01)
            threading.Event().wait(0.3)
            _thread.interrupt_main()

        watcher = threading.Thread(target=interrupt_after_the_first, daemon=True)
        watcher.start()
        with pytest.raises(BatchInterrupted) as info:
            complete_many(PROMPTS[:5], base_url=server.base_url, model="vman-demo", progress=False, rpm=6, max_tokens=2)
        watcher.join()
        partial = info.value.partial
        assert partial[0].error is None and len(partial.unfinished) == 4
        assert all(isinstance(partial[i].error, Unfinished) for i in partial.unfinished)
        assert server.stats.completions == start + 1 and server.stats.rate_limited == 0


# --------------------------------------------------------------------------- what the user sees


def test_the_pacer_says_which_budget_it_waits_for() -> None:
    """Reserving past the bucket gives a wait, and status() words it for the progress bar."""
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    pacer = Pacer(tpm=600, clock=lambda: now[0], sleep=sleep)  # 10 tokens a second, a bucket of 9
    request = CompletionRequest.build("m", "p" * 40, max_tokens=100)  # ~110 tokens: one full bucket, then debt

    async def two() -> None:
        await pacer.clear(request)
        assert slept == []
        await pacer.clear(request)

    asyncio.run(two())
    assert len(slept) == 1 and slept[0] > 10
    waiting, _pace = pacer.status()
    assert waiting.startswith("waiting ") and waiting.endswith(" s for the token budget")
    assert pacer.describe() == "600 tokens/min given"


def test_progress_bar_shows_rate_429s_and_why_it_waits(capsys: pytest.CaptureFixture[str]) -> None:
    """The bar's description says why it waits; its postfix has the pace and the 429s; the summary counts them."""
    bar = TqdmProgress(10, "completions")
    bar.update(Tally(total=10, done=3, rate_limited=2, waiting="waiting 12 s for the token budget", pace=1180.0))
    assert bar._bar.desc == "completions, waiting 12 s for the token budget"
    assert "pace=1,180 req/min" in str(bar._bar) and "429s=2" in str(bar._bar)
    bar.update(Tally(total=10, done=4, rate_limited=2))
    assert bar._bar.desc == "completions"
    bar.close(Tally(total=10, done=10, rate_limited=2))
    assert "; 2 rate-limited (429)" in capsys.readouterr().out


def test_a_429_under_a_given_budget_steps_back_a_little_and_returns() -> None:
    """rpm= is trusted: one 429 paces 10 % below it (not half), and the pace grows back to the budget."""
    now = [0.0]

    async def sleep(seconds: float) -> None:
        pass

    pacer = Pacer(rpm=1200, clock=lambda: now[0], sleep=sleep)
    request = CompletionRequest.build("m", "p", max_tokens=1)

    async def second(count: int) -> Any:
        now[0] += 1.0
        tickets = [await pacer.clear(request) for _ in range(count)]
        return tickets[-1]

    ticket = asyncio.run(second(5))
    assert pacer.limited(ticket, RateLimitError("slow down", status_code=429)) is True
    assert pacer.limits["requests"].rate == pytest.approx(18.0)  # 0.9 x 20 a second
    assert pacer.describe() == "1,080 requests/min learned from 429s"
    for _ in range(10):  # ten busy seconds without a 429: 5 %/s back to the budget
        pacer.done(asyncio.run(second(30)), request, Completion(request))
    assert pacer.describe() == "1,200 requests/min given"
