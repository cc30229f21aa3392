"""The demo model: tokenizer, exact probabilities, sampler, on-disk cache."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from vman_magic.demo import model as model_mod
from vman_magic.demo.model import Model, get_model
from vman_magic.demo.sampler import Sampler, SamplingParams
from vman_magic.demo.tokenizer import CHAR_BASE, EOT, ID_LIMIT


@pytest.fixture(scope="module")
def model() -> Model:
    return get_model()


@pytest.mark.parametrize(
    "text",
    ["Return the number of items.", "  indented\n\tcode()  ", "中文字符流式输出", "emoji 🎉 and é", "", "x" * 300],
)
def test_tokenizer_round_trips_any_text(model: Model, text: str) -> None:
    """decode(encode(text)) is the text itself, whatever it contains."""
    tok = model.tokenizer
    assert tok.decode(tok.encode(text)) == text


def test_chinese_characters_are_single_character_tokens(model: Model) -> None:
    """Each CJK character is one token with id CHAR_BASE + code point."""
    assert model.tokenizer.encode("中文") == [CHAR_BASE + ord("中"), CHAR_BASE + ord("文")]


def test_common_words_are_single_tokens_with_leading_space(model: Model) -> None:
    """Frequent corpus words get one GPT-style token including their leading space."""
    ids = model.tokenizer.encode("Return the value")
    assert [model.tokenizer.token(i) for i in ids] == ["Return", " the", " value"]
    assert all(i < CHAR_BASE for i in ids)


def test_validity_of_ids(model: Model) -> None:
    """Pieces, characters and the separator are valid; surrogates and out-of-range ids are not."""
    tok = model.tokenizer
    assert tok.is_valid(EOT) and tok.is_valid(CHAR_BASE + ord("a"))
    assert not tok.is_valid(CHAR_BASE + 0xD800)
    assert not tok.is_valid(ID_LIMIT)
    assert not tok.is_valid(tok.n_pieces)  # the unused gap below CHAR_BASE


def test_distribution_sums_to_one_over_the_whole_vocabulary(model: Model) -> None:
    """Seen tokens plus the uniform floor over every other valid id add up to 1."""
    tok = model.tokenizer
    for prompt in ["Return the", "", "中文 unseen"]:
        step = model.step(tok.encode(prompt))
        seen = sum(model.prob(step, w) for w in model.uni_ids)
        unseen = (model.n_valid - len(model.uni_ids)) * step.backoff * model.floor
        assert math.isclose(seen + unseen, 1.0, rel_tol=1e-9)


def test_top_k_matches_brute_force(model: Model) -> None:
    """The threshold algorithm returns exactly the k most probable tokens."""
    tok = model.tokenizer
    for prompt in ["Return the", "If the", "", "zzzz"]:
        step = model.step(tok.encode(prompt))
        brute = sorted(((model.prob(step, w), w) for w in model.uni_ids), reverse=True)[:5]
        assert [w for _, w in model.top(step, 5)] == [w for _, w in brute]


def _greedy(model: Model, params: SamplingParams, prompt: str, steps: int = 8) -> list[int]:
    sampler = Sampler(model, params, random.Random(0))
    history = model.tokenizer.encode(prompt)
    out = []
    for _ in range(steps):
        token = sampler.next(model.step(history))
        out.append(token)
        history.append(token)
    return out


def test_temperature_zero_is_the_argmax(model: Model) -> None:
    """Greedy decoding picks the most probable token at every step."""
    history = model.tokenizer.encode("Return the")
    for token in _greedy(model, SamplingParams(temperature=0), "Return the", steps=5):
        assert token == model.top(model.step(history), 1)[0][1]
        history.append(token)


def test_exact_path_greedy_agrees_with_fast_path(model: Model) -> None:
    """A zero logit_bias on an unrelated token takes the general path and must not change greedy output."""
    fast = _greedy(model, SamplingParams(temperature=0), "The default")
    exact = _greedy(model, SamplingParams(temperature=0, logit_bias={CHAR_BASE + ord("Q"): 0.0}), "The default")
    assert fast == exact


def test_logit_bias_forces_and_bans_tokens(model: Model) -> None:
    """+100 makes a token certain, -100 removes the argmax from the choice."""
    forced = CHAR_BASE + ord("中")
    assert set(_greedy(model, SamplingParams(temperature=0.8, logit_bias={forced: 100}), "Return the")) == {forced}
    top = model.top(model.step(model.tokenizer.encode("Return the")), 1)[0][1]
    banned = _greedy(model, SamplingParams(temperature=0, logit_bias={top: -100}), "Return the", steps=1)
    assert banned != [top]


def test_frequency_penalty_changes_greedy_output(model: Model) -> None:
    """Greedy text loops without penalties; a frequency penalty breaks the repetition."""
    plain = _greedy(model, SamplingParams(temperature=0), "The", steps=40)
    penalised = _greedy(model, SamplingParams(temperature=0, frequency_penalty=2.0), "The", steps=40)
    assert plain != penalised
    assert max(penalised.count(t) for t in penalised) < max(plain.count(t) for t in plain)


def test_same_seed_same_tokens_for_every_sampling_path(model: Model) -> None:
    """Temperature, top_p and penalties all draw from the given RNG only."""
    for params in [
        SamplingParams(),
        SamplingParams(0.7),
        SamplingParams(1.0, top_p=0.5),
        SamplingParams(1.3, 1.0, 1.0, 1.0),
    ]:
        a = Sampler(model, params, random.Random(42))
        b = Sampler(model, params, random.Random(42))
        step = model.step(model.tokenizer.encode("If the"))
        assert [a.next(step) for _ in range(20)] == [b.next(step) for _ in range(20)]


def test_top_p_restricts_to_the_nucleus(model: Model) -> None:
    """With a tiny top_p only the most probable token can be drawn."""
    step = model.step(model.tokenizer.encode("Return the"))
    best = model.top(step, 1)[0][1]
    sampler = Sampler(model, SamplingParams(top_p=1e-6), random.Random(1))
    assert {sampler._choose(step) for _ in range(30)} == {best}


def test_corrupt_cache_is_retrained(model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A garbage cache file is replaced by a freshly trained model, which later loads from disk."""
    monkeypatch.setenv("VMAN_MAGIC_CACHE", str(tmp_path))
    model_mod.cache_path().write_bytes(b"not a pickle")
    retrained = model_mod._load_or_train()
    assert retrained.fingerprint == model.fingerprint and retrained.uni_ids == model.uni_ids
    assert model_mod._load_or_train().uni_cum == model.uni_cum
    assert not list(tmp_path.glob(".*.tmp"))


def test_first_token_never_ends_the_document(demo_server) -> None:
    """A completion always starts with text unless the caller biases <|endoftext|> up themselves."""
    import vman_magic

    for seed in range(30):
        result = vman_magic.complete(
            "Once upon a time", base_url=demo_server.base_url, model="vman-demo", max_tokens=3, seed=seed
        )
        assert result.text, seed
    forced = vman_magic.complete(
        "Once upon a time", base_url=demo_server.base_url, model="vman-demo", max_tokens=3, logit_bias={"0": 100}
    )
    assert forced.text == "" and forced.finish_reason == "stop"
