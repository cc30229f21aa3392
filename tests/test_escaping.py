"""Hostile model text renders as text in every HTML view: stream view, grid, panel sink, result, heatmap, sweep.

The demo server echoes the prompt as model text (``echo=True``), so the hostile
text below really arrives over the wire and through the decoder, like a model
that writes HTML would send it.
"""

from __future__ import annotations

import re
from typing import Any

from vman_magic import Client
from vman_magic.batch.engine import prepare
from vman_magic.batch.sweep import _bundle, _cells
from vman_magic.core.config import Settings
from vman_magic.core.models import Completion, CompletionBuilder, CompletionRequest
from vman_magic.notebook.display import LiveView

HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(1)> &amp; <b>bold</b>"
RAW_TAG = re.compile(r"<\s*(script|img|b)\b", re.IGNORECASE)


def _assert_escaped(label: str, markup: str) -> None:
    """No hostile tag survives as markup, and the entity is escaped again (shows as the text '&amp;')."""
    assert RAW_TAG.search(markup) is None, f"raw tag in {label}"
    assert "&lt;script&gt;" in markup and "&amp;amp;" in markup, f"hostile text missing from {label}"


def _echo(demo_server: Any, **params: Any) -> Completion:
    with Client(base_url=demo_server.base_url, model="vman-demo") as client:
        return client.complete(HOSTILE, echo=True, max_tokens=3, seed=1, **params)


def test_result_repr_and_heatmap_escape_model_text(demo_server: Any) -> None:
    """The result's HTML repr and the probability heatmap show hostile text as text."""
    result = _echo(demo_server, logprobs=2)
    assert result.text.startswith(HOSTILE)
    _assert_escaped("Completion._repr_mimebundle_", result._repr_mimebundle_()["text/html"])
    heatmap = result.show_probabilities()._repr_mimebundle_()["text/html"]
    assert RAW_TAG.search(heatmap) is None and "&lt;" in heatmap


def test_live_grid_and_panel_sink_escape_model_text(demo_server: Any) -> None:
    """The n>1 live grid and the panel's sink receive escaped HTML at every redraw."""
    request = CompletionRequest.build("vman-demo", HOSTILE, echo=True, n=2, max_tokens=3, seed=1)
    frames: list[str] = []
    view = LiveView(request, rich=True, sink=frames.append)
    view.start()
    with Client(base_url=demo_server.base_url, model="vman-demo") as client:
        result = client.run(request, CompletionBuilder(request), on_update=view.update)
    view.finish(result)
    assert frames
    for frame in frames:
        assert RAW_TAG.search(frame) is None
    _assert_escaped("live grid (final frame)", frames[-1])


def test_sweep_grid_escapes_model_text(demo_server: Any) -> None:
    """The sweep grid's cards show hostile text and statuses as text."""
    settings = [{"temperature": 0}, {"temperature": 1}]
    jobs = [(HOSTILE, {"echo": True, "max_tokens": 3, "seed": 1, **s}) for s in settings]
    run = prepare(jobs, settings=Settings(base_url=demo_server.base_url, model="vman-demo"), concurrency=2)
    with Client(base_url=demo_server.base_url, model="vman-demo") as client:
        for index, (prompt, params) in enumerate(jobs):
            run.slots[index] = client.complete(prompt, **params)
    _assert_escaped("sweep grid", _bundle(_cells(settings, run))["text/html"])
