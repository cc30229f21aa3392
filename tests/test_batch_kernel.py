"""Batches and sweeps in a real Jupyter kernel, where an event loop already runs the cell."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kernel(demo_server: Any) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """One ipykernel whose default base URL is the test demo server."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for name in ("VMAN_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    env.update(VMAN_BASE_URL=demo_server.base_url, VMAN_MODEL="vman-demo")
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def execute(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``code``; return the execute_reply content and the iopub messages that belong to it."""
    return collect(kc, kc.execute(code))


def collect(kc: BlockingKernelClient, msg_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The execute_reply content and iopub messages of the request ``msg_id``."""
    messages: list[dict[str, Any]] = []
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        messages.append(msg)
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], messages


def stdout(messages: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"] for m in messages if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def test_batch_in_a_cell_shows_a_widget_bar_and_a_summary(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    """In a cell, complete_many runs despite the kernel's loop, shows tqdm's widget bar and prints the summary there."""
    _, kc = kernel
    reply, messages = execute(
        kc, "from vman_magic import complete_many\nr = complete_many(['Once upon a time'] * 5, max_tokens=3)\n"
    )
    assert reply["status"] == "ok"
    bars = [m for m in messages if m["msg_type"] == "display_data"]
    assert any("application/vnd.jupyter.widget-view+json" in m["content"]["data"] for m in bars)
    assert stdout(messages).startswith("5 prompts: 5 done; tokens ")
    reply, messages = execute(kc, "print(len(r), r.failed, all(c.text for c in r))")
    assert stdout(messages) == "5 [] True\n"


def test_interrupt_stops_run_all_and_keeps_the_partial_results(
    kernel: tuple[KernelManager, BlockingKernelClient], demo_server: Any
) -> None:
    """The kernel's interrupt fails the cell (so Run All stops); sys.last_value.partial holds every item."""
    km, kc = kernel
    start = demo_server.stats.completions
    slow = demo_server.url(tps=5)
    msg_id = kc.execute(
        f"r = complete_many(['The cat'] * 12, base_url={slow!r}, concurrency=2, max_tokens=30, progress=False)"
    )
    while demo_server.stats.completions == start:  # interrupt only once the batch is running
        threading.Event().wait(0.01)
    km.interrupt_kernel()
    reply, _ = collect(kc, msg_id)
    assert reply["status"] == "error" and reply["ename"] == "BatchInterrupted"
    reply, messages = execute(
        kc, "import sys\np = sys.last_value.partial\nprint(len(p), p.interrupted, bool(p.unfinished))"
    )
    assert stdout(messages) == "12 True True\n"


def test_sweep_grid_is_one_display_updated_in_place(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    """A sweep shows one HTML grid with a labelled cell per setting, updated through its display id."""
    _, kc = kernel
    reply, messages = execute(
        kc,
        "from vman_magic.batch.sweep import run_sweep\n"
        "s = run_sweep('Once upon a time', {'temperature': [0.0, 1.0]}, max_tokens=8, seed=1)",
    )
    assert reply["status"] == "ok"
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    assert len(shown) == 1
    display_id = shown[0]["content"]["transient"]["display_id"]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert updates and {u["content"]["transient"]["display_id"] for u in updates} == {display_id}
    final = updates[-1]["content"]["data"]["text/html"]
    assert "temperature=0.0" in final and "temperature=1.0" in final and "waiting" not in final


def test_a_failure_turns_the_bar_red_and_the_rate_reads_in_prompts(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """With a failed item the widget bar is coloured red (not finished green), and its rate says "prompts/s"."""
    _, kc = kernel
    reply, messages = execute(
        kc, "from vman_magic import complete_many\nr = complete_many(['Once', None, 'The cat'], max_tokens=3)\n"
    )
    assert reply["status"] == "ok"
    states = [
        m["content"]["data"]["state"]
        for m in messages
        if m["msg_type"] in ("comm_open", "comm_msg") and "state" in m["content"]["data"]
    ]
    assert {"bar_color": "#d32f2f"}.items() <= next(s for s in states[::-1] if "bar_color" in s).items()
    texts = [
        s["value"].replace("\u2007", " ") for s in states if isinstance(s.get("value"), str)
    ]  # tqdm: figure spaces
    assert any(" prompts/s" in t for t in texts) and not any("prompt/s" in t for t in texts), texts
    assert stdout(messages).startswith("3 prompts: 2 done, 1 failed")
