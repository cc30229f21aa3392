"""Figure 10: batches against a rate-limited gateway, side by side in one run.

The demo server runs in its own process, limited as gateways limit
(``vman-magic serve --rpm 1200 --first-token-ms 200``: 1,200 requests a
minute as a bucket of 20 refilled continuously, 200 ms per completion), with
OpenAI's rate-limit headers and, separately, with bare 429s
(``--no-ratelimit-headers``). A second case adds a token budget that binds
before the request budget (``--tpm``).

Contenders, each on a fresh server so each starts with a full bucket:

* ``complete_many`` with no configuration (learns the limit);
* ``complete_many(rpm=..., tpm=...)`` told the limit;
* ``openai.AsyncOpenAI`` + ``asyncio.Semaphore(32)``, the SDK's defaults
  (2 retries, honouring ``retry-after-ms``): what most people write;
* the OpenAI cookbook's fixed-budget throttle (``api_request_parallel_processor.py``,
  re-written here with httpx, same rules: a per-minute capacity that starts
  full, a send every millisecond while there is capacity, a 15 s pause after
  a 429, 5 attempts). It ignores headers, so it runs once per case. It is
  stopped after :data:`PEER_CAP` seconds.

Goals for ours: throughput >= 90 % of the binding limit, <= 2 % of requests
answered 429, every item completed. Throughput is what the server admitted
per minute: requests, or tokens (``usage``) when tokens bind.

Client CPU per request is measured on the adaptive runs (process CPU time,
the server being in another process), and once more without any limit, to
say how many requests per second one kernel can drive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from ._common import Row, demo_server

RPM = 1200
LATENCY_MS = 200
MAX_TOKENS = 4  # requests bind
TOKEN_MAX_TOKENS = 16  # tokens bind: ~27 tokens per request, so TPM / 27 < RPM
TPM = 24_000
PEER_CAP = 90.0
SEMAPHORE = 32
COOKBOOK_PAUSE = 15.0
COOKBOOK_ATTEMPTS = 5


@dataclass
class Outcome:
    """What one contender achieved against one server."""

    done: int
    total: int
    requests: int  # requests sent, 429s included
    refused: int  # answered 429
    tokens: int  # usage of the completed items
    seconds: float
    cpu: float = 0.0
    stopped: bool = False

    def per_minute(self, unit: str) -> float:
        return (self.done if unit == "requests" else self.tokens) / self.seconds * 60

    def text(self, unit: str, limit: float) -> str:
        rate = self.per_minute(unit)
        share = self.refused / max(self.requests, 1)
        line = (
            f"{rate:,.0f} {unit}/min = {rate / limit:.0%} of limit; {self.refused} x 429 ({share:.1%} of "
            f"{self.requests} requests); {self.done}/{self.total} done in {self.seconds:.1f} s"
        )
        return line + (f" (stopped at {PEER_CAP:.0f} s)" if self.stopped else "")

    def meets(self, unit: str, limit: float) -> bool:
        return self.per_minute(unit) >= 0.9 * limit and self.refused <= 0.02 * self.requests and self.done == self.total


def _prompts(count: int) -> list[str]:
    return [f"Prompt number {i} is about" for i in range(count)]


@contextlib.contextmanager
def _gateway(headers: bool, tpm: int | None) -> Iterator[str]:
    flags: dict[str, Any] = {"rpm": RPM, "first_token_ms": LATENCY_MS}
    if tpm:
        flags["tpm"] = tpm
    with demo_server(**flags, extra=[] if headers else ["--no-ratelimit-headers"]) as url:
        yield url


# --------------------------------------------------------------------------- contenders


def _ours(url: str, prompts: list[str], max_tokens: int, **budget: Any) -> Outcome:
    from vman_magic import complete_many

    cpu, start = time.process_time(), time.perf_counter()
    result = complete_many(prompts, base_url=url, model="vman-demo", progress=False, max_tokens=max_tokens, **budget)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    done = len(prompts) - len(result.failed) - len(result.unfinished)
    requests = len(prompts) + result.rate_limited
    return Outcome(done, len(prompts), requests, result.rate_limited, result.usage.total_tokens, seconds, cpu)


def _semaphore(url: str, prompts: list[str], max_tokens: int) -> Outcome:
    """AsyncOpenAI + Semaphore(32), the SDK's default retries; 429s counted at the transport."""
    import openai

    seen = collections.Counter[int]()

    async def count(response: httpx.Response) -> None:
        seen[response.status_code] += 1

    async def main() -> tuple[int, int]:
        gate = asyncio.Semaphore(SEMAPHORE)
        http = httpx.AsyncClient(event_hooks={"response": [count]}, timeout=60)
        async with openai.AsyncOpenAI(base_url=url, api_key="bench-key", http_client=http) as client:

            async def one(prompt: str) -> int:
                async with gate:
                    try:
                        answer = await client.completions.create(
                            model="vman-demo", prompt=prompt, max_tokens=max_tokens
                        )
                    except openai.APIError:
                        return -1
                    return answer.usage.total_tokens if answer.usage else 0

            used = await asyncio.wait_for(asyncio.gather(*(one(p) for p in prompts)), PEER_CAP)
        return sum(1 for u in used if u >= 0), sum(u for u in used if u > 0)

    start = time.perf_counter()
    done, tokens = asyncio.run(main())
    seconds = time.perf_counter() - start
    return Outcome(done, len(prompts), sum(seen.values()), seen[429], tokens, seconds)


