"""The demo server's OpenAI Completions API, driven by the official openai SDK and raw httpx."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from vman_magic.demo.model import get_model
from vman_magic.demo.running import RunningServer
from vman_magic.testing import serve, tokenize

KEY = "sk-demo-secret-123"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve(api_key=KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as c:
        yield c


def _post(server: RunningServer, body: Any, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}", **kw.pop("headers", {})}
    return httpx.post(server.base_url + "/completions", json=body, headers=headers, **kw)


def test_non_stream_completion_has_the_openai_shape(client: openai.OpenAI) -> None:
    """A plain call returns text, finish_reason, usage and the documented ids."""
    r = client.completions.create(model="vman-demo", prompt="Return the", max_tokens=5, seed=1)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == "vman-demo"
    assert r.system_fingerprint and r.system_fingerprint.startswith("fp_")
    assert r.choices[0].finish_reason in ("length", "stop") and r.choices[0].index == 0
    assert r.usage is not None and r.usage.prompt_tokens == 2
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_joins_to_the_same_text_as_non_stream(client: openai.OpenAI) -> None:
    """With a seed, the streamed deltas concatenate to the non-streamed text."""
    whole = client.completions.create(model="vman-demo", prompt="The", max_tokens=12, seed=7)
    chunks = list(client.completions.create(model="vman-demo", prompt="The", max_tokens=12, seed=7, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks][:-1] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_include_usage_adds_a_final_usage_chunk(client: openai.OpenAI) -> None:
    """stream_options.include_usage ends the stream with choices=[] and usage; other chunks have usage null."""
    chunks = list(
        client.completions.create(
            model="vman-demo", prompt="The", max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 4
    assert all(c.usage is None for c in chunks[:-1])


def test_list_prompts_and_n_give_choices_indexed_by_prompt_then_sample(client: openai.OpenAI) -> None:
    """Prompt i, sample j is choice i*n+j, streamed or not."""
    r = client.completions.create(model="vman-demo", prompt=["The", "If", "Return"], n=2, max_tokens=3, seed=3)
    assert sorted(c.index for c in r.choices) == list(range(6))
    streamed: dict[int, str] = {}
    for chunk in client.completions.create(
        model="vman-demo", prompt=["The", "If", "Return"], n=2, max_tokens=3, seed=3, stream=True
    ):
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
    assert streamed == {c.index: c.text for c in r.choices}


def test_token_array_prompts_equal_their_text(client: openai.OpenAI) -> None:
    """A prompt given as token ids (or a list of them) behaves like its text."""
    ids = tokenize("Return the")
    by_text = client.completions.create(model="vman-demo", prompt="Return the", max_tokens=6, seed=5)
    by_ids = client.completions.create(model="vman-demo", prompt=ids, max_tokens=6, seed=5)
    by_lists = client.completions.create(model="vman-demo", prompt=[ids, ids], max_tokens=6, seed=5)
    assert by_ids.choices[0].text == by_text.choices[0].text == by_lists.choices[0].text


def test_seed_makes_output_reproducible_and_no_seed_varies(client: openai.OpenAI) -> None:
    """The same seed and parameters give the same text; unseeded calls differ."""
    params: dict[str, Any] = {"model": "vman-demo", "prompt": "The", "max_tokens": 20, "temperature": 1.2}
    a = client.completions.create(seed=11, **params).choices[0].text
    b = client.completions.create(seed=11, **params).choices[0].text
    assert a == b
    unseeded = {client.completions.create(**params).choices[0].text for _ in range(4)}
    assert len(unseeded) > 1


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    """Reaching max_tokens ends with finish_reason length and that many tokens."""
    r = client.completions.create(model="vman-demo", prompt="The", max_tokens=3, temperature=0, logprobs=0)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].logprobs is not None and len(r.choices[0].logprobs.tokens or []) == 3


def test_stop_sequence_is_honoured_and_not_returned(client: openai.OpenAI) -> None:
    """Generation stops at a stop sequence, which is cut from the text, streamed or not."""
    greedy = client.completions.create(model="vman-demo", prompt="The", max_tokens=30, temperature=0).choices[0].text
    stop = greedy[len(greedy) // 2 : len(greedy) // 2 + 3]
    assert stop
    expected = greedy[: greedy.index(stop)]
    r = client.completions.create(model="vman-demo", prompt="The", max_tokens=30, temperature=0, stop=[stop, "@@"])
    assert r.choices[0].text == expected and r.choices[0].finish_reason == "stop"
    chunks = list(
        client.completions.create(model="vman-demo", prompt="The", max_tokens=30, temperature=0, stop=stop, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert all(stop not in c.choices[0].text for c in chunks)


def test_greedy_picks_the_top_logprob_and_logprobs_are_the_models(client: openai.OpenAI) -> None:
    """At temperature 0 every chosen token is the top-1 entry; logprobs equal the model's own values."""
    r = client.completions.create(model="vman-demo", prompt="Return the", max_tokens=6, temperature=0, logprobs=5)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    model = get_model()
    history = tokenize("Return the")
    for token, chosen, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert chosen == max(top.values())
        assert 1 <= len(top) <= 6 and sum(math.exp(v) for v in top.values()) <= 1 + 1e-9
        (token_id,) = tokenize(token) if len(tokenize(token)) == 1 else (None,)
        if token_id is not None:
            assert math.isclose(chosen, math.log(model.prob(model.step(history), token_id)), rel_tol=1e-12)
            history.append(token_id)


