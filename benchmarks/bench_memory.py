"""Figure 6: memory held while a very long stream accumulates in a ``Completion``.

Each measurement runs in a fresh interpreter so the peak RSS is its own:
it imports everything, opens the connection, notes its current RSS, then
streams ``tokens`` events from the pre-rendered server into one
``Completion``; the growth is the peak RSS (``ru_maxrss``) minus that. The reference is the size of what
the result must hold anyway: the text, and with logprobs the four per-token
arrays (their lists, strings, floats and dicts), measured with
``sys.getsizeof`` on the final objects.
"""

from __future__ import annotations

from ._common import Row, bench_server, fmt_bytes, run_json

_CODE = """
import gc, json, resource, sys
from vman_magic import Client

def deep(obj, seen):
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep(k, seen) + deep(v, seen) for k, v in obj.items())
    elif isinstance(obj, list):
        size += sum(deep(v, seen) for v in obj)
    return size

client = Client(base_url={url!r}, model="bench", max_retries=0)
client.models()  # warm-up: connection and imports (a warm-up stream would set the peak itself)
gc.collect()
with open("/proc/self/statm") as statm:  # the current RSS: an earlier transient peak must not hide growth
    before = int(statm.read().split()[1]) * resource.getpagesize()
completion = client.complete("x")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
held = [c.logprobs.to_dict() if c.logprobs else None for c in completion.choices]
text = completion.text
print(json.dumps({{"growth": after - before, "text": sys.getsizeof(text), "chars": len(text),
                  "arrays": deep(held, set()), "tokens": completion.usage.completion_tokens}}))
"""


def measure(tokens: int, logprobs: bool) -> dict[str, int]:
    with bench_server(tokens, logprobs=logprobs) as url:
        result: dict[str, int] = run_json(_CODE.format(url=url))
    return result


def rows(tokens: int) -> list[Row]:
    out = []
    for logprobs in (False, True):
        m = measure(tokens, logprobs)
        reference = m["text"] + m["arrays"]
        ratio = m["growth"] / reference
        out.append(
            Row(
                f"6. peak RSS growth, {m['tokens']:,}-token stream" + (" with logprobs" if logprobs else ""),
                "<= 3x (text + logprob arrays)",
                f"{fmt_bytes(m['growth'])} = {ratio:.1f}x",
                f"text {fmt_bytes(m['text'])}" + (f" + arrays {fmt_bytes(m['arrays'])}" if logprobs else ""),
                ratio <= 3,
            )
        )
    return out
