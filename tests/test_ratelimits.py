"""Reading rate-limit headers: x-ratelimit-* triples, reset durations, retry hints."""

from __future__ import annotations

import httpx
import pytest

from vman_magic.client.ratelimits import parse_duration, parse_rate_limits


def test_openai_headers_are_read_into_numbers() -> None:
    """The six x-ratelimit headers and retry-after-ms become per-minute limits, counts and seconds."""
    headers = httpx.Headers(
        {
            "X-RateLimit-Limit-Requests": "1200",
            "x-ratelimit-remaining-requests": "17",
            "x-ratelimit-reset-requests": "150ms",
            "x-ratelimit-limit-tokens": "40000",
            "x-ratelimit-remaining-tokens": "39000",
            "x-ratelimit-reset-tokens": "1m30s",
            "retry-after-ms": "250",
        }
    )
    limits = parse_rate_limits(headers)
    assert (limits.limit_requests, limits.remaining_requests, limits.reset_requests) == (1200, 17, 0.15)
    assert (limits.limit_tokens, limits.remaining_tokens, limits.reset_tokens) == (40000, 39000, 90)
    assert limits.retry_after == 0.25 and limits.any


def test_missing_or_garbled_headers_are_none() -> None:
    """A gateway that sends nothing, or nonsense, gives None fields, never an error."""
    assert not parse_rate_limits(httpx.Headers({"content-type": "application/json"})).any
    garbled = parse_rate_limits(
        httpx.Headers({"x-ratelimit-limit-requests": "lots", "x-ratelimit-reset-tokens": "soon"})
    )
    assert garbled.limit_requests is None and garbled.reset_tokens is None and not garbled.any
    assert parse_rate_limits(httpx.Headers({"x-ratelimit-remaining-tokens": "-5"})).remaining_tokens is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5), ("1m", 60.0), ("", None)],
)
def test_reset_durations(text: str, seconds: float | None) -> None:
    """Go-style durations as OpenAI writes them, and bare seconds."""
    assert parse_duration(text) == seconds
