"""Figure 2: what the live display costs in a real kernel.

A kernel is started with ``jupyter_client`` exactly as a notebook front end
would, and every iopub message of a cell is counted and sized, so the figures
are what a browser would receive:

* time: a fast ``%%complete`` stream (pre-rendered server) against the same
  stream through ``Client.complete`` without a view, wall time from
  ``execute_request`` to the kernel going idle (all output flushed);
* messages and bytes: a slow, throttled stream from the demo server, whose
  output must scale with the update rate and the text, not the token count.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ._common import ROOT, Row, bench_env, bench_server, demo_server, fmt_bytes, median

OUTPUT_TYPES = ("stream", "display_data", "update_display_data", "execute_result")
NO_EOS = '{"0": -100}'  # logit bias that keeps the demo model from ending its document early


class Kernel:
    """A python3 kernel plus a blocking client; :meth:`run` returns the cell's iopub messages."""

    def __init__(self) -> None:
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=bench_env(), cwd=str(ROOT))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 300) -> tuple[float, list[dict[str, Any]], dict[str, Any]]:
        """Execute ``code``; return wall seconds until idle, its output messages, and the reply."""
        start = time.perf_counter()
        msg_id = self.client.execute(code, user_expressions={"out": "_bench_out"})
        outputs = []
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                break
            if kind == "error":
                raise RuntimeError("benchmark cell failed: " + "\n".join(msg["content"]["traceback"])[-2000:])
            if kind in OUTPUT_TYPES:
                outputs.append(msg)
        elapsed = time.perf_counter() - start
        while True:
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return elapsed, outputs, reply["content"]

    def value(self, reply: dict[str, Any]) -> Any:
        """The ``_bench_out`` variable the cell set, as the reply carried it."""
        found = reply["user_expressions"]["out"]
        if found.get("status") != "ok":
            raise RuntimeError(f"benchmark cell did not set _bench_out: {found}")
        return eval(found["data"]["text/plain"])  # the repr of a plain int/float/tuple

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def _size(msgs: list[dict[str, Any]], part: str = "content") -> int:
    """Bytes of one part of the messages as JSON; ``part=""`` sizes header, metadata and content."""
    parts = [part] if part else ["header", "parent_header", "metadata", "content"]
    return sum(len(json.dumps([m[p] for p in parts], ensure_ascii=False, default=str).encode()) for m in msgs)


def measure(tokens: int, slow_seconds: float, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kernel = Kernel()
    try:
        kernel.run("%load_ext vman_magic\nfrom vman_magic import Client\n_bench_out = 0")
        with bench_server(tokens) as base_url:
            # one pooled client, as the magic keeps one per settings
            kernel.run(f"_bench_client = Client(base_url={base_url!r}, model='bench', max_retries=0)")
            client_cell = "_bench_out = len(_bench_client.complete('x').text)"
            magic_cell = f"%%complete --base-url {base_url} -m bench -o _r\nx"
            kernel.run(client_cell)  # warm up both paths (imports, connections)
            kernel.run(magic_cell)
            client_times, magic_times, counts = [], [], []
            for _ in range(repeats):
                elapsed, _, _ = kernel.run(client_cell)
                client_times.append(elapsed)
                elapsed, msgs, _ = kernel.run(magic_cell)
                magic_times.append(elapsed)
                counts.append(len(msgs))
        out["client_s"] = median(client_times)
        out["magic_s"] = median(magic_times)
        out["fast_msgs"] = max(counts)
        with demo_server() as demo_url:
            rate = 50.0
            max_tokens = max(1, int(slow_seconds * rate))
            slow_url = demo_url.replace("/v1", f"/x/tps={rate:g}/v1")
            cell = (
                f"%%complete --base-url {slow_url} -m vman-demo --max-tokens {max_tokens} "
                f"--logit-bias '{NO_EOS}' -o _slow\nOnce upon a time"
            )
            elapsed, msgs, _ = kernel.run(cell, timeout=slow_seconds * 3 + 60)
            _, _, reply = kernel.run("_bench_out = (len(_slow.text.encode()), _slow.usage.completion_tokens)")
            text_bytes, slow_tokens = kernel.value(reply)
        out.update(
            slow_s=elapsed,
            slow_msgs=len(msgs),
            slow_bytes=_size(msgs),
            wire_bytes=_size(msgs, ""),
            text_bytes=text_bytes,
        )
        out["slow_tokens"] = slow_tokens
    finally:
        kernel.close()
    return out


def rows(tokens: int, slow_seconds: float, repeats: int) -> list[Row]:
    m = measure(tokens, slow_seconds, repeats)
    ratio = m["magic_s"] / m["client_s"]
    per_text = m["slow_bytes"] / max(m["text_bytes"], 1)
    return [
        Row(
            f"2a. %%complete live view, {tokens:,} tokens, real kernel",
            "<= 1.2x the client alone",
            f"{ratio:.2f}x ({m['magic_s']:.2f} s, {m['fast_msgs']} output messages)",
            f"client alone {m['client_s']:.2f} s",
            ratio <= 1.2,
        ),
        Row(
            f"2b. output of a {m['slow_s']:.0f} s stream ({m['slow_tokens']:,} tokens at 50/s)",
            "messages bounded by update rate; bytes <= 10x text",
            f"{m['slow_msgs']} messages, {fmt_bytes(m['slow_bytes'])} = {per_text:.1f}x text",
            f"text {fmt_bytes(m['text_bytes'])}; rate bound {m['slow_s'] * 30:.0f} messages",
            per_text <= 10 and m["slow_msgs"] <= m["slow_s"] * 30 + 10,
            f"with headers and metadata the same messages are {fmt_bytes(m['wire_bytes'])}"
            f" ({m['wire_bytes'] / max(m['text_bytes'], 1):.0f}x text)",
        ),
    ]
