"""A batch in a real kernel killed with SIGKILL, then a new kernel that resumes it from the history."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ITEMS = 40
CONCURRENCY = 4


def execute(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], str]:
    """Run ``code``; return the execute_reply content and what it printed."""
    msg_id = kc.execute(code)
    printed = ""
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            printed += msg["content"]["text"]
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], printed


def complete_rows(path: Path) -> int:
    """Rows recorded as complete, read from the file as another process would."""
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM completions WHERE status = 'complete'").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def batch_code(base_url: str) -> str:
    return (
        "import vman_magic\n"
        f"r = vman_magic.complete_many([f'Resume item {{i}} is' for i in range({ITEMS})], base_url={base_url!r},\n"
        f"    model='vman-demo', max_tokens=6, seed=0, concurrency={CONCURRENCY}, cache=True, progress=False)\n"
        "print(len(r.from_history), sum(not c.incomplete for c in r), len({c.history_id for c in r}))\n"
    )


def test_sigkill_mid_batch_then_a_new_kernel_sends_only_the_rest(history_file: Path, demo_server: Any) -> None:
    """Items committed before SIGKILL are not sent again; every other item is, and the batch completes."""
    env = {**os.environ, "VMAN_HISTORY": str(history_file)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    slow = demo_server.url(tps=20)  # about 0.3 s per item, so the batch is surely running when it is killed
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        kc.execute(batch_code(slow))
        while complete_rows(history_file) < ITEMS // 4:  # a quarter committed: killed mid-batch
            threading.Event().wait(0.02)
        km.signal_kernel(signal.SIGKILL)
        while km.is_alive():
            threading.Event().wait(0.02)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    committed = complete_rows(history_file)
    assert ITEMS // 4 <= committed < ITEMS

    sent_before = demo_server.stats.completions
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        reply, printed = execute(kc, batch_code(slow))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert reply["status"] == "ok"
    assert printed == f"{committed} {ITEMS} {ITEMS}\n"  # from history, complete, distinct ids
    assert demo_server.stats.completions - sent_before == ITEMS - committed
    assert complete_rows(history_file) == ITEMS
