"""The token-probability heatmap: escaping, one element per token, notes."""

from __future__ import annotations

import math
from html.parser import HTMLParser
from typing import Any

from vman_magic.core.heatmap import NO_LOGPROBS_NOTE, ProbabilityView, probability_bin
from vman_magic.core.models import CompletionBuilder, CompletionRequest

# Tags and attributes JupyterLab's sanitizer keeps for untrusted outputs (allowedTags and
# allowedAttributes["*"] in @jupyterlab/apputils' Sanitizer, the subset we use). <style> is
# dropped there: it only adds hover, and a click still pins a card without it.
SANITIZER_SAFE_TAGS = {"div", "span", "br", "em", "strong", "details", "summary", "table", "tr", "td"}
SANITIZER_SAFE_ATTRS = {"class", "style"}
TRUSTED_ONLY_TAGS = {"style"}


class _Spans(HTMLParser):
    """Collects tokens (chip text and style, card text) and every tag/attribute seen outside <style>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[dict[str, Any]] = []
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self._where: str | None = None  # "chip", "tip" or None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)
        found = dict(attrs)
        if tag == "summary" and found.get("class") == "vman-token":
            self.tokens.append({"style": found.get("style"), "text": "", "tip": ""})
            self._where = "chip"
        elif tag == "div" and found.get("class") == "vman-tip":
            self._where, self._depth = "tip", 0
        elif self._where == "tip" and tag == "div":
            self._depth += 1
        if self._where == "tip" and tag in ("div", "tr"):
            self.tokens[-1]["tip"] += "\n"

    def handle_endtag(self, tag: str) -> None:
        if tag == "summary" and self._where == "chip":
            self._where = None
        elif tag == "div" and self._where == "tip":
            if self._depth == 0:
                self._where = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._where == "chip":
            self.tokens[-1]["text"] += data
        elif self._where == "tip":
            self.tokens[-1]["tip"] += data + " "


def _lp_chunk(tokens: list[str], logprobs: list[float | None], index: int = 0) -> dict[str, Any]:
    top = [None if lp is None else {tok: lp, "<b>alt</b>": lp - 1.0} for tok, lp in zip(tokens, logprobs, strict=True)]
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "model": "vman-demo",
        "choices": [
            {
                "index": index,
                "text": "".join(tokens),
                "logprobs": {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": top},
                "finish_reason": None,
            }
        ],
    }


def _completion(*chunks: dict[str, Any], n: int = 1, logprobs: int | None = 2):
    builder = CompletionBuilder(CompletionRequest.build("vman-demo", "hi", n=n, logprobs=logprobs))
    for chunk in chunks:
        builder.add(chunk)
    return builder.finish()


def _parse(markup: str) -> _Spans:
    parser = _Spans()
    parser.feed(markup)
    parser.close()
    return parser


def test_model_text_is_escaped_and_one_span_per_token() -> None:
    """Tokens that look like HTML are shown as text, one token span each, never as markup."""
    tokens = ["<script>", "alert(1)", "</script>", "<img src=x onerror=alert(1)>", "&amp;", '"q"']
    c = _completion(_lp_chunk(tokens[:3], [-0.1, -0.5, -2.0]), _lp_chunk(tokens[3:], [-0.01, -3.0, -1.2]))
    markup = c.show_probabilities().html
    assert "<script>" not in markup and "<img" not in markup
    parsed = _parse(markup)
    assert [t["text"] for t in parsed.tokens] == tokens
    assert "script" not in parsed.tags and "img" not in parsed.tags


def test_html_uses_only_what_jupyterlab_sanitizer_keeps() -> None:
    """The heatmap relies only on tags and attributes that survive JupyterLab's HTML sanitizer."""
    c = _completion(_lp_chunk(["a", "\n", "  ", "b"], [-0.1, -0.2, -0.3, -5.0]))
    parsed = _parse(c.show_probabilities().html)
    assert parsed.tags <= SANITIZER_SAFE_TAGS | TRUSTED_ONLY_TAGS
    assert parsed.attrs <= SANITIZER_SAFE_ATTRS
    assert "title" not in parsed.attrs  # no slow, unstyled native tooltip


def test_cards_are_details_that_a_click_pins_and_the_style_sheet_adds_hover() -> None:
    """Each token is a <details>/<summary> (a click or tap opens it without script); <style> only adds hover."""
    c = _completion(_lp_chunk(["cat"], [math.log(0.5)]))
    markup = c.show_probabilities().html
    assert markup.count('<details class="vman-tok"') == 1 and "<summary" in markup
    assert ".vman-heatmap details.vman-tok:hover::details-content{content-visibility:visible}" in markup
    assert "<script" not in markup and "onclick" not in markup.lower()


