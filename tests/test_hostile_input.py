"""Odd input and bounded waits: one-line errors that say what to change, never a raw traceback or a hang."""

from __future__ import annotations

import asyncio
import getpass
import logging
import threading
from typing import Any

import httpx
import pytest
from IPython.core.error import UsageError

from vman_magic import Client, CompletionRequest, ValidationError, complete_frame, panel
from vman_magic.client.answers import Answers, Attempt
from vman_magic.core.config import Secret, resolve
from vman_magic.core.errors import APITimeoutError, ConfigurationError, RateLimitError, VmanError
from vman_magic.core.template import TemplateError, render
from vman_magic.notebook.display import clean_stream_text
from vman_magic.notebook.panel import PanelBusyError
from vman_magic.testing import url

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- text that cannot be sent


@pytest.mark.parametrize("field", ["prompt", "stop", "model", "suffix", "prompt_list"])
def test_lone_surrogate_is_a_validation_error(field: str) -> None:
    """A lone surrogate anywhere in the text is refused before sending, naming the field and position."""
    bad = "ok \ud800 no"
    args: dict[str, Any] = {"model": "m", "prompt": "hi"}
    if field == "prompt_list":
        args["prompt"] = ["fine", bad]
    elif field in ("model", "prompt"):
        args[field] = bad
    else:
        args[field] = bad
    model, prompt = args.pop("model"), args.pop("prompt")
    with pytest.raises(ValidationError, match=r"unpaired surrogate '\\ud800' at position 3") as info:
        CompletionRequest.build(model, prompt, **args)
    assert info.value.param == field.removesuffix("_list")


def test_lone_surrogate_in_a_cell_is_a_usage_error(vman_shell: Any) -> None:
    """In %%complete the same input is a one-line UsageError."""
    vman_shell.user_ns["broken"] = "x\udcff"
    with pytest.raises(UsageError, match="unpaired surrogate"):
        vman_shell.run_cell_magic("complete", "", "Say {broken}")


# --------------------------------------------------------------------------- base URLs


@pytest.mark.parametrize(
    ("base_url", "words"),
    [("http://[::1", "malformed"), ("http://local\x00host/v1", "control character"), ("http://h:port/v1", "malformed")],
)
def test_malformed_base_url_is_a_configuration_error(base_url: str, words: str) -> None:
    """A URL urllib or httpx cannot read is a ConfigurationError naming where it came from."""
    with pytest.raises(ConfigurationError, match=words) as info:
        Client(base_url=base_url, model="m")
    assert "\n" not in str(info.value) and "argument" in str(info.value)


