"""Against real servers, results tell the truth: cut answers are incomplete, ignored parameters noted, errors precise.

The cases issue 13 found by hand, now run on every CI run: llama.cpp's server
(by default) cuts a running stream short when another request arrives;
it ignores ``n``, drops the echoed prompt when streaming, sends no usage in a
stream, answers a list of prompts with the same empty 500, and ends a stream
whose prompt is longer than its context before the first event; LiteLLM's
mock ignores ``stop``; through LiteLLM the context overflow becomes empty text
with finish reason "stop".
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from peer_servers import LLAMA_MODEL, MOCK_MODEL, Peer

import vman_magic
from vman_magic import BadRequestError, Completion, InternalServerError, StreamError, VmanError
from vman_magic.core.render import footer_text

LONG_PROMPT = "word " * 700  # the servers run with a 512-token context


def complete(peer: Peer, prompt: Any = "Once upon a time", **params: Any) -> Completion:
    return vman_magic.complete(prompt, base_url=peer.base_url, model=peer.model, api_key=peer.api_key, **params)


def test_over_on_an_interrupting_server_counts_only_finished_answers_as_done(
    peer_shell: InteractiveShell, llama_interrupting: Peer, capsys: Any
) -> None:
    """The issue's case: --over 4 items at once on llama.cpp's default server; cut answers are not 'done'."""
    peer_shell.user_ns["qs"] = ["sea", "sky", "river", "forest"]
    try:
        cell = f"%%complete --over qs -o r --base-url {llama_interrupting.base_url} -m {LLAMA_MODEL} --max-tokens 24\nThe {{item}} is"
        assert peer_shell.run_cell(cell).success
    finally:
        peer_shell.user_ns.pop("qs")
    r = peer_shell.user_ns["r"]
    finished = [c for c in r if c.finish_reason is not None and not c.incomplete]
    assert len(finished) < 4, "the server did not cut any stream short: the test cannot see the bug"
    assert all(c.incomplete for c in r if c not in finished)
    out = capsys.readouterr().out
    assert f"4 prompts: {len(finished)} done" in out
    cut = [c for c in r if c.cut_short]
    if cut:  # llama.cpp ended these with [DONE] (the others lost their connection: failed)
        assert f"{len(cut)} incomplete (cut short by the server)" in out


def test_complete_many_streams_on_an_interrupting_server_are_never_complete_when_cut(llama_interrupting: Peer) -> None:
    """complete_many(stream=True) of 4 on llama.cpp's default server: every item without a finish reason is incomplete."""
    results = vman_magic.complete_many(
        ["The sea is", "The sky is", "A river is", "A forest is"], base_url=llama_interrupting.base_url,
        model=LLAMA_MODEL, max_tokens=24, stream=True, concurrency=4, progress=False,
    )  # fmt: skip
    assert any(c.incomplete for c in results)
    for c in results:
        assert c.incomplete == (c.finish_reason is None or c.error is not None), c
    tally = results.tally()
    assert tally.done == sum(not c.incomplete for c in results)


def test_a_stream_cut_by_another_request_is_incomplete(llama_interrupting: Peer) -> None:
    """A second request while a stream runs: the first result is incomplete, never a complete short answer."""
    first_text = threading.Event()
    outcome: dict[str, Any] = {}

    def stream() -> None:
        def seen(c: Completion) -> None:
            if c.text:
                first_text.set()

        try:
            outcome["c"] = vman_magic.complete(
                "Once upon a time", base_url=llama_interrupting.base_url, model=LLAMA_MODEL, max_tokens=200,
                on_update=seen,
            )  # fmt: skip
        except VmanError as exc:
            outcome["c"] = exc.partial

    thread = threading.Thread(target=stream)
    thread.start()
    assert first_text.wait(120)
    complete(llama_interrupting, "Hi", max_tokens=2, stream=False)
    thread.join(120)
    c = outcome["c"]
    assert c is not None and c.incomplete and c.text
    if c.error is None:  # ended with [DONE]: the footer says why it is incomplete
        assert c.cut_short and "⚠ incomplete: cut short by the server" in footer_text(c)


