"""README's "Real servers" table agrees with what the servers do, measured now.

Each cell of the table starts with the verdict a probe of
``peer_capabilities.py`` returns ("yes", "no", "error", "n/a"); what follows
in brackets is for readers. A server upgrade that changes a verdict fails
here, naming the cell, so the table cannot go stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from peer_capabilities import COLUMNS, PROBES, RECOMMENDED_ROW, Target, measure
from peer_servers import LLAMA_INTERRUPTING_MODEL, Peer

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> dict[str, dict[str, str]]:
    """The table under "## Real servers" as {column: {row: verdict}}."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Real servers") :]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table: dict[str, dict[str, str]] = {column: {} for column in header[1:]}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != len(header):
            break  # the next table
        for column, cell in zip(header[1:], cells[1:], strict=True):
            table[column][cells[0]] = cell.split()[0]
    return table


def test_readme_table_has_every_server_and_probe() -> None:
    """The table's columns are the servers the tier measures, its rows every probe."""
    table = readme_table()
    assert tuple(table) == COLUMNS
    assert list(table["llama.cpp"]) == [*PROBES, RECOMMENDED_ROW]


@pytest.fixture
def targets(request: pytest.FixtureRequest) -> Any:
    """Lazily the (as it comes, without interrupts) targets of one column."""

    def get(column: str) -> tuple[Target, Target | None]:
        if column == "demo server":
            demo = request.getfixturevalue("demo_server")
            return Target(demo.base_url, "vman-demo"), None
        if column == "llama.cpp":
            llama: Peer = request.getfixturevalue("llama")
            default: Peer = request.getfixturevalue("llama_interrupting")
            return Target(default.base_url, default.model), Target(llama.base_url, llama.model)
        if column == "LiteLLM mock":
            mock: Peer = request.getfixturevalue("litellm_mock")
            return Target(mock.base_url, mock.model), None
        forward: Peer = request.getfixturevalue("litellm_llama")
        return Target(forward.base_url, LLAMA_INTERRUPTING_MODEL), Target(forward.base_url, forward.model)

    return get


@pytest.mark.parametrize("column", COLUMNS)
def test_readme_table_matches_the_server(column: str, targets: Any) -> None:
    """Every verdict in the column is what the probe measures against that server now."""
    expected = readme_table()[column]
    measured = measure(*targets(column))
    wrong = [
        f"{row}: README says {expected.get(row)!r}, measured {verdict!r} ({detail})"
        for row, (verdict, detail) in measured.items()
        if expected.get(row) != verdict
    ]
    assert not wrong, f"README's Real servers table is out of date for {column}:\n" + "\n".join(wrong)