def test_tooltip_lists_alternatives_with_probabilities() -> None:
    """Each token's title shows its probability and the top alternatives, escaped."""
    c = _completion(_lp_chunk(["cat"], [math.log(0.5)]))
    (span,) = _parse(c.show_probabilities().html).tokens
    assert "p = 0.500 · logprob -0.693" in span["tip"]
    assert "'<b>alt</b>' 0.184" in span["tip"]  # exp(log(0.5) - 1), escaped in the markup
    assert "'cat'" in span["tip"].split("top alternatives")[1]


def test_colour_follows_probability_band() -> None:
    """A confident token and an unsure token get different colour bands."""
    c = _completion(_lp_chunk(["sure", "maybe"], [math.log(0.95), math.log(0.05)]))
    sure, maybe = _parse(c.show_probabilities().html).tokens
    assert probability_bin(0.95).background in sure["style"]
    assert probability_bin(0.05).background in maybe["style"]
    assert probability_bin(0.95) != probability_bin(0.05)


def test_whitespace_tokens_are_visible() -> None:
    """A newline token is a one-line ↵ chip (indentation as dots) with the line break after it; spaces show dots."""
    c = _completion(_lp_chunk(["a", "\n    ", "  ", "b c"], [-0.1, -0.1, -0.1, -0.1]))
    markup = c.show_probabilities().html
    assert "↵····</summary>" in markup and "</details><br>" in markup and "<br>" not in markup.split("</summary>")[1]
    texts = [t["text"] for t in _parse(markup).tokens]
    assert texts == ["a", "↵····", "··", "b c"]
    assert all("white-space:pre;" in t["style"] for t in _parse(markup).tokens)  # never wraps inside a chip


def test_echoed_prompt_tokens_are_grey_without_probability() -> None:
    """Prompt tokens echoed with logprob None are greyed and marked as prompt."""
    c = _completion(_lp_chunk(["Hello", " world"], [None, -0.3]))
    prompt, generated = _parse(c.show_probabilities().html).tokens
    assert "background-color" not in prompt["style"] and "#888888" in prompt["style"]
    assert "prompt" in prompt["tip"]
    assert "background-color" in generated["style"]
    assert "prompt" in str(c.show_probabilities()).splitlines()[1]


def test_one_heatmap_per_choice() -> None:
    """With n > 1 every choice gets its own labelled heatmap."""
    c = _completion(_lp_chunk(["x", "y"], [-0.1, -0.2], index=0), _lp_chunk(["z"], [-0.3], index=1), n=2)
    markup = c.show_probabilities().html
    assert "choice 0" in markup and "choice 1" in markup
    assert len(_parse(markup).tokens) == 3
    assert "choice 1" in str(c.show_probabilities())


def test_no_logprobs_gives_a_clear_note() -> None:
    """A result without logprobs shows the note in both forms instead of an empty view."""
    builder = CompletionBuilder(CompletionRequest.build("vman-demo", "hi"))
    builder.add({"id": "c", "choices": [{"index": 0, "text": "hello", "finish_reason": "stop"}]})
    bundle = ProbabilityView(builder.finish())._repr_mimebundle_()
    assert NO_LOGPROBS_NOTE in bundle["text/plain"]
    assert NO_LOGPROBS_NOTE in bundle["text/html"]


def test_dropped_logprobs_note_mentions_the_gateway() -> None:
    """When logprobs were requested but dropped, the builder's note is shown too."""
    builder = CompletionBuilder(CompletionRequest.build("vman-demo", "hi", logprobs=3))
    builder.add({"id": "c", "choices": [{"index": 0, "text": "hello", "finish_reason": "stop"}]})
    text = str(builder.finish().show_probabilities())
    assert "logprobs=3 was requested" in text


def test_plain_text_is_a_table() -> None:
    """The text/plain form lists token, probability and alternatives per row."""
    c = _completion(_lp_chunk(["de", "\n"], [math.log(0.25), math.log(0.75)]))
    lines = str(c.show_probabilities()).splitlines()
    assert lines[0].split()[:2] == ["token", "p"]
    assert "'de'" in lines[1] and "0.250" in lines[1] and "'<b>alt</b>'" in lines[1]
    assert "'↵'" in lines[2] and "0.750" in lines[2]


def test_multibyte_tokens_survive() -> None:
    """Chinese tokens are shown as they are, neither escaped to entities nor split."""
    c = _completion(_lp_chunk(["你好", "，世界"], [-0.2, -0.4]))
    assert [t["text"] for t in _parse(c.show_probabilities().html).tokens] == ["你好", "，世界"]
