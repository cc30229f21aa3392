"""Measure what an OpenAI-compatible server honours of the Completions API.

Each probe sends one small request (or two at once) with plain httpx, not with
vman_magic, so it measures the server and not our client, and returns a
verdict, a short word that README's "Real servers" table starts its cell with
(``test_capabilities.py`` checks that the table and the servers agree), plus a
detail for humans.

Run it to print the table for the servers of the tier::

    bash tests/peers/setup.sh && python tests/peers/peer_capabilities.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROMPT = "The capital of France is"
TIMEOUT = httpx.Timeout(120.0, connect=5.0)


@dataclass(frozen=True)
class Target:
    """Where to send probes: a base URL ending in /v1, a model id, and a key if the server wants one."""

    base_url: str
    model: str
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def post(self, **body: Any) -> httpx.Response:
        body = {"model": self.model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, **body}
        return httpx.post(
            f"{self.base_url}/completions", json=body, headers=self.headers(), timeout=TIMEOUT, trust_env=False
        )

    def stream(self, on_event: Callable[[], Any] | None = None, **body: Any) -> list[dict[str, Any]]:
        """The decoded events of a streamed request ([DONE] as ``{"done": True}``, a broken body as ``{"broken": ...}``)."""
        body = {"model": self.model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "stream": True, **body}
        events: list[dict[str, Any]] = []
        try:
            with httpx.stream(
                "POST", f"{self.base_url}/completions", json=body, headers=self.headers(), timeout=TIMEOUT,
                trust_env=False,
            ) as response:  # fmt: skip
                response.raise_for_status()
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        data = line[5:].strip()
                        events.append({"done": True} if data == "[DONE]" else json.loads(data))
                        if on_event is not None:
                            on_event()
        except httpx.RemoteProtocolError as exc:
            events.append({"broken": str(exc)})
        return events


Verdict = tuple[str, str]  # (word for the table, detail)


def _text(events: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(c.get("text") or "" for e in events for c in e.get("choices") or () if c.get("index", 0) == index)


def _finish(events: list[dict[str, Any]], index: int = 0) -> str | None:
    reasons = [
        c["finish_reason"] for e in events for c in e.get("choices") or () if c.get("index", 0) == index
        if c.get("finish_reason")
    ]  # fmt: skip
    return reasons[-1] if reasons else None


def _status(response: httpx.Response) -> Verdict | None:
    if response.status_code == 200:
        return None
    return "error", f"HTTP {response.status_code}"


def probe_n(t: Target) -> Verdict:
    """n=2 returns two choices."""
    r = t.post(n=2, temperature=1, seed=1)
    if bad := _status(r):
        return bad
    count = len(r.json()["choices"])
    return ("yes", "2 choices") if count == 2 else ("no", f"{count} choice(s) for n=2")


def probe_echo(t: Target, stream: bool) -> Verdict:
    """echo=true puts the prompt before the completion."""
    if stream:
        text = _text(t.stream(echo=True))
    else:
        r = t.post(echo=True)
        if bad := _status(r):
            return bad
        text = r.json()["choices"][0]["text"]
    return ("yes", "prompt echoed") if text.startswith(PROMPT) else ("no", "no prompt in the text")


def probe_logprobs(t: Target, stream: bool) -> Verdict:
    """logprobs=2 returns per-token log-probabilities."""
    if stream:
        lps = [c.get("logprobs") for e in t.stream(logprobs=2) for c in e.get("choices") or ()]
    else:
        r = t.post(logprobs=2)
        if bad := _status(r):
            return bad
        lps = [c.get("logprobs") for c in r.json()["choices"]]
    tokens = sum(len(lp.get("tokens") or ()) for lp in lps if lp)
    return ("yes", f"{tokens} tokens with logprobs") if tokens else ("no", "logprobs null")


def probe_list_prompt(t: Target) -> Verdict:
    """A list of two prompts gives one choice per prompt."""
    r = t.post(prompt=["The sea is", "The sky is"])
    if bad := _status(r):
        return bad
    indexes = sorted(c.get("index", 0) for c in r.json()["choices"])
    return ("yes", "a choice per prompt") if indexes == [0, 1] else ("no", f"{len(indexes)} choice(s) for 2 prompts")


def probe_token_prompt(t: Target) -> Verdict:
    """A prompt of token ids is accepted."""
    r = t.post(prompt=[5, 6, 7, 8])
    if bad := _status(r):
        return bad
    return "yes", "accepted"


def probe_stream_usage(t: Target) -> Verdict:
    """A stream with stream_options.include_usage ends with token counts."""
    events = t.stream(stream_options={"include_usage": True})
    counts = [e["usage"].get("completion_tokens") or 0 for e in events if e.get("usage")]
    if counts and max(counts) > 0:
        return "yes", f"{max(counts)} completion tokens"
    return "no", "usage of zeros" if counts else "no usage chunk"


def probe_stop(t: Target) -> Verdict:
    """A stop sequence taken from the middle of the unconstrained answer ends the text before it."""
    r = t.post(max_tokens=16)
    if bad := _status(r):
        return bad
    full = r.json()["choices"][0]["text"]
    words = full.split()
    if len(words) < 3:
        return "unknown", f"answer too short to pick a stop sequence: {full!r}"
    stop = words[2]
    r = t.post(max_tokens=16, stop=[stop])
    choice = r.json()["choices"][0]
    if stop not in choice["text"] and choice.get("finish_reason") == "stop":
        return "yes", "text ends before the stop sequence"
    return "no", f"text runs past stop={stop!r}"


def probe_max_tokens(t: Target) -> Verdict:
    """max_tokens=3 gives at most 3 completion tokens and finish_reason "length"."""
    r = t.post(max_tokens=3, prompt="Once upon a time")
    if bad := _status(r):
        return bad
    body = r.json()
    tokens = (body.get("usage") or {}).get("completion_tokens")
    finish = body["choices"][0].get("finish_reason")
    if finish == "length" and tokens is not None and tokens <= 3:
        return "yes", "3 tokens, finish length"
    return "no", f"{tokens} tokens, finish {finish}"


def probe_concurrent_streams(t: Target) -> Verdict:
    """A stream still runs when a second request arrives: does it end as it does alone?

    Alone, the stream runs to ``max_tokens`` (finish reason "length"); cut
    short, it ends early with no finish reason, or, through a proxy, with a
    "stop" the proxy made up.
    """
    long = {"prompt": "Once upon a time", "max_tokens": 48}
    solo = t.stream(**long)
    alone = _text(solo)
    first_event = threading.Event()
    together: list[dict[str, Any]] = []

    def first() -> None:
        together.extend(t.stream(on_event=first_event.set, **long))

    thread = threading.Thread(target=first)
    thread.start()
    first_event.wait(TIMEOUT.read)
    second = t.stream(max_tokens=4)
    thread.join()
    if _finish(second) is None:
        return "no", "the second stream did not finish"
    if _finish(together) == _finish(solo) == "length" or (_finish(together) and _text(together) == alone):
        return "yes", "both finished"
    end = "a broken connection" if together[-1].get("broken") else "[DONE]" if together[-1].get("done") else "?"
    reason = _finish(together)
    said = f"finish_reason {reason!r} all the same" if reason else "no finish_reason"
    return "no", f"the first was cut short ({len(_text(together))} of {len(alone)} characters), {said}, then {end}"


PROBES: dict[str, Callable[[Target], Verdict]] = {
    "n": probe_n,
    "echo": lambda t: probe_echo(t, stream=False),
    "echo (stream)": lambda t: probe_echo(t, stream=True),
    "logprobs": lambda t: probe_logprobs(t, stream=False),
    "logprobs (stream)": lambda t: probe_logprobs(t, stream=True),
    "list prompts": probe_list_prompt,
    "token-id prompts": probe_token_prompt,
    "usage in streams": probe_stream_usage,
    "stop": probe_stop,
    "max_tokens": probe_max_tokens,
    "concurrent streams": probe_concurrent_streams,
}
# The last row measures llama.cpp (and LiteLLM in front of it) once more, with --interrupt_requests False;
# the other rows measure llama.cpp as it comes (interrupting).
RECOMMENDED_ROW = "concurrent streams, --interrupt_requests False"
COLUMNS = ("demo server", "llama.cpp", "LiteLLM mock", "LiteLLM -> llama.cpp")


def measure(t: Target, recommended: Target | None = None) -> dict[str, Verdict]:
    """Every probe against one server, in table order; ``recommended`` is the same server without interrupts."""
    table = {name: probe(t) for name, probe in PROBES.items()}
    table[RECOMMENDED_ROW] = probe_concurrent_streams(recommended) if recommended else ("n/a", "no such setting")
    return table


def queued_seconds(t: Target, requests: int = 4, concurrency: int = 4) -> float:
    """Wall seconds for ``requests`` streams of 32 tokens sent ``concurrency`` at a time."""
    started = time.perf_counter()
    for first in range(0, requests, concurrency):
        threads = [
            threading.Thread(target=t.stream, kwargs={"max_tokens": 32, "prompt": "Once upon a time"})
            for _ in range(min(concurrency, requests - first))
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    return time.perf_counter() - started


@contextmanager
def tier_servers(logs: Path) -> Iterator[dict[str, tuple[Target, Target | None]]]:
    """The tier's servers by README column: (as it comes, with --interrupt_requests False where that applies)."""
    from peer_servers import LLAMA_INTERRUPTING_MODEL, launch_litellm, launch_llama, wait_ready

    from vman_magic.testing import serve

    with ExitStack() as stack:
        demo = stack.enter_context(serve())
        llama = launch_llama(logs, interrupt_requests=False)
        stack.callback(llama.stop)
        default = launch_llama(logs, interrupt_requests=True, name="llama-interrupting")
        stack.callback(default.stop)
        mock = launch_litellm(logs, "mock")
        stack.callback(mock.stop)
        forward = launch_litellm(logs, "forward", llama=llama, llama_interrupting=default)
        stack.callback(forward.stop)
        for peer in (llama, default, mock, forward):
            wait_ready(peer)
        yield {
            "demo server": (Target(demo.base_url, "vman-demo"), None),
            "llama.cpp": (Target(default.base_url, default.model), Target(llama.base_url, llama.model)),
            "LiteLLM mock": (Target(mock.base_url, mock.model), None),
            "LiteLLM -> llama.cpp": (
                Target(forward.base_url, LLAMA_INTERRUPTING_MODEL),
                Target(forward.base_url, forward.model),
            ),
        }


def main() -> None:
    """Print the measured table (verdict and detail per cell) and llama.cpp's queueing figures."""
    with tempfile.TemporaryDirectory() as logs, tier_servers(Path(logs)) as targets:
        table = {name: measure(*targets[name]) for name in COLUMNS}
        print("| asked for | " + " | ".join(COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 1) + "|")
        for row in table[COLUMNS[0]]:
            print(f"| {row} | " + " | ".join(f"{table[c][row][0]} ({table[c][row][1]})" for c in COLUMNS) + " |")
        print()
        recommended = targets["llama.cpp"][1]
        assert recommended is not None
        for concurrency in (1, 2, 4):
            seconds = queued_seconds(recommended, concurrency=concurrency)
            print(
                f"llama.cpp --interrupt_requests False: 4 streams of 32 tokens, {concurrency} at a time: {seconds:.2f} s"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
