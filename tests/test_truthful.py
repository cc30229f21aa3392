"""Never report a cut-short answer as complete, say what was not honoured, and keep figures and errors true.

Against the demo server's fault knobs (``cut_short``, ``bom``,
``bad_json_burst``, ``rejected``, ...), which imitate what real servers do
(tests/peers checks the real ones): llama.cpp ends a stream it cut short with
``[DONE]`` and no finish reason; some servers send no usage, ignore ``n`` or
``stop``, or answer a request they will never accept with the same 500.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import vman_magic
from vman_magic import BadRequestError, InternalServerError, StreamError
from vman_magic.client.answers import one_line
from vman_magic.client.sse import SSEDecoder
from vman_magic.core.render import footer_text
from vman_magic.testing import sse_body, url

SEEDED = {"model": "vman-demo", "max_tokens": 8, "seed": 3, "temperature": 1.0}


def test_stream_ending_without_a_finish_reason_is_incomplete(demo_server: Any) -> None:
    """[DONE] after choices with no finish reason: incomplete, no error, and the footer says it was cut short."""
    c = vman_magic.complete("Once", base_url=url(demo_server, fault="cut_short"), **SEEDED)
    assert c.incomplete and c.error is None and c.finish_reason is None
    assert c.cut_short and c.cut_short.startswith("cut short by the server")
    assert c.text == vman_magic.complete("Once", base_url=demo_server.base_url, **SEEDED).text[: len(c.text)]
    assert "⚠ incomplete: cut short by the server" in footer_text(c)
    whole = vman_magic.complete("Once", base_url=demo_server.base_url, **SEEDED)
    assert not whole.incomplete and whole.cut_short is None


def test_batch_counts_cut_answers_as_incomplete_not_done(demo_server: Any) -> None:
    """complete_many: cut-short items are neither done nor failed, and the summary says how many."""
    results = vman_magic.complete_many(
        ["a", "b", "c"], base_url=url(demo_server, fault="cut_short"), stream=True, progress=False, **SEEDED
    )
    assert results.incomplete == [0, 1, 2] and results.failed == []
    assert str(results).startswith("3 prompts: 0 done, 3 incomplete (cut short by the server)")


def test_over_and_sweep_say_how_many_were_cut(vman_shell: InteractiveShell, demo_server: Any, capsys: Any) -> None:
    """--over's summary and --sweep's closing line count the cut answers instead of calling them done."""
    vman_shell.user_ns["qs"] = ["sea", "sky"]
    cut = url(demo_server, fault="cut_short")
    try:
        assert vman_shell.run_cell(f"%%complete --over qs -o r --base-url {cut} --max-tokens 8\n{{item}}").success
    finally:
        vman_shell.user_ns.pop("qs")
    assert "2 prompts: 0 done, 2 incomplete (cut short by the server)" in capsys.readouterr().out
    assert vman_shell.run_cell(f"%%complete --sweep temperature=0,1 --base-url {cut} --max-tokens 8\nThe").success
    out = capsys.readouterr().out
    assert "2 of 2 settings incomplete (cut short by the server): temperature=0.0; temperature=1.0" in out


def test_good_events_before_a_malformed_one_reach_the_result(demo_server: Any) -> None:
    """Three good events and a bad one in one network read: the error is raised, the three texts are kept."""
    with pytest.raises(StreamError, match="not JSON") as info:
        vman_magic.complete("Once", base_url=url(demo_server, fault="bad_json_burst"), **SEEDED)
    partial = info.value.partial
    assert partial is not None and partial.incomplete and partial.chunks == 3
    whole = vman_magic.complete("Once", base_url=demo_server.base_url, **SEEDED)
    assert partial.text and whole.text.startswith(partial.text)


def test_decoder_returns_good_events_then_raises() -> None:
    """feed() returns the events before a bad one; raise_pending() (or the next feed) raises its error."""
    good = {"id": "c", "choices": [{"index": 0, "text": "x"}]}
    body = sse_body([good, good, '{"broken'], done=False)
    decoder = SSEDecoder()
    assert decoder.feed(body) == [good, good]
    with pytest.raises(StreamError):
        decoder.raise_pending()
    assert decoder.done
    only_bad = SSEDecoder()
    with pytest.raises(StreamError):
        only_bad.feed(sse_body(['{"broken'], done=False))


@pytest.mark.parametrize("cut", range(6))
def test_one_leading_bom_is_ignored_even_split(cut: int) -> None:
    """A UTF-8 byte-order mark before the first event is dropped, wherever the first read ends; a second is not."""
    good = {"id": "c", "choices": [{"index": 0, "text": "x"}]}
    body = b"\xef\xbb\xbf" + sse_body([good])
    decoder = SSEDecoder()
    assert decoder.feed(body[:cut]) + decoder.feed(body[cut:]) == [good] and decoder.done
    twice = SSEDecoder()
    assert twice.feed(b"\xef\xbb\xbf" + body) == [] and twice.done  # a second BOM spoils the first field name


def test_bom_from_the_server_loses_no_event(demo_server: Any) -> None:
    """With a BOM before its first event, the demo's answer is the same text as without."""
    c = vman_magic.complete("Once", base_url=url(demo_server, fault="bom"), **SEEDED)
    assert not c.incomplete and c.text == vman_magic.complete("Once", base_url=demo_server.base_url, **SEEDED).text


