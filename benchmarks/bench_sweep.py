"""Figure 9: display data sent by a live sweep grid, paced vs redrawn on every change.

``%%complete --sweep temperature=... --sweep top_p=... -n 4`` over a 10 x 10
grid, against the demo server (its own process, ``tps`` throttled so the grid
fills in over several seconds as it would against a real model). Both runs
happen in one helper process, one after the other, with a display publisher
that counts the JSON bytes of every ``display_data``/``update_display_data``
the grid sends: "every change" is the grid as it was before (re-sent on
every 100 ms tick in which anything changed), "paced" is the
:class:`~vman_magic.core.pacing.Pacer` now in use. The goal is the Pacer's
own bound (5x the final grid plus its budget per second of the run, x3 for
the bytes of markup and the plain-text copy) and a clear cut from before.
"""

from __future__ import annotations

from ._common import Row, demo_server, fmt_bytes, run_json

_CODE = """
import json, time
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from vman_magic.batch.engine import prepare
from vman_magic.batch.many import run_blocking
from vman_magic.batch.sweep import GridView
from vman_magic.core.config import Settings

class Counting(DisplayPublisher):
    sent = 0
    messages = 0
    last = 0
    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        size = len(json.dumps(data))
        Counting.sent += size
        Counting.messages += 1
        Counting.last = size

shell = InteractiveShell.instance()
shell.display_pub = Counting(shell=shell)
values = [round(0.1 * i, 1) for i in range({side})]
settings = [{{"temperature": t, "top_p": round(0.5 + p / 20, 2)}} for t in values for p in range({side})]
out = {{}}
for name, paced in (("every", False), ("paced", True)):
    Counting.sent = Counting.messages = 0
    jobs = [("Once upon a time", {{"stream": True, "n": 4, "max_tokens": {tokens}, "seed": 1, **s}}) for s in settings]
    run = prepare(jobs, settings=Settings(base_url={url!r}, model="vman-demo", max_retries=0), concurrency=8)
    start = time.perf_counter()
    run_blocking(run, GridView(settings, paced=paced))
    out[name] = {{"bytes": Counting.sent, "messages": Counting.messages, "final": Counting.last,
                  "seconds": time.perf_counter() - start}}
print(json.dumps(out))
"""


def rows(side: int, tokens: int, tps: float) -> list[Row]:
    from vman_magic.core.pacing import Pacer

    with demo_server(tokens_per_second=tps) as base_url:
        result = run_json(_CODE.format(url=base_url, side=side, tokens=tokens), timeout=900)
    every, paced = result["every"], result["paced"]
    final = paced["final"]
    # the Pacer's bound in characters, x3 for bytes: the bundle holds the text twice (HTML and plain) plus markup
    bound = 5 * final + 3 * Pacer().budget * paced["seconds"]
    return [
        Row(
            f"9. live sweep grid, {side}x{side} settings, n=4, {tokens} tokens each",
            "bytes <= 5x final grid + 3 x 20,000 per second; >= 5x less than redrawing every change",
            f"{fmt_bytes(paced['bytes'])} in {paced['messages']} messages over {paced['seconds']:.0f} s "
            f"= {paced['bytes'] / final:.1f}x final, {every['bytes'] / paced['bytes']:.1f}x less than every change",
            f"every change: {fmt_bytes(every['bytes'])} in {every['messages']} messages; final grid {fmt_bytes(final)}; "
            f"bound {fmt_bytes(bound)}",
            paced["bytes"] <= bound and every["bytes"] >= 5 * paced["bytes"],
        )
    ]
