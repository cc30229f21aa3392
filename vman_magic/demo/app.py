"""The demo server: HTTP/1.1 on asyncio with h11, keep-alive, chunked SSE streams.

Routes (under an optional ``/x/<knobs>`` prefix, see :mod:`.faults`)::

    GET  /v1/models            the one model, ``vman-demo``
    GET  /v1/models/{id}       404 ``model_not_found`` for any other id
    POST /v1/completions       OpenAI legacy Completions, streamed or not

h11 does all HTTP parsing and framing; this module only moves bytes between
it and the socket. Every write is followed by ``drain()``, so a slow client
only ever blocks its own stream, and generation yields to the loop between
steps. Errors are always ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Final

import h11

from . import faults
from .completions import CompletionRunner, Throttle
from .faults import FAULT_AFTER, HTML_PAGE, Knobs, SSEFormat
from .model import MODEL_ID, Model, get_model
from .protocol import APIError, Job, dumps, error_body, model_object, parse_completion, parse_json
from .ratelimit import Admission, RateLimiter

log = logging.getLogger(__name__)

MAX_BODY: Final = 16 * 1024 * 1024
#: Seconds a connection may sit idle (between requests, or mid-request) before the server closes it.
IDLE_TIMEOUT_S: Final = 30.0
#: Requests this large (bytes) or with this many choices are prepared in a worker thread, off the loop.
BIG_BODY: Final = 256 * 1024
BIG_CHOICES: Final = 64
LONG_LINE_CHARS: Final = 1_000_000
HANG_LIMIT_S: Final = 600.0
_ROUTES: Final = {"/v1/models": "GET", "/v1/completions": "POST"}


class Stats:
    """Request counters, read from any thread: the batch tests check concurrency and 429s with them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.completions = 0
        self.connections = 0  # TCP connections accepted: the client tests check connection reuse with it
        self.active = 0
        self.max_active = 0
        # completions by the pace they streamed at (tokens per second, None = full speed): the
        # interactive faces ask for a readable pace per request, batches never do
        self.paces: Counter[float | None] = Counter()
        self.rate_limited = 0
        """Completions refused with 429 by the ``rpm``/``tpm`` limiter (not those injected by a knob)."""
        self.tokens = 0
        """Tokens of the completions that ended (prompt + completion, as ``usage`` counts them)."""

    def started(self, tps: float | None = None) -> None:
        with self._lock:
            self.paces[tps] += 1
            self.completions += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def ended(self, tokens: int = 0) -> None:
        with self._lock:
            self.active -= 1
            self.tokens += tokens

    def limited(self) -> None:
        with self._lock:
            self.rate_limited += 1

    def reset(self) -> None:
        """Zero the totals and set ``max_active`` to the current ``active``."""
        with self._lock:
            self.requests = self.completions = self.connections = self.rate_limited = self.tokens = 0
            self.max_active = self.active
            self.paces.clear()

    def __repr__(self) -> str:
        return (
            f"Stats(requests={self.requests}, completions={self.completions}, connections={self.connections}, "
            f"active={self.active}, max_active={self.max_active}, rate_limited={self.rate_limited})"
        )


class ClientGone(Exception):
    """The client closed the connection; stop working for it."""


