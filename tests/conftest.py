"""Shared fixtures: one demo server per test session and an IPython shell.

Keep this file small and general; fixtures used by one test module belong in
that module.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

# Every completion is recorded in a history file, by default in the user's data folder. The suite
# must never write there: its own file for the whole session, set before anything imports the
# package, and inherited by every kernel and subprocess a test starts. Tests of the history itself
# use the per-test ``history_file`` fixture.
_SESSION_HISTORY = Path(tempfile.mkdtemp(prefix="vman-test-history-"))
os.environ["VMAN_HISTORY"] = str(_SESSION_HISTORY / "history.db")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_HISTORY, ignore_errors=True)


@pytest.fixture(scope="session")
def shell() -> InteractiveShell:
    """The process-wide IPython shell (what ``get_ipython()`` returns), as in a terminal."""
    return InteractiveShell.instance()


@pytest.fixture
def interruptible() -> Iterator[None]:
    """Ctrl-C (``_thread.interrupt_main()``) raises KeyboardInterrupt in this test, whoever started pytest.

    ``interrupt_main`` only simulates Ctrl-C while Python handles SIGINT. A process
    started in the background (``pytest &``, ``nohup``, some CI runners) inherits
    SIGINT as *ignored*, and then the call does nothing: an interrupt test would
    wait for its timeout and fail. So the test gets Python's default handler, and
    the previous one comes back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT's handler can only be changed from the main thread")
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:
        pytest.skip("SIGINT's handler was installed outside Python and could not be restored")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def demo_server() -> Iterator[Any]:
    """The package's own demo server on 127.0.0.1 with an ephemeral port, shared by the session."""
    from vman_magic.testing import serve

    with serve() as server:
        yield server


@pytest.fixture(scope="session")
def hostile() -> Iterator[Any]:
    """A hostile server on 127.0.0.1 (``tests/hostile_server.py``): ``hostile.url(case)`` is a base URL."""
    from hostile_server import hostile_server

    with hostile_server() as server:
        yield server


@pytest.fixture
def vman_shell(
    shell: InteractiveShell, demo_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    """The shell with vman_magic loaded and the demo server as session default; every setting reset afterwards.

    No ``VMAN_*``/``OPENAI_*`` variable of the machine leaks in, and ``r`` and
    ``_completion`` are removed after the test.
    """
    from vman_magic.core import config as _config

    for name in ("VMAN_BASE_URL", "VMAN_API_KEY", "VMAN_MODEL", "VMAN_TIMEOUT", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    shell.extension_manager.load_extension("vman_magic")  # quiet when already loaded
    _config.clear_session()
    _config.set_session(base_url=demo_server.base_url, model="vman-demo")
    yield shell
    _config.clear_session()
    magics = shell.magics_manager.registry["VmanMagic"]
    magics.model = magics.base_url = ""
    magics.timeout = magics.max_retries = magics.default_max_tokens = None
    _config.set_ipython_config({})
    for name in ("r", "_completion"):
        shell.user_ns.pop(name, None)


@pytest.fixture
def history_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh history file for this test only (``VMAN_HISTORY``); history state is reset before and after."""
    from vman_magic.logbook import session

    path = tmp_path / "history.db"
    monkeypatch.setenv("VMAN_HISTORY", str(path))
    session.reset()
    yield path
    session.reset()
