"""When to retry a failed request, and how long to wait first.

The policy only *decides*; the client runs the loop, because only the client
knows whether any part of an answer already arrived. The one rule that
matters most to a notebook user: an answer that already delivered text is
never retried behind their back (they would see text vanish and different
text appear). The client enforces that by asking :meth:`RetryPolicy.delay_for`
only while nothing of the answer's body has arrived.

Waiting uses exponential backoff with full jitter (AWS architecture blog,
"Exponential Backoff And Jitter"), unless the server said how long to wait:
``retry-after-ms``, or ``Retry-After`` in seconds or as an HTTP date. Such a
wait is bounded: up to :attr:`RetryPolicy.retry_after_cap` seconds it is
waited (and announced, see :attr:`RetryPolicy.announce`); beyond it (or
``inf``) the call fails at once and the message says how long the server
asked for, so a misconfigured gateway cannot freeze a notebook in silence.

``sleep``, ``async_sleep`` and ``on_retry_after`` are injectable: tests pass a
recorder instead of waiting, and the batch layer passes a hook that slows all
of its workers down when one of them is told to back off.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from ..core.config import DEFAULT_MAX_RETRIES
from ..core.errors import APIConnectionError, APIStatusError, VmanError

__all__ = ["DEFAULT_MAX_RETRIES", "RETRY_STATUSES", "RetryPolicy", "parse_retry_after"]

RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date (RFC 9110
    section 10.2.3). Unparseable or negative values give ``None``: a bad hint
    falls back to our own backoff rather than failing the request.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if ms >= 0:
            return ms / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    return seconds if seconds >= 0 else None


@dataclass(frozen=True)
class RetryPolicy:
    """How often to retry and how long to wait; see the module docstring.

    ``on_retry_after(seconds)`` is called whenever the server itself set the
    delay (a 429 or 503 with ``Retry-After``), before waiting.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay: float = 0.5
    max_delay: float = 8.0
    retry_after_cap: float = 30.0
    announce: bool = True
    """Log (WARNING, shown on stderr) every wait of a second or more before it starts."""
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    on_retry_after: Callable[[float], None] | None = None
    jitter: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {self.max_retries!r}")

    def too_long(self, error: VmanError) -> bool:
        """True when the server asked for a wait beyond :attr:`retry_after_cap` (which is not waited)."""
        hint = getattr(error, "retry_after", None)
        return hint is not None and not hint <= self.retry_after_cap

    @staticmethod
    def is_retryable(error: VmanError) -> bool:
        """Errors worth another try: lost connections, timeouts, 408/409/429/5xx."""
        if isinstance(error, APIStatusError):
            return error.status_code in RETRY_STATUSES or error.status_code >= 500
        return isinstance(error, APIConnectionError)

    def delay_for(self, error: VmanError, attempt: int) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or ``None`` to give up.

        The caller must only ask while no part of the answer body arrived.
        """
        if attempt >= self.max_retries or not self.is_retryable(error):
            return None
        hint = getattr(error, "retry_after", None)
        if hint is not None:
            if self.too_long(error):
                return None  # the caller says how long the server asked for
            delay = float(hint)
            if self.on_retry_after is not None:
                self.on_retry_after(delay)
            return delay
        return self.jitter(0.0, min(self.max_delay, self.base_delay * 2**attempt))
