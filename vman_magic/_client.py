"""``Client``, ``AsyncClient``, ``complete`` and ``acomplete``: requests in, results out.

One call is: validate a :class:`CompletionRequest`, ``POST {base_url}/completions``,
feed the answer (an SSE stream, or one JSON body) through the decoder into the
caller's :class:`CompletionBuilder`, and turn every way it can fail into one
typed error from :mod:`vman_magic._errors` carrying the partial result.

The caller owns the builder, so whatever ends a call (an HTTP error, a broken
stream, Ctrl-C, ``task.cancel()``) the text that arrived stays in its hands.

Secrets: the key lives in a :class:`~vman_magic._config.Secret` and is revealed
only into an ``httpx.Headers`` (whose repr masks ``Authorization``). Server
messages are scrubbed of it before they become exception text, and httpx's
own exceptions are not chained into ours, so a verbose traceback cannot show
a frame that held the raw header.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from . import __version__
from ._config import Secret, Settings, resolve, warn_if_insecure
from ._errors import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    ConfigurationError,
    StreamError,
    VmanError,
    error_fields,
    status_error_class,
)
from ._models import Completion, CompletionBuilder, CompletionRequest, Prompt
from ._retry import RetryPolicy, parse_retry_after
from ._sse import SSEDecoder, loads

__all__ = ["AsyncClient", "Client", "acomplete", "complete"]

OnUpdate = Callable[[Completion], Any]
T = TypeVar("T")

USER_AGENT = f"vman-magic/{__version__}"
_log = logging.getLogger("vman_magic")
_CHAT_ONLY = re.compile(r"\bchat\b|not supported|unsupported", re.IGNORECASE)
_SNIPPET = 200
# httpx keeps only 20 idle connections by default: a batch with concurrency 32 then
# closes and reopens a dozen connections on every round (~3x slower on 1,000 short
# requests, see benchmarks/README.md). Keep every connection the pool may open.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


class _Attempt:
    """What one try has seen so far: retrying is allowed only before any body byte."""

    __slots__ = ("received", "sent_at")

    def __init__(self) -> None:
        self.received = False
        self.sent_at = time.perf_counter()


class _BaseClient:
    """Settings, headers and answer interpretation shared by the sync and async clients."""

    settings: Settings
    retry: RetryPolicy

    def _setup(self, settings: Settings, retry: RetryPolicy | None) -> None:
        warn_if_insecure(settings)
        self.settings = settings
        self.retry = retry or RetryPolicy(max_retries=settings.max_retries)
        self._host = urllib.parse.urlsplit(settings.base_url).hostname or settings.base_url
        headers = httpx.Headers({"User-Agent": USER_AGENT})
        if settings.api_key is not None:
            key = settings.api_key.reveal().strip()
            if not key.isascii() or not key.isprintable() or " " in key:
                raise ConfigurationError(
                    "the API key contains spaces or non-ASCII characters (a copy-paste accident?): set it again"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._headers = headers
        self._stream_headers = httpx.Headers({**headers, "Accept": "text/event-stream"})
        t = settings.timeout
        self._httpx_timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self.settings.base_url!r} model={self.settings.model!r}>"

    def _request(self, prompt: Prompt, model: str | None, stream: bool, params: dict[str, Any]) -> CompletionRequest:
        return CompletionRequest.build(self.settings.require_model(model), prompt, stream=stream, **params)

    def _deadline(self) -> float | None:
        total = self.settings.timeout.total
        return None if total is None else time.monotonic() + total

    def _scrub(self, text: str) -> str:
        """Server text with our key masked, in case a gateway echoes it back."""
        key = self.settings.api_key.reveal().strip() if self.settings.api_key is not None else ""
        return text.replace(key, "****") if len(key) >= 4 else text

    # -- interpreting answers ---------------------------------------------
    def _status_error(self, response: httpx.Response, content: bytes) -> VmanError:
        """An HTTP error status (or a redirect) as the most specific typed error."""
        status = response.status_code
        if status < 400:
            where = response.headers.get("location", "another URL")
            return APIResponseError(
                f"the server at {self._host} redirected ({status}) to {where}: use that address as the base URL",
                status_code=status,
            )
        try:
            info = error_fields(loads(content)) if content else {}
        except ValueError:
            info = {}
        message = info.get("message")
        if message:
            text = f"{status} from {self._host}: {self._scrub(str(message))}"
        elif _is_html(response, content):
            text = (
                f"the server at {self._host} answered {status} with an HTML page, not JSON: check the base URL / proxy"
            )
        else:
            snippet = self._scrub(content[:_SNIPPET].decode("utf-8", "replace").strip())
            text = f"the server at {self._host} answered {status} {response.reason_phrase}" + (
                f": {snippet}" if snippet else ""
            )
        text += _hint(status, str(message or ""))
        return status_error_class(status)(
            text,
            status_code=status,
            type=info.get("type"),
            code=info.get("code"),
            param=info.get("param"),
            request_id=response.headers.get("x-request-id"),
            retry_after=parse_retry_after(response.headers),
        )

    def _answer_kind(self, response: httpx.Response, stream: bool) -> str:
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

    def _take_body(self, content: bytes, builder: CompletionBuilder, on_update: OnUpdate | None) -> Completion:
        """A non-stream answer is one big chunk."""
        try:
            data = loads(content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            snippet = self._scrub(content[:_SNIPPET].decode("utf-8", "replace"))
            raise APIResponseError(f"the server at {self._host} answered with something that is not JSON: {snippet!r}")
        builder.add(data)
        if on_update is not None:
            on_update(builder.completion)
        return builder.finish()

    def _transport_error(self, exc: httpx.RequestError, attempt: _Attempt) -> VmanError:
        """An httpx failure as our error, with a message that says what to check."""
        t = self.settings.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return APITimeoutError(f"could not connect to {self._host} within {t.connect} s: is the server up?")
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(
                f"the server at {self._host} sent nothing for {t.read} s (read timeout); "
                "raise it with timeout=SECONDS or VMAN_TIMEOUT if the model is just slow"
            )
        if isinstance(exc, httpx.ConnectError):
            return APIConnectionError(
                f"could not connect to {self._host} ({exc}): check the base URL and that the server is running"
            )
        if attempt.received:
            return APIConnectionError(f"the connection to {self._host} broke before the answer was complete ({exc})")
        return APIConnectionError(f"the request to {self._host} failed: {type(exc).__name__}: {exc}")

    def _total_timeout(self) -> APITimeoutError:
        return APITimeoutError(
            f"the call took longer than the total timeout of {self.settings.timeout.total} s; "
            "pass timeout=Timeout(total=...) to allow more"
        )

    def _give_up(self, error: VmanError, builder: CompletionBuilder | None) -> None:
        """Attach the partial result to the error that ends a call."""
        if builder is not None and error.partial is None:
            error.partial = builder.fail(error)

    def _retry_delay(self, error: VmanError, attempt: _Attempt, tries: int, deadline: float | None) -> float | None:
        if attempt.received:
            return None  # part of the answer arrived: never retry behind the user's back
        delay = self.retry.delay_for(error, tries)
        if delay is None or (deadline is not None and time.monotonic() + delay > deadline):
            return None
        _log.info("vman-magic: %s; retry %d of %d in %.1f s", error, tries + 1, self.retry.max_retries, delay)
        return delay


def _is_html(response: httpx.Response, content: bytes) -> bool:
    return "html" in response.headers.get("content-type", "").lower() or content.lstrip()[:1] == b"<"


def _hint(status: int, message: str) -> str:
    if status == 401:
        return "; check the API key (VMAN_API_KEY, %vman key, or api_key=...)"
    if status in (400, 403, 404, 405, 422) and _CHAT_ONLY.search(message):
        return (
            "; note: this is the text Completions endpoint (/v1/completions), "
            "the model may be chat-only: pick a completions model (client.models() lists them)"
        )
    if status == 404:
        return "; check the model name (client.models() lists them) and the base URL"
    return ""


def _feed(decoder: SSEDecoder, data: bytes, builder: CompletionBuilder, on_update: OnUpdate | None) -> None:
    for chunk in decoder.feed(data):
        builder.add(chunk)
        if on_update is not None:
            on_update(builder.completion)


def _log_done(completion: Completion, url: str) -> Completion:
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


def _end_of_stream(decoder: SSEDecoder, builder: CompletionBuilder, on_update: OnUpdate | None) -> Completion:
    """Close a stream that ended without ``[DONE]``: fine only if every choice finished."""
    if not decoder.done:
        for chunk in decoder.close():
            builder.add(chunk)
            if on_update is not None:
                on_update(builder.completion)
    if decoder.done:
        return builder.finish()
    if builder.all_finished:
        completion = builder.finish()
        completion.notes.append("the server closed the stream without 'data: [DONE]', but every choice had finished")
        return completion
    raise StreamError(
        "the stream ended before the server said it was done (no 'data: [DONE]'); "
        "the text that arrived is in the error's .partial"
    )


class Client(_BaseClient):
    """A synchronous client holding one ``httpx.Client`` connection pool.

    Arguments left as ``None`` come from the environment, ``%vman`` and the
    other layers described in :mod:`vman_magic._config`. ``retry`` replaces
    the retry policy (the batch helpers pass one with a shared back-off hook).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        model: str | None = None,
        timeout: Any = None,
        max_retries: int | None = None,
        http_client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        settings = resolve(base_url=base_url, api_key=api_key, model=model, timeout=timeout, max_retries=max_retries)
        self._open(settings, http_client, retry)

    def _open(self, settings: Settings, http_client: httpx.Client | None, retry: RetryPolicy | None) -> None:
        self._setup(settings, retry)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self._httpx_timeout, limits=_LIMITS)

    @classmethod
    def _from_settings(cls, settings: Settings) -> Client:
        """A client for already-resolved settings (the pooled clients of ``complete``)."""
        client = cls.__new__(cls)
        client._open(settings, None, None)
        return client

    def close(self) -> None:
        """Close the connection pool (not an ``http_client`` that was passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def complete(
        self,
        prompt: Prompt,
        *,
        model: str | None = None,
        stream: bool = True,
        on_update: OnUpdate | None = None,
        **params: Any,
    ) -> Completion:
        """Complete ``prompt``; ``params`` are the API's (``max_tokens``, ``temperature``, ...)."""
        request = self._request(prompt, model, stream, params)
        return self.run(request, CompletionBuilder(request), on_update=on_update)

    def run(
        self, request: CompletionRequest, builder: CompletionBuilder, *, on_update: OnUpdate | None = None
    ) -> Completion:
        """Send ``request`` and fold the answer into ``builder``; the primitive behind everything."""
        body = request.to_body()
        headers = self._stream_headers if request.stream else self._headers
        url = self.settings.base_url + "/completions"
        deadline = self._deadline()

        def once(attempt: _Attempt) -> Completion:
            with self._http.stream("POST", url, json=body, headers=headers, timeout=self._httpx_timeout) as response:
                _log.debug(
                    "POST %s -> %d after %.3f s", url, response.status_code, time.perf_counter() - attempt.sent_at
                )
                if not 200 <= response.status_code < 300:
                    raise self._status_error(response, response.read())
                if self._answer_kind(response, request.stream) == "json":
                    return self._take_body(response.read(), builder, on_update)
                decoder = SSEDecoder()
                for data in response.iter_bytes():
                    attempt.received = True
                    _feed(decoder, data, builder, on_update)
                    if decoder.done:
                        break
                    if deadline is not None and time.monotonic() > deadline:
                        raise self._total_timeout()
                return _end_of_stream(decoder, builder, on_update)

        return _log_done(self._with_retries(once, builder, deadline), url)

    def models(self) -> list[str]:
        """The model ids the server offers (``GET {base_url}/models``)."""
        url = self.settings.base_url + "/models"

        def once(attempt: _Attempt) -> list[str]:
            response = self._http.get(url, headers=self._headers, timeout=self._httpx_timeout)
            _log.debug("GET %s -> %d", url, response.status_code)
            if not 200 <= response.status_code < 300:
                raise self._status_error(response, response.content)
            return _model_ids(response.content, self._host)

        return self._with_retries(once, None, self._deadline())

    def _with_retries(
        self, once: Callable[[_Attempt], T], builder: CompletionBuilder | None, deadline: float | None
    ) -> T:
        tries = 0
        try:
            while True:
                attempt = _Attempt()
                try:
                    return once(attempt)
                except httpx.RequestError as exc:
                    error = self._transport_error(exc, attempt)  # raised below, unchained from httpx
                except VmanError as exc:
                    error = exc
                delay = self._retry_delay(error, attempt, tries, deadline)
                if delay is None:
                    self._give_up(error, builder)
                    raise error
                self.retry.sleep(delay)
                tries += 1
        except VmanError:
            raise
        except BaseException as exc:  # Ctrl-C, or a bug in on_update: keep the partial, re-raise
            if builder is not None:
                builder.fail(exc)
            raise


