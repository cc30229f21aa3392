"""Requests, results, and the accumulator that turns stream chunks into a result.

Data flows one way through these types::

    CompletionRequest (frozen, validated once)
      -> client sends request.to_body()
      -> every decoded chunk goes to CompletionBuilder.add()
      -> CompletionBuilder.completion is the Completion the user keeps

A non-stream response is just one big chunk, so a streamed and a non-streamed
call of the same request build equal results through the same code.

Standard library only (the client layer must import fast and without IPython).
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from .errors import StreamAPIError, ValidationError, error_fields
from .honoured import review
from .params import INT64_MAX, INT64_MIN, MAX_STOP, PARAMS, PARAMS_BY_NAME

if TYPE_CHECKING:
    from typing_extensions import Self

Prompt = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]

FOLD_EVERY = 256  # streamed text pieces per choice joined into one string (see Choice)

__all__ = ["Choice", "Completion", "CompletionBuilder", "CompletionRequest", "Logprobs", "Usage"]


# --------------------------------------------------------------------------- request


@dataclass(frozen=True)
class CompletionRequest:
    """Everything that is sent for one completion, validated when built.

    ``None`` means "not given": the field is left out of the JSON body so the
    server's default applies. The API key is deliberately *not* a field: a
    request is stored on every result and shown in reprs, so it must never
    hold a secret.
    """

    model: str
    prompt: Prompt
    stream: bool = True
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    logprobs: int | None = None
    stop: str | Sequence[str] | None = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[str, int] | None = None
    seed: int | None = None
    user: str | None = None
    stream_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def build(cls, model: str, prompt: Prompt, *, stream: bool = True, **params: Any) -> Self:
        """Build from keyword parameters, rejecting unknown names with a hint."""
        unknown = sorted(set(params) - set(PARAMS_BY_NAME))
        if unknown:
            names = [p.name for p in PARAMS]
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the Completions API takes " + ", ".join(names)
            raise ValidationError(f"unknown parameter {unknown[0]!r}: {hint}", param=unknown[0])
        return cls(model=model, prompt=prompt, stream=stream, **params)

    def params(self) -> dict[str, Any]:
        """The API parameters that were given (not model, prompt or stream)."""
        return {p.name: getattr(self, p.name) for p in PARAMS if getattr(self, p.name) is not None}

    def with_changes(self, **changes: Any) -> CompletionRequest:
        """A copy with some fields changed, validated again."""
        return replace(self, **changes)

    def to_body(self) -> dict[str, Any]:
        """The JSON body for ``POST /v1/completions``.

        A streamed request asks for a final usage chunk unless the caller
        said otherwise, so streamed and non-streamed results both carry usage.
        """
        body: dict[str, Any] = {"model": self.model, "prompt": _jsonable(self.prompt)}
        for name, value in self.params().items():
            body[name] = _jsonable(value)
        if self.stream:
            body["stream"] = True
            body.setdefault("stream_options", {"include_usage": True})
        return body

    @property
    def choices_expected(self) -> int:
        """How many choices the answer should hold: prompts x n."""
        return _prompt_count(self.prompt) * (self.n or 1)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _prompt_count(prompt: Prompt) -> int:
    if isinstance(prompt, str):
        return 1
    if prompt and all(isinstance(p, int) for p in prompt):
        return 1
    return max(1, len(prompt))


def _fail(name: str, value: Any, hint: str = "") -> ValidationError:
    spec = PARAMS_BY_NAME.get(name)
    allowed = spec.range_text() if spec else ""
    if ".." in allowed:
        allowed = "in " + allowed
    msg = f"{name} must be {allowed}, got {value!r}" if allowed else f"{name}: got {value!r}"
    return ValidationError(msg + (f"; {hint}" if hint else ""), param=name)


def _check_text(name: str, value: Any) -> None:
    """Strings must be sendable as UTF-8: a lone surrogate (from broken copy-paste or decoding) is not."""
    if not isinstance(value, str) or value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{name} contains an unpaired surrogate {value[exc.start]!r} at position {exc.start}, which cannot be "
            "sent as UTF-8 (text decoded with errors='surrogateescape'?): remove it, e.g. "
            "text.encode('utf-8', 'replace').decode('utf-8')",
            param=name,
        ) from None


def _validate(req: CompletionRequest) -> None:
    if not isinstance(req.model, str) or not req.model.strip():
        raise ValidationError("model is empty: pass model=..., use -m/--model, or set VMAN_MODEL", param="model")
    _check_text("model", req.model)
    _validate_prompt(req.prompt)
    if isinstance(req.prompt, str):
        _check_text("prompt", req.prompt)
    else:
        for item in req.prompt:
            _check_text("prompt", item)
    for name in ("suffix", "user"):
        _check_text(name, getattr(req, name))
    for stop in (req.stop,) if isinstance(req.stop, str) else req.stop or ():
        _check_text("stop", stop)
    for spec in PARAMS:
        value = getattr(req, spec.name)
        if value is None:
            continue
        if spec.kind in ("int", "float"):
            ok_type = isinstance(value, int) if spec.kind == "int" else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
                raise _fail(spec.name, value, f"{spec.name} takes {'an integer' if spec.kind == 'int' else 'a number'}")
            if (spec.minimum is not None and value < spec.minimum) or (
                spec.maximum is not None and value > spec.maximum
            ):
                raise _fail(spec.name, value)
        elif (spec.kind == "bool" and not isinstance(value, bool)) or (
            spec.kind == "str" and not isinstance(value, str)
        ):
            raise _fail(spec.name, value)
    if req.seed is not None and not INT64_MIN <= req.seed <= INT64_MAX:
        raise ValidationError(f"seed must fit in a signed 64-bit integer, got {req.seed}", param="seed")
    _validate_stop(req.stop)
    _validate_logit_bias(req.logit_bias)
    if req.stream_options is not None:
        if not isinstance(req.stream_options, Mapping):
            raise _fail("stream_options", req.stream_options)
        if not req.stream:
            raise ValidationError(
                "stream_options only applies to streamed requests: drop it or set stream=True",
                param="stream_options",
            )
    if req.best_of is not None:
        if req.best_of < (req.n or 1):
            raise ValidationError(
                f"best_of ({req.best_of}) must be at least n ({req.n or 1}): raise best_of or lower n",
                param="best_of",
            )
        if req.stream and req.best_of > 1:
            raise ValidationError(
                "best_of cannot be streamed: the server picks the best candidate at the end; "
                "use stream=False (--no-stream) or drop best_of",
                param="best_of",
            )


def _validate_prompt(prompt: Any) -> None:
    if isinstance(prompt, str):
        return
    hint = "prompt must be a string, a list of strings, a list of token ids, or a list of lists of token ids"
    if not isinstance(prompt, Sequence) or isinstance(prompt, (bytes, bytearray)) or len(prompt) == 0:
        raise ValidationError(
            f"{hint}; got {type(prompt).__name__}" + (" (empty)" if prompt == [] else ""), param="prompt"
        )
    if all(isinstance(p, str) for p in prompt):
        return
    if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
        if any(p < 0 for p in prompt):
            raise ValidationError("token ids in a prompt must be non-negative integers", param="prompt")
        return
    if all(isinstance(p, Sequence) and not isinstance(p, str) and len(p) > 0 for p in prompt):
        for row in prompt:
            if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in row):
                raise ValidationError(
                    "every token id in a list of token lists must be a non-negative integer", param="prompt"
                )
        return
    raise ValidationError(hint + "; not a mix of them", param="prompt")


def _validate_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        if isinstance(stop, str) and stop == "":
            raise ValidationError("stop must not be an empty string", param="stop")
        return
    if not isinstance(stop, Sequence) or not all(isinstance(s, str) for s in stop):
        raise _fail("stop", stop)
    if len(stop) > MAX_STOP:
        raise ValidationError(
            f"stop takes at most {MAX_STOP} sequences, got {len(stop)}: keep the {MAX_STOP} that matter most",
            param="stop",
        )
    if any(s == "" for s in stop):
        raise ValidationError("stop sequences must not be empty strings", param="stop")


def _validate_logit_bias(bias: Any) -> None:
    if bias is None:
        return
    if not isinstance(bias, Mapping):
        raise _fail("logit_bias", bias)
    for key, value in bias.items():
        if not str(key).lstrip("-").isdigit() or int(key) < 0:
            raise ValidationError(
                f"logit_bias keys must be token ids (non-negative integers), got {key!r}", param="logit_bias"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100 <= value <= 100:
            raise ValidationError(
                f"logit_bias values must be numbers in -100..100, got {value!r} for token {key}",
                param="logit_bias",
            )


# --------------------------------------------------------------------------- result


@dataclass
class Usage:
    """Token counts as the server reported them, or as the client counted them.

    ``counted_by_client`` is True when the server sent no usage (llama.cpp in
    a stream): ``completion_tokens`` is then the number of streamed events
    that brought text, and the prompt is not counted.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    counted_by_client: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            total_tokens=int(data.get("total_tokens") or 0),
        )

    def to_dict(self) -> dict[str, int]:
        """The API's usage object (the client's own count is not part of it)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "counted_by_client"}


@dataclass
class Logprobs:
    """Per-token log-probabilities of one choice, in the legacy Completions shape.

    ``top_logprobs[i]`` maps the K most likely tokens at step i to their
    log-probability; ``token_logprobs[0]`` is ``None`` for an echoed prompt.
    """

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def extend(self, data: Mapping[str, Any]) -> None:
        """Append one chunk's arrays (a stream sends them a few tokens at a time)."""
        self.tokens.extend(data.get("tokens") or ())
        self.token_logprobs.extend(data.get("token_logprobs") or ())
        top = data.get("top_logprobs")
        if top:
            self.top_logprobs.extend(top)
        offsets = data.get("text_offset")
        if offsets:
            self.text_offset.extend(offsets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


class Choice:
    """One generated text. ``text`` is joined lazily from the streamed pieces.

    A stream brings one small string per token; keeping a million of them
    would cost ~60 bytes each on top of the text (10x a 1M-token text,
    see ``benchmarks/README.md``). So every :data:`FOLD_EVERY` new pieces are
    joined into one (:meth:`_fold`): each character is copied once more, and
    the list holds a few thousand strings instead of a million.
    """

    __slots__ = ("_folded", "_parts", "finish_reason", "index", "logprobs")

    def __init__(
        self, index: int, text: str = "", finish_reason: str | None = None, logprobs: Logprobs | None = None
    ) -> None:
        self.index = index
        self.finish_reason = finish_reason
        self.logprobs = logprobs
        self._parts: list[str] = [text] if text else []
        self._folded = 0  # _parts[:_folded] are already-joined runs of pieces

    @property
    def text(self) -> str:
        parts = self._parts
        if len(parts) > 1:
            joined = "".join(parts)
            parts.clear()
            parts.append(joined)
            self._folded = 1
            return joined
        return parts[0] if parts else ""

    def _fold(self) -> None:
        """Join the pieces that arrived since the last fold into one string."""
        parts, start = self._parts, self._folded
        parts[start:] = ["".join(parts[start:])]
        self._folded = start + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "index": self.index,
            "logprobs": self.logprobs.to_dict() if self.logprobs is not None else None,
            "finish_reason": self.finish_reason,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Choice) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        text = self.text
        shown = text if len(text) <= 60 else text[:57] + "..."
        return f"Choice(index={self.index}, finish_reason={self.finish_reason!r}, text={shown!r})"


