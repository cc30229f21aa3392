"""The cache and resuming: the same request answered from the history, batches that send only what is missing.

"Sent" is counted at the demo server (``stats.completions``), never inferred
from the client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import vman_magic
from vman_magic.logbook import session
from vman_magic.testing import url

DEMO = {"model": "vman-demo", "max_tokens": 6}


class Sent:
    """Completions the server started since the last call."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.mark = server.stats.completions

    def __call__(self) -> int:
        now = self.server.stats.completions
        count, self.mark = now - self.mark, now
        return count


def test_same_request_is_answered_from_history(history_file: Path, demo_server: Any) -> None:
    """cache=True answers a repeated request without sending; equal text, cached=True, the original's id."""
    sent = Sent(demo_server)
    first = vman_magic.complete("Once upon", base_url=demo_server.base_url, temperature=0, cache=True, **DEMO)
    assert sent() == 1 and not first.cached
    again = vman_magic.complete("Once upon", base_url=demo_server.base_url, temperature=0, cache=True, **DEMO)
    assert sent() == 0
    assert again.cached and again.history_id == first.history_id
    assert again.to_dict() == first.to_dict() and again.notes == []
    assert again.request is not None and again.request.prompt == "Once upon"
    assert vman_magic.complete("Once upon", base_url=demo_server.base_url, temperature=0, **DEMO).cached is False
    assert sent() == 1  # without cache=True the request is sent


def test_cache_key_is_host_model_and_canonical_body(history_file: Path, demo_server: Any) -> None:
    """temperature=0 and 0.0, streamed or not, are the same request; another max_tokens, model or host is not."""
    base = demo_server.base_url
    sent = Sent(demo_server)
    vman_magic.complete("key test", base_url=base, temperature=0, cache=True, **DEMO)
    assert vman_magic.complete("key test", base_url=base, temperature=0.0, stream=False, cache=True, **DEMO).cached
    assert sent() == 1
    assert not vman_magic.complete(
        "key test", base_url=base, temperature=0, cache=True, model="vman-demo", max_tokens=7
    ).cached
    localhost = base.replace("127.0.0.1", "localhost")
    assert not vman_magic.complete("key test", base_url=localhost, temperature=0, cache=True, **DEMO).cached
    assert sent() == 2


def test_only_complete_answers_are_served(history_file: Path, demo_server: Any) -> None:
    """A result that broke off is recorded but never served: the request is sent again."""
    broken = url(demo_server, fault="drop_mid_stream")
    with pytest.raises(vman_magic.APIConnectionError):
        vman_magic.complete("half", base_url=broken, max_retries=0, temperature=0, cache=True, **DEMO)
    sent = Sent(demo_server)
    again = vman_magic.complete("half", base_url=demo_server.base_url, temperature=0, cache=True, **DEMO)
    assert sent() == 1 and not again.cached and not again.incomplete  # same host and body: only the status differs


def test_a_sampling_request_is_served_with_a_note(history_file: Path, vman_shell: InteractiveShell) -> None:
    """temperature > 0 without a seed is served only because cache was asked for, and the footer says so."""
    with capture_output() as out:
        assert vman_shell.run_cell("%%complete -o r -t 0.8 --max-tokens 5\nA dice roll").success
        assert vman_shell.run_cell("%%complete -o again -t 0.8 --max-tokens 5 --cache\nA dice roll").success
        assert vman_shell.run_cell("%%complete -o seeded -t 0.8 --seed 3 --max-tokens 5\nA dice roll").success
        assert vman_shell.run_cell("%%complete -o seeded2 -t 0.8 --seed 3 --max-tokens 5 --cache\nA dice roll").success
    first, again = vman_shell.user_ns["r"], vman_shell.user_ns["again"]
    assert again.cached and again.text == first.text
    assert f"from history #{first.history_id}" in out.stdout
    assert "note: answered from history" in out.stdout and "samples" in again.notes[0]
    assert vman_shell.user_ns["seeded2"].cached and vman_shell.user_ns["seeded2"].notes == []


def test_vman_cache_on_is_the_session_default(
    history_file: Path, vman_shell: InteractiveShell, demo_server: Any
) -> None:
    """%vman cache on makes every call cache (cache=False still sends); off ends it."""
    sent = Sent(demo_server)
    with capture_output() as out:
        vman_shell.run_line_magic("vman", "cache on")
        try:
            vman_magic.complete("session default", base_url=demo_server.base_url, seed=1, **DEMO)
            assert vman_magic.complete("session default", base_url=demo_server.base_url, seed=1, **DEMO).cached
            assert not vman_magic.complete(
                "session default", base_url=demo_server.base_url, seed=1, cache=False, **DEMO
            ).cached
        finally:
            vman_shell.run_line_magic("vman", "cache off")
    assert sent() == 2 and "cache: on for this session" in out.stdout
    assert not vman_magic.complete("session default", base_url=demo_server.base_url, seed=1, **DEMO).cached


