"""Test helpers that ship: the demo server on an ephemeral port, fault URLs, SSE bodies.

Like ``structlog.testing``, this module serves our own tests and our users'
tests alike. Importing it is light (no IPython, no model): the model loads in
the server's thread on first use.

Start a server::

    from vman_magic.testing import serve

    with serve() as server:                     # 127.0.0.1, a free port
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        server.stats.max_active                 # peak of concurrent completions

As a pytest fixture, put this in a ``conftest.py``::

    import pytest
    from vman_magic.testing import serve

    @pytest.fixture(scope="session")
    def demo_server():
        with serve() as server:
            yield server

Faults and throttles by URL
---------------------------
A base URL with an ``/x/<knobs>`` segment before ``/v1`` reaches the same API
with knobs, so the Python API, ``%%complete``, the panel and the openai SDK
can all be pointed at a fault::

    http://127.0.0.1:PORT/x/fault=drop_mid_stream,tps=20,first_token_ms=300/v1
    url(server, fault="drop_mid_stream", tps=20, first_token_ms=300)   # the same

``<knobs>`` is a comma-separated list of ``name=value`` items; a bare name is
short for ``fault=name``, and ``fault=a+b`` combines faults. An unknown knob
or fault is a 400 (``code: "invalid_fault"``) naming the valid ones.

Throttles: ``tps=R`` (model steps per second per stream; every choice of a
request advances one token per step) and ``first_token_ms=T`` (delay before
the first step). They override ``serve(tokens_per_second=..., first_token_ms=...)``.

Answers instead of the API (any route under the prefix, before the API-key check):

``status=N``        ``N`` (400..599) with an OpenAI error body; 401 has code
                    ``invalid_api_key``, 404 ``model_not_found``, 429
                    ``rate_limit_exceeded`` with ``Retry-After: 1``, 503 with
                    ``Retry-After: 1``; ``retry_after=S`` sets the header on any.
``ratelimit=N``     the first ``N`` requests on this exact prefix get 429 with
                    ``Retry-After: 1`` (or ``retry_after=S``); later ones succeed.
``html_error=N``    status ``N`` with an HTML page, ``text/html``.
``html_200``        200 with an HTML page, ``text/html`` (a captive portal).

Stream faults (``POST /v1/completions`` with ``stream: true``). "Mid-stream"
means after :data:`FAULT_AFTER` (3) data events, or before the last one when
the stream is shorter::

``no_space``        ``data:{...}`` without the space after the colon.
``crlf``            every line ends in ``\\r\\n``.
``keepalive``       each event is preceded by a ``: ping`` comment block and
                    carries ``event: completion`` and ``id: N`` lines; the
                    first also ``retry: 3000``.
``split_utf8``      Chinese text; every event is cut after the first byte of
                    each multibyte character and each part is sent as its own
                    HTTP chunk and TCP write (flushed, 2 ms apart).
``chinese``         the completion text is a Chinese passage (no byte tricks).
``usage_chunk``     the final ``{"choices": [], "usage": {...}}`` chunk even
                    without ``stream_options.include_usage``.
``error_in_stream`` mid-stream ``data: {"error": {"message": ..., "type":
                    "server_error", "param": null, "code": 500}}``, then the
                    response ends cleanly without ``[DONE]``.
``error_in_stream_strcode``  the same with ``"code": "internal_error"``.
``drop_mid_stream`` the connection is aborted mid-stream (no terminating
                    chunk: the client sees a broken chunked body).
``no_done``         every chunk incl. all finish reasons, clean end, no ``[DONE]``.
``no_done_unfinished``  clean end mid-stream: no finish reasons, no ``[DONE]``.
``bad_json``        mid-stream the line ``data: {"id": "cmpl-broken", "choices": [``,
                    then the stream continues normally.
``cut_short``       mid-stream ``data: [DONE]`` and a clean end, though no
                    choice has a finish reason (llama.cpp's server when
                    another request arrives).
``bom``             a UTF-8 byte-order mark before the first event.
``bad_json_burst``  the first events and then the ``bad_json`` line in one
                    network write; the stream continues normally after it.
``rejected``        (any request) 500 with the same validation message every
                    time, as a server answers a request it will never accept;
                    ``status=5xx`` errors name a new request id each time.
``long_line``       after the first event, one event whose choice 0 text is
                    1,000,000 characters (valid JSON, about 1 MB on one line).
``json_when_stream``  a plain ``application/json`` completion instead of SSE.
``hang``            200 headers, then nothing until the client disconnects
                    (or the server stops, or 10 minutes pass).

For non-streamed requests: ``hang`` as above; ``drop_mid_stream`` sends half
of the body announced by ``Content-Length`` and aborts; ``bad_json`` answers
200 ``application/json`` with the truncated body ``{"id": "cmpl-broken", "choices": [``.
The other stream faults do not change a non-streamed answer.

Rate limits
-----------
``serve(rpm=1200, tpm=40000)`` (``vman-magic serve --rpm 1200 --tpm 40000``)
limits ``POST /v1/completions`` as gateways do, over short windows: each
limit is a bucket of one second's worth (20 requests for 1,200 rpm) refilled
continuously. A request reserves its prompt tokens plus ``max_tokens`` per
choice; unused completion tokens are given back when it ends. Answers carry
``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
``x-ratelimit-reset-requests`` and the ``-tokens`` triple; a request over a
limit gets 429 (``type`` ``"requests"`` or ``"tokens"``, code
``rate_limit_exceeded``) with ``retry-after-ms`` and ``Retry-After`` as well.
``ratelimit_headers=False`` (``--no-ratelimit-headers``) sends none of those
headers. ``server.stats.rate_limited`` counts the 429s and ``stats.tokens``
the tokens of finished completions. ``first_token_ms=200`` adds 200 ms of
latency to every completion, as a remote model would.

The demo model
--------------
``vman-demo`` is a Kneser-Ney trigram model over docstrings of the standard
library; see :mod:`vman_magic.demo.model`. Its logprobs are the model's own
distribution (before ``logit_bias``, penalties, temperature and ``top_p``).
``suffix`` is accepted and ignored. :func:`tokenize` gives the ids that
token-array prompts and ``logit_bias`` use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .demo.faults import FAULT_AFTER, FAULTS, knob_url
from .demo.running import RunningServer, start_server

__all__ = ["FAULTS", "FAULT_AFTER", "RunningServer", "detokenize", "serve", "sse_body", "tokenize", "url"]


@contextmanager
def serve(
    *, api_key: str | None = None, tokens_per_second: float | None = None,
    first_token_ms: float | None = None, host: str = "127.0.0.1", idle_timeout: float | None = 30.0,
    rpm: float | None = None, tpm: float | None = None, ratelimit_headers: bool = True,
) -> Iterator[RunningServer]:  # fmt: skip
    """Run the demo server on a free port for the ``with`` block, then stop it.

    ``idle_timeout`` closes a connection that sends nothing for that many
    seconds (between requests, or in the middle of one: then with a 408).
    ``rpm``/``tpm`` limit completions per minute the way gateways do (see
    "Rate limits" above); ``ratelimit_headers=False`` makes its 429s bare.
    """
    server = start_server(host=host, port=0, api_key=api_key, tokens_per_second=tokens_per_second,
                          first_token_ms=first_token_ms, idle_timeout=idle_timeout, rpm=rpm, tpm=tpm,
                          ratelimit_headers=ratelimit_headers)  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


def url(server: RunningServer | str, *, fault: str | Iterable[str] | None = None, **knobs: Any) -> str:
    """The base URL of ``server`` (or a ``.../v1`` URL) with a knob prefix, e.g. ``url(s, fault="hang")``.

    Keyword knobs: ``tps``, ``first_token_ms``, ``status``, ``html_error``,
    ``ratelimit``, ``retry_after``. ``fault`` takes one name or several.
    """
    base = server if isinstance(server, str) else server.base_url
    return knob_url(base, fault=fault, **knobs)


def sse_body(
    chunks: Iterable[Mapping[str, Any] | str | bytes], *, eol: str = "\n", space: bool = True, done: bool = True
) -> bytes:
    """Build an SSE body: one ``data:`` event per chunk (dicts become JSON), then ``[DONE]``.

    For decoder tests: ``eol="\\r\\n"`` and ``space=False`` give the variants
    some gateways send; a ``str``/``bytes`` chunk is used as the data verbatim
    (to embed broken JSON).
    """
    prefix = b"data: " if space else b"data:"
    end = eol.encode()
    out = bytearray()
    for chunk in chunks:
        if isinstance(chunk, bytes):
            data = chunk
        elif isinstance(chunk, str):
            data = chunk.encode("utf-8")
        else:
            data = json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        out += prefix + data + end + end
    if done:
        out += prefix + b"[DONE]" + end + end
    return bytes(out)


def tokenize(text: str) -> list[int]:
    """The demo model's token ids for ``text`` (loads the model on first use)."""
    from .demo.model import get_model

    return get_model().tokenizer.encode(text)


def detokenize(ids: Iterable[int]) -> str:
    """The text of demo-model token ids (``<|endoftext|>`` for id 0)."""
    from .demo.model import get_model

    return get_model().tokenizer.decode(ids)
