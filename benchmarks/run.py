"""Run every benchmark, print the table, and write it into ``benchmarks/README.md``.

::

    python -m benchmarks            # the full run (about 3-4 minutes on 2 cores)
    python -m benchmarks --quick    # tiny sizes, seconds: checks the suite works
    python -m benchmarks --only stream,memory --output /tmp/results.md

The results go between the ``<!-- results -->`` markers of the output file,
so the hand-written notes around them survive a re-run; a file without the
markers is created or overwritten with the results alone.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import (
    bench_batch,
    bench_display,
    bench_history,
    bench_load,
    bench_memory,
    bench_ratelimit,
    bench_server,
    bench_stream,
    bench_sweep,
    bench_ttft,
)
from ._common import ROOT, Row

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _suites(quick: bool, install: bool) -> dict[str, Callable[[], list[Row]]]:
    """Every figure with its sizes: full, or tiny for ``--quick``."""
    q = quick
    # memory first, in a parent that has not imported the peers yet: after the openai SDK
    # ran in this process, the same fresh child measured up to 7x more growth (see README)
    return {
        "memory": lambda: bench_memory.rows(tokens=20_000 if q else 1_000_000),
        "stream": lambda: bench_stream.rows(events=2_000 if q else 50_000, repeats=2 if q else 5),
        "display": lambda: bench_display.rows(
            tokens=2_000 if q else 20_000, slow_seconds=2 if q else 60, repeats=1 if q else 15
        ),
        "load": lambda: bench_load.rows(repeats=1 if q else 7, install=install and not q),
        "ttft": lambda: bench_ttft.rows(repeats=2 if q else 9),
        "batch": lambda: bench_batch.rows(count=64 if q else 1_000, repeats=1 if q else 3),
        "server": lambda: bench_server.rows(tokens=200 if q else 5_000, total=64 if q else 640),
        "history": lambda: bench_history.rows(
            count=64 if q else 1_000, calls=200 if q else 5_000, repeats=1 if q else 3, search=2_000 if q else 100_000
        ),
        "sweep": lambda: bench_sweep.rows(side=3 if q else 10, tokens=8 if q else 32, tps=200 if q else 40),
        "ratelimit": lambda: bench_ratelimit.rows(count=12 if q else 600, peer_cap=2 if q else 90, quick=q),
    }


def machine() -> str:
    """Date, Python, CPU model and core count, for the header of the results."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    today = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"{today}, Python {platform.python_version()}, {cpu}, {os.cpu_count()} cores, {platform.system()}"


def table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table, then one footnote per row that has a note."""
    cell = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| figure | goal | measured (ours) | peer / reference | verdict |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {cell(r.figure)} | {cell(r.goal)} | {cell(r.measured)} | {cell(r.peer)} | {r.verdict} |" for r in rows
    ]
    notes = dict.fromkeys(f"- {r.figure.split(' ', 1)[0]} {r.note}" for r in rows if r.note)  # once each
    return "\n".join(lines + (["", *notes] if notes else []))


def write(path: Path, results: str) -> None:
    block = f"{START}\n{results}\n{END}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = block + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="vman-magic benchmarks, side by side.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds); jupyter-ai only if installed")
    parser.add_argument("--only", metavar="A,B", help="comma-separated subset of: " + ", ".join(_suites(False, False)))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "README.md", help="file to write")
    parser.add_argument("--no-install", action="store_true", help="never create the jupyter-ai venv")
    args = parser.parse_args(argv)
    suites = _suites(args.quick, install=not args.no_install)
    chosen = args.only.split(",") if args.only else list(suites)
    unknown = [name for name in chosen if name not in suites]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(suites)}")
    # every completion is recorded in a history file, by default the user's own: a run has its own file
    scratch = tempfile.TemporaryDirectory(prefix="vman-bench-history-")
    os.environ.setdefault("VMAN_HISTORY", os.path.join(scratch.name, "history.db"))
    rows: list[Row] = []
    start = time.perf_counter()
    for name in chosen:
        print(f"benchmarks: {name}...", file=sys.stderr, flush=True)
        rows += suites[name]()
    header = f"Measured {machine()}; {'--quick sizes, not representative' if args.quick else 'full run'}"
    header += f" ({time.perf_counter() - start:.0f} s).\n\n"
    results = header + table(rows)
    print(results)
    write(args.output, results)
    return 1 if any(r.ok is False for r in rows) and not args.quick else 0
