"""The offline demo starts on purpose: only a door about to send, with no base URL anywhere, starts it.

Each check runs in a fresh interpreter, where the demo server has certainly
not started yet, and reports the threads alive, whether the demo launcher
started its server, and whether the server's modules were even imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

_REPORT = """
import json, sys, threading
from vman_magic.demo import launch
print(json.dumps({
    "threads": sorted(t.name for t in threading.enumerate()),
    "demo_running": launch.demo_running(),
    "server_imported": "vman_magic.demo.app" in sys.modules,
}))
"""


def _fresh(code: str, **env: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter without VMAN_/OPENAI_ settings; return the report it prints last."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VMAN_", "OPENAI_")) or k == "VMAN_HISTORY"}
    script = textwrap.dedent(code) + _REPORT
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env={**clean, **env}, timeout=60
    )
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def _nothing_started(report: dict[str, Any]) -> None:
    threads = [t for t in report["threads"] if t not in ("MainThread", "IPythonHistorySavingThread")]
    assert (threads, report["demo_running"], report["server_imported"]) == ([], False, False), report


def test_client_with_a_base_url_starts_nothing() -> None:
    """Client and AsyncClient with a base URL (a closed port: nothing is sent) start no thread or server."""
    _nothing_started(
        _fresh("""
            import vman_magic
            c = vman_magic.Client(base_url="http://127.0.0.1:9/v1", model="m")
            a = vman_magic.AsyncClient(base_url="http://127.0.0.1:9/v1", model="m")
            repr(c), repr(a)
            c.close()
        """)
    )


def test_resolving_settings_starts_nothing() -> None:
    """resolve() with no base URL anywhere says so (is_demo, no URL) instead of starting the server."""
    report = _fresh("""
        from vman_magic.core.config import resolve
        s = resolve()
        assert s.is_demo and s.base_url is None and s.model == "vman-demo", s
    """)
    _nothing_started(report)


def test_vman_config_with_a_base_url_starts_nothing() -> None:
    """%load_ext, %vman base_url and %vman config show the settings without starting anything."""
    report = _fresh("""
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "vman_magic")
        ip.run_line_magic("vman", "base_url http://127.0.0.1:9/v1")
        ip.run_line_magic("vman", "config")
    """)
    _nothing_started(report)


def test_vman_config_without_a_base_url_says_the_demo_would_start() -> None:
    """With nothing configured, %vman config names the demo without starting it; the env var works the same."""
    code = """
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "vman_magic")
        ip.run_line_magic("vman", "config")
    """
    _nothing_started(_fresh(code))
    _nothing_started(_fresh(code, VMAN_BASE_URL="http://127.0.0.1:9/v1"))


def test_a_face_with_no_base_url_starts_the_demo_once() -> None:
    """complete() with nothing configured starts the demo server: on purpose, at the door, in one thread."""
    report = _fresh("""
        import vman_magic
        assert vman_magic.complete("Hello", max_tokens=2).model == "vman-demo"
        assert vman_magic.Client().settings.is_demo
    """)
    assert report["demo_running"] is True and report["server_imported"] is True
    assert report["threads"].count("vman-magic-demo-server") == 1


def test_magic_dry_run_starts_nothing() -> None:
    """A %%complete --dry-run sends nothing, so it starts nothing either (it names the demo instead)."""
    report = _fresh("""
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "vman_magic")
        assert ip.run_cell("%%complete --dry-run --max-tokens 3\\nHello").success
    """)
    _nothing_started(report)
