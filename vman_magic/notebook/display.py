"""The live view of a completion while it streams.

The client calls :meth:`LiveView.update` after every chunk, possibly thousands
of times a second, so ``update`` is mostly one clock read. What reaches the
front end is shaped by two costs:

* **Latency of the first token.** Until some text has been shown, every update
  is rendered at once; coalescing starts after that.
* **Bytes sent to the browser.** With one choice the view appends only the new
  text as ``stream`` output (``sys.stdout`` in a kernel becomes a stream
  message the front end appends), so the bytes are linear in the text. Every
  other target is *redrawn*: the whole view is re-sent, so redraws are limited
  by rate, by growth and by a character budget per second (see
  :meth:`LiveView._update_redraw`).

Where the view goes is the caller's choice:

* the cell's own output (the magic): stream text for one choice, one display
  handle replaced in place for several;
* a ``sink`` (the Playground panel): a callable that receives the whole view
  as escaped HTML and stores it as widget state. The panel needs this because
  its runs outlive the message that started them: JupyterLab routes captured
  output (``with output_widget:``) only while that message is alive, so
  output printed by a background task is dropped, whereas widget state is
  synced whenever it changes.

Model text written to the stream is cleaned first: ``\\r`` becomes a newline
and ANSI/control escapes are removed, so a completion cannot rewrite earlier
output or colour the notebook. HTML output is escaped by :mod:`._render`.

The view only reads the :class:`~vman_magic.Completion`; it never changes it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from ..core.kernel import in_kernel
from ..core.pacing import Pacer
from ..core.render import completion_html, completion_text, footer_html, footer_text

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

    from ..core.models import Completion, CompletionRequest

__all__ = ["LiveView", "clean_stream_text", "tokens_received"]

STREAM_INTERVAL = 1 / 20  # seconds between appended stream writes (n == 1): smooth to read, few messages
GRID_INTERVAL = 1 / 10  # seconds between redraws (a grid, or any sink)
GRID_GROWTH = 1.25  # ...and only once the text grew by a quarter,
REDRAW_BUDGET = 20_000  # ...or re-sending it fits this many characters a second (see core/pacing.py)

_monotonic = time.monotonic  # bound once: update() runs per chunk
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# C0/C1 controls, and the bidi embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069):
# an override such as U+202E would show the rest of the output reversed ("Trojan Source")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_stream_text(text: str) -> str:
    """Make model text safe to append to a terminal or a notebook stream.

    ``\\r\\n`` and lone ``\\r`` become ``\\n`` (a bare carriage return would let
    the text overwrite what was already shown); ANSI sequences, other
    control characters and bidi overrides are dropped. Tabs and newlines are kept.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", _ANSI.sub("", text))


def tokens_received(chunks: int) -> str:
    """``"24 tokens"``: what an interrupt or Stop reports, in the unit the footer and the panel use.

    Streams from the demo server and OpenAI-style servers carry one token per
    chunk, so the chunk count is the token count a user can compare with
    ``max_tokens``; both faces say "tokens", never "chunks".
    """
    return f"{chunks} token" + ("" if chunks == 1 else "s")


