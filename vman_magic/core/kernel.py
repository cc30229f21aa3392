"""Where the code runs: inside a Jupyter kernel (rich display) or not (terminal IPython, a script).

Shared by the notebook views and the batch views. Standard library only: it
looks IPython up in ``sys.modules`` instead of importing it, because a
process that never imported IPython is not a kernel, and a script that only
calls ``complete_many`` should not pay for importing it.
"""

from __future__ import annotations

import sys

__all__ = ["in_kernel"]


def in_kernel() -> bool:
    """True inside a Jupyter kernel (rich display), False in terminal IPython or a script."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
