"""complete_many(group_size=k): several prompts per request, against the real demo server."""

from __future__ import annotations

import _thread
import asyncio
import threading
from typing import Any

import pytest

from vman_magic import APIResponseError, BadRequestError, ValidationError
from vman_magic.batch.engine import split_group
from vman_magic.batch.many import BatchInterrupted, Unfinished, acomplete_many, complete_many
from vman_magic.core.models import CompletionBuilder, CompletionRequest

PROMPTS = ["Once upon a time", "The cat", "In the morning", "A small village", "The river", "Tomorrow"]
# Greedy: the demo server seeds each prompt's sampler by its position in the request, so seeded
# sampling legitimately differs between grouped and ungrouped; greedy decoding does not.
GREEDY = {"max_tokens": 6, "temperature": 0, "logprobs": 2}


def _batch(server: Any, prompts: list[Any], **params: Any) -> Any:
    return complete_many(prompts, base_url=server.base_url, model="vman-demo", progress=False, **params)


def _requests_sent(server: Any, prompts: list[Any], **params: Any) -> tuple[Any, int]:
    before = server.stats.requests
    results = _batch(server, prompts, **params)
    return results, server.stats.requests - before


def test_grouped_results_equal_the_ungrouped_ones(demo_server: Any) -> None:
    """Each prompt gets the text, finish reason and logprobs it gets alone; k times fewer requests; same usage."""
    alone, sent_alone = _requests_sent(demo_server, PROMPTS, **GREEDY)
    grouped, sent_grouped = _requests_sent(demo_server, PROMPTS, group_size=3, **GREEDY)
    assert (sent_alone, sent_grouped) == (6, 2)
    assert [c.to_dict()["choices"] for c in grouped] == [c.to_dict()["choices"] for c in alone]
    assert [c.request.prompt for c in grouped] == PROMPTS
    assert grouped.usage == alone.usage and grouped.usage.completion_tokens > 0
    assert grouped.failed == [] and all(not c.incomplete for c in grouped)


def test_usage_is_on_the_first_prompt_of_each_request(demo_server: Any) -> None:
    """The server counts tokens per request: the first item carries them, the others None with a note."""
    results = _batch(demo_server, PROMPTS[:5], group_size=3, max_tokens=3)
    assert [c.usage is not None for c in results] == [True, False, False, True, False]
    assert "usage of the first prompt" in results[1].notes[0]
    assert str(results).startswith("5 prompts: 5 done; tokens ")


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_per_prompt_map_back_by_index(demo_server: Any, stream: bool) -> None:
    """With n=2, choice i*n+j of the answer is choice j of prompt i, streamed (interleaved) or not."""
    params = {"max_tokens": 5, "n": 2, "echo": True, "seed": 5, "stream": stream}
    results, sent = _requests_sent(demo_server, PROMPTS, group_size=4, **params)
    assert sent == 2
    for prompt, completion in zip(PROMPTS, results, strict=True):
        assert [c.index for c in completion.choices] == [0, 1]
        assert all(text.startswith(prompt) for text in completion.texts), completion.texts
        assert all(c.finish_reason for c in completion.choices)
    assert results.usage == _batch(demo_server, PROMPTS, group_size=4, **params).usage  # seeded: reproducible


def test_a_failed_request_fails_every_prompt_of_its_group(demo_server: Any) -> None:
    """A prompt the server rejects takes its whole group down; the other groups succeed."""
    too_long = "word " * 17000  # over the demo model's 16,384-token context
    prompts = [*PROMPTS[:2], too_long, *PROMPTS[2:]]
    results = _batch(demo_server, prompts, group_size=3, max_tokens=3)
    assert results.failed == [0, 1, 2]
    assert all(isinstance(c.error, BadRequestError) and c.incomplete for c in results[:3])
    assert all(c.text and c.error is None for c in results[3:])


def test_prompts_that_are_not_strings_are_sent_alone(demo_server: Any) -> None:
    """Token-list prompts and bad prompts break a group and go alone; the string prompts around them still group."""
    prompts: list[Any] = ["Once upon a time", "The cat", [5, 6, 7], "The river", [-1], "Tomorrow"]
    results, sent = _requests_sent(demo_server, prompts, group_size=4, max_tokens=3)
    assert sent == 4  # [a, b], [5, 6, 7], [river], ([-1] fails before sending), [Tomorrow]
    assert results.failed == [4] and isinstance(results[4].error, ValidationError)
    assert all(c.text for i, c in enumerate(results) if i != 4)


def test_an_answer_without_a_prompts_choices_fails_that_prompt() -> None:
    """An endpoint that ignores the list form answers with one choice: the other prompts fail, saying why."""
    requests = [CompletionRequest.build("m", p, stream=False) for p in ("a", "b")]
    builder = CompletionBuilder(requests[0].with_changes(prompt=["a", "b"]))
    builder.add({"id": "x", "choices": [{"index": 0, "text": " one", "finish_reason": "length"}]})
    first, second = split_group(builder.finish(), requests)
    assert first.text == " one" and first.error is None
    assert isinstance(second.error, APIResponseError) and second.incomplete
    assert "may not support a list of prompts" in str(second.error)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4"])
def test_group_size_is_validated(demo_server: Any, bad: Any) -> None:
    """group_size must be a whole number >= 1; anything else raises before sending."""
    with pytest.raises(ValidationError, match=r"group_size must be a whole number >= 1") as info:
        _batch(demo_server, PROMPTS, group_size=bad)
    assert info.value.param == "group_size"


def test_async_batch_groups_too(demo_server: Any) -> None:
    """acomplete_many takes group_size and gives the same results."""
    grouped = asyncio.run(
        acomplete_many(
            PROMPTS, base_url=demo_server.base_url, model="vman-demo", progress=False, group_size=4, **GREEDY
        )
    )
    assert grouped.texts == _batch(demo_server, PROMPTS, **GREEDY).texts


@pytest.mark.usefixtures("interruptible")
def test_interrupt_splits_the_groups_in_flight(demo_server: Any) -> None:
    """An interrupted grouped batch gives every prompt its own item, unfinished ones marked."""
    start = demo_server.stats.completions

    def watch() -> None:
        while demo_server.stats.completions == start:
            threading.Event().wait(0.01)
        _thread.interrupt_main()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with pytest.raises(BatchInterrupted) as info:
        complete_many(
            PROMPTS * 2,
            base_url=demo_server.url(tps=5),
            model="vman-demo",
            concurrency=1,
            group_size=3,
            progress=False,
            max_tokens=20,
            stream=True,
        )
    watcher.join()
    partial = info.value.partial
    assert [c.request.prompt for c in partial] == PROMPTS * 2
    assert partial.unfinished == list(range(12))
    assert all(isinstance(c.error, Unfinished) and len(c.choices) <= 1 for c in partial)


def test_complete_frame_passes_group_size_through(demo_server: Any) -> None:
    """complete_frame(group_size=k) groups its rows' prompts the same way."""
    pd = pytest.importorskip("pandas")
    from vman_magic import complete_frame

    df = pd.DataFrame({"start": PROMPTS})
    before = demo_server.stats.requests
    frame = complete_frame(
        df, "{start}", base_url=demo_server.base_url, model="vman-demo", progress=False, group_size=6, **GREEDY
    )
    assert demo_server.stats.requests - before == 1
    assert list(frame["completion"]) == _batch(demo_server, PROMPTS, **GREEDY).texts
