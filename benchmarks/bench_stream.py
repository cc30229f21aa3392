"""Figure 1: stream decode throughput, ours vs the openai SDK, httpx-sse and a bare loop.

All four read the same pre-rendered stream from :mod:`benchmarks.sse_server`
(running in its own process) and end with the text of every choice, so each
does the work a user needs: decode every event and keep the text. Ours also
keeps the finish reasons and usage in a :class:`~vman_magic.Completion`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from ._common import Row, bench_server, fmt_rate, interleaved, median

BODY = {"model": "bench", "prompt": "x", "max_tokens": 16, "stream": True}


def _collect(parts: dict[int, list[str]], chunk: dict[str, Any]) -> None:
    for choice in chunk["choices"]:
        parts.setdefault(choice["index"], []).append(choice["text"])


def _ours(base_url: str) -> Callable[[], int]:
    from vman_magic import Client

    client = Client(base_url=base_url, api_key="bench-key", model="bench", max_retries=0)

    def run() -> int:
        return sum(map(len, client.complete("x", max_tokens=16).texts))

    return run


def _openai(base_url: str) -> Callable[[], int]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench-key", max_retries=0)

    def run() -> int:
        parts: dict[int, list[str]] = {}
        for chunk in client.completions.create(model="bench", prompt="x", max_tokens=16, stream=True):
            for choice in chunk.choices:
                parts.setdefault(choice.index, []).append(choice.text)
        return sum(len("".join(p)) for p in parts.values())

    return run


def _httpx_sse(base_url: str) -> Callable[[], int]:
    from httpx_sse import connect_sse

    http = httpx.Client()

    def run() -> int:
        parts: dict[int, list[str]] = {}
        with connect_sse(http, "POST", base_url + "/completions", json=BODY) as source:
            for event in source.iter_sse():
                if event.data == "[DONE]":
                    break
                _collect(parts, json.loads(event.data))
        return sum(len("".join(p)) for p in parts.values())

    return run


def _bare(base_url: str) -> Callable[[], int]:
    http = httpx.Client()

    def run() -> int:
        parts: dict[int, list[str]] = {}
        with http.stream("POST", base_url + "/completions", json=BODY) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                    if data == "[DONE]":
                        break
                    _collect(parts, json.loads(data))
        return sum(len("".join(p)) for p in parts.values())

    return run


def _ours_stdlib_json(base_url: str) -> Callable[[], int]:
    """Ours with the decoder's orjson fast path switched off (what users without orjson get)."""
    import vman_magic.client.shape as shape

    inner = _ours(base_url)

    def run() -> int:
        saved, shape.loads = shape.loads, shape.json_loads
        try:
            return inner()
        finally:
            shape.loads = saved

    return run


def measure(events: int, choices: int, repeats: int) -> dict[str, float]:
    """Events per second (median) of each contender on one ``choices``-way stream."""
    with bench_server(events, choices) as base_url:
        contenders = {
            "ours": _ours(base_url),
            "ours_json": _ours_stdlib_json(base_url),
            "openai": _openai(base_url),
            "httpx_sse": _httpx_sse(base_url),
            "bare": _bare(base_url),
        }
        sizes = {name: func() for name, func in contenders.items()}
        if len(set(sizes.values())) != 1:
            raise RuntimeError(f"the contenders decoded different amounts of text: {sizes}")
        times = interleaved(contenders, repeats, warmup=0)
    return {name: events / median(t) for name, t in times.items()}


def rows(events: int, repeats: int) -> list[Row]:
    out = []
    for choices in (1, 8):
        rate = measure(events, choices, repeats)
        vs_sdk = rate["ours"] / rate["openai"]
        vs_bare = rate["ours"] / rate["bare"]
        peers = (
            f"openai {fmt_rate(rate['openai'])}, httpx-sse {fmt_rate(rate['httpx_sse'])}, bare {fmt_rate(rate['bare'])}"
        )
        out.append(
            Row(
                f"1. stream decode, n={choices} ({events:,} events)",
                ">= 10x openai SDK, >= 1x bare loop",
                f"{fmt_rate(rate['ours'])} = {vs_sdk:.1f}x SDK, {vs_bare:.2f}x bare"
                f" (stdlib json: {fmt_rate(rate['ours_json'])}, {rate['ours_json'] / rate['bare']:.2f}x bare)",
                peers,
                vs_sdk >= 10 and vs_bare >= 1,
            )
        )
    return out
