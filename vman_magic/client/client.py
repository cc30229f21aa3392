"""``Client``, ``AsyncClient``, ``complete`` and ``acomplete``: requests in, results out.

One call is: validate a :class:`CompletionRequest`, ``POST {base_url}/completions``,
feed the answer (an SSE stream, or one JSON body) through the decoder into the
caller's :class:`CompletionBuilder`, and turn every way it can fail into one
typed error from :mod:`vman_magic.core.errors` carrying the partial result.

The caller owns the builder, so whatever ends a call (an HTTP error, a broken
stream, Ctrl-C, ``task.cancel()``) the text that arrived stays in its hands.

Settings: every door (``Client``, ``AsyncClient``, ``complete``, ``acomplete``)
takes either the connection arguments or one resolved :class:`Settings`
(``settings=``), and works with that one immutable object from then on.

Secrets: the key lives in a :class:`~vman_magic.core.config.Secret` from the
door on and is revealed only by :class:`BearerAuth`, straight into the
request's headers (whose repr masks ``Authorization``). Server messages are
scrubbed of it before they become exception text, and httpx's own exceptions
are not chained into ours, so a verbose traceback cannot show a frame that
held the raw header.

The sync and async clients share every decision (:class:`_Retrying`,
:class:`_StreamReader`, :class:`_BaseClient`); they differ only in how they
wait, so a fix to the retry or stream rules is made once.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, TypeVar, cast

import httpx

from .._version import __version__
from ..core.config import Secret, Settings, as_secret, ensure_server, resolve, warn_if_insecure
from ..core.errors import ConfigurationError, InternalServerError, VmanError
from ..core.models import Completion, CompletionBuilder, CompletionRequest, Prompt
from ..core.scrub import Scrubber, scrub_error
from ..logbook import session as _history
from .answers import Answers, Attempt, end_of_stream, feed, log_done, model_ids
from .pool import ClientCache
from .retry import RetryPolicy
from .sse import SSEDecoder

__all__ = ["AsyncClient", "BearerAuth", "Client", "acomplete", "complete", "settings_at_the_door"]

OnUpdate = Callable[[Completion], Any]
OnResponse = Callable[[int, httpx.Headers], Any]
"""Called with the status and headers of every answer (each retry too), before its body is read."""
T = TypeVar("T")

USER_AGENT = f"vman-magic/{__version__}"
_log = logging.getLogger("vman_magic")
# httpx keeps only 20 idle connections by default: a batch with concurrency 32 then
# closes and reopens a dozen connections on every round (~3x slower on 1,000 short
# requests, see benchmarks/README.md). Keep every connection the pool may open.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


class BearerAuth(httpx.Auth):
    """Writes ``Authorization: Bearer <key>`` on every request: where the key becomes a header.

    The key arrives as a :class:`Secret` and is revealed only here, straight
    into the request's headers (httpx's ``Headers`` repr masks them), so no
    frame of ours holds it as a ``str`` (the scrubber keeps its own masked
    patterns, see :mod:`vman_magic.core.scrub`).
    """

    def __init__(self, key: Secret) -> None:
        if not key.header_safe():
            raise ConfigurationError(
                "the API key contains spaces or non-ASCII characters (a copy-paste accident?): set it again"
            )
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._key.reveal()
        yield request

    def __repr__(self) -> str:
        return "<BearerAuth ****>"


class _BaseClient:
    """Settings, auth and answer interpretation, and the retry and stream rules both clients share.

    The sync and async clients differ only where they wait (a blocking read or
    an ``await``); every decision (what an answer means, whether to retry,
    how long to wait, when a timeout is up, what a chunk changes) is made
    here once, by :class:`_Retrying` and :class:`_StreamReader`.
    """

    settings: Settings
    retry: RetryPolicy

    def _setup(self, settings: Settings, retry: RetryPolicy | None) -> None:
        warn_if_insecure(settings)
        self.settings = settings
        self.retry = retry or RetryPolicy(max_retries=settings.max_retries)
        self._auth = BearerAuth(settings.api_key) if settings.api_key is not None else None
        self._scrubber = Scrubber([settings.api_key.reveal()]) if settings.api_key is not None else Scrubber.none()
        self._answers = Answers(settings, self._scrubber)
        self._headers = httpx.Headers({"User-Agent": USER_AGENT})
        self._stream_headers = httpx.Headers({"User-Agent": USER_AGENT, "Accept": "text/event-stream"})
        t = settings.timeout
        self._httpx_timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect)

    def __repr__(self) -> str:
        settings = getattr(self, "settings", None)  # safe on a half-built client: tracebacks call it
        if settings is None:
            return f"<{type(self).__name__} (not set up)>"
        return f"<{type(self).__name__} base_url={settings.base_url!r} model={settings.model!r}>"

    def _request(self, prompt: Prompt, model: str | None, stream: bool, params: dict[str, Any]) -> CompletionRequest:
        return CompletionRequest.build(self.settings.require_model(model), prompt, stream=stream, **params)

    def _send_args(self, request: CompletionRequest, deadline: float | None) -> dict[str, Any]:
        """The keyword arguments of ``http.stream("POST", ...)`` for ``request``."""
        return {
            "json": request.to_body(),
            "headers": self._stream_headers if request.stream else self._headers,
            "auth": self._auth,
            "timeout": self._timeout_until(deadline),
        }

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

    def _first_look(
        self, response: httpx.Response, request: CompletionRequest, attempt: Attempt, on_response: OnResponse | None
    ) -> str:
        """Log the status, show it to ``on_response``; ``"error"``, ``"json"`` or ``"sse"``: how to read what follows."""
        _log.debug(
            "POST %s -> %d after %.3f s", response.url, response.status_code, time.perf_counter() - attempt.sent_at
        )
        if on_response is not None:
            on_response(response.status_code, response.headers)
        if not 200 <= response.status_code < 300:
            return "error"
        return self._answers.kind(response, request.stream)

    def _reader(
        self, builder: CompletionBuilder, on_update: OnUpdate | None, attempt: Attempt, deadline: float | None
    ) -> _StreamReader:
        return _StreamReader(self._answers, builder, on_update, attempt, deadline, self.settings.timeout.read)


class _Retrying:
    """The retry decisions of one call, shared by the sync and async loops.

    Errors are raised outside the ``except`` block that caught httpx's
    exception, so they are not chained to it: a verbose traceback never shows
    httpx's frames, which held the request. Every error is scrubbed of the
    key first. Whatever ends a call that is not ours to handle (Ctrl-C,
    ``task.cancel()``, a bug in ``on_update``) flags the builder's result
    incomplete and propagates unchanged.
    """

    __slots__ = ("builder", "client", "deadline", "previous", "tries")

    def __init__(self, client: _BaseClient, builder: CompletionBuilder | None, deadline: float | None) -> None:
        self.client = client
        self.builder = builder
        self.deadline = deadline
        self.tries = 0
        self.previous: VmanError | None = None  # the error of the try before, to tell a rejection from a hiccup

    def error_for(self, exc: httpx.RequestError | VmanError, attempt: Attempt) -> VmanError:
        """An httpx failure as our error (a timeout at the deadline is the total timeout, said so); scrubbed."""
        answers = self.client._answers
        if isinstance(exc, VmanError):
            error = exc
        elif isinstance(exc, httpx.TimeoutException) and self._at_deadline():
            error = answers.total_timeout()
        else:
            error = answers.transport_error(exc, attempt)
        scrub_error(error, self.client._scrubber)
        return error

    def _at_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline - 0.01

    def delay(self, error: VmanError, attempt: Attempt) -> float:
        """Seconds to wait before trying again; raises ``error`` (with the partial result) when not."""
        delay = self._delay(error, attempt)
        if delay is None:
            if self.builder is not None and error.partial is None:
                error.partial = self.builder.fail(error)
            raise error
        retry = self.client.retry
        level = logging.WARNING if retry.announce and delay >= 1.0 else logging.INFO
        _log.log(level, "vman-magic: %s; waiting %.0f s, then retry %d of %d", _first(error), delay, self.tries + 1,
                 retry.max_retries)  # fmt: skip
        self.tries += 1
        return delay

    def _delay(self, error: VmanError, attempt: Attempt) -> float | None:
        previous, self.previous = self.previous, error
        if _rejected(previous, error):
            return None  # the same 5xx twice: trying a third time will not help
        if attempt.received:
            return None  # part of the answer arrived: never retry behind the user's back
        retry = self.client.retry
        if retry.is_retryable(error) and retry.too_long(error):
            _amend(error, _asked_too_long(getattr(error, "retry_after", 0.0), retry.retry_after_cap))
            return None
        delay = retry.delay_for(error, self.tries)
        if delay is None or (self.deadline is not None and time.monotonic() + delay > self.deadline):
            return None
        return delay

    @contextlib.contextmanager
    def keeping_partial(self) -> Iterator[None]:
        """Flag the builder's result incomplete on any exception that is not one of ours, and re-raise it."""
        try:
            yield
        except VmanError:
            raise
        except BaseException as exc:  # Ctrl-C, cancellation, or a bug in on_update: keep the partial
            if self.builder is not None:
                self.builder.fail(exc)
            raise

    def __repr__(self) -> str:
        return f"<_Retrying tries={getattr(self, 'tries', '?')}>"


