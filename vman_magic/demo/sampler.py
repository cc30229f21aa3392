"""Choosing the next token: temperature, top_p, penalties and logit_bias, done exactly.

The model's distribution is a mixture (see :mod:`.model`). Any change of the
logits (``logit_bias``, presence/frequency penalties) or of their scale
(temperature) only touches a small *candidate* set explicitly:

* every token seen after the last token (the bigram context's continuations;
  by Kneser-Ney construction a superset of the trigram context's), and
* every token that is biased or penalised.

Every other token ``w`` has ``p(w) = B * P_1(w)``, the same fixed unigram
shape, so its share of the softmax at temperature ``T`` is::

    sum_{w not in cand} (B P_1(w))^(1/T) = B^(1/T) * (S_T - sum_{w in cand} P_1(w)^(1/T))

where ``S_T = sum_w P_1(w)^(1/T)`` over the whole vocabulary is computed once
per temperature and cached (the uniform floor's ids all share one value, so
they add ``count * floor^(1/T)`` in closed form). All of it is computed
relative to ``P_1``'s largest value to stay inside floating-point range at
small ``T``. A draw that lands in the tail picks a tail token by rejection
from the cached ``P_1^(1/T)`` cumulative table (with an exact linear scan as
the fallback), and ``top_p`` walks candidates and tail in one merged
descending order. Greedy decoding (``T = 0``) is the argmax of the same logits.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from .model import Model, Step
from .tokenizer import EOT

_REJECTION_TRIES = 64


@dataclass(frozen=True)
class SamplingParams:
    """The request fields that shape the next-token choice."""

    temperature: float = 1.0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)


class Sampler:
    """Picks tokens for one choice; ``counts`` are the tokens it generated so far."""

    def __init__(self, model: Model, params: SamplingParams, rng: random.Random) -> None:
        self.model = model
        self.params = params
        self.rng = rng
        self.counts: Counter[int] = Counter()
        self._penalised = bool(params.presence_penalty or params.frequency_penalty)
        # The first token may not end the document, like vLLM's ``min_tokens=1``:
        # a trigram model often ends right after a short prompt, and an empty
        # first completion would puzzle a newcomer. A bias of -100 conditions the
        # first draw on "not <|endoftext|>" (exactly, through the general path);
        # a caller who biases <|endoftext|> themselves keeps their own value.
        self._first = replace(params, logit_bias={EOT: -100.0, **params.logit_bias})

    def next(self, step: Step) -> int:
        """Choose the next token after ``step`` and remember it for the penalties."""
        if self.counts:
            token = self._choose(step)
        else:
            params, self.params = self.params, self._first
            try:
                token = self._choose(step)
            finally:
                self.params = params
        self.counts[token] += 1
        return token

    def _choose(self, step: Step) -> int:
        p = self.params
        plain = not p.logit_bias and not (self._penalised and self.counts)
        if plain and p.temperature == 0:
            return self.model.top(step, 1)[0][1]
        if plain and p.temperature == 1 and p.top_p >= 1:
            return self.model.sample(step, self.rng)
        return self._choose_exact(step)

    # -- the general path -------------------------------------------------
    def _logits(self, step: Step) -> dict[int, float]:
        """Adjusted logits ``ln p + bias - penalties`` of every candidate token."""
        model, p = self.model, self.params
        probs: dict[int, float] = {}
        if step.levels:
            low = step.levels[-1]  # the bigram context: its continuations cover all higher levels
            b, p1, floor = step.backoff, model.p1, model.floor
            coef, d = low.coef, low.discount
            probs = {w: coef * (c - d) + b * p1.get(w, floor) for w, c in low.counts.items()}
            for level in step.levels[:-1]:
                coef, d = level.coef, level.discount
                for w, c in level.counts.items():
                    probs[w] += coef * (c - d)
        for w in (*p.logit_bias, *self.counts):
            if w not in probs:
                probs[w] = model.prob(step, w)
        logits = {w: math.log(q) for w, q in probs.items()}
        for w, bias in p.logit_bias.items():
            logits[w] += bias
        if self._penalised:
            for w, c in self.counts.items():
                logits[w] -= c * p.frequency_penalty + p.presence_penalty
        return logits

    def _choose_exact(self, step: Step) -> int:
        model, p = self.model, self.params
        logits = self._logits(step)
        log_b = math.log(step.backoff)
        if p.temperature == 0:
            best = max(logits, key=lambda w: (logits[w], -w))
            tail = next((w for w in model.uni_ids if w not in logits), None)
            if tail is not None and log_b + math.log(model.p1[tail]) > logits[best]:
                return tail
            return best
        inv_t = 1.0 / p.temperature
        ratios, cum_ratios, total_ratio = _tail_table(model, inv_t)
        p1max = model.p1[model.uni_ids[0]]
        tail_scale = (log_b + math.log(p1max)) * inv_t  # log weight of a tail token with ratio 1
        scaled = {w: logit * inv_t for w, logit in logits.items()}
        top = max(max(scaled.values(), default=tail_scale), tail_scale)
        weights = {w: math.exp(s - top) for w, s in scaled.items()}
        in_cand = sum((model.p1.get(w, model.floor) / p1max) ** inv_t for w in logits)
        tail_factor = math.exp(tail_scale - top)
        tail_mass = tail_factor * max(total_ratio - in_cand, 0.0)
        if p.top_p < 1:
            nucleus = self._nucleus(weights, tail_factor, ratios, sum(weights.values()) + tail_mass)
            if nucleus is not None:
                return self._pick(nucleus)
        r = self.rng.random() * (sum(weights.values()) + tail_mass)
        for w, weight in weights.items():
            r -= weight
            if r < 0:
                return w
        return self._tail_token(logits, ratios, cum_ratios, inv_t)

    def _nucleus(
        self, weights: dict[int, float], tail_factor: float, ratios: list[float], total: float
    ) -> list[tuple[int, float]] | None:
        """The smallest most-probable set with ``top_p`` of the mass; None if it reaches the floor."""
        goal = self.params.top_p * total
        cand = sorted(weights.items(), key=lambda item: -item[1])
        uni_ids = self.model.uni_ids
        chosen: list[tuple[int, float]] = []
        acc, i, j = 0.0, 0, 0
        while acc < goal:
            while j < len(uni_ids) and uni_ids[j] in weights:
                j += 1
            tail_w = tail_factor * ratios[j] if j < len(uni_ids) else -1.0
            if i < len(cand) and cand[i][1] >= tail_w:
                chosen.append(cand[i])
                acc += cand[i][1]
                i += 1
            elif tail_w >= 0:
                chosen.append((uni_ids[j], tail_w))
                acc += tail_w
                j += 1
            else:
                return None
        return chosen

    def _pick(self, items: list[tuple[int, float]]) -> int:
        r = self.rng.random() * sum(w for _, w in items)
        for token, weight in items:
            r -= weight
            if r < 0:
                return token
        return items[-1][0]

    def _tail_token(self, cand: Mapping[int, float], ratios: list[float], cum: list[float], inv_t: float) -> int:
        """A token outside ``cand`` drawn proportionally to ``P_1^(1/T)``."""
        model, rng = self.model, self.rng
        for _ in range(_REJECTION_TRIES):
            r = rng.random() * cum[-1]
            i = bisect.bisect_right(cum, r)
            token = model.uni_ids[i] if i < len(model.uni_ids) else model.random_valid_id(rng)
            if token not in cand and (i < len(model.uni_ids) or token not in model.p1):
                return token
        # The candidates hold almost all of P_1's mass: scan the rest exactly.
        rest = [(w, ratios[i]) for i, w in enumerate(model.uni_ids) if w not in cand]
        return self._pick(rest) if rest else model.random_valid_id(rng)


@lru_cache(maxsize=32)
def _tail_table(model: Model, inv_t: float) -> tuple[list[float], list[float], float]:
    """``(P_1(w) / max P_1)^(1/T)`` in unigram order, its running sum, and the whole-vocabulary total.

    The running sum has one extra last bucket: the uniform floor's ids, which
    all share one value. Cached per (model, temperature): a few are in use at once.
    """
    p1max = model.p1[model.uni_ids[0]]
    ratios = [(model.p1[w] / p1max) ** inv_t for w in model.uni_ids]
    cum, acc = [], 0.0
    for r in ratios:
        acc += r
        cum.append(acc)
    floor_total = (model.n_valid - len(model.uni_ids)) * (model.floor / p1max) ** inv_t
    cum.append(acc + floor_total)
    return ratios, cum, acc + floor_total
