"""``Client``, ``AsyncClient``, ``complete`` and ``acomplete``: requests in, results out.

One call is: validate a :class:`CompletionRequest`, ``POST {base_url}/completions``,
feed the answer (an SSE stream, or one JSON body) through the decoder into the
caller's :class:`CompletionBuilder`, and turn every way it can fail into one
typed error from :mod:`vman_magic.core.errors` carrying the partial result.

The caller owns the builder, so whatever ends a call (an HTTP error, a broken
stream, Ctrl-C, ``task.cancel()``) the text that arrived stays in its hands.

Secrets: the key lives in a :class:`~vman_magic.core.config.Secret` and is revealed
only into an ``httpx.Headers`` (whose repr masks ``Authorization``). Server
messages are scrubbed of it before they become exception text, and httpx's
own exceptions are not chained into ours, so a verbose traceback cannot show
a frame that held the raw header.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

import httpx

from .._version import __version__
from ..core.config import Secret, Settings, as_secret, ensure_server, resolve, warn_if_insecure
from ..core.errors import ConfigurationError, VmanError
from ..core.models import Completion, CompletionBuilder, CompletionRequest, Prompt
from ..core.scrub import Scrubber, scrub_error
from ..logbook import session as _history
from .answers import Answers, Attempt, end_of_stream, feed, log_done, model_ids
from .pool import ClientCache
from .retry import RetryPolicy
from .sse import SSEDecoder

__all__ = ["AsyncClient", "Client", "acomplete", "complete"]

OnUpdate = Callable[[Completion], Any]
T = TypeVar("T")

USER_AGENT = f"vman-magic/{__version__}"
_log = logging.getLogger("vman_magic")
# httpx keeps only 20 idle connections by default: a batch with concurrency 32 then
# closes and reopens a dozen connections on every round (~3x slower on 1,000 short
# requests, see benchmarks/README.md). Keep every connection the pool may open.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


class _BaseClient:
    """Settings, headers and answer interpretation shared by the sync and async clients."""

    settings: Settings
    retry: RetryPolicy

    def _setup(self, settings: Settings, retry: RetryPolicy | None) -> None:
        warn_if_insecure(settings)
        self.settings = settings
        self.retry = retry or RetryPolicy(max_retries=settings.max_retries)
        headers = httpx.Headers({"User-Agent": USER_AGENT})
        self._scrubber = Scrubber.none()
        if settings.api_key is not None:
            if not _usable_key(settings.api_key):
                raise ConfigurationError(
                    "the API key contains spaces or non-ASCII characters (a copy-paste accident?): set it again"
                )
            self._scrubber = Scrubber([settings.api_key.reveal()])
            headers["Authorization"] = "Bearer " + settings.api_key.reveal().strip()
        self._answers = Answers(settings, self._scrubber)
        self._headers = headers
        self._stream_headers = httpx.Headers({**headers, "Accept": "text/event-stream"})
        t = settings.timeout
        self._httpx_timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self.settings.url!r} model={self.settings.model!r}>"

    def _request(self, prompt: Prompt, model: str | None, stream: bool, params: dict[str, Any]) -> CompletionRequest:
        return CompletionRequest.build(self.settings.require_model(model), prompt, stream=stream, **params)

    def _deadline(self) -> float | None:
        total = self.settings.timeout.total
        return None if total is None else time.monotonic() + total

    def _timeout_until(self, deadline: float | None) -> httpx.Timeout:
        """httpx's per-phase timeouts, each capped by the time left before ``deadline``.

        httpx has no total timeout, and the stream loop can only check the
        deadline between chunks; capping every phase means a server that goes
        silent cannot hold a call past the deadline, even with ``read=None``.
        """
        t = self._httpx_timeout
        if deadline is None:
            return t
        left = max(deadline - time.monotonic(), 0.001)
        return httpx.Timeout(
            connect=_capped(t.connect, left), read=_capped(t.read, left), write=_capped(t.write, left),
            pool=_capped(t.pool, left),
        )  # fmt: skip

    def _transport_error(self, exc: httpx.RequestError, attempt: Attempt, deadline: float | None) -> VmanError:
        """An httpx failure as our error; a timeout at the deadline is the total timeout, said so."""
        if isinstance(exc, httpx.TimeoutException) and deadline is not None and time.monotonic() >= deadline - 0.01:
            return self._answers.total_timeout()
        return self._answers.transport_error(exc, attempt)

    def _caught(self, error: VmanError) -> VmanError:
        """Every error of a call passes here first: server text in it is scrubbed of the key."""
        scrub_error(error, self._scrubber)
        return error

    def _give_up(self, error: VmanError, builder: CompletionBuilder | None) -> None:
        """Attach the partial result to the error that ends a call."""
        if builder is not None and error.partial is None:
            error.partial = builder.fail(error)

    def _retry_delay(self, error: VmanError, attempt: Attempt, tries: int, deadline: float | None) -> float | None:
        if attempt.received:
            return None  # part of the answer arrived: never retry behind the user's back
        if self.retry.is_retryable(error) and self.retry.too_long(error):
            _amend(error, _asked_too_long(getattr(error, "retry_after", 0.0), self.retry.retry_after_cap))
            return None
        delay = self.retry.delay_for(error, tries)
        if delay is None or (deadline is not None and time.monotonic() + delay > deadline):
            return None
        level = logging.WARNING if self.retry.announce and delay >= 1.0 else logging.INFO
        _log.log(level, "vman-magic: %s; waiting %.0f s, then retry %d of %d", _first(error), delay, tries + 1,
                 self.retry.max_retries)  # fmt: skip
        return delay


class Client(_BaseClient):
    """A synchronous client holding one ``httpx.Client`` connection pool.

    Arguments left as ``None`` come from the environment, ``%vman`` and the
    other layers described in :mod:`vman_magic.core.config`. ``retry`` replaces
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
        settings: Settings | None = None,
        http_client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
        given = {
            "base_url": base_url,
            "api_key": api_key,
            "model": model,
            "timeout": timeout,
            "max_retries": max_retries,
        }
        self._open(settings_at_the_door(settings, given), http_client, retry)

    def _open(self, settings: Settings, http_client: httpx.Client | None, retry: RetryPolicy | None) -> None:
        self._setup(settings, retry)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self._httpx_timeout, limits=_LIMITS)
        if self._owns_http:
            # streams keep their connection alive for the next call, so a client dropped without
            # close() (``Client(...).complete(...)``, as Copy-as-code writes it) closes its pool when collected
            weakref.finalize(self, self._http.close)

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
        cache: bool | None = None,
        **params: Any,
    ) -> Completion:
        """Complete ``prompt``; ``params`` are the API's (``max_tokens``, ``temperature``, ...).

        ``cache=True`` answers from the local history when it holds a complete
        answer to the same request (``None``: as ``%vman cache`` says, default off).
        """
        request = self._request(prompt, model, stream, params)
        return self.run(request, CompletionBuilder(request), on_update=on_update, cache=cache)

    def run(
        self,
        request: CompletionRequest,
        builder: CompletionBuilder,
        *,
        on_update: OnUpdate | None = None,
        cache: bool | None = None,
        record: bool = True,
    ) -> Completion:
        """Send ``request`` and fold the answer into ``builder``; the primitive behind everything.

        Every result is recorded in the local history however it ends (the
        caller's ``record=False`` records it itself, as batches do for grouped
        prompts). With ``cache`` on, a complete answer from the history is put
        into ``builder`` instead and nothing is sent.
        """
        base_url = self.settings.url
        if _history.answer_from_history(request, base_url, cache, builder.completion):
            if on_update is not None:
                on_update(builder.completion)
            return builder.completion
        try:
            return self._send(request, builder, on_update)
        finally:
            if record:
                _history.record(builder.completion, base_url)

    def _send(self, request: CompletionRequest, builder: CompletionBuilder, on_update: OnUpdate | None) -> Completion:
        body = request.to_body()
        headers = self._stream_headers if request.stream else self._headers
        url = self.settings.url + "/completions"
        deadline = self._deadline()

        def once(attempt: Attempt) -> Completion:
            with self._http.stream(
                "POST", url, json=body, headers=headers, timeout=self._timeout_until(deadline)
            ) as response:
                _log.debug(
                    "POST %s -> %d after %.3f s", url, response.status_code, time.perf_counter() - attempt.sent_at
                )
                if not 200 <= response.status_code < 300:
                    raise self._answers.status_error(response, response.read())
                if self._answers.kind(response, request.stream) == "json":
                    return self._answers.take_body(response.read(), builder, on_update)
                decoder = SSEDecoder()
                shape = self._answers.shape
                idle = _Idle(self.settings.timeout.read)
                chunks = response.iter_bytes()
                for data in chunks:
                    attempt.received = True
                    if feed(decoder, data, builder, on_update, shape):
                        idle.content()
                    elif idle.expired():
                        raise self._answers.no_content_timeout()
                    if decoder.done:
                        _drain(chunks)
                        break
                    if deadline is not None and time.monotonic() > deadline:
                        raise self._answers.total_timeout()
                return end_of_stream(decoder, builder, on_update, shape)

        return log_done(self._with_retries(once, builder, deadline), url)

    def models(self) -> list[str]:
        """The model ids the server offers (``GET {base_url}/models``)."""
        url = self.settings.url + "/models"

        def once(attempt: Attempt) -> list[str]:
            response = self._http.get(url, headers=self._headers, timeout=self._httpx_timeout)
            _log.debug("GET %s -> %d", url, response.status_code)
            if not 200 <= response.status_code < 300:
                raise self._answers.status_error(response, response.content)
            return model_ids(response.content, self._answers.shape)

        return self._with_retries(once, None, self._deadline())

    def _with_retries(
        self, once: Callable[[Attempt], T], builder: CompletionBuilder | None, deadline: float | None
    ) -> T:
        tries = 0
        try:
            while True:
                attempt = Attempt()
                try:
                    return once(attempt)
                except httpx.RequestError as exc:
                    error = self._transport_error(exc, attempt, deadline)  # raised below, unchained from httpx
                except VmanError as exc:
                    error = exc
                error = self._caught(error)
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