class Exchange:
    """One request/response on a connection: h11 events out, bytes to the socket."""

    def __init__(self, conn: h11.Connection, writer: asyncio.StreamWriter) -> None:
        self.conn = conn
        self.writer = writer
        self.aborted = False
        self.extra_headers: list[tuple[str, str]] = []  # e.g. the rate-limit headers of an admitted request

    async def _write(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            if self.writer.is_closing():
                raise ClientGone
            self.writer.write(data)
            try:
                await self.writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise ClientGone from exc

    async def start(self, status: int, content_type: str, headers: Sequence[tuple[str, str]] = (),
                    length: int | None = None) -> None:  # fmt: skip
        hdrs = [("content-type", content_type), ("server", "vman-magic-demo"), *headers, *self.extra_headers]
        if length is not None:
            hdrs.append(("content-length", str(length)))
        elif content_type.startswith("text/event-stream"):
            hdrs.append(("cache-control", "no-cache"))
        await self._write(h11.Response(status_code=status, headers=hdrs))

    async def send(self, data: bytes) -> None:
        await self._write(h11.Data(data=data))

    async def end(self) -> None:
        await self._write(h11.EndOfMessage())

    async def whole(self, status: int, body: bytes, content_type: str = "application/json",
                    headers: Sequence[tuple[str, str]] = ()) -> None:  # fmt: skip
        await self.start(status, content_type, headers, length=len(body))
        await self.send(body)
        await self.end()

    async def json(self, status: int, obj: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        await self.whole(status, dumps(obj), headers=headers)

    async def error(self, err: APIError) -> None:
        await self.json(err.status, err.body(), err.headers)

    def abort(self) -> None:
        """Drop the connection without finishing the message (``drop_mid_stream``)."""
        self.aborted = True
        self.writer.transport.abort()


class Server:
    """The request handler; one instance per listening socket."""

    def __init__(self, *, api_key: str | None, tokens_per_second: float | None, first_token_ms: float | None,
                 model_ready: asyncio.Future[Model], idle_timeout: float | None = IDLE_TIMEOUT_S,
                 limiter: RateLimiter | None = None) -> None:  # fmt: skip
        self._api_key = api_key
        self.idle_timeout = idle_timeout
        self.limiter = limiter if limiter is not None and limiter.active else None
        self.tokens_per_second = tokens_per_second
        self.first_token_ms = first_token_ms
        self.model_ready = model_ready
        self.stats = Stats()
        self._ratelimit_seen: Counter[str] = Counter()
        self._stopping = asyncio.Event()
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def __repr__(self) -> str:  # never show the key
        return f"<Server auth={'on' if self._api_key else 'off'}>"

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        self.stats.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            while True:
                request = await self._next(conn, reader)
                if not isinstance(request, h11.Request):
                    return
                length = next((v for k, v in request.headers if k == b"content-length"), b"0")
                if length.isdigit() and int(length) > MAX_BODY:  # say so before reading a byte of it
                    raise APIError(413, f"request body larger than {MAX_BODY} bytes; send a shorter prompt")
                body = bytearray()
                while True:
                    event = await self._next(conn, reader)
                    if isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > MAX_BODY:
                            raise APIError(413, f"request body larger than {MAX_BODY} bytes")
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
                exchange = Exchange(conn, writer)
                await self._respond(exchange, request, bytes(body), reader)
                if exchange.aborted or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._try_error(conn, writer, APIError(exc.error_status_hint, f"malformed HTTP request: {exc}"))
        except APIError as err:
            await self._try_error(conn, writer, err)
        except (ClientGone, ConnectionError):
            pass
        except asyncio.CancelledError:
            # Only at shutdown. Returning (rather than re-raising) matters on Python 3.11:
            # asyncio.streams calls task.exception() on this task and would log a traceback.
            pass
        finally:
            self._connections.pop(task, None)  # type: ignore[arg-type]
            writer.close()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await asyncio.wait_for(reader.read(65536), self.idle_timeout)
            except asyncio.TimeoutError:  # an idle or half-sent connection: free its socket
                if conn.their_state is h11.IDLE:
                    raise ClientGone from None
                raise APIError(408, f"the request did not arrive within {self.idle_timeout} s") from None
            conn.receive_data(data)

    async def _try_error(self, conn: h11.Connection, writer: asyncio.StreamWriter, err: APIError) -> None:
        with contextlib.suppress(h11.LocalProtocolError, ClientGone, ConnectionError):
            await Exchange(conn, writer).error(err)

    async def _respond(self, ex: Exchange, request: h11.Request, body: bytes, reader: asyncio.StreamReader) -> None:
        self.stats.requests += 1
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("utf-8", "replace").partition("?")[0]
        try:
            knobs, path = faults.split_path(target)
            await self._route(ex, method, path, knobs, request.headers, body, reader)
        except APIError as err:
            if ex.conn.our_state is h11.SEND_RESPONSE:
                await ex.error(err)

    async def _route(self, ex: Exchange, method: str, path: str, knobs: Knobs, headers: Sequence[tuple[bytes, bytes]],
                     body: bytes, reader: asyncio.StreamReader) -> None:  # fmt: skip
        await self._before(ex, knobs)
        if ex.conn.our_state is not h11.SEND_RESPONSE:
            return
        self._check_auth(headers)
        allowed = _ROUTES.get(path, "GET" if path.startswith("/v1/models/") else None)
        if allowed is None:
            raise APIError(
                404, f"Unknown request URL: {method} {path}. This server serves POST /v1/completions and "
                "GET /v1/models; check the base URL (it should end in /v1).", code="unknown_url",
            )  # fmt: skip
        if method != allowed:
            raise APIError(405, f"{method} is not allowed on {path}; use {allowed}.", headers=[("Allow", allowed)])
        if path == "/v1/models":
            await ex.json(200, {"object": "list", "data": [model_object()]})
        elif path.startswith("/v1/models/"):
            model_id = path[len("/v1/models/") :]
            if model_id != MODEL_ID:
                raise APIError(404, f"The model '{model_id}' does not exist; this server serves only '{MODEL_ID}'.",
                               param="model", code="model_not_found")  # fmt: skip
            await ex.json(200, model_object())
        else:
            await self._completions(ex, knobs, body, reader)

    async def _before(self, ex: Exchange, knobs: Knobs) -> None:
        """Faults that answer instead of the API: html pages, injected statuses, rate limits."""
        if knobs.has("html_200"):
            await ex.whole(
                200, HTML_PAGE.format(title="Welcome", fault="html_200").encode(), "text/html; charset=utf-8"
            )
        elif knobs.html_error is not None:
            page = HTML_PAGE.format(title=f"{knobs.html_error} Bad Gateway", fault=f"html_error={knobs.html_error}")
            await ex.whole(knobs.html_error, page.encode(), "text/html; charset=utf-8")
        elif knobs.status is not None:
            await ex.error(faults.injected_error(knobs.status, knobs.retry_after))
        elif knobs.has("rejected"):
            await ex.error(faults.rejected_error())
        elif knobs.ratelimit is not None:
            self._ratelimit_seen[knobs.prefix] += 1
            if self._ratelimit_seen[knobs.prefix] <= knobs.ratelimit:
                await ex.error(faults.injected_error(429, knobs.retry_after))

    def _check_auth(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        if self._api_key is None:
            return
        given = next((v for k, v in headers if k == b"authorization"), None)
        if given is None:
            raise APIError(401, "You didn't provide an API key: send 'Authorization: Bearer <key>' with the key "
                           "this server was started with.", code="invalid_api_key")  # fmt: skip
        if not hmac.compare_digest(given, b"Bearer " + self._api_key.encode()):
            raise APIError(401, "Incorrect API key provided: use the key this server was started with.",
                           code="invalid_api_key")  # fmt: skip

    async def _completions(self, ex: Exchange, knobs: Knobs, raw: bytes, reader: asyncio.StreamReader) -> None:
        body = parse_json(raw)
        model = await asyncio.shield(self.model_ready)
        if len(raw) > BIG_BODY or _choices(body) > BIG_CHOICES:
            # tokenizing megabytes or setting up thousands of choices takes seconds: not on the loop
            loop = asyncio.get_running_loop()
            runner = await loop.run_in_executor(None, _runner, body, model, knobs.chinese)
        else:
            runner = _runner(body, model, knobs.chinese)
        job = runner.job
        admission = self._admit(job, runner)
        if admission is not None:
            ex.extra_headers = admission.headers
        self.stats.started(_throttle_of(self, knobs).tps)
        try:
            if knobs.has("hang"):
                await ex.start(200, "text/event-stream" if job.stream else "application/json")
                await self._hang(reader)
                ex.abort()
            elif job.stream and not knobs.has("json_when_stream"):
                await self._stream(ex, knobs, runner)
            else:
                await self._whole(ex, knobs, runner)
        finally:
            self.stats.ended(runner.prompt_tokens + runner.completion_tokens)
            if admission is not None and self.limiter is not None:
                self.limiter.release(admission, runner.completion_tokens)

    def _admit(self, job: Job, runner: CompletionRunner) -> Admission | None:
        """Charge the ``rpm``/``tpm`` budgets, or raise the 429 a gateway would send."""
        if self.limiter is None:
            return None
        reserved = job.gen.max_tokens * job.best_of * len(job.prompts)
        try:
            return self.limiter.admit(runner.prompt_tokens, reserved, MODEL_ID)
        except APIError:
            self.stats.limited()
            raise

    async def _hang(self, reader: asyncio.StreamReader) -> None:
        """Wait until the client gives up (EOF), the server stops, or ten minutes pass."""
        eof = asyncio.ensure_future(reader.read(1))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([eof, stop], timeout=HANG_LIMIT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            eof.cancel()
            stop.cancel()

    async def _whole(self, ex: Exchange, knobs: Knobs, runner: CompletionRunner) -> None:
        response = await runner.complete(_throttle_of(self, knobs))
        data = dumps(response)
        if knobs.has("bad_json"):
            await ex.whole(200, b'{"id": "cmpl-broken", "choices": [')
        elif knobs.has("drop_mid_stream"):
            await ex.start(200, "application/json", length=len(data))
            await ex.send(data[: len(data) // 2])
            ex.abort()
        else:
            await ex.whole(200, data)

    async def _stream(self, ex: Exchange, knobs: Knobs, runner: CompletionRunner) -> None:
        fmt = SSEFormat(knobs)
        split = knobs.has("split_utf8")

        async def send(payload: bytes) -> None:
            event = fmt.event(payload)
            if not split:
                await ex.send(event)
                return
            for part in faults.split_utf8(event):  # each part its own chunk and TCP write
                await ex.send(part)
                await asyncio.sleep(0.002)

        await ex.start(200, "text/event-stream; charset=utf-8")
        chunks: AsyncGenerator[dict[str, Any], None] = runner.stream(_throttle_of(self, knobs))  # type: ignore[assignment]
        try:
            await self._events(ex, knobs, runner, fmt, send, chunks)
        finally:
            await chunks.aclose()

    async def _events(self, ex: Exchange, knobs: Knobs, runner: CompletionRunner, fmt: SSEFormat, send: Any,
                      chunks: AsyncIterator[dict[str, Any]]) -> None:  # fmt: skip
        sent = 0
        burst = bytearray() if knobs.has("bad_json_burst") else None  # events held back for one write
        pending = await anext(chunks, None)
        while pending is not None:
            following = await anext(chunks, None)
            last = following is None
            strike = sent == FAULT_AFTER or (last and sent < FAULT_AFTER)
            if strike and burst is not None:  # the good events and a bad one in one network write
                await ex.send(bytes(burst) + fmt.event(b'{"id": "cmpl-broken", "choices": ['))
                burst = None
            if strike and await self._strike(ex, knobs, fmt, send):
                return
            if knobs.has("no_done_unfinished") and any(c["finish_reason"] for c in pending["choices"]):
                await ex.end()
                return
            if burst is not None:
                burst += fmt.event(dumps(pending))
            else:
                await send(dumps(pending))
            sent += 1
            if sent == 1 and knobs.has("long_line"):
                await send(dumps(runner.ids.chunk([_long_choice()], None)))
            pending = following
        if runner.job.include_usage or knobs.has("usage_chunk"):
            await send(dumps(runner.ids.chunk([], runner.usage())))
        if not (knobs.has("no_done") or knobs.has("no_done_unfinished")):
            await ex.send(fmt.done())
        await ex.end()

    async def _strike(self, ex: Exchange, knobs: Knobs, fmt: SSEFormat, send: Any) -> bool:
        """Apply a mid-stream fault; True when it ended the response."""
        if knobs.has("drop_mid_stream"):
            ex.abort()
            return True
        if knobs.has("error_in_stream") or knobs.has("error_in_stream_strcode"):
            code: str | int = "internal_error" if knobs.has("error_in_stream_strcode") else 500
            await send(dumps(error_body("The server had an error while processing your request "
                                        "(injected by fault=error_in_stream).", "server_error", None, code)))  # fmt: skip
            await ex.end()
            return True
        if knobs.has("no_done_unfinished"):
            await ex.end()
            return True
        if knobs.has("cut_short"):  # llama.cpp when another request arrives: [DONE], no finish reason
            await ex.send(fmt.done())
            await ex.end()
            return True
        if knobs.has("bad_json"):
            await send(b'{"id": "cmpl-broken", "choices": [')
        return False

    async def stop(self) -> None:
        """End hanging responses, close every connection and wait briefly for their handlers."""
        self._stopping.set()
        for writer in self._connections.values():
            writer.transport.abort()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:  # e.g. asleep in a slow throttle
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)


def _runner(body: Any, model: Model, chinese: bool) -> CompletionRunner:
    """Validate a completions body and set up its choices (in a worker thread when it is big)."""
    job = parse_completion(body, model, chinese=chinese)
    return CompletionRunner(model, job, model.fingerprint)


def _choices(body: Any) -> int:
    """Roughly how many choices a body asks for (prompts x best_of/n), without validating it."""
    if not isinstance(body, dict):
        return 1
    prompt = body.get("prompt")
    prompts = len(prompt) if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else 1
    per = max((v for v in (body.get("n"), body.get("best_of")) if isinstance(v, int)), default=1)
    return prompts * max(per, 1)


def _throttle_of(server: Server, knobs: Knobs) -> Throttle:
    tps = knobs.tps or server.tokens_per_second
    first = knobs.first_token_ms if knobs.first_token_ms is not None else server.first_token_ms
    return Throttle(tps, first)


def _long_choice() -> dict[str, Any]:
    sentence = "This line is long on purpose: a decoder must not choke on one large event. "
    text = (sentence * (LONG_LINE_CHARS // len(sentence) + 1))[:LONG_LINE_CHARS]
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": None}


def load_model_in_thread(loop: asyncio.AbstractEventLoop) -> asyncio.Future[Model]:
    """Start loading (or training) the model without blocking the loop; requests await it."""
    return loop.run_in_executor(None, get_model)
