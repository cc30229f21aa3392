"""One choice from prompt to finish: stop sequences, hold-back, logprobs, best_of.

A :class:`ChoiceRun` is a synchronous generator of :class:`Piece` objects, one
per model step, so the server can interleave many choices and yield to the
event loop between tokens. A streamed response sends each non-empty piece as
one chunk; a non-streamed response joins them. Both therefore carry exactly
the same text, tokens and finish reason.

Stop sequences: the returned text ends *before* the stop sequence. While
streaming, text that might be the beginning of a stop sequence (the longest
suffix that is a prefix of one) is held back until it is resolved; a token
whose text is only partly sent keeps its logprob entry until all of it is.
``finish_reason`` is ``"stop"`` for a stop sequence or when the model ends the
document (``<|endoftext|>``), ``"length"`` at ``max_tokens``.

``suffix`` is accepted and ignored: the demo model only writes left to right
(no fill-in-the-middle), as many OpenAI-compatible servers do.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .model import Model
from .sampler import Sampler, SamplingParams
from .tokenizer import EOT

#: Chinese passages for the ``chinese`` knob: multibyte text through the whole stack.
CHINESE: Final = (
    "机器学习是人工智能的一个分支，它让计算机从数据中学习规律，而不是依靠人写好的规则。",
    "语言模型根据前面的文字预测下一个词。温度越高，输出越随机；温度为零时，总是选择最可能的词。",
    "流式输出把生成的文字一小段一小段地发送给客户端，所以用户不必等到全部完成。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "在笔记本里试验提示词，比在命令行里更方便：每个结果都留在单元格里，可以比较和复用。",
)


@dataclass(frozen=True)
class GenParams:
    """Per-choice settings taken from a validated request."""

    max_tokens: int = 16
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    echo: bool = False
    sampling: SamplingParams = field(default_factory=SamplingParams)
    chinese: bool = False  # the ``chinese`` knob: write a Chinese passage instead of sampling


@dataclass
class Piece:
    """What one model step adds to a choice (text may be empty while held back)."""

    text: str = ""
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)
    finish_reason: str | None = None

    def logprobs_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


@dataclass
class _Token:
    text: str
    start: int  # offset in the completion text (without prompt)
    logprob: float | None
    top: dict[str, float] | None


class ChoiceRun:
    """Generates one choice. Iterate :meth:`pieces`; read ``generated`` and ``mean_logprob`` after."""

    def __init__(self, model: Model, prompt: Sequence[int], params: GenParams, rng: random.Random) -> None:
        self.model = model
        self.prompt = list(prompt)
        self.params = params
        self.rng = rng
        self.sampler = Sampler(model, params.sampling, rng)
        self.generated = 0
        self.logprob_sum = 0.0
        self._want_logprobs = params.logprobs is not None
        self._script: list[int] | None = None
        if params.chinese:
            passage = rng.choice(CHINESE)
            self._script = [*model.tokenizer.encode(passage), EOT]

    @property
    def mean_logprob(self) -> float:
        """Mean log-probability of the generated tokens: ``best_of`` ranks candidates by it."""
        return self.logprob_sum / self.generated if self.generated else 0.0

    def pieces(self, *, score: bool = False) -> Iterator[Piece]:
        """Yield the echo (if asked), then one piece per step; the last has a finish reason.

        ``score`` computes each token's log-probability even when the request
        did not ask for logprobs (``best_of`` needs it).
        """
        model, params, tok = self.model, self.params, self.model.tokenizer
        prompt_text = tok.decode(self.prompt)
        if params.echo:
            yield self._echo(prompt_text)
        base = len(prompt_text)
        history = list(self.prompt)
        pending: list[_Token] = []
        text = ""  # completion text not yet sent (starts at offset ``sent``)
        sent = 0
        want_lp = self._want_logprobs or score
        if params.max_tokens == 0:
            yield Piece(finish_reason="length")
            return
        while True:
            step = model.step(history)
            token = self._script[self.generated] if self._script is not None else self.sampler.next(step)
            lp = math.log(model.prob(step, token)) if want_lp else None
            self.generated += 1
            if lp is not None:
                self.logprob_sum += lp
            if token == EOT:
                yield self._emit(pending, text, len(text), base, sent, "stop")
                return
            history.append(token)
            piece_text = tok.token(token)
            top = self._top(step, token, lp) if self._want_logprobs else None
            pending.append(_Token(piece_text, sent + len(text), lp, top))
            text += piece_text
            cut = _find_stop(text, params.stop)
            if cut is not None:
                yield self._emit(pending, text, cut, base, sent, "stop")
                return
            if self.generated >= params.max_tokens:
                yield self._emit(pending, text, len(text), base, sent, "length")
                return
            safe = len(text) - _held_back(text, params.stop)
            piece = self._emit(pending, text, safe, base, sent, None)
            sent += safe
            text = text[safe:]
            yield piece

    def _emit(self, pending: list[_Token], text: str, upto: int, base: int, sent: int, finish: str | None) -> Piece:
        """Send ``text[:upto]`` and every pending token that starts before ``sent + upto``.

        On a finish every token that contributed text goes out, so the last
        token's logprob entry is never lost to a truncation by a stop sequence.
        """
        end = sent + upto
        piece = Piece(text=text[:upto], finish_reason=finish)
        done = 0
        for t in pending:
            fully_sent = t.start + len(t.text) <= end
            if not (fully_sent or (finish is not None and t.start < end)):
                break
            done += 1
            if self._want_logprobs:
                piece.tokens.append(t.text)
                piece.token_logprobs.append(t.logprob)
                piece.top_logprobs.append(t.top)
                piece.text_offset.append(base + t.start)
        del pending[:done]
        return piece

    def _echo(self, prompt_text: str) -> Piece:
        piece = Piece(text=prompt_text)
        if not self._want_logprobs:
            return piece
        tok, offset = self.model.tokenizer, 0
        for i, token in enumerate(self.prompt):
            text = tok.token(token)
            if i == 0:
                lp, top = None, None
            else:
                step = self.model.step(self.prompt[:i])
                lp = math.log(self.model.prob(step, token))
                top = self._top(step, token, lp)
            piece.tokens.append(text)
            piece.token_logprobs.append(lp)
            piece.top_logprobs.append(top)
            piece.text_offset.append(offset)
            offset += len(text)
        return piece

    def _top(self, step: Any, token: int, lp: float | None) -> dict[str, float]:
        """The K most likely tokens plus the chosen one, as OpenAI returns them (up to K+1)."""
        tok = self.model.tokenizer
        k = self.params.logprobs or 0
        out = {tok.token(w): math.log(p) for p, w in self.model.top(step, k)} if k else {}
        if lp is not None:
            out.setdefault(tok.token(token), lp)
        return out


def _find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the earliest stop sequence starts in ``text``, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that could start a stop sequence."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if s.startswith(text[len(text) - k :]):
                longest = k
                break
    return longest