def settings_at_the_door(settings: Settings | None, given: dict[str, Any]) -> Settings:
    """The one :class:`Settings` a public door works with: ``settings=`` as given, or resolved from ``given``.

    Either is pointed at a server before use: when no layer names one, the
    default server (the offline demo) starts here, and only here.
    """
    if settings is None:
        return ensure_server(resolve(**given))
    both = [name for name, value in given.items() if value is not None]
    if both:
        raise ConfigurationError(
            f"pass either settings= or {', '.join(n + '=' for n in both)} not both: the settings already hold them"
        )
    if not isinstance(settings, Settings):
        raise ConfigurationError(f"settings must be vman_magic.Settings, got {type(settings).__name__}")
    return ensure_server(settings)


def _asked_too_long(seconds: float, cap: float) -> str:
    asked = "forever" if seconds == float("inf") else f"{seconds:,.0f} s"
    return (
        f"the server asks to wait {asked} before trying again, longer than the {cap:.0f} s vman-magic waits "
        "by itself: run again after that, or ask the server's owner about the limit"
    )


def _amend(error: VmanError, hint: str) -> None:
    """Replace the generic hint of an error's message with a precise one."""
    message = error.message.split("; wait a moment", 1)[0]
    error.message = f"{message.rstrip('.;')}; {hint}"
    error.args = (error.message, *error.args[1:])


