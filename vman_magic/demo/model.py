"""``vman-demo``: an interpolated Kneser-Ney trigram model over the tokenizer's ids.

The probability of token ``w`` after history ``h`` is defined recursively
(Chen & Goodman's interpolated Kneser-Ney with one discount ``D_k`` per order)::

    P_k(w | h) = max(c_k(h w) - D_k, 0) / C_k(h)  +  gamma_k(h) * P_{k-1}(w | h')
    gamma_k(h) = D_k * T_k(h) / C_k(h)             (T_k(h): distinct continuations of h)
    P_1(w)     = (1 - EPS) * u(w)  +  EPS / V        (V: every valid id, see tokenizer)

``c_3`` are raw trigram counts, ``c_2`` and ``u`` Kneser-Ney continuation
counts; a context never seen skips its level (``P_k = P_{k-1}``). The uniform
floor makes the distribution cover the *whole* vocabulary, so any prompt
(Chinese included) has a finite log-probability, and everything sums to 1.

Unrolling the recursion writes ``P(w|h)`` as a mixture: level ``k`` contributes
``coef_k * max(c_k(w) - D_k, 0)`` with ``coef_k = (prod_{j>k} gamma_j) / C_k``,
and the unigram level gets weight ``B = prod_k gamma_k``. That is what makes the
hot paths exact *and* cheap:

* sampling at temperature 1 picks a mixture component by its total weight
  (``coef_k * (C_k - D_k T_k)``, or ``B``) and then a token inside it by
  bisection over precomputed cumulative counts: O(levels + log n) per token;
* the top-k tokens (logprobs, greedy decoding) come from Fagin's threshold
  algorithm over the per-level lists, each sorted by count: it stops as soon as
  the k-th best exact probability beats the sum of the per-list bounds.

The trained tables are cached on disk (``$VMAN_MAGIC_CACHE`` or
``~/.cache/vman-magic``), keyed by Python version and corpus file stats, written
atomically, and retrained when the file is unreadable.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import os
import pickle
import random
import tempfile
import threading
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, NamedTuple

from . import corpus
from .tokenizer import CHAR_BASE, EOT, Tokenizer

log = logging.getLogger(__name__)

MODEL_ID: Final = "vman-demo"
ORDER: Final = 3
#: Mass of the uniform floor over all valid ids: tiny, so it never shows in text, but nonzero.
EPS: Final = 1e-12
_FORMAT: Final = 1  # bump when the pickled layout changes

# (ids sorted by count descending, cumulative counts in the same order)
Table = tuple[list[int], list[int]]


class Level(NamedTuple):
    """One mixture component of the current step: a context's sorted continuations."""

    ids: list[int]
    cum: list[int]
    discount: float
    coef: float  # probability per unit of discounted count
    counts: dict[int, int]


class Step(NamedTuple):
    """Everything needed to score or sample the next token after one history."""

    levels: list[Level]  # highest order first; only contexts that were seen
    backoff: float  # B: the weight of the unigram level P_1


