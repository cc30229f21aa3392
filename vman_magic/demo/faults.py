"""Fault injection and per-request throttles, selected by a path prefix.

A base URL such as ``http://127.0.0.1:PORT/x/fault=drop_mid_stream,tps=20/v1``
reaches the normal API with *knobs*: the segment after ``/x/`` is a
comma-separated list of ``name=value`` items or bare fault names. The full
syntax and every fault's bytes are documented in :mod:`vman_magic.testing`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from .protocol import APIError

#: Mid-stream faults strike after this many data events (or before the last one, if fewer).
FAULT_AFTER: Final = 3

FAULTS: Final = frozenset({
    "no_space", "crlf", "keepalive", "split_utf8", "usage_chunk", "error_in_stream",
    "error_in_stream_strcode", "drop_mid_stream", "no_done", "no_done_unfinished", "bad_json", "hang",
    "html_200", "json_when_stream", "long_line", "chinese", "cut_short", "bom", "bad_json_burst", "rejected",
})  # fmt: skip
_VALUED: Final = ("fault", "status", "html_error", "ratelimit", "retry_after", "tps", "first_token_ms")

_STATUS_ERRORS: Final[dict[int, tuple[str, str, str | None]]] = {
    400: ("Invalid request (injected by status=400).", "invalid_request_error", None),
    401: ("Incorrect API key provided (injected by status=401).", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model (injected by status=403).", "permission_error", "permission_denied"),
    404: ("The model does not exist (injected by status=404).", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests (injected by status=429).", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request (injected by status=500).", "server_error", None),
    502: ("Bad gateway (injected by status=502).", "server_error", "bad_gateway"),
    503: ("The server is overloaded or not ready yet (injected by status=503).", "server_error", "service_unavailable"),
}

HTML_PAGE: Final = (
    "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n"
    "<body><h1>{title}</h1><p>This page was sent by the vman-magic demo server "
    "(fault {fault}) to imitate a proxy or captive portal.</p></body></html>\n"
)


@dataclass(frozen=True)
class Knobs:
    """What a path prefix asks for; the empty prefix gives the defaults (no faults)."""

    prefix: str = ""
    faults: frozenset[str] = field(default_factory=frozenset)
    status: int | None = None
    html_error: int | None = None
    ratelimit: int | None = None
    retry_after: float | None = None
    tps: float | None = None
    first_token_ms: float | None = None

    def has(self, name: str) -> bool:
        return name in self.faults

    @property
    def chinese(self) -> bool:
        """``chinese`` and ``split_utf8`` make the model write a Chinese passage."""
        return "chinese" in self.faults or "split_utf8" in self.faults

    def status_error(self) -> APIError | None:
        """The injected ``status=N`` error, if any (429 carries ``Retry-After``)."""
        if self.status is None:
            return None
        return injected_error(self.status, self.retry_after)


_REQUEST_IDS = itertools.count(1)


def injected_error(status: int, retry_after: float | None) -> APIError:
    """The answer of ``status=N``: a 5xx names a new request id each time, as real transient failures do."""
    message, type_, code = _STATUS_ERRORS.get(
        status,
        (f"Injected error (status={status}).", "server_error" if status >= 500 else "invalid_request_error", None),
    )
    if status >= 500:
        message = f"{message[:-1]}, request id req_{next(_REQUEST_IDS)})."
    headers: list[tuple[str, str]] = []
    if status in (429, 503) or retry_after is not None:
        headers.append(("Retry-After", _seconds(1 if retry_after is None else retry_after)))
    return APIError(status, message, type=type_, code=code, headers=headers)


def rejected_error() -> APIError:
    """``fault=rejected``: the 500 a server gives a request it will never accept (the same body every time)."""
    return APIError(
        500, "2 validation errors: prompt: Input should be a valid string (injected by fault=rejected).",
        type="internal_server_error",
    )  # fmt: skip


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def split_path(path: str) -> tuple[Knobs, str]:
    """``/x/<knobs>/v1/...`` -> (knobs, ``/v1/...``); other paths pass through unchanged."""
    if not path.startswith("/x/"):
        return Knobs(), path
    spec, sep, rest = path[3:].partition("/")
    return parse_knobs(spec), "/" + rest if sep else "/"


def parse_knobs(spec: str) -> Knobs:
    """Parse ``fault=a+b,tps=20,first_token_ms=300,status=429,...``; 400 on anything unknown."""
    faults: set[str] = set()
    values: dict[str, float] = {}
    for item in filter(None, spec.split(",")):
        name, eq, value = item.partition("=")
        if not eq:
            name, value = "fault", name
        if name not in _VALUED:
            raise _knob_error(f"unknown knob {name!r} in /x/{spec}/; knobs are " + ", ".join(_VALUED))
        if name == "fault":
            for fault in value.split("+"):
                if fault not in FAULTS:
                    raise _knob_error(f"unknown fault {fault!r} in /x/{spec}/; faults are " + ", ".join(sorted(FAULTS)))
                faults.add(fault)
            continue
        try:
            number = float(value)
        except ValueError:
            raise _knob_error(f"knob {name} needs a number, got {value!r} in /x/{spec}/") from None
        if number < 0 or (name in ("status", "html_error") and not 400 <= number <= 599):
            raise _knob_error(f"knob {name}={value} is out of range (statuses are 400..599, others >= 0)")
        values[name] = number
    as_int = {k: int(v) for k, v in values.items() if k in ("status", "html_error", "ratelimit")}
    return Knobs(
        prefix=spec,
        faults=frozenset(faults),
        status=as_int.get("status"),
        html_error=as_int.get("html_error"),
        ratelimit=as_int.get("ratelimit"),
        retry_after=values.get("retry_after"),
        tps=values.get("tps") or None,
        first_token_ms=values.get("first_token_ms"),
    )


def _knob_error(message: str) -> APIError:
    return APIError(400, message, param="url", code="invalid_fault")


class SSEFormat:
    """Frames JSON payloads as SSE events, bending the format as the knobs ask."""

    def __init__(self, knobs: Knobs) -> None:
        self.eol = b"\r\n" if knobs.has("crlf") else b"\n"
        self.prefix = b"data:" if knobs.has("no_space") else b"data: "
        self.keepalive = knobs.has("keepalive")
        self.bom = b"\xef\xbb\xbf" if knobs.has("bom") else b""
        self.count = 0

    def event(self, payload: bytes) -> bytes:
        """One ``data:`` event; with ``keepalive`` also a comment and ``event:``/``id:``/``retry:`` lines."""
        eol = self.eol
        self.count += 1
        bom = self.bom if self.count == 1 else b""
        if not self.keepalive:
            return bom + self.prefix + payload + eol + eol
        extra = b"retry: 3000" + eol if self.count == 1 else b""
        return (
            bom + b": ping" + eol + eol
            + extra + b"event: completion" + eol + b"id: " + str(self.count).encode() + eol
            + self.prefix + payload + eol + eol
        )  # fmt: skip

    def done(self) -> bytes:
        return self.prefix + b"[DONE]" + self.eol + self.eol


def split_utf8(data: bytes) -> list[bytes]:
    """Cut ``data`` inside every multibyte UTF-8 character (after its first byte)."""
    parts: list[bytes] = []
    start = 0
    for i, byte in enumerate(data):
        if byte >= 0xC0 and i + 1 < len(data):  # lead byte of a multibyte sequence
            parts.append(data[start : i + 1])
            start = i + 1
    parts.append(data[start:])
    return [p for p in parts if p]


def knob_url(
    base_url: str, *, fault: str | Iterable[str] | None = None, tps: float | None = None,
    first_token_ms: float | None = None, status: int | None = None, html_error: int | None = None,
    ratelimit: int | None = None, retry_after: float | None = None,
) -> str:  # fmt: skip
    """``http://h:p/v1`` -> ``http://h:p/x/<knobs>/v1`` (the inverse of :func:`split_path`)."""
    items: list[str] = []
    if fault:
        names = [fault] if isinstance(fault, str) else list(fault)
        unknown = [f for f in names if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault {unknown[0]!r}; faults are " + ", ".join(sorted(FAULTS)))
        items.append("fault=" + "+".join(names))
    numbers = {"tps": tps, "first_token_ms": first_token_ms, "status": status, "html_error": html_error,
               "ratelimit": ratelimit, "retry_after": retry_after}  # fmt: skip
    items += [f"{k}={_seconds(v)}" for k, v in numbers.items() if v is not None]
    scheme, sep, rest = base_url.partition("://")
    host, slash, path = rest.partition("/")
    if not items:
        return base_url
    return f"{scheme}{sep}{host}/x/{','.join(items)}{slash}{path}"