def _cookbook(url: str, prompts: list[str], max_tokens: int, rpm: float, tpm: float) -> Outcome:
    """The cookbook's parallel processor: per-minute capacities, a 15 s pause after a 429, 5 attempts."""

    @dataclass
    class Job:
        prompt: str
        cost: int
        attempts: int = COOKBOOK_ATTEMPTS

    state = {"refused": 0, "requests": 0, "done": 0, "failed": 0, "tokens": 0, "last_429": 0.0}

    async def main() -> None:
        queue = collections.deque(Job(p, len(p) // 4 + max_tokens) for p in prompts)
        retries: asyncio.Queue[Job] = asyncio.Queue()
        requests_left, tokens_left, updated = rpm, tpm, time.time()
        in_flight: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as http:

            async def call(job: Job) -> None:
                state["requests"] += 1
                body = {"model": "vman-demo", "prompt": job.prompt, "max_tokens": max_tokens}
                answer = await http.post(url + "/completions", json=body)
                if answer.status_code == 200:
                    state["done"] += 1
                    state["tokens"] += answer.json()["usage"]["total_tokens"]
                    return
                if answer.status_code == 429:
                    state["refused"] += 1
                    state["last_429"] = time.time()
                if job.attempts:
                    retries.put_nowait(job)
                else:
                    state["failed"] += 1

            job: Job | None = None
            while True:
                if job is None:
                    job = retries.get_nowait() if not retries.empty() else (queue.popleft() if queue else None)
                now = time.time()
                requests_left = min(rpm, requests_left + rpm * (now - updated) / 60)
                tokens_left = min(tpm, tokens_left + tpm * (now - updated) / 60)
                updated = now
                if job is not None and requests_left >= 1 and tokens_left >= job.cost:
                    requests_left, tokens_left, job.attempts = (
                        requests_left - 1,
                        tokens_left - job.cost,
                        job.attempts - 1,
                    )
                    task = asyncio.ensure_future(call(job))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    job = None
                if job is None and not queue and retries.empty() and not in_flight:
                    break
                await asyncio.sleep(0.001)
                paused = time.time() - state["last_429"]
                if paused < COOKBOOK_PAUSE:
                    await asyncio.sleep(COOKBOOK_PAUSE - paused)

    start = time.perf_counter()
    stopped = False
    try:
        asyncio.run(asyncio.wait_for(main(), PEER_CAP))
    except TimeoutError:
        stopped = True
    seconds = time.perf_counter() - start
    return Outcome(
        state["done"], len(prompts), state["requests"], state["refused"], state["tokens"], seconds, stopped=stopped
    )


# --------------------------------------------------------------------------- figure


def _case(label: str, unit: str, limit: float, count: int, tpm: int | None, max_tokens: int) -> list[Row]:
    prompts = _prompts(count)
    budget: dict[str, Any] = {"rpm": RPM, **({"tpm": tpm} if tpm else {})}
    rows: list[Row] = []
    goal = ">= 90% of limit, <= 2% 429s, all done"
    figure = f"10. {count} prompts, {label}"
    cpu: list[float] = []
    for headers in (True, False):
        kind = "with x-ratelimit headers" if headers else "bare 429s (no headers)"
        runs: dict[str, Callable[[str], Outcome]] = {
            "ours, no configuration": lambda url: _ours(url, prompts, max_tokens),
            "ours, " + ", ".join(f"{k}={v:,}" for k, v in budget.items()): lambda url: _ours(
                url, prompts, max_tokens, **budget
            ),
            f"AsyncOpenAI + Semaphore({SEMAPHORE})": lambda url: _semaphore(url, prompts, max_tokens),
        }
        if not headers:  # it reads no header, so one run per case says it all
            runs["cookbook throttle"] = lambda url: _cookbook(url, prompts, max_tokens, RPM, tpm or 1_000_000)
        for name, run in runs.items():
            with _gateway(headers, tpm) as url:
                outcome = run(url)
            ours = name.startswith("ours")
            if name == "ours, no configuration":
                cpu.append(outcome.cpu / outcome.requests)
            rows.append(
                Row(
                    f"{figure}, {kind}: {name}",
                    goal if ours else "(peer)",
                    outcome.text(unit, limit) if ours else "-",
                    "-" if ours else outcome.text(unit, limit),
                    outcome.meets(unit, limit) if ours else None,
                )
            )
    rows[-1].note = (
        f"({label}) the cookbook throttle reads no header, so it runs once per case; it and the SDK are stopped "
        f"after {PEER_CAP:.0f} s. Client CPU of the adaptive runs (with, without headers): "
        + ", ".join(f"{c * 1000:.2f} ms" for c in cpu)
        + " per request sent, start-up included"
    )
    return rows


def _unlimited_cpu(count: int) -> Row:
    """Client CPU per request with nothing holding the batch back: what one kernel can drive."""
    from vman_magic import complete_many

    with demo_server() as url:
        complete_many(_prompts(32), base_url=url, model="vman-demo", progress=False, max_tokens=2)  # warm up
        cpu, start = time.process_time(), time.perf_counter()
        complete_many(_prompts(count), base_url=url, model="vman-demo", progress=False, concurrency=32, max_tokens=2)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    per_request = cpu / count
    return Row(
        f"10. client CPU per request, {count:,} prompts, no limit, concurrency 32",
        "(reference)",
        f"{per_request * 1000:.2f} ms CPU per request = about {1 / per_request:,.0f} requests/s per kernel",
        f"wall {count / seconds:,.0f} requests/s here (the demo server shares the 2 cores)",
        None,
    )


def rows(count: int = 600, peer_cap: float = PEER_CAP, quick: bool = False) -> list[Row]:
    """Both cases and the CPU figure; ``quick`` runs only the request-bound case (the smoke test's sizes)."""
    global PEER_CAP
    PEER_CAP = peer_cap
    out = _case(f"{RPM:,} rpm gateway, {LATENCY_MS} ms per completion", "requests", RPM, count, None, MAX_TOKENS)
    if not quick:
        label = f"{RPM:,} rpm + {TPM:,} tpm gateway (tokens bind), {LATENCY_MS} ms"
        out += _case(label, "tokens", TPM, count, TPM, TOKEN_MAX_TOKENS)
    out.append(_unlimited_cpu(100 if quick else 2_000))
    return out
