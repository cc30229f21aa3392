"""Rate limits for the demo server, enforced the way gateways enforce them.

A limit of 1,200 requests per minute is not a burst of 1,200 followed by a
minute of silence: gateways enforce it over short windows. Here each limit is
a token bucket holding one second's worth (20 requests for 1,200 rpm),
refilled continuously, so a client that sends faster than the limit meets a
429 within a second, as it would at OpenAI, Azure or LiteLLM.

Tokens are counted as OpenAI counts them: a request reserves its prompt
tokens plus ``max_tokens`` for each choice it may write (``best_of`` or
``n``, per prompt) when it is admitted; when the answer ends, the completion
tokens it did not use are given back, so over time the bucket is charged
what ``usage`` reports. A request larger than the bucket is admitted when the
bucket is full and leaves it in debt, so it is slow, never impossible.

Admitted answers and 429s carry OpenAI's headers (``x-ratelimit-limit-*``,
``-remaining-*``, ``-reset-*``; on a 429 also ``retry-after-ms`` and
``Retry-After``), unless the limiter was made with ``headers=False``: then a
429 is a bare status with an error body, like a gateway that explains
nothing, and clients must learn the limit from the 429s alone.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import APIError

__all__ = ["Admission", "Bucket", "RateLimiter", "format_duration"]


class Bucket:
    """``per_minute`` units as a bucket of one second's worth, refilled continuously; may go into debt."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self._stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` may be taken (0 if now); a refilled bucket admits any amount."""
        need = min(amount, self.capacity)
        return max(0.0, (need - self.level) / self.rate)

    def take(self, amount: float) -> None:
        self.level -= amount

    def give(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)

    def reset_in(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass
class Admission:
    """An admitted request: its reservation, and the headers its answer carries."""

    reserved_completion: int
    headers: list[tuple[str, str]]


class RateLimiter:
    """Requests and tokens per minute for one server; thread-safe (tests read it from another thread)."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        headers: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        now = clock()
        self.requests = Bucket(rpm, now) if rpm else None
        self.tokens = Bucket(tpm, now) if tpm else None
        self.send_headers = headers
        self._clock = clock
        self._lock = threading.Lock()
        self.rejected = {"requests": 0, "tokens": 0}
        """429s answered, by the budget that refused."""

    @property
    def active(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def admit(self, prompt_tokens: int, reserved_completion: int, model: str) -> Admission:
        """Charge one request, or raise a 429 :class:`APIError` saying which budget refused and for how long."""
        cost = prompt_tokens + reserved_completion
        with self._lock:
            now = self._clock()
            waits: list[tuple[float, str, Bucket, float]] = []
            for kind, bucket, amount in (("requests", self.requests, 1.0), ("tokens", self.tokens, float(cost))):
                if bucket is not None:
                    bucket.refill(now)
                    wait = bucket.wait_for(amount)
                    if wait > 0:
                        waits.append((wait, kind, bucket, amount))
            if waits:
                wait, kind, bucket, amount = max(waits, key=lambda w: w[0])
                self.rejected[kind] += 1
                raise self._rejection(kind, bucket, amount, wait, model)
            if self.requests is not None:
                self.requests.take(1)
            if self.tokens is not None:
                self.tokens.take(cost)
            return Admission(reserved_completion, self._headers())

    def release(self, admission: Admission, completion_tokens: int) -> None:
        """The answer ended: give back the reserved completion tokens it did not write."""
        if self.tokens is None:
            return
        with self._lock:
            self.tokens.refill(self._clock())
            self.tokens.give(max(0, admission.reserved_completion - completion_tokens))

    def _headers(self, retry_after: float | None = None) -> list[tuple[str, str]]:
        if not self.send_headers:
            return []
        out: list[tuple[str, str]] = []
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                out += [
                    (f"x-ratelimit-limit-{kind}", f"{bucket.per_minute:g}"),
                    (f"x-ratelimit-remaining-{kind}", str(max(0, math.floor(bucket.level)))),
                    (f"x-ratelimit-reset-{kind}", format_duration(bucket.reset_in())),
                ]
        if retry_after is not None:
            out += [
                ("retry-after-ms", str(math.ceil(retry_after * 1000))),
                ("retry-after", str(math.ceil(retry_after))),
            ]
        return out

    def _rejection(self, kind: str, bucket: Bucket, amount: float, wait: float, model: str) -> APIError:
        short = "RPM" if kind == "requests" else "TPM"
        used = max(0, math.ceil(bucket.capacity - bucket.level))
        message = (
            f"Rate limit reached for {model} on {kind} per min ({short}): Limit {bucket.per_minute:g}, "
            f"Used {used} of {bucket.capacity:g} in the current second, Requested {amount:g}. "
            f"Please try again in {format_duration(wait)}."
        )
        return APIError(429, message, type=kind, code="rate_limit_exceeded", headers=self._headers(wait))


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``"150ms"`` under a second, else ``"1.5s"`` or ``"2m3s"``.

    >>> format_duration(0.15), format_duration(1.5), format_duration(123)
    ('150ms', '1.5s', '2m3s')
    """
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{round(rest, 3):g}s"
    return f"{int(minutes)}m{text}" if minutes else text