def _first(error: VmanError) -> str:
    """The error's message up to its hint, for a log line."""
    return str(error).split("; ", 1)[0]


def _usable_key(key: Secret) -> bool:
    """Whether a key can go into an HTTP header as typed (no spaces, ASCII, printable)."""
    value = key.reveal().strip()
    return value.isascii() and value.isprintable() and " " not in value


class _Idle:
    """The time since the last *content* event of a stream; keep-alive comments do not reset it.

    httpx's read timeout only bounds the silence between two bytes, so a
    server that sends ``: ping`` every few seconds and never a token would
    hold a call until the total timeout; this bounds it by the read timeout.
    """

    __slots__ = ("_last", "_limit")

    def __init__(self, limit: float | None) -> None:
        self._limit = limit
        self._last = time.monotonic()

    def content(self) -> None:
        self._last = time.monotonic()

    def expired(self) -> bool:
        return self._limit is not None and time.monotonic() - self._last > self._limit


#: After ``[DONE]`` the rest of the body (normally just the end of the chunked encoding) is read,
#: so the connection goes back to the pool instead of being closed, as the openai SDK does; a
#: server that keeps sending after ``[DONE]`` loses its connection after this many bytes instead.
_DRAIN_LIMIT = 64 * 1024


def _drain(chunks: Iterator[bytes]) -> None:
    """Read the (normally empty) rest of a finished stream, so httpx can keep the connection alive."""
    seen = 0
    for data in chunks:
        seen += len(data)
        if seen > _DRAIN_LIMIT:
            return


