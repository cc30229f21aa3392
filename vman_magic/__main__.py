"""``python -m vman_magic serve``: the same as the ``vman-magic`` command."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