class _StreamReader:
    """Folds one event stream's network chunks into the builder: the loop body both clients share.

    Besides folding, it keeps two clocks: the call's total deadline, and the
    time since the last *content* event (keep-alive comments do not reset
    it: httpx's read timeout only bounds the silence between two bytes, so a
    server sending ``: ping`` forever would otherwise hold a call until the
    total timeout).
    """

    __slots__ = ("_last_content", "answers", "attempt", "builder", "deadline", "decoder", "idle_limit", "on_update")

    def __init__(
        self,
        answers: Answers,
        builder: CompletionBuilder,
        on_update: OnUpdate | None,
        attempt: Attempt,
        deadline: float | None,
        idle_limit: float | None,
    ) -> None:
        self.answers = answers
        self.builder = builder
        self.on_update = on_update
        self.attempt = attempt
        self.deadline = deadline
        self.idle_limit = idle_limit
        self.decoder = SSEDecoder()
        self._last_content = time.monotonic()

    def feed(self, data: bytes) -> bool:
        """Take one network chunk; True once the stream said it is done (``[DONE]``)."""
        self.attempt.received = True
        now = time.monotonic()
        if feed(self.decoder, data, self.builder, self.on_update, self.answers.shape):
            self._last_content = now
        elif self.idle_limit is not None and now - self._last_content > self.idle_limit:
            raise self.answers.no_content_timeout()
        if self.decoder.done:
            return True
        if self.deadline is not None and now > self.deadline:
            raise self.answers.total_timeout()
        return False

    def end(self) -> Completion:
        """The result once the bytes stopped: finished, or an error when the stream was cut short."""
        return end_of_stream(self.decoder, self.builder, self.on_update, self.answers.shape)

    def __repr__(self) -> str:
        return "<_StreamReader>"