async def _adrain(chunks: AsyncIterator[bytes]) -> None:
    """The async twin of :func:`_drain`."""
    seen = 0
    async for data in chunks:
        seen += len(data)
        if seen > _DRAIN_LIMIT:
            return


def _capped(seconds: float | None, left: float) -> float:
    return left if seconds is None else min(seconds, left)


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
        settings: Settings | None = None,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
        given = {
            "base_url": base_url,
            "api_key": api_key,
            "model": model,
            "timeout": timeout,
            "max_retries": max_retries,
        }
        self._open(settings_at_the_door(settings, given), http_client, retry)

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
        cache: bool | None = None,
        **params: Any,
    ) -> Completion:
        """Complete ``prompt``; ``params`` are the API's (``max_tokens``, ``temperature``, ...).

        ``cache=True`` answers from the local history when it holds a complete
        answer to the same request (``None``: as ``%vman cache`` says, default off).
        """
        request = self._request(prompt, model, stream, params)
        return await self.run(request, CompletionBuilder(request), on_update=on_update, cache=cache)

    async def run(
        self,
        request: CompletionRequest,
        builder: CompletionBuilder,
        *,
        on_update: OnUpdate | None = None,
        cache: bool | None = None,
        record: bool = True,
    ) -> Completion:
        """Send ``request`` and fold the answer into ``builder``; see :meth:`Client.run`."""
        base_url = self.settings.url
        if _history.answer_from_history(request, base_url, cache, builder.completion):
            if on_update is not None:
                on_update(builder.completion)
            return builder.completion
        try:
            return await self._send(request, builder, on_update)
        finally:
            if record:
                _history.record(builder.completion, base_url)

    async def _send(
        self, request: CompletionRequest, builder: CompletionBuilder, on_update: OnUpdate | None
    ) -> Completion:
        body = request.to_body()
        headers = self._stream_headers if request.stream else self._headers
        url = self.settings.url + "/completions"
        deadline = self._deadline()

        async def once(attempt: Attempt) -> Completion:
            async with self._http.stream(
                "POST", url, json=body, headers=headers, timeout=self._timeout_until(deadline)
            ) as response:
                _log.debug(
                    "POST %s -> %d after %.3f s", url, response.status_code, time.perf_counter() - attempt.sent_at
                )
                if not 200 <= response.status_code < 300:
                    raise self._answers.status_error(response, await response.aread())
                if self._answers.kind(response, request.stream) == "json":
                    return self._answers.take_body(await response.aread(), builder, on_update)
                decoder = SSEDecoder()
                # aclosing: leaving the loop early ([DONE], an error, a cancel) must close
                # httpx's byte generator now, on this task; left to the garbage collector it
                # is finalised after the loop stops ("Task was destroyed but it is pending").
                shape = self._answers.shape
                idle = _Idle(self.settings.timeout.read)
                async with contextlib.aclosing(cast("AsyncGenerator[bytes, None]", response.aiter_bytes())) as chunks:
                    async for data in chunks:
                        attempt.received = True
                        if feed(decoder, data, builder, on_update, shape):
                            idle.content()
                        elif idle.expired():
                            raise self._answers.no_content_timeout()
                        if decoder.done:
                            await _adrain(chunks)
                            break
                        if deadline is not None and time.monotonic() > deadline:
                            raise self._answers.total_timeout()
                return end_of_stream(decoder, builder, on_update, shape)

        return log_done(await self._with_retries(once, builder, deadline), url)

    async def models(self) -> list[str]:
        """The model ids the server offers (``GET {base_url}/models``)."""
        url = self.settings.url + "/models"

        async def once(attempt: Attempt) -> list[str]:
            response = await self._http.get(url, headers=self._headers, timeout=self._httpx_timeout)
            _log.debug("GET %s -> %d", url, response.status_code)
            if not 200 <= response.status_code < 300:
                raise self._answers.status_error(response, response.content)
            return model_ids(response.content, self._answers.shape)

        return await self._with_retries(once, None, self._deadline())

    async def _with_retries(
        self, once: Callable[[Attempt], Awaitable[T]], builder: CompletionBuilder | None, deadline: float | None
    ) -> T:
        tries = 0
        try:
            while True:
                attempt = Attempt()
                try:
                    return await once(attempt)
                except httpx.RequestError as exc:
                    error = self._transport_error(exc, attempt, deadline)  # raised below, unchained from httpx
                except VmanError as exc:
                    error = exc
                error = self._caught(error)
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


