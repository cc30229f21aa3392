"""Every fault the demo server can inject, through ``%%complete`` in a real shell and through ``complete()``.

One table says, per scenario, what a user must get: which error (or none),
whether the client retried (proved with the server's request counter),
whether text arrived before the failure, and a fragment of the message that
tells the user what to do. Benign variations of the stream format must give
exactly the text the plain server gives for the same seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import vman_magic
from vman_magic.core.models import Completion
from vman_magic.testing import url

MAX_RETRIES = 1  # every retryable fault is sent exactly twice
PARAMS = "--max-tokens 12 --seed 3"
PROMPT = "Tell me"


@dataclass(frozen=True)
class Scenario:
    """One fault and what the user must see."""

    knobs: dict[str, Any]
    error: str | None  # the exception class name, None when the cell succeeds
    retried: bool  # sent MAX_RETRIES + 1 times instead of once
    text: bool  # text arrived before the failure (kept in the partial)
    fragment: str = ""  # part of the one-line message that says what to do
    flags: str = ""
    same_text_as: dict[str, Any] | None = field(default_factory=dict)  # knobs of the reference run; None: no check


SCENARIOS: dict[str, Scenario] = {
    # 1-4, 11-13: legal variations of the format, or answers we can still use
    "no_space": Scenario({"fault": "no_space"}, None, False, True),
    "crlf": Scenario({"fault": "crlf"}, None, False, True),
    "keepalive": Scenario({"fault": "keepalive"}, None, False, True),
    "split_utf8": Scenario({"fault": "split_utf8"}, None, False, True, same_text_as={"fault": "chinese"}),
    "usage_chunk": Scenario({"fault": "usage_chunk"}, None, False, True),
    "json_when_stream": Scenario({"fault": "json_when_stream"}, None, False, True),
    "long_line": Scenario({"fault": "long_line"}, None, False, True, same_text_as=None),
    "no_done": Scenario({"fault": "no_done"}, None, False, True),
    "ratelimit_then_ok": Scenario({"ratelimit": 1, "retry_after": 0}, None, True, True),
    # 5-8: broken streams keep their partial and are never retried
    "error_in_stream": Scenario({"fault": "error_in_stream"}, "StreamAPIError", False, True, "stopped the stream"),
    "error_in_stream_strcode": Scenario(
        {"fault": "error_in_stream_strcode"}, "StreamAPIError", False, True, "stopped the stream"
    ),
    "drop_mid_stream": Scenario({"fault": "drop_mid_stream"}, "APIConnectionError", False, True, "broke"),
    "no_done_unfinished": Scenario({"fault": "no_done_unfinished"}, "StreamError", False, True, "run again"),
    "bad_json": Scenario({"fault": "bad_json"}, "StreamError", False, True, "not JSON"),
    # 9: headers, then nothing
    "hang": Scenario({"fault": "hang"}, "APITimeoutError", True, False, "--timeout", "--timeout 0.5"),
    # 10: HTTP errors; 4xx are final, 429 and 5xx are retried
    "400": Scenario({"status": 400}, "BadRequestError", False, False, "change"),
    "401": Scenario({"status": 401}, "AuthenticationError", False, False, "check the API key"),
    "403": Scenario({"status": 403}, "PermissionDeniedError", False, False, "pick another model"),
    "404": Scenario({"status": 404}, "NotFoundError", False, False, "check the model name"),
    "429": Scenario({"status": 429, "retry_after": 0}, "RateLimitError", True, False, "wait a moment"),
    "500": Scenario({"status": 500}, "InternalServerError", True, False, "try again"),
    "502": Scenario({"status": 502}, "InternalServerError", True, False, "try again"),
    "503": Scenario({"status": 503, "retry_after": 0}, "InternalServerError", True, False, "try again"),
    "500_html": Scenario({"html_error": 500}, "InternalServerError", True, False, "proxy"),
    "502_html": Scenario({"html_error": 502}, "InternalServerError", True, False, "proxy"),
    "503_html": Scenario({"html_error": 503}, "InternalServerError", True, False, "proxy"),
    # 11: a web page instead of the API
    "html_200": Scenario({"fault": "html_200"}, "APIResponseError", False, False, "base URL"),
}


@pytest.fixture
def ip(vman_shell: InteractiveShell) -> Iterator[InteractiveShell]:
    """The shell with vman_magic loaded, the test server as session default and one retry."""
    vman_shell.magics_manager.registry["VmanMagic"].max_retries = MAX_RETRIES
    yield vman_shell
    vman_shell.user_ns.pop("ok", None)


_prefixes = itertools.count()


def _fault_url(demo_server: Any, s: Scenario) -> str:
    """The scenario's base URL; ``ratelimit`` counts per exact prefix, so each use gets its own."""
    if "ratelimit" in s.knobs:
        return url(demo_server, first_token_ms=next(_prefixes), **s.knobs)
    return url(demo_server, **s.knobs)