class Client(_BaseClient):
    """A synchronous client holding one ``httpx.Client`` connection pool.

    Arguments left as ``None`` come from the environment, ``%vman`` and the
    other layers described in :mod:`vman_magic.core.config`; or pass
    ``settings=`` resolved already (then leave the others out). With no base
    URL anywhere the offline demo server starts (once per process). ``retry``
    replaces the retry policy (the batch helpers pass one with a shared
    back-off hook). Use it as a context manager, or call :meth:`close`.
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

    def close(self) -> None:
        """Close the connection pool (not an ``http_client`` that was passed in)."""
        if getattr(self, "_owns_http", False):
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
        on_response: OnResponse | None = None,
    ) -> Completion:
        """Send ``request`` and fold the answer into ``builder``; the primitive behind everything.

        Every result is recorded in the local history however it ends (the
        caller's ``record=False`` records it itself, as batches do for grouped
        prompts). With ``cache`` on, a complete answer from the history is put
        into ``builder`` instead and nothing is sent. ``on_response(status,
        headers)`` sees the head of every answer, retries included: the batch
        layer reads rate-limit headers there.
        """
        base_url = self.settings.url
        if _history.answer_from_history(request, base_url, cache, builder.completion):
            if on_update is not None:
                on_update(builder.completion)
            return builder.completion
        try:
            return self._send(request, builder, on_update, on_response)
        finally:
            if record:
                _history.record(builder.completion, base_url)

    def _send(
        self,
        request: CompletionRequest,
        builder: CompletionBuilder,
        on_update: OnUpdate | None,
        on_response: OnResponse | None = None,
    ) -> Completion:
        url = self.settings.url + "/completions"
        deadline = self._deadline()

        def once(attempt: Attempt) -> Completion:
            with self._http.stream("POST", url, **self._send_args(request, deadline)) as response:
                kind = self._first_look(response, request, attempt, on_response)
                if kind == "error":
                    raise self._answers.status_error(response, response.read())
                if kind == "json":
                    return self._answers.take_body(response.read(), builder, on_update)
                reader = self._reader(builder, on_update, attempt, deadline)
                chunks = response.iter_bytes()
                for data in chunks:
                    if reader.feed(data):
                        _drain(chunks)
                        break
                return reader.end()

        return log_done(self._with_retries(once, builder, deadline), url)

    def models(self) -> list[str]:
        """The model ids the server offers (``GET {base_url}/models``)."""
        url = self.settings.url + "/models"

        def once(attempt: Attempt) -> list[str]:
            response = self._http.get(url, headers=self._headers, auth=self._auth, timeout=self._httpx_timeout)
            _log.debug("GET %s -> %d", url, response.status_code)
            if not 200 <= response.status_code < 300:
                raise self._answers.status_error(response, response.content)
            return model_ids(response.content, self._answers.shape)

        return self._with_retries(once, None, self._deadline())

    def _with_retries(
        self, once: Callable[[Attempt], T], builder: CompletionBuilder | None, deadline: float | None
    ) -> T:
        retrying = _Retrying(self, builder, deadline)
        with retrying.keeping_partial():
            while True:
                attempt = Attempt()
                try:
                    return once(attempt)
                except (httpx.RequestError, VmanError) as exc:
                    error = retrying.error_for(exc, attempt)
                self.retry.sleep(retrying.delay(error, attempt))  # raises error when it is final


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


def _rejected(previous: VmanError | None, error: VmanError) -> bool:
    """A 5xx with the same body as the try before: a validation error, not a hiccup; say so instead of retrying."""
    if not (
        isinstance(previous, InternalServerError)
        and isinstance(error, InternalServerError)
        and previous.status_code == error.status_code
        and previous.body == error.body
        and error.body is not None
    ):
        return False
    message = error.message.split("; the server or a proxy in front of it failed", 1)[0]
    error.message = (
        f"{message.rstrip('.;')}; the server rejected this request (the same answer twice): "
        "retrying will not help, change what it asks for"
    )
    error.args = (error.message, *error.args[1:])
    return True


def _amend(error: VmanError, hint: str) -> None:
    """Replace the generic hint of an error's message with a precise one."""
    message = error.message.split("; wait a moment", 1)[0]
    error.message = f"{message.rstrip('.;')}; {hint}"
    error.args = (error.message, *error.args[1:])


