"""The Playground panel against the real demo server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import html
import threading
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from vman_magic import ValidationError, VmanError
from vman_magic.notebook.panel import Panel, panel


@pytest.fixture
def server(demo_server: Any) -> Any:
    return demo_server


@pytest.fixture
def magic_shell(shell: InteractiveShell) -> InteractiveShell:
    """The session shell with ``%%complete`` registered."""
    shell.run_line_magic("load_ext", "vman_magic")
    return shell


def _requests(server: Any) -> int:
    return int(server.stats.completions)


# token 0 (end of text) is banned, so no slow stream can end before it is stopped
NO_END = {"0": -100}


def _stop_once_text_arrives(p: Panel) -> threading.Thread:
    """A thread that waits for the first streamed text, then calls p.stop()."""

    def watch() -> None:
        while not (p.current is not None and p.current.text):
            threading.Event().wait(0.01)
        p.stop()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_model_list_is_filled_from_the_server(server: Any) -> None:
    """The model box offers the ids of GET /v1/models and shows no error."""
    p = panel(base_url=server.base_url)
    assert "vman-demo" in p.model.options
    assert p.model.value == "vman-demo"
    assert p.model_message.value == ""


def test_run_streams_and_stores_the_result(server: Any) -> None:
    """run() sends the panel's request, blocks until done and keeps the Completion."""
    p = panel(base_url=server.base_url, model="vman-demo", prompt="Once upon a time", max_tokens=8, seed=3)
    c = p.run()
    assert p.result is c and not c.incomplete
    assert c.text and c.finish_reason in ("length", "stop")
    assert c.request is not None and c.request.to_body()["max_tokens"] == 8
    assert not p.run_button.disabled and p.stop_button.disabled


def test_status_line_is_empty_after_a_normal_run(server: Any) -> None:
    """Once a run ends well the status line no longer says "running…", whether run() or Run started it."""
    p = panel(base_url=server.base_url, model="vman-demo", prompt="Once", max_tokens=4, seed=1)
    p.run()
    assert p.status.value == ""

    shown: list[str] = []
    p.status.observe(lambda change: shown.append(change["new"]), names="value")

    async def click() -> None:
        p.run_button.click()
        while p.running:
            await asyncio.sleep(0.01)

    asyncio.run(click())
    assert p.result is not None and not p.result.incomplete
    assert any("running" in v for v in shown)
    assert p.status.value == "" and not p.run_button.disabled


def test_run_stores_into_the_user_namespace(server: Any, shell: InteractiveShell) -> None:
    """With an IPython shell the result lands in the chosen name and in _completion, after templating."""
    shell.user_ns["who"] = "a dragon"
    p = panel(base_url=server.base_url, model="vman-demo", prompt="There was {who}", var="story", shell=shell)
    c = p.run()
    assert shell.user_ns["story"] is c and shell.user_ns["_completion"] is c
    assert c.request is not None and c.request.prompt == "There was a dragon"


def test_stop_from_another_thread_keeps_partial_text(server: Any) -> None:
    """stop() during a slow stream makes run() return the text so far, flagged incomplete."""
    p = panel(base_url=server.url(tps=20), model="vman-demo", prompt="Once", max_tokens=400, logit_bias=NO_END)
    watcher = _stop_once_text_arrives(p)
    c = p.run()
    watcher.join()
    assert c.incomplete and c.text
    assert c.finish_reason is None
    # said once, in the footer under the text, not again in the status line
    assert p.output.value.count("stopped by you after") == 1 and "stopped by you" not in p.status.value
    assert "CancelledError" not in p.output.value
    assert html.escape(c.text) in p.output.value


def test_run_button_on_a_running_loop_does_not_block(server: Any) -> None:
    """Clicking Run schedules a task and returns; clicking Stop cancels it and keeps the text."""

    async def scenario() -> Any:
        p = panel(base_url=server.url(tps=20), model="vman-demo", prompt="Once", max_tokens=400, logit_bias=NO_END)
        p.run_button.click()
        assert p.running and p.run_button.disabled and not p.stop_button.disabled
        while not (p.current is not None and p.current.text):
            await asyncio.sleep(0.01)
        p.stop_button.click()
        while p.running:
            await asyncio.sleep(0.01)
        return p.result

    c = asyncio.run(scenario())
    assert c.incomplete and c.text


