"""Figure 5: a batch of prompts against servers with 50 ms latency per completion.

With ``concurrency=32`` the ideal wall time is ``prompts x 0.05 / 32``.
Contenders: ``complete_many``; ``openai.AsyncOpenAI`` with an
``asyncio.Semaphore(32)`` (the usual hand-written batch); and a sequential
``Client.complete`` loop, timed on a sample and extrapolated.

Two servers, each in its own process:

* the pre-rendered server with ``--latency-ms 50``: it sleeps and answers,
  spending almost no CPU, so what is left over the ideal is client overhead;
* the demo server with ``first_token_ms=50``: the real model also spends CPU
  on every completion, on the same 2 cores as the client (see figure 7).

``complete_many(group_size=8)`` (eight prompts per request, the API's
list-of-prompts form) is timed where the server supports that form: each run
first probes it with one group. The sleep-only server answers every request
with one canned choice, so there it is only probed, not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

from ._common import Row, bench_server, demo_server, interleaved, median

LATENCY = 0.05
CONCURRENCY = 32
MAX_TOKENS = 2
SEQUENTIAL_SAMPLE = 40
GROUP_SIZE = 8


def _prompts(count: int) -> list[str]:
    return [f"Prompt number {i} is about" for i in range(count)]


def _openai_batch(url: str, model: str, prompts: list[str]) -> None:
    import openai

    async def main() -> None:
        gate = asyncio.Semaphore(CONCURRENCY)
        async with openai.AsyncOpenAI(base_url=url, api_key="bench-key", max_retries=0) as client:

            async def one(prompt: str) -> str:
                async with gate:
                    answer = await client.completions.create(model=model, prompt=prompt, max_tokens=MAX_TOKENS)
                    return answer.choices[0].text

            await asyncio.gather(*(one(p) for p in prompts))

    asyncio.run(main())


def _ours_batch(url: str, model: str, prompts: list[str], group_size: int = 1) -> None:
    from vman_magic import complete_many

    result = complete_many(
        prompts,
        concurrency=CONCURRENCY,
        group_size=group_size,
        base_url=url,
        model=model,
        progress=False,
        max_tokens=MAX_TOKENS,
    )
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} prompts failed: {next(iter(result.errors.values()))}")


def _groups_work(url: str, model: str) -> bool:
    """Whether the server answers a list of prompts with every prompt's choice (one probe group)."""
    try:
        _ours_batch(url, model, _prompts(GROUP_SIZE), group_size=GROUP_SIZE)
    except RuntimeError:
        return False
    return True


def _sequential(url: str, model: str, prompts: list[str]) -> float:
    """Seconds per prompt of a plain loop."""
    from vman_magic import Client

    with Client(base_url=url, model=model, max_retries=0) as client:
        start = time.perf_counter()
        for prompt in prompts:
            client.complete(prompt, stream=False, max_tokens=MAX_TOKENS)
        return (time.perf_counter() - start) / len(prompts)


@contextlib.contextmanager
def _latency_server() -> Iterator[tuple[str, str]]:
    with bench_server(1, latency_ms=LATENCY * 1000) as url:
        yield url, "bench"


@contextlib.contextmanager
def _demo_latency_server() -> Iterator[tuple[str, str]]:
    with demo_server() as base_url:
        yield base_url.replace("/v1", f"/x/first_token_ms={LATENCY * 1000:g}/v1"), "vman-demo"


def measure(
    server: Callable[[], contextlib.AbstractContextManager[tuple[str, str]]], count: int, repeats: int
) -> dict[str, float]:
    prompts = _prompts(count)
    with server() as (url, model):
        contenders = {
            "ours": lambda: _ours_batch(url, model, prompts),
            "openai": lambda: _openai_batch(url, model, prompts),
        }
        grouping = _groups_work(url, model)
        if grouping:
            contenders["grouped"] = lambda: _ours_batch(url, model, prompts, group_size=GROUP_SIZE)
        out = {name: median(t) for name, t in interleaved(contenders, repeats, warmup=1).items()}
        out["sequential"] = _sequential(url, model, prompts[:SEQUENTIAL_SAMPLE]) * count
    return out


def rows(count: int, repeats: int) -> list[Row]:
    ideal = count * LATENCY / CONCURRENCY
    out = []
    for label, server in (("sleep-only server", _latency_server), ("demo server", _demo_latency_server)):
        m = measure(server, count, repeats)
        notes = [f"sequential extrapolated from {SEQUENTIAL_SAMPLE} prompts"] if not out else []
        if "grouped" not in m:
            notes.append(
                f"the {label} does not answer a list of prompts, so group_size={GROUP_SIZE} is not timed there"
            )
        figure = f"5. batch of {count:,} prompts, 50 ms latency, concurrency {CONCURRENCY}, {label}"
        out.append(
            Row(
                figure,
                "within 15% of ideal; not slower than openai SDK",
                f"{m['ours']:.2f} s = {m['ours'] / ideal:.2f}x ideal ({ideal:.2f} s), {m['ours'] / m['openai']:.2f}x SDK time",
                f"AsyncOpenAI + semaphore {m['openai']:.2f} s ({m['openai'] / ideal:.2f}x ideal);"
                f" sequential ~{m['sequential']:.0f} s",
                m["ours"] <= ideal * 1.15 and m["ours"] <= m["openai"] * 1.05,
                "; ".join(notes),
            )
        )
        if "grouped" in m:
            requests = -(-count // GROUP_SIZE)
            out.append(
                Row(
                    f"{figure}, group_size={GROUP_SIZE}",
                    "(measured against group_size=1)",
                    f"{m['grouped']:.2f} s = {m['grouped'] / m['ours']:.2f}x the time of group_size=1"
                    f" ({requests} requests)",
                    f"group_size=1 {m['ours']:.2f} s ({count} requests)",
                    None,
                )
            )
    return out