class Completion:
    """The result of one completions call, streamed or not.

    ``str(c)`` is the first choice's text. After a failure or an interrupt the
    result keeps every piece that arrived, with ``incomplete=True`` and the
    exception in ``error``. ``notes`` holds plain-language remarks about what
    the server did differently from what was asked (e.g. dropped logprobs).
    """

    def __init__(self, request: CompletionRequest | None = None) -> None:
        self.request = request
        self.id: str | None = None
        self.object: str | None = None
        self.model: str | None = None
        self.created: int | None = None
        self.system_fingerprint: str | None = None
        self._choices: dict[int, Choice] = {}
        self.usage: Usage | None = None
        self.incomplete: bool = False
        self.error: BaseException | None = None
        self.elapsed: float | None = None
        self.time_to_first_token: float | None = None
        self.notes: list[str] = []
        self.chunks: int = 0
        """Events that brought text (a non-stream answer is one): the client's token count when usage is missing."""
        self.cut_short: str | None = None
        """Why the answer is incomplete although no error was raised (a choice ended without a finish reason)."""
        self.history_id: int | None = None
        """This result's entry in the local history (``vman_magic.load(id)``); None when not recorded."""
        self.cached: bool = False
        """True when the answer came from the history instead of the server (``cache=True``)."""

    # -- reading ---------------------------------------------------------
    @property
    def choices(self) -> list[Choice]:
        return [self._choices[i] for i in sorted(self._choices)]

    @property
    def text(self) -> str:
        """The first choice's text ("" if nothing arrived)."""
        choices = self._choices
        if 0 in choices:
            return choices[0].text
        return self.choices[0].text if choices else ""

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.choices]

    @property
    def finish_reason(self) -> str | None:
        choices = self.choices
        return choices[0].finish_reason if choices else None

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens per second after the first token, for a stream that brought text at least twice.

        One event (every non-stream answer) has no "after the first token":
        the figure would divide by almost nothing.
        """
        if not self.usage or self.elapsed is None or self.time_to_first_token is None or self.chunks < 2:
            return None
        span = self.elapsed - self.time_to_first_token
        return self.usage.completion_tokens / span if span > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI response shape, as a non-stream call would return it."""
        out: dict[str, Any] = {
            "id": self.id,
            "object": self.object or "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [c.to_dict() for c in self.choices],
        }
        if self.system_fingerprint is not None:
            out["system_fingerprint"] = self.system_fingerprint
        if self.usage is not None:
            out["usage"] = self.usage.to_dict()
        return out

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        text = self.text
        shown = text if len(text) <= 60 else text[:57] + "..."
        state = ", incomplete=True" if self.incomplete else ""
        usage = f", tokens={self.usage.total_tokens}" if self.usage else ""
        return (
            f"<Completion model={self.model!r} choices={len(self._choices)}"
            f" finish_reason={self.finish_reason!r}{usage}{state} text={shown!r}>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .render import completion_html, completion_text

        return {"text/plain": completion_text(self), "text/html": completion_html(self)}

    def show_probabilities(self) -> Any:
        """A token heatmap of this result (needs ``logprobs`` in the request)."""
        from .heatmap import ProbabilityView

        return ProbabilityView(self)


class CompletionBuilder:
    """Folds decoded chunks into a :class:`Completion`, in arrival order.

    ``add`` is on the hot path (called once per stream event), so it touches
    each field once and keeps no per-event objects.
    """

    __slots__ = ("_choices", "_first_token_at", "_started", "completion")

    def __init__(self, request: CompletionRequest | None = None, *, started: float | None = None) -> None:
        self.completion = Completion(request)
        self._started = time.perf_counter() if started is None else started
        self._choices = self.completion._choices
        self._first_token_at: float | None = None

    def add(self, chunk: Mapping[str, Any]) -> None:
        """Fold one chunk (or a whole non-stream response) into the result.

        Raises :class:`StreamAPIError` for ``{"error": ...}`` chunks, with the
        result so far attached as ``partial``.
        """
        c = self.completion
        if c.id is None:
            if "error" in chunk and chunk.get("error") is not None:
                self._raise_error(chunk)
            c.id = chunk.get("id")
            c.object = chunk.get("object")
            c.model = chunk.get("model")
            c.created = chunk.get("created")
            c.system_fingerprint = chunk.get("system_fingerprint")
        elif "error" in chunk and chunk["error"] is not None:
            self._raise_error(chunk)
        choices = self._choices
        for data in chunk.get("choices") or ():
            index = data.get("index", 0)
            choice = choices.get(index)
            if choice is None:
                choice = choices[index] = Choice(index)
            text = data.get("text")
            if text:
                c.chunks += 1
                parts = choice._parts
                parts.append(text)
                if len(parts) - choice._folded >= FOLD_EVERY:
                    choice._fold()
                if self._first_token_at is None:
                    self._first_token_at = time.perf_counter()
                    c.time_to_first_token = self._first_token_at - self._started
            reason = data.get("finish_reason")
            if reason is not None:
                choice.finish_reason = reason
            lp = data.get("logprobs")
            if lp:
                if choice.logprobs is None:
                    choice.logprobs = Logprobs()
                choice.logprobs.extend(lp)
        usage = chunk.get("usage")
        if usage:
            c.usage = Usage.from_dict(usage)

    def _raise_error(self, chunk: Mapping[str, Any]) -> None:
        info = error_fields(chunk)
        message = info.get("message") or "the server reported an error inside the stream"
        result = self.fail(None)
        err = StreamAPIError(
            f"the server stopped the stream with an error: {message}",
            type=info.get("type"),
            code=info.get("code"),
            param=info.get("param"),
            partial=result,
        )
        result.error = err
        raise err

    @property
    def all_finished(self) -> bool:
        """True when every expected choice has a finish reason."""
        c = self.completion
        expected = c.request.choices_expected if c.request is not None else len(self._choices)
        return len(self._choices) >= expected and all(ch.finish_reason for ch in self._choices.values())

    def finish(self) -> Completion:
        """Close a result that ended normally, then check it against the request.

        "Normally" is the server's word, not ours: :func:`~vman_magic.core.honoured.review`
        marks a choice without a finish reason as cut short (``incomplete``),
        counts streamed tokens when the server sent no usage, and notes every
        parameter the answer shows was ignored.
        """
        c = self.completion
        c.elapsed = time.perf_counter() - self._started
        u, req = c.usage, c.request
        if req is not None and req.stream and c.chunks and (u is None or u.completion_tokens == u.prompt_tokens == 0):
            # no usage (llama.cpp streams), or LiteLLM's zeros: one token per event that brought text
            c.usage = Usage(completion_tokens=c.chunks, total_tokens=c.chunks, counted_by_client=True)
        review(c)
        return c

    def fail(self, error: BaseException | None) -> Completion:
        """Close a result that broke off: keep what arrived, flag it incomplete."""
        c = self.completion
        c.elapsed = time.perf_counter() - self._started
        c.incomplete = True
        if error is not None:
            c.error = error
        return c