def test_run_from_inside_a_running_loop_blocks_and_returns(server: Any) -> None:
    """run() called where a loop already runs (a notebook cell) still returns the result."""

    async def cell() -> Any:
        return panel(base_url=server.base_url, model="vman-demo", prompt="Hi", max_tokens=4).run()

    c = asyncio.run(cell())
    assert c.text and not c.incomplete


def test_invalid_settings_send_nothing(server: Any) -> None:
    """best_of with streaming disables Run, and run() raises without a request reaching the server."""
    p = panel(base_url=server.base_url, model="vman-demo", prompt="Hi", best_of=3)
    before = _requests(server)
    assert p.run_button.disabled and "best_of" in p.controls.messages["best_of"].value
    p.run_button.click()
    with pytest.raises(ValidationError, match="best_of"):
        p.run()
    assert _requests(server) == before


def test_server_error_is_raised_and_shown(server: Any) -> None:
    """A stream that breaks raises the client's error, shows it in the status line and keeps the partial text."""
    p = panel(base_url=server.url(fault="drop_mid_stream"), model="vman-demo", prompt="Hi", max_tokens=40)
    with pytest.raises(VmanError):
        p.run()
    assert p.result is not None and p.result.incomplete and p.result.text
    assert "Error" in p.status.value and not p.running


def test_n_choices_and_probabilities(server: Any) -> None:
    """n=2 with logprobs gives two choices, and the heatmap has one token element per token."""
    p = panel(base_url=server.base_url, model="vman-demo", prompt="Once", max_tokens=6, n=2, logprobs=2)
    c = p.run()
    assert len(c.choices) == 2
    p.show_probabilities.value = True
    tokens = sum(len(ch.logprobs.tokens) for ch in c.choices if ch.logprobs)
    assert tokens > 0 and p.heatmap.value.count('class="vman-token"') == tokens


def test_copy_as_code_round_trips_through_the_magic(server: Any, magic_shell: InteractiveShell) -> None:
    """The generated %%complete cell sends the same body as the panel and, with a seed, the same text."""
    shell = magic_shell
    shell.user_ns["animal"] = "cat"
    p = panel(
        base_url=server.base_url,
        model="vman-demo",
        prompt="The {animal} said",
        shell=shell,
        var="from_panel",
        seed=11,
        temperature=0.8,
        max_tokens=12,
        stop=["\n", "-x"],
    )
    c = p.run()
    result = shell.run_cell(p.magic_code)
    result.raise_error()
    again = shell.user_ns["from_panel"]
    assert again is not c and again.request.to_body() == c.request.to_body()
    assert again.text == c.text


def test_python_code_round_trips(server: Any, shell: InteractiveShell) -> None:
    """The generated complete(...) call sends the same body as the panel."""
    p = panel(base_url=server.base_url, model="vman-demo", prompt="Hi", seed=2, max_tokens=5, shell=shell)
    c = p.run()
    python = p.code.split("# or, from Python:\n", 1)[1]
    namespace: dict[str, Any] = {}
    exec(python, namespace)
    assert namespace["completion"].request.to_body() == c.request.to_body()
    assert namespace["completion"].text == c.text


