"""The notebooks in ``notebooks/``: saved clean, and they run top to bottom offline.

Each notebook is executed by nbclient in a real ``python3`` kernel whose cwd is
``notebooks/``, exactly as Binder would: no ``VMAN_BASE_URL``, so the package
starts its own demo server inside the kernel. The kernel gets a canary
``VMAN_API_KEY``, so a key that leaks into any output is caught.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from vman_magic.notebook.pace import ENV_VAR as DEMO_PACE_VAR

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01-quickstart", "02-teaching-parameters", "03-data-work", "04-python-api"]
CELL_TIMEOUT = 90  # seconds per cell; every cell takes well under one on the demo model

# Things that look like a secret: OpenAI-style keys, bearer tokens, "api_key = <long value>".
KEY_LIKE = re.compile(
    r"sk-[A-Za-z0-9_-]{12,}|Bearer\s+[A-Za-z0-9._~+/-]{8,}|api[_-]?key\s*[=:]\s*[\"']?[A-Za-z0-9_-]{12,}",
    re.IGNORECASE,
)
# Widget views carry 32-hex model ids, which are not secrets but do look random.
SCANNED_MIME = ("text/plain", "text/html", "text/markdown", "application/json")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def kernel_env(canary: str) -> dict[str, str]:
    """The environment of a fresh Binder session: no server configured, only a (canary) key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VMAN_", "OPENAI_")) or k == "VMAN_HISTORY"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["VMAN_API_KEY"] = canary
    env[DEMO_PACE_VAR] = "0"  # the demo at full speed: a test has nobody reading along
    return env


def output_texts(nb: Any) -> list[str]:
    """Every piece of text a reader of the executed notebook could see."""
    texts: list[str] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                texts.append(output["text"])
            elif output["output_type"] == "error":
                texts.extend([output["ename"], output["evalue"], *output["traceback"]])
            else:
                data = output.get("data", {})
                texts.extend(str(data[m]) for m in SCANNED_MIME if m in data)
    return texts


def test_every_notebook_is_here() -> None:
    """The four teaching notebooks exist under the names the README links to."""
    assert _ids(NOTEBOOKS) == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_saved_without_outputs(path: Path) -> None:
    """A saved notebook has no outputs, execution counts or widget state, so none lands in git."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: clear the outputs of cell {cell.id} before committing"
            assert cell.execution_count is None, f"{path.name}: cell {cell.id} has an execution count"
        assert not KEY_LIKE.search(cell.source), f"{path.name}: cell {cell.id} contains something key-like"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_runs_offline_top_to_bottom(path: Path) -> None:
    """The notebook runs without an error in a real kernel on the auto-started demo model, and shows no key."""
    canary = "sk-canary" + secrets.token_hex(12)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute(env=kernel_env(canary))  # a failing cell raises CellExecutionError naming it

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    assert not [o for c in code_cells for o in c.outputs if o["output_type"] == "error"]
    everything = json.dumps(nb, ensure_ascii=False)  # outputs and widget state included
    assert canary not in everything and canary[2:] not in everything
    leaks = [m.group() for text in output_texts(nb) for m in KEY_LIKE.finditer(text)]
    assert leaks == []
    check_demo_notice(nb, shown=path.stem == "01-quickstart")


def check_demo_notice(nb: Any, *, shown: bool) -> None:
    """The demo notice is an output of its own, never in a stream next to the completion, and has no port."""
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    streams = [o["text"] for o in outputs if o["output_type"] == "stream"]
    notices = [o["data"] for o in outputs if "offline demo model" in str(o.get("data", {}).get("text/plain", ""))]
    assert not [s for s in streams if "offline demo model" in s]
    assert len(notices) == 1 if shown else len(notices) <= 1
    for data in notices:
        assert "vman-notice" in data["text/html"] and not re.search(r"127\.0\.0\.1|:\d{4,5}/", data["text/plain"])
