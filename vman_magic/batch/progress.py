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
    rate_limited: int = 0
    """429s met (each item met by one was sent again when the budget allowed)."""
    waiting: str = ""
    """Why nothing is being sent right now, e.g. "waiting 12 s for the token budget"; "" when sending."""
    pace: float | None = None
    """Requests sent per minute lately, once the batch is paced by a budget (else ``None``)."""

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
    if tally.rate_limited:
        line += f"; {tally.rate_limited} rate-limited (429)"
    if elapsed is not None:
        line += f"; {elapsed:.1f} s"
    return line


#: tqdm's own right side, but with the rate never inverted ("0.42 prompts/s", not "2.38s/prompt").
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
FAILED_COLOUR = "#d32f2f"  # the bar turns red at the first failure (tqdm would finish it green)


class TqdmProgress:
    """A ``tqdm.auto`` bar with failed/tokens (and pace, 429s) in its postfix and one summary line at the end.

    The unit is `` prompts`` (with its space) so the rate reads "2.62
    prompts/s"; a failure turns the bar red at once and it stays red, so a
    finished batch with failed items does not look like a clean green run.

    While a budget holds the batch back, the description says so
    ("completions, waiting 12 s for the token budget").
    """

    def __init__(self, total: int | None, desc: str) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=" prompts", bar_format=BAR_FORMAT, dynamic_ncols=True)
        self._desc = desc
        self._shown: tuple[object, ...] = ()
        self._started = time.perf_counter()
        self._red = False

    def update(self, tally: Tally) -> None:
        bar = self._bar
        if tally.failed and not self._red:
            self._red = True
            bar.colour = FAILED_COLOUR
        shown = (
            tally.finished,
            tally.cached,
            tally.incomplete,
            tally.rate_limited,
            tally.waiting,
            None if tally.pace is None else round(tally.pace, -1),
        )
        if shown == self._shown:
            return
        self._shown = shown
        tokens = tally.prompt_tokens + tally.completion_tokens
        postfix = {"failed": tally.failed, "tokens": f"{tokens:,}"}
        if tally.pace is not None:
            postfix["pace"] = f"{tally.pace:,.0f} req/min"
        if tally.cached:
            postfix["from_history"] = tally.cached
        if tally.incomplete:
            postfix["incomplete"] = tally.incomplete
        if tally.rate_limited:
            postfix["429s"] = tally.rate_limited
        bar.set_postfix(postfix, refresh=False)
        bar.set_description_str(f"{self._desc}, {tally.waiting}" if tally.waiting else self._desc, refresh=False)
        if tally.finished != bar.n:
            bar.update(tally.finished - bar.n)
        else:
            bar.refresh()

    def close(self, tally: Tally) -> None:
        self.update(tally)
        self._bar.close()
        print(summary_line(tally, time.perf_counter() - self._started))


def make_progress(enabled: bool, total: int | None, desc: str = "completions") -> Progress:
    """A tqdm bar (``total=None``: a count without an end), or a silent view for ``progress=False`` and empty batches."""
    if not enabled or total == 0:
        return NullProgress()
    return TqdmProgress(total, desc)
