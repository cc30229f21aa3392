"""Tests for the live view: streamed deltas, coalesced grid updates, footers."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from vman_magic.core.errors import APIConnectionError
from vman_magic.core.models import CompletionBuilder, CompletionRequest
from vman_magic.notebook.display import GRID_INTERVAL, STREAM_INTERVAL, LiveView, clean_stream_text


class CountingWriter(io.StringIO):
    """A text stream that counts flushes, i.e. stream messages a kernel would send."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


def _chunk(index: int, text: str, reason: str | None = None) -> dict[str, Any]:
    return {"id": "c", "model": "vman-demo", "choices": [{"index": index, "text": text, "finish_reason": reason}]}


def test_first_token_is_written_at_once_and_text_is_linear() -> None:
    """The first text is written on the first update; the written bytes equal the final text."""
    out = CountingWriter()
    request = CompletionRequest.build("vman-demo", "p")
    builder = CompletionBuilder(request)
    view = LiveView(request, rich=False, out=out)
    view.start()
    view.update(builder.completion)  # no text yet: nothing to write
    assert out.getvalue() == ""
    builder.add(_chunk(0, "春"))
    view.update(builder.completion)
    assert out.getvalue() == "春"
    for i in range(500):
        builder.add(_chunk(0, f" w{i}"))
        view.update(builder.completion)
    builder.add({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 501, "total_tokens": 502}})
    view.finish(builder.finish())
    text = builder.completion.text
    body, footer = out.getvalue().split("\n── ")
    assert body == text
    assert "501 tokens" in footer


def test_fast_stream_writes_are_bounded_by_rate_not_tokens() -> None:
    """2,000 chunks produce at most one write per coalescing interval (plus first and final)."""
    out = CountingWriter()
    request = CompletionRequest.build("vman-demo", "p")
    builder = CompletionBuilder(request)
    view = LiveView(request, rich=False, out=out)
    view.start()
    started = time.monotonic()
    for i in range(2000):
        builder.add(_chunk(0, f"t{i} "))
        view.update(builder.completion)
    elapsed = time.monotonic() - started
    view.finish(builder.finish())
    assert out.flushes <= 4 + elapsed / STREAM_INTERVAL
    assert out.flushes < 2000
    assert out.getvalue().startswith(builder.completion.text)


def test_control_characters_and_ansi_are_removed() -> None:
    """Carriage returns become newlines and ANSI/control escapes are dropped."""
    assert clean_stream_text("\x1b[31mred\x1b[0m\rX\r\nY\x07\x9b\x00\tZ") == "red\nX\nY\tZ"
    assert clean_stream_text("\x1b]0;title\x07ok") == "ok"


def test_split_carriage_return_newline_is_one_newline() -> None:
    """A "\\r\\n" split across two updates becomes a single newline."""
    out = CountingWriter()
    builder = CompletionBuilder(CompletionRequest.build("vman-demo", "p"))
    view = LiveView(builder.completion.request, rich=False, out=out)
    view.start()
    builder.add(_chunk(0, "a\r"))
    view.update(builder.completion)
    view._due = 0.0  # let the next update through without waiting for the clock
    builder.add(_chunk(0, "\nb"))
    view.update(builder.completion)
    assert out.getvalue() == "a\nb"


def test_interrupted_stream_shows_partial_text_and_marker() -> None:
    """finish() on a failed result writes the rest of the text and an incomplete marker."""
    out = CountingWriter()
    builder = CompletionBuilder(CompletionRequest.build("vman-demo", "p"))
    view = LiveView(builder.completion.request, rich=False, out=out)
    view.start()
    builder.add(_chunk(0, "partial"))
    view.update(builder.completion)
    builder.add(_chunk(0, " more"))
    view.finish(builder.fail(APIConnectionError("connection dropped")))
    assert out.getvalue().startswith("partial more\n── ⚠ incomplete: APIConnectionError: connection dropped")


def test_rich_single_choice_streams_text_and_displays_an_escaped_footer(shell: InteractiveShell) -> None:
    """In rich mode the text goes to stdout and the footer is one display with escaped HTML."""
    builder = CompletionBuilder(CompletionRequest.build("vman-demo", "p"))
    with capture_output() as cap:
        view = LiveView(builder.completion.request, rich=True)
        view.start()
        builder.add(_chunk(0, "<b>hi</b>", "stop"))
        view.update(builder.completion)
        view.finish(builder.finish())
    assert cap.stdout == "<b>hi</b>\n"
    assert len(cap.outputs) == 1
    footer = cap.outputs[0].data
    assert "finish: stop" in footer["text/plain"] and "finish: stop" in footer["text/html"]


