"""The sync client against hand-written server answers (httpx.MockTransport is the server side)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from vman_magic.client.client import USER_AGENT, Client
from vman_magic.client.retry import RetryPolicy
from vman_magic.core.errors import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    StreamAPIError,
    StreamError,
    ValidationError,
)
from vman_magic.core.models import CompletionBuilder, CompletionRequest

KEY = "sk-unit-test-5e1d2c7b"
Handler = Callable[[httpx.Request], httpx.Response]


def chunk(text: str, index: int = 0, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
    return {"id": "cmpl-1", "object": "text_completion", "model": "m", "created": 1, "choices": [choice], **extra}


def sse(*chunks: Any, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def stream_response(body: bytes, **kw: Any) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body, **kw)


class Broken(httpx.SyncByteStream):
    """A response body that yields some bytes, then fails like a dropped connection."""

    def __init__(self, first: bytes, error: Exception) -> None:
        self.first, self.error = first, error

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        raise self.error


class Recorder:
    """Counts calls and keeps the requests a handler saw."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_client(handler: Handler, *, key: str | None = KEY, sleeps: list[float] | None = None, **kw: Any) -> Client:
    recorded = sleeps if sleeps is not None else []
    retry = RetryPolicy(max_retries=kw.pop("max_retries", 2), sleep=recorded.append, jitter=lambda lo, hi: hi)
    return Client(
        base_url="https://api.vman.example",
        api_key=key,
        model="m",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        retry=retry,
        **kw,
    )


