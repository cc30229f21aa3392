"""Shared fixtures: one demo server per test session and an IPython shell.

Keep this file small and general; fixtures used by one test module belong in
that module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture(scope="session")
def shell() -> InteractiveShell:
    """The process-wide IPython shell (what ``get_ipython()`` returns), as in a terminal."""
    return InteractiveShell.instance()


@pytest.fixture(scope="session")
def demo_server() -> Iterator[Any]:
    """The package's own demo server on 127.0.0.1 with an ephemeral port, shared by the session."""
    from vman_magic.testing import serve

    with serve() as server:
        yield server