def test_async_paths_use_the_cache(history_file: Path, demo_server: Any) -> None:
    """acomplete and AsyncClient.complete answer from the history too."""
    base = demo_server.base_url

    async def main() -> tuple[bool, bool]:
        await vman_magic.acomplete("async cache", base_url=base, seed=2, cache=True, **DEMO)
        a = await vman_magic.acomplete("async cache", base_url=base, seed=2, cache=True, **DEMO)
        async with vman_magic.AsyncClient(base_url=base, model="vman-demo") as client:
            b = await client.complete("async cache", seed=2, max_tokens=6, cache=True)
        return a.cached, b.cached

    sent = Sent(demo_server)
    assert asyncio.run(main()) == (True, True) and sent() == 1


def test_batch_resumes_sending_only_the_missing_items(
    history_file: Path, demo_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch re-run with cache=True sends only items without a complete answer; the summary counts the rest."""
    prompts = [f"Item {i} is" for i in range(12)]
    kw = {"base_url": demo_server.base_url, "seed": 0, **DEMO}
    first = vman_magic.complete_many(prompts[:5], progress=False, **kw)
    failing = url(demo_server, status=500)
    failed = vman_magic.complete_many(prompts[5:8], progress=False, base_url=failing, model="vman-demo", max_retries=0)
    assert len(failed.failed) == 3
    sent = Sent(demo_server)
    full = vman_magic.complete_many(prompts, cache=True, concurrency=3, **kw)
    assert sent() == 7 and full.from_history == [0, 1, 2, 3, 4]
    assert full.texts[:5] == first.texts and not full.failed and all(not c.incomplete for c in full)
    assert "12 prompts: 12 done (5 from history)" in capsys.readouterr().out
    again = vman_magic.complete_many(prompts, cache=True, group_size=4, progress=False, **kw)
    assert sent() == 0 and again.texts == full.texts and len(again.from_history) == 12


def test_grouped_batch_resumes_per_prompt(history_file: Path, demo_server: Any) -> None:
    """With group_size, answers are recorded per prompt and a re-run groups only the missing ones."""
    prompts = [f"Group item {i}" for i in range(10)]
    kw = {"base_url": demo_server.base_url, "seed": 0, "progress": False, **DEMO}
    vman_magic.complete_many(prompts[::2], group_size=5, **kw)  # items 0, 2, 4, 6, 8 in one request
    sent = Sent(demo_server)
    result = vman_magic.complete_many(prompts, group_size=5, cache=True, **kw)
    assert sent() == 5  # 1, 3, 5, 7, 9: each alone, since no two are neighbours
    assert result.from_history == [0, 2, 4, 6, 8] and all(c.text for c in result)


def test_complete_frame_resumes(history_file: Path, demo_server: Any) -> None:
    """complete_frame(cache=True) after a partial run sends only the rows without an answer."""
    df = pd.DataFrame({"word": ["sun", "moon", "star", "sky"]})
    kw = {"base_url": demo_server.base_url, "temperature": 0, "progress": False, **DEMO}
    head = vman_magic.complete_frame(df.head(2), "The {word} is", **kw)
    sent = Sent(demo_server)
    out = vman_magic.complete_frame(df, "The {word} is", cache=True, **kw)
    assert sent() == 2 and list(out["completion"][:2]) == list(head["completion"])
    assert (out["completion_error"] == "").all()  # "" for rows that worked


def test_magic_over_and_sweep_take_cache(history_file: Path, vman_shell: InteractiveShell, demo_server: Any) -> None:
    """%%complete --over and --sweep with --cache send only what the history lacks."""
    vman_shell.user_ns["topics"] = ["rain", "snow", "hail"]
    sent = Sent(demo_server)
    with capture_output() as out:
        assert vman_shell.run_cell("%%complete --over topics -o r --max-tokens 4 -t 0\nAbout {item}").success
        assert vman_shell.run_cell("%%complete --over topics -o r --max-tokens 4 -t 0 --cache\nAbout {item}").success
        assert vman_shell.run_cell("%%complete --sweep temperature=0,1 --seed 1 --max-tokens 4\nWeather").success
        assert vman_shell.run_cell(
            "%%complete --sweep temperature=0,1 --seed 1 --max-tokens 4 --cache -o s\nWeather"
        ).success
    assert sent() == 5
    assert "3 prompts: 3 done (3 from history)" in out.stdout
    assert all(c.cached for c in vman_shell.user_ns["s"].completions)
    vman_shell.user_ns.pop("topics")


def test_cache_with_history_off_says_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """cache=True with VMAN_HISTORY=off sends every request and warns once, in one line."""
    monkeypatch.setenv("VMAN_HISTORY", "off")
    session.reset()
    try:
        for _ in range(2):
            assert not vman_magic.complete("x", base_url=demo_server.base_url, cache=True, **DEMO).cached
    finally:
        session.reset()
    err = capsys.readouterr().err
    assert err.count("warning: cache=True has no effect: history is off (VMAN_HISTORY=off)") == 1
    assert len(err.strip().splitlines()) == 1
