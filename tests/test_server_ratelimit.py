"""The demo server's rpm/tpm limits, over HTTP, as a gateway would enforce them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import httpx

from vman_magic.client.ratelimits import parse_rate_limits
from vman_magic.demo.ratelimit import format_duration
from vman_magic.testing import serve

BODY = {"model": "vman-demo", "prompt": "Once upon a time", "max_tokens": 4}


def _post(base_url: str, **changes: Any) -> httpx.Response:
    return httpx.post(base_url + "/completions", json={**BODY, **changes}, timeout=30)


def test_over_the_request_limit_is_a_429_with_openai_headers() -> None:
    """6 rpm is a bucket of one request refilled every 10 s: the second request at once is refused, and said so."""
    with serve(rpm=6) as server:
        first = _post(server.base_url)
        second = _post(server.base_url)
        assert first.status_code == 200 and second.status_code == 429
        assert first.headers["x-ratelimit-limit-requests"] == "6"
        assert first.headers["x-ratelimit-remaining-requests"] == "0"
        error = second.json()["error"]
        assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
        assert "Rate limit reached for vman-demo on requests per min (RPM): Limit 6" in error["message"]
        limits = parse_rate_limits(second.headers)
        assert limits.limit_requests == 6 and limits.remaining_requests == 0
        assert limits.retry_after is not None and 9 < limits.retry_after <= 10  # retry-after-ms, read first
        assert second.headers["retry-after"] == "10"
        assert server.stats.rate_limited == 1 and server.stats.completions == 1


def test_without_headers_a_429_explains_nothing() -> None:
    """ratelimit_headers=False: no x-ratelimit-* on answers, no retry hint on the 429."""
    with serve(rpm=6, ratelimit_headers=False) as server:
        first, second = _post(server.base_url), _post(server.base_url)
        assert first.status_code == 200 and second.status_code == 429
        for response in (first, second):
            assert not parse_rate_limits(response.headers).any
        assert second.json()["error"]["type"] == "requests"
        assert server.stats.rate_limited == 1


def test_tokens_are_reserved_up_front_and_unused_ones_given_back() -> None:
    """A request reserves prompt + max_tokens per choice; what it did not write comes back when it ends."""
    with serve(tpm=60_000) as server:  # a bucket of 1,000 tokens
        used = _post(server.base_url, max_tokens=50, stop=" ")  # stops early: most of the 50 come back
        usage = used.json()["usage"]
        assert usage["completion_tokens"] < 50
        after = parse_rate_limits(_post(server.base_url, max_tokens=1).headers)
        reserved_then = 1000 - int(used.headers["x-ratelimit-remaining-tokens"])
        assert reserved_then >= usage["prompt_tokens"] + 50  # the reservation, give or take the refill
        assert after.remaining_tokens is not None
        assert after.remaining_tokens >= 1000 - usage["total_tokens"] - (usage["prompt_tokens"] + 1) - 1


def test_over_the_token_limit_says_tokens() -> None:
    """A request bigger than the bucket goes through when it is full (into debt); the next one is refused on tokens."""
    with serve(tpm=600) as server:  # 10 tokens a second
        big = _post(server.base_url, max_tokens=40)
        refused = _post(server.base_url, max_tokens=40)
        assert big.status_code == 200 and refused.status_code == 429
        assert refused.json()["error"]["type"] == "tokens"
        assert "on tokens per min (TPM): Limit 600" in refused.json()["error"]["message"]
        assert parse_rate_limits(refused.headers).remaining_tokens == 0


def test_models_and_bad_requests_are_not_counted() -> None:
    """Only admitted completions spend the budget: /v1/models and a 400 leave it alone."""
    with serve(rpm=6) as server:
        assert httpx.get(server.base_url + "/models", timeout=30).status_code == 200
        assert _post(server.base_url, temperature=9).status_code == 400
        assert _post(server.base_url).status_code == 200
        assert server.stats.rate_limited == 0


def test_reset_durations_use_openais_format() -> None:
    """Resets read like OpenAI's: milliseconds under a second, then seconds and minutes."""
    assert [format_duration(s) for s in (0.0004, 0.05, 1.0, 2.5, 61)] == ["1ms", "50ms", "1s", "2.5s", "1m1s"]


def test_cli_serves_with_limits_and_no_headers() -> None:
    """`vman-magic serve --rpm 6 --no-ratelimit-headers` limits completions and sends bare 429s."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vman_magic", "serve", "--rpm", "6", "--no-ratelimit-headers"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().split()[1]
        codes = [_post(base).status_code for _ in range(2)]
        refused = _post(base)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert codes == [200, 429] and refused.status_code == 429
    assert not parse_rate_limits(refused.headers).any


def test_cli_rejects_a_limit_that_is_not_positive() -> None:
    """--rpm 0 is refused by the argument parser with a message naming the flag."""
    done = subprocess.run(
        [sys.executable, "-m", "vman_magic", "serve", "--rpm", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "--rpm" in done.stderr and "must be > 0" in done.stderr
