"""Tests for ``%%complete`` in a real Jupyter kernel: the messages a front end receives."""

from __future__ import annotations

import ast
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from vman_magic.notebook.display import GRID_INTERVAL, STREAM_INTERVAL
from vman_magic.testing import url

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kernel(demo_server: Any) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """One ipykernel with vman_magic loaded and pointed at the test demo server."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for name in ("VMAN_API_KEY", "VMAN_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    env.update(VMAN_BASE_URL=demo_server.base_url, VMAN_MODEL="vman-demo")
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        reply, _ = execute(kc, "%load_ext vman_magic")
        assert reply["status"] == "ok"
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def execute(kc: BlockingKernelClient, code: str, timeout: float = 60) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``code``; return the execute_reply content and every iopub message of that request."""
    msg_id = kc.execute(code)
    messages: list[dict[str, Any]] = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        messages.append(msg)
    return shell_reply(kc, msg_id, timeout)["content"], messages


def shell_reply(kc: BlockingKernelClient, msg_id: str, timeout: float = 60) -> dict[str, Any]:
    """The execute_reply to ``msg_id`` (earlier replies, e.g. to kernel_info, are skipped)."""
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def printed(kc: BlockingKernelClient, expression: str) -> Any:
    """Evaluate ``expression`` in the kernel (as a user expression, not via stdout) and return it."""
    for _ in range(3):
        msg_id = kc.execute("import json as _json", user_expressions={"v": f"_json.dumps({expression})"})
        reply = shell_reply(kc, msg_id)["content"]
        if reply["status"] != "aborted":  # ipykernel 7 aborts a request that arrives just after an error reply
            break
    value = reply["user_expressions"]["v"]
    assert value["status"] == "ok", value
    return json.loads(ast.literal_eval(value["data"]["text/plain"]))


def test_single_choice_streams_appended_text_bounded_by_rate(kernel: Any) -> None:
    """A fast 2,000-token stream sends few stream messages whose text adds up to the completion once."""
    _, kc = kernel
    started = time.monotonic()
    reply, messages = execute(
        kc, "%%complete --max-tokens 2000 --seed 3 --logit-bias '{\"0\": -100}'\nOnce upon a time"
    )
    elapsed = time.monotonic() - started
    assert reply["status"] == "ok"
    streams = [m for m in messages if m["msg_type"] == "stream"]
    streamed = "".join(m["content"]["text"] for m in streams)
    text = printed(kc, "__import__('vman_magic.notebook.display').notebook.display.clean_stream_text(_completion.text)")
    usage = printed(kc, "_completion.usage.completion_tokens")
    assert usage == 2000  # token 0 (end of text) is banned, so the model writes all of them
    assert streamed == text + "\n" or streamed == text
    assert len(streams) <= 3 + elapsed / STREAM_INTERVAL
    assert len(streams) < usage
    footers = [m for m in messages if m["msg_type"] == "display_data"]
    assert len(footers) == 1 and "finish:" in footers[0]["content"]["data"]["text/plain"]


def test_several_choices_use_one_display_with_escaped_html(kernel: Any) -> None:
    """n > 1 shows one display, replaced in place with escaped HTML; the final one has the footer."""
    _, kc = kernel
    started = time.monotonic()
    reply, messages = execute(
        kc, "%%complete -n 3 --echo --max-tokens 300\n<script>alert(1)</script> <img src=x onerror=alert(2)>"
    )
    elapsed = time.monotonic() - started
    assert reply["status"] == "ok"
    shown = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data")]
    assert shown[0]["msg_type"] == "display_data"
    assert all(m["msg_type"] == "update_display_data" for m in shown[1:])
    assert len({m["content"]["transient"]["display_id"] for m in shown}) == 1
    assert len(shown) <= 3 + elapsed / GRID_INTERVAL
    for m in shown:
        html = m["content"]["data"]["text/html"]
        assert "<script>" not in html and "<img" not in html
    final = shown[-1]["content"]["data"]["text/html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in final and 'class="vman-footer"' in final
    assert not [m for m in messages if m["msg_type"] == "stream"]


def test_api_error_fails_the_cell_with_a_one_line_error(kernel: Any) -> None:
    """An HTTP error marks the cell failed with the error class and a single-line traceback."""
    _, kc = kernel
    reply, messages = execute(kc, "%%complete -o r -m no-such-model\nhi")
    assert reply["status"] == "error" and reply["ename"] == "NotFoundError"
    errors = [m for m in messages if m["msg_type"] == "error"]
    assert len(errors) == 1 and len(errors[0]["content"]["traceback"]) == 1
    assert printed(kc, "[r.incomplete, r is _completion]") == [True, True]


def test_kernel_interrupt_keeps_partial_text_and_the_kernel_usable(kernel: Any, demo_server: Any) -> None:
    """Interrupting a slow stream stores the partial result, fails the cell, and the next cell works."""
    km, kc = kernel
    slow = url(demo_server, tps=20)
    # token 0 (end of text) is banned so the slow stream cannot end before the interrupt
    msg_id = kc.execute(f"%%complete -o r --max-tokens 400 --logit-bias '{{\"0\": -100}}' --base-url {slow}\nOnce")
    # interrupt once some text has been streamed to the front end
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            break
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, timeout=30)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    traceback = reply["content"]["traceback"]
    assert len(traceback) == 1 and "interrupted after" in traceback[0] and "kept in `r`" in traceback[0]
    state = printed(kc, "[r.incomplete, len(r.text) > 0, r.usage is None or r.usage.completion_tokens < 400]")
    assert state == [True, True, True]
    again, _ = execute(kc, "%%complete -o r2 --max-tokens 3\nagain")
    assert again["status"] == "ok"