def _reference_text(demo_server: Any, scenario: Scenario) -> str | None:
    """What the same request gives without the fault (or with the reference knobs)."""
    if scenario.same_text_as is None:
        return None
    base = url(demo_server, **scenario.same_text_as)
    return vman_magic.complete(PROMPT, base_url=base, model="vman-demo", max_tokens=12, seed=3).text


@pytest.mark.parametrize("name", SCENARIOS)
def test_fault_through_the_magic(
    ip: InteractiveShell, demo_server: Any, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """Each fault gives its expected outcome in a cell, one short line on failure, and the next cell works."""
    s = SCENARIOS[name]
    before = demo_server.stats.requests
    result = ip.run_cell(
        f"%%complete --base-url {_fault_url(demo_server, s)} -o r {PARAMS} {s.flags}\n{PROMPT}", store_history=False
    )
    sent = demo_server.stats.requests - before
    out = capsys.readouterr()
    r = ip.user_ns["r"]
    assert isinstance(r, Completion) and ip.user_ns["_completion"] is r
    assert sent == (MAX_RETRIES + 1 if s.retried else 1)
    assert bool(r.text) == s.text and "\ufffd" not in r.text
    assert "Traceback" not in out.out + out.err and "<html" not in (out.out + out.err).lower()
    if s.error is None:
        assert result.success, result.error_in_exec
        assert not r.incomplete and r.error is None
        reference = _reference_text(demo_server, s)
        assert reference is None or r.text == reference
    else:
        err = result.error_in_exec
        assert type(err).__name__ == s.error
        lines = err._render_traceback_()  # type: ignore[union-attr]
        assert len(lines) == 1 and "\n" not in lines[0] and len(lines[0]) <= 300
        assert lines[0].startswith(s.error + ": ") and s.fragment in lines[0]
        assert lines[0] in out.out
        assert ("`r`" in lines[0]) == s.text  # says where the partial text went
        assert r.incomplete and r.error is err
    assert ip.run_cell("%%complete -o ok --max-tokens 3 --seed 1\nHello", store_history=False).success
    assert ip.user_ns["ok"].text and not ip.user_ns["ok"].incomplete


@pytest.mark.parametrize("name", SCENARIOS)
def test_fault_through_the_python_api(demo_server: Any, name: str) -> None:
    """complete() gives the same outcome: the right error class with an incomplete .partial, or the full text."""
    s = SCENARIOS[name]
    timeout = 0.5 if "--timeout" in s.flags else None
    call = {"base_url": _fault_url(demo_server, s), "model": "vman-demo", "max_retries": MAX_RETRIES}
    before = demo_server.stats.requests
    if s.error is None:
        result = vman_magic.complete(PROMPT, timeout=timeout, max_tokens=12, seed=3, **call)
        assert demo_server.stats.requests - before == (MAX_RETRIES + 1 if s.retried else 1)
        assert not result.incomplete and bool(result.text) == s.text
        reference = _reference_text(demo_server, s)
        assert reference is None or result.text == reference
    else:
        with pytest.raises(getattr(vman_magic, s.error)) as info:
            vman_magic.complete(PROMPT, timeout=timeout, max_tokens=12, seed=3, **call)
        assert demo_server.stats.requests - before == (MAX_RETRIES + 1 if s.retried else 1)
        err = info.value
        assert type(err).__name__ == s.error and s.fragment in str(err) and "\n" not in str(err)
        partial = err.partial
        assert partial is not None and partial.incomplete and partial.error is err
        assert bool(partial.text) == s.text


def test_chinese_split_across_writes_arrives_intact_in_the_cell(
    ip: InteractiveShell, demo_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Chinese passage cut inside every character arrives whole, in the variable and on screen."""
    cell = f"%%complete --base-url {url(demo_server, fault='split_utf8')} -o r --max-tokens 30 --seed 5\n讲个故事"
    assert ip.run_cell(cell, store_history=False).success
    text = ip.user_ns["r"].text
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text) and "\ufffd" not in text
    plain = vman_magic.complete(
        "讲个故事", base_url=url(demo_server, fault="chinese"), model="vman-demo", max_tokens=30, seed=5
    )
    assert text == plain.text
    assert text in capsys.readouterr().out


def test_one_megabyte_event_is_kept_whole(demo_server: Any) -> None:
    """The 1,000,000-character event ends up in the text, on top of the normal completion."""
    result = vman_magic.complete(
        PROMPT, base_url=url(demo_server, fault="long_line"), model="vman-demo", max_tokens=12, seed=3
    )
    assert len(result.text) > 1_000_000 and not result.incomplete
