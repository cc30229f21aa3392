"""Figure 3: ``%load_ext`` cost in a fresh process, ours vs jupyter-ai's magics.

jupyter-ai-magics pulls in langchain and friends, whose versions conflict
with what this environment pins, so it lives in its own venv
(``benchmarks/.venv``, created on first use). Each timing is one
``%load_ext`` in a fresh interpreter after IPython itself is imported and an
``InteractiveShell`` exists: the shell is there before any extension in
every notebook, so only the extension's own cost is counted.
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

from ._common import ROOT, Row, median, run_json

VENV = ROOT / "benchmarks" / ".venv"
PEER_PACKAGE = "jupyter-ai-magics"

_LOAD = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
start = time.perf_counter()
shell.run_line_magic("load_ext", {name!r})
seconds = time.perf_counter() - start
print(json.dumps({{"s": seconds, "ipywidgets": "ipywidgets" in sys.modules}}))
"""

_IMPORTS = """
import json, sys, time
start = time.perf_counter()
import vman_magic
seconds = time.perf_counter() - start
after_import = "ipywidgets" in sys.modules
import vman_magic.notebook.panel  # the panel is the one part that needs ipywidgets
print(json.dumps({"s": seconds, "import": after_import, "panel": "ipywidgets" in sys.modules}))
"""

_HTTPX = """
import json, time
start = time.perf_counter()
import httpx
print(json.dumps({"s": time.perf_counter() - start}))
"""


def peer_python(install: bool) -> tuple[Path | None, str]:
    """The venv's python with jupyter-ai-magics in it, or ``None`` and the reason."""
    python = VENV / "bin" / "python"
    if python.exists() and _has_peer(python):
        return python, ""
    if not install:
        return None, f"{PEER_PACKAGE} not installed in {VENV.relative_to(ROOT)} (skipped in --quick)"
    print(f"benchmarks: installing {PEER_PACKAGE} into {VENV.relative_to(ROOT)} (once, takes a few minutes)...")
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", PEER_PACKAGE], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or not _has_peer(python):
        return None, f"pip install {PEER_PACKAGE} failed: {done.stderr.strip().splitlines()[-1:]}"
    return python, ""


def _has_peer(python: Path) -> bool:
    found = subprocess.run([str(python), "-c", "import jupyter_ai_magics"], capture_output=True, check=False)
    return found.returncode == 0


def peer_version(python: Path) -> str:
    code = "import importlib.metadata as m; print(m.version('jupyter-ai-magics'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def rows(repeats: int, install: bool) -> list[Row]:
    peer, why = peer_python(install)
    ours, theirs, httpx_s, imports = [], [], [], []
    for _ in range(repeats):
        ours.append(run_json(_LOAD.format(name="vman_magic")))
        httpx_s.append(run_json(_HTTPX)["s"])
        imports.append(run_json(_IMPORTS))
        if peer is not None:
            theirs.append(run_json(_LOAD.format(name="jupyter_ai_magics"), python=str(peer))["s"])
    ours_s = median([r["s"] for r in ours])
    no_widgets = not any(r["ipywidgets"] for r in ours) and not any(r["import"] for r in imports)
    control = all(r["panel"] for r in imports)
    if peer is not None:
        theirs_s = median(theirs)
        peer_text = f"jupyter_ai_magics {peer_version(peer)}: {theirs_s:.3f} s"
        speedup = theirs_s / ours_s
        measured = f"{ours_s:.3f} s = {speedup:.0f}x faster"
        ok: bool | None = ours_s <= 0.25 and speedup >= 5
    else:
        peer_text, measured, ok = why, f"{ours_s:.3f} s", None
    return [
        Row(
            "3a. %load_ext, fresh process",
            "<= 0.25 s and >= 5x faster than jupyter-ai",
            measured,
            peer_text + f"; import httpx alone {median(httpx_s):.3f} s",
            ok,
        ),
        Row(
            "3b. ipywidgets stays unimported",
            "not by import vman_magic nor %load_ext",
            "not imported" if no_widgets else "IMPORTED",
            "control: importing the panel does import it" + ("" if control else " (control FAILED)"),
            no_widgets and control,
        ),
    ]
