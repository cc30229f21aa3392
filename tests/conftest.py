"""Shared fixtures: one demo server per test session and an IPython shell.

Keep this file small and general; fixtures used by one test module belong in
that module.
"""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture(scope="session")
def shell() -> InteractiveShell:
    """The process-wide IPython shell (what ``get_ipython()`` returns), as in a terminal."""
    return InteractiveShell.instance()
