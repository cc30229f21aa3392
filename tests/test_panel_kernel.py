"""The panel in a real ipykernel: Run does not block the kernel, and its live view is widget state."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kernel(demo_server: Any) -> Iterator[BlockingKernelClient]:
    """One ipykernel that can import vman_magic, with no VMAN/OpenAI settings from outside."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for name in ("VMAN_API_KEY", "VMAN_MODEL", "VMAN_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    km: KernelManager
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_cell(kc: BlockingKernelClient, code: str, log: list[dict[str, Any]]) -> dict[str, Any]:
    """Execute ``code``, appending every iopub message (of any parent) to ``log`` until it is idle."""
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        log.append(msg)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            break
    reply: dict[str, Any] = kc.get_shell_msg(timeout=60)["content"]
    assert reply["status"] == "ok", reply
    return reply


def test_run_click_leaves_the_kernel_free_and_streams_into_widget_state(
    kernel: BlockingKernelClient, demo_server: Any
) -> None:
    """While a slow stream runs, other cells execute; the text reaches the page as widget state, never as output."""
    kc = kernel
    log: list[dict[str, Any]] = []
    url = demo_server.url(tps=20)
    run_cell(
        kc,
        "import asyncio, html, json, vman_magic\n"
        f"p = vman_magic.panel(base_url={url!r}, model='vman-demo', prompt='Once', max_tokens=400, var='r',\n"
        "    logit_bias={'0': -100})  # no end of text: the stream cannot end before p.stop()\n"
        "p.run_button.click()",
        log,
    )
    # the click returned while the stream goes on: this cell runs during it
    run_cell(kc, "while not (p.current is not None and p.current.text):\n    await asyncio.sleep(0.02)", log)
    run_cell(kc, "p.stop()\nwhile p.running:\n    await asyncio.sleep(0.02)", log)
    mark = len(log)
    run_cell(
        kc,
        "print(json.dumps([p.output.model_id, r is p.result, p.result.incomplete, html.escape(p.result.text)]))",
        log,
    )
    (line,) = [m["content"]["text"] for m in log[mark:] if m["msg_type"] == "stream"]
    output_id, stored, incomplete, escaped = json.loads(line)
    assert stored and incomplete and escaped

    # JupyterLab drops output of a task that outlives its click, so the panel sends none: only state updates
    assert not [m for m in log[:mark] if m["msg_type"] in ("stream", "display_data", "update_display_data")]
    values = [
        m["content"]["data"]["state"]["value"]
        for m in log[:mark]
        if m["msg_type"] == "comm_msg"
        and m["content"].get("comm_id") == output_id
        and "value" in m["content"]["data"].get("state", {})
    ]
    streamed = [v for v in values if 'class="vman-text"' in v and 'class="vman-footer"' not in v]
    assert streamed, "no state update carried text before the run ended"
    assert escaped in values[-1] and "stopped by you after" in values[-1]


def test_panel_displays_a_snapshot_then_the_widget(kernel: BlockingKernelClient, demo_server: Any) -> None:
    """In a kernel the panel is two outputs: a static snapshot (what a saved notebook keeps, replaced after
    every run, also one started by a click) and the widget view with its one-line text fallback."""
    log: list[dict[str, Any]] = []
    run_cell(
        kernel,
        "import asyncio, html, vman_magic\n"
        f"p = vman_magic.panel(base_url={demo_server.base_url!r}, model='vman-demo', prompt='Once', max_tokens=3)\n"
        "p",
        log,
    )
    snapshot, widget = [m["content"] for m in log if m["msg_type"] in ("display_data", "execute_result")]
    assert (
        'class="vman-panel-snapshot"' in snapshot["data"]["text/html"] and "no run yet" in snapshot["data"]["text/html"]
    )
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    assert (
        widget["data"]["text/plain"].startswith("vman-magic Playground panel")
        and "\n" not in widget["data"]["text/plain"]
    )
    display_id = snapshot["transient"]["display_id"]

    log = []
    run_cell(kernel, "p.run_button.click()", log)
    run_cell(
        kernel,
        "while p.running or p.result is None:\n    await asyncio.sleep(0.02)\nprint(html.escape(p.result.text))",
        log,
    )
    (text,) = [m["content"]["text"] for m in log if m["msg_type"] == "stream"]
    updates = [m["content"] for m in log if m["msg_type"] == "update_display_data"]
    assert [u["transient"]["display_id"] for u in updates] == [display_id]
    assert text.rstrip("\n") in updates[0]["data"]["text/html"] and "no run yet" not in updates[0]["data"]["text/html"]


def test_stop_works_while_run_blocks_the_cell(kernel: BlockingKernelClient, demo_server: Any) -> None:
    """p.run() blocks the cell; a Stop click from another thread ends it with the text so far, in a real kernel."""
    log: list[dict[str, Any]] = []
    url = demo_server.url(tps=20)
    mark = len(log)
    run_cell(
        kernel,
        "import json, threading, vman_magic\n"
        f"p = vman_magic.panel(base_url={url!r}, model='vman-demo', prompt='Once', max_tokens=400, var='r')\n"
        "def click_stop():\n"
        "    while not (p.current is not None and p.current.text):\n"
        "        threading.Event().wait(0.01)\n"
        "    p.stop_button.click()\n"
        "threading.Thread(target=click_stop, daemon=True).start()\n"
        "c = p.run()\n"
        "print(json.dumps([c.incomplete, bool(c.text), c is r, p.running, 'stopped by you' in p.output.value]))",
        log,
    )
    (line,) = [m["content"]["text"] for m in log[mark:] if m["msg_type"] == "stream"]
    assert json.loads(line) == [True, True, True, False, True]
