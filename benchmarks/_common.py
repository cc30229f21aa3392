"""Shared pieces of the benchmarks: result rows, medians, helper processes.

Every figure is a ratio or a side-by-side pair measured in the same run, and
every timing is the median of several repetitions, interleaved between the
contenders, because the machine is a noisy shared one.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Row:
    """One line of the results table."""

    figure: str
    goal: str
    measured: str
    peer: str
    ok: bool | None  # None: nothing to judge (a reference figure, or not measurable here)
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "-"}[self.ok]


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(func: Callable[[], Any]) -> float:
    """Wall time of one call, in seconds."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time every contender ``repeats`` times, round-robin, after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for func in contenders.values():
            func()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, func in contenders.items():
            times[name].append(timed(func))
    return times


def bench_env() -> dict[str, str]:
    """The environment for helper processes: this checkout importable, no gateway settings.

    ``VMAN_HISTORY`` is kept: :func:`benchmarks.run.main` points it at a file of
    its own, so helper processes never write to the user's real history.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VMAN_", "OPENAI_")) or k == "VMAN_HISTORY"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


@contextlib.contextmanager
def server_process(args: list[str]) -> Iterator[str]:
    """Run a server module (``python -m ...``) in its own process; yield the base URL it prints."""
    proc = subprocess.Popen(
        [PYTHON, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=bench_env(), cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("serving "):
            raise RuntimeError(f"{' '.join(args)} did not start (printed {line!r})")
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_server(
    events: int, choices: int = 1, logprobs: bool = False, latency_ms: float = 0
) -> contextlib.AbstractContextManager[str]:
    """The pre-rendered SSE server (:mod:`benchmarks.sse_server`) in its own process."""
    args = [
        "benchmarks.sse_server",
        "--events",
        str(events),
        "--choices",
        str(choices),
        "--latency-ms",
        str(latency_ms),
    ]
    return server_process(args + (["--logprobs"] if logprobs else []))


def demo_server(*, extra: list[str] | None = None, **throttle: float) -> contextlib.AbstractContextManager[str]:
    """The package's demo server (``python -m vman_magic serve``) in its own process; ``extra`` flags as given."""
    args = ["vman_magic", "serve"]
    for name, value in throttle.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return server_process(args + (extra or []))


def run_json(code: str, python: str = PYTHON, timeout: float = 600) -> Any:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last, which is returned."""
    import json

    done = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=bench_env(), cwd=ROOT, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"helper process failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt_rate(per_second: float) -> str:
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.0f} k/s"
    return f"{per_second:.0f}/s"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
