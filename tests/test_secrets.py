"""The API key never shows: not in output, reprs, tracebacks, logs, widget state, history or a saved notebook.

A recognisable canary key is set through each route a user has (``VMAN_API_KEY``,
``api_key=``, ``%vman key`` at a getpass prompt); then every success and
error path runs for real against the demo server, and every text a user or a
log could see goes through :class:`Scan`, which fails on the canary. The
servers are started with the canary as their key, so a successful call also
proves the key was really sent.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import secrets
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import vman_magic
from vman_magic.core import config as _config
from vman_magic.testing import serve, url

CANARY = f"sk-vman-CANARY-{secrets.token_hex(8)}"
ROUTES = ["env", "argument", "vman_key"]
_log = logging.getLogger(__name__)
_checks = [0]  # texts scanned in this module, logged at the end


class Scan:
    """Collects every text that could be seen and fails the test if one contains the canary."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, label: str, value: Any) -> None:
        text = value if isinstance(value, str) else repr(value)
        self.count += 1
        _checks[0] += 1
        assert CANARY not in text, f"the API key leaked into {label}"
        assert CANARY[8:] not in text, f"part of the API key leaked into {label}"

    def error(self, label: str, exc: BaseException) -> None:
        """An exception's text, repr, plain and with-locals tracebacks, and its partial result."""
        self(f"{label}: str", str(exc))
        self(f"{label}: repr", repr(exc))
        self(f"{label}: traceback", "".join(traceback.format_exception(exc)))
        tb = exc.__traceback__  # the package's frames only: the test's own frames hold the key on purpose
        while tb is not None and f"{os.sep}vman_magic{os.sep}" not in tb.tb_frame.f_code.co_filename:
            tb = tb.tb_next
        locals_tb = traceback.TracebackException(type(exc), exc, tb, capture_locals=True)
        self(f"{label}: traceback with package locals", "".join(locals_tb.format()))
        partial = getattr(exc, "partial", None)
        if partial is not None:
            self(f"{label}: partial", repr(partial) + str(partial) + repr(partial.to_dict()))
            self(f"{label}: partial html", partial._repr_mimebundle_())


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    _log.info("secret-leak checks run: %d", _checks[0])


@pytest.fixture(scope="module")
def authed() -> Iterator[Any]:
    """A demo server that accepts only the canary key."""
    with serve(api_key=CANARY) as server:
        yield server


@pytest.fixture(scope="module")
def other() -> Iterator[Any]:
    """A demo server started with a different key: every call with the canary is a 401."""
    with serve(api_key="sk-vman-some-other-key-0000") as server:
        yield server


