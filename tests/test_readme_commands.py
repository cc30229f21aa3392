"""README's install commands are the ones CI and Binder run, and name extras that exist.

A newcomer pastes README's commands; CI proves the test command works only if
it runs that same text, and Binder must install what README says a notebook needs.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
TEST = 'pip install -e ".[test]" && python -m pytest'
DEV = 'pip install -e ".[dev]" && ruff check . && ruff format --check . && mypy'
LAB = 'pip install -e ".[lab]" && jupyter lab notebooks/'


def _commands(text: str) -> list[str]:
    """The lines of ```bash blocks, without trailing comments."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]


def test_ci_runs_readmes_test_command_verbatim() -> None:
    """.ci/run's last command is README's test command, character for character."""
    commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert commands[-1] == TEST
    assert TEST in _commands(README)


def test_readme_gives_the_development_and_jupyter_commands() -> None:
    """Development's lint command and the Jupyter command are in README, the latter in the Chinese quick start too."""
    assert DEV in _commands(README)
    english, chinese = README.split("## 中文快速入门")
    assert LAB in _commands(english) and LAB in _commands(chinese)


def test_binder_installs_the_lab_extra() -> None:
    """Binder installs the package with the same extra as README's Jupyter command."""
    requirements = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    assert [line for line in requirements if line and not line.startswith("#")] == ["-e .[lab]"]


def test_every_extra_readme_names_exists() -> None:
    """Each `.[extra]` in README's commands is declared in pyproject.toml."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    named = {extra for command in _commands(README) for extra in re.findall(r'\.\[(\w+)\]"', command)}
    assert named == {"test", "dev", "lab"}
    for extra in named:
        assert re.search(rf"^{extra} = \[", pyproject, flags=re.MULTILINE), extra
