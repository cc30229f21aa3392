"""Tests for ``vman-magic demo``: a real %%complete session against the offline demo model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from vman_magic._demo_cli import main
from vman_magic.core import config as _config
from vman_magic.demo import model


@pytest.fixture(autouse=True)
def _reset_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The demo points the session layer at the throttled demo server; undo that afterwards."""
    for name in ("VMAN_BASE_URL", "OPENAI_BASE_URL", "VMAN_MODEL"):
        monkeypatch.delenv(name, raising=False)
    yield
    _config.clear_session()


def test_demo_runs_cells_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo streams a completion, shows two choices, prints the stored result and the next steps."""
    assert main(["--prompt", "The old lighthouse", "--tokens-per-second", "2000"]) == 0
    out = capsys.readouterr().out
    assert "In: %%complete -o r -t 0.6 --seed 3 --max-tokens 40" in out
    assert "    The old lighthouse" in out
    assert "[choice 0]" in out and "[choice 1]" in out
    assert "Usage(prompt_tokens=" in out
    assert out.count("── finish:") >= 2
    assert "%vman config shows the settings" in out


def test_demo_is_seeded(capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs print the same text, so a class (or a README) sees what the newcomer sees."""
    runs = []
    for _ in range(2):
        assert main(["--tokens-per-second", "2000"]) == 0
        out = capsys.readouterr().out
        text = out[out.index("# A completion") :]  # the first line names the port
        runs.append(re.sub(r"first token .*", "", text))  # footers carry timings
    assert runs[0] == runs[1]


@pytest.mark.slow
def test_demo_says_so_before_it_trains_the_model(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no cached model the demo first prints one line saying it trains; with the cache, it does not."""
    monkeypatch.setenv("VMAN_MAGIC_CACHE", str(tmp_path))
    monkeypatch.setattr(model, "_model", None)  # as in a fresh process on a fresh machine
    assert main(["--tokens-per-second", "2000"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0] == "vman-magic demo: training the offline demo model once (about 5 s)..."
    assert model.cache_path().exists()
    monkeypatch.setattr(model, "_model", None)  # a second process: loads the cache, no notice
    assert main(["--tokens-per-second", "2000"]) == 0
    assert "training" not in capsys.readouterr().out


def test_demo_rejects_a_non_positive_rate(capsys: pytest.CaptureFixture[str]) -> None:
    """--tokens-per-second 0 is refused with exit code 2 and a message."""
    assert main(["--tokens-per-second", "0"]) == 2
    assert "--tokens-per-second must be positive" in capsys.readouterr().err
