"""Tracebacks that capture every frame's locals never show the key, from every public door.

Error reporters (``TracebackException(capture_locals=True)``, rich's
``show_locals``, Sentry) and ``%xmode Verbose`` print the ``repr`` of every
local of every frame, including half-built objects. Each public entry point is
made to fail for real (a malformed base URL, an unreachable host, a 401, a
timeout, an interrupted batch) with a canary key, and the formatted traceback
must build without error and never contain the key.

The canary is a module constant, never a local of the test functions, so the
tracebacks' own first frames (the tests) hold no copy of it either.
"""

from __future__ import annotations

import _thread
import asyncio
import getpass
import secrets
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import vman_magic
from vman_magic.core import config as _config
from vman_magic.testing import serve, url

CANARY = f"sk-vman-LOCALS-{secrets.token_hex(8)}"
COMMON: dict[str, Any] = {"model": "vman-demo", "max_retries": 0, "timeout": 0.5}


def _assert_clean(exc: BaseException, where: str) -> None:
    """The with-locals traceback of ``exc`` (and its chained exceptions) formats and shows no key."""
    text = "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
    assert "Traceback" in text
    assert CANARY not in text and CANARY[8:] not in text, f"the key leaked into the locals of {where}"
    assert "repr() failed" not in text, f"a repr failed in a frame of {where}:\n{text}"


def _outcome(call: Callable[[], Any]) -> list[BaseException]:
    """Run ``call``; the exception it raised, or the errors stored on what it returned."""
    try:
        result = call()
    except BaseException as exc:  # KeyboardInterrupt (BatchInterrupted) too
        return [exc]
    items = getattr(result, "completions", result)
    return [c.error for c in items if getattr(c, "error", None) is not None]


# --------------------------------------------------------------------------- doors


def _client(base_url: str, max_tokens: int = 3) -> Any:
    with vman_magic.Client(base_url=base_url, api_key=CANARY, **COMMON) as c:
        return c.complete("Hi", max_tokens=max_tokens)


def _client_models(base_url: str) -> Any:
    with vman_magic.Client(base_url=base_url, api_key=CANARY, **COMMON) as c:
        return c.models()


def _async_client(base_url: str) -> Any:
    async def go() -> Any:
        async with vman_magic.AsyncClient(base_url=base_url, api_key=CANARY, **COMMON) as c:
            return await c.complete("Hi", max_tokens=3)

    return asyncio.run(go())


def _complete(base_url: str) -> Any:
    return vman_magic.complete("Hi", base_url=base_url, api_key=CANARY, max_tokens=3, **COMMON)


def _acomplete(base_url: str) -> Any:
    return asyncio.run(vman_magic.acomplete("Hi", base_url=base_url, api_key=CANARY, max_tokens=3, **COMMON))


def _complete_many(base_url: str) -> Any:
    return vman_magic.complete_many(
        ["a", "b"], base_url=base_url, api_key=CANARY, progress=False, max_tokens=2, **COMMON
    )


def _acomplete_many(base_url: str) -> Any:
    return asyncio.run(
        vman_magic.acomplete_many(["a", "b"], base_url=base_url, api_key=CANARY, progress=False, max_tokens=2, **COMMON)
    )


def _complete_frame(base_url: str) -> Any:
    frame = pd.DataFrame({"q": ["a", "b"]})
    done = vman_magic.complete_frame(frame, "{q}", base_url=base_url, api_key=CANARY, progress=False, **COMMON)
    errors = [e for e in done["completion_error"] if e is not None]
    if errors:  # the frame keeps error text only; the same batch's error objects are checked by complete_many
        assert all(CANARY not in e for e in errors)
    return []


def _run_sweep(base_url: str) -> Any:
    return vman_magic.run_sweep(
        "Hi", {"temperature": [0, 1]}, base_url=base_url, api_key=CANARY, show=False, max_tokens=2, **COMMON
    )


def _panel(base_url: str) -> Any:
    p = vman_magic.panel(base_url=base_url, api_key=CANARY, prompt="Hi", max_tokens=3, **COMMON)
    try:
        return p.run()
    finally:
        p.close()


DOORS: dict[str, Callable[[str], Any]] = {
    "Client.complete": _client,
    "Client.models": _client_models,
    "AsyncClient.complete": _async_client,
    "complete": _complete,
    "acomplete": _acomplete,
    "complete_many": _complete_many,
    "acomplete_many": _acomplete_many,
    "complete_frame": _complete_frame,
    "run_sweep": _run_sweep,
    "panel": _panel,
}


@pytest.fixture(scope="module")
def other() -> Iterator[Any]:
    """A demo server that wants another key: the canary gets a 401."""
    with serve(api_key="sk-vman-some-other-key-0000") as server:
        yield server


