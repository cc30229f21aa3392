"""The magic, the Python API, batches and the panel against the LiteLLM proxy.

Three proxies: mock mode (a fixed answer, no model), mock mode behind a
master key, and a proxy forwarding to the llama.cpp server of the tier.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from peer_servers import LLAMA_MODEL, MOCK_MODEL, MOCK_TEXT, Peer

import vman_magic
from vman_magic import AuthenticationError, BatchResult


def run(ip: InteractiveShell, cell: str) -> Any:
    return ip.run_cell(cell, store_history=False)


def test_mock_streams_its_fixed_answer_with_usage(litellm_mock: Peer) -> None:
    """Streamed and not, the proxy's mock answer arrives whole, finished, with token counts."""
    for stream in (True, False):
        c = vman_magic.complete("Hi", base_url=litellm_mock.base_url, model=MOCK_MODEL, max_tokens=20, stream=stream)
        assert c.text == MOCK_TEXT and c.finish_reason == "stop" and not c.incomplete
        assert c.usage is not None and c.usage.completion_tokens > 0


def test_magic_against_the_mock(peer_shell: InteractiveShell, litellm_mock: Peer, capsys: Any) -> None:
    """%vman models lists the proxy's model; a cell streams the mock answer into the output and the variable."""
    assert run(peer_shell, f"%vman base_url {litellm_mock.base_url}").success
    assert run(peer_shell, "%vman models").success
    assert MOCK_MODEL in capsys.readouterr().out
    assert run(peer_shell, f"%%complete -o r -m {MOCK_MODEL} --max-tokens 20\nHello").success
    assert peer_shell.user_ns["r"].text == MOCK_TEXT
    assert MOCK_TEXT in capsys.readouterr().out


def test_master_key_is_required_and_never_shown(
    peer_shell: InteractiveShell, litellm_key: Peer, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Without the key the cell fails with one AuthenticationError line; with it the cell works; the key is never printed."""
    key = litellm_key.api_key
    assert key
    assert run(peer_shell, f"%vman base_url {litellm_key.base_url}").success
    result = run(peer_shell, f"%%complete -o r -m {MOCK_MODEL}\nHello")
    assert isinstance(result.error_in_exec, AuthenticationError)
    assert result.error_in_exec.status_code == 401
    monkeypatch.setenv("VMAN_API_KEY", key)
    assert run(peer_shell, f"%%complete -o r -m {MOCK_MODEL}\nHello").success
    assert peer_shell.user_ns["r"].text == MOCK_TEXT
    assert run(peer_shell, "%vman config").success
    shown = capsys.readouterr()
    assert key not in shown.out + shown.err + repr(peer_shell.user_ns["r"]) + repr(peer_shell.user_ns["r"].request)


def test_python_api_with_the_master_key(litellm_key: Peer) -> None:
    """complete() and complete_many() pass the key; a missing one raises AuthenticationError without it in the text."""
    with pytest.raises(AuthenticationError) as info:
        vman_magic.complete("Hi", base_url=litellm_key.base_url, model=MOCK_MODEL, api_key="")
    assert litellm_key.api_key not in str(info.value)
    results = vman_magic.complete_many(
        ["a", "b", "c"], base_url=litellm_key.base_url, api_key=litellm_key.api_key, model=MOCK_MODEL, progress=False
    )
    assert isinstance(results, BatchResult) and results.failed == [] and results.texts == [MOCK_TEXT] * 3


def test_forwarding_proxy_gives_the_llama_answer(litellm_llama: Peer, llama: Peer) -> None:
    """Through LiteLLM, the greedy answer is the one llama.cpp gives directly, streamed and not."""
    params: dict[str, Any] = {"max_tokens": 8, "temperature": 0, "model": LLAMA_MODEL}
    direct = vman_magic.complete("The capital of France is", base_url=llama.base_url, **params)
    for stream in (True, False):
        via = vman_magic.complete("The capital of France is", base_url=litellm_llama.base_url, stream=stream, **params)
        assert via.text == direct.text and via.finish_reason == "length" and not via.incomplete


def test_panel_and_over_through_the_forwarding_proxy(
    peer_shell: InteractiveShell, litellm_llama: Peer, capsys: Any
) -> None:
    """The panel lists the forwarded model and runs; --over through the proxy finishes every item."""
    p = vman_magic.panel(base_url=litellm_llama.base_url, prompt="Once upon a time", max_tokens=5, temperature=0)
    assert LLAMA_MODEL in p.model.options
    p.model.value = LLAMA_MODEL
    assert p.run().text
    assert run(peer_shell, f"%vman base_url {litellm_llama.base_url}").success
    peer_shell.user_ns["qs"] = ["sea", "sky"]
    try:
        cell = f"%%complete --over qs -o r -m {LLAMA_MODEL} --max-tokens 4 -t 0\nThe {{item}} is"
        assert run(peer_shell, cell).success
    finally:
        peer_shell.user_ns.pop("qs")
    assert peer_shell.user_ns["r"].failed == [] and "2 prompts: 2 done" in capsys.readouterr().out
