"""Turning what a server answered into results or typed errors.

:mod:`vman_magic.client.client` sends requests and runs the retry loop; this module
interprets what came back, whatever it is: an HTTP error status with an
OpenAI error body or a proxy's HTML page, a 2xx that is a web page instead of
the API, one JSON body, an event stream that ends without ``[DONE]``, or an
httpx transport failure. Each becomes one typed error from
:mod:`vman_magic.core.errors` whose message is one line that says what to change.

Server text can echo the request, so every piece of it goes through the
client's :class:`~vman_magic.core.scrub.Scrubber` before it becomes exception
text, and every JSON answer is parsed and checked by :mod:`.shape` before the
builder reads it.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx

from ..core.config import Settings
from ..core.errors import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    StreamError,
    VmanError,
    status_error_class,
)
from ..core.models import Completion, CompletionBuilder
from ..core.params import PARAMS_BY_NAME
from ..core.scrub import Scrubber
from .retry import parse_retry_after
from .shape import AnswerShape, parse_json
from .sse import SSEDecoder

__all__ = ["Answers", "Attempt", "end_of_stream", "feed", "join", "log_done", "model_ids", "one_line"]

OnUpdate = Callable[[Completion], Any]

_log = logging.getLogger("vman_magic")
_CHAT_ONLY = re.compile(r"\bchat\b|not supported|unsupported", re.IGNORECASE)
_SNIPPET = 200
_OUR_FIELDS = frozenset({*PARAMS_BY_NAME, "model", "prompt", "stream"})  # what a "change PARAM" hint may name


class Attempt:
    """What one try has seen so far: retrying is allowed only before any body byte."""

    __slots__ = ("received", "sent_at")

    def __init__(self) -> None:
        self.received = False
        self.sent_at = time.perf_counter()


class Answers:
    """Reads answers for one client's settings (its host names the server in messages)."""

    def __init__(self, settings: Settings, scrubber: Scrubber | None = None) -> None:
        self.settings = settings
        parts = urllib.parse.urlsplit(settings.url)
        self.host = parts.hostname or settings.url
        # host:port, for "could not connect": on one machine the port is what tells two servers apart
        self.address = parts.netloc.rpartition("@")[2] or self.host
        self.scrub = scrubber or Scrubber.none()
        self.shape = AnswerShape(self.host, self.scrub)

    def __repr__(self) -> str:
        return f"<Answers from {getattr(self, 'host', '?')}>"

    def status_error(self, response: httpx.Response, content: bytes) -> VmanError:
        """An HTTP error status (or a redirect) as the most specific typed error."""
        status = response.status_code
        if status < 400:
            where = one_line(self.scrub(response.headers.get("location", "another URL")))
            return APIResponseError(
                f"the server at {self.host} redirected ({status}) to {where}: use that address as the base URL",
                status_code=status,
            )
        info = self.shape.error_fields(content)
        message = info.get("message")
        body = self.scrub(content.decode("utf-8", "replace"))
        if message:
            text = f"{status} from {self.host}: {one_line(self.scrub(str(message)))}"
        elif _is_html(response, content):
            return status_error_class(status)(
                f"the server at {self.host} answered {status} with an HTML page, not JSON: "
                + (
                    "a proxy or gateway failed; try again in a moment, then check the base URL"
                    if status >= 500
                    else "check the base URL (does it end in /v1?) and any proxy in between"
                ),
                status_code=status,
                request_id=response.headers.get("x-request-id"),
                retry_after=parse_retry_after(response.headers),
                body=body,
            )
        else:
            snippet = one_line(self.scrub(content[: _SNIPPET * 4].decode("utf-8", "replace")))
            text = f"the server at {self.host} answered {status} {response.reason_phrase}" + (
                f": {snippet}" if snippet else ""
            )
        text = join(text, _hint(status, str(message or ""), info.get("param"), self.settings.is_demo))
        return status_error_class(status)(
            text,
            status_code=status,
            type=info.get("type"),
            code=info.get("code"),
            param=info.get("param"),
            request_id=response.headers.get("x-request-id"),
            retry_after=parse_retry_after(response.headers),
            body=body,
            server_message=self.scrub(str(message)) if message else None,
        )

    def kind(self, response: httpx.Response, stream: bool) -> str:
        """``"sse"`` or ``"json"``: how to read a 2xx answer (a JSON answer to a stream request degrades)."""
        ctype = response.headers.get("content-type", "").lower()
        if "text/event-stream" in ctype:
            return "sse"
        if "html" in ctype:
            raise APIResponseError(
                f"the base URL {self.settings.base_url} points at a web page (HTML), not the Completions API: "
                "is /v1 missing, or is it the wrong host?"
            )
        if "json" in ctype:
            return "json"
        return "sse" if stream else "json"

    def take_body(self, content: bytes, builder: CompletionBuilder, on_update: OnUpdate | None) -> Completion:
        """A non-stream answer is one big chunk."""
        try:
            data = parse_json(content)
        except ValueError as exc:
            snippet = one_line(self.scrub(content[: _SNIPPET * 4].decode("utf-8", "replace")))
            raise APIResponseError(
                f"the server at {self.host} answered with something that is not JSON ({exc}): {snippet!r}"
            ) from None
        builder.add(self.shape.chunk(data, body=True))
        if on_update is not None:
            on_update(builder.completion)
        return builder.finish()

    def transport_error(self, exc: httpx.RequestError, attempt: Attempt) -> VmanError:
        """An httpx failure as our error, with a message that says what to check."""
        t = self.settings.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return APITimeoutError(f"could not connect to {self.address} within {t.connect} s: is the server up?")
        if isinstance(exc, httpx.WriteTimeout):
            return APITimeoutError(
                f"could not send the request to {self.host} within {t.read} s (write timeout): the server stopped "
                "reading it; check the server, or send a shorter prompt"
            )
        if isinstance(exc, httpx.PoolTimeout):
            return APITimeoutError(
                f"no free connection to {self.host} within {t.connect} s (pool timeout): too many calls at once"
            )
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(
                f"the server at {self.host} sent nothing for {t.read} s (read timeout); "
                "if the model is just slow, raise it: --timeout S in %%complete, timeout=S, or VMAN_TIMEOUT"
            )
        if isinstance(exc, httpx.ConnectError):
            return APIConnectionError(
                f"could not connect to {self.address} ({self._text(exc)}): check the base URL and that the server "
                "is running"
            )
        if attempt.received:
            return APIConnectionError(
                f"the connection to {self.host} broke before the answer was complete ({self._text(exc)})"
            )
        return APIConnectionError(f"the request to {self.host} failed: {type(exc).__name__}: {self._text(exc)}")

    def _text(self, exc: BaseException) -> str:
        """An httpx error's text (it may quote what the server sent), scrubbed and on one line."""
        return one_line(self.scrub(str(exc)))

    def no_content_timeout(self) -> APITimeoutError:
        return APITimeoutError(
            f"the server at {self.host} sent no text for {self.settings.timeout.read} s, only keep-alive "
            "comments (read timeout); if the model is just slow, raise it: --timeout S in %%complete, "
            "timeout=S, or VMAN_TIMEOUT"
        )

    def total_timeout(self) -> APITimeoutError:
        return APITimeoutError(
            f"the call took longer than the total timeout of {self.settings.timeout.total} s; "
            "pass timeout=Timeout(total=...) to allow more"
        )


