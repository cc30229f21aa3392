"""The one place that checks what a server answered before anything else reads it.

Valid JSON is not yet a completion: a data line may be ``5``, ``[]`` or
``"x"``; ``choices`` may be a number; ``text`` a list; ``usage`` a string;
a body may nest ten thousand levels deep. Each of those used to surface as a
raw ``TypeError``/``RecursionError`` deep in the builder or a view. Here every
stream chunk, non-stream body, error body and ``/v1/models`` answer is parsed
with a depth limit and checked field by field *before*
:class:`~vman_magic.core.models.CompletionBuilder` sees it; anything else
becomes one :class:`~vman_magic.APIResponseError` whose one-line message names
the field that was wrong. The client attaches the text that already arrived
(``incomplete=True``), so nothing is lost.

The check is on the hot path (once per stream event), so it tests exact
types with ``type(x) is ...`` and walks only the fields the builder reads;
unknown fields are ignored, never stored. Server strings that a view shows
(``model``, ``id``, ``finish_reason`` ...) pass the client's
:class:`~vman_magic.core.scrub.Scrubber`; a value seen once is not scrubbed
again.

Standard library only (``orjson`` through :mod:`.sse` when installed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..core.errors import APIResponseError, error_fields
from ..core.scrub import Scrubber

__all__ = ["MAX_DEPTH", "AnswerShape", "check_depth", "json_loads", "loads", "parse_json"]

_json_decode = json.JSONDecoder().decode


def json_loads(payload: bytes) -> Any:
    """``json.loads`` for UTF-8 bytes without its per-call encoding sniffing.

    SSE is UTF-8 by definition, so decoding first and calling the decoder
    directly is about 25% faster per event than ``json.loads(payload)``.
    """
    return _json_decode(payload.decode())


try:  # the optional ``fast`` extra: ~3x faster than json on stream events
    import orjson

    loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only without orjson
    loads = json_loads

#: JSON nested deeper than this is refused (a completion chunk is about 5 levels deep).
MAX_DEPTH: Final = 64

_SCAN_FROM: Final = 512
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN: Final = frozenset(b"[{")
_KNOWN_REASONS: Final = frozenset({"stop", "length", "content_filter", "tool_calls", "eos", "abort"})
_HEADER_FIELDS: Final = ("id", "object", "model", "system_fingerprint")


class _JSONTooDeep(ValueError):
    """JSON nested deeper than :data:`MAX_DEPTH` (or than the parser's recursion allows)."""


def check_depth(payload: bytes, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`_JSONTooDeep` when ``payload`` nests more than ``limit`` arrays/objects.

    Cheap for ordinary payloads: the exact scan runs only when the payload
    holds more than ``limit`` opening brackets at all, and a payload shorter
    than :data:`_SCAN_FROM` bytes (a typical stream event) is not counted:
    it cannot nest deeper than the parsers handle (json and orjson both stop
    near 1,000 levels, which :func:`parse_json` reports the same way), and
    the shape check never walks into fields it does not know.
    """
    if len(payload) < _SCAN_FROM or payload.count(b"[") + payload.count(b"{") <= limit:
        return
    depth = deepest = 0
    for byte in _STRING.sub(b"", payload).translate(None, _NOT_BRACKETS):
        if byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    raise _JSONTooDeep(f"nested more than {limit} levels deep")
        else:
            depth -= 1


def parse_json(payload: bytes) -> Any:
    """``loads`` with a depth limit; every failure is a ``ValueError`` (never ``RecursionError``)."""
    check_depth(payload)
    try:
        return loads(payload)
    except RecursionError:
        raise _JSONTooDeep("nested deeper than the JSON parser allows") from None


def _kind(value: Any) -> str:
    """How a wrong value is named in a message: ``int 5``, ``list``, ``str 'x'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, (int, float)):
        shown = repr(value)
        return f"{type(value).__name__} {shown if len(shown) <= 20 else shown[:17] + '...'}"
    if isinstance(value, str):
        shown = repr(value[:20]) + ("..." if len(value) > 20 else "")
        return f"str {shown}"
    return {"dict": "an object", "list": "a list"}.get(type(value).__name__, type(value).__name__)


def _number(value: Any) -> bool:
    return (type(value) is float or type(value) is int) and value is not True and value is not False


class AnswerShape:
    """Checks the answers of one client (``host`` names the server in messages)."""

    __slots__ = ("_head", "host", "scrub")

    def __init__(self, host: str, scrub: Scrubber | None = None) -> None:
        self.host = host
        self.scrub = scrub or Scrubber.none()
        self._head: tuple[Any, ...] = ()  # the header fields of the last event, already checked and clean

    def _error(self, what: str, problem: str) -> APIResponseError:
        return APIResponseError(f"the server at {self.host} sent {what} of the wrong shape: {problem}")

    # -- completions ------------------------------------------------------
    def chunk(self, data: Any, *, body: bool = False) -> Mapping[str, Any]:
        """``data`` if it has the shape of a completion chunk (``body``: a whole non-stream answer).

        The common stream event (choices with a string ``text``, no logprobs
        or finish reason yet, the same id and model as the event before)
        takes the fast path: a few exact type tests, no method call per choice.
        """
        if type(data) is not dict:
            raise self._error("an answer" if body else "a stream event", f"expected a JSON object, got {_kind(data)}")
        get = data.get  # bound once: up to eight lookups per event
        if get("error") is not None:
            return data  # the builder raises it as StreamAPIError; its fields are checked by error_fields
        choices = get("choices")
        if type(choices) is list:
            for choice in choices:
                if (
                    type(choice) is not dict
                    or choice.get("logprobs") is not None
                    or choice.get("finish_reason") is not None
                    or type(index := choice.get("index", 0)) is not int
                    or index < 0
                    or not (type(text := choice.get("text")) is str or text is None)
                ):
                    # not the common shape: the full check of every choice, in order (the first
                    # wrong one raises; one that passed the fast test passes this one unchanged)
                    what = "an answer" if body else "a stream event"
                    for position, each in enumerate(choices):
                        self._choice(what, position, each)
                    break
        elif choices is not None or body:
            problem = "it has no 'choices' list" if choices is None else f"'choices' is {_kind(choices)}, not a list"
            raise self._error("an answer" if body else "a stream event", problem)
        usage = get("usage")
        if usage is not None:
            self._usage("an answer" if body else "a stream event", usage)
        head = (get("id"), get("object"), get("model"), get("system_fingerprint"), get("created"))
        if head != self._head:
            self._check_head("an answer" if body else "a stream event", data, head)
        return data

    def _check_head(self, what: str, data: dict[str, Any], head: tuple[Any, ...]) -> None:
        """Type-check and scrub the header fields; remembered, so the next event with the same ones skips this."""
        scrubbed = False
        for name, value in zip(_HEADER_FIELDS, head, strict=False):
            if value is not None:
                if type(value) is not str:
                    raise self._error(what, f"'{name}' is {_kind(value)}, not a string")
                clean = self.scrub(value)
                if clean != value:
                    data[name] = clean
                    scrubbed = True
        created = head[-1]
        if created is not None and not _number(created):
            raise self._error(what, f"'created' is {_kind(created)}, not a number")
        self._head = () if scrubbed else head  # a scrubbed head is not remembered: every event is scrubbed

    def _choice(self, what: str, position: int, choice: Any) -> None:
        where = f"choices[{position}]"
        if type(choice) is not dict:
            raise self._error(what, f"{where} is {_kind(choice)}, not an object")
        index = choice.get("index", 0)
        if type(index) is not int or index < 0:
            raise self._error(what, f"{where}.index is {_kind(index)}, not a whole number >= 0")
        text = choice.get("text")
        if text is not None and type(text) is not str:
            raise self._error(what, f"{where}.text is {_kind(text)}, not a string")
        reason = choice.get("finish_reason")
        if reason is not None:
            if type(reason) is not str:
                raise self._error(what, f"{where}.finish_reason is {_kind(reason)}, not a string")
            if reason not in _KNOWN_REASONS:
                choice["finish_reason"] = self.scrub(reason[:200])
        logprobs = choice.get("logprobs")
        if logprobs is not None:
            self._logprobs(what, where + ".logprobs", logprobs)

    def _logprobs(self, what: str, where: str, lp: Any) -> None:
        if type(lp) is not dict:
            raise self._error(what, f"{where} is {_kind(lp)}, not an object")
        tokens = lp.get("tokens")
        if tokens is not None:
            if type(tokens) is not list:
                raise self._error(what, f"{where}.tokens is {_kind(tokens)}, not a list")
            for token in tokens:
                if type(token) is not str:
                    raise self._error(what, f"{where}.tokens holds {_kind(token)}, not only strings")
        values = lp.get("token_logprobs")
        if values is not None:
            if type(values) is not list:
                raise self._error(what, f"{where}.token_logprobs is {_kind(values)}, not a list")
            for value in values:
                if value is not None and not _number(value):
                    raise self._error(what, f"{where}.token_logprobs holds {_kind(value)}, not only numbers")
        tops = lp.get("top_logprobs")
        if tops is not None:
            if type(tops) is not list:
                raise self._error(what, f"{where}.top_logprobs is {_kind(tops)}, not a list")
            for top in tops:
                if top is None:
                    continue
                if type(top) is not dict:
                    raise self._error(what, f"{where}.top_logprobs holds {_kind(top)}, not only objects")
                for value in top.values():
                    if not _number(value):
                        raise self._error(what, f"{where}.top_logprobs maps a token to {_kind(value)}, not a number")
        offsets = lp.get("text_offset")
        if offsets is not None:
            if type(offsets) is not list:
                raise self._error(what, f"{where}.text_offset is {_kind(offsets)}, not a list")
            for offset in offsets:
                if type(offset) is not int:
                    raise self._error(what, f"{where}.text_offset holds {_kind(offset)}, not only whole numbers")

    def _usage(self, what: str, usage: Any) -> None:
        if type(usage) is not dict:
            raise self._error(what, f"'usage' is {_kind(usage)}, not an object")
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = usage.get(name)
            if value is not None and (not _number(value) or value != value or abs(value) > 2**63):
                raise self._error(what, f"usage.{name} is {_kind(value)}, not a number of tokens")

    # -- other answers ----------------------------------------------------
    def error_fields(self, content: bytes) -> dict[str, Any]:
        """``message/type/code/param`` of an error body, scrubbed; ``{}`` when it is not one."""
        try:
            data = parse_json(content) if content else None
        except ValueError:
            return {}
        return {k: self.scrub(v) if isinstance(v, str) else v for k, v in error_fields(data).items()}

    def models(self, content: bytes) -> list[str]:
        """The ids of a ``GET /models`` answer."""
        what = "a model list (/models)"
        try:
            data = parse_json(content)
        except ValueError as exc:
            raise self._error(what, f"it is not JSON ({exc})") from None
        entries = data.get("data") if type(data) is dict else None
        if type(entries) is not list:
            raise self._error(what, f"expected {{'data': [...]}}, got {_kind(data)}; check the base URL")
        ids: list[str] = []
        for position, entry in enumerate(entries):
            model = entry.get("id") if type(entry) is dict else None
            if type(model) is not str:
                raise self._error(what, f"data[{position}] has no string 'id'")
            ids.append(self.scrub(model))
        return ids
