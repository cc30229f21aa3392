"""The client against the package's own demo server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

import vman_magic
from vman_magic.client import client as _client
from vman_magic.client.client import AsyncClient, Client
from vman_magic.core.config import clear_session, set_ipython_config
from vman_magic.core.errors import APIConnectionError, StreamError
from vman_magic.core.models import Completion, CompletionBuilder, CompletionRequest
from vman_magic.testing import serve, url

SEEDED = {"max_tokens": 24, "temperature": 0.9, "seed": 1234}


@pytest.fixture
def client(demo_server: Any) -> Iterator[Client]:
    with Client(base_url=demo_server.base_url, model="vman-demo") as c:
        yield c


def _summary(c: Completion) -> tuple[Any, ...]:
    return (c.texts, [ch.finish_reason for ch in c.choices], c.usage)


def test_stream_and_non_stream_results_are_equal(client: Client) -> None:
    """The same seeded request gives the same texts, finish reasons and usage streamed or not."""
    streamed = client.complete("Once upon a time", n=2, **SEEDED)
    plain = client.complete("Once upon a time", n=2, stream=False, **SEEDED)
    assert streamed.text and not streamed.incomplete
    assert _summary(streamed) == _summary(plain)


def test_list_prompts_times_n_choices(client: Client) -> None:
    """Two prompts with n=2 give four finished choices with indices 0..3."""
    result = client.complete(["The cat", "The dog"], n=2, max_tokens=8, seed=1)
    assert [c.index for c in result.choices] == [0, 1, 2, 3]
    assert all(c.finish_reason in ("stop", "length") for c in result.choices)


def test_logprobs_arrive_for_every_token(client: Client) -> None:
    """With logprobs=2 every choice carries tokens whose text adds up to the choice's text."""
    result = client.complete("The weather today", logprobs=2, max_tokens=10, seed=3)
    lp = result.choices[0].logprobs
    assert lp is not None and "".join(lp.tokens) == result.text
    assert len(lp.token_logprobs) == len(lp.tokens)
    # OpenAI semantics: the K most likely tokens, plus the sampled one when it is not among them
    assert all(top is None or 1 <= len(top) <= 3 for top in lp.top_logprobs)
    assert not result.notes


def test_on_update_sees_growing_text(client: Client) -> None:
    """on_update is called per chunk with the result so far, ending with the full text."""
    seen: list[str] = []
    result = client.complete("Hello", max_tokens=12, seed=5, on_update=lambda c: seen.append(c.text))
    assert len(seen) >= 2 and seen[-1] == result.text
    assert all(seen[i + 1].startswith(seen[i]) for i in range(len(seen) - 1))


def test_models_lists_the_demo_model(client: Client) -> None:
    """models() lists vman-demo."""
    assert "vman-demo" in client.models()


def test_unknown_model_is_not_found_with_a_hint(demo_server: Any) -> None:
    """An unknown model is a NotFoundError (or 400) that tells the user to check the model name."""
    with (
        Client(base_url=demo_server.base_url, model="no-such-model") as c,
        pytest.raises(vman_magic.APIStatusError) as info,
    ):
        c.complete("hi", max_tokens=2)
    assert info.value.status_code in (400, 404) and "no-such-model" in str(info.value)


def test_module_level_complete_reuses_one_pool(demo_server: Any) -> None:
    """Two complete() calls for the same server share one pooled client."""
    first = vman_magic.complete("One", base_url=demo_server.base_url, max_tokens=4, seed=1, model="vman-demo")
    pooled = dict(_client._clients._items)
    second = vman_magic.complete("Two", base_url=demo_server.base_url, max_tokens=4, seed=1, model="vman-demo")
    assert first.text and second.text
    assert dict(_client._clients._items) == pooled


def test_acomplete_and_async_client(demo_server: Any) -> None:
    """acomplete and AsyncClient give the same seeded result as the sync client."""

    async def main() -> tuple[Completion, Completion]:
        a = await vman_magic.acomplete("Async", base_url=demo_server.base_url, model="vman-demo", **SEEDED)
        async with AsyncClient(base_url=demo_server.base_url, model="vman-demo") as c:
            b = await c.complete("Async", stream=False, **SEEDED)
        return a, b

    a, b = asyncio.run(main())
    with Client(base_url=demo_server.base_url, model="vman-demo") as c:
        assert _summary(a) == _summary(b) == _summary(c.complete("Async", **SEEDED))