def test_bad_base_url_from_config_does_not_break_vman_config(
    vman_shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``%config VmanMagic.base_url = 'http://[::1'``: %vman config explains it; %%complete fails in one line."""
    from vman_magic.core import config as _config

    _config.clear_session()
    vman_shell.run_line_magic("config", "VmanMagic.base_url = 'http://[::1'")
    vman_shell.run_line_magic("vman", "config")
    out = capsys.readouterr().out
    assert "malformed" in out and "%config VmanMagic" in out
    with pytest.raises(UsageError, match="malformed"):
        vman_shell.run_cell_magic("complete", "", "hi")


# --------------------------------------------------------------------------- templates


class _Raises:
    """A variable whose every way of being read fails."""

    @property
    def prop(self) -> str:
        raise ZeroDivisionError("prop broke")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} here")

    def __getitem__(self, key: Any) -> Any:
        raise LookupError("getitem broke")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("format broke")

    def __repr__(self) -> str:
        raise RuntimeError("repr broke")


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("{v.prop}", "ZeroDivisionError: prop broke"),
        ("{v.other}", "RuntimeError: no other here"),
        ("{v[0]}", "LookupError: getitem broke"),
        ("{v}", "RuntimeError: format broke"),
        ("{v!r}", "RuntimeError: repr broke"),
    ],
)
def test_raising_variable_is_reported_by_name(field: str, words: str) -> None:
    """Whatever a variable raises becomes a TemplateError naming the field and the exception."""
    with pytest.raises(TemplateError) as info:
        render(f"say {field}", {"v": _Raises()})
    assert field in str(info.value) and words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("spec", [">9999999999", ".99999999f", "0>100001", "99999999999999999999"])
def test_format_widths_are_capped(spec: str) -> None:
    """{x:>9999999999} is an error, not an allocation that kills the kernel."""
    with pytest.raises(TemplateError, match="widths and precisions go up to 10000"):
        render("{x:" + spec + "}", {"x": 1.5})
    assert render("{x:>20.3f}", {"x": 1.5}).text == "1.500".rjust(20)


# --------------------------------------------------------------------------- %vman key, the panel


@pytest.mark.parametrize("failure", [EOFError, KeyboardInterrupt, "stdin"])
def test_vman_key_without_a_terminal(vman_shell: Any, monkeypatch: pytest.MonkeyPatch, failure: Any) -> None:
    """Ctrl-D, an interrupt or a front end without stdin give one UsageError, and nothing changes."""
    from IPython.core.error import StdinNotImplementedError

    error = StdinNotImplementedError("getpass") if failure == "stdin" else failure()

    def prompt(_text: str) -> str:
        raise error

    monkeypatch.setattr(getpass, "getpass", prompt)
    with pytest.raises(UsageError) as info:
        vman_shell.run_line_magic("vman", "key")
    assert "nothing changed" in str(info.value) or "VMAN_API_KEY" in str(info.value)
    assert resolve().api_key is None


def test_panel_takes_a_secret_and_refuses_a_second_run(demo_server: Any) -> None:
    """panel(api_key=Secret(...)) works; p.run() while a click-started run goes is a one-line PanelBusyError."""
    p = panel(base_url=url(demo_server, fault="hang"), api_key=Secret("sk-panel-secret-123"), prompt="hi")
    assert "sk-panel" not in repr(p._connection)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        loop.call_soon_threadsafe(p.run_button.click)  # a click in a kernel: a task on the kernel's loop
        while not p.running:
            threading.Event().wait(0.01)
        with pytest.raises(PanelBusyError) as info:
            p.run()
        assert info.value._render_traceback_() == [f"PanelBusyError: {info.value}"]
        p.stop()
        while p.running:
            threading.Event().wait(0.01)
        assert p.result is not None and p.result.incomplete
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_key_absent_from_verbose_frames_of_panel_and_complete_frame(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``%xmode Verbose`` prints the frames of panel(**defaults) and complete_frame(**kwargs) without the key."""
    key = "sk-verbose-frames-7f6e5d4c"
    shell.user_ns["get_key"] = lambda: key  # the cell's own globals then show a function, not the key
    shell.run_line_magic("xmode", "Verbose")
    try:
        shell.run_cell("import vman_magic\nvman_magic.panel(api_key=get_key(), prompt=5)")  # a TraitError inside
        shell.run_cell(
            "import pandas\nclass Bad(pandas.DataFrame):\n    def to_dict(self, *a, **k): raise RuntimeError('boom')\n"
            "vman_magic.complete_frame(Bad({'a': [1]}), '{a}', api_key=get_key())"
        )
    finally:
        shell.run_line_magic("xmode", "Context")
        shell.user_ns.pop("get_key")
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "TraitError" in text and "RuntimeError" in text and "Secret('****')" in text
    assert key not in text and complete_frame is not None


# --------------------------------------------------------------------------- bounded waits


@pytest.mark.parametrize(
    ("case", "asked"),
    [("retry_after_huge", "99,999,999 s"), ("retry_after_inf", "forever"), ("retry_after_ms_huge", "1,000,000,000 s")],
)
def test_retry_after_beyond_the_cap_fails_at_once(hostile: Any, case: str, asked: str) -> None:
    """A Retry-After beyond the cap is not waited: one request, and the message says what the server asked."""
    before = hostile.requests
    with Client(base_url=hostile.url(case), model="m", max_retries=2) as client, pytest.raises(RateLimitError) as info:
        client.complete("hi")
    assert hostile.requests - before == 1
    assert f"asks to wait {asked}" in str(info.value) and "wait a moment" not in str(info.value)


def test_a_short_retry_after_is_waited_and_announced(hostile: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A wait the server asks for within the cap is announced on the log (stderr) before it starts."""
    caplog.set_level(logging.INFO, logger="vman_magic")
    before = hostile.requests
    with (
        Client(base_url=hostile.url("retry_after_small"), model="m", max_retries=1) as client,
        pytest.raises(RateLimitError),
    ):
        client.complete("hi")
    assert hostile.requests - before == 2
    assert "waiting 0 s, then retry 1 of 1" in caplog.text


@pytest.mark.parametrize("stream_async", [False, True])
def test_keepalive_comments_do_not_reset_the_read_timeout(hostile: Any, stream_async: bool) -> None:
    """A stream of keep-alive comments ends after the read timeout, with the text that came before it."""
    base = hostile.url("keepalive_forever")
    if stream_async:
        from vman_magic import AsyncClient

        async def main() -> Any:
            async with AsyncClient(base_url=base, model="m", timeout=0.5, max_retries=0) as client:
                return await client.complete("hi")

        with pytest.raises(APITimeoutError, match="only keep-alive") as info:
            asyncio.run(main())
    else:
        with (
            Client(base_url=base, model="m", timeout=0.5, max_retries=0) as client,
            pytest.raises(APITimeoutError, match="only keep-alive") as info,
        ):
            client.complete("hi")
    assert info.value.partial is not None and info.value.partial.text == "Hello"


def test_write_timeout_is_not_called_a_read_timeout() -> None:
    """httpx's WriteTimeout says the request could not be sent, not that the server sent nothing."""
    answers = Answers(resolve(base_url="http://127.0.0.1:9/v1", model="m"))
    error = answers.transport_error(httpx.WriteTimeout("timed out"), Attempt())
    assert isinstance(error, APITimeoutError) and "write timeout" in str(error) and "read timeout" not in str(error)


def test_bidi_overrides_are_removed_from_stream_text() -> None:
    """U+202E and the other bidi controls cannot reverse the notebook's output."""
    assert clean_stream_text("evil\u202eTXT.exe\u2066x\u2069") == "evilTXT.exex"


def test_vman_error_renders_as_one_line_in_ipython(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Any VmanError raised in a cell shows as one line, not a traceback."""
    shell.run_cell("from vman_magic import complete\ncomplete('hi', model='m', temperature=7)")
    shown = capsys.readouterr()
    assert "Traceback" not in shown.out + shown.err and "ValidationError: temperature must be" in shown.out + shown.err
    assert issubclass(ValidationError, VmanError)