class LiveView:
    """Shows one completion as it arrives: ``start()``, ``update(c)``..., ``finish(c)``.

    ``request`` decides the layout: one expected choice streams as appended
    text, several (``n > 1`` or a list of prompts) become a grid. ``rich``
    defaults to "running in a kernel"; without it (terminal IPython) one choice
    still streams and a grid is printed as labelled blocks at the end.
    ``out`` defaults to ``sys.stdout`` as it is when :meth:`start` runs.

    With ``sink`` nothing is written to ``out`` or displayed: every redraw,
    whatever the number of choices, calls ``sink(html)`` with the whole view
    as escaped HTML (text boxes side by side for several choices, the footer
    on the last call).
    """

    def __init__(
        self,
        request: CompletionRequest | None = None,
        *,
        rich: bool | None = None,
        out: TextIO | None = None,
        sink: Callable[[str], object] | None = None,
    ) -> None:
        self.grid = request is not None and request.choices_expected > 1
        self._rich = rich
        self._out = out
        self._sink = sink
        self._redraw = sink is not None or self.grid  # the whole view is re-sent, not appended
        self._started = False
        self._due = 0.0  # monotonic time before which update() does nothing
        self.chunks = 0  # update() calls so far, i.e. chunks received (see tokens_received)
        # stream mode
        self._written = 0  # characters of the text already written
        self._line_open = False  # the last write did not end with a newline
        # redraw mode
        self._handle: DisplayHandle | None = None
        # the interval is kept by _due (update() is a clock read until then), so the pacer needs none
        self._pacer = Pacer(interval=0.0, growth=GRID_GROWTH, budget=REDRAW_BUDGET)

    @property
    def rich(self) -> bool:
        """Whether rich display (display handles, HTML footer) is used."""
        if self._rich is None:
            self._rich = in_kernel()
        return self._rich

    def start(self) -> None:
        """Get ready to show output; call once before the request is sent."""
        if self._out is None:
            self._out = sys.stdout
        if self._rich is None:  # decide now, not on the first (timed) token
            self._rich = in_kernel()
        self._started = True

    def update(self, completion: Completion) -> None:
        """Called after every chunk; cheap unless an update is due (one clock read, ~100 ns)."""
        self.chunks += 1
        now = _monotonic()
        if now < self._due:
            return
        if self._redraw:
            self._update_redraw(completion, now)
        else:
            self._update_stream(completion, now)

    def finish(self, completion: Completion) -> None:
        """Show the rest of the text and the footer (also after an error or interrupt)."""
        if not self._started:
            self.start()
        if self._redraw:
            if self._sink is not None or self.rich:
                self._show(completion, footer=True)
            else:
                self._write(completion_text(completion) + "\n")
            return
        self._write_delta(completion.text, final=True)
        if self._line_open:
            self._write("\n")
        if self.rich:
            bundle = _footer_bundle(completion)
            if bundle:
                from IPython.display import display

                display(bundle, raw=True)  # type: ignore[no-untyped-call]
        else:
            tail = footer_text(completion)
            if tail:
                self._write(tail + "\n")

    # -- one choice: append the new text -------------------------------------
    def _update_stream(self, completion: Completion, now: float) -> None:
        text = completion.text
        if len(text) == self._written:
            return  # nothing new: keep checking, so the first token is shown at once
        self._write_delta(text, final=False)
        self._due = now + STREAM_INTERVAL

    def _write_delta(self, text: str, *, final: bool) -> None:
        delta = text[self._written :]
        if not final and delta.endswith("\r"):
            delta = delta[:-1]  # hold it back: it may be the first half of "\r\n"
        if not delta:
            return
        self._written += len(delta)
        cleaned = clean_stream_text(delta)
        if cleaned:
            self._write(cleaned)
            self._line_open = not cleaned.endswith("\n")

    def _write(self, s: str) -> None:
        out = self._out or sys.stdout
        out.write(s)
        out.flush()

    # -- redraw: a display handle replaced in place, or the sink -----------------
    def _update_redraw(self, completion: Completion, now: float) -> None:
        """Re-send the whole view, but rarely enough that the bytes stay bounded.

        The same :class:`~vman_magic.core.pacing.Pacer` as the sweep grid: at
        most one redraw per ``GRID_INTERVAL``, and after the first only when
        the text grew by ``GRID_GROWTH`` or re-sending it fits
        ``REDRAW_BUDGET`` characters a second, so the bytes sent stay within
        five times the final view plus the budget per second.
        """
        if self._sink is None and not self.rich:
            self._due = float("inf")  # terminal: the grid is printed once, at the end
            return
        size = sum(len(ch.text) for ch in completion.choices)
        if size == self._pacer.sent_size:
            return
        if not self._pacer.due(size, now):
            self._due = now + GRID_INTERVAL
            return
        self._show(completion, footer=False)
        self._pacer.sent(size, now)
        self._due = now + GRID_INTERVAL

    def _show(self, completion: Completion, *, footer: bool) -> None:
        if self._sink is not None:
            self._sink(completion_html(completion, footer=footer))
            return
        bundle = {
            "text/plain": completion_text(completion, footer=footer),
            "text/html": completion_html(completion, footer=footer),
        }
        if self._handle is None:
            from IPython.display import display

            self._handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(bundle, raw=True)  # type: ignore[no-untyped-call]


def _footer_bundle(completion: Completion) -> dict[str, Any] | None:
    text = footer_text(completion)
    if not text:
        return None
    return {"text/plain": text, "text/html": footer_html(completion)}
