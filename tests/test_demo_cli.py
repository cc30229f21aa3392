"""Tests for ``vman-magic demo``: a real %%complete session against the offline demo model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vman_magic._demo_cli import main
from vman_magic.core import config as _config


@pytest.fixture(autouse=True)
def _reset_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The demo points the session layer at the throttled demo server; undo that afterwards."""
    for name in ("VMAN_BASE_URL", "OPENAI_BASE_URL", "VMAN_MODEL"):
        monkeypatch.delenv(name, raising=False)
    yield
    _config.clear_session()


def test_demo_runs_cells_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo streams a completion, shows two choices and prints the stored result."""
    assert main(["--prompt", "The old lighthouse", "--tokens-per-second", "2000"]) == 0
    out = capsys.readouterr().out
    assert "In: %%complete -o r --max-tokens 40" in out
    assert "    The old lighthouse" in out
    assert "[choice 0]" in out and "[choice 1]" in out
    assert "Usage(prompt_tokens=" in out
    assert out.count("── finish:") >= 2


def test_demo_rejects_a_non_positive_rate(capsys: pytest.CaptureFixture[str]) -> None:
    """--tokens-per-second 0 is refused with exit code 2 and a message."""
    assert main(["--tokens-per-second", "0"]) == 2
    assert "--tokens-per-second must be positive" in capsys.readouterr().err
