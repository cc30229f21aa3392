"""The Playground panel: ``vman_magic.panel()`` or ``%vman panel``.

An ipywidgets composite to try prompts and parameters without writing code:
model, prompt (with ``{var}`` templating), every sampling parameter, Run and
Stop, the live output, a probability heatmap and "Copy as code". Like the
magic, it only builds a :class:`~vman_magic.CompletionRequest` and hands it to
:class:`~vman_magic.AsyncClient` and the same :class:`~._display.LiveView`; it
never parses magic strings.

Concurrency, in one place:

* **Run button.** The click handler schedules the request as a task on the
  kernel's running event loop and returns at once, so the kernel keeps
  handling comm messages (the Stop click, other widgets) while tokens stream.
* **``Panel.run()``.** Blocks until the result is there. Without a running
  loop (a script, pytest) it is ``asyncio.run``. Inside a notebook cell the
  kernel's loop is already running in this thread, so the request runs on a
  private loop in a worker thread that the caller joins (why not
  ``nest_asyncio``: see :mod:`vman_magic.notebook.panel_thread`).
* **``Panel.stop()``.** Safe from any thread: it cancels the task through
  ``loop.call_soon_threadsafe``; the result keeps the text that arrived and
  is flagged ``incomplete=True``.
* **Live output.** The run is shown by the same :class:`~._display.LiveView`
  as the magic (same coalescing, same escaped HTML), but with a *sink* that
  sets the :attr:`Panel.output` HTML widget's value instead of printing. A
  run outlives the click that started it, and JupyterLab routes captured
  output (``with an_output_widget:``) only while the message that started
  the capture is alive, so printed text from a background task never reaches
  the page; widget state is synced whenever it changes, from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..client.client import AsyncClient
from ..core.config import Secret, as_secret, ensure_server, resolve
from ..core.errors import ValidationError, VmanError
from ..core.heatmap import ProbabilityView
from ..core.kernel import in_kernel
from ..core.models import Completion, CompletionBuilder, CompletionRequest
from ..core.params import PARAMS_BY_NAME
from ..core.template import render
from .display import LiveView, tokens_received
from .pace import paced
from .panel_code import copy_as_code, magic_cell
from .panel_thread import run_in_thread
from .panel_widgets import LOGPROBS_OFF, LOGPROBS_RANGE, WIDGET_PARAMS, CodeSection, ParamControls, message_html

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["Panel", "PanelBusyError", "panel"]

_CONNECTION = ("base_url", "api_key", "model", "prompt", "var", "shell")
_BORDER = "1px solid var(--jp-border-color2, #ddd)"
_RUNNING = message_html("running…", error=False)


def panel(**defaults: Any) -> Panel:
    """Open a Playground panel; ``defaults`` are initial values.

    Accepts ``base_url``, ``api_key``, ``model``, ``prompt``, ``var`` (the
    name the result is stored under, default ``completion``) and any API
    parameter, e.g. ``panel(prompt="Once upon a time", max_tokens=40)``.
    """
    if "api_key" in defaults:  # a verbose traceback shows this frame's locals
        defaults["api_key"] = as_secret(defaults["api_key"])
    return Panel(**defaults)


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
        prompt: str = "",
        var: str = "completion",
        shell: InteractiveShell | None = None,
        **params: Any,
    ) -> None:
        api_key = as_secret(api_key)  # at once, so no repr or traceback of the panel can show it
        super().__init__()
        _check_initial(params)
        self._connection: dict[str, Any] = {"base_url": base_url, "api_key": api_key}
        self._settings = ensure_server(resolve(**self._connection, model=model))  # a face: it lists models at once
        self._shell = shell
        self._extra = {k: v for k, v in params.items() if k not in WIDGET_PARAMS and k != "stream"}
        self.result: Completion | None = None
        self.current: Completion | None = None  # the result being built while a run streams
        self._request: CompletionRequest | None = None
        self._task: asyncio.Task[Completion] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._lock = threading.Lock()
        self._models_task: asyncio.Task[list[str]] | None = None
        self._models_note = ""  # why the model list is missing or empty, shown next to the model box

        self.model = w.Combobox(
            value=self._settings.model or "",
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
        self.show_probabilities = w.ToggleButton(description="Show probabilities", icon="th", layout=fit)
        self.heatmap = w.HTML()
        self._code_section = CodeSection(lambda: self.code, lambda: self._get_shell() is not None, fit)
        self.show_code = self._code_section.toggle
        self.code_view = self._code_section.view
        self.insert_button = self._code_section.insert_button

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
            w.HBox([self.show_probabilities, self.show_code, self.insert_button]),
            self.heatmap,
            self.code_view,
        ]
        self.insert_button.on_click(lambda _button: self.insert_code())
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
        """True while a request is in flight."""
        return self._task is not None and not self._task.done()

    @property
    def magic_code(self) -> str:
        """The ``%%complete`` cell that sends what Run would send now."""
        return magic_cell(self.request, self.prompt.value, var=self.var.value, base_url=self._base_url_flag())

    @property
    def code(self) -> str:
        """:attr:`magic_code` and the equivalent ``complete(...)`` call, as shown by "Copy as code"."""
        return copy_as_code(
            self.request,
            self.prompt.value,
            var=self.var.value,
            base_url=self._base_url_flag(),
            key_given=self._connection["api_key"] is not None,
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

    def _base_url_flag(self) -> str | None:
        """The base URL to spell out in generated code, or None for the demo/default."""
        return None if self._settings.is_demo else self._settings.base_url

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
        if self.show_code.value:
            self._code_section.render()
        return request

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
        cell stops "Run All". After :meth:`stop` it returns the partial result.
        """
        self._check_var()
        request = self.request
        if self.running:
            raise PanelBusyError(
                "the panel is already running a request (started by its Run button): press Stop or call "
                "p.stop() first, or wait for it to finish and read p.result"
            )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._execute(request))
        return run_in_thread(self._execute(request), self.stop)

    def stop(self) -> None:
        """Cancel the running request, keeping the text that arrived; safe from any thread."""
        with self._lock:
            task, loop = self._task, self._loop
            if task is None or loop is None or task.done():
                return
            self._stop_requested = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task.cancel()
        else:
            loop.call_soon_threadsafe(task.cancel)

    def _on_run_click(self, _button: w.Button) -> None:
        """Schedule the run on the kernel's loop; without one (no kernel), run it here."""
        request = None if self.running else self._validate()
        if request is None:
            return
        self.run_button.disabled = True  # before the task starts, so a double click cannot queue two runs
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._run_reporting_errors()
            return
        task = loop.create_task(self._execute(request))
        task.add_done_callback(self._report_task)
        with self._lock:  # running at once, so Stop works even before the task starts
            self._task, self._loop = task, loop
        self.stop_button.disabled = False

    def _run_reporting_errors(self) -> None:
        with contextlib.suppress(VmanError):  # already shown in the status line; a click has no cell to fail
            self.run()

    def _report_task(self, task: asyncio.Task[Completion]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: the error is already shown in the status line
        elif self._task is task:  # stopped before it started: _execute never ran its cleanup
            self._set_running(False)

    async def _execute(self, request: CompletionRequest) -> Completion:
        """One run, on whichever loop is current: the primitive behind Run and ``run()``."""
        this = asyncio.current_task()
        with self._lock:
            if self.running and self._task is not this:
                raise PanelBusyError("a run is already in progress: press Stop or call p.stop() first, or wait for it")
            self._task = this
            self._loop = asyncio.get_running_loop()
            self._stop_requested = False
        self._request = request
        self._set_running(True)
        self.output.value = ""
        view = LiveView(request, sink=self._show_live)
        builder = CompletionBuilder(request)
        self.current = builder.completion
        view.start()
        result: Completion | None = None
        try:
            # the offline demo streams at a readable pace into the panel, as into a cell (see notebook/pace.py)
            settings = paced(ensure_server(resolve(**self._connection, model=request.model)))
            client = AsyncClient(settings=settings)
            try:
                result = await client.run(request, builder, on_update=view.update)
            finally:
                await client.aclose()
        except asyncio.CancelledError:
            result = _partial(builder, None)
            if not self._stop_requested:
                raise
            # the cancellation's message is what the footer under the text shows (see render.incomplete_reason),
            # so the status line next to the buttons stays empty rather than saying it a second time
            result.error = asyncio.CancelledError(f"stopped by you after {tokens_received(view.chunks)}")
            self.status.value = ""
        except VmanError as exc:
            result = exc.partial or _partial(builder, exc)
            self.status.value = message_html(f"{type(exc).__name__}: {exc}")
            raise
        except BaseException as exc:  # KeyboardInterrupt in a script: keep the partial text too
            result = _partial(builder, exc)
            raise
        finally:
            final = result if result is not None else builder.completion
            view.finish(final)
            self._store(final)
            self.current = None
            self._set_running(False)
        return result

    def _show_live(self, html_view: str) -> None:
        """The live view's sink: the whole view as escaped HTML, coalesced by :class:`LiveView`."""
        # ipywidgets' HTML content has a 28px line height (one inline widget row); text wants its own
        self.output.value = f'<div style="line-height:1.4">{html_view}</div>'

    def _set_running(self, running: bool) -> None:
        self.stop_button.disabled = not running
        self.run_button.disabled = running
        if running:
            self.status.value = _RUNNING
        else:
            with self._lock:
                self._task = None
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

    # -- models, heatmap, code ------------------------------------------
    def refresh_models(self) -> list[str]:
        """Fetch ``GET /v1/models`` now and fill the model list; [] with a message on failure."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._fetch_models())
        return run_in_thread(self._fetch_models(), lambda: None)

    def _start_model_fetch(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh_models()
            return
        self._models_task = loop.create_task(self._fetch_models())  # filled once this cell is done

    async def _fetch_models(self) -> list[str]:
        settings = self._settings
        client = AsyncClient(**self._connection, max_retries=0)
        try:
            models = sorted(await client.models())
        except VmanError as exc:
            self._models_note = message_html(
                f"cannot list models at {settings.base_url} ({exc}); type a model id, "
                "or check base_url with %vman config"
            )
            self._validate()
            return []
        finally:
            await client.aclose()
        self._models_note = "" if models else message_html("the server lists no models; type an id", error=False)
        self.model.options = models
        if not self.model.value and models:
            self.model.value = models[0]
        self._validate()
        return models

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
        """Put the ``%%complete`` cell in a new cell via ``set_next_input``.

        Kernels deliver that with the reply to an executed cell, so from the
        button the new cell appears when the next cell runs; calling
        ``p.insert_code()`` in a cell inserts it right below.
        """
        shell = self._get_shell()
        if shell is None:
            raise RuntimeError("inserting a cell needs IPython; copy p.code instead")
        shell.set_next_input(self.magic_code)
        self.status.value = message_html("the new cell appears below the next cell you run", error=False)

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
