"""A :class:`Completion` as one row of the history, and back; the cache key of a request.

Everything here is a pure function of its arguments, so it can run on the
history's writer thread and be tested without a database.

What a row holds (see :mod:`vman_magic.logbook.db` for the table):

* the request body exactly as sent (``request.to_body()``: the API key and
  headers are never part of it), the server's host, the model;
* every choice's text, joined into ``answer`` with a blank line between
  choices (what full-text search and the history table read), and per
  choice its finish reason and length, so the texts can be split back;
* logprobs (when present), usage, time to first token, total time;
* status: ``complete``, ``incomplete`` (with the reason) or ``error`` (with
  the message);
* the notebook the kernel runs, where Jupyter tells it.

An answer larger than :data:`MAX_STORED_CHARS` is stored cut, and ``cut``
says what was cut; such a row is never served from the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import VmanError
from ..core.models import Choice, Completion, CompletionRequest, Logprobs, Usage
from ..core.params import PARAMS_BY_NAME
from ..core.render import incomplete_reason

__all__ = [
    "MAX_STORED_CHARS",
    "RecordedError",
    "Row",
    "cache_key",
    "host_of",
    "notebook_path",
    "restore",
    "samples",
    "status_of",
    "to_row",
]

#: Characters kept per stored part (the prompt; the answer's text; its logprobs as JSON).
#: A bigger answer is stored cut and marked, and is never served from the cache.
MAX_STORED_CHARS = 8_000_000
_SEPARATOR = "\n\n"  # between the texts of several choices in ``answer``
#: Body fields that change how an answer travels, not what it says: left out of the cache key.
_TRANSPORT_FIELDS = ("stream", "stream_options")


class RecordedError(VmanError):
    """The error a recorded result ended with, as recorded (the original exception is not stored)."""


@dataclass(frozen=True)
class Row:
    """The columns of one history row, in :data:`vman_magic.logbook.db.COLUMNS` order."""

    id: int | None
    created: float
    host: str
    model: str | None
    notebook: str | None
    status: str
    reason: str | None
    prompt: str
    answer: str
    choices: str
    logprobs: str | None
    usage: str | None
    request: str
    response: str
    ttft: float | None
    elapsed: float | None
    cache_key: str
    cut: str | None

    def values(self) -> tuple[Any, ...]:
        return (
            self.id, self.created, self.host, self.model, self.notebook, self.status, self.reason, self.prompt,
            self.answer, self.choices, self.logprobs, self.usage, self.request, self.response, self.ttft,
            self.elapsed, self.cache_key, self.cut,
        )  # fmt: skip


# --------------------------------------------------------------------------- keys


def host_of(base_url: str) -> str:
    """The host part of a base URL, lower-case, without port or credentials.

    The port is left out on purpose: the offline demo server listens on a new
    ephemeral port in every kernel, and its answers must still be found after
    a restart.
    """
    return (urllib.parse.urlsplit(base_url).hostname or "").lower()


def _canonical_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body without transport fields, with float parameters as floats (``temperature=0`` is ``0.0``)."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in _TRANSPORT_FIELDS:
            continue
        spec = PARAMS_BY_NAME.get(name)
        if spec is not None and spec.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    return out


_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_canonical = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def cache_key(request: CompletionRequest, host: str, body: Mapping[str, Any] | None = None) -> str:
    """sha256 of the host and the canonical JSON body: equal for requests that ask the same thing.

    The model is part of the body. Streaming or not does not change the
    answer, so ``stream`` and ``stream_options`` are left out: a batch (not
    streamed) finds what ``%%complete`` (streamed) recorded. ``body`` is
    ``request.to_body()`` when the caller has it already.
    """
    canonical = _canonical({"host": host, "body": _canonical_body(body if body is not None else request.to_body())})
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def samples(request: CompletionRequest | None) -> bool:
    """True when the request draws at random: temperature above 0 (or the server's default) and no seed."""
    if request is None:
        return False
    return request.seed is None and (request.temperature is None or request.temperature > 0)


# --------------------------------------------------------------------------- status


def status_of(c: Completion) -> tuple[str, str | None]:
    """``("complete", None)``, ``("incomplete", reason)`` or ``("error", "Type: message")``."""
    if not c.incomplete:
        return "complete", None
    error = c.error
    if error is None or isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)) or _is_unfinished(error):
        return "incomplete", incomplete_reason(c) or "incomplete"
    message = " ".join(str(error).split()) or type(error).__name__
    return "error", f"{type(error).__name__}: {message}"


def _is_unfinished(error: BaseException) -> bool:
    """A batch's "not finished" marker (defined in the batch layer, which this layer must not import)."""
    return type(error).__name__ == "Unfinished"


# --------------------------------------------------------------------------- notebook


def notebook_path() -> str | None:
    """The notebook this kernel runs, where Jupyter says it; None in a script.

    Jupyter Server (2.x) sets ``JPY_SESSION_NAME`` for the kernels it starts;
    ipykernel puts the same into ``__session__`` in the user namespace, and VS
    Code sets ``__vsc_ipynb_file__``. IPython is only consulted when it is
    already loaded, so scripts do not import it.
    """
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        return name
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if get is not None else None
    user_ns = getattr(shell, "user_ns", None)
    if isinstance(user_ns, dict):
        for key in ("__session__", "__vsc_ipynb_file__"):
            value = user_ns.get(key)
            if isinstance(value, str) and value:
                return value
    return None