def test_llama_stream_tokens_are_counted_by_the_client(llama: Peer) -> None:
    """llama.cpp sends no usage in a stream: the result counts the streamed tokens and says so."""
    c = complete(llama, max_tokens=8, temperature=0)
    assert c.usage is not None and c.usage.counted_by_client and c.usage.completion_tokens == 8
    assert "8 tokens (counted by the client" in footer_text(c) and "tok/s" in footer_text(c)
    whole = complete(llama, max_tokens=8, temperature=0, stream=False)
    assert whole.usage is not None and not whole.usage.counted_by_client and whole.usage.completion_tokens == 8
    assert whole.tokens_per_second is None and "tok/s" not in footer_text(whole)


def test_parameters_llama_ignores_are_noted(llama: Peer) -> None:
    """n=2 gives one choice and a streamed echo no prompt: one note each; non-streamed echo is honoured."""
    c = complete(llama, max_tokens=4, temperature=1, n=2)
    assert len(c.choices) == 1 and any("n=2 was requested but the server returned 1 choice" in n for n in c.notes)
    echoed = complete(llama, max_tokens=4, echo=True)
    assert any("echo was requested" in n and "--no-stream" in n for n in echoed.notes)
    honoured = complete(llama, max_tokens=4, echo=True, stream=False)
    assert honoured.text.startswith("Once upon a time") and honoured.notes == []


def test_parameters_the_litellm_mock_ignores_are_noted(litellm_mock: Peer) -> None:
    """The mock answers its fixed text whatever stop and logprobs say; the result says so."""
    c = complete(litellm_mock, max_tokens=20, stop=["from"], logprobs=2, stream=False)
    notes = " | ".join(c.notes)
    assert "runs past the stop sequence 'from'" in notes and "logprobs=2 was requested" in notes


def test_list_of_prompts_on_llama_is_a_rejection(llama: Peer) -> None:
    """llama.cpp answers a list of prompts with the same 500 each time: not 'try again in a moment'."""
    with pytest.raises(InternalServerError) as info:
        complete(llama, ["The sea is", "The sky is"], max_tokens=2, stream=False)
    assert "the server rejected this request" in str(info.value) and "try again" not in str(info.value)
    assert info.value.status_code == 500 and info.value.body is not None


def test_prompt_longer_than_the_context(llama: Peer, litellm_llama: Peer) -> None:
    """llama.cpp: the 400 names no parameter of ours, the stream suggests --no-stream; LiteLLM's empty 'stop' gets a note."""
    with pytest.raises(BadRequestError) as info:
        complete(llama, LONG_PROMPT, max_tokens=5, stream=False)
    message = str(info.value)
    assert "change messages" not in message and "change what the server's message names" in message
    assert info.value.server_message is not None and "maximum context length" in info.value.server_message
    with pytest.raises(StreamError, match="--no-stream"):
        complete(llama, LONG_PROMPT, max_tokens=5)
    quiet = complete(litellm_llama, LONG_PROMPT, max_tokens=5)
    assert quiet.text == "" and any("no text and finish reason 'stop'" in n for n in quiet.notes)


def test_litellm_errors_never_say_change_none(litellm_mock: Peer, litellm_key: Peer) -> None:
    """LiteLLM's error bodies carry param "None": no hint tells the user to change it."""
    with pytest.raises(VmanError) as unknown:
        vman_magic.complete("Hi", base_url=litellm_mock.base_url, model="no-such-model", max_tokens=2)
    with pytest.raises(VmanError) as no_key:
        vman_magic.complete("Hi", base_url=litellm_key.base_url, model=MOCK_MODEL, api_key="")
    for err in (unknown.value, no_key.value):
        assert "change None" not in str(err) and err.status_code in (400, 401, 404)  # type: ignore[attr-defined]
