"""Figure 7: the demo server's own throughput (it runs in its own process).

* one stream: events per second of a long unthrottled completion, read by a
  bare ``httpx`` loop so the client costs as little as possible;
* 64 concurrent clients: completions per second of short non-streamed
  requests sent by ``AsyncClient`` workers.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from ._common import Row, demo_server, fmt_rate

NO_EOS = {"0": -100}
CLIENTS = 64


def _one_stream(base_url: str, tokens: int) -> float:
    body = {"model": "vman-demo", "prompt": "Once upon a time", "max_tokens": tokens, "stream": True,
            "logit_bias": NO_EOS}  # fmt: skip
    with httpx.Client(timeout=120) as http:
        start = time.perf_counter()
        events = 0
        with http.stream("POST", base_url + "/completions", json=body) as response:
            for line in response.iter_lines():
                events += line.startswith("data: ")
        return (events - 1) / (time.perf_counter() - start)


def _concurrent(base_url: str, total: int) -> float:
    from vman_magic import AsyncClient

    async def main() -> float:
        pending = iter(range(total))
        async with AsyncClient(base_url=base_url, model="vman-demo", max_retries=0) as client:

            async def worker() -> None:
                for i in pending:
                    await client.complete(f"Prompt {i} is about", stream=False, max_tokens=8)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CLIENTS)))
            return total / (time.perf_counter() - start)

    return asyncio.run(main())


def rows(tokens: int, total: int) -> list[Row]:
    with demo_server() as base_url:
        _one_stream(base_url, 50)  # loads the model
        stream_rate = _one_stream(base_url, tokens)
        completions = _concurrent(base_url, total)
    return [
        Row(
            f"7a. demo server, one stream of {tokens:,} tokens",
            "(reference)",
            f"{fmt_rate(stream_rate)} events",
            "-",
            None,
        ),
        Row(
            f"7b. demo server, {CLIENTS} concurrent clients, {total} completions of 8 tokens",
            "(reference)",
            f"{completions:.0f} completions/s",
            "-",
            None,
        ),
    ]