def _first(error: VmanError) -> str:
    """The error's message up to its hint, for a log line."""
    return str(error).split("; ", 1)[0]


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

    async def aclose(self) -> None:
        """Close the connection pool (not an ``http_client`` that was passed in)."""
        if getattr(self, "_owns_http", False):
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
        on_response: OnResponse | None = None,
    ) -> Completion:
        """Send ``request`` and fold the answer into ``builder``; see :meth:`Client.run`."""
        base_url = self.settings.url
        if _history.answer_from_history(request, base_url, cache, builder.completion):
            if on_update is not None:
                on_update(builder.completion)
            return builder.completion
        try:
            return await self._send(request, builder, on_update, on_response)
        finally:
            if record:
                _history.record(builder.completion, base_url)

    async def _send(
        self,
        request: CompletionRequest,
        builder: CompletionBuilder,
        on_update: OnUpdate | None,
        on_response: OnResponse | None = None,
    ) -> Completion:
        url = self.settings.url + "/completions"
        deadline = self._deadline()

        async def once(attempt: Attempt) -> Completion:
            async with self._http.stream("POST", url, **self._send_args(request, deadline)) as response:
                kind = self._first_look(response, request, attempt, on_response)
                if kind == "error":
                    raise self._answers.status_error(response, await response.aread())
                if kind == "json":
                    return self._answers.take_body(await response.aread(), builder, on_update)
                reader = self._reader(builder, on_update, attempt, deadline)
                # aclosing: leaving the loop early ([DONE], an error, a cancel) must close
                # httpx's byte generator now, on this task; left to the garbage collector it
                # is finalised after the loop stops ("Task was destroyed but it is pending").
                async with contextlib.aclosing(cast("AsyncGenerator[bytes, None]", response.aiter_bytes())) as chunks:
                    async for data in chunks:
                        if reader.feed(data):
                            await _adrain(chunks)
                            break
                return reader.end()

        return log_done(await self._with_retries(once, builder, deadline), url)

    async def models(self) -> list[str]:
        """The model ids the server offers (``GET {base_url}/models``)."""
        url = self.settings.url + "/models"

        async def once(attempt: Attempt) -> list[str]:
            response = await self._http.get(url, headers=self._headers, auth=self._auth, timeout=self._httpx_timeout)
            _log.debug("GET %s -> %d", url, response.status_code)
            if not 200 <= response.status_code < 300:
                raise self._answers.status_error(response, response.content)
            return model_ids(response.content, self._answers.shape)

        return await self._with_retries(once, None, self._deadline())

    async def _with_retries(
        self, once: Callable[[Attempt], Awaitable[T]], builder: CompletionBuilder | None, deadline: float | None
    ) -> T:
        retrying = _Retrying(self, builder, deadline)
        with retrying.keeping_partial():
            while True:
                attempt = Attempt()
                try:
                    return await once(attempt)
                except (httpx.RequestError, VmanError) as exc:
                    error = retrying.error_for(exc, attempt)
                await self.retry.async_sleep(retrying.delay(error, attempt))  # raises error when it is final


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
    settings: Settings | None = None,
    on_update: OnUpdate | None = None,
    cache: bool | None = None,
    **params: Any,
) -> Completion:
    """Complete ``prompt`` with the configured server; clients are pooled per server and key.

    The result is recorded in the local history (``vman_magic.history()``);
    ``cache=True`` answers from it when it holds a complete answer to the
    same request, and sends nothing. ``settings=`` takes a resolved
    :class:`Settings` instead of ``base_url``, ``api_key``, ``timeout`` and
    ``max_retries``; ``model`` may be given with either.

    >>> c = complete("Once upon a time", max_tokens=20)  # doctest: +SKIP
    >>> print(c.text)                                     # doctest: +SKIP
    """
    api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
    given = {"base_url": base_url, "api_key": api_key, "timeout": timeout, "max_retries": max_retries}
    settings = settings_at_the_door(settings, given)
    client, evicted = _clients.take(_pool_key(settings), lambda: Client(settings=settings))
    for old in evicted:
        old.close()
    try:
        return client.complete(
            prompt, model=settings.require_model(model), stream=stream, on_update=on_update, cache=cache, **params
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
    settings: Settings | None = None,
    on_update: OnUpdate | None = None,
    cache: bool | None = None,
    **params: Any,
) -> Completion:
    """The async twin of :func:`complete`; clients are pooled per event loop, server and key."""
    api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
    given = {"base_url": base_url, "api_key": api_key, "timeout": timeout, "max_retries": max_retries}
    settings = settings_at_the_door(settings, given)
    loop = asyncio.get_running_loop()
    with _lock:
        clients = _async_clients.setdefault(loop, ClientCache())
    client, evicted = clients.take(_pool_key(settings), lambda: AsyncClient(settings=settings))
    for old in evicted:
        await old.aclose()
    try:
        return await client.complete(
            prompt, model=settings.require_model(model), stream=stream, on_update=on_update, cache=cache, **params
        )
    finally:
        idle = clients.give_back(client)
        if idle is not None:
            await idle.aclose()