def test_no_base_url_starts_the_demo_server(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With no base URL anywhere, complete() talks to the auto-started demo model and logs one notice."""
    for name in ("VMAN_BASE_URL", "OPENAI_BASE_URL", "VMAN_MODEL", "VMAN_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    clear_session()
    set_ipython_config({})
    with caplog.at_level(logging.INFO, logger="vman_magic"):
        result = vman_magic.complete("Once upon a time", max_tokens=6)
        again = vman_magic.complete("Once upon a time", max_tokens=6)
    assert result.model == "vman-demo" and result.text and again.text
    from vman_magic.demo.launch import demo_notice, demo_running

    assert demo_running() and "127.0.0.1" in demo_notice(address=True) and "127.0.0.1" not in demo_notice()
    notices = [r for r in caplog.records if "offline demo model" in r.getMessage()]
    assert len(notices) <= 1  # logged once per process (may have happened in an earlier test)


def _faulty(demo_server: Any, **knobs: Any) -> Client:
    return Client(base_url=url(demo_server, **knobs), model="vman-demo", max_retries=0)


@pytest.mark.parametrize(
    "fault", ["no_space", "crlf", "keepalive", "split_utf8", "usage_chunk", "long_line", "chinese"]
)
def test_stream_variants_decode_like_the_plain_stream(demo_server: Any, fault: str) -> None:
    """Every legal variation of the SSE format gives a complete result with intact text."""
    with _faulty(demo_server, fault=fault) as c:
        result = c.complete("Tell me", max_tokens=20, seed=9)
    assert result.text and not result.incomplete and "\ufffd" not in result.text


def test_json_answer_to_a_stream_request(demo_server: Any) -> None:
    """A server that answers a stream request with one JSON body still gives the full result."""
    with (
        _faulty(demo_server, fault="json_when_stream") as c,
        Client(base_url=demo_server.base_url, model="vman-demo") as plain,
    ):
        assert _summary(c.complete("Same", **SEEDED)) == _summary(plain.complete("Same", **SEEDED))


def test_dropped_stream_keeps_the_partial_and_is_not_retried(demo_server: Any) -> None:
    """A connection dropped mid-stream raises APIConnectionError with the text so far, sent once."""
    with Client(base_url=url(demo_server, fault="drop_mid_stream"), model="vman-demo") as c:
        before = demo_server.stats.completions
        with pytest.raises(APIConnectionError) as info:
            c.complete("Tell me a story", max_tokens=30, seed=2)
        assert demo_server.stats.completions - before == 1
    partial = info.value.partial
    assert partial is not None and partial.incomplete and partial.text


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("no_done_unfinished", StreamError),
        ("error_in_stream_strcode", vman_magic.StreamAPIError),
        ("error_in_stream", vman_magic.StreamAPIError),
        ("bad_json", vman_magic.APIResponseError),
    ],
)
def test_broken_answers_raise_typed_errors_with_partial(demo_server: Any, fault: str, error: type) -> None:
    """Streams that stop early or report an error, and bad JSON bodies, raise typed errors with .partial."""
    stream = fault != "bad_json"  # the streamed bad_json case is test_bad_json_event_in_a_stream
    with _faulty(demo_server, fault=fault) as c, pytest.raises(error) as info:
        c.complete("Tell me", max_tokens=30, seed=4, stream=stream)
    assert info.value.partial is not None and info.value.partial.incomplete


def test_stream_without_done_but_finished_is_complete(demo_server: Any) -> None:
    """A finished stream without [DONE] is a complete result with a note."""
    with _faulty(demo_server, fault="no_done") as c:
        result = c.complete("Tell me", max_tokens=10, seed=4)
    assert not result.incomplete and any("[DONE]" in n for n in result.notes)


def test_html_answers(demo_server: Any) -> None:
    """A 200 HTML page and a proxy's 502 HTML page give short, actionable messages."""
    with _faulty(demo_server, fault="html_200") as c, pytest.raises(vman_magic.APIResponseError, match="web page"):
        c.complete("hi", max_tokens=2)
    with _faulty(demo_server, html_error=502) as c, pytest.raises(vman_magic.InternalServerError, match="HTML page"):
        c.complete("hi", max_tokens=2)


def test_rate_limit_is_retried_after_the_servers_delay(demo_server: Any) -> None:
    """A 429 with Retry-After: 0 is retried and then succeeds."""
    with Client(base_url=url(demo_server, ratelimit=1, retry_after=0), model="vman-demo", max_retries=2) as c:
        assert c.complete("hi", max_tokens=3, seed=1).text


def test_read_timeout_on_a_hanging_server(demo_server: Any) -> None:
    """A server that sends headers and then nothing trips the read timeout."""
    hanging = Client(base_url=url(demo_server, fault="hang"), model="vman-demo", timeout=0.5, max_retries=0)
    with hanging, pytest.raises(vman_magic.APITimeoutError, match="read timeout"):
        hanging.complete("hi", max_tokens=3)


def test_async_cancel_against_a_slow_stream(demo_server: Any) -> None:
    """Cancelling an async run mid-stream keeps the text so far in the caller's builder."""
    request = CompletionRequest.build("vman-demo", "Tell me a long story", max_tokens=200, seed=8)
    builder = CompletionBuilder(request)

    async def main() -> None:
        got_text = asyncio.Event()
        async with AsyncClient(base_url=url(demo_server, tps=20), model="vman-demo") as c:
            task = asyncio.ensure_future(c.run(request, builder, on_update=lambda _: got_text.set()))
            await got_text.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert builder.completion.incomplete and builder.completion.text
    assert isinstance(builder.completion.error, asyncio.CancelledError)


def test_wrong_key_is_401_and_never_shown(demo_server: Any) -> None:
    """A wrong key gives AuthenticationError whose text and traceback never contain the key."""
    wrong = "sk-vman-WRONG-9d8c7b6a5f4e"
    right = "sk-vman-right-0123456789"
    with serve(api_key=right) as server:
        with (
            Client(base_url=server.base_url, api_key=wrong, model="vman-demo") as c,
            pytest.raises(vman_magic.AuthenticationError) as info,
        ):
            c.complete("hi", max_tokens=2)
        with Client(base_url=server.base_url, api_key=right, model="vman-demo") as ok:
            assert ok.complete("hi", max_tokens=2).text is not None
    shown = "".join(traceback.format_exception(info.value)) + repr(info.value) + repr(info.value.partial)
    assert "API key" in shown and wrong not in shown


def test_key_absent_from_a_verbose_ipython_traceback(
    shell: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Even ``%xmode Verbose``, which prints every frame's locals, never shows the key."""
    wrong = "sk-vman-VERBOSE-1f2e3d4c5b6a"
    monkeypatch.setenv("VMAN_API_KEY", wrong)  # not a notebook variable: only our frames could show it
    with serve(api_key="sk-vman-other-key-000") as server:
        shell.user_ns["base"] = server.base_url
        shell.run_line_magic("xmode", "Verbose")
        try:
            shell.run_cell("import vman_magic\nvman_magic.complete('hi', base_url=base, model='vman-demo')")
        finally:
            shell.run_line_magic("xmode", "Context")
    out = capsys.readouterr()
    shown = out.out + out.err
    assert "AuthenticationError" in shown and wrong not in shown


def test_bad_json_event_in_a_stream(demo_server: Any) -> None:
    """A broken event mid-stream raises StreamError quoting it, with the text before it kept."""
    with _faulty(demo_server, fault="bad_json") as c, pytest.raises(StreamError, match="cmpl-broken") as info:
        c.complete("Tell me", max_tokens=30, seed=4)
    assert info.value.partial is not None and info.value.partial.text


def test_demo_server_starts_once_for_concurrent_callers() -> None:
    """Many threads asking for the demo server at once all get the same one."""
    from concurrent.futures import ThreadPoolExecutor

    from vman_magic.demo.launch import demo_base_url

    with ThreadPoolExecutor(8) as pool:
        urls = set(pool.map(lambda _: demo_base_url(), range(16)))
    assert len(urls) == 1 and next(iter(urls)).startswith("http://127.0.0.1:")