def test_live_output_is_widget_state_that_grows_during_the_run(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The output widget's value shows text while the run streams and ends as the escaped text plus footer."""
    p = panel(base_url=server.url(tps=200), model="vman-demo", prompt="Once upon a time", max_tokens=30, seed=5)
    while_running: list[str] = []
    p.output.observe(lambda change: while_running.append(change["new"]) if p.running else None, names="value")
    c = p.run()
    streaming = [v for v in while_running if 'class="vman-text"' in v and 'class="vman-footer"' not in v]
    assert streaming, "the output widget was never updated before the run ended"
    assert html.escape(c.text) in p.output.value and 'class="vman-footer"' in p.output.value
    assert capsys.readouterr().out == ""  # nothing printed: the panel's view lives in widget state


def test_a_new_run_clears_the_previous_output(server: Any) -> None:
    """Starting a run empties the output before the new text arrives."""
    p = panel(base_url=server.base_url, model="vman-demo", prompt="Once", max_tokens=4, seed=1)
    p.run()
    values: list[str] = []
    p.output.observe(lambda change: values.append(change["new"]), names="value")
    p.run()
    assert values[0] == ""


def test_show_probabilities_needs_logprobs(server: Any) -> None:
    """The heatmap toggle is disabled while logprobs is off and nothing to show; its hint names the dropdown's range."""
    p = panel(base_url=server.base_url, model="vman-demo", prompt="Once", max_tokens=3, seed=1)
    assert p.show_probabilities.disabled and "0..5" in p.show_probabilities.tooltip
    p.controls.widgets["logprobs"].value = "0"
    assert not p.show_probabilities.disabled
    p.run()
    p.controls.widgets["logprobs"].value = "off"
    assert not p.show_probabilities.disabled, "the last result has probabilities to show"
    p.show_probabilities.value = True
    assert 'class="vman-token"' in p.heatmap.value


def test_unknown_model_id_is_flagged_before_run(server: Any) -> None:
    """A model id the server does not list gets a warning next to the model box, before anything is sent."""
    p = panel(base_url=server.base_url, model="vman-demo", prompt="Once")
    assert p.model_message.value == ""
    before = _requests(server)
    p.model.value = "vman-dmeo"
    assert "&#x27;vman-dmeo&#x27; is not among the server&#x27;s models (vman-demo)" in p.model_message.value
    assert not p.run_button.disabled and _requests(server) == before
    p.model.value = "vman-demo"
    assert p.model_message.value == ""


def test_copy_as_code_follows_vman_base_url_like_run(vman_shell: InteractiveShell) -> None:
    """After %vman base_url B, Copy as code names B and Run sends to B (it used to show the old A)."""
    from vman_magic.testing import serve

    with serve() as a, serve() as b:
        assert vman_shell.run_cell(f"%vman base_url {a.base_url}", store_history=False).success
        code = "import vman_magic\np = vman_magic.panel(prompt='Hi', max_tokens=3, var='r')"
        assert vman_shell.run_cell(code, store_history=False).success
        p = vman_shell.user_ns.pop("p")
        assert f"--base-url {a.base_url}" in p.code and f"base_url={a.base_url!r}" in p.code
        assert vman_shell.run_cell(f"%vman base_url {b.base_url}", store_history=False).success
        assert f"--base-url {b.base_url}" in p.magic_code and a.base_url not in p.code
        sent_a, sent_b = a.stats.completions, b.stats.completions
        c = p.run()
        assert not c.incomplete and (a.stats.completions, b.stats.completions) == (sent_a, sent_b + 1)
        assert vman_shell.run_cell(p.magic_code, store_history=False).success  # the copied cell goes to B as well
        assert (a.stats.completions, b.stats.completions) == (sent_a, sent_b + 2)
        p.close()


def test_stop_click_from_another_thread_while_run_blocks_a_running_loop(server: Any) -> None:
    """In a notebook cell run() blocks the loop's thread; a Stop click from another thread still stops it.

    Widgets are changed only by the thread that called run(): the worker queues its changes.
    """
    changed_by: set[int] = set()

    async def cell() -> Any:
        p = panel(base_url=server.url(tps=20), model="vman-demo", prompt="Once", max_tokens=400)
        p.output.observe(lambda _change: changed_by.add(threading.get_ident()), names="value")
        p.status.observe(lambda _change: changed_by.add(threading.get_ident()), names="value")

        def click_stop() -> None:
            while not (p.current is not None and p.current.text):
                threading.Event().wait(0.01)
            p.stop_button.click()

        clicker = threading.Thread(target=click_stop, daemon=True)
        clicker.start()
        result = p.run()  # blocks this thread, which runs the loop, as a cell does
        clicker.join()
        assert not p.running and p.current is None
        return p, result

    p, c = asyncio.run(cell())
    assert c.incomplete and c.text and "stopped by you after" in p.output.value  # in the footer
    assert html.escape(c.text) in p.output.value
    assert changed_by == {threading.get_ident()}, "a widget was changed from a thread other than the run's"