# --------------------------------------------------------------------------- to a row


def _prompt_text(prompt: Any) -> str:
    """The prompt as text for reading and search: strings as they are, token ids as JSON."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence) and all(isinstance(p, str) for p in prompt):
        return _SEPARATOR.join(prompt)
    return json.dumps(prompt)


def _dumps(value: Any) -> str:
    return _compact(value)


def to_row(
    c: Completion, *, id: int | None, host: str, created: float | None = None, notebook: str | None = None
) -> Row:
    """The row for ``c``; what is too large is cut (see :data:`MAX_STORED_CHARS`) and listed in ``cut``."""
    cut: list[str] = []
    request = c.request
    sent: dict[str, Any] = request.to_body() if request is not None else {}
    body = sent
    prompt = _prompt_text(request.prompt) if request is not None else ""
    if len(prompt) > MAX_STORED_CHARS:
        prompt = prompt[:MAX_STORED_CHARS]
        body = {**body, "prompt": prompt}
        cut.append("prompt")
    choices = c.choices
    texts = [ch.text for ch in choices]
    if sum(len(t) for t in texts) > MAX_STORED_CHARS:
        share = MAX_STORED_CHARS // max(len(texts), 1)
        texts = [t[:share] for t in texts]
        cut.append("text")
    logprobs: str | None = None
    if any(ch.logprobs is not None for ch in choices):
        logprobs = _dumps([ch.logprobs.to_dict() if ch.logprobs is not None else None for ch in choices])
        if len(logprobs) > MAX_STORED_CHARS:
            logprobs = None
            cut.append("logprobs")
    status, reason = status_of(c)
    response = {
        "id": c.id,
        "object": c.object,
        "created": c.created,
        "model": c.model,
        "system_fingerprint": c.system_fingerprint,
        "notes": list(c.notes),
    }
    return Row(
        id=id,
        created=time.time() if created is None else created,
        host=host,
        model=c.model or (request.model if request is not None else None),
        notebook=notebook,
        status=status,
        reason=reason,
        prompt=prompt,
        answer=_SEPARATOR.join(texts),
        choices=_dumps([[ch.index, ch.finish_reason, len(t)] for ch, t in zip(choices, texts, strict=True)]),
        logprobs=logprobs,
        usage=_dumps(_usage(c.usage)) if c.usage is not None else None,
        request=_dumps(body),
        response=_dumps(response),
        ttft=c.time_to_first_token,
        elapsed=c.elapsed,
        cache_key=cache_key(request, host, sent) if request is not None else "",
        cut=",".join(cut) or None,
    )


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


# --------------------------------------------------------------------------- from a row


def restore(values: Mapping[str, Any], into: Completion | None = None) -> Completion:
    """The :class:`Completion` a row was made from (``into``, filled in place, or a new one).

    Equal to the original in text, choices, finish reasons, logprobs, usage,
    ids and timings. The error of a failed result comes back as a
    :class:`RecordedError` with the recorded message, and a cut row says what
    was cut in its notes.
    """
    c = into if into is not None else Completion(_request(values["request"]))
    response = json.loads(values["response"])
    c.id, c.object, c.created = response.get("id"), response.get("object"), response.get("created")
    c.model, c.system_fingerprint = response.get("model"), response.get("system_fingerprint")
    c.notes = list(response.get("notes") or ())
    answer: str = values["answer"]
    logprobs = json.loads(values["logprobs"]) if values["logprobs"] else None
    c._choices.clear()
    position = 0
    for i, (index, finish_reason, chars) in enumerate(json.loads(values["choices"])):
        text = answer[position : position + chars]
        position += chars + len(_SEPARATOR)
        lp = logprobs[i] if logprobs is not None else None
        c._choices[index] = Choice(index, text, finish_reason, _logprobs(lp) if lp is not None else None)
    c.usage = Usage.from_dict(json.loads(values["usage"])) if values["usage"] else None
    c.time_to_first_token, c.elapsed = values["ttft"], values["elapsed"]
    c.incomplete = values["status"] != "complete"
    c.error = RecordedError(values["reason"] or values["status"]) if c.incomplete else None
    c.history_id = values["id"]
    if values["cut"]:
        *rest, last = values["cut"].split(",")
        parts = f"{', '.join(rest)} and {last}" if rest else last
        c.notes.append(
            f"history #{values['id']} stored this result cut to fit: its {parts} were too large to keep whole"
        )
    return c


def _logprobs(data: Mapping[str, Any]) -> Logprobs:
    return Logprobs(
        tokens=list(data.get("tokens") or ()),
        token_logprobs=list(data.get("token_logprobs") or ()),
        top_logprobs=list(data.get("top_logprobs") or ()),
        text_offset=list(data.get("text_offset") or ()),
    )


def _request(body_json: str) -> CompletionRequest | None:
    """The request a stored body describes, or None when it no longer validates."""
    body = dict(json.loads(body_json))
    model, prompt = body.pop("model", None), body.pop("prompt", None)
    stream = bool(body.pop("stream", False))
    if stream and body.get("stream_options") == {"include_usage": True}:
        del body["stream_options"]  # what to_body() adds to every streamed request: not the caller's own
    try:
        return CompletionRequest.build(model, prompt, stream=stream, **body)
    except (VmanError, TypeError):
        return None
