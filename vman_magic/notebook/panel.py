"""The Playground panel: ``vman_magic.panel()`` or ``%vman panel``.

An ipywidgets composite to try prompts and parameters without writing code:
model, prompt (with ``{var}`` templating), every sampling parameter, Run and
Stop, the live output, a probability heatmap and "Copy as code". Like the
magic, it only builds a :class:`~vman_magic.CompletionRequest` and hands it to
:class:`~vman_magic.AsyncClient` and the same :class:`~._display.LiveView`; it
never parses magic strings.

Settings: :attr:`Panel.settings` resolves the panel's own arguments over the
current layers for every run *and* for Copy as code, so a ``%vman base_url``
after the panel was built moves both together: the code shown is the code
that the next run sends. A run gets that one :class:`~vman_magic.Settings`.

Concurrency, in one place:

* **State.** Whether a run is in progress, its task and loop, a pending
  stop and the result growing during a run are read and written under one
  lock, by whichever thread.
* **Widgets.** Only the thread that started a run changes widgets (the
  rule of :mod:`vman_magic.client.runner`, which batches follow too); code on
  another thread queues the change for that thread.
* **Run button.** The click handler schedules the request as a task on the
  kernel's running event loop and returns at once, so the kernel keeps
  handling comm messages (the Stop click, other widgets) while tokens stream.
* **``Panel.run()``.** Blocks until the result is there. Without a running
  loop (a script, pytest) it is ``asyncio.run``. Inside a notebook cell the
  kernel's loop is already running in this thread, so the request runs on
  :func:`~vman_magic.client.runner.run_in_worker`'s private loop in a worker
  thread, while this thread applies the queued widget changes.
* **``Panel.stop()``.** Safe from any thread, also while ``run()`` blocks: it
  cancels the task through ``loop.call_soon_threadsafe`` (or, before the
  request is sent, makes the run stop at once); the result keeps the text
  that arrived and is flagged ``incomplete=True``.
* **Live output.** The run is shown by the same :class:`~._display.LiveView`
  as the magic (same coalescing, same escaped HTML), but with a *sink* that
  sets the :attr:`Panel.output` HTML widget's value instead of printing. A
  run outlives the click that started it, and JupyterLab routes captured
  output (``with an_output_widget:``) only while the message that started
  the capture is alive, so printed text from a background task never reaches
  the page; widget state is synced whenever it changes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..client.client import AsyncClient
from ..client.runner import run_in_worker
from ..core.config import Secret, Settings, as_secret, ensure_server, resolve
from ..core.errors import ValidationError, VmanError
from ..core.heatmap import ProbabilityView
from ..core.kernel import in_kernel
from ..core.models import Completion, CompletionBuilder, CompletionRequest
from ..core.params import PARAMS_BY_NAME
from ..core.template import render
from .code_box import CodeBox
from .display import LiveView, tokens_received
from .pace import paced
from .panel_code import copy_as_code, magic_cell, python_code
from .panel_snapshot import LIVE_STYLE, PANEL_CLASS, snapshot_bundle
from .panel_widgets import LOGPROBS_OFF, LOGPROBS_RANGE, WIDGET_PARAMS, ParamControls, message_html

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["Panel", "PanelBusyError", "panel"]

_CONNECTION = ("base_url", "api_key", "model", "timeout", "max_retries", "prompt", "var", "shell")
_BORDER = "1px solid var(--jp-border-color2, #ddd)"
_RUNNING = message_html("running…", error=False)


def panel(
    *,
    base_url: str | None = None,
    api_key: str | Secret | None = None,
    model: str | None = None,
    timeout: Any = None,
    max_retries: int | None = None,
    prompt: str = "",
    var: str = "completion",
    **params: Any,
) -> Panel:
    """Open a Playground panel; the arguments are its initial values.

    ``base_url``, ``api_key``, ``model``, ``timeout`` and ``max_retries``
    override the configured settings for this panel; ``prompt``; ``var`` is
    the name the result is stored under; any API parameter, e.g.
    ``panel(prompt="Once upon a time", max_tokens=40)``.
    """
    api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
    return Panel(
        base_url=base_url, api_key=api_key, model=model, timeout=timeout, max_retries=max_retries, prompt=prompt,
        var=var, **params,
    )  # fmt: skip


class Panel(w.VBox):  # type: ignore[misc]
    """The Playground widget; see the module docstring for how runs are scheduled.

    Programmatic control mirrors the buttons: :attr:`params`, :meth:`run`,
    :meth:`stop`, :attr:`result` (the last run), :attr:`current` (the result
    growing during a run), :attr:`request`, :attr:`code`.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        model: str | None = None,
        timeout: Any = None,
        max_retries: int | None = None,
        prompt: str = "",
        var: str = "completion",
        shell: InteractiveShell | None = None,
        **params: Any,
    ) -> None:
        api_key = as_secret(api_key)  # first: no repr, traceback or frame of the panel may show the key
        super().__init__()
        _check_initial(params)
        self._connection: dict[str, Any] = {
            "base_url": base_url, "api_key": api_key, "model": model, "timeout": timeout, "max_retries": max_retries,
        }  # fmt: skip
        initial = self.settings  # a bad base URL fails here, when the panel is built
        self._shell = shell
        self._extra = {k: v for k, v in params.items() if k not in WIDGET_PARAMS and k != "stream"}
        self.result: Completion | None = None
        self._request: CompletionRequest | None = None
        # the run's state, shared by the thread that started it, the worker, and whoever calls stop();
        # read and written only under _lock
        self._lock = threading.Lock()
        self._running = False
        self._stop_requested = False
        self._task: asyncio.Task[Completion] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: Completion | None = None
        # widgets are changed only by the thread that started the run; other threads queue the change
        self._ui_thread: int | None = None
        self._ui_pending: collections.deque[Callable[[], None]] = collections.deque()
        self._models_task: asyncio.Task[None] | None = None
        self._models_note = ""  # why the model list is missing or empty, shown next to the model box

        self.model = w.Combobox(
            value=initial.model or "",
            placeholder="model id",
            description="model",
            ensure_option=False,
            style={"description_width": "130px"},
        )
        self.model_message = w.HTML()
        self.refresh_button = w.Button(icon="refresh", tooltip="fetch the model list again", layout={"width": "36px"})
        self.prompt = w.Textarea(
            value=prompt,
            placeholder="prompt; {name} inserts a notebook variable",
            layout={"width": "auto", "height": "120px"},  # stretched by the VBox; 100% + margins would overflow
        )
        self.prompt_message = w.HTML()
        self.controls = ParamControls(params, self._validate)
        self.stream = w.Checkbox(value=params.get("stream", True), description="stream", indent=False)
        self.var = w.Text(value=var, description="store as", style={"description_width": "70px"})
        self.var_message = w.HTML()
        fit = {"width": "auto", "min_width": "90px"}  # as wide as the label; the default cuts long ones off
        self.run_button = w.Button(description="Run", button_style="primary", icon="play", layout=fit)
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True, layout=fit)
        self.status = w.HTML()
        self.output = w.HTML(layout={"width": "auto", "min_height": "2em", "border": _BORDER, "padding": "2px 6px"})
        self.output.add_class("vman-live")
        self.show_probabilities = w.ToggleButton(
            description="Show probabilities",
            icon="th",
            layout={**fit, "flex": "0 0 auto"},  # never squeezed
        )
        self.heatmap = w.HTML()
        # copies, frames and inserts in the browser; its anchor tells it which output is this panel's
        self.code_box = CodeBox(anchor=self.model_id, on_insert=self._insert_from_button)
        self._snapshot_id = uuid.uuid4().hex  # the saved notebook's stand-in for this panel (see panel_snapshot)
        self._snapshot_shown = False

        for widget in (self.model, self.prompt, self.stream, self.var):
            widget.observe(lambda _change: self._validate(), names="value")
        self.show_probabilities.observe(lambda _change: self._render_heatmap(), names="value")
        self.controls.widgets["logprobs"].observe(lambda _change: self._update_probability_toggle(), names="value")
        self.run_button.on_click(self._on_run_click)
        self.stop_button.on_click(lambda _button: self.stop())
        self.refresh_button.on_click(lambda _button: self._start_model_fetch())
        extra = ", ".join(f"{k}={v!r}" for k, v in self._extra.items())
        self.children = [
            w.HBox([self.model, self.refresh_button, self.model_message]),
            self.prompt,
            self.prompt_message,
            w.GridBox(self.controls.rows(), layout={"grid_template_columns": "repeat(2, 50%)"}),
            w.HBox([self.stream, self.var, self.var_message]),
            *([w.HTML(message_html(f"also sent: {extra}", error=False))] if extra else []),
            w.HBox([self.run_button, self.stop_button, self.status]),
            self.output,
            w.HBox([self.show_probabilities, self.code_box], layout={"align_items": "flex-start"}),
            self.heatmap,
            w.HTML(LIVE_STYLE, layout={"display": "none"}),  # hides the snapshot while this panel is on the page
        ]
        self.add_class(PANEL_CLASS)
        self._update_probability_toggle()
        self._validate()
        self._start_model_fetch()

    # -- state ------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """The API parameters the next run sends (defaults left out), plus ``stream``."""
        values = {**self._extra, **self.controls.values()}
        return {**values, "stream": self.stream.value}

    @property
    def request(self) -> CompletionRequest:
        """The request Run would send now; raises ``ValidationError`` if invalid."""
        values = {**self._extra, **self.controls.values()}
        return CompletionRequest.build(
            self.model.value.strip(), self._prompt_text(), stream=self.stream.value, **values
        )

    @property
    def running(self) -> bool:
        """True from the moment a run is started until its result is stored."""
        with self._lock:
            return self._running

    @property
    def current(self) -> Completion | None:
        """The result being built while a run streams (None between runs)."""
        with self._lock:
            return self._current

    @property
    def magic_code(self) -> str:
        """The ``%%complete`` cell that sends what Run would send now, to where Run would send it."""
        return magic_cell(
            self.request, self.prompt.value, var=self.var.value, base_url=self._base_url_flag(self.settings)
        )

    @property
    def code(self) -> str:
        """:attr:`magic_code` and the equivalent ``complete(...)`` call, as shown by "Copy as code"."""
        settings = self.settings
        return copy_as_code(
            self.request,
            self.prompt.value,
            var=self.var.value,
            base_url=self._base_url_flag(settings),
            key_given=settings.api_key is not None and settings.sources.get("api_key") == "argument",
        )

    def _prompt_text(self) -> str:
        shell = self._get_shell()
        if shell is None:
            return str(self.prompt.value)
        return str(render(self.prompt.value, shell.user_ns).text)

    def _get_shell(self) -> InteractiveShell | None:
        if self._shell is None:
            from IPython.core.getipython import get_ipython

            self._shell = get_ipython()  # type: ignore[no-untyped-call, unused-ignore]
        return self._shell

    @property
    def settings(self) -> Settings:
        """The settings the next run uses: this panel's arguments over the current layers.

        Resolved again for every run and for Copy as code (no side effects),
        so a ``%vman base_url`` or ``%vman key`` after the panel was built
        applies to both alike: the code shown is the code of the run.
        """
        return resolve(**self._connection)

    def _base_url_flag(self, settings: Settings) -> str | None:
        """The base URL to spell out in generated code, or None for the demo/default."""
        return None if settings.is_demo else settings.base_url

    # -- validation -------------------------------------------------------
    def _validate(self) -> CompletionRequest | None:
        """Build the request on every change; show what is wrong next to its widget."""
        error: ValidationError | None = None
        request: CompletionRequest | None = None
        try:
            self._check_var()
            request = self.request
        except ValidationError as exc:
            error = exc
        self.controls.show_error(error)
        param = error.param if error is not None else None
        self.model_message.value = message_html(str(error)) if param == "model" else self._model_note()
        self.prompt_message.value = message_html(str(error)) if param == "prompt" else ""
        self.var_message.value = message_html(str(error)) if param == "var" else ""
        if param == "stream" or (param and param not in PARAMS_BY_NAME and param not in _CONNECTION):
            self.status.value = message_html(str(error))
        elif not self.running:
            self.status.value = ""
        self.run_button.disabled = error is not None or self.running
        self.run_button.tooltip = str(error) if error else "send the request"
        self._render_code()
        return request

    def _render_code(self) -> None:
        """Keep "Copy as code" current, so a click copies at once what Run would send."""
        try:
            request = self.request
        except ValidationError as exc:
            self.code_box.error = f"fix the settings first: {exc}"
            return
        settings = self.settings  # the settings a run would use now, as for p.code
        base_url = self._base_url_flag(settings)
        self.code_box.cell = magic_cell(request, self.prompt.value, var=self.var.value, base_url=base_url)
        key_given = settings.api_key is not None and settings.sources.get("api_key") == "argument"
        self.code_box.python = python_code(request, self.prompt.value, base_url=base_url, key_given=key_given)
        self.code_box.error = ""

    def _check_var(self) -> None:
        name = self.var.value.strip()
        if not name.isidentifier():
            raise ValidationError(
                f"store as must be a Python variable name, got {name!r}: use letters, digits and _", param="var"
            )

    # -- running ----------------------------------------------------------
    def run(self) -> Completion:
        """Send the current request and block until it ends; returns the :class:`Completion`.

        Raises ``ValidationError`` for invalid settings (nothing is sent) and
        the client's errors after storing the partial result, so a failing
        cell stops "Run All". After :meth:`stop` (from a button click or any
        other thread) it returns the partial result.

        In a notebook cell the request runs on
        :func:`~vman_magic.client.runner.run_in_worker`'s worker thread, while
        this thread applies the widget changes; the kernel's interrupt stops
        the run and is raised again. A click on Stop is a message to the
        kernel, which handles it only once the cell finishes: while ``run()``
        blocks, stop it with the interrupt, or from another thread with
        :meth:`stop`; Run (the button) never blocks.
        """
        self._check_var()
        request = self.request
        settings = ensure_server(self.settings)
        self._claim()
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a script, or pytest: this thread runs the loop and owns the widgets
            return asyncio.run(self._execute(request, settings))
        return run_in_worker(self._execute(request, settings), tick=self._apply_ui, on_interrupt=self.stop)

    def stop(self) -> None:
        """Cancel the running request, keeping the text that arrived; safe from any thread."""
        with self._lock:
            if not self._running:
                return
            self._stop_requested = True  # a run that has not started sending yet sees this
            task, loop = self._task, self._loop
        if task is None or loop is None or task.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task.cancel()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the run is over
                loop.call_soon_threadsafe(task.cancel)

    def _claim(self) -> None:
        """Mark a run as started (one at a time); the calling thread owns the widgets until it ends."""
        with self._lock:
            if self._running:
                raise PanelBusyError(
                    "the panel is already running a request (started by its Run button): press Stop or call "
                    "p.stop() first, or wait for it to finish and read p.result"
                )
            self._running, self._stop_requested = True, False
            self._task = self._loop = None
            self._ui_thread = threading.get_ident()

    def _on_run_click(self, _button: w.Button) -> None:
        """Schedule the run on the kernel's loop; without one (no kernel), run it here."""
        request = None if self.running else self._validate()
        if request is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            with contextlib.suppress(VmanError):  # already shown in the status line; a click has no cell to fail
                self.run()
            return
        try:
            settings = ensure_server(self.settings)
            self._claim()
        except VmanError as exc:
            self.status.value = message_html(str(exc))
            return
        self.run_button.disabled = True  # before the task starts, so a double click cannot queue two runs
        task = asyncio.get_running_loop().create_task(self._execute(request, settings))
        task.add_done_callback(self._report_task)
        self.stop_button.disabled = False

    def _report_task(self, task: asyncio.Task[Completion]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: the error is already shown in the status line
        elif self.running:  # stopped before it started: _execute never ran its cleanup
            self._release()
            self._set_running(False)

    def _ui(self, change: Callable[[], None]) -> None:
        """Change widgets now on the run's own thread; from another thread, queue it for that thread."""
        if self._ui_thread in (None, threading.get_ident()):
            change()
        else:
            self._ui_pending.append(change)

    def _apply_ui(self) -> None:
        """The run's thread, between waits: apply the widget changes the worker queued, in order."""
        while self._ui_pending:
            self._ui_pending.popleft()()

    def _release(self) -> None:
        with self._lock:
            self._running = False
            self._task = self._loop = None
            self._current = None

    async def _execute(self, request: CompletionRequest, settings: Settings) -> Completion:
        """One run, on whichever loop is current: the primitive behind Run and ``run()``.

        Network work only; every widget change goes through :meth:`_ui`.
        """
        builder = CompletionBuilder(request)
        with self._lock:
            self._task, self._loop = asyncio.current_task(), asyncio.get_running_loop()
            self._current = builder.completion
            stopped_early = self._stop_requested
        self._request = request
        self._ui(lambda: self._set_running(True))
        self._ui(lambda: setattr(self.output, "value", ""))
        view = LiveView(request, sink=self._show_live)
        view.start()
        result: Completion | None = None
        try:
            if stopped_early:
                raise asyncio.CancelledError
            # the offline demo streams at a readable pace into the panel, as into a cell (see notebook/pace.py)
            async with AsyncClient(settings=paced(settings)) as client:
                result = await client.run(request, builder, on_update=view.update)
        except asyncio.CancelledError:
            result = _partial(builder, None)
            with self._lock:
                stopped = self._stop_requested
            if not stopped:
                raise
            # the cancellation's message is what the footer under the text shows (see render.incomplete_reason),
            # so the status line next to the buttons stays empty rather than saying it a second time
            result.error = asyncio.CancelledError(f"stopped by you after {tokens_received(view.chunks)}")
            self._ui(lambda: setattr(self.status, "value", ""))
        except VmanError as exc:
            result = exc.partial or _partial(builder, exc)
            status = message_html(f"{type(exc).__name__}: {exc}")
            self._ui(lambda: setattr(self.status, "value", status))
            raise
        except BaseException as exc:  # KeyboardInterrupt in a script: keep the partial text too
            result = _partial(builder, exc)
            raise
        finally:
            final = result if result is not None else builder.completion
            view.finish(final)
            self._release()
            self._ui(lambda: self._store(final))
            self._ui(lambda: self._set_running(False))
        return result

    def _show_live(self, html_view: str) -> None:
        """The live view's sink: the whole view as escaped HTML, coalesced by :class:`LiveView`."""
        # ipywidgets' HTML content has a 28px line height (one inline widget row); text wants its own
        value = f'<div style="line-height:1.4">{html_view}</div>'
        self._ui(lambda: setattr(self.output, "value", value))

    def _set_running(self, running: bool) -> None:
        self.stop_button.disabled = not running
        self.run_button.disabled = running
        if running:
            self.status.value = _RUNNING
        else:
            self._validate_keep_status()

    def _validate_keep_status(self) -> None:
        """Re-validate after a run, keeping an error the run put in the status line (but never "running…")."""
        status = self.status.value
        self._validate()
        if not self.status.value and status != _RUNNING:
            self.status.value = status

    def _store(self, result: Completion) -> None:
        self.result = result
        shell = self._get_shell()
        if shell is not None:
            shell.user_ns[self.var.value.strip()] = result
            shell.user_ns["_completion"] = result
        self._update_probability_toggle()
        self._render_heatmap()
        self._update_snapshot()

    # -- models, heatmap, code ------------------------------------------
    def refresh_models(self) -> list[str]:
        """Fetch ``GET /v1/models`` now and fill the model list; [] with a message on failure."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            models, problem = asyncio.run(self._list_models())
        else:
            models, problem = run_in_worker(self._list_models())
        self._show_models(models, problem)
        return models

    def _start_model_fetch(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh_models()
            return

        async def fetch_and_show() -> None:  # on the kernel's loop, the widgets' own thread
            self._show_models(*await self._list_models())

        self._models_task = loop.create_task(fetch_and_show())  # filled once this cell is done

    async def _list_models(self) -> tuple[list[str], str | None]:
        """The server's model ids, or [] and what went wrong; touches no widget."""
        try:
            settings = ensure_server(self.settings)
            async with AsyncClient(settings=replace(settings, max_retries=0)) as client:
                return sorted(await client.models()), None
        except VmanError as exc:
            where = self.settings.base_url or "the demo server"
            return [], f"cannot list models at {where} ({exc}); type a model id, or check base_url with %vman config"

    def _show_models(self, models: list[str], problem: str | None) -> None:
        if problem is not None:
            self._models_note = message_html(problem)
        else:
            self._models_note = "" if models else message_html("the server lists no models; type an id", error=False)
            self.model.options = models
            if not self.model.value and models:
                self.model.value = models[0]
        self._validate()

    def _model_note(self) -> str:
        """What to say next to a valid model id: the model list failed, or the id is not in it.

        An id the server does not list is only a warning (a gateway may serve
        models it does not list), but it comes before Run, not as a 404 after.
        """
        typed = self.model.value.strip()
        listed = list(self.model.options)
        if typed and listed and typed not in listed:
            shown = ", ".join(listed[:5]) + (", ..." if len(listed) > 5 else "")
            return message_html(f"{typed!r} is not among the server's models ({shown}): Run will likely fail with 404")
        return self._models_note

    def _update_probability_toggle(self) -> None:
        """ "Show probabilities" is usable once there are probabilities to show, or the next run asks for them."""
        have = self.result is not None and any(ch.logprobs is not None for ch in self.result.choices)
        asked = self.controls.widgets["logprobs"].value != LOGPROBS_OFF
        self.show_probabilities.disabled = not (have or asked)
        self.show_probabilities.tooltip = (
            "colour every token by its probability; click a token to pin its alternatives"
            if have or asked
            else f"set logprobs to {LOGPROBS_RANGE} and Run: the heatmap needs the server's token probabilities"
        )

    def _render_heatmap(self) -> None:
        if self.show_probabilities.value and self.result is not None:
            self.heatmap.value = ProbabilityView(self.result).html
        else:
            self.heatmap.value = ""

    def insert_code(self) -> None:
        """Put the ``%%complete`` cell in a new cell via ``set_next_input`` (from code: ``p.insert_code()``).

        Kernels deliver that with the reply to an executed cell, so called in a
        cell it inserts right below that cell. The "Insert below" button does
        better in JupyterLab and Notebook 7: it inserts below the panel at once,
        in the browser (see :mod:`vman_magic.notebook.code_box`).
        """
        shell = self._get_shell()
        if shell is None:
            raise RuntimeError("inserting a cell needs IPython; copy p.code instead")
        shell.set_next_input(self.magic_code)

    def _insert_from_button(self) -> None:
        """ "Insert below" where the front end has no notebook model to insert into: the kernel's way."""
        self.insert_code()
        self.status.value = message_html("the new cell appears below the next cell you run", error=False)

    # -- the saved notebook's snapshot -----------------------------------
    def _snapshot(self) -> dict[str, str]:
        """The panel as static HTML: the settings of the last run (or the current ones) and its result."""
        ran = self.result.request if self.result is not None else None
        if ran is not None:
            params: dict[str, Any] = {**ran.params(), "stream": ran.stream}
            model = ran.model
        else:
            try:
                params = self.params
            except ValidationError:
                params = {}
            model = self.model.value.strip()
        return snapshot_bundle(
            model=model, prompt=self.prompt.value, params=params, var=self.var.value, result=self.result
        )

    def _update_snapshot(self) -> None:
        """Replace the displayed snapshot after a run, so a saved notebook holds the last result."""
        if self._snapshot_shown:
            from IPython.display import update_display

            update_display(self._snapshot(), display_id=self._snapshot_id, raw=True)  # type: ignore[no-untyped-call, unused-ignore]

    def _ipython_display_(self) -> None:
        """In a kernel: the snapshot, then the live widget (two outputs); elsewhere the one-line description."""
        from IPython.display import display

        if not in_kernel():
            print(self._repr_mimebundle_()["text/plain"])
            return
        display(self._snapshot(), raw=True, display_id=self._snapshot_id)  # type: ignore[no-untyped-call, unused-ignore]
        self._snapshot_shown = True
        display(self._repr_mimebundle_(), raw=True)  # type: ignore[no-untyped-call, unused-ignore]

    # -- display without a front end -------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The widget view in a kernel; elsewhere (terminal IPython, a script) one line instead.

        The ``text/plain`` line also replaces the widget repr in a kernel, so
        front ends without ipywidgets (and ``nbconvert`` outputs) show it.
        """
        bundle: dict[str, Any] = {}
        if in_kernel():
            bundle.update(super()._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = (
            "vman-magic Playground panel: needs a Jupyter front end with ipywidgets; "
            "use p.params, p.run(), p.stop() and p.result from code"
        )
        return bundle


class PanelBusyError(VmanError):
    """``p.run()`` while another run of the same panel is still going."""


def _partial(builder: CompletionBuilder, error: BaseException | None) -> Completion:
    """The builder's result flagged incomplete (once: the client may have done it)."""
    if builder.completion.incomplete:
        return builder.completion
    return builder.fail(error)


def _check_initial(params: dict[str, Any]) -> None:
    """Reject unknown names and bad values of ``panel(**params)`` one at a time.

    Combinations (``best_of`` with streaming, ...) are not checked here: the
    panel shows them inline, where the user can fix them.
    """
    for name, value in params.items():
        if name == "stream":
            continue
        CompletionRequest.build("-", "", stream=name == "stream_options", **{name: value})