def test_streams_text_and_sends_the_right_request() -> None:
    """A streamed call posts to /v1/completions with key, user agent and SSE accept, and joins the text."""
    server = Recorder(stream_response(sse(chunk("你"), chunk("好", finish="stop"))))
    updates: list[str] = []
    result = make_client(server).complete("hi", max_tokens=3, on_update=lambda c: updates.append(c.text))
    assert (result.text, result.finish_reason, result.incomplete) == ("你好", "stop", False)
    assert updates == ["你", "你好"]
    sent = server.requests[0]
    assert sent.url == "https://api.vman.example/v1/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["user-agent"] == USER_AGENT and sent.headers["accept"] == "text/event-stream"
    assert json.loads(sent.content) == {
        "model": "m",
        "prompt": "hi",
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_no_authorization_header_without_a_key() -> None:
    """Without a key no Authorization header is sent at all."""
    server = Recorder(stream_response(sse(chunk("x", finish="stop"))))
    make_client(server, key=None).complete("hi")
    assert "authorization" not in server.requests[0].headers


def test_non_stream_call_reads_one_json_body() -> None:
    """stream=False reads one JSON body as a single chunk with usage."""
    body = chunk("whole", finish="length", usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    server = Recorder(httpx.Response(200, json=body))
    result = make_client(server).complete("hi", stream=False)
    assert result.text == "whole" and result.usage is not None and result.usage.total_tokens == 3
    assert "stream" not in json.loads(server.requests[0].content)


def test_json_answer_to_a_stream_request_degrades_gracefully() -> None:
    """A server that ignores stream=true and returns JSON still gives a complete result."""
    server = Recorder(httpx.Response(200, json=chunk("plain", finish="stop")))
    assert make_client(server).complete("hi").text == "plain"


def test_interleaved_choices_and_null_logprobs() -> None:
    """n=2 choices interleaved by index are kept apart; null logprobs do not crash."""
    server = Recorder(
        stream_response(
            sse(
                chunk("a", 0),
                chunk("x", 1),
                chunk("b", 0, "stop"),
                chunk("y", 1, "length"),
                chunk("", 0, logprobs=None),
            )
        )
    )
    result = make_client(server).complete("hi", n=2, logprobs=2)
    assert result.texts == ["ab", "xy"]
    assert [c.finish_reason for c in result.choices] == ["stop", "length"]
    assert any("logprobs" in note for note in result.notes)


def test_validation_happens_before_sending() -> None:
    """An out-of-range parameter raises ValidationError naming it, and nothing is sent."""
    server = Recorder(stream_response(sse()))
    with pytest.raises(ValidationError, match="temperature") as info:
        make_client(server).complete("hi", temperature=3)
    assert info.value.param == "temperature" and server.requests == []


@pytest.mark.parametrize(
    ("status", "cls", "hint"),
    [
        (400, BadRequestError, "max_tokens too big"),
        (401, AuthenticationError, "API key"),
        (404, NotFoundError, "model name"),
    ],
)
def test_status_errors_are_typed_with_server_fields(status: int, cls: type, hint: str) -> None:
    """4xx answers become the matching error with message, type, code, param and request id."""
    error = {
        "error": {"message": "max_tokens too big", "type": "invalid_request_error", "param": "max_tokens", "code": "c"}
    }
    server = Recorder(httpx.Response(status, json=error, headers={"x-request-id": "req-42"}))
    with pytest.raises(cls) as info:
        make_client(server).complete("hi")
    err = info.value
    assert (err.status_code, err.type, err.param, err.code, err.request_id) == (
        status,
        "invalid_request_error",
        "max_tokens",
        "c",
        "req-42",
    )
    assert hint in str(err) and "max_tokens too big" in str(err)
    assert err.partial is not None and err.partial.incomplete and err.partial.error is err
    assert len(server.requests) == 1  # 4xx other than 408/409/429 is not retried


def test_echoed_key_is_scrubbed_from_messages() -> None:
    """A gateway that echoes the key in its error text does not get it into our exception."""
    server = Recorder(httpx.Response(401, json={"error": {"message": f"invalid key {KEY}"}}))
    with pytest.raises(AuthenticationError) as info:
        make_client(server).complete("hi")
    assert KEY not in str(info.value) and "****" in str(info.value)


def test_key_with_copy_paste_damage_is_refused_without_echoing_it() -> None:
    """A key with a non-ASCII character fails before sending, and the message does not show it."""
    damaged = "sk-’abc-123"
    with pytest.raises(ConfigurationError, match="API key") as info:
        make_client(Recorder(httpx.Response(200, json={})), key=damaged)
    assert damaged not in str(info.value)


def test_chat_only_model_gets_a_completions_hint() -> None:
    """An error saying the model is chat-only explains that this is the Completions endpoint."""
    message = "This is a chat model and not supported in the v1/completions endpoint."
    server = Recorder(httpx.Response(404, json={"error": {"message": message}}))
    with pytest.raises(NotFoundError, match="chat-only"):
        make_client(server).complete("hi")


def test_html_error_page_is_summarised_not_dumped() -> None:
    """A proxy's HTML 502 page becomes one short sentence about the base URL / proxy."""
    page = "<html><body>" + "bad gateway " * 500 + "</body></html>"
    server = Recorder(httpx.Response(502, html=page))
    with pytest.raises(InternalServerError) as info:
        make_client(server, max_retries=0).complete("hi")
    assert "HTML page" in str(info.value) and len(str(info.value)) < 200


def test_html_200_means_the_base_url_is_a_web_page() -> None:
    """A 200 HTML answer explains that the base URL points at a web page."""
    server = Recorder(httpx.Response(200, html="<html>welcome</html>"))
    with pytest.raises(APIResponseError, match="web page"):
        make_client(server).complete("hi")


def test_non_json_body_is_a_response_error() -> None:
    """A non-stream answer that is not JSON raises APIResponseError."""
    server = Recorder(httpx.Response(200, text="hello", headers={"content-type": "text/plain"}))
    with pytest.raises(APIResponseError, match="not JSON"):
        make_client(server).complete("hi", stream=False)


def test_redirect_says_which_address_to_use() -> None:
    """A redirect is not followed silently; the error names the new address."""
    server = Recorder(httpx.Response(301, headers={"location": "https://new.example/v1/completions"}))
    with pytest.raises(APIResponseError, match=r"new\.example"):
        make_client(server).complete("hi")


def test_retries_5xx_then_succeeds() -> None:
    """A 503 followed by a good answer succeeds after one backoff sleep."""
    sleeps: list[float] = []
    server = Recorder(httpx.Response(503, json={"error": "busy"}), stream_response(sse(chunk("ok", finish="stop"))))
    assert make_client(server, sleeps=sleeps).complete("hi").text == "ok"
    assert len(server.requests) == 2 and sleeps == [0.5]


def test_retry_after_is_honoured_and_retries_are_bounded() -> None:
    """429 with Retry-After sleeps exactly that long, and gives up after max_retries with retry_after set."""
    sleeps: list[float] = []
    server = Recorder(httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after": "7"}))
    with pytest.raises(RateLimitError) as info:
        make_client(server, sleeps=sleeps).complete("hi")
    assert sleeps == [7.0, 7.0] and len(server.requests) == 3
    assert info.value.retry_after == 7.0


def test_connect_error_is_retried_then_reported() -> None:
    """Connection failures before any answer are retried, then reported with a what-to-check message."""
    sleeps: list[float] = []
    server = Recorder(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(APIConnectionError, match="check the base URL") as info:
        make_client(server, sleeps=sleeps).complete("hi")
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_stream_that_delivered_text_is_never_retried() -> None:
    """A connection dropped mid-stream raises APIConnectionError with the text so far, without retrying."""
    broken = httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        stream=Broken(sse(chunk("partial "), done=False), httpx.RemoteProtocolError("peer closed connection")),
    )
    server = Recorder(broken)
    with pytest.raises(APIConnectionError, match="broke before the answer was complete") as info:
        make_client(server).complete("hi")
    assert len(server.requests) == 1
    partial = info.value.partial
    assert partial is not None and partial.text == "partial " and partial.incomplete


def test_read_timeout_mid_stream_keeps_the_partial() -> None:
    """A read timeout after some text is an APITimeoutError carrying that text."""
    slow = httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        stream=Broken(sse(chunk("so far"), done=False), httpx.ReadTimeout("timed out")),
    )
    with pytest.raises(APITimeoutError, match="read timeout") as info:
        make_client(Recorder(slow)).complete("hi")
    assert info.value.partial is not None and info.value.partial.text == "so far"


def test_eof_without_done_after_all_choices_finished_is_complete() -> None:
    """A stream that ends without [DONE] but with every choice finished is a normal result with a note."""
    result = make_client(Recorder(stream_response(sse(chunk("end", finish="stop"), done=False)))).complete("hi")
    assert not result.incomplete and any("[DONE]" in n for n in result.notes)


def test_eof_without_done_mid_answer_is_a_stream_error() -> None:
    """A stream that just stops raises StreamError with the partial text."""
    with pytest.raises(StreamError, match="ended before") as info:
        make_client(Recorder(stream_response(sse(chunk("half"), done=False)))).complete("hi")
    assert info.value.partial is not None and info.value.partial.text == "half"


def test_error_event_inside_the_stream() -> None:
    """An {"error": ...} event raises StreamAPIError with the text that came before it."""
    body = sse(chunk("before "), {"error": {"message": "overloaded", "type": "server_error"}})
    with pytest.raises(StreamAPIError, match="overloaded") as info:
        make_client(Recorder(stream_response(body))).complete("hi")
    assert info.value.partial is not None and info.value.partial.text == "before "


def test_keyboard_interrupt_keeps_the_partial_in_the_builder() -> None:
    """Ctrl-C during a stream propagates, and the caller's builder holds the flagged partial result."""
    request = CompletionRequest.build("m", "hi")
    builder = CompletionBuilder(request)

    def interrupt(completion: Any) -> None:
        raise KeyboardInterrupt

    server = Recorder(stream_response(sse(chunk("kept"), chunk("lost", finish="stop"))))
    with pytest.raises(KeyboardInterrupt):
        make_client(server).run(request, builder, on_update=interrupt)
    c = builder.completion
    assert c.text == "kept" and c.incomplete and isinstance(c.error, KeyboardInterrupt)


def test_total_timeout_is_enforced_between_chunks() -> None:
    """A total deadline that has passed stops the stream with APITimeoutError and the partial."""
    from vman_magic.core.config import Timeout

    body = sse(chunk("a"), done=False)
    server = Recorder(
        httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Broken(body, AssertionError("unreached"))
        )
    )
    with pytest.raises(APITimeoutError, match="total timeout") as info:
        make_client(server, timeout=Timeout(total=0.0)).complete("hi")
    assert info.value.partial is not None and info.value.partial.text == "a"


def test_models_lists_ids() -> None:
    """models() returns the ids from GET /v1/models."""
    server = Recorder(
        httpx.Response(200, json={"object": "list", "data": [{"id": "vman-demo"}, {"id": "gpt-3.5-turbo-instruct"}]})
    )
    assert make_client(server).models() == ["vman-demo", "gpt-3.5-turbo-instruct"]
    assert server.requests[0].method == "GET" and server.requests[0].url.path == "/v1/models"


def test_repr_and_context_manager_do_not_leak_the_key() -> None:
    """The client's repr shows the base URL and model, never the key; close() is idempotent."""
    with make_client(Recorder(httpx.Response(200, json={}))) as client:
        assert KEY not in repr(client) and "api.vman.example" in repr(client)
    client.close()


def test_debug_log_has_url_status_and_timings_but_no_key(caplog: pytest.LogCaptureFixture) -> None:
    """DEBUG records name the method, URL, status and timings, and never the key or its header."""
    import logging

    server = Recorder(stream_response(sse(chunk("x", finish="stop"))))
    with caplog.at_level(logging.DEBUG, logger="vman_magic"):
        make_client(server).complete("hi")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "vman_magic")
    assert "POST https://api.vman.example/v1/completions -> 200" in text and "total" in text
    assert KEY not in caplog.text and "Bearer" not in caplog.text
