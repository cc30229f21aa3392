"""Progress for batches: a tqdm bar fed with immutable :class:`Tally` snapshots.

``tqdm.auto`` picks the notebook widget bar inside a kernel and a text bar on
a terminal, both with an ETA, so there is nothing to hand-write here (tqdm is
a declared dependency).

The bar is fed snapshots, never live results: ``complete_many`` runs its event
loop in a worker thread while everything that reaches the notebook is drawn
from the thread that runs the cell, so output lands in the right cell and the
bar's widgets are touched from one thread only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

__all__ = ["NullProgress", "Progress", "Tally", "TqdmProgress", "make_progress", "summary_line"]


@dataclass(frozen=True)
class Tally:
    """Counts of a running batch at one moment (immutable, so threads can share it)."""

    total: int
    done: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    cached: int = 0
    """Items answered from the history instead of the server (counted in ``done``)."""
    incomplete: int = 0
    """Items that ended without an error but not whole: the server cut them short (not counted in ``done``)."""

    @property
    def finished(self) -> int:
        """Items that ended, well or not."""
        return self.done + self.failed + self.incomplete


class Progress(Protocol):
    """What a batch needs from a progress view."""

    def update(self, tally: Tally) -> None: ...

    def close(self, tally: Tally) -> None: ...


class NullProgress:
    """``progress=False``: draws nothing."""

    def update(self, tally: Tally) -> None:
        pass

    def close(self, tally: Tally) -> None:
        pass


def summary_line(tally: Tally, elapsed: float | None = None) -> str:
    """One line for the end of a batch: counts, tokens, retries, time.

    >>> summary_line(Tally(total=3, done=2, failed=1, prompt_tokens=9, completion_tokens=30))
    '3 prompts: 2 done, 1 failed; tokens 9 prompt + 30 completion = 39'
    """
    done = f"{tally.done} done" + (f" ({tally.cached} from history)" if tally.cached else "")
    parts = [f"{tally.total} prompt{'s' if tally.total != 1 else ''}: {done}"]
    if tally.incomplete:
        parts.append(f"{tally.incomplete} incomplete (cut short by the server)")
    if tally.failed:
        parts.append(f"{tally.failed} failed")
    unfinished = tally.total - tally.finished
    if unfinished:
        parts.append(f"{unfinished} not finished")
    line = ", ".join(parts)
    tokens = tally.prompt_tokens + tally.completion_tokens
    line += f"; tokens {tally.prompt_tokens:,} prompt + {tally.completion_tokens:,} completion = {tokens:,}"
    if tally.retries:
        line += f"; {tally.retries} retr{'ies' if tally.retries != 1 else 'y'}"
    if elapsed is not None:
        line += f"; {elapsed:.1f} s"
    return line


#: tqdm's own right side, but with the rate never inverted ("0.42 prompts/s", not "2.38s/prompt").
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
FAILED_COLOUR = "#d32f2f"  # the bar turns red at the first failure (tqdm would finish it green)


class TqdmProgress:
    """A ``tqdm.auto`` bar with failed/tokens in its postfix and one summary line at the end.

    The unit is `` prompts`` (with its space) so the rate reads "2.62
    prompts/s"; a failure turns the bar red at once and it stays red, so a
    finished batch with failed items does not look like a clean green run.
    """

    def __init__(self, total: int | None, desc: str) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=" prompts", bar_format=BAR_FORMAT, dynamic_ncols=True)
        self._started = time.perf_counter()
        self._red = False

    def update(self, tally: Tally) -> None:
        bar = self._bar
        if tally.failed and not self._red:
            self._red = True
            bar.colour = FAILED_COLOUR
        if tally.finished != bar.n:
            tokens = tally.prompt_tokens + tally.completion_tokens
            postfix = {"failed": tally.failed, "tokens": f"{tokens:,}"}
            if tally.cached:
                postfix["from_history"] = tally.cached
            if tally.incomplete:
                postfix["incomplete"] = tally.incomplete
            bar.set_postfix(postfix, refresh=False)
            bar.update(tally.finished - bar.n)

    def close(self, tally: Tally) -> None:
        self.update(tally)
        self._bar.close()
        print(summary_line(tally, time.perf_counter() - self._started))


def make_progress(enabled: bool, total: int | None, desc: str = "completions") -> Progress:
    """A tqdm bar (``total=None``: a count without an end), or a silent view for ``progress=False`` and empty batches."""
    if not enabled or total == 0:
        return NullProgress()
    return TqdmProgress(total, desc)
