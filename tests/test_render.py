"""Tests for the text and escaped-HTML views of a Completion."""

from __future__ import annotations

from typing import Any

from vman_magic.core.errors import APIConnectionError
from vman_magic.core.models import Completion, CompletionBuilder, CompletionRequest
from vman_magic.core.render import completion_html, completion_text, footer_text

USAGE = {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}


def _completion(texts: list[str], *, n: int | None = None, prompt: Any = "p", **extra: Any) -> Completion:
    """A finished Completion built through the real builder from one non-stream chunk."""
    request = CompletionRequest.build("vman-demo", prompt, stream=False, n=n, **extra)
    builder = CompletionBuilder(request)
    builder.add(
        {
            "id": "cmpl-1",
            "model": "vman-demo",
            "choices": [{"index": i, "text": t, "finish_reason": "length"} for i, t in enumerate(texts)],
            "usage": USAGE,
        }
    )
    return builder.finish()


def test_model_text_is_always_escaped() -> None:
    """Script tags, event-handler attributes and entities in model text are escaped in HTML."""
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)> a &amp; b"
    for c in (_completion([evil]), _completion([evil, evil], n=2)):
        out = completion_html(c)
        assert "<script>" not in out and "<img" not in out
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
        assert "&lt;img src=x onerror=alert(2)&gt;" in out
        assert "a &amp;amp; b" in out


def test_whitespace_is_preserved_and_theme_variables_used() -> None:
    """Text boxes use pre-wrap and JupyterLab CSS variables with fallbacks."""
    out = completion_html(_completion(["line 1\n    indented"]))
    assert "white-space:pre-wrap" in out
    assert "line 1\n    indented" in out
    assert "var(--jp-ui-font-color2,#777)" in out
    assert "var(--jp-border-color2,#ddd)" in completion_html(_completion(["a", "b"], n=2))


def test_several_choices_sit_side_by_side() -> None:
    """n > 1 renders a grid with one labelled box per choice."""
    c = _completion(["one", "two", "three"], n=3)
    out = completion_html(c)
    assert "display:grid" in out
    assert out.count('class="vman-choice"') == 3
    text = completion_text(c)
    assert "[choice 0]\none" in text and "[choice 2]\nthree" in text


def test_list_prompts_are_labelled_by_prompt_and_choice() -> None:
    """With several prompts each box says which prompt and which choice it is."""
    c = _completion(["a0", "a1", "b0", "b1"], n=2, prompt=["A", "B"])
    assert "[prompt 1 · choice 0]\nb0" in completion_text(c)


def test_footer_shows_finish_usage_and_speed() -> None:
    """The footer states finish reason, token counts, first-token time and model."""
    c = _completion(["hello"])
    line = footer_text(c)
    assert "finish: length" in line
    assert "7 tokens (+3 prompt)" in line
    assert "first token" in line
    assert "vman-demo" in line
    assert completion_text(c).startswith("hello\n── ")


def test_incomplete_results_and_notes_are_marked() -> None:
    """A failed result says incomplete with the error; notes are listed in text and HTML."""
    request = CompletionRequest.build("vman-demo", "p", logprobs=2)
    builder = CompletionBuilder(request)
    builder.add({"id": "x", "choices": [{"index": 0, "text": "part<b>"}]})
    c = builder.fail(APIConnectionError("the server closed the connection <mid-stream>"))
    c.notes.append("logprobs were <dropped>")
    text, out = completion_text(c), completion_html(c)
    assert "⚠ incomplete: APIConnectionError: the server closed the connection <mid-stream>" in text
    assert "note: logprobs were <dropped>" in text
    assert "incomplete: APIConnectionError: the server closed the connection &lt;mid-stream&gt;" in out
    assert "part&lt;b&gt;" in out and "logprobs were &lt;dropped&gt;" in out


def test_interrupted_result_says_interrupted() -> None:
    """A KeyboardInterrupt shows as 'incomplete: interrupted'."""
    builder = CompletionBuilder(CompletionRequest.build("vman-demo", "p"))
    c = builder.fail(KeyboardInterrupt())
    assert "incomplete: interrupted" in completion_text(c)


def test_mimebundle_has_text_and_html() -> None:
    """Completion._repr_mimebundle_ uses these renderers."""
    bundle = _completion(["x"])._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