class Model:
    """The trained tables plus the exact queries the sampler builds on."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.tokenizer = Tokenizer(state["pieces"])
        self.fingerprint: str = state["fingerprint"]
        self.tables: dict[int, dict[tuple[int, ...], Table]] = state["tables"]
        self.discounts: dict[int, float] = state["discounts"]
        self.uni_ids: list[int] = state["uni_ids"]
        self.uni_cum: list[int] = state["uni_cum"]
        total = self.uni_cum[-1]
        self.n_valid = self.tokenizer.n_valid
        self.floor = EPS / self.n_valid
        prev = 0
        self.p1: dict[int, float] = {}
        for token, cum in zip(self.uni_ids, self.uni_cum, strict=True):
            self.p1[token] = (1 - EPS) * (cum - prev) / total + self.floor
            prev = cum
        self._counts = lru_cache(maxsize=16384)(self._counts_uncached)

    # -- per-step queries -------------------------------------------------
    def step(self, history: list[int]) -> Step:
        """The mixture for the next token after ``history`` (padded with ``<|endoftext|>``)."""
        levels: list[Level] = []
        g = 1.0
        for k in range(ORDER, 1, -1):
            ctx = tuple(history[len(history) - k + 1 :]) if len(history) >= k - 1 else None
            if ctx is None:
                ctx = (EOT,) * (k - 1 - len(history)) + tuple(history)
            table = self.tables[k].get(ctx)
            if table is None:
                continue
            ids, cum = table
            total, discount = cum[-1], self.discounts[k]
            levels.append(Level(ids, cum, discount, g / total, self._counts(k, ctx)))
            g *= discount * len(ids) / total
        return Step(levels, g)

    def _counts_uncached(self, k: int, ctx: tuple[int, ...]) -> dict[int, int]:
        ids, cum = self.tables[k][ctx]
        return {token: cum[i] - (cum[i - 1] if i else 0) for i, token in enumerate(ids)}

    def p_unigram(self, token: int) -> float:
        """P_1(token), the floor for ids the corpus never had."""
        return self.p1.get(token, self.floor)

    def prob(self, step: Step, token: int) -> float:
        """Exact P(token | history) under the full mixture."""
        p = step.backoff * self.p1.get(token, self.floor)
        for level in step.levels:
            c = level.counts.get(token)
            if c:
                p += level.coef * (c - level.discount)
        return p

    def sample(self, step: Step, rng: random.Random) -> int:
        """Draw one token at temperature 1: pick a component by its weight, then a token in it."""
        u = rng.random()
        for level in step.levels:
            ids, cum, d = level.ids, level.cum, level.discount
            mass = cum[-1] - d * len(ids)
            weight = level.coef * mass
            if u < weight:
                target = u / weight * mass
                i = bisect.bisect_right(range(len(ids)), target, key=lambda j: cum[j] - d * (j + 1))
                return ids[min(i, len(ids) - 1)]
            u -= weight
        u /= step.backoff  # now uniform in [0, 1) within the unigram level (up to rounding)
        if u < 1 - EPS:
            i = bisect.bisect_right(self.uni_cum, u / (1 - EPS) * self.uni_cum[-1])
            return self.uni_ids[min(i, len(self.uni_ids) - 1)]
        return self.random_valid_id(rng)

    def random_valid_id(self, rng: random.Random) -> int:
        """A uniformly random valid id (the floor component)."""
        valid, n_pieces = self.tokenizer.is_valid, self.tokenizer.n_pieces
        while True:
            r = rng.randrange(n_pieces + 0x110000)
            token = r if r < n_pieces else CHAR_BASE + r - n_pieces
            if valid(token):
                return token

    def top(self, step: Step, k: int) -> list[tuple[float, int]]:
        """The ``k`` most probable tokens as ``(probability, id)``, best first, exactly.

        Fagin's threshold algorithm: walk every sorted list one depth at a
        time, score each newly seen token exactly, and stop once the k-th best
        score is at least the sum of the scores at the current depth of each
        list (no unseen token can beat that bound).
        """
        lists: list[tuple[list[int], list[int], float, float]] = [
            (lv.ids, lv.cum, lv.discount, lv.coef) for lv in step.levels
        ]
        lists.append((self.uni_ids, self.uni_cum, 0.0, step.backoff * (1 - EPS) / self.uni_cum[-1]))
        floor = step.backoff * self.floor
        seen: set[int] = set()
        best: list[tuple[float, int]] = []  # min-heap of the k best so far
        depth = 0
        while True:
            bound = floor
            for ids, cum, d, coef in lists:
                if depth >= len(ids):
                    continue
                token = ids[depth]
                bound += coef * (cum[depth] - (cum[depth - 1] if depth else 0) - d)
                if token not in seen:
                    seen.add(token)
                    item = (self.prob(step, token), -token)
                    if len(best) < k:
                        heapq.heappush(best, item)
                    elif item > best[0]:
                        heapq.heapreplace(best, item)
            depth += 1
            if len(best) == k and best[0][0] >= bound:
                break
            if bound <= floor:  # every list exhausted
                break
        return [(p, -neg) for p, neg in sorted(best, reverse=True)]


# --------------------------------------------------------------------------- training


def _discount(counts: Counter[Any]) -> float:
    """Ney's estimate ``n1 / (n1 + 2 n2)``, kept inside (0.1, 0.9)."""
    freq = Counter(counts.values())
    n1, n2 = freq.get(1, 0), freq.get(2, 0)
    return min(0.9, max(0.1, n1 / (n1 + 2 * n2))) if n1 + n2 else 0.75


