"""Retry decisions and Retry-After parsing; the client loop is tested in test_client.py."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from vman_magic.client.retry import RetryPolicy, parse_retry_after
from vman_magic.core.errors import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    RateLimitError,
    StreamError,
)


def _status(cls: type, code: int, retry_after: float | None = None) -> object:
    return cls("x", status_code=code, retry_after=retry_after)


def test_retry_after_seconds_and_milliseconds() -> None:
    """``retry-after-ms`` wins over ``Retry-After`` seconds; both give seconds."""
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5", "retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({}) is None


def test_retry_after_http_date() -> None:
    """An HTTP-date ``Retry-After`` is converted to seconds from now."""
    now = 1_700_000_000.0
    when = format_datetime(datetime.fromtimestamp(now + 30, tz=timezone.utc), usegmt=True)
    assert parse_retry_after({"retry-after": when}, now=now) == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(now - 30, tz=timezone.utc), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0


@pytest.mark.parametrize("junk", ["soon", "-5", "", "Mon, 99 Foo"])
def test_unparseable_retry_after_is_ignored(junk: str) -> None:
    """A malformed hint is ignored, so our own backoff applies."""
    assert parse_retry_after({"retry-after": junk}) is None


def test_which_errors_are_retried() -> None:
    """Connection errors, timeouts, 408/409/429 and 5xx are retried; 400 and stream errors are not."""
    policy = RetryPolicy(jitter=lambda lo, hi: hi)
    assert policy.delay_for(APIConnectionError("x"), 0) is not None
    assert policy.delay_for(APITimeoutError("x"), 0) is not None
    for code in (408, 409, 429, 500, 502, 503):
        assert policy.delay_for(_status(InternalServerError, code), 0) is not None  # type: ignore[arg-type]
    assert policy.delay_for(_status(BadRequestError, 400), 0) is None  # type: ignore[arg-type]
    assert policy.delay_for(StreamError("x"), 0) is None


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    """The jitter range doubles each attempt up to max_delay, and stops after max_retries."""
    ranges: list[tuple[float, float]] = []

    def jitter(lo: float, hi: float) -> float:
        ranges.append((lo, hi))
        return hi

    policy = RetryPolicy(max_retries=6, base_delay=0.5, max_delay=4.0, jitter=jitter)
    delays = [policy.delay_for(APIConnectionError("x"), n) for n in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, None]
    assert all(lo == 0.0 for lo, _ in ranges)


def test_server_hint_is_honoured_up_to_the_cap_and_reported() -> None:
    """A Retry-After hint is used as is up to the cap and passed to on_retry_after; beyond it, no retry at all."""
    seen: list[float] = []
    policy = RetryPolicy(retry_after_cap=60.0, on_retry_after=seen.append)
    assert policy.delay_for(_status(RateLimitError, 429, retry_after=7.0), 0) == 7.0  # type: ignore[arg-type]
    for asked in (60.5, 3600.0, float("inf")):
        error = _status(RateLimitError, 429, retry_after=asked)
        assert policy.delay_for(error, 1) is None and policy.too_long(error)  # type: ignore[arg-type]
    assert seen == [7.0]


def test_zero_retries_means_no_retry() -> None:
    """max_retries=0 gives up at once; a negative value is refused."""
    assert RetryPolicy(max_retries=0).delay_for(APIConnectionError("x"), 0) is None
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