def test_tokens_are_counted_by_the_client_when_the_stream_has_no_usage(demo_server: Any) -> None:
    """No usage in the stream: one token per text event, marked as the client's count in the result and footer."""
    c = vman_magic.complete("Once", base_url=demo_server.base_url, stream_options={"include_usage": False}, **SEEDED)
    assert c.usage is not None and c.usage.counted_by_client and c.usage.completion_tokens == c.chunks == 8
    assert "8 tokens (counted by the client" in footer_text(c)
    assert "counted_by_client" not in c.to_dict()["usage"]
    served = vman_magic.complete("Once", base_url=demo_server.base_url, **SEEDED)
    assert served.usage is not None and not served.usage.counted_by_client


def test_speed_only_for_streams_of_two_chunks_or_more(demo_server: Any) -> None:
    """A streamed answer shows tok/s; a non-streamed one shows its total time instead."""
    streamed = vman_magic.complete("Once", base_url=demo_server.base_url, **SEEDED)
    assert streamed.tokens_per_second is not None and "tok/s" in footer_text(streamed)
    whole = vman_magic.complete("Once", base_url=demo_server.base_url, stream=False, **SEEDED)
    assert whole.tokens_per_second is None
    assert "tok/s" not in footer_text(whole) and " total" in footer_text(whole)
    one = vman_magic.complete("Once", base_url=demo_server.base_url, **{**SEEDED, "max_tokens": 1})
    assert one.chunks == 1 and one.tokens_per_second is None


def test_parameters_not_honoured_get_one_note_each(demo_server: Any) -> None:
    """An answer that shows a parameter was ignored gets a note naming it; an honoured one gets none."""
    fine = vman_magic.complete("Once", base_url=demo_server.base_url, n=2, echo=True, stop=["\n"], **SEEDED)
    assert fine.notes == []
    from vman_magic.core.models import CompletionBuilder, CompletionRequest

    request = CompletionRequest.build("m", "Hi", stream=False, n=2, echo=True, stop=["x"], logprobs=1)
    builder = CompletionBuilder(request)
    builder.add({"id": "c", "choices": [{"index": 0, "text": " no x here", "finish_reason": "length"}]})
    c = builder.finish()
    notes = " | ".join(c.notes)
    assert "n=2 was requested but the server returned 1 choice(s)" in notes
    assert "echo was requested" in notes and "logprobs=1 was requested" in notes
    assert "runs past the stop sequence 'x'" in notes
    assert len(c.notes) == 4 and not c.incomplete


def test_empty_answer_with_stop_and_no_tokens_gets_a_note() -> None:
    """Empty text, finish 'stop', zero completion tokens: a note suggests the server failed quietly."""
    from vman_magic.core.models import CompletionBuilder, CompletionRequest

    builder = CompletionBuilder(CompletionRequest.build("m", "Hi", max_tokens=5))
    builder.add({"id": "c", "choices": [{"index": 0, "finish_reason": "stop"}], "usage": {"completion_tokens": 0}})
    c = builder.finish()
    assert any("no text and finish reason 'stop'" in n for n in c.notes) and not c.incomplete


def test_one_line_cuts_on_a_word_boundary() -> None:
    """Long server text is cut between words with "..."; a word longer than half the line is cut inside."""
    text = "word " * 100
    cut = one_line(text, limit=50)
    assert cut.endswith("word...") and len(cut) <= 50
    assert one_line("x" * 100, limit=20) == "x" * 17 + "..."


def test_errors_keep_the_whole_body_and_name_only_our_parameters(demo_server: Any) -> None:
    """.status_code, .body and .server_message carry the whole answer; the hint names no foreign parameter."""
    with pytest.raises(BadRequestError) as info:
        vman_magic.complete("Once", base_url=url(demo_server, status=400), model="vman-demo", max_tokens=2)
    err = info.value
    assert err.status_code == 400 and err.body and '"error"' in err.body
    assert err.server_message == "Invalid request (injected by status=400)."
    assert "change what the server's message names" in str(err)  # the demo's 400 names no parameter


def test_a_repeated_identical_500_is_a_rejection_not_a_hiccup(demo_server: Any) -> None:
    """The same 500 twice stops the retries and says the server rejected the request; a varying 500 is retried."""
    with pytest.raises(InternalServerError) as info:
        vman_magic.complete(
            "Once", base_url=url(demo_server, fault="rejected"), model="vman-demo", max_tokens=2, max_retries=5
        )
    message = str(info.value)
    assert "the server rejected this request" in message and "try again in a moment" not in message
    with pytest.raises(InternalServerError) as transient:
        vman_magic.complete(
            "Once", base_url=url(demo_server, status=500, retry_after=0), model="vman-demo", max_tokens=2
        )
    assert "try again in a moment" in str(transient.value)
