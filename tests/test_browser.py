"""JupyterLab and Notebook 7 in a real headless Chromium: what a student sees when running the notebooks.

The tests start their own JupyterLab (and, for the quickstart only, their own
Notebook 7) on 127.0.0.1 (ephemeral port, random token, a temporary copy of
``notebooks/``, isolated Jupyter config, settings and workspace directories)
whose kernels reach the session's demo server through a throttled ``/x/tps=8``
prefix, so one stream lasts several seconds and its growth can be watched.
Debian's Chromium is driven by Playwright; the Playwright browser download is
never used.

Screenshots go to ``$VMAN_ARTIFACTS`` (default ``artifacts/`` in the repo).
Without chromium, playwright, jupyterlab or notebook the tests skip, except
under ``CI``, where they must run.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
import pytest

from vman_magic.testing import url

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1200, "height": 800}
TPS = 8  # demo-model tokens per second: a 60-token answer streams for about 8 s
WAIT_MS = 60_000  # page loads, kernel start, one cell
NOTEBOOK = ".jp-Notebook"
STDOUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]'
HTML_OUTPUT = '.jp-OutputArea-output[data-mime-type="text/html"]'

# Appended to the temporary copy of the quickstart, so the panel runs next to it.
PANEL_CELL = (
    "import vman_magic\n"
    'p = vman_magic.panel(prompt="Return the number of", max_tokens=400, temperature=0.6, seed=3,\n'
    '                     logprobs=5, logit_bias={"0": -100})  # no end-of-text: a long stream to stop\n'
    "p"
)
HEATMAP_CELL = "%%complete -o h -t 0.6 --seed 3 --max-tokens 40 --show-probs\nReturn the number of"
PANEL_CHECK_CELL = 'print("incomplete:", p.result.incomplete, "chars:", len(p.result.text))'
PANEL_TEXT_CELL = "print(p.result.text)"
PANEL_OUTPUT = ".vman-live"  # the panel's live view (an HTML widget)
LIVE_PANEL = ".jp-OutputArea-output:has(.vman-panel)"  # the output showing the widget (its snapshot is hidden)
# Lab settings for a quiet, fully rendered notebook: no news popup, every cell in the DOM.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": '{"fetchNews": "false"}',
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
}


def _unavailable(reason: str) -> None:
    """Skip with ``reason``; under CI fail instead, since CI must run the browser tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)")
    pytest.skip(reason)


@dataclass
class Jupyter:
    """A running Jupyter app (JupyterLab or Notebook 7): where it listens, how to log in and open a notebook."""

    base_url: str
    token: str
    root: Path
    notebook_route: str  # "lab/tree" (JupyterLab) or "notebooks" (Notebook 7)
    idle: str  # selector that matches once the open notebook's kernel is started and idle

    def tree(self, path: str) -> str:
        return f"{self.base_url}/{self.notebook_route}/{path}?token={self.token}"