# --------------------------------------------------------------------------- module-level calls

_lock = threading.Lock()
_clients: ClientCache[Client] = ClientCache()
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClientCache[AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def _close_pools() -> None:
    """Close the pooled clients at exit, so their keep-alive sockets are not left to the garbage collector."""
    for client in _clients.drain():
        client.close()


atexit.register(_close_pools)


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
    cache: bool | None = None,
    **params: Any,
) -> Completion:
    """Complete ``prompt`` with the configured server; clients are pooled per server and key.

    The result is recorded in the local history (``vman_magic.history()``);
    ``cache=True`` answers from it when it holds a complete answer to the
    same request, and sends nothing.

    >>> c = complete("Once upon a time", max_tokens=20)  # doctest: +SKIP
    >>> print(c.text)                                     # doctest: +SKIP
    """
    api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
    settings = resolve(base_url=base_url, api_key=api_key, model=model, timeout=timeout, max_retries=max_retries)
    settings = ensure_server(settings)
    client, evicted = _clients.take(_pool_key(settings), lambda: Client._from_settings(settings))
    for old in evicted:
        old.close()
    try:
        return client.complete(
            prompt, model=settings.require_model(), stream=stream, on_update=on_update, cache=cache, **params
        )
    finally:
        idle = _clients.give_back(client)
        if idle is not None:
            idle.close()


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
    cache: bool | None = None,
    **params: Any,
) -> Completion:
    """The async twin of :func:`complete`; clients are pooled per event loop, server and key."""
    api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
    settings = resolve(base_url=base_url, api_key=api_key, model=model, timeout=timeout, max_retries=max_retries)
    settings = ensure_server(settings)
    loop = asyncio.get_running_loop()
    with _lock:
        clients = _async_clients.setdefault(loop, ClientCache())
    client, evicted = clients.take(_pool_key(settings), lambda: AsyncClient._from_settings(settings))
    for old in evicted:
        await old.aclose()
    try:
        return await client.complete(
            prompt, model=settings.require_model(), stream=stream, on_update=on_update, cache=cache, **params
        )
    finally:
        idle = clients.give_back(client)
        if idle is not None:
            await idle.aclose()