@pytest.fixture
def scan(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[Scan]:
    """A scanner; at the end it also scans stdout, stderr and every DEBUG record of us, httpx and httpcore."""
    for name in ("vman_magic", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    s = Scan()
    yield s
    out = capsys.readouterr()
    s("stdout", out.out)
    s("stderr", out.err)
    records = caplog.get_records("setup") + caplog.get_records("call")
    for record in records:
        s(f"log record {record.name}", record.getMessage() + repr(record.args) + repr(record.__dict__))


@pytest.fixture
def ip(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """The shell with vman_magic loaded and no configuration from the environment."""
    for name in ("VMAN_BASE_URL", "VMAN_API_KEY", "VMAN_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    shell.extension_manager.load_extension("vman_magic")
    _config.clear_session()
    yield shell
    _config.clear_session()
    for name in ("r", "_completion", "err"):
        shell.user_ns.pop(name, None)


def _set_key(route: str, ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Put the canary where ``route`` says; returns the extra arguments Python API calls need."""
    if route == "env":
        monkeypatch.setenv("VMAN_API_KEY", CANARY)
        return {}
    if route == "vman_key":
        monkeypatch.setattr(getpass, "getpass", lambda prompt="": CANARY)  # the terminal prompt only
        assert ip.run_cell("%vman key", store_history=True).success
        return {}
    return {"api_key": CANARY}


def _cell(ip: InteractiveShell, scan: Scan, label: str, code: str) -> Any:
    """Run a cell capturing stdout, stderr and display data, scan all of it and its error."""
    with capture_output() as captured:
        result = ip.run_cell(code, store_history=False)
    scan(f"{label}: cell stdout", captured.stdout)
    scan(f"{label}: cell stderr", captured.stderr)
    for output in captured.outputs:
        scan(f"{label}: display data", output.data)
    if result.error_in_exec is not None:
        scan.error(label, result.error_in_exec)
        if hasattr(result.error_in_exec, "_render_traceback_"):
            scan(f"{label}: shown line", result.error_in_exec._render_traceback_())
    return result


ERROR_KNOBS: list[dict[str, Any]] = [
    {"status": s, "retry_after": 0} for s in (400, 401, 403, 404, 429, 500, 502, 503)
] + [
    {"html_error": 502},
    {"fault": "html_200"},
    {"fault": "drop_mid_stream"},
    {"fault": "error_in_stream"},
    {"fault": "no_done_unfinished"},
    {"fault": "bad_json"},
]


@pytest.mark.parametrize("route", ROUTES)
def test_key_never_shows_on_any_path(
    route: str,
    ip: InteractiveShell,
    authed: Any,
    other: Any,
    scan: Scan,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Successes, a 401, every fault, dry run, %vman config and verbose tracebacks never show the key."""
    extra = _set_key(route, ip, monkeypatch)
    common = {"model": "vman-demo", "max_retries": 0, "max_tokens": 4, **extra}
    ok = vman_magic.complete("Hello", base_url=authed.base_url, **common)
    assert ok.text is not None and not ok.incomplete  # the server only answers with the canary
    scan("Completion repr/str/html/dict", [repr(ok), str(ok), ok._repr_mimebundle_(), ok.to_dict(), repr(ok.request)])
    with pytest.raises(vman_magic.AuthenticationError) as info:
        vman_magic.complete("Hello", base_url=other.base_url, **common)
    scan.error("401 from the Python API", info.value)
    for knobs in ERROR_KNOBS:
        with pytest.raises(vman_magic.VmanError) as info:
            vman_magic.complete("Hello", base_url=url(authed, **knobs), **common)
        scan.error(f"Python API {knobs}", info.value)
    with pytest.raises(vman_magic.APITimeoutError) as info:
        vman_magic.complete("Hello", base_url=url(authed, fault="hang"), timeout=0.3, **common)
    scan.error("timeout", info.value)

    if route == "argument":  # the magic has no key flag; put the key where only the magic's settings see it
        _config.set_session(api_key=CANARY)
    base = f"--max-tokens 4 -m vman-demo -o r --base-url {authed.base_url}"
    assert _cell(ip, scan, "magic success", f"%%complete {base}\nHello").success
    assert not _cell(ip, scan, "magic 401", f"%%complete {base.replace(authed.base_url, other.base_url)}\nHi").success
    _config.set_session(max_retries=0)
    for knobs in ERROR_KNOBS:
        cell = f"%%complete {base.replace(authed.base_url, url(authed, **knobs))}\nHello"
        assert not _cell(ip, scan, f"magic {knobs}", cell).success
    _cell(ip, scan, "dry run", f"%%complete --dry-run {base}\nHello")
    _cell(ip, scan, "%vman config", "%vman config")
    _cell(ip, scan, "%vman models", f"%vman base_url {authed.base_url}\n%vman models")
    ip.run_line_magic("xmode", "Verbose")
    try:
        code = f"import vman_magic\nerr = vman_magic.complete('hi', base_url={other.base_url!r}, model='vman-demo')"
        _cell(ip, scan, "%xmode Verbose traceback", code)
    finally:
        ip.run_line_magic("xmode", "Context")
    assert {"vman_magic", "httpx"} <= {r.name for r in caplog.records}  # the scanned loggers did speak


@pytest.mark.parametrize("route", ["env", "argument"])
def test_repr_of_every_public_object_hides_the_key(
    route: str, ip: InteractiveShell, authed: Any, scan: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients, settings, Secret, results, errors, batch and sweep results and the panel show no key."""
    extra = _set_key(route, ip, monkeypatch)
    key = extra.get("api_key")
    client = vman_magic.Client(base_url=authed.base_url, model="vman-demo", api_key=key)
    with client:
        result = client.complete("Hi", max_tokens=3)
        scan("Client", [repr(client), str(client), vars(client)])
    aclient = vman_magic.AsyncClient(base_url=authed.base_url, model="vman-demo", api_key=key)
    asyncio.run(aclient.aclose())
    scan("AsyncClient", [repr(aclient), str(aclient), vars(aclient)])
    settings = _config.resolve(base_url=authed.base_url, api_key=key)
    scan("Settings", [repr(settings), str(settings), settings.describe(), f"{settings.api_key}"])
    scan("Secret", [repr(_config.Secret(CANARY)), str(_config.Secret(CANARY)), f"{_config.Secret(CANARY):>40}"])
    scan("Completion and request", [repr(result), str(result), repr(result.request), result.request.to_body()])
    scan("every error class", [repr(cls("m", status_code=500)) for cls in _status_classes()])
    batch = vman_magic.complete_many(
        ["a", "b"], base_url=authed.base_url, model="vman-demo", api_key=key, progress=False, max_tokens=2
    )
    scan("BatchResult", [repr(batch), str(batch), [repr(c) for c in batch]])
    sweep = vman_magic.run_sweep(
        "Hi", {"temperature": [0, 1]}, base_url=authed.base_url, model="vman-demo", api_key=key, show=False,
        max_tokens=2,
    )  # fmt: skip
    scan("SweepResult", [repr(sweep), str(sweep.table), repr(sweep.completions)])
    with pytest.raises(vman_magic.ValidationError) as info:  # an error raised inside the batch helpers' frames
        vman_magic.complete_many(["a"], base_url=authed.base_url, model="vman-demo", api_key=key, temperature=9)
    scan.error("complete_many validation error", info.value)
    _panel_state(authed, key, scan)


def _status_classes() -> list[type[vman_magic.APIStatusError]]:
    return [vman_magic.APIStatusError, *vman_magic.APIStatusError.__subclasses__()]


def _panel_state(server: Any, key: str | None, scan: Scan) -> None:
    """Run the panel once and scan the state of every widget in it, recursively."""
    p = vman_magic.panel(base_url=server.base_url, api_key=key, model="vman-demo", prompt="Hi", max_tokens=3)
    p.run()
    scan("Panel repr", [repr(p), str(p), p.code])
    seen: set[int] = set()

    def walk(widget: Any) -> None:
        if id(widget) in seen:
            return
        seen.add(id(widget))
        scan(f"widget state {type(widget).__name__}", widget.get_state())
        for child in getattr(widget, "children", ()):
            walk(child)

    walk(p)
    for value in vars(p).values():
        if hasattr(value, "get_state"):
            walk(value)
    assert len(seen) > 10
    p.close()


def test_vman_key_keeps_the_key_out_of_history(
    ip: InteractiveShell, scan: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After %vman key, In and the history database hold only the command, not the key."""
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": CANARY)
    with capture_output() as captured:
        assert ip.run_cell("%vman key", store_history=True).success
    scan("%vman key output", captured.stdout + captured.stderr)
    hm = ip.history_manager
    assert hm is not None
    assert hm.input_hist_raw[-1].strip() == "%vman key"
    scan("In", ip.user_ns["In"])
    scan("Out", ip.user_ns.get("Out", {}))
    scan("input history", [hm.input_hist_raw, hm.input_hist_parsed])
    scan("history database", list(hm.get_range(output=True)))
    scan("user namespace", {k: v for k, v in ip.user_ns.items() if not k.startswith("_") and k not in ("In", "Out")})
    assert _config.resolve().api_key == _config.Secret(CANARY)  # the key did arrive


@pytest.mark.parametrize("route", ROUTES)
def test_history_file_never_contains_the_key(
    route: str,
    ip: InteractiveShell,
    authed: Any,
    other: Any,
    scan: Scan,
    history_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every byte of the history file (and its WAL) after successes, a 401, faults, magic, batch, panel: no key."""
    from vman_magic.logbook import session

    extra = _set_key(route, ip, monkeypatch)
    common = {"model": "vman-demo", "max_retries": 0, "max_tokens": 4, **extra}
    vman_magic.complete("Hello history", base_url=authed.base_url, cache=True, **common)
    assert vman_magic.complete("Hello history", base_url=authed.base_url, cache=True, **common).cached
    for base in [other.base_url] + [url(authed, **knobs) for knobs in ERROR_KNOBS]:
        with pytest.raises(vman_magic.VmanError):
            vman_magic.complete("Hello history", base_url=base, **common)
    if route == "argument":
        _config.set_session(api_key=CANARY)
    _cell(ip, scan, "magic", f"%%complete --max-tokens 4 -m vman-demo --base-url {authed.base_url}\nHello magic")
    vman_magic.complete_many(["a", "b"], base_url=authed.base_url, progress=False, **common)
    p = vman_magic.panel(base_url=authed.base_url, api_key=extra.get("api_key"), model="vman-demo", prompt="Hi")
    p.run()
    p.close()
    session.flush()
    files = [history_file, *history_file.parent.glob(history_file.name + "-*")]
    data = b"".join(f.read_bytes() for f in files)
    assert b"Hello history" in data and b"Hello magic" in data and b"AuthenticationError" in data  # rows are there
    assert CANARY.encode() not in data and CANARY[8:].encode() not in data, "the API key leaked into the history file"
    assert len(vman_magic.history(limit=100)) == 1 + 1 + len(ERROR_KNOBS) + 1 + 2 + 1  # the cached answer adds none


@pytest.mark.notebooks
def test_executed_notebook_never_contains_the_key(authed: Any, other: Any, tmp_path: Path, scan: Scan) -> None:
    """A notebook run by nbclient with the canary in VMAN_API_KEY, incl. a 401 and a fault, saves no key."""
    import nbformat
    from nbclient import NotebookClient

    root = Path(__file__).resolve().parents[1]
    cells = [
        "%load_ext vman_magic",
        "%vman config",
        "%%complete -o r --max-tokens 4\nHello",
        "r",
        f"%%complete --base-url {other.base_url} --max-tokens 4\nHello",
        f"%%complete --base-url {url(authed, fault='drop_mid_stream')} --max-tokens 20\nHello",
        "import vman_magic\nvman_magic.panel(prompt='Hi', max_tokens=3)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VMAN_", "OPENAI_")) or k == "VMAN_HISTORY"}
    env.update(
        VMAN_API_KEY=CANARY,
        VMAN_BASE_URL=authed.base_url,
        VMAN_MODEL="vman-demo",
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    )
    client = NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True, resources={"metadata": {}})
    _with_env(env, client.execute)
    saved = nbformat.writes(nb)
    scan("saved notebook", saved)
    assert "AuthenticationError" in saved and "APIConnectionError" in saved and "Hello" in saved


def _with_env(env: dict[str, str], run: Callable[[], Any]) -> Any:
    """Run ``run`` with ``os.environ`` replaced (the kernel inherits it), then restore it."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return run()
    finally:
        os.environ.clear()
        os.environ.update(saved)
