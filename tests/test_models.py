"""Requests validate once and name what to change; the builder keeps every piece."""

from __future__ import annotations

import math

import pytest

from vman_magic.core.errors import StreamAPIError, ValidationError, status_error_class
from vman_magic.core.models import CompletionBuilder, CompletionRequest
from vman_magic.core.params import PARAMS, PARAMS_BY_NAME


def build(**params: object) -> CompletionRequest:
    return CompletionRequest.build("vman-demo", "Hello", **params)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("top_p", 1.01),
        ("n", 0),
        ("n", 129),
        ("logprobs", 6),
        ("max_tokens", -1),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3),
        ("best_of", 21),
    ],
)
def test_out_of_range_names_field_and_range(name: str, bad: float) -> None:
    """Every numeric range of the spec is enforced, and the message names field and range."""
    with pytest.raises(ValidationError) as info:
        build(**{name: bad})
    spec = PARAMS_BY_NAME[name]
    assert info.value.param == name
    assert name in str(info.value)
    assert spec.range_text() in str(info.value)


@pytest.mark.parametrize("value", [True, "1", math.nan, math.inf, [1]])
def test_wrong_types_are_rejected(value: object) -> None:
    """Booleans, strings and non-finite numbers are not numbers for the API."""
    with pytest.raises(ValidationError, match="temperature"):
        build(temperature=value)


def test_unknown_parameter_suggests_closest_name() -> None:
    """A typo gets a did-you-mean instead of a silent no-op."""
    with pytest.raises(ValidationError, match=r"did you mean .temperature."):
        build(temprature=0.5)


def test_stop_limits() -> None:
    """stop takes a string or at most four non-empty strings."""
    assert build(stop="\n").stop == "\n"
    assert build(stop=["a", "b", "c", "d"]).to_body()["stop"] == ["a", "b", "c", "d"]
    with pytest.raises(ValidationError, match="at most 4"):
        build(stop=["a", "b", "c", "d", "e"])
    with pytest.raises(ValidationError, match="empty"):
        build(stop="")


def test_logit_bias_keys_and_values() -> None:
    """logit_bias maps token ids to numbers in -100..100."""
    assert build(logit_bias={"12": -100, 7: 5}).to_body()["logit_bias"] == {"12": -100, "7": 5}
    with pytest.raises(ValidationError, match="token ids"):
        build(logit_bias={"hello": 1})
    with pytest.raises(ValidationError, match=r"-100\.\.100"):
        build(logit_bias={"1": 101})


def test_best_of_rules() -> None:
    """best_of must cover n and cannot be streamed; the message says what to change."""
    with pytest.raises(ValidationError, match="no-stream"):
        build(best_of=3)
    with pytest.raises(ValidationError, match="at least n"):
        CompletionRequest.build("m", "p", stream=False, best_of=2, n=3)
    assert CompletionRequest.build("m", "p", stream=False, best_of=3, n=2).best_of == 3


@pytest.mark.parametrize(
    "prompt", ["text", ["a", "b"], [1, 2, 3], [[1, 2], [3]]], ids=["str", "strs", "tokens", "token-lists"]
)
def test_four_prompt_forms(prompt: object) -> None:
    """All four prompt forms of the schema are accepted and sent as JSON lists/strings."""
    body = CompletionRequest.build("m", prompt).to_body()  # type: ignore[arg-type]
    assert body["prompt"] == prompt


@pytest.mark.parametrize("prompt", [[], [1, "a"], [[1], []], b"bytes", [-1]])
def test_bad_prompts(prompt: object) -> None:
    """Empty lists, mixtures, bytes and negative token ids are refused."""
    with pytest.raises(ValidationError, match=r"prompt|token"):
        CompletionRequest.build("m", prompt)  # type: ignore[arg-type]


def test_missing_model() -> None:
    """An empty model says where a model can be set."""
    with pytest.raises(ValidationError, match="VMAN_MODEL"):
        CompletionRequest.build(" ", "p")


def test_body_streams_with_usage_by_default() -> None:
    """A streamed body asks for the usage chunk; a non-streamed one must not send stream_options."""
    assert build().to_body()["stream_options"] == {"include_usage": True}
    body = CompletionRequest.build("m", "p", stream=False).to_body()
    assert "stream" not in body and "stream_options" not in body
    with pytest.raises(ValidationError, match="stream_options"):
        CompletionRequest.build("m", "p", stream=False, stream_options={"include_usage": True})