def _tables(counts: Counter[tuple[int, ...]]) -> dict[tuple[int, ...], Table]:
    grouped: dict[tuple[int, ...], list[tuple[int, int]]] = defaultdict(list)
    for gram, c in counts.items():
        grouped[gram[:-1]].append((-c, gram[-1]))
    out: dict[tuple[int, ...], Table] = {}
    for ctx, items in grouped.items():
        items.sort()
        ids = [t for _, t in items]
        cum, total = [], 0
        for neg, _ in items:
            total -= neg
            cum.append(total)
        out[ctx] = (ids, cum)
    return out


def train(documents: list[str]) -> dict[str, Any]:
    """Count n-grams and Kneser-Ney continuation counts; returns the picklable state."""
    tokenizer = Tokenizer.train(documents)
    grams: Counter[tuple[int, ...]] = Counter()
    pad = [EOT] * (ORDER - 1)
    for doc in documents:
        seq = pad + tokenizer.encode(doc) + [EOT]
        grams.update(zip(*(seq[i:] for i in range(ORDER)), strict=False))
    tables = {ORDER: _tables(grams)}
    discounts = {ORDER: _discount(grams)}
    level = grams
    for k in range(ORDER - 1, 0, -1):
        # Kneser-Ney continuation count of a k-gram: how many distinct tokens precede it.
        level = Counter(gram[1:] for gram in level)
        if k > 1:
            tables[k] = _tables(level)
            discounts[k] = _discount(level)
    uni = _tables(level)[()]
    return {
        "format": _FORMAT,
        "pieces": tokenizer.pieces[1:],
        "fingerprint": "fp_" + corpus.corpus_hash(documents)[:10],
        "tables": tables,
        "discounts": discounts,
        "uni_ids": uni[0],
        "uni_cum": uni[1],
    }


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``$VMAN_MAGIC_CACHE`` if set, else ``~/.cache/vman-magic``."""
    env = os.environ.get("VMAN_MAGIC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vman-magic"


def cache_path() -> Path:
    """Where this Python's trained model is (or will be) cached."""
    return cache_dir() / f"vman-demo-o{ORDER}-f{_FORMAT}-{corpus.corpus_key()}.pickle"


def _load_or_train() -> Model:
    path = cache_path()
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
        if isinstance(state, dict) and state.get("format") == _FORMAT:
            return Model(state)
    except FileNotFoundError:
        pass
    except Exception as exc:  # a truncated or foreign file: retrain and overwrite it
        log.warning("discarding unreadable model cache %s (%s); retraining", path, exc)
    state = train(corpus.load_documents())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vman-demo-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:  # read-only home: keep the model in memory only
        log.info("could not cache the demo model in %s: %s", path.parent, exc)
    return Model(state)


_lock = threading.Lock()
_model: Model | None = None


def get_model() -> Model:
    """The process-wide model: loaded from the cache, or trained on first use (a few seconds)."""
    global _model
    with _lock:
        if _model is None:
            _model = _load_or_train()
        return _model


def is_ready() -> bool:
    """True when :func:`get_model` returns without training: loaded here already, or cached on disk.

    So a terminal can say "training..." before those few silent seconds, and
    only when they will happen. (A cache file that turns out unreadable is
    retrained without that notice: rare, and still correct.)
    """
    return _model is not None or cache_path().exists()