def test_echo_returns_prompt_first_with_a_null_first_logprob(client: openai.OpenAI) -> None:
    """echo prepends the prompt; its first token's logprob is null and offsets count from 0."""
    r = client.completions.create(model="vman-demo", prompt="Return the", max_tokens=2, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    assert r.choices[0].text.startswith("Return the")
    assert lp is not None and lp.tokens[:2] == ["Return", " the"]  # type: ignore[index]
    assert lp.token_logprobs[0] is None and lp.token_logprobs[1] is not None  # type: ignore[index]
    assert lp.text_offset[:3] == [0, 6, 10]  # type: ignore[index]


def test_chinese_prompt_gets_finite_logprobs(client: openai.OpenAI) -> None:
    """Every code point is in the vocabulary, so an echoed Chinese prompt has real log-probabilities."""
    r = client.completions.create(model="vman-demo", prompt="中文提示", max_tokens=0, echo=True, logprobs=0)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == "中文提示"
    assert lp is not None and all(math.isfinite(v) for v in lp.token_logprobs[1:])  # type: ignore[index]


def test_best_of_returns_the_best_candidates_by_mean_logprob(client: openai.OpenAI) -> None:
    """best_of generates more candidates and counts their tokens in usage."""
    r = client.completions.create(model="vman-demo", prompt="The", max_tokens=8, best_of=4, n=2, seed=9)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage is not None and r.usage.completion_tokens > sum(1 for _ in r.choices)


def test_penalties_change_the_output(client: openai.OpenAI) -> None:
    """Presence and frequency penalties change seeded output."""
    base: dict[str, Any] = {"model": "vman-demo", "prompt": "The", "max_tokens": 40, "temperature": 0}
    plain = client.completions.create(**base).choices[0].text
    penalised = client.completions.create(presence_penalty=2, frequency_penalty=2, **base).choices[0].text
    assert plain != penalised


def test_logit_bias_forces_a_token(client: openai.OpenAI) -> None:
    """A +100 bias on one token id makes every generated token that token."""
    (token,) = tokenize("中")
    r = client.completions.create(model="vman-demo", prompt="The", max_tokens=5, logit_bias={str(token): 100})
    assert r.choices[0].text == "中" * 5


def test_sdk_raises_typed_errors(server: RunningServer, client: openai.OpenAI) -> None:
    """401, 400 and 404 surface as the SDK's AuthenticationError, BadRequestError and NotFoundError."""
    with (
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError) as auth,
    ):
        bad.completions.create(model="vman-demo", prompt="x")
    assert "wrong" not in str(auth.value) and KEY not in str(auth.value)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="vman-demo", prompt="x", temperature=3)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-nope", prompt="x")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nope")
    assert [m.id for m in client.models.list()] == ["vman-demo"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "vman-demo", "prompt": "x", "temperature": 2.5}, "temperature"),
        ({"model": "vman-demo", "prompt": "x", "top_p": 1.5}, "top_p"),
        ({"model": "vman-demo", "prompt": "x", "n": 0}, "n"),
        ({"model": "vman-demo", "prompt": "x", "n": 129}, "n"),
        ({"model": "vman-demo", "prompt": "x", "logprobs": 6}, "logprobs"),
        ({"model": "vman-demo", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "vman-demo", "prompt": "x", "best_of": 1, "n": 2}, "best_of"),
        ({"model": "vman-demo", "prompt": "x", "best_of": 2, "stream": True}, "best_of"),
        ({"model": "vman-demo", "prompt": "x", "logit_bias": {"abc": 1}}, "logit_bias"),
        ({"model": "vman-demo", "prompt": "x", "logit_bias": {"5": 101}}, "logit_bias"),
        ({"model": "vman-demo", "prompt": "x", "logit_bias": {"99999999": 1}}, "logit_bias"),
        ({"model": "vman-demo", "prompt": [["a"]]}, "prompt"),
        ({"model": "vman-demo", "prompt": [-1]}, "prompt"),
        ({"model": "vman-demo", "prompt": [99999999]}, "prompt"),
        ({"model": "vman-demo", "prompt": "x", "max_tokens": "5"}, "max_tokens"),
        ({"model": "vman-demo", "prompt": "x", "max_tokens": 100000}, "max_tokens"),
        ({"model": "vman-demo", "prompt": "x", "stream": "yes"}, "stream"),
        ({"model": "vman-demo", "prompt": "x", "top_k": 5}, "top_k"),
        ({"prompt": "x"}, "model"),
        ({"model": "vman-demo"}, "prompt"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(server: RunningServer, body: dict[str, Any], param: str) -> None:
    """Every out-of-range or wrongly typed field gives 400 with that field as param."""
    r = _post(server, body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_bad_json_body_is_400(server: RunningServer) -> None:
    """A body that is not JSON gets a 400 that says so."""
    r = httpx.post(server.base_url + "/completions", content=b"{not json", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]


def test_auth_errors_and_unknown_routes(server: RunningServer) -> None:
    """Missing key is 401 invalid_api_key; unknown paths 404; wrong methods 405 with Allow."""
    missing = httpx.get(server.base_url + "/models")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(server.base_url + "/nothing", headers=auth).status_code == 404
    wrong = httpx.get(server.base_url + "/completions", headers=auth)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert httpx.get(server.base_url + "/models/vman-demo", headers=auth).json()["id"] == "vman-demo"


def test_keep_alive_reuses_one_connection(server: RunningServer) -> None:
    """Several requests, streamed and not, run over one kept-alive connection."""
    peers = set()
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as c:
        for stream in (False, True, False, True):
            body = {"model": "vman-demo", "prompt": "The", "max_tokens": 3, "stream": stream}
            with c.stream("POST", server.base_url + "/completions", json=body) as r:
                r.read()
                peers.add(r.extensions["network_stream"].get_extra_info("client_addr"))
    assert len(peers) == 1


def test_64_concurrent_streams_all_finish(server: RunningServer) -> None:
    """64 simultaneous streaming clients all receive [DONE] and the stats see them overlap."""
    body = {"model": "vman-demo", "prompt": "The", "max_tokens": 30, "stream": True}
    url = server.url(tps=200) + "/completions"

    async def one(c: httpx.AsyncClient) -> list[str]:
        async with c.stream("POST", url, json=body) as r:
            return [line async for line in r.aiter_lines() if line]

    async def main() -> list[list[str]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(limits=limits, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as c:
            return await asyncio.gather(*(one(c) for _ in range(64)))

    server.stats.reset()
    results = asyncio.run(main())
    assert all(lines[-1] == "data: [DONE]" for lines in results)
    assert all(json.loads(lines[-2][6:])["choices"][0]["finish_reason"] for lines in results)
    assert server.stats.max_active > 1 and server.stats.active == 0