def test_choices_expected_counts_prompts_times_n() -> None:
    """A list of 3 prompts with n=2 expects 6 choices; a token list is one prompt."""
    assert CompletionRequest.build("m", ["a", "b", "c"], n=2).choices_expected == 6
    assert CompletionRequest.build("m", [5, 6, 7], n=2).choices_expected == 2


def test_every_param_has_help_and_flag() -> None:
    """The table drives help texts and flags, so every entry needs both."""
    for spec in PARAMS:
        assert spec.help.endswith(".") or spec.help.endswith(")")
        assert spec.flag.startswith("--") and "_" not in spec.flag


def chunk(index: int, text: str, finish: str | None = None, **extra: object) -> dict[str, object]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "vman-demo",
        "choices": [{"index": index, "text": text, "logprobs": extra.get("logprobs"), "finish_reason": finish}],
    }


def test_builder_interleaves_choices_by_index() -> None:
    """Chunks for several choices arrive interleaved and are sorted by index."""
    builder = CompletionBuilder(CompletionRequest.build("m", "p", n=2))
    for c in [chunk(1, "B"), chunk(0, "a"), chunk(1, "b", "length"), chunk(0, "b", "stop")]:
        builder.add(c)
    builder.add(
        {"id": "cmpl-1", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}}
    )
    result = builder.finish()
    assert result.texts == ["ab", "Bb"]
    assert [c.finish_reason for c in result.choices] == ["stop", "length"]
    assert result.usage is not None and result.usage.total_tokens == 5
    assert builder.all_finished and not result.incomplete


def test_stream_and_whole_response_build_equal_results() -> None:
    """A non-stream body is one big chunk, so both paths give the same result."""
    streamed = CompletionBuilder()
    for piece in ["Hel", "lo", "世界"]:
        streamed.add(chunk(0, piece))
    streamed.add(chunk(0, "", "stop"))
    whole = CompletionBuilder()
    whole.add(chunk(0, "Hello世界", "stop"))
    assert streamed.finish().to_dict() == whole.finish().to_dict()


def test_error_chunk_raises_with_partial_text() -> None:
    """An error inside a 200 stream raises, and the text before it is kept."""
    builder = CompletionBuilder()
    builder.add(chunk(0, "partial "))
    with pytest.raises(StreamAPIError) as info:
        builder.add({"error": {"message": "upstream overloaded", "type": "server_error", "code": 503}})
    err = info.value
    assert "upstream overloaded" in str(err) and err.code == 503
    assert err.partial is not None and err.partial.text == "partial " and err.partial.incomplete
    assert err.partial.error is err


def test_logprobs_accumulate_and_missing_logprobs_leave_a_note() -> None:
    """Streamed logprob arrays concatenate; a gateway that drops them gets a note, not a crash."""
    lp = {"tokens": ["a"], "token_logprobs": [-0.5], "top_logprobs": [{"a": -0.5}], "text_offset": [0]}
    with_lp = CompletionBuilder(CompletionRequest.build("m", "p", logprobs=1))
    with_lp.add(chunk(0, "a", logprobs=lp))
    with_lp.add(chunk(0, "a", "stop", logprobs={**lp, "text_offset": [1]}))
    result = with_lp.finish()
    assert result.choices[0].logprobs is not None
    assert result.choices[0].logprobs.text_offset == [0, 1] and not result.notes

    dropped = CompletionBuilder(CompletionRequest.build("m", "p", logprobs=3))
    dropped.add(chunk(0, "text", "stop"))
    assert "returned none" in dropped.finish().notes[0]


def test_fail_keeps_text_and_flags_incomplete() -> None:
    """An interrupted result keeps its text, its error and incomplete=True."""
    builder = CompletionBuilder()
    builder.add(chunk(0, "so far"))
    err = KeyboardInterrupt()
    result = builder.fail(err)
    assert result.text == "so far" and result.incomplete and result.error is err
    assert "incomplete=True" in repr(result)


def test_status_classes() -> None:
    """Status codes map onto the documented exception classes."""
    assert status_error_class(401).__name__ == "AuthenticationError"
    assert status_error_class(429).__name__ == "RateLimitError"
    assert status_error_class(502).__name__ == "InternalServerError"
    assert status_error_class(418).__name__ == "APIStatusError"
