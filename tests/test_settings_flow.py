"""One Settings object from the door to the wire: resolved once, passed down, never rebuilt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import vman_magic
from vman_magic.client import client as _client
from vman_magic.core import config as _config
from vman_magic.core.config import Secret, Settings


@pytest.fixture
def resolves(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every call of ``resolve`` (the real one runs), wherever the package calls it from."""
    calls: list[dict[str, Any]] = []
    real = _config.resolve

    def counting(**explicit: Any) -> Settings:
        calls.append(explicit)
        return real(**explicit)

    monkeypatch.setattr(_config, "resolve", counting)
    monkeypatch.setattr(_client, "resolve", counting)
    yield calls


def test_client_uses_the_settings_it_is_given(demo_server: Any, resolves: list[dict[str, Any]]) -> None:
    """Client(settings=s) keeps s itself, sends to its server and resolves nothing again."""
    s = Settings(base_url=demo_server.base_url, model="vman-demo")
    before = demo_server.stats.completions
    with vman_magic.Client(settings=s) as client:
        assert client.settings is s
        assert client.complete("Hi", max_tokens=2).text is not None
    assert demo_server.stats.completions == before + 1 and resolves == []


def test_settings_and_connection_arguments_do_not_mix(demo_server: Any) -> None:
    """settings= with base_url=/api_key=/... is an error naming the extra arguments; settings must be Settings."""
    s = Settings(base_url=demo_server.base_url, model="vman-demo")
    with pytest.raises(vman_magic.ConfigurationError, match=r"either settings= or base_url=, api_key="):
        vman_magic.Client(settings=s, base_url=demo_server.base_url, api_key="sk-x")
    with pytest.raises(vman_magic.ConfigurationError, match=r"settings must be vman_magic\.Settings"):
        vman_magic.AsyncClient(settings={"base_url": demo_server.base_url})  # type: ignore[arg-type]


def test_settings_built_by_hand_wrap_the_key_and_normalise_the_url() -> None:
    """Settings(...) applies resolve's rules: the key becomes a Secret, the URL ends in /v1."""
    s = Settings(base_url="http://127.0.0.1:9", api_key="sk-by-hand-1234")  # type: ignore[arg-type]
    assert isinstance(s.api_key, Secret) and s.base_url == "http://127.0.0.1:9/v1"
    assert "sk-by-hand-1234" not in repr(s)


def test_functions_and_batches_take_settings(demo_server: Any, resolves: list[dict[str, Any]]) -> None:
    """complete, complete_many and run_sweep send every request with the one Settings they were given."""
    s = Settings(base_url=demo_server.base_url, model="vman-demo")
    before = demo_server.stats.completions
    assert vman_magic.complete("Hi", settings=s, max_tokens=2).model == "vman-demo"
    batch = vman_magic.complete_many(["a", "b", "c"], settings=s, progress=False, max_tokens=2)
    sweep = vman_magic.run_sweep("Hi", {"temperature": [0, 1]}, settings=s, show=False, max_tokens=2)
    assert not batch.failed and not sweep.completions.failed
    assert demo_server.stats.completions == before + 1 + 3 + 2 and resolves == []


def test_a_magic_cell_resolves_once(vman_shell: InteractiveShell, resolves: list[dict[str, Any]]) -> None:
    """%%complete resolves the settings once per cell, also when it runs a batch or a sweep."""
    vman_shell.user_ns["items"] = ["a", "b", "c"]
    cells = [
        "%%complete -o r --max-tokens 2\nHi",
        "%%complete --over items -o r --max-tokens 2\n{item}",
        "%%complete --sweep temperature=0,1 -o r --max-tokens 2\nHi",
    ]
    for cell in cells:
        resolves.clear()
        assert vman_shell.run_cell(cell, store_history=False).success, cell
        assert len(resolves) == 1, f"{cell.splitlines()[0]} resolved the settings {len(resolves)} times"
    vman_shell.user_ns.pop("items")
