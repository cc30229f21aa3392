"""The offline demo streams into cells and the panel at a readable pace, and batches at full speed.

The faces ask for the pace per request; the auto-started demo server counts
its completions by the pace they streamed at (``stats.paces``), so these tests
read what the server was asked for instead of timing anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import vman_magic
from vman_magic.core import config as _config
from vman_magic.core.config import Settings
from vman_magic.demo import launch
from vman_magic.notebook import pace
from vman_magic.testing import url


@pytest.fixture
def auto_demo(vman_shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """The shell with no base URL anywhere, so the auto-started demo answers; the pace is reset afterwards."""
    monkeypatch.delenv(pace.ENV_VAR, raising=False)
    _config.set_session(base_url=None, model=None)
    pace.set_tokens_per_second(None)
    yield vman_shell
    pace.set_tokens_per_second(None)


def paces_during(action: Any) -> Counter[float | None]:
    """The paces the auto-started demo streamed at while ``action()`` ran."""
    launch.demo_base_url()  # started, so its stats exist
    before = Counter(launch._server.stats.paces)
    action()
    after = Counter(launch._server.stats.paces)
    after.subtract(before)
    return +after


def cell(shell: InteractiveShell, code: str) -> Any:
    result = shell.run_cell(code, store_history=False)
    result.raise_error()
    return result.result


def test_a_cell_and_the_panel_ask_for_the_default_pace(auto_demo: InteractiveShell) -> None:
    """A %%complete cell and a panel run each stream at 25 tokens/s from the auto-started demo."""
    shell = auto_demo
    assert paces_during(lambda: cell(shell, "%%complete -o r --max-tokens 3\nOnce")) == {25.0: 1}
    assert shell.user_ns["r"].text
    p = vman_magic.panel(prompt="Once", max_tokens=3, shell=shell)
    assert paces_during(p.run) == {25.0: 1}


def test_batches_are_never_slowed(auto_demo: InteractiveShell) -> None:
    """--over, --sweep and complete_many reach the same demo server at full speed."""
    shell = auto_demo
    shell.user_ns["items"] = ["a", "b"]
    assert paces_during(lambda: cell(shell, "%%complete --over items --max-tokens 2\n{item}")) == {None: 2}
    assert paces_during(lambda: cell(shell, "%%complete --sweep temperature=0,1 --max-tokens 2\nOnce")) == {None: 2}
    assert paces_during(lambda: vman_magic.complete_many(["a", "b"], max_tokens=2, progress=False)) == {None: 2}
    assert paces_during(lambda: vman_magic.complete("a", max_tokens=2)) == {None: 1}


def test_vman_demo_sets_the_pace_for_the_session(auto_demo: InteractiveShell, capsys: Any) -> None:
    """%vman demo --tokens-per-second N changes the pace; 0 means full speed; a bad value says what to type."""
    shell = auto_demo
    cell(shell, "%vman demo --tokens-per-second 40")
    assert "stream at 40 tokens/s" in capsys.readouterr().out
    assert paces_during(lambda: cell(shell, "%%complete --max-tokens 2\nOnce")) == {40.0: 1}
    cell(shell, "%vman demo --tokens-per-second=0")
    assert "full speed" in capsys.readouterr().out
    assert paces_during(lambda: cell(shell, "%%complete --max-tokens 2\nOnce")) == {None: 1}
    for bad in ("--tokens-per-second fast", "--tokens-per-second -3", "--speed 3"):
        error = shell.run_cell(f"%vman demo {bad}", store_history=False).error_in_exec
        assert isinstance(error, UsageError) and "--tokens-per-second" in str(error)


def test_environment_sets_the_pace(auto_demo: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    """VMAN_DEMO_TOKENS_PER_SECOND sets the pace of every kernel; a bad value fails the cell with its name."""
    shell = auto_demo
    monkeypatch.setenv(pace.ENV_VAR, "12.5")
    assert paces_during(lambda: cell(shell, "%%complete --max-tokens 2\nOnce")) == {12.5: 1}
    monkeypatch.setenv(pace.ENV_VAR, "soon")
    error = shell.run_cell("%%complete --max-tokens 2\nOnce", store_history=False).error_in_exec
    assert isinstance(error, UsageError) and pace.ENV_VAR in str(error)


def test_other_servers_are_left_alone(vman_shell: InteractiveShell, demo_server: Any) -> None:
    """A server the user or a test started, and a demo URL with knobs of its own, get no pace added."""

    def paced_url(base_url: str, is_demo: bool = False) -> str:
        return pace.paced(Settings(base_url=base_url, is_demo=is_demo)).url

    assert paced_url(demo_server.base_url) == demo_server.base_url
    demo = launch.demo_base_url()
    assert paced_url(demo) == paced_url(demo, is_demo=True) == url(demo, tps=pace.DEFAULT_TOKENS_PER_SECOND)
    assert paced_url(url(demo, fault="crlf")) == url(demo, fault="crlf")
    before = Counter(demo_server.stats.paces)
    cell(vman_shell, "%%complete --max-tokens 2\nOnce")
    assert demo_server.stats.paces[None] == before[None] + 1
