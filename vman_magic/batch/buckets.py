"""The pieces a :class:`~vman_magic.batch.budget.Pacer` is built from: buckets, estimates, the window.

Each is small and knows nothing of the others: a token bucket that lends
(so waiting senders are spaced out in arrival order), an estimate of the
tokens a request will be charged, and a resizable count of requests in
flight. The learning that ties them together is in :mod:`.budget`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from ..core.models import CompletionRequest

__all__ = ["BURST_SECONDS", "DEFAULT_MAX_TOKENS", "Bucket", "TokenEstimator", "Window"]

DEFAULT_MAX_TOKENS = 16  # what the API assumes when a request gives none
BURST_SECONDS = 1.0  # a bucket holds this many seconds of its rate, as gateways' short windows do
# 2 characters per token until usage says otherwise: on the safe side (English runs 3-4 with
# most tokenizers), since an estimate too low sends a burst the server refuses
_PRIOR_CHARS, _PRIOR_TOKENS = 50.0, 25.0


class Bucket:
    """A token bucket of one second's worth that lends: a reservation past empty is debt to sleep off.

    Reserving ahead (rather than polling until full) spaces the waiting
    workers out in arrival order, and wakes each once. It holds a quarter of
    a second's worth less than the server's bucket (at least one unit): a
    server whose bucket is full while our requests are still on their way
    (at the start, after a pause, behind a busy event loop) wastes its
    refill for that long, and a request that arrives early must still find
    room. Only bursts pay for it: a steady pace is the refill rate either way.
    """

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = _capacity(rate)
        self.level = self.capacity
        self.reserved = 0.0
        """Reserved by workers still waiting to send: the server has not seen it yet."""
        self._stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self, amount: float, now: float) -> float:
        """Take ``amount`` now; return the seconds to wait before sending it."""
        self.refill(now)
        wait = max(0.0, (min(amount, self.capacity) - self.level) / self.rate)
        self.level -= amount
        self.reserved += amount
        return wait

    def sent(self, amount: float) -> None:
        self.reserved -= amount

    def give(self, amount: float) -> None:
        """Give back (a refused request, unused tokens); a negative amount is a debit."""
        self.level = min(self.capacity, self.level + amount)

    def set_rate(self, rate: float, now: float) -> None:
        self.refill(now)
        self.rate = rate
        self.capacity = _capacity(rate)
        self.level = min(self.level, self.capacity)


def _capacity(rate: float) -> float:
    full = rate * BURST_SECONDS
    return max(1.0, full - max(1.0, 0.25 * full))


class TokenEstimator:
    """Tokens a request will be charged before it is sent; learns characters per token from ``usage``."""

    def __init__(self) -> None:
        self.chars = _PRIOR_CHARS
        self.tokens = _PRIOR_TOKENS

    def cost(self, request: CompletionRequest) -> float:
        """Prompt tokens (estimated from characters, exact for token ids) plus ``max_tokens`` per choice."""
        prompts = _prompts(request.prompt)
        ratio = self.tokens / self.chars
        prompt = sum(len(p) * ratio if isinstance(p, str) else len(p) for p in prompts)
        choices = max(request.n or 1, request.best_of or 1)
        return prompt + (request.max_tokens or DEFAULT_MAX_TOKENS) * choices * len(prompts)

    def learn(self, request: CompletionRequest, prompt_tokens: int) -> None:
        prompts = _prompts(request.prompt)
        if prompt_tokens > 0 and all(isinstance(p, str) for p in prompts):
            self.chars += sum(len(p) for p in prompts)
            self.tokens += prompt_tokens


def _prompts(prompt: Any) -> list[Any]:
    """The prompts of a request: one string or token list, or a list of them."""
    if isinstance(prompt, str) or not prompt or all(isinstance(t, int) for t in prompt):
        return [prompt]
    return list(prompt)


class Window:
    """How many requests may be in flight; resizable while workers wait for a place."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def enter(self) -> None:
        while self.busy >= self.size:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.busy += 1

    def leave(self) -> None:
        self.busy -= 1
        self._wake()

    def resize(self, size: int) -> None:
        self.size = size
        self._wake()

    def _wake(self) -> None:
        free = self.size - self.busy
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
