"""When a live view that re-sends everything may redraw, so the bytes it sends stay bounded.

A display handle's ``update`` replaces the whole output: a view redrawn on
every tick sends its full size every tick, so a grid that grows to 200 KB
while it fills sent 49 MB. :class:`Pacer` lets a redraw through when

* nothing was shown yet (the first text appears at once), or
* the view grew by ``growth`` since the last redraw (geometric steps: all of
  them together send at most ``growth / (growth - 1)`` times the final size), or
* enough time passed that re-sending it keeps to ``budget`` characters per
  second (so small views move smoothly, large ones rarely), and at least
  ``interval`` seconds passed in any case.

Bytes sent are then at most ``5 x final size + budget x seconds`` (with the
defaults), whatever the number of ticks. The final redraw is the caller's
(views always draw their end state).

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Pacer"]


@dataclass
class Pacer:
    """Decides, per tick, whether a view of ``size`` characters should be re-sent now."""

    interval: float = 0.1
    growth: float = 1.25
    budget: float = 20_000.0  # characters per second spent on redraws that are not growth steps
    sent_size: int = 0
    sent_at: float = float("-inf")

    def due(self, size: int, now: float) -> bool:
        """True when a redraw of ``size`` characters at ``now`` keeps within the bounds above."""
        if size == self.sent_size or now < self.sent_at + self.interval:
            return False
        if not self.sent_size or size >= self.sent_size * self.growth:
            return True
        return now >= self.sent_at + size / self.budget

    def sent(self, size: int, now: float) -> None:
        """Record a redraw."""
        self.sent_size = size
        self.sent_at = now
