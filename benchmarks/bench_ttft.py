"""Figure 4: time to first token on screen vs the raw time to first byte.

The demo server waits ``first_token_ms=300`` before its first token. Ours is
timed from just before ``Client.run`` to the first ``write`` the
:class:`~vman_magic.notebook.display.LiveView` makes (what a user sees); the peer is a
bare ``httpx`` request of the same body, timed to its first body byte. Both
reuse a warm connection, alternate, and the difference of the medians is our
overhead: request building, decoding, the builder and the view.
"""

from __future__ import annotations

import time

import httpx

from ._common import Row, demo_server, median

DELAY_MS = 300


class _FirstWrite:
    """A text stream that remembers when it was first written to."""

    def __init__(self) -> None:
        self.at: float | None = None

    def write(self, text: str) -> int:
        if self.at is None:
            self.at = time.perf_counter()
        return len(text)

    def flush(self) -> None:
        pass


def measure(repeats: int) -> tuple[float, float]:
    """Median seconds to the view's first write, and to httpx's first body byte."""
    from vman_magic import Client, CompletionRequest
    from vman_magic.core.models import CompletionBuilder
    from vman_magic.notebook.display import LiveView

    ours, raw = [], []
    with demo_server() as base_url:
        url = base_url.replace("/v1", f"/x/first_token_ms={DELAY_MS}/v1")
        client = Client(base_url=url, model="vman-demo", max_retries=0)
        http = httpx.Client()
        body = CompletionRequest.build("vman-demo", "Once upon a time", max_tokens=4).to_body()
        for i in range(repeats + 1):  # the first round warms connections and the model
            request = CompletionRequest.build("vman-demo", "Once upon a time", max_tokens=4)
            sink = _FirstWrite()
            view = LiveView(request, rich=False, out=sink)  # type: ignore[arg-type]
            view.start()
            start = time.perf_counter()
            client.run(request, CompletionBuilder(request), on_update=view.update)
            assert sink.at is not None, "the view never wrote"
            if i:
                ours.append(sink.at - start)
            start = time.perf_counter()
            first: float | None = None
            with http.stream("POST", url + "/completions", json=body) as response:
                for _ in response.iter_raw():  # read to the end so the connection is reused
                    if first is None:
                        first = time.perf_counter() - start
            if i and first is not None:
                raw.append(first)
        client.close()
        http.close()
    return median(ours), median(raw)


def rows(repeats: int) -> list[Row]:
    ours, raw = measure(repeats)
    overhead_ms = (ours - raw) * 1000
    return [
        Row(
            f"4. time to first token on screen (server waits {DELAY_MS} ms)",
            "overhead < 10 ms over raw first byte",
            f"{ours * 1000:.1f} ms = raw + {overhead_ms:.1f} ms",
            f"httpx first byte {raw * 1000:.1f} ms",
            overhead_ms < 10,
        )
    ]
