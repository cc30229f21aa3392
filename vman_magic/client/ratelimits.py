"""Reading a gateway's rate-limit headers: ``x-ratelimit-*`` and the retry hints.

OpenAI, Azure OpenAI and LiteLLM describe the caller's budget on every answer::

    x-ratelimit-limit-requests: 1200        requests per minute
    x-ratelimit-remaining-requests: 17      left in the current window
    x-ratelimit-reset-requests: 150ms       until the window is full again
    x-ratelimit-limit-tokens / -remaining-tokens / -reset-tokens   the same for tokens

and a 429 adds ``retry-after-ms`` and/or ``Retry-After``. This module only
*reads* them into a :class:`RateLimits`; what to do with them is the batch
layer's business (:mod:`vman_magic.batch.budget`). The retry hint is parsed by
:func:`vman_magic.client.retry.parse_retry_after`, so there is one parser for
it in the package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .retry import parse_retry_after

__all__ = ["RateLimits", "parse_duration", "parse_rate_limits"]

# "1s", "6m0s", "20ms", "1h2m3.5s", "0.5s"; a bare number is seconds.
_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m(?!s))?(?:(\d+(?:\.\d*)?)s)?(?:(\d+(?:\.\d*)?)ms)?")


@dataclass(frozen=True)
class RateLimits:
    """What one answer's headers say about the budget; ``None`` where a header is missing or unreadable.

    Limits are per minute, as the headers give them; resets and
    ``retry_after`` are in seconds.
    """

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens: float | None = None
    retry_after: float | None = None

    @property
    def any(self) -> bool:
        """True when the answer carried at least one rate-limit header."""
        return any(value is not None for value in self.__dict__.values())


def parse_rate_limits(headers: Mapping[str, str]) -> RateLimits:
    """The rate-limit headers of an answer (``headers`` is case-insensitive, e.g. ``httpx.Headers``)."""
    return RateLimits(
        limit_requests=_number(headers.get("x-ratelimit-limit-requests")),
        remaining_requests=_number(headers.get("x-ratelimit-remaining-requests")),
        reset_requests=parse_duration(headers.get("x-ratelimit-reset-requests")),
        limit_tokens=_number(headers.get("x-ratelimit-limit-tokens")),
        remaining_tokens=_number(headers.get("x-ratelimit-remaining-tokens")),
        reset_tokens=parse_duration(headers.get("x-ratelimit-reset-tokens")),
        retry_after=parse_retry_after(headers),
    )


def parse_duration(value: str | None) -> float | None:
    """Seconds in a reset header: ``"150ms"``, ``"1s"``, ``"6m0s"``, ``"2.5"``; ``None`` if unreadable.

    >>> parse_duration("6m0s"), parse_duration("20ms"), parse_duration("1.5")
    (360.0, 0.02, 1.5)
    """
    if value is None:
        return None
    text = value.strip().lower()
    number = _number(text)
    if number is not None:
        return number
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        return None
    hours, minutes, seconds, millis = (float(part) if part else 0.0 for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _number(value: str | None) -> float | None:
    """A non-negative finite number, or ``None`` (a bad header is ignored, never an error)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 <= number < float("inf") else None
