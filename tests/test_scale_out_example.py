"""README's "Scale past one machine" example runs as written: four processes share one limited key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vman_magic.testing import serve

ROOT = Path(__file__).resolve().parent.parent


def _example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL) if b.startswith("# job.py")]
    assert len(blocks) == 1, "README has one job.py example"
    return blocks[0]


@pytest.mark.slow
def test_readme_job_splits_the_quota_over_worker_processes(tmp_path: Path) -> None:
    """Each worker paces to its share, so the key's limit is never hit and every row is answered."""
    (tmp_path / "job.py").write_text(_example(), encoding="utf-8")
    pd.DataFrame({"review": [f"Review {i}: the soup was cold" for i in range(40)]}).to_csv(tmp_path / "reviews.csv")
    with serve(rpm=1200, tpm=40_000, ratelimit_headers=False) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VMAN_", "OPENAI_"))}
        env.update(VMAN_BASE_URL=server.base_url, VMAN_MODEL="vman-demo", VMAN_HISTORY=str(tmp_path / "h.db"))
        done = subprocess.run(
            [sys.executable, "job.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert server.stats.completions == 40
        assert server.stats.rate_limited <= 3  # none on a quiet machine; a stalled process can bunch a burst
    out = pd.read_csv(tmp_path / "summaries.csv", keep_default_na=False)
    assert len(out) == 40 and (out["completion_error"] == "").all() and (out["completion"] != "").all()
