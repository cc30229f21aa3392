"""How fast a batch may send: request and token budgets, and the concurrency that follows them.

Gateways limit requests and tokens per minute, and enforce it over short
windows (1,200 rpm is about 20 requests in any second, not 1,200 at once).
A :class:`Pacer` keeps a batch under those limits without being told them:

* **Budgets.** Each limit is a token bucket holding one second's worth,
  refilled continuously (:class:`~.buckets.Bucket`); a worker reserves one request and
  its estimated tokens before each send and sleeps off any debt, so sends
  are spaced, never bursts. Tokens are estimated before sending (prompt
  length, plus ``max_tokens`` for each choice: what gateways reserve) and
  corrected from ``usage`` when the answer ends (:class:`~.buckets.TokenEstimator`).
* **Where the rate comes from**, most trusted first: ``rpm=``/``tpm=`` given
  by the caller; the server's ``x-ratelimit-limit-*`` headers, read from the
  first answer (its ``-remaining-*`` headers then keep our buckets no fuller
  than the server's, which covers other clients sharing the key); without
  headers, the 429s themselves. At the first one the server's bucket is
  empty, so what it admitted in the second before is its refill plus at most
  one bucket (a second's worth, where gateways enforce short windows): half
  of that, a lower bound, is where the pacing starts. Two 429s bracket an
  interval in which the bucket went from empty to empty, so the requests (or
  tokens) admitted between them measure the refill rate itself. Between
  429s the rate grows while the budget is what holds the batch back (before
  a measurement, a quarter of the way back to the rate that overshot per
  second, at least 5 %/s; after one, 1 %/s up to 98 % of it, and past that
  only after 10 s without a 429): additive increase, multiplicative
  decrease, with a measured ceiling. A 429 under a budget the caller gave
  (a noisy moment, another client on the key) steps 10 % below it and grows
  back at 5 %/s: the caller's word is trusted over a single refusal.
* **Concurrency follows the rate** (Little's law): with a known limit the
  window of requests in flight is ``rate x latency x 1.25 + 1``, between the
  starting concurrency and the ceiling, so a slow gateway gets enough
  requests in flight to use its quota. If latency climbs to twice its
  baseline, the window is cut by a quarter and grows back one per window.
* **Without any limit signal nothing changes**: no bucket, ``concurrency``
  requests in flight (8 by default), exactly as before budgets existed.

A 429 is not an item's failure here: the engine sends the item again once
the budget allows (up to :data:`RATE_LIMIT_TRIES` times), and a 429 whose
code is ``insufficient_quota`` (the account is out of credit) fails at once.
``Retry-After`` / ``retry-after-ms`` still hold back every worker through
the engine's :class:`~vman_magic.batch.engine.RateGate`; one asking for
longer than the client's ``retry_after_cap`` fails the item at once.

Everything here runs on the batch's event loop; views read :meth:`Pacer.status`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..client.ratelimits import RateLimits, parse_rate_limits
from ..client.retry import RetryPolicy
from ..core.errors import APIStatusError, RateLimitError, ValidationError, VmanError
from ..core.models import Completion, CompletionRequest
from .buckets import BURST_SECONDS, Bucket, TokenEstimator, Window

__all__ = [
    "DEFAULT_CONCURRENCY",
    "MAX_CONCURRENCY",
    "RATE_LIMIT_TRIES",
    "Pacer",
    "Ticket",
    "check_budget",
    "without_rate_limit_retries",
]

DEFAULT_CONCURRENCY = 8
"""Requests in flight when nothing is known about the server's limits (and the start when adapting)."""
MAX_CONCURRENCY = 64
"""How far the window may grow with ``concurrency=None`` when a known limit and a slow server call for it."""
RATE_LIMIT_TRIES = 10
"""How often one item may meet a 429 before it fails with it (its other retries are the client's)."""
_HISTORY_SECONDS = 60.0  # how long sends are remembered for measuring rates
_FLOOR = 1 / 60  # never pace slower than one request (or token) a minute
_KINDS = ("requests", "tokens")


