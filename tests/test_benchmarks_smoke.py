"""The benchmark suite runs end to end on tiny sizes and writes a results table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_run_writes_a_table(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` prints and writes a table with a row for every figure."""
    out = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-install", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    written = out.read_text(encoding="utf-8")
    assert "| figure | goal | measured (ours) | peer / reference | verdict |" in written
    for figure in ("1.", "2a.", "2b.", "3a.", "3b.", "4.", "5.", "6.", "7a.", "7b.", "8a.", "8b.", "8c.", "9.", "10."):
        assert f"\n| {figure} " in written, f"no row for figure {figure}"
    assert "| figure | goal |" in done.stdout
