"""The wire format: request validation and the OpenAI-shaped response objects.

Validation reuses :class:`vman_magic.CompletionRequest`, so the server and the
client reject the same things with the same messages (each names the field,
the allowed range and what to change). On top of it the server checks what
only it knows: the model id, and that token ids exist in its vocabulary.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..core.errors import ValidationError
from ..core.models import CompletionRequest
from ..core.params import PARAMS_BY_NAME
from .generate import GenParams
from .model import MODEL_ID, Model
from .sampler import SamplingParams
from .tokenizer import ID_LIMIT

#: Prompt plus completion may not exceed this many tokens, as a real model's context window.
CONTEXT_WINDOW: Final = 16384
DEFAULT_MAX_TOKENS: Final = 16
MODEL_CREATED: Final = 1_700_000_000


class APIError(Exception):
    """An error answer: status plus the OpenAI ``{"error": {...}}`` fields."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error",
        param: str | None = None, code: str | int | None = None, headers: Sequence[tuple[str, str]] = (),
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = list(headers)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | int | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` exactly as OpenAI sends it."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class Job:
    """A validated completions request, ready to generate."""

    prompts: list[list[int]]
    n: int
    best_of: int
    stream: bool
    include_usage: bool
    seed: int | None
    gen: GenParams


#: Request bodies nested deeper than this are refused (a completions request is about 3 levels deep).
MAX_JSON_DEPTH: Final = 64
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``raw`` nests arrays/objects more than ``limit`` deep (cheap unless it has that many brackets)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


def parse_json(raw: bytes) -> Any:
    """The request body as JSON, or a 400 that says what is wrong with it.

    Nesting beyond :data:`MAX_JSON_DEPTH` and integers longer than Python
    converts (4,300 digits) are 400s too, not a dropped connection.
    """
    if json_depth_exceeds(raw):
        raise APIError(400, f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep; send a flat request.")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(
            400,
            f"We could not parse the JSON body of your request ({exc}). "
            "Send a JSON object with Content-Type: application/json.",
        ) from None
    except (ValueError, RecursionError) as exc:  # an integer of 5,000 digits; nesting the scan missed
        raise APIError(400, f"We could not read the JSON body of your request: {str(exc)[:160]}") from None


def parse_completion(body: Any, model: Model, *, chinese: bool = False) -> Job:
    """Validate a ``POST /v1/completions`` body; raise :class:`APIError` (400/404) when it cannot run."""
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    if "model" not in body:
        raise APIError(400, 'you must provide a model parameter, e.g. "model": "vman-demo"', param="model")
    if "prompt" not in body:
        raise APIError(400, 'you must provide a prompt parameter, e.g. "prompt": "Once upon a time"', param="prompt")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise APIError(400, f"stream must be true or false, got {stream!r}", param="stream")
    params = {k: v for k, v in body.items() if k not in ("model", "prompt", "stream") and v is not None}
    unknown = sorted(set(params) - set(PARAMS_BY_NAME))
    if unknown:
        raise APIError(400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
    try:
        req = CompletionRequest(model=body["model"], prompt=body["prompt"], stream=stream, **params)
    except ValidationError as exc:
        raise APIError(400, exc.message, param=exc.param) from None
    except TypeError as exc:  # e.g. a dict where a list was expected
        raise APIError(400, str(exc)) from None
    if req.model != MODEL_ID:
        raise APIError(
            404, f"The model '{req.model}' does not exist; this server serves only '{MODEL_ID}'.",
            param="model", code="model_not_found",
        )  # fmt: skip
    tok = model.tokenizer
    prompts = _prompt_ids(req.prompt, tok.encode)
    for ids in prompts:
        bad = next((t for t in ids if not tok.is_valid(t)), None)
        if bad is not None:
            raise APIError(
                400, f"token id {bad} is not in the vocabulary of {MODEL_ID} (ids < {ID_LIMIT})", param="prompt"
            )
    bias = {int(k): float(v) for k, v in (req.logit_bias or {}).items()}
    bad = next((t for t in bias if not tok.is_valid(t)), None)
    if bad is not None:
        raise APIError(
            400, f"logit_bias names token id {bad}, which is not in the vocabulary of {MODEL_ID}", param="logit_bias"
        )
    max_tokens = DEFAULT_MAX_TOKENS if req.max_tokens is None else req.max_tokens
    longest = max(len(ids) for ids in prompts)
    if longest >= CONTEXT_WINDOW:  # no max_tokens can help: say only what can
        raise APIError(
            400, f"This model's maximum context length is {CONTEXT_WINDOW} tokens, but the prompt alone "
            f"is {longest} tokens: shorten the prompt.", param="prompt",
        )  # fmt: skip
    if longest + max_tokens > CONTEXT_WINDOW:
        raise APIError(
            400, f"This model's maximum context length is {CONTEXT_WINDOW} tokens, but you requested "
            f"{longest + max_tokens} ({longest} in the prompt, {max_tokens} for the completion): "
            f"lower max_tokens to {CONTEXT_WINDOW - longest} or less, or shorten the prompt.", param="max_tokens",
        )  # fmt: skip
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    n = req.n or 1
    sampling = SamplingParams(
        temperature=1.0 if req.temperature is None else float(req.temperature),
        top_p=1.0 if req.top_p is None else float(req.top_p),
        presence_penalty=float(req.presence_penalty or 0.0),
        frequency_penalty=float(req.frequency_penalty or 0.0),
        logit_bias=bias,
    )
    gen = GenParams(max_tokens, stop, req.logprobs, bool(req.echo), sampling, chinese)
    include_usage = bool(req.stream_options and req.stream_options.get("include_usage"))
    return Job(prompts, n, max(n, req.best_of or 1), stream, include_usage, req.seed, gen)


def _prompt_ids(prompt: Any, encode: Any) -> list[list[int]]:
    if isinstance(prompt, str):
        return [encode(prompt)]
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]
    return [encode(p) if isinstance(p, str) else list(p) for p in prompt]


# --------------------------------------------------------------------------- responses


class ResponseIds:
    """``id``/``created``/``model``/``system_fingerprint``: shared by every chunk of one response."""

    def __init__(self, fingerprint: str) -> None:
        self.head = {
            "id": "cmpl-" + uuid.uuid4().hex[:24],
            "object": "text_completion",
            "created": int(time.time()),
            "model": MODEL_ID,
            "system_fingerprint": fingerprint,
        }

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None) -> dict[str, Any]:
        return {**self.head, "choices": choices, "usage": usage}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def model_object() -> dict[str, Any]:
    """The one entry of ``GET /v1/models``."""
    return {"id": MODEL_ID, "object": "model", "created": MODEL_CREATED, "owned_by": "vman-magic"}


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (non-ASCII kept as is: Chinese text stays multibyte on the wire)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