def check_budget(name: str, value: Any) -> float | None:
    """``rpm``/``tpm`` as a positive float, or a :class:`ValidationError` that says what to pass."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        unit = "requests" if name == "rpm" else "tokens"
        raise ValidationError(
            f"{name} must be a number > 0 ({unit} per minute), or None to learn the limit from the server; "
            f"got {value!r}",
            param=name,
        )
    return float(value)


def without_rate_limit_retries(policy: RetryPolicy) -> RetryPolicy:
    """``policy`` minus 429s: in a batch the :class:`Pacer` decides when a rate-limited item goes again."""
    return _BatchRetryPolicy(**{f: getattr(policy, f) for f in policy.__dataclass_fields__})


@dataclass(frozen=True)
class _BatchRetryPolicy(RetryPolicy):
    @staticmethod
    def is_retryable(error: VmanError) -> bool:
        return not isinstance(error, RateLimitError) and RetryPolicy.is_retryable(error)


@dataclass
class Ticket:
    """One send: what it reserved, when it left, and what its answer said."""

    tokens: float
    sent_at: float = 0.0
    totals: tuple[float, float] = (0.0, 0.0)
    """Requests and tokens sent by the batch up to and including this one."""
    limits: RateLimits | None = None
    rejected: bool = False
    charged: float | None = None  # the tokens usage reported, once known
    heard: Callable[[int, Any], None] = field(default=lambda status, headers: None, repr=False)


@dataclass
class _Limit:
    """What is known about one budget, in units per second, and the bucket that paces it."""

    explicit: float | None = None
    announced: float | None = None  # x-ratelimit-limit-* / 60
    probed: float | None = None  # learned from 429s
    bucket: Bucket | None = None
    measured: float | None = None  # the rate the last two 429s bracketed
    overshoot: float | None = None  # the send rate that met the first 429
    last_429: float | None = None  # send time of the request whose 429 last cut the rate
    cut_at: float = -math.inf
    grown_at: float = 0.0
    waited_at: float = -math.inf  # the last time a send had to wait for this budget

    @property
    def rate(self) -> float | None:
        rates = [r for r in (self.explicit, self.announced, self.probed) if r is not None]
        return min(rates) if rates else None

    @property
    def source(self) -> str:
        rate = self.rate
        if rate is None:
            return ""
        if rate == self.explicit:
            return "given"
        return "from the server's headers" if rate == self.announced else "learned from 429s"


# --------------------------------------------------------------------------- the pacer


class Pacer:
    """Budgets, their learning, and the concurrency window of one batch (see the module docstring)."""

    def __init__(
        self,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        concurrency: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        hold: Callable[[float], None] = lambda seconds: None,
        retry_after_cap: float = RetryPolicy.retry_after_cap,
    ) -> None:
        self.start = concurrency or DEFAULT_CONCURRENCY
        self.ceiling = concurrency or MAX_CONCURRENCY
        self.window = Window(self.start)
        self.estimator = TokenEstimator()
        self.limits = {"requests": _Limit(), "tokens": _Limit()}
        self.rate_limited = 0
        """429s met by the batch."""
        self._clock = clock
        self._sleep = sleep
        self._hold = hold
        self._retry_after_cap = retry_after_cap
        self._epoch = 0  # bumped when a rate is cut or a bucket debited: sleeping reservations are redone
        self._totals = [0.0, 0.0]  # requests, tokens sent
        self._log: deque[Ticket] = deque()  # sends of the last minute, for measuring rates
        self._started: float | None = None  # the first send
        self._waiting: tuple[str, float] = ("", 0.0)  # the longest current wait: budget, until
        self._latency: float | None = None  # EWMA of send-to-done seconds
        self._baseline = math.inf
        self._latency_cap = float(self.ceiling)
        self._latency_cut_at = -math.inf
        self._tokens_per_request: float | None = None
        now = clock()
        for kind, value in (("requests", rpm), ("tokens", tpm)):
            if value is not None:
                self.limits[kind].explicit = value / 60
                self._pace(kind, now)
        self._resize()

    # -- sending

    async def clear(self, request: CompletionRequest) -> Ticket:
        """Wait until the budgets allow ``request``; return its :class:`Ticket`, stamped as sent."""
        ticket = Ticket(self.estimator.cost(request))
        ticket.heard = lambda status, headers: self._heard(ticket, headers)
        costs = (1.0, ticket.tokens)
        while True:
            epoch, now = self._epoch, self._clock()
            waits = [
                (b.reserve(cost, now), kind)
                for kind, cost in zip(_KINDS, costs, strict=True)
                if (b := self.limits[kind].bucket) is not None
            ]
            wait, kind = max(waits, default=(0.0, ""))
            if wait <= 0:
                break
            self.limits[kind].waited_at = now
            if now + wait > self._waiting[1]:
                self._waiting = (kind, now + wait)
            try:
                await self._sleep(wait)
            except BaseException:
                self._unreserve(costs, now, sent=False)
                raise
            if self._epoch == epoch:
                break
            self._unreserve(costs, self._clock(), sent=False)  # the budget changed meanwhile: queue again
        self._unreserve(costs, self._clock(), sent=True)
        ticket.sent_at = self._clock()
        if self._started is None:
            self._started = ticket.sent_at
        self._totals[0] += 1
        self._totals[1] += ticket.tokens
        ticket.totals = (self._totals[0], self._totals[1])
        self._log.append(ticket)
        while self._log and self._log[0].sent_at < ticket.sent_at - _HISTORY_SECONDS:
            self._log.popleft()
        return ticket

    def _unreserve(self, costs: tuple[float, float], now: float, *, sent: bool) -> None:
        """Mark a reservation as sent, or hand it back (cancelled, or to be made again)."""
        for kind, cost in zip(_KINDS, costs, strict=True):
            bucket = self.limits[kind].bucket
            if bucket is not None:
                bucket.sent(cost)
                if not sent:
                    bucket.refill(now)
                    bucket.level += cost

    # -- answers

    def _heard(self, ticket: Ticket, headers: Mapping[str, str]) -> None:
        """The head of an answer: learn from its rate-limit headers."""
        if not any(name.startswith("x-ratelimit-") for name in headers):
            return
        limits = ticket.limits = parse_rate_limits(headers)
        now = self._clock()
        for kind, limit, remaining in (
            ("requests", limits.limit_requests, limits.remaining_requests),
            ("tokens", limits.limit_tokens, limits.remaining_tokens),
        ):
            state = self.limits[kind]
            if limit is not None and limit > 0 and state.announced != limit / 60:
                state.announced, state.probed = limit / 60, None  # the server's word replaces our guess
                self._pace(kind, now)
            if remaining is not None:
                self._sync(kind, ticket, remaining, now)

    def done(self, ticket: Ticket, request: CompletionRequest, completion: Completion) -> None:
        """An answer ended (well or not): correct the token estimate, measure latency, let the rates grow."""
        now = self._clock()
        usage = completion.usage
        tokens = self.limits["tokens"].bucket
        if usage is not None and usage.total_tokens > 0:
            ticket.charged = usage.total_tokens
            self.estimator.learn(request, usage.prompt_tokens)
            if tokens is not None:
                tokens.refill(now)
                tokens.give(ticket.tokens - usage.total_tokens)
        if completion.error is not None:
            return
        spent = ticket.charged if ticket.charged is not None else ticket.tokens
        self._tokens_per_request = _ewma(self._tokens_per_request, spent, 0.1)
        self._observe_latency(now - ticket.sent_at, now)
        for kind in _KINDS:
            self._grow(kind, ticket, now)
        self._resize()

    def limited(self, ticket: Ticket, error: RateLimitError) -> bool:
        """A 429: learn from it; True when the item should be sent again (after the budget allows)."""
        now = self._clock()
        self.rate_limited += 1
        ticket.rejected = True
        for kind, cost in zip(_KINDS, (1.0, ticket.tokens), strict=True):
            bucket = self.limits[kind].bucket
            if bucket is not None:
                bucket.give(cost)  # the server charged nothing for a refused request
        if error.code == "insufficient_quota":
            return False  # out of credit: waiting will not help
        if error.retry_after is not None and not error.retry_after <= self._retry_after_cap:
            return False  # the server asks for longer than we wait by ourselves (as the client decides)
        kind = self._refused_budget(ticket, error)
        if self.limits[kind].announced is None:
            self._cut(kind, ticket, now)
        self._sync(kind, ticket, 0.0, now)  # whatever else it says, the server's bucket was empty
        if error.retry_after is not None:
            self._hold(min(error.retry_after, self._retry_after_cap))
        self._resize()
        return True

    # -- learning

    def _refused_budget(self, ticket: Ticket, error: APIStatusError) -> str:
        """Which budget a 429 was about: the headers' remaining counts, else the error's type."""
        limits = ticket.limits
        if limits is not None and limits.remaining_tokens is not None:
            short_of_tokens = limits.remaining_tokens < ticket.tokens
            return "tokens" if short_of_tokens and (limits.remaining_requests or 0) >= 1 else "requests"
        return "tokens" if error.type == "tokens" else "requests"

    def _cut(self, kind: str, ticket: Ticket, now: float) -> None:
        """Multiplicative decrease, once per episode: 429s of requests sent before the last cut are old news."""
        state = self.limits[kind]
        if ticket.sent_at < state.cut_at:
            return
        current = state.rate or self._send_rate(kind, now)
        if state.explicit is not None:  # the caller said the limit: trust it, step back a little
            state.probed = max(0.9 * current, _FLOOR)
            state.cut_at = state.grown_at = now
            self._pace(kind, now)
            self._epoch += 1
            return
        if state.last_429 is not None and 0.5 <= ticket.sent_at - state.last_429 <= _HISTORY_SECONDS:
            # never above the true rate (a full bucket wastes refill), so the best of them is the closest
            measured = self._admitted_rate(kind, state.last_429, ticket.sent_at)
            state.measured = max(state.measured or 0.0, measured or 0.0) or None
        if state.measured:
            new = min(0.95 * state.measured, 0.9 * current)
        elif state.rate is None:  # the first 429: we overshot by an unknown factor
            state.overshoot = current
            # In the last second (or since the start) the server gave out its refill and at most
            # its bucket, about a second's worth: so its rate is at least what it admitted / (1 s + that time).
            since = max(self._started or 0.0, ticket.sent_at - BURST_SECONDS)
            admitted = self._admitted_rate(kind, since, ticket.sent_at, extra=BURST_SECONDS)
            new = 0.95 * admitted if admitted else 0.5 * current
        else:  # a 429 while already paced: we overshot by a little
            new = 0.8 * current
        state.probed = max(new, _FLOOR)
        state.last_429, state.cut_at, state.grown_at = ticket.sent_at, now, now
        self._pace(kind, now)
        self._epoch += 1

    def _grow(self, kind: str, ticket: Ticket, now: float) -> None:
        """Additive-ish increase of a learned rate, while that budget is what holds the batch back."""
        state = self.limits[kind]
        if state.probed is None or ticket.sent_at < state.cut_at:
            return
        elapsed, state.grown_at = now - state.grown_at, now
        if now - state.waited_at > 1.0:
            return  # the budget did not hold anything back: sending faster would teach nothing
        if state.explicit is not None:  # back to the caller's budget at 5 %/s
            grown = state.probed * (1 + 0.05 * elapsed)
            state.probed = None if grown >= state.explicit else grown
        elif not state.measured:  # toward the rate that overshot, a quarter of the way a second, or 5 %/s
            gap = (state.overshoot or state.probed) - state.probed
            state.probed += max(0.05 * state.probed, 0.25 * gap) * elapsed
        elif state.probed < 0.98 * state.measured:
            state.probed = min(0.98 * state.measured, state.probed * (1 + 0.01 * elapsed))
        elif now - state.cut_at > 10.0:
            state.probed *= 1 + 0.01 * elapsed  # quiet for a while: the limit may be higher than measured
        self._pace(kind, now)

    def _sync(self, kind: str, ticket: Ticket, remaining: float, now: float) -> None:
        """Keep our bucket no fuller than the server's, as far as its ``remaining`` shows.

        ``remaining`` was the server's level when it took ``ticket``; since
        then the bucket refilled and our later sends were charged to it.
        """
        bucket = self.limits[kind].bucket
        if bucket is None:
            return
        index = _KINDS.index(kind)
        server_now = remaining - (self._totals[index] - ticket.totals[index]) + bucket.rate * (now - ticket.sent_at)
        bucket.refill(now)
        excess = bucket.level + bucket.reserved - server_now
        if excess > (1.0 if kind == "requests" else max(1.0, 0.02 * bucket.capacity)):
            bucket.level -= excess
            self._epoch += 1

    def _pace(self, kind: str, now: float) -> None:
        """Make the bucket follow the limit's current rate (created at full, like the server's)."""
        state = self.limits[kind]
        rate = state.rate
        if rate is None:
            return
        if state.bucket is None:
            state.bucket = Bucket(rate, now)
        elif state.bucket.rate != rate:
            state.bucket.set_rate(rate, now)

    def _send_rate(self, kind: str, now: float) -> float:
        """Units sent per second over the last second (or since the start)."""
        span = max(min(1.0, now - (self._started or now)), 0.05)
        index = _KINDS.index(kind)
        sent = sum(1.0 if index == 0 else t.tokens for t in self._log if t.sent_at >= now - span)
        return max(sent / span, _FLOOR)

    def _admitted_rate(self, kind: str, since: float, until: float, extra: float = 0.0) -> float | None:
        """Units the server took per second between ``since`` and ``until`` (counting ``extra`` seconds more).

        Between two of its 429s the server's bucket went from empty to
        empty, so that is its refill rate. Before the first one it also gave
        out its initial fill, about ``BURST_SECONDS`` of refill on gateways
        that enforce short windows: hence ``extra``.
        """
        total = sum(
            1.0 if kind == "requests" else (t.charged if t.charged is not None else t.tokens)
            for t in self._log
            if since <= t.sent_at < until and not t.rejected
        )
        return total / (until - since + extra) if total else None

    def _observe_latency(self, seconds: float, now: float) -> None:
        """Rising latency means a saturated gateway: take back a quarter of the window, then regrow slowly."""
        self._latency = _ewma(self._latency, seconds, 0.1)
        self._baseline = min(self._baseline, self._latency)
        if self._latency > 2 * self._baseline and now - self._latency_cut_at > self._latency:
            self._latency_cap = max(float(self.start), 0.75 * self.window.size)
            self._latency_cut_at = now
        elif self._latency < 1.5 * self._baseline:
            self._latency_cap = min(float(self.ceiling), self._latency_cap + 1 / max(self.window.size, 1))

    def _resize(self) -> None:
        """Little's law: enough requests in flight to send at the allowed rate, within [start, ceiling]."""
        allowed = self.allowed_rate()
        target = self.start
        if allowed is not None and self._latency is not None:
            target = max(target, math.ceil(allowed * self._latency * 1.25) + 1)
        target = min(target, self.ceiling, max(self.start, int(self._latency_cap)))
        if target != self.window.size:
            self.window.resize(target)

    # -- reading

    def allowed_rate(self) -> float | None:
        """Requests per second the known budgets allow (tokens converted at the mean request's size)."""
        rates = []
        requests, tokens = self.limits["requests"].rate, self.limits["tokens"].rate
        if requests is not None:
            rates.append(requests)
        if tokens is not None:
            rates.append(tokens / max(self._tokens_per_request or 1.0, 1.0))
        return min(rates) if rates else None

    def status(self) -> tuple[str, float | None]:
        """What a progress bar shows: why it waits (or ""), and requests sent per minute lately."""
        now = self._clock()
        kind, until = self._waiting
        waiting = ""
        if until - now >= 0.5:
            waiting = f"waiting {_seconds(until - now)} for the {kind[:-1]} budget"
        if all(state.bucket is None for state in self.limits.values()):
            return waiting, None
        span = min(10.0, now - (self._started or now))
        recent = sum(1 for t in self._log if t.sent_at >= now - span)
        return waiting, recent / span * 60 if span > 0.5 else None

    def describe(self) -> str:
        """The budgets the batch ran under, e.g. ``"1,200 requests/min from the server's headers"``."""
        parts = [
            f"{state.rate * 60:,.0f} {kind}/min {state.source}"
            for kind, state in self.limits.items()
            if state.rate is not None
        ]
        return " and ".join(parts)


def _ewma(old: float | None, sample: float, weight: float) -> float:
    return sample if old is None else old + weight * (sample - old)


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