def test_grid_updates_one_handle_bounded_by_rate_and_growth(shell: InteractiveShell) -> None:
    """n > 1 shows one display and replaces it; updates are few, escaped, and the last has the footer."""
    request = CompletionRequest.build("vman-demo", "p", n=2)
    builder = CompletionBuilder(request)
    with capture_output() as cap:
        view = LiveView(request, rich=True)
        view.start()
        started = time.monotonic()
        for i in range(2000):
            builder.add(_chunk(i % 2, f"<t{i}> "))
            view.update(builder.completion)
        elapsed = time.monotonic() - started
        view.finish(builder.finish())
    outputs = cap.outputs
    assert outputs[0].update is False
    assert all(o.update for o in outputs[1:])
    assert len(outputs) <= 3 + elapsed / GRID_INTERVAL
    final = outputs[-1].data
    assert "&lt;t1999&gt;" in final["text/html"] and "<t1999>" not in final["text/html"]
    assert 'class="vman-footer"' in final["text/html"]
    assert "[choice 1]" in final["text/plain"]


def test_terminal_grid_is_printed_once_at_the_end() -> None:
    """Without a kernel, several choices print as labelled blocks only when finished."""
    out = CountingWriter()
    request = CompletionRequest.build("vman-demo", ["A", "B"])
    builder = CompletionBuilder(request)
    view = LiveView(request, rich=False, out=out)
    view.start()
    builder.add(_chunk(0, "first"))
    builder.add(_chunk(1, "second"))
    view.update(builder.completion)
    assert out.getvalue() == ""
    view.finish(builder.finish())
    assert "[prompt 0 · choice 0]\nfirst" in out.getvalue()
    assert "[prompt 1 · choice 0]\nsecond" in out.getvalue()


def test_sink_gets_escaped_html_redraws_and_nothing_is_printed() -> None:
    """With a sink, one choice is redrawn as escaped HTML (first text at once, rate-bounded), never written to out."""
    out = CountingWriter()
    shown: list[str] = []
    request = CompletionRequest.build("vman-demo", "p")
    builder = CompletionBuilder(request)
    view = LiveView(request, rich=True, out=out, sink=shown.append)
    view.start()
    builder.add(_chunk(0, "<b>"))
    view.update(builder.completion)
    assert len(shown) == 1 and shown[0].startswith('<div class="vman-completion"><pre class="vman-text"')
    assert "&lt;b&gt;" in shown[0] and "<b>" not in shown[0]
    started = time.monotonic()
    for i in range(2000):
        builder.add(_chunk(0, f" w{i}"))
        view.update(builder.completion)
    elapsed = time.monotonic() - started
    view.finish(builder.finish())
    assert out.getvalue() == "" and out.flushes == 0
    assert len(shown) <= 3 + elapsed / GRID_INTERVAL
    assert "w1999" in shown[-1] and 'class="vman-footer"' in shown[-1]
    assert all('class="vman-footer"' not in html for html in shown[:-1])


def test_sink_shows_several_choices_side_by_side() -> None:
    """With n=2 the sink's final HTML has one labelled box per choice in a grid."""
    shown: list[str] = []
    request = CompletionRequest.build("vman-demo", "p", n=2)
    builder = CompletionBuilder(request)
    view = LiveView(request, rich=False, sink=shown.append)
    view.start()
    builder.add(_chunk(0, "left", "stop"))
    builder.add(_chunk(1, "right", "stop"))
    view.update(builder.completion)
    view.finish(builder.finish())
    final = shown[-1]
    assert 'class="vman-grid"' in final and final.count('class="vman-choice"') == 2
    assert "choice 0" in final and "choice 1" in final and "left" in final and "right" in final


def test_long_text_is_redrawn_only_after_growth_or_within_the_budget() -> None:
    """Once a redraw is large, a few more characters wait; a quarter more text is redrawn at once."""
    shown: list[str] = []
    builder = CompletionBuilder(CompletionRequest.build("vman-demo", "p"))
    view = LiveView(builder.completion.request, sink=shown.append)
    view.start()
    builder.add(_chunk(0, "x" * 100_000))
    view.update(builder.completion)
    assert len(shown) == 1
    view._due = 0.0  # past the rate limit: only growth or the budget may hold the redraw back
    builder.add(_chunk(0, "y" * 10))
    view.update(builder.completion)
    assert len(shown) == 1  # 100 kB at 20,000 chars/s: not re-sent for 10 more characters
    view._due = 0.0
    builder.add(_chunk(0, "z" * 30_000))
    view.update(builder.completion)
    assert len(shown) == 2 and shown[-1].endswith("z" * 30_000 + "</pre></div>")


def test_cancelled_result_footer_says_why_and_keeps_the_text() -> None:
    """A cancellation's message becomes the footer's reason; without one it says cancelled, never the type name."""
    for error, reason in [
        (asyncio.CancelledError("stopped by you after 3 tokens"), "stopped by you after 3 tokens"),
        (asyncio.CancelledError(), "cancelled"),
    ]:
        out = CountingWriter()
        builder = CompletionBuilder(CompletionRequest.build("vman-demo", "p"))
        view = LiveView(builder.completion.request, rich=False, out=out)
        view.start()
        builder.add(_chunk(0, "so far"))
        view.finish(builder.fail(error))
        assert out.getvalue().startswith(f"so far\n── ⚠ {reason}; the text so far is kept · ")
        assert "CancelledError" not in out.getvalue()