# How each app is started, opens a notebook and shows an idle kernel. JupyterLab's status
# bar says "Python 3 (ipykernel) | Idle"; Notebook 7 has no status bar, so its toolbar's
# kernel indicator must say idle after the kernel name left "No Kernel" (it starts as idle).
APPS = {
    "jupyterlab": ("lab/tree", '.jp-StatusBar-Widget:has-text("| Idle")'),
    "notebook": (
        "notebooks",
        '.jp-NotebookPanel-toolbar:not(:has(.jp-Toolbar-kernelName[aria-label="No Kernel"]))'
        ' .jp-Notebook-ExecutionIndicator[data-status="idle"]',
    ),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(base_url: str, token: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[2]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with suppress(OSError), urllib.request.urlopen(f"{base_url}/api/status?token={token}", timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{proc.args[2]} did not answer within {WAIT_MS // 1000} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the Jupyter server (it shuts its kernels down), then anything left in its process group."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _serve(app: str, demo_server: Any, home: Path) -> Iterator[Jupyter]:
    """Run ``python -m <app>`` on a free port over a copy of the notebooks in ``home``; yield it, then stop it.

    Kernels stream from the throttled demo server; config, settings and workspaces are private to ``home``.
    """
    root = home / "notebooks"
    root.mkdir()
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(notebook, root)
    quickstart = nbformat.read(root / "01-quickstart.ipynb", as_version=4)
    extra = (PANEL_CELL, PANEL_CHECK_CELL, PANEL_TEXT_CELL, HEATMAP_CELL)
    quickstart.cells += [nbformat.v4.new_code_cell(c) for c in extra]
    nbformat.write(quickstart, root / "01-quickstart.ipynb")
    for name, text in LAB_SETTINGS.items():
        (home / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (home / "settings" / name).write_text(text)

    port, token = _free_port(), secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VMAN_", "OPENAI_")) or k == "VMAN_HISTORY"}
    env.update(
        VMAN_BASE_URL=url(demo_server, tps=TPS),
        VMAN_MODEL="vman-demo",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    command = [
        sys.executable, "-m", app, "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.extension_manager=readonly", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    log = home / f"{app}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_serving(base_url, token, proc, log)
        yield Jupyter(base_url, token, root, *APPS[app])
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def lab(demo_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    """JupyterLab on a free port over a copy of the notebooks; kernels stream from a throttled demo server."""
    if shutil.which("jupyter-lab") is None:
        _unavailable("jupyterlab is not installed: pip install 'vman-magic[browser]'")
    yield from _serve("jupyterlab", demo_server, tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="module")
def notebook7(demo_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    """Notebook 7 (``jupyter notebook``), set up as :func:`lab` is."""
    try:
        version = metadata.version("notebook")
    except metadata.PackageNotFoundError:
        _unavailable("notebook (Notebook 7) is not installed: pip install 'vman-magic[browser]'")
    if int(version.split(".")[0]) < 7:
        _unavailable(f"notebook {version} is installed, the test needs Notebook 7: pip install 'notebook>=7.2'")
    yield from _serve("notebook", demo_server, tmp_path_factory.mktemp("notebook7"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install 'vman-magic[browser]'")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where screenshots go: ``$VMAN_ARTIFACTS`` or ``artifacts/`` in the repo."""
    path = Path(os.environ.get("VMAN_ARTIFACTS") or ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    print(f"browser test screenshots: {path}")
    return path


def _open_quickstart(app: Jupyter, browser: Any) -> Iterator[Any]:
    """A fresh page with the quickstart open in ``app``, its kernel idle and ``%load_ext vman_magic`` run."""
    page = browser.new_page(viewport=VIEWPORT, permissions=["clipboard-read", "clipboard-write"])
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(app.tree("01-quickstart.ipynb"))
        page.locator(f"{NOTEBOOK} .jp-Cell").first.wait_for()
        page.locator(app.idle).first.wait_for()
        if page.locator("#jp-left-stack").is_visible():
            page.keyboard.press("Control+b")  # hide the file browser: more room for the notebook
        run_cell(page, cell(page, "%load_ext vman_magic"))
        wait_done(cell(page, "%load_ext vman_magic"))
        yield page
    finally:
        page.close()


@pytest.fixture
def quickstart(lab: Jupyter, browser: Any) -> Iterator[Any]:
    """The quickstart in JupyterLab, ready to run (see :func:`_open_quickstart`)."""
    yield from _open_quickstart(lab, browser)


@pytest.fixture
def notebook7_quickstart(notebook7: Jupyter, browser: Any) -> Iterator[Any]:
    """The quickstart in Notebook 7, ready to run (see :func:`_open_quickstart`)."""
    yield from _open_quickstart(notebook7, browser)


# --------------------------------------------------------------------------- page helpers


def cell(page: Any, marker: str) -> Any:
    """The one notebook cell whose text contains ``marker``."""
    found = page.locator(f"{NOTEBOOK} .jp-Cell").filter(has_text=marker)
    assert found.count() == 1, f"expected one cell containing {marker!r}, found {found.count()}"
    return found


def run_cell(page: Any, target: Any) -> None:
    """Click into the cell's editor and press Shift+Enter, as a user would."""
    target.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def busy(target: Any) -> bool:
    return "*" in target.locator(".jp-InputPrompt").inner_text()


def wait_done(target: Any) -> None:
    """Wait until the cell shows an execution count (``[3]:``), i.e. the kernel finished it."""
    poll_until(lambda: any(ch.isdigit() for ch in target.locator(".jp-InputPrompt").inner_text()), "cell to finish")


def poll_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def stdout_text(target: Any) -> str:
    """The cell's merged stdout output, as rendered ("" before the first chunk)."""
    outputs = target.locator(STDOUT)
    return str(outputs.first.inner_text()) if outputs.count() else ""


# --------------------------------------------------------------------------- tests


def check_quickstart_streams(page: Any, artifacts: Path, prefix: str) -> None:
    """The %%complete cell shows text that grows while the kernel is busy; the final text is r.text.

    Screenshots are ``<prefix>-streaming.png`` and ``<prefix>-final.png``.
    """
    target = cell(page, "%%complete -o r")
    run_cell(page, target)
    samples: list[tuple[bool, int, bool]] = []  # (cell busy, characters shown, footer shown)
    shot = False
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        is_busy = busy(target)
        samples.append((is_busy, len(stdout_text(target)), target.locator(HTML_OUTPUT).count() > 0))
        if is_busy and samples[-1][1] > 60 and not shot:
            target.scroll_into_view_if_needed()
            page.screenshot(path=artifacts / f"{prefix}-streaming.png")
            shot = True
        if not is_busy and samples[-1][2]:
            break
        time.sleep(0.1)
    streaming = [chars for is_busy, chars, footer in samples if is_busy and chars and not footer]
    assert streaming, f"no text appeared while the cell was running: {samples}"
    assert max(streaming) > min(streaming), "the shown text did not grow while the request was running"
    assert samples[-1][2], "the footer never appeared"
    page.screenshot(path=artifacts / f"{prefix}-final.png")

    shown = stdout_text(target)
    printer = cell(page, "print(r.text)")
    run_cell(page, printer)
    wait_done(printer)
    assert stdout_text(printer).rstrip("\n") == shown.rstrip("\n") != ""


def test_quickstart_streams_into_the_cell_before_the_request_finishes(quickstart: Any, artifacts: Path) -> None:
    """In JupyterLab the %%complete cell streams while the kernel is busy; the final text is r.text."""
    check_quickstart_streams(quickstart, artifacts, "quickstart")


def start_panel(page: Any) -> Any:
    """Run the panel cell and wait for its Run button; returns the cell."""
    target = cell(page, "p = vman_magic.panel(")
    run_cell(page, target)
    target.locator("button.widget-button", has_text="Run").wait_for()
    wait_done(target)
    return target


def test_panel_stop_keeps_the_partial_result(quickstart: Any, artifacts: Path) -> None:
    """Run then Stop in the panel: the buttons and status follow, p.result is incomplete with text, heatmap shows it."""
    page = quickstart
    target = start_panel(page)
    run_button = target.locator("button.widget-button", has_text="Run")
    stop_button = target.locator("button.widget-button", has_text="Stop")
    assert stop_button.is_disabled()
    track = target.locator(".widget-slider .slider-container").first.bounding_box()["width"]
    assert track >= 200, f"the temperature slider's track is {track:.0f}px: too short for 0..2 in 0.05 steps"
    run_button.click()
    poll_until(lambda: not stop_button.is_disabled(), "Stop to become enabled")
    assert run_button.is_disabled()
    time.sleep(2)  # let some tokens arrive (about 16 at 8 per second); not a timing assertion
    stop_button.click()
    poll_until(lambda: not run_button.is_disabled(), "Run to become enabled again")
    assert stop_button.is_disabled()
    # said once, in the footer under the text; the status line next to the buttons is empty again
    assert target.locator(f".widget-html:not({PANEL_OUTPUT})", has_text="stopped by you").count() == 0
    assert target.locator(f"{PANEL_OUTPUT} .vman-footer", has_text="stopped by you after").count() == 1
    assert target.locator(".widget-html", has_text="running…").count() == 0

    check = cell(page, "p.result.incomplete")
    run_cell(page, check)
    wait_done(check)
    words = stdout_text(check).split()
    assert words[:2] == ["incomplete:", "True"] and int(words[3]) > 0, words

    target.locator("button", has_text="Show probabilities").click()
    heatmap = target.locator(".widget-html", has_text="probability:")
    heatmap.wait_for()
    assert "incomplete" in heatmap.inner_text()
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1000})  # the panel and its heatmap in one view
    target.locator(LIVE_PANEL).screenshot(path=artifacts / "panel-heatmap.png")


def test_panel_output_shows_the_stream(quickstart: Any, artifacts: Path) -> None:
    """After Run, the panel's output area shows growing text while the request runs; it ends as p.result.text."""
    page = quickstart
    target = start_panel(page)
    stop_button = target.locator("button.widget-button", has_text="Stop")
    live = target.locator(f"{PANEL_OUTPUT} .vman-text")
    target.locator("button.widget-button", has_text="Run").click()
    poll_until(lambda: not stop_button.is_disabled(), "Stop to become enabled")
    try:
        poll_until(lambda: live.count() == 1 and live.inner_text().strip() != "", "text in the panel output")
        first = len(live.inner_text())
        poll_until(lambda: len(live.inner_text()) > first + 20, "the panel output to grow")
        assert not stop_button.is_disabled(), "the text appeared only after the run ended"
        target.scroll_into_view_if_needed()
        page.screenshot(path=artifacts / "panel-streaming.png")
    finally:
        if not stop_button.is_disabled():
            stop_button.click()
    poll_until(lambda: stop_button.is_disabled(), "the run to stop")
    footer = target.locator(f"{PANEL_OUTPUT} .vman-footer")
    footer.wait_for()
    assert "stopped by you after" in footer.inner_text() and "CancelledError" not in footer.inner_text()

    printer = cell(page, PANEL_TEXT_CELL)
    run_cell(page, printer)
    wait_done(printer)
    assert stdout_text(printer).rstrip("\n") == live.inner_text().rstrip("\n") != ""


# --------------------------------------------------------------------------- issue 15: what a class sees


def test_heatmap_chips_are_one_line_and_a_click_pins_the_card(quickstart: Any, artifacts: Path) -> None:
    """--show-probs: every chip (newlines too) is one line high; hovering shows a styled card, a click pins it."""
    page = quickstart
    target = cell(page, "--show-probs")
    run_cell(page, target)
    wait_done(target)
    heatmap = target.locator(".vman-heatmap")
    heatmap.wait_for()
    chips = heatmap.locator("summary.vman-token")
    heights = [chips.nth(i).bounding_box()["height"] for i in range(chips.count())]
    assert len(heights) == 40 and max(heights) <= min(heights) * 1.3, heights
    newline = heatmap.locator("summary.vman-token", has_text="↵").first
    card = newline.locator("xpath=..").locator(".vman-tip")  # the card is the summary's sibling in its <details>
    shown = "e => e.checkVisibility()"
    assert not card.evaluate(shown), "a card shows before any hover or click"
    newline.hover()
    poll_until(lambda: card.evaluate(shown), "the card to show on hover")
    page.mouse.move(5, 5)
    poll_until(lambda: not card.evaluate(shown), "the card to hide when the pointer leaves")
    newline.click()
    page.mouse.move(5, 5)
    assert card.evaluate(shown), "a click pins the card"
    text = card.inner_text()
    assert "'↵'" in text and "p = " in text and "logprob" in text and "top alternatives" in text
    assert card.evaluate("e => getComputedStyle(e).position") == "absolute"  # a card over the text, not in it
    output = target.locator(".jp-OutputArea-output:has(.vman-heatmap)")
    output.scroll_into_view_if_needed()
    page.mouse.wheel(0, 150)  # room under the heatmap for the card
    page.mouse.move(5, 5)
    box, tip = output.bounding_box(), card.bounding_box()
    bottom = max(box["y"] + box["height"], tip["y"] + tip["height"]) + 8
    clip = {"x": box["x"] - 8, "y": box["y"] - 8, "width": box["width"] + 16, "height": bottom - box["y"] + 8}
    page.screenshot(path=artifacts / "heatmap-pinned.png", clip=clip)
    assert card.evaluate(
        "e => document.elementFromPoint(e.getBoundingClientRect().x + 5, e.getBoundingClientRect().bottom - 5)?.closest('.vman-tip') === e"
    )  # not cut off, not covered
    newline.click()
    page.mouse.move(5, 5)
    poll_until(lambda: not card.evaluate(shown), "a second click to unpin the card")


def test_copy_as_code_copies_shows_the_code_framed_and_inserts_below_the_panel(
    quickstart: Any, artifacts: Path
) -> None:
    """ "Copy as code" writes the %%complete cell to the clipboard, says "Copied", frames the code right under
    the button (long lines scroll, never wrap), and "Insert below" puts the cell right after the panel's cell."""
    page = quickstart
    target = start_panel(page)
    button = target.locator("button.vman-code-button", has_text="Copy as code")
    button.click()
    status = target.locator(".vman-code-status")
    poll_until(lambda: "Copied" in status.inner_text(), "the Copied confirmation")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("%%complete --model vman-demo -o completion") and "Return the number of" in copied
    frame = target.locator(".vman-code-frame")
    code = frame.locator("pre.vman-code-text").first
    assert code.inner_text() == copied
    assert code.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"  # scrolls sideways, never breaks a word
    assert frame.evaluate("e => getComputedStyle(e).borderTopStyle") == "solid"
    below, box = button.bounding_box(), frame.bounding_box()
    assert 0 <= box["y"] - (below["y"] + below["height"]) < 40 and abs(box["x"] - below["x"]) < 40
    target.scroll_into_view_if_needed()
    target.locator(LIVE_PANEL).screenshot(path=artifacts / "panel-copy-as-code.png")

    sources = "() => Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell')).map(c => c.querySelector('.jp-InputArea-editor')?.textContent ?? '')"
    before = page.evaluate(sources)
    target.locator("button.vman-code-button", has_text="Insert below").click()
    poll_until(lambda: len(page.evaluate(sources)) == len(before) + 1, "the new cell")
    after = page.evaluate(sources)
    panel_index = next(i for i, text in enumerate(after) if "p = vman_magic.panel(" in text)
    assert after[panel_index + 1].startswith("%%complete --model vman-demo -o completion")
    assert "Inserted" in status.inner_text()


SNAPSHOT_NOTEBOOK = "05-saved-panel.ipynb"
SNAPSHOT_CELLS = [
    "%load_ext vman_magic",
    "%%complete -o r -t 0.6 --seed 3 --max-tokens 20\nReturn the number of",
    "%%complete -n 2 -t 1 --seed 1 --max-tokens 12\nThe default value is",
    "%%complete -o h -t 0.6 --seed 3 --max-tokens 20 --show-probs\nReturn the number of",
    'import vman_magic\np = vman_magic.panel(prompt="The default value is", max_tokens=20, temperature=0.6, seed=3)\np',
]


def test_a_saved_notebook_reopened_shows_a_snapshot_of_the_panel(lab: Jupyter, browser: Any, artifacts: Path) -> None:
    """Run the panel, save, reopen with a new kernel: the panel's snapshot (settings and last result) shows instead
    of "model not found", and the stream, the -n grid and the heatmap still render."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in SNAPSHOT_CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(notebook, lab.root / SNAPSHOT_NOTEBOOK)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(lab.tree(SNAPSHOT_NOTEBOOK) + "&reset")  # only this notebook: no tab restored from other tests
        page.locator(lab.idle).first.wait_for()
        for marker in ("%load_ext", "%%complete -o r", "%%complete -n 2", "%%complete -o h", "p = vman_magic.panel("):
            target = cell(page, marker)
            run_cell(page, target)
            wait_done(target)
        panel = cell(page, "p = vman_magic.panel(")
        panel.locator("button.widget-button", has_text="Run").click()
        footer = panel.locator(f"{PANEL_OUTPUT} .vman-footer")
        footer.wait_for()
        live = panel.locator(f"{PANEL_OUTPUT} .vman-text").inner_text()
        assert live and not panel.locator(".vman-panel-snapshot").is_visible(), (
            "the snapshot shows next to the live panel"
        )
        saved = lab.root / SNAPSHOT_NOTEBOOK
        page.keyboard.press("Control+s")
        poll_until(lambda: html.escape(live.strip()) in _saved_html(saved), "the last run's snapshot in the saved file")
        stream = cell(page, "%%complete -o r").locator(STDOUT).inner_text()
    finally:
        page.close()
    for session in _api(lab, "sessions"):  # shut the kernel down: the widget models die with it
        _api(lab, f"sessions/{session['id']}", method="DELETE")

    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(lab.tree(SNAPSHOT_NOTEBOOK) + "&reset")  # only this notebook: no tab restored from other tests
        page.locator(lab.idle).first.wait_for()
        panel = cell(page, "p = vman_magic.panel(")
        snapshot = panel.locator(".vman-panel-snapshot")
        snapshot.wait_for()
        assert snapshot.is_visible() and snapshot.locator(".vman-text").inner_text() == live
        assert "The default value is" in snapshot.inner_text() and "max_tokens=20" in snapshot.inner_text()
        assert not panel.get_by_text("Error displaying widget").is_visible()
        assert cell(page, "%%complete -o r").locator(STDOUT).inner_text() == stream
        assert cell(page, "-n 2").locator(".vman-grid .vman-choice").count() == 2
        assert cell(page, "--show-probs").locator(".vman-heatmap summary.vman-token").count() == 20
        panel.scroll_into_view_if_needed()
        page.screenshot(path=artifacts / "saved-notebook-snapshot.png")
    finally:
        page.close()


def _saved_html(path: Path) -> str:
    """Every text/html output of the notebook file at ``path``, as saved."""
    notebook = nbformat.read(path, as_version=4)
    return "".join(o.get("data", {}).get("text/html", "") for c in notebook.cells for o in c.get("outputs", []))


def _api(app: Jupyter, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{app.base_url}/api/{path}?token={app.token}", method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = answer.read()
    return json.loads(body) if body else None


# Last in the module: Notebook 7 starts only after the JupyterLab tests ran.
def test_notebook7_quickstart_streams_into_the_cell(notebook7_quickstart: Any, artifacts: Path) -> None:
    """The same in Notebook 7 (``jupyter notebook``, opened at /notebooks/01-quickstart.ipynb)."""
    check_quickstart_streams(notebook7_quickstart, artifacts, "notebook7-quickstart")