class AsyncClient(_BaseClient):
    """The asyncio twin of :class:`Client`; ``run()`` is cancellable with ``task.cancel()``.

    On cancellation the response is closed, the builder's result is flagged
    incomplete with the ``CancelledError`` as its error, and the cancellation
    propagates as asyncio expects.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        model: str | None = None,
        timeout: Any = None,
        max_retries: int | None = None,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        settings = resolve(base_url=base_url, api_key=api_key, model=model, timeout=timeout, max_retries=max_retries)
        self._open(settings, http_client, retry)

    def _open(self, settings: Settings, http_client: httpx.AsyncClient | None, retry: RetryPolicy | None) -> None:
        self._setup(settings, retry)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self._httpx_timeout, limits=_LIMITS)

    @classmethod
    def _from_settings(cls, settings: Settings) -> AsyncClient:
        """A client for already-resolved settings (the pooled clients of ``complete``)."""
        client = cls.__new__(cls)
        client._open(settings, None, None)
        return client

    async def aclose(self) -> None:
        """Close the connection pool (not an ``http_client`` that was passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def complete(
        self,
        prompt: Prompt,
        *,
        model: str | None = None,
        stream: bool = True,
        on_update: OnUpdate | None = None,
        **params: Any,
    ) -> Completion:
        """Complete ``prompt``; ``params`` are the API's (``max_tokens``, ``temperature``, ...)."""
        request = self._request(prompt, model, stream, params)
        return await self.run(request, CompletionBuilder(request), on_update=on_update)

    async def run(
        self, request: CompletionRequest, builder: CompletionBuilder, *, on_update: OnUpdate | None = None
    ) -> Completion:
        """Send ``request`` and fold the answer into ``builder``; see :meth:`Client.run`."""
        body = request.to_body()
        headers = self._stream_headers if request.stream else self._headers
        url = self.settings.base_url + "/completions"
        deadline = self._deadline()

        async def once(attempt: _Attempt) -> Completion:
            async with self._http.stream(
                "POST", url, json=body, headers=headers, timeout=self._httpx_timeout
            ) as response:
                _log.debug(
                    "POST %s -> %d after %.3f s", url, response.status_code, time.perf_counter() - attempt.sent_at
                )
                if not 200 <= response.status_code < 300:
                    raise self._status_error(response, await response.aread())
                if self._answer_kind(response, request.stream) == "json":
                    return self._take_body(await response.aread(), builder, on_update)
                decoder = SSEDecoder()
                async for data in response.aiter_bytes():
                    attempt.received = True
                    _feed(decoder, data, builder, on_update)
                    if decoder.done:
                        break
                    if deadline is not None and time.monotonic() > deadline:
                        raise self._total_timeout()
                return _end_of_stream(decoder, builder, on_update)

        return _log_done(await self._with_retries(once, builder, deadline), url)

    async def models(self) -> list[str]:
        """The model ids the server offers (``GET {base_url}/models``)."""
        url = self.settings.base_url + "/models"

        async def once(attempt: _Attempt) -> list[str]:
            response = await self._http.get(url, headers=self._headers, timeout=self._httpx_timeout)
            _log.debug("GET %s -> %d", url, response.status_code)
            if not 200 <= response.status_code < 300:
                raise self._status_error(response, response.content)
            return _model_ids(response.content, self._host)

        return await self._with_retries(once, None, self._deadline())

    async def _with_retries(
        self, once: Callable[[_Attempt], Awaitable[T]], builder: CompletionBuilder | None, deadline: float | None
    ) -> T:
        tries = 0
        try:
            while True:
                attempt = _Attempt()
                try:
                    return await once(attempt)
                except httpx.RequestError as exc:
                    error = self._transport_error(exc, attempt)  # raised below, unchained from httpx
                except VmanError as exc:
                    error = exc
                delay = self._retry_delay(error, attempt, tries, deadline)
                if delay is None:
                    self._give_up(error, builder)
                    raise error
                await self.retry.async_sleep(delay)
                tries += 1
        except VmanError:
            raise
        except BaseException as exc:  # CancelledError, KeyboardInterrupt, a bug in on_update
            if builder is not None:
                builder.fail(exc)
            raise


def _model_ids(content: bytes, host: str) -> list[str]:
    try:
        data = loads(content)
        return [str(m["id"]) for m in data["data"]]
    except (ValueError, KeyError, TypeError):
        raise APIResponseError(
            f"the server at {host} answered /models with something other than a model list; check the base URL"
        ) from None


# --------------------------------------------------------------------------- module-level calls

_lock = threading.Lock()
_clients: dict[tuple[Any, ...], Client] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def _mask(api_key: str | Secret | None) -> Secret | None:
    return Secret(api_key) if isinstance(api_key, str) and api_key else api_key or None


def _pool_key(settings: Settings) -> tuple[Any, ...]:
    return (settings.base_url, settings.api_key, settings.timeout, settings.max_retries)


def complete(
    prompt: Prompt,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | Secret | None = None,
    stream: bool = True,
    timeout: Any = None,
    max_retries: int | None = None,
    on_update: OnUpdate | None = None,
    **params: Any,
) -> Completion:
    """Complete ``prompt`` with the configured server; clients are pooled per server and key.

    >>> c = complete("Once upon a time", max_tokens=20)  # doctest: +SKIP
    >>> print(c.text)                                     # doctest: +SKIP
    """
    api_key = _mask(api_key)  # a verbose traceback shows this frame's locals
    settings = resolve(base_url=base_url, api_key=api_key, model=model, timeout=timeout, max_retries=max_retries)
    key = _pool_key(settings)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = Client._from_settings(settings)
    return client.complete(prompt, model=settings.require_model(), stream=stream, on_update=on_update, **params)


async def acomplete(
    prompt: Prompt,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | Secret | None = None,
    stream: bool = True,
    timeout: Any = None,
    max_retries: int | None = None,
    on_update: OnUpdate | None = None,
    **params: Any,
) -> Completion:
    """The async twin of :func:`complete`; clients are pooled per event loop, server and key."""
    api_key = _mask(api_key)  # a verbose traceback shows this frame's locals
    settings = resolve(base_url=base_url, api_key=api_key, model=model, timeout=timeout, max_retries=max_retries)
    key = _pool_key(settings)
    loop = asyncio.get_running_loop()
    with _lock:
        clients = _async_clients.setdefault(loop, {})
        client = clients.get(key)
        if client is None:
            client = clients[key] = AsyncClient._from_settings(settings)
    return await client.complete(prompt, model=settings.require_model(), stream=stream, on_update=on_update, **params)
