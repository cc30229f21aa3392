"""``vman-magic demo``: a real ``%%complete`` session in the terminal, offline.

The README's first command. It proves the whole path works on this machine
(IPython, the magic, the client, the SSE stream, the live view) before the
user opens a notebook or has a key: it starts an ``InteractiveShell``, loads
the extension, and runs a few cells against the offline demo model, throttled
to a pleasant reading speed so the streaming is visible.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]

# The demo model learnt English from the standard library's docstrings, so a
# docstring-like prompt at a low temperature reads best (as notebook 01 does);
# seeds make every run show the same text.
DEFAULT_PROMPT = "Return the number of"
DEFAULT_TOKENS_PER_SECOND = 40.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vman-magic demo",
        description="Run a few %%complete cells against the offline demo model and stream them here.",
    )
    parser.add_argument(
        "--prompt", default=DEFAULT_PROMPT, help=f"the prompt to complete (default: {DEFAULT_PROMPT!r})"
    )
    parser.add_argument(
        "--tokens-per-second",
        type=float,
        default=DEFAULT_TOKENS_PER_SECOND,
        metavar="R",
        help=f"how fast the demo model streams (default: {DEFAULT_TOKENS_PER_SECOND:g})",
    )
    return parser


def _cells(prompt: str) -> list[tuple[str, str]]:
    """The demo: (what it shows, the cell exactly as a user would type it in a notebook)."""
    return [
        (
            "A completion, streamed as the model writes it (low temperature, seeded):",
            f"%%complete -o r -t 0.6 --seed 3 --max-tokens 40\n{prompt}",
        ),
        (
            "Two answers side by side, a little hotter (-n 2 -t 0.8):",
            f"%%complete -n 2 -t 0.8 --seed 1 --max-tokens 24\n{prompt}",
        ),
        ("The result of the first cell is a Python object in `r`:", "print(repr(r.text))\nprint(r.usage)"),
    ]


def _heading(text: str, tty: bool) -> str:
    return f"\033[1m{text}\033[0m" if tty else text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the process exit code (0 when every cell succeeded)."""
    args = _parser().parse_args(argv)
    if args.tokens_per_second <= 0:
        print("vman-magic demo: --tokens-per-second must be positive", file=sys.stderr)
        return 2

    from IPython.core.interactiveshell import InteractiveShell

    from .core import config as _config
    from .demo.launch import DEMO_MODEL, demo_base_url
    from .demo.model import get_model, is_ready
    from .notebook.magic import load_ipython_extension
    from .testing import url

    if not is_ready():
        print("vman-magic demo: training the offline demo model once (about 5 s)...", flush=True)
    get_model()  # trained (or loaded) now, so the first cell streams at once
    demo = demo_base_url()
    # The session layer is what `%vman base_url` sets: the cells below stay exactly
    # what a user types, and only this process is affected.
    _config.set_session(base_url=url(demo, tps=args.tokens_per_second), model=DEMO_MODEL)
    shell = InteractiveShell.instance()
    load_ipython_extension(shell)
    tty = sys.stdout.isatty()
    print(
        f"vman-magic demo: {DEMO_MODEL}, a small model trained on Python's docstrings, at {demo}, "
        f"streaming {args.tokens_per_second:g} tokens/s"
    )
    for explanation, cell in _cells(args.prompt):
        print()
        print(_heading("# " + explanation, tty))
        print("\n".join(("In: " if i == 0 else "    ") + line for i, line in enumerate(cell.splitlines())))
        result = shell.run_cell(cell, store_history=False)  # type: ignore[no-untyped-call]
        if not result.success:
            return 1
    print()
    print("Next, in Jupyter: %load_ext vman_magic, then a %%complete cell.")
    print("%%complete? lists every flag; %vman config shows the settings in use; %vman help lists the commands.")
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m vman_magic._demo_cli`
    sys.exit(main())