@pytest.fixture(scope="module")
def closed_port() -> str:
    """A base URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("VMAN_BASE_URL", "VMAN_API_KEY", "VMAN_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    _config.clear_session()
    yield
    _config.clear_session()


FAILURES = ["malformed base URL", "unreachable host", "401", "timeout"]
CASES = [
    (door, failure)
    for door in sorted(DOORS)
    for failure in FAILURES
    if (door, failure) != ("Client.models", "timeout")  # the demo's hang fault holds completions only
]


@pytest.mark.parametrize(("door", "failure"), CASES)
def test_every_door_fails_without_the_key_in_any_frame(
    door: str, failure: str, other: Any, closed_port: str, demo_server: Any
) -> None:
    """Each public entry point, failing for real, gives a with-locals traceback that formats and hides the key."""
    base_url = {
        "malformed base URL": "ftp://not-a-server/v1",
        "unreachable host": closed_port,
        "401": other.base_url,
        "timeout": url(demo_server, fault="hang"),
    }[failure]
    errors = _outcome(lambda: DOORS[door](base_url))
    if door == "complete_frame" and failure != "malformed base URL":
        return  # checked inside _complete_frame: the frame holds text, not exceptions
    assert errors, f"{door} did not fail on a {failure}"
    for error in errors:
        _assert_clean(error, f"{door} ({failure}: {type(error).__name__})")


def _interrupt_when(server: Any, count: int) -> threading.Thread:
    start = server.stats.completions

    def watch() -> None:
        while server.stats.completions < start + count:
            threading.Event().wait(0.01)
        _thread.interrupt_main()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("door", ["complete_many", "complete_frame", "run_sweep", "Client.complete"])
def test_an_interrupted_call_keeps_the_key_out_of_every_frame(door: str, demo_server: Any, interruptible: None) -> None:
    """Ctrl-C in the middle of a batch, a sweep or a stream: the interrupt's with-locals traceback hides the key."""
    slow = demo_server.url(tps=20)
    calls: dict[str, Callable[[], Any]] = {
        "complete_many": lambda: vman_magic.complete_many(
            ["a"] * 6, base_url=slow, api_key=CANARY, model="vman-demo", concurrency=2, progress=False, max_tokens=50
        ),
        "complete_frame": lambda: vman_magic.complete_frame(
            pd.DataFrame({"q": ["a"] * 6}),
            "{q}",
            base_url=slow,
            api_key=CANARY,
            model="vman-demo",
            concurrency=2,
            progress=False,
            max_tokens=50,
        ),
        "run_sweep": lambda: vman_magic.run_sweep(
            "Hi",
            {"temperature": [0, 0.5, 1]},
            base_url=slow,
            api_key=CANARY,
            model="vman-demo",
            show=False,
            max_tokens=50,
            concurrency=1,
        ),
        "Client.complete": lambda: _client(slow, max_tokens=200),
    }
    watcher = _interrupt_when(demo_server, 1)
    errors = _outcome(calls[door])
    watcher.join()
    assert errors and isinstance(errors[0], KeyboardInterrupt), errors
    _assert_clean(errors[0], f"interrupted {door}")


def test_half_built_objects_have_safe_reprs() -> None:
    """A client or panel that failed in __init__ still has a repr (tracebacks call it on every local)."""
    for cls in (vman_magic.Client, vman_magic.AsyncClient):
        half = cls.__new__(cls)
        assert cls.__name__ in repr(half)
    with pytest.raises(vman_magic.ConfigurationError) as info:
        vman_magic.Client(base_url="ftp://nowhere/v1", api_key=CANARY)
    _assert_clean(info.value, "Client.__init__")
    with pytest.raises(vman_magic.ValidationError) as info2:
        vman_magic.panel(base_url="http://127.0.0.1:9/v1", api_key=CANARY, model="m", temperature=9)
    _assert_clean(info2.value, "Panel.__init__")


@pytest.fixture
def ip(shell: InteractiveShell) -> Iterator[InteractiveShell]:
    shell.extension_manager.load_extension("vman_magic")
    yield shell
    for name in ("r", "_completion", "err", "p", "c"):
        shell.user_ns.pop(name, None)
    shell.run_line_magic("xmode", "Context")


def test_magic_doors_under_xmode_verbose(
    ip: InteractiveShell, other: Any, closed_port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """%vman key, then failing cells under %xmode Verbose: neither the shown traceback nor the locals hold the key."""
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": CANARY)
    assert ip.run_cell("%vman key", store_history=False).success
    monkeypatch.setenv("VMAN_MODEL", "vman-demo")
    ip.run_line_magic("xmode", "Verbose")
    cells = [
        f"%%complete --base-url {other.base_url} --max-tokens 3\nHi",
        f"%%complete --base-url {closed_port} --max-tokens 3\nHi",
        f"import vman_magic\nwith vman_magic.Client(base_url={other.base_url!r}) as c:\n    c.complete('Hi', max_tokens=3)",
        "import vman_magic\nr = vman_magic.Client(base_url='ftp://nowhere/v1')",
        f"import vman_magic\np = vman_magic.panel(base_url={other.base_url!r}, prompt='Hi', max_tokens=3)\np.run()",
        "import pandas as pd, vman_magic\n"
        "r = vman_magic.complete_frame(pd.DataFrame({'q': ['a']}), '{q}', base_url='ftp://x/v1')",
    ]
    for cell in cells:
        with capture_output() as shown:
            result = ip.run_cell(cell, store_history=False)
        assert result.error_in_exec is not None, cell
        assert CANARY not in shown.stdout + shown.stderr, f"%xmode Verbose showed the key for:\n{cell}"
        _assert_clean(result.error_in_exec, cell.splitlines()[0])