def _is_html(response: httpx.Response, content: bytes) -> bool:
    return "html" in response.headers.get("content-type", "").lower() or content.lstrip()[:1] == b"<"


def one_line(text: str, limit: int = _SNIPPET) -> str:
    """Server text fit for a one-line message: whitespace runs collapsed, cut on a word boundary with "...".

    The whole text stays on the exception (``.server_message``, ``.body``).
    """
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 3]
    space = cut.rfind(" ")
    if space > limit // 2:  # a very long "word" (a URL, a hash) is cut where it must be
        cut = cut[:space]
    return cut.rstrip(" .,;:") + "..."


def join(message: str, hint: str) -> str:
    """``message; hint`` without doubled punctuation when the server's message ends in a full stop."""
    return f"{message.rstrip().rstrip('.;:,')}; {hint}" if hint else message


def _hint(status: int, message: str, param: str | None, is_demo: bool) -> str:
    """What the user should change, for an HTTP error status."""
    if status == 401:
        return "check the API key (VMAN_API_KEY, %vman key, or api_key=...)"
    if status in (400, 403, 404, 405, 422) and _CHAT_ONLY.search(message):
        return (
            "note: this is the text Completions endpoint (/v1/completions), "
            "the model may be chat-only: pick a completions model (%vman models or client.models() lists them)"
        )
    if status == 404 and is_demo:
        # the demo's own message already names the model asked for and the one it serves
        return "no VMAN_BASE_URL is set, so this is the offline demo: drop the model setting, or set VMAN_BASE_URL"
    if status == 404:
        return "check the model name (%vman models or client.models() lists them) and the base URL"
    if status in (400, 422):
        if param and param in message:
            return ""  # the server's message already says what to change ("lower max_tokens or ...")
        # only a parameter we send can be named: "None" (LiteLLM) or "messages" (llama.cpp, for a prompt
        # longer than the context) would tell the user to change something that is not theirs
        return f"change {param}" if param in _OUR_FIELDS else "change what the server's message names"
    if status == 403:
        return "this key may not use this model or endpoint: pick another model or ask for access"
    if status == 429:
        return "wait a moment and run again, or send fewer requests at once"
    if status >= 500:
        return "the server or a proxy in front of it failed: try again in a moment"
    return ""


