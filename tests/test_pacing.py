"""Live views that re-send everything are paced: the bytes they send stay bounded whatever the tick rate."""

from __future__ import annotations

import json
from typing import Any

from IPython.core.displaypub import DisplayPublisher

from vman_magic.batch.progress import Tally
from vman_magic.batch.sweep import GridView, _Snapshot
from vman_magic.core.pacing import Pacer


def test_pacer_bounds_bytes_by_final_size_and_budget() -> None:
    """A view growing a little on each of 10,000 ticks is re-sent at most 5x its final size + budget x time."""
    pacer = Pacer()
    sent = size = 0
    now = 0.0
    for _ in range(10_000):
        now += 0.1
        size += 40
        if pacer.due(size, now):
            pacer.sent(size, now)
            sent += size
    every_tick = sum(40 * i for i in range(1, 10_001))
    assert sent <= 5 * size + pacer.budget * now
    assert sent * 20 < every_tick
    assert pacer.due(size + 1, now + 10_000)  # a view that changed is redrawn eventually


def test_pacer_shows_the_first_text_at_once_and_nothing_unchanged() -> None:
    """The first content is due at once; an unchanged size is never due."""
    pacer = Pacer()
    assert pacer.due(10, 0.0)
    pacer.sent(10, 0.0)
    assert not pacer.due(10, 100.0)


class _Counting(DisplayPublisher):  # type: ignore[misc]
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sizes: list[int] = []

    def publish(self, data: Any, metadata: Any = None, source: Any = None, **kwargs: Any) -> None:
        self.sizes.append(len(json.dumps(data)))


def test_grid_view_redraws_paced_but_always_draws_the_end(shell: Any, monkeypatch: Any) -> None:
    """Two hundred growing snapshots in a row: a handful of redraws, and close() draws the last one."""
    counting = _Counting(shell=shell)
    monkeypatch.setattr(shell, "display_pub", counting)
    settings = [{"temperature": t / 10} for t in range(10)]
    view = GridView(settings)
    snaps = [
        _Snapshot(tuple((f"temperature={t / 10}", ("word " * (i + 1),), "running") for t in range(10)), Tally(10))
        for i in range(200)
    ]
    for snap in snaps:
        view.render(snap)  # all within one interval of each other: only the first is due
    view.close(snaps[-1])
    assert len(counting.sizes) == 3  # the empty grid, the first text, the end
    unpaced = _Counting(shell=shell)
    monkeypatch.setattr(shell, "display_pub", unpaced)
    old = GridView(settings, paced=False)
    for snap in snaps:
        old.render(snap)
    assert len(unpaced.sizes) == 201 and sum(unpaced.sizes) > 20 * sum(counting.sizes)
