"""The magic, the Python API, batches, sweeps and the panel against llama.cpp (llama-cpp-python, Gemma 3 270M).

These use the server started with ``--interrupt_requests False``, the setting
README recommends: it queues concurrent requests instead of cutting the
running one short. Greedy sampling (temperature 0) makes the answers
reproducible, so two ways of asking the same thing must agree.
"""

from __future__ import annotations

import _thread
import sys
import threading
import time
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from peer_servers import LLAMA_MODEL, Peer

import vman_magic
from vman_magic import BatchResult, Completion, SweepResult

PROMPT = "The capital of France is"


def run(ip: InteractiveShell, cell: str) -> Any:
    return ip.run_cell(cell, store_history=False)


@pytest.fixture
def ip(peer_shell: InteractiveShell, llama: Peer) -> InteractiveShell:
    """The shell pointed at the llama.cpp server with %vman, as a user would."""
    assert run(peer_shell, f"%vman base_url {llama.base_url}").success
    assert run(peer_shell, f"%vman model {LLAMA_MODEL}").success
    return peer_shell


def greedy(llama: Peer, prompt: str = PROMPT, **params: Any) -> Completion:
    params = {"max_tokens": 8, "temperature": 0, **params}
    return vman_magic.complete(prompt, base_url=llama.base_url, model=llama.model, **params)


def test_complete_streams_and_no_stream_agree(llama: Peer) -> None:
    """complete() streamed and not streamed give the same greedy text, with a finish reason."""
    streamed = greedy(llama)
    whole = greedy(llama, stream=False)
    assert streamed.text and streamed.text == whole.text
    assert streamed.finish_reason == whole.finish_reason == "length"
    assert not streamed.incomplete and not whole.incomplete
    assert whole.usage is not None and whole.usage.completion_tokens == 8
    assert streamed.model == LLAMA_MODEL


def test_cell_streams_into_the_output_and_the_variable(ip: InteractiveShell, llama: Peer, capsys: Any) -> None:
    """A %%complete cell streams the same greedy text complete() gets, and shows the footer."""
    assert run(ip, f"%%complete -o r --max-tokens 8 -t 0\n{PROMPT}").success
    r = ip.user_ns["r"]
    assert r.text == greedy(llama).text and not r.incomplete
    out = capsys.readouterr().out
    assert r.text.strip() in out and "finish: length" in out


def test_vman_models_lists_the_servers_model(ip: InteractiveShell, capsys: Any) -> None:
    """%vman models shows the id the server offers."""
    assert run(ip, "%vman models").success
    assert LLAMA_MODEL in capsys.readouterr().out


def test_interrupt_keeps_the_partial_text_and_the_next_cell_works(ip: InteractiveShell, capsys: Any) -> None:
    """Ctrl-C in a long stream fails the cell, keeps the text so far, and the server answers the next cell."""
    out = sys.stdout
    cell_done = threading.Event()

    def interrupt_once_text_arrives() -> None:
        deadline = time.monotonic() + 60
        while not out.getvalue() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        if not cell_done.is_set():
            _thread.interrupt_main()

    threading.Thread(target=interrupt_once_text_arrives, daemon=True).start()
    try:
        result = run(ip, "%%complete -o r --max-tokens 400 -t 0\nCount from one to one thousand: one, two, three,")
    finally:
        cell_done.set()
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    r = ip.user_ns["r"]
    assert r.incomplete and r.text and isinstance(r.error, KeyboardInterrupt)
    assert "⚠ incomplete: interrupted" in capsys.readouterr().out
    assert run(ip, f"%%complete -o r2 --max-tokens 4 -t 0\n{PROMPT}").success
    assert not ip.user_ns["r2"].incomplete and ip.user_ns["r2"].text


def test_complete_many_streams_every_prompt_to_its_end(llama: Peer) -> None:
    """Four concurrent streams all finish (the server queues them) with the text each gets alone."""
    prompts = [PROMPT, "Water boils at", "The first planet is", "Two plus two is"]
    results = vman_magic.complete_many(
        prompts, base_url=llama.base_url, model=llama.model, max_tokens=6, temperature=0, concurrency=4, progress=False
    )
    assert results.failed == [] and all(c.finish_reason == "length" and not c.incomplete for c in results)
    assert results.texts == [greedy(llama, p, max_tokens=6).text for p in prompts]


def test_over_a_list_runs_each_item(ip: InteractiveShell, llama: Peer, capsys: Any) -> None:
    """--over sends one prompt per item and counts every one done."""
    ip.user_ns["qs"] = ["France", "Italy", "Spain"]
    try:
        assert run(ip, "%%complete --over qs -o r --max-tokens 5 -t 0\nThe capital of {item} is").success
    finally:
        ip.user_ns.pop("qs")
    r = ip.user_ns["r"]
    assert isinstance(r, BatchResult) and r.failed == []
    assert "3 prompts: 3 done" in capsys.readouterr().out
    assert r.texts[0] == greedy(llama, max_tokens=5).text


def test_sweep_compares_settings(ip: InteractiveShell, llama: Peer) -> None:
    """--sweep runs one request per setting; the greedy cell equals a lone greedy call."""
    assert run(ip, f"%%complete --sweep temperature=0,1 --max-tokens 5 --seed 1 -o r\n{PROMPT}").success
    r = ip.user_ns["r"]
    assert isinstance(r, SweepResult)
    assert r.settings == [{"temperature": 0.0}, {"temperature": 1.0}]
    table = r.table
    assert list(table["temperature"]) == [0.0, 1.0]
    assert table["text"].iloc[0] == greedy(llama, max_tokens=5, seed=1).text


def test_panel_lists_the_model_and_runs(llama: Peer) -> None:
    """The panel fills its model box from the server and a run gives the greedy text."""
    p = vman_magic.panel(base_url=llama.base_url, prompt=PROMPT, max_tokens=8, temperature=0)
    assert LLAMA_MODEL in p.model.options and p.model_message.value == ""
    p.model.value = LLAMA_MODEL
    c = p.run()
    assert not c.incomplete and c.text == greedy(llama).text