def feed(
    decoder: SSEDecoder, data: bytes, builder: CompletionBuilder, on_update: OnUpdate | None, shape: AnswerShape
) -> int:
    """Fold the events completed by one network chunk into ``builder``; return how many there were.

    Each event is checked by ``shape`` first, so the builder only ever sees
    chunks of the right shape (a wrong one raises ``APIResponseError``). An
    event that is not JSON raises after the good events before it are folded in.
    """
    chunks = decoder.feed(data)
    for chunk in chunks:
        builder.add(shape.chunk(chunk))
        if on_update is not None:
            on_update(builder.completion)
    decoder.raise_pending()  # good events before a bad one are in the result by now
    return len(chunks)


def log_done(completion: Completion, url: str) -> Completion:
    """One DEBUG record per finished completion (URL and timings; never headers)."""
    if _log.isEnabledFor(logging.DEBUG):
        ttft = completion.time_to_first_token
        _log.debug(
            "completion from %s: %d choice(s), first token %s, total %.3f s",
            url,
            len(completion.choices),
            "n/a" if ttft is None else f"{ttft:.3f} s",
            completion.elapsed or 0.0,
        )
    return completion


def end_of_stream(
    decoder: SSEDecoder, builder: CompletionBuilder, on_update: OnUpdate | None, shape: AnswerShape
) -> Completion:
    """Close a stream that ended without ``[DONE]``: fine only if every choice finished."""
    if not decoder.done:
        for chunk in decoder.close():
            builder.add(shape.chunk(chunk))
            if on_update is not None:
                on_update(builder.completion)
    if decoder.done:
        return builder.finish()
    if builder.all_finished:
        completion = builder.finish()
        completion.notes.append("the server closed the stream without 'data: [DONE]', but every choice had finished")
        return completion
    if builder.completion.id is None and not builder.completion.choices:
        # nothing at all arrived: a server that failed before its first event (llama.cpp with a prompt longer
        # than its context) sends its reason only in a non-streamed answer
        raise StreamError(
            "the stream ended before its first event: the server failed without saying why; "
            "run with --no-stream (stream=False) to see the server's own message"
        )
    raise StreamError(
        "the stream ended before the server said it was done (no 'data: [DONE]'): the server or a proxy "
        "cut it short; run again"
    )


def model_ids(content: bytes, shape: AnswerShape) -> list[str]:
    """The ids of a ``GET /models`` answer (checked by ``shape``)."""
    return shape.models(content)
