"""The client layer imports neither IPython nor ipywidgets, so it works in scripts and imports fast."""

from __future__ import annotations

import subprocess
import sys

import pytest

CLIENT_LAYER = [
    "core.params",
    "core.errors",
    "core.models",
    "core.config",
    "client.sse",
    "client.retry",
    "client.answers",
    "client.client",
    "logbook.rows",
    "logbook.db",
    "logbook.writer",
    "logbook.session",
    "logbook.entries",
    "demo.launch",
]


def _modules_after(code: str) -> set[str]:
    """Run ``code`` in a fresh interpreter; return the top-level names then in sys.modules."""
    script = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_complete_leaves_ipython_and_ipywidgets_unimported() -> None:
    """``import vman_magic; vman_magic.complete`` loads no IPython and no ipywidgets."""
    loaded = _modules_after("import vman_magic\nvman_magic.complete\nvman_magic.AsyncClient\nvman_magic.VmanError")
    assert "IPython" not in loaded and "ipywidgets" not in loaded


@pytest.mark.parametrize("module", CLIENT_LAYER)
def test_client_layer_module_imports_alone(module: str) -> None:
    """Each client-layer module imports on its own without IPython, ipywidgets or the demo server."""
    loaded = _modules_after(f"import vman_magic.{module}")
    assert "IPython" not in loaded and "ipywidgets" not in loaded


def test_plain_import_does_not_start_or_load_the_demo_server() -> None:
    """Importing the client does not import the server package; it loads only when needed."""
    code = "import vman_magic.client.client\nimport sys\nassert 'vman_magic.demo.app' not in sys.modules and 'h11' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
