"""Layered settings: precedence, base URL normalisation, the masked key, plain-http warnings."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator

import httpx
import pytest

from vman_magic.core.config import (
    InsecureKeyWarning,
    Secret,
    Timeout,
    clear_session,
    normalize_base_url,
    resolve,
    set_ipython_config,
    set_session,
    warn_if_insecure,
)
from vman_magic.core.errors import ConfigurationError

ENV_NAMES = ("VMAN_BASE_URL", "VMAN_API_KEY", "VMAN_MODEL", "VMAN_TIMEOUT", "VMAN_MAX_RETRIES")
KEY = "sk-config-test-7f3a9c"


@pytest.fixture(autouse=True)
def clean_layers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with no environment, IPython config or session values."""
    for name in (*ENV_NAMES, "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    clear_session()
    set_ipython_config({})
    yield
    clear_session()
    set_ipython_config({})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.vman.example", "https://api.vman.example/v1"),
        ("https://api.vman.example/", "https://api.vman.example/v1"),
        ("https://api.vman.example/v1", "https://api.vman.example/v1"),
        ("https://api.vman.example/v1/", "https://api.vman.example/v1"),
        ("  http://127.0.0.1:8000/v1/  ", "http://127.0.0.1:8000/v1"),
        ("https://gw.example/openai", "https://gw.example/openai/v1"),
        ("http://127.0.0.1:9/x/fault=drop-after:3/v1", "http://127.0.0.1:9/x/fault=drop-after:3/v1"),
    ],
)
def test_base_url_normalisation(given: str, expected: str) -> None:
    """With or without a trailing /v1 or /, the base URL ends in exactly one /v1."""
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["ftp://host/v1", "api.vman.example", "https://", "https://h/v1?x=1"])
def test_bad_base_urls_are_rejected_with_an_example(bad: str) -> None:
    """Non-http(s), host-less or query-carrying URLs raise ConfigurationError naming the rule."""
    with pytest.raises(ConfigurationError, match="base URL"):
        normalize_base_url(bad)


def test_base_url_password_is_not_echoed() -> None:
    """A password in a rejected URL does not appear in the error message."""
    with pytest.raises(ConfigurationError) as info:
        normalize_base_url("ftp://user:hunter2@host/v1")
    assert "hunter2" not in str(info.value)


def test_precedence_env_then_ipython_then_session_then_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each layer overrides the ones below it, and ``sources`` names the winner."""
    monkeypatch.setenv("VMAN_BASE_URL", "https://env.example")
    monkeypatch.setenv("VMAN_MODEL", "env-model")
    monkeypatch.setenv("VMAN_TIMEOUT", "12")
    s = resolve()
    assert (s.base_url, s.model, s.timeout.read) == ("https://env.example/v1", "env-model", 12.0)
    assert s.sources["model"] == "VMAN_MODEL"

    set_ipython_config({"model": "config-model", "max_retries": 5})
    s = resolve()
    assert (s.model, s.max_retries, s.sources["model"]) == ("config-model", 5, "%config VmanMagic")

    set_session(model="session-model")
    assert resolve().model == "session-model"
    assert resolve().sources["model"] == "%vman"

    s = resolve(model="explicit-model", base_url="https://arg.example/v1/")
    assert (s.model, s.base_url, s.sources["base_url"]) == ("explicit-model", "https://arg.example/v1", "argument")

    set_session(model=None)
    assert resolve().model == "config-model"


def test_openai_variables_are_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_BASE_URL/OPENAI_API_KEY apply only when the VMAN_ ones are missing."""
    monkeypatch.setenv("OPENAI_BASE_URL", "https://openai.example/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    s = resolve(model="m")
    assert s.base_url == "https://openai.example/v1" and s.sources["api_key"] == "OPENAI_API_KEY"
    monkeypatch.setenv("VMAN_API_KEY", KEY)
    s = resolve(model="m")
    assert s.api_key == Secret(KEY) and s.sources["api_key"] == "VMAN_API_KEY"


def test_key_never_in_repr_str_or_describe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is masked in the Settings repr, str, format and ``%vman config`` lines."""
    monkeypatch.setenv("VMAN_API_KEY", KEY)
    s = resolve(base_url="https://h.example", model="m")
    old_style = "%s" % s.api_key  # noqa: UP031 - %-formatting must mask too
    shown = [repr(s), str(s), f"{s.api_key}", old_style, *s.describe()]
    assert all(KEY not in text for text in shown)
    assert "api_key: set (from VMAN_API_KEY)" in s.describe()
    assert s.api_key is not None and s.api_key.reveal() == KEY


def test_secret_refuses_pickling() -> None:
    """Pickling a Secret fails, so a key cannot be written to disk by accident."""
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(KEY))


def test_missing_model_for_a_real_server_says_how_to_set_it() -> None:
    """A non-demo base URL without a model fails when a model is needed, naming all the ways to set it."""
    s = resolve(base_url="https://h.example")
    with pytest.raises(ConfigurationError, match=r"VMAN_MODEL.*%vman model"):
        s.require_model()
    assert s.require_model("given") == "given"


def test_timeout_coercion() -> None:
    """A number is the read timeout; Timeout and httpx.Timeout are accepted; junk is rejected."""
    assert Timeout.coerce(5) == Timeout(read=5.0)
    assert Timeout.coerce(None) == Timeout()
    assert Timeout.coerce(httpx.Timeout(3.0, read=7.0)) == Timeout(connect=3.0, read=7.0)
    for bad in (0, -1, "soon", True, object()):
        with pytest.raises(ConfigurationError, match="timeout"):
            Timeout.coerce(bad)


def test_bad_max_retries_and_unknown_settings() -> None:
    """max_retries must be a whole number >= 0, and unknown setting names are rejected."""
    with pytest.raises(ConfigurationError, match="max_retries"):
        resolve(base_url="https://h.example", max_retries=-1)
    with pytest.raises(ConfigurationError, match="unknown setting 'modle'"):
        set_session(modle="x")


def test_session_rejects_a_bad_base_url_immediately() -> None:
    """``%vman`` learns about a malformed URL when it is set, not at the next call."""
    with pytest.raises(ConfigurationError):
        set_session(base_url="localhost:8000")


def test_plain_http_key_warning_once_per_host() -> None:
    """Sending a key over http:// to another machine warns once per host; loopback never warns."""
    remote = resolve(base_url="http://gpu-box.lan:8000", api_key=KEY, model="m")
    with pytest.warns(InsecureKeyWarning, match="unencrypted") as record:
        warn_if_insecure(remote)
        warn_if_insecure(remote)
    assert len(record) == 1 and KEY not in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_insecure(resolve(base_url="http://127.0.0.1:8000", api_key=KEY, model="m"))
        warn_if_insecure(resolve(base_url="http://localhost:8000", api_key=KEY, model="m"))
        warn_if_insecure(resolve(base_url="https://gpu-box.lan", api_key=KEY, model="m"))
