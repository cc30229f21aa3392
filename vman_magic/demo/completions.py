"""Running a validated :class:`~.protocol.Job`: choices interleaved, throttled, cooperative.

Streaming yields one chunk per choice per step, as OpenAI does, and awaits
between steps so one long stream never stalls the event loop. The same
``ChoiceRun`` pieces are joined for a non-streamed answer, so both forms carry
identical text, logprobs and finish reasons for the same seed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from .generate import ChoiceRun, Piece
from .model import Model
from .protocol import Job, ResponseIds, usage

#: Seconds of generation after which a step gives the event loop back to other clients
#: (``n=128`` for 100 prompts is 12,800 choices per step: without slices one step stalled
#: every other connection for over a second).
SLICE_S = 0.005


def _rng(seed: int | None, prompt_index: int, candidate: int) -> random.Random:
    """Independent, reproducible streams per (seed, prompt, candidate); OS entropy without a seed."""
    if seed is None:
        return random.Random()
    return random.Random(f"{seed}/{prompt_index}/{candidate}")


class Throttle:
    """Sleeps for ``first_token_ms`` before the first step and ``1/tps`` between steps."""

    def __init__(self, tps: float | None, first_token_ms: float | None) -> None:
        self.tps = tps or None
        self.delay = 1.0 / tps if tps else 0.0
        self.first = (first_token_ms or 0.0) / 1000.0
        self.started = False

    async def wait(self) -> None:
        if not self.started:
            self.started = True
            await asyncio.sleep(self.first)
        else:
            await asyncio.sleep(self.delay)  # sleep(0) still yields to other streams


class CompletionRunner:
    """Generates the choices of one job; ``prompt_tokens``/``completion_tokens`` count as OpenAI does."""

    def __init__(self, model: Model, job: Job, fingerprint: str) -> None:
        self.model = model
        self.job = job
        self.ids = ResponseIds(fingerprint)
        self.prompt_tokens = sum(len(p) for p in job.prompts)
        self.runs: list[list[ChoiceRun]] = [
            [ChoiceRun(model, prompt, job.gen, _rng(job.seed, i, j)) for j in range(job.best_of)]
            for i, prompt in enumerate(job.prompts)
        ]

    @property
    def completion_tokens(self) -> int:
        return sum(run.generated for runs in self.runs for run in runs)

    def usage(self) -> dict[str, int]:
        return usage(self.prompt_tokens, self.completion_tokens)

    def _choice(self, index: int, piece: Piece) -> dict[str, Any]:
        lp = piece.logprobs_dict() if self.job.gen.logprobs is not None else None
        return {"text": piece.text, "index": index, "logprobs": lp, "finish_reason": piece.finish_reason}

    async def _steps(self, throttle: Throttle, *, score: bool) -> AsyncIterator[tuple[int, int, Piece]]:
        """``(prompt index, candidate index, piece)`` for every choice, one model step at a time."""
        active = [(i, j, run.pieces(score=score)) for i, runs in enumerate(self.runs) for j, run in enumerate(runs)]
        clock = time.perf_counter
        while active:
            await throttle.wait()
            still = []
            until = clock() + SLICE_S
            for i, j, pieces in active:
                piece = next(pieces)
                yield i, j, piece
                if piece.finish_reason is None:
                    still.append((i, j, pieces))
                if clock() > until:  # a long step: let the other connections run
                    await asyncio.sleep(0)
                    until = clock() + SLICE_S
            active = still

    async def stream(self, throttle: Throttle) -> AsyncIterator[dict[str, Any]]:
        """Chunks with ``finish_reason: null`` until each choice's last; no usage chunk (the caller adds it).

        Streaming never has ``best_of > n`` (validation rejects it), so candidate j is choice j.
        """
        n = self.job.n
        async for i, j, piece in self._steps(throttle, score=False):
            if piece.text or piece.tokens or piece.finish_reason:
                yield self.ids.chunk([self._choice(i * n + j, piece)], None)

    async def complete(self, throttle: Throttle) -> dict[str, Any]:
        """The whole non-streamed response; ``best_of`` keeps the n candidates with the best mean logprob."""
        job = self.job
        ranked = job.best_of > job.n
        wholes = [[Piece() for _ in runs] for runs in self.runs]
        texts: dict[tuple[int, int], list[str]] = {}
        async for i, j, piece in self._steps(throttle, score=ranked):
            whole = wholes[i][j]
            texts.setdefault((i, j), []).append(piece.text)
            whole.tokens += piece.tokens
            whole.token_logprobs += piece.token_logprobs
            whole.top_logprobs += piece.top_logprobs
            whole.text_offset += piece.text_offset
            whole.finish_reason = piece.finish_reason
        choices: list[dict[str, Any]] = []
        for i, runs in enumerate(self.runs):
            if i % 8 == 7:
                await asyncio.sleep(0)  # thousands of choices take a while to assemble: let others run
            order = list(range(len(runs)))
            if ranked:
                order.sort(key=lambda j: runs[j].mean_logprob, reverse=True)
            for rank, j in enumerate(order[: job.n]):
                wholes[i][j].text = "".join(texts[(i, j)])
                choices.append(self._choice(i * job.n + rank, wholes[i][j]))
        return self.ids.chunk(choices, self.usage())
