"""Hostile answers: wrong shapes, deep JSON and echoed keys become one-line errors that keep the text."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hostile_server import SHAPES

from vman_magic import AsyncClient, Client, VmanError
from vman_magic.core.errors import APIResponseError, StreamAPIError
from vman_magic.core.render import completion_html, completion_text

KEY = "sk-hostile-0123456789abcdefXYZ"
pytestmark = pytest.mark.timeout(60)


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text, text
    return text


def _views(completion: Any) -> str:
    """Every view of a stored result, joined: none of them may raise."""
    bundle = completion._repr_mimebundle_()
    heat = completion.show_probabilities()
    return "\n".join(
        [repr(completion), str(completion), completion_text(completion), completion_html(completion),
         bundle["text/plain"], bundle["text/html"], str(heat), heat.html, repr(heat)]
    )  # fmt: skip


@pytest.mark.parametrize("case", sorted(SHAPES))
@pytest.mark.parametrize("stream", [True, False])
def test_wrong_shape_is_one_line_error_with_the_text_so_far(hostile: Any, case: str, stream: bool) -> None:
    """Each wrong shape becomes a one-line VmanError naming what was wrong; streamed text that arrived is kept."""
    with Client(base_url=hostile.url(case), model="m", max_retries=0) as client, pytest.raises(VmanError) as info:
        client.complete("hi", stream=stream)
    error = info.value
    message = _one_line(error)
    assert "hostile" not in type(error).__name__
    assert isinstance(error, (APIResponseError,)) or "nested" in message, message
    partial = error.partial
    assert partial is not None and partial.incomplete and partial.error is error
    if stream:  # also when the decoder refuses the event ("deep"): the good events before it are kept
        assert partial.text == "Hello"
    _views(partial)


def test_messages_name_the_field(hostile: Any) -> None:
    """The message says which field had which wrong value."""
    expected = {
        "int_event": "expected a JSON object, got int 5",
        "list_event": "expected a JSON object, got a list",
        "choices_int": "'choices' is int 5, not a list",
        "choices_nonobj": "choices[0] is int 1, not an object",
        "text_number": "choices[0].text is int 5, not a string",
        "usage_str": "'usage' is str 'lots', not an object",
        "reason_int": "choices[0].finish_reason is int 7",
        "model_list": "'model' is a list, not a string",
        "logprobs_str": "choices[0].logprobs is str 'x', not an object",
        "deep": "nested more than 64 levels deep",
    }
    for case, words in expected.items():
        with Client(base_url=hostile.url(case), model="m", max_retries=0) as client, pytest.raises(VmanError) as info:
            client.complete("hi")
        assert words in str(info.value), (case, str(info.value))


def test_async_client_checks_shapes_too(hostile: Any) -> None:
    """AsyncClient goes through the same check."""

    async def main() -> None:
        async with AsyncClient(base_url=hostile.url("text_number"), model="m", max_retries=0) as client:
            with pytest.raises(APIResponseError) as info:
                await client.complete("hi")
        assert info.value.partial is not None and info.value.partial.text == "Hello"

    asyncio.run(main())


def test_models_nested_deep_or_wrong_is_an_error(hostile: Any) -> None:
    """/v1/models nested 10,000 deep, or with data that is no list, is an APIResponseError, not a RecursionError."""
    for case in ("models_deep", "models_bad"):
        with (
            Client(base_url=hostile.url(case), model="m", max_retries=0) as client,
            pytest.raises(APIResponseError, match="model list"),
        ):
            client.models()


def test_logprob_of_1000_shows_without_overflow(hostile: Any) -> None:
    """A logprob of 1000 (p > 1) is drawn as p=1 by every view, not an OverflowError."""
    with Client(base_url=hostile.url("logprob_1000"), model="m") as client:
        for stream in (True, False):
            completion = client.complete("hi", stream=stream, logprobs=1)
            views = _views(completion)
            assert "p = 1.000" in views  # the heatmap card


# --------------------------------------------------------------------------- the key


@pytest.mark.parametrize(
    "case", ["echo_error_event", "echo_bad_line", "echo_redirect", "echo_status_json", "echo_status_text",
             "echo_partial"],
)  # fmt: skip
@pytest.mark.parametrize("stream", [True, False])
def test_echoed_key_is_scrubbed_everywhere(
    hostile: Any, case: str, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A key the server echoes (raw, Bearer, URL-encoded, cut short) shows nowhere: message, attributes, views, logs."""
    caplog.set_level(logging.DEBUG, logger="vman_magic")
    with (
        Client(base_url=hostile.url(case), api_key=KEY, model="m", max_retries=1) as client,
        pytest.raises(VmanError) as info,
    ):
        client.complete("hi", stream=stream)
    error = info.value
    shown = [str(error), repr(error), *(str(v) for v in vars(error).values()), caplog.text]
    if error.partial is not None:
        shown.append(_views(error.partial))
    text = "\n".join(shown)
    assert "****" in str(error) or (case == "echo_bad_line" and not stream), str(error)
    for piece in (KEY, KEY[:10], KEY[-10:], KEY[3:13]):
        assert piece not in text
        assert piece.lower() not in text.lower()


def test_echoed_key_in_model_field_is_scrubbed_from_the_footer(hostile: Any) -> None:
    """A model name carrying the key reaches the footer masked."""
    with Client(base_url=hostile.url("echo_model"), api_key=KEY, model="m") as client:
        for stream in (True, False):
            completion = client.complete("hi", stream=stream)
            assert completion.text == "Hello"
            assert KEY not in _views(completion) and "****" in completion.model


def test_error_event_keeps_type_and_is_stream_api_error(hostile: Any) -> None:
    """The error event stays a StreamAPIError (with the text before it), its fields scrubbed."""
    with (
        Client(base_url=hostile.url("echo_error_event"), api_key=KEY, model="m") as client,
        pytest.raises(StreamAPIError) as info,
    ):
        client.complete("hi")
    assert info.value.partial is not None and info.value.partial.text == "Hello"
    assert info.value.code == "Bearer ****" and KEY not in str(info.value.type)
