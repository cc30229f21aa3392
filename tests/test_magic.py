"""Tests for ``%%complete`` / ``%complete`` through a real IPython shell and the demo server."""

from __future__ import annotations

import _thread
import json
import sys
import threading
import time
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from vman_magic.core import config as _config
from vman_magic.core.errors import AuthenticationError, BadRequestError, NotFoundError
from vman_magic.core.models import Completion
from vman_magic.notebook.display import clean_stream_text
from vman_magic.testing import url

SECRET = "sk-test-0123456789-do-not-leak"


@pytest.fixture
def ip(vman_shell: InteractiveShell) -> InteractiveShell:
    """The shell with vman_magic loaded, pointed at the test demo server, settings reset afterwards."""
    return vman_shell


def run(ip: InteractiveShell, cell: str) -> Any:
    """Run one cell as a user would and return IPython's ExecutionResult."""
    return ip.run_cell(cell, store_history=False)


def test_cell_streams_and_stores_the_result(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """A %%complete cell streams text, stores it in -o NAME and _completion, and returns None."""
    result = run(ip, "%%complete -o r --max-tokens 12 --seed 1\nOnce upon a time")
    assert result.success and result.result is None
    r = ip.user_ns["r"]
    assert isinstance(r, Completion) and ip.user_ns["_completion"] is r
    assert r.text and not r.incomplete
    assert r.request.prompt == "Once upon a time"
    out = capsys.readouterr().out
    assert out.startswith(clean_stream_text(r.text))
    assert "finish:" in out


def test_line_magic_returns_its_completion(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """x = %complete ... gives the Completion (like %timeit -o); a bare last line shows the text once, not twice."""
    assert run(ip, "x = %complete -t 0 --max-tokens 4 --seed 1 Once upon a time").success
    x = ip.user_ns.pop("x")
    assert isinstance(x, Completion) and x is ip.user_ns["_completion"] and x.text
    assert ip.run_line_magic("complete", "-t 0 --max-tokens 2 Hello") is ip.user_ns["_completion"]  # from code
    capsys.readouterr()
    bare = run(ip, "%complete -t 0 --max-tokens 4 --seed 1 Once upon a time")
    assert bare.success and bare.result is None  # nothing for IPython to display again: the text streamed
    assert capsys.readouterr().out.count(ip.user_ns["_completion"].text) == 1
    ip.user_ns["items"] = ["a", "b"]
    assert run(ip, "rs = %complete --over items --max-tokens 2 {item}").success
    assert type(ip.user_ns.pop("rs")).__name__ == "BatchResult"
    assert run(ip, "d = %complete --dry-run Hi").success and ip.user_ns.pop("d") is None
    ip.user_ns.pop("items")


def test_line_magic_takes_the_prompt_from_the_line(ip: InteractiveShell) -> None:
    """%complete reads flags first and keeps the rest of the line, quotes included, as the prompt."""
    assert run(ip, "%complete -o r --max-tokens 3 -t 0 Don't stop").success
    assert ip.user_ns["r"].request.prompt == "Don't stop"
    assert run(ip, "%complete --max-tokens 3 -- -1 is").success
    assert ip.user_ns["_completion"].request.prompt == "-1 is"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_every_flag_reaches_the_request(ip: InteractiveShell, stream: bool) -> None:
    """Each API flag ends up in the request, streamed and not streamed."""
    flags = (
        "-o r -m vman-demo -t 0.7 --top-p 0.9 -n 2 --max-tokens 5 --stop '\\n' . --logprobs 2 --echo"
        " --presence-penalty 0.5 --frequency-penalty -0.5 --logit-bias '{\"5\": -100}' --seed 7 --user alice"
        " --timeout 30"
    )
    if not stream:
        flags += " --no-stream --best-of 3"
    result = run(ip, f"%%complete {flags}\nThe sea")
    assert result.success, result.error_in_exec
    r = ip.user_ns["r"]
    req = r.request
    assert (req.model, req.temperature, req.top_p, req.n, req.max_tokens) == ("vman-demo", 0.7, 0.9, 2, 5)
    assert list(req.stop) == ["\n", "."]
    assert (req.logprobs, req.echo, req.presence_penalty, req.frequency_penalty) == (2, True, 0.5, -0.5)
    assert (dict(req.logit_bias), req.seed, req.user, req.stream) == ({"5": -100}, 7, "alice", stream)
    assert req.best_of == (None if stream else 3)
    assert len(r.choices) == 2
    assert all(text.startswith("The sea") for text in r.texts)  # --echo


def test_suffix_flag_is_sent(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """--suffix appears in the request body (checked with a dry run: servers differ on insert mode)."""
    assert run(ip, "%%complete --suffix ' THE END' --dry-run\nOnce").success
    assert '"suffix": " THE END"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("-t 3", "temperature must be in 0..2"),
        ("-n 0", "n must be in 1..128"),
        ("-n two", "invalid int value"),
        ("--stop a b c d e", "at most 4"),
        ("--logit-bias '[1]'", "JSON object"),
        ("--best-of 2", "--no-stream"),
        ("--bogus", "unrecognized arguments"),
        ("-o 1x", "-o needs a variable name"),
        ("-o class", "-o needs a variable name"),
    ],
)
def test_bad_flags_are_short_usage_errors(ip: InteractiveShell, flags: str, message: str) -> None:
    """A bad flag or value fails the cell with a UsageError and sends nothing."""
    result = run(ip, f"%%complete {flags}\nhello")
    assert isinstance(result.error_in_exec, UsageError)
    assert message in str(result.error_in_exec)
    assert "_completion" not in ip.user_ns


def test_templating_fills_variables_and_keeps_json(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """Variables, attributes and indexes are filled; JSON braces and unknown names stay literal."""
    run(ip, "class Row: title = 'Dune'\nrow = Row(); items = ['a', 'b']; d = {'k': 'v'}; x = 2/3")
    cell = '%%complete -o r --max-tokens 2\n{row.title} {items[1]} {d[k]} {x:.2f} {"json": {"a": 1}} {nope} {{x}}'
    assert run(ip, cell).success
    assert ip.user_ns["r"].request.prompt == 'Dune b v 0.67 {"json": {"a": 1}} {nope} {x}'
    assert run(ip, "%%complete --no-template -o r --max-tokens 2\n{x} {{x}}").success
    assert ip.user_ns["r"].request.prompt == "{x} {{x}}"


def test_templates_never_execute_code(ip: InteractiveShell) -> None:
    """Calls and private attributes in braces are not evaluated."""
    run(ip, "hits = []\ndef f(): hits.append(1)")
    assert run(ip, "%%complete -o r --max-tokens 2\n{f()} {hits.append(2)}").success
    assert ip.user_ns["hits"] == []
    result = run(ip, "%%complete --max-tokens 2\n{f.__globals__}")
    assert isinstance(result.error_in_exec, UsageError)


def test_dry_run_shows_prompt_and_body_but_never_the_key(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """--dry-run prints the final prompt and JSON body, sends nothing, and hides the key."""
    _config.set_session(api_key=SECRET)
    run(ip, "topic = '春天'")
    before = demo_server.stats.completions
    result = run(ip, "%%complete --dry-run -t 0 --max-tokens 9\nWrite about {topic} and {missing}")
    assert result.success and "_completion" not in ip.user_ns
    out = capsys.readouterr().out
    assert "Write about 春天 and {missing}" in out
    assert "{missing}" in out.split("kept literally")[1]
    assert f"POST {demo_server.base_url}/completions" in out
    body = json.loads(out[out.index("{\n") :])
    assert body["max_tokens"] == 9 and body["temperature"] == 0
    assert SECRET not in out and "Authorization" not in out
    assert demo_server.stats.completions == before


def test_config_precedence_between_config_vman_and_flags(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """%config VmanMagic sets defaults, %vman overrides them, and flags override both."""
    _config.set_session(model=None)
    run(ip, "%config VmanMagic.model = 'from-config'")
    run(ip, "%config VmanMagic.default_max_tokens = 4")
    run(ip, "%complete --dry-run hi")
    out = capsys.readouterr().out
    assert '"model": "from-config"' in out and '"max_tokens": 4' in out
    run(ip, "%vman config")
    assert "model: from-config (from %config VmanMagic)" in capsys.readouterr().out
    run(ip, "%vman model from-session")
    run(ip, "%complete --dry-run hi")
    assert '"model": "from-session"' in capsys.readouterr().out
    run(ip, "%complete --dry-run -m from-flag --max-tokens 2 hi")
    out = capsys.readouterr().out
    assert '"model": "from-flag"' in out and '"max_tokens": 2' in out


def test_errors_store_partial_results_and_fail_with_one_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """404 (unknown model), 401 (bad key) and 400 fail the cell briefly; the result is stored first."""
    cases = [
        ("%%complete -o r -m no-such-model --max-tokens 3\nhi", NotFoundError),
        (f"%%complete -o r --base-url {url(demo_server, status=401)} --max-tokens 3\nhi", AuthenticationError),
        (f"%%complete -o r --base-url {url(demo_server, status=400)} --max-tokens 3\nhi", BadRequestError),
    ]
    _config.set_session(api_key=SECRET)
    for cell, error in cases:
        ip.user_ns.pop("r", None)
        result = run(ip, cell)
        assert isinstance(result.error_in_exec, error), cell
        r = ip.user_ns["r"]
        assert r is ip.user_ns["_completion"] and r.incomplete and r.error is result.error_in_exec
        out = capsys.readouterr()
        shown = out.out + out.err
        assert f"{error.__name__}: " in shown
        assert "Traceback" not in shown and "_magic.py" not in shown
        assert SECRET not in shown


def test_vman_key_is_read_hidden_and_never_shown(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """%vman key reads the key at a hidden prompt into the session; config shows only 'set'."""
    monkeypatch.setattr("getpass.getpass", lambda prompt="": SECRET)
    assert run(ip, "%vman key").success
    assert _config.resolve().api_key is not None and _config.resolve().api_key.reveal() == SECRET
    run(ip, "%vman config")
    out = capsys.readouterr().out
    assert "api_key: set (from %vman)" in out and SECRET not in out
    result = run(ip, f"%vman key {SECRET}")
    assert isinstance(result.error_in_exec, UsageError)
    assert SECRET not in str(result.error_in_exec)


def test_vman_models_base_url_demo_and_help(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """%vman lists models, switches base URL and back to the demo, and explains itself."""
    run(ip, "%vman models")
    assert "vman-demo" in capsys.readouterr().out
    run(ip, f"%vman base_url {demo_server.base_url}")
    assert demo_server.base_url in capsys.readouterr().out
    run(ip, "%vman demo")
    assert "offline demo model vman-demo" in capsys.readouterr().out
    run(ip, "%vman help")
    assert "%vman key" in capsys.readouterr().out
    result = run(ip, "%vman frobnicate")
    assert isinstance(result.error_in_exec, UsageError)
    result = run(ip, "%vman base_url ftp://nope")
    assert isinstance(result.error_in_exec, UsageError)


def test_unload_removes_the_magics(shell: InteractiveShell) -> None:
    """%unload_ext removes %%complete and %vman; loading again brings them back."""
    shell.run_line_magic("load_ext", "vman_magic")
    shell.run_line_magic("unload_ext", "vman_magic")
    assert "complete" not in shell.magics_manager.magics["cell"]
    assert "vman" not in shell.magics_manager.magics["line"]
    shell.run_line_magic("load_ext", "vman_magic")
    assert "complete" in shell.magics_manager.magics["cell"]


@pytest.mark.usefixtures("interruptible")
def test_interrupt_keeps_partial_text_and_the_next_cell_works(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """Ctrl-C during a throttled stream stores the partial result, fails the cell, and the shell stays usable."""
    out = sys.stdout  # capsys's buffer: the live view writes the streamed text here
    cell_done = threading.Event()

    def interrupt_once_text_arrives() -> None:
        deadline = time.monotonic() + 30
        while not out.getvalue() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        if not cell_done.is_set():  # never interrupt whatever runs after the cell
            _thread.interrupt_main()

    threading.Thread(target=interrupt_once_text_arrives, daemon=True).start()
    # token 0 (end of text) is banned so the slow stream cannot end before the interrupt
    cell = (
        f"%%complete -o r --max-tokens 500 --logit-bias '{{\"0\": -100}}' --base-url {url(demo_server, tps=20)}\nOnce"
    )
    try:
        result = run(ip, cell)
    finally:
        cell_done.set()
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    r = ip.user_ns["r"]
    assert r.incomplete and r.text and isinstance(r.error, KeyboardInterrupt)
    shown = capsys.readouterr().out
    assert "⚠ incomplete: interrupted" in shown
    assert "partial text kept in `r` and `_completion`" in shown
    assert "Traceback" not in shown
    assert run(ip, "%%complete -o r2 --max-tokens 3\nagain").success
    assert not ip.user_ns["r2"].incomplete


def test_chinese_text_streams_intact(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """Multibyte text split across network chunks reaches the output and the result unbroken."""
    result = run(
        ip, f"%%complete -o r --max-tokens 12 --seed 2 --base-url {url(demo_server, fault='split_utf8')}\n春天"
    )
    assert result.success
    text = ip.user_ns["r"].text
    assert text and "\ufffd" not in text and any("\u4e00" <= ch <= "\u9fff" for ch in text)
    assert capsys.readouterr().out.startswith(clean_stream_text(text))


def test_show_probs_requests_logprobs_and_displays_the_heatmap(ip: InteractiveShell) -> None:
    """--show-probs asks for logprobs when not given and displays the probability view afterwards."""
    with capture_output() as cap:
        assert run(ip, "%%complete -o r --max-tokens 4 --seed 1 --show-probs\nOnce").success
    r = ip.user_ns["r"]
    assert r.request.logprobs == 5 and r.choices[0].logprobs is not None
    assert any("text/html" in output.data for output in cap.outputs)
    assert run(ip, "%%complete -o r --max-tokens 2 --show-probs --logprobs 1\nOnce").success
    assert ip.user_ns["r"].request.logprobs == 1


def test_demo_notice_is_printed_once(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no base URL configured the first call says it uses the demo model; later calls stay quiet."""
    monkeypatch.setattr("vman_magic.notebook.messages._demo_notice_shown", False)
    _config.set_session(base_url=None, model=None)
    assert run(ip, "%%complete --max-tokens 2\nOnce").success
    out = capsys.readouterr().out
    assert out.count("offline demo model") == 1
    notice = out.splitlines()[0]
    assert "offline demo model" in notice and "127.0.0.1" not in notice  # a random port, not worth saving
    assert run(ip, "%%complete --max-tokens 2\nOnce").success
    assert "offline demo model" not in capsys.readouterr().out


def test_vman_config_says_where_the_demo_settings_come_from(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """%vman config words the demo's origins as a sentence, not "(from demo server (no VMAN_BASE_URL set))"."""
    _config.set_session(base_url=None, model=None)
    run(ip, "%vman config")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("/v1 (the offline demo server, since no VMAN_BASE_URL is set)")
    assert "model: vman-demo (the offline demo's model)" in lines
    assert "api_key: not set (default)" in lines and "((" not in "".join(lines)


def test_vman_panel_opens_the_playground(ip: InteractiveShell) -> None:
    """%vman panel PROMPT returns the panel (displayed as the cell's value) with that prompt."""
    from vman_magic.notebook.panel import Panel

    result = run(ip, "%vman panel Once upon a time")
    assert result.success and isinstance(result.result, Panel)


def test_help_lists_every_api_parameter_from_the_table(ip: InteractiveShell) -> None:
    """%%complete? documents a flag for every API parameter, with the table's help and range."""
    from vman_magic.core.params import PARAMS

    doc = ip.magics_manager.registry["VmanMagic"].complete.__doc__
    flat = " ".join(doc.split())
    for spec in PARAMS:
        if spec.kind == "stream_options":
            continue
        assert ("-n N" if spec.name == "n" else spec.flag) in doc
        assert " ".join(spec.help.split()) in flat
        assert f"Allowed: {spec.range_text()}." in flat


def test_config_base_url_and_timeout_feed_the_settings(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], demo_server: Any
) -> None:
    """%config VmanMagic.base_url/timeout/max_retries are used when %vman sets nothing."""
    _config.set_session(base_url=None)
    run(ip, f"%config VmanMagic.base_url = '{url(demo_server, tps=1000)}'")
    run(ip, "%config VmanMagic.timeout = 12.5")
    run(ip, "%config VmanMagic.max_retries = 0")
    run(ip, "%vman config")
    out = capsys.readouterr().out
    assert f"base_url: {url(demo_server, tps=1000)} (from %config VmanMagic)" in out
    assert "read 12.5s" in out and "max_retries: 0 (from %config VmanMagic)" in out
    assert run(ip, "%complete -o r --max-tokens 2 hi").success
