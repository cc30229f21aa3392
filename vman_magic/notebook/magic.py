"""``%%complete``, ``%complete`` and ``%vman``: the notebook face of the client.

The magic only translates: flags and the cell become a
:class:`~vman_magic.CompletionRequest` (validated by the model layer, whose
message becomes a short ``UsageError``), the client runs it with a
:class:`~vman_magic.notebook.display.LiveView` as ``on_update``, and the result lands
in ``_completion`` (and ``-o NAME``) *before* any error is raised, so text that
arrived is never lost. The flags are generated from ``_params.PARAMS`` (in
:mod:`vman_magic.notebook.flags`), so a help text or a range cannot drift from
the API layer.

Failures make the cell fail (Run All stops) but show one line, not a
traceback through this module: the exception gets a ``_render_traceback_``,
which IPython and ipykernel use instead of the formatted traceback.
"""

from __future__ import annotations

import ast
import getpass
import json
import keyword
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from traitlets import Float, Int, Unicode

from ..core import config as _config
from ..core.errors import ConfigurationError, ValidationError, VmanError
from ..core.models import Completion, CompletionBuilder, CompletionRequest
from ..core.params import PARAMS
from ..core.template import Rendered, render
from ..demo.launch import demo_running
from .display import LiveView, tokens_received
from .flags import complete_arguments, parse_flags, split_line
from .messages import require_model, shorten, show_demo_notice
from .pace import paced, parse_tokens_per_second, set_tokens_per_second, tokens_per_second

if TYPE_CHECKING:
    from ..client.client import Client

__all__ = ["VmanMagic", "load_ipython_extension", "unload_ipython_extension"]

SHOW_PROBS_LOGPROBS = 5  # what --show-probs asks for when --logprobs is not given

_VMAN_HELP = """\
%vman config          effective settings and where each came from (the key only as set/not set)
%vman models          models offered by the server
%vman key             enter the API key at a hidden prompt (kept for this session only)
%vman base_url URL    use this server for the session, e.g. https://api.example.com/v1
%vman model NAME      default model for the session
%vman demo [--tokens-per-second N]
                      switch back to the offline demo model; cells and the panel stream at N tokens/s
                      (default 25, 0 = full speed; batches always run at full speed)
%vman panel [PROMPT]  open the Playground panel
%vman history [WORDS] [-m MODEL] [-n N]   recorded completions, newest first (WORDS: search)
%vman history on|off  record completions in the local history for this session, or not
%vman history --clear delete the history (asks first; --yes does not)
%vman cache on|off    answer repeated requests from the history (like --cache on every call)
%vman help            this text"""


@magics_class
class VmanMagic(Magics):
    """The magics; traitlets feed the IPython-config settings layer.

    ``%config VmanMagic.model = "..."`` (or ``c.VmanMagic.model`` in
    ``ipython_config.py``) sets a default that ``%vman`` and flags override.
    """

    base_url = Unicode("", help="Default server, e.g. https://api.example.com/v1.").tag(config=True)
    model = Unicode("", help="Default model id.").tag(config=True)
    timeout = Float(None, allow_none=True, help="Default read timeout in seconds.").tag(config=True)
    max_retries = Int(None, allow_none=True, help="Retries for connection errors, 429 and 5xx.").tag(config=True)
    default_max_tokens = Int(
        None, allow_none=True, help="max_tokens when --max-tokens is not given (None: the server's default)."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        self._client: Client | None = None
        self._client_key: tuple[Any, ...] = ()

    @property
    def _user_ns(self) -> dict[str, Any]:
        assert self.shell is not None, "VmanMagic is registered with a shell"
        return self.shell.user_ns  # type: ignore[no-any-return]

    def _sync_config(self) -> None:
        """Copy the traitlets into the config layer (``%config`` may have changed them)."""
        _config.set_ipython_config(
            {"base_url": self.base_url, "model": self.model, "timeout": self.timeout, "max_retries": self.max_retries}
        )

    # -- %%complete ------------------------------------------------------------
    @no_var_expand  # type: ignore[untyped-decorator, unused-ignore]
    @complete_arguments
    @line_cell_magic  # type: ignore[untyped-decorator, unused-ignore]
    def complete(self, line: str, cell: str | None = None) -> Any:
        """Complete the cell (or the rest of the line) with the Completions API.

        The result goes to ``_completion`` and, with ``-o NAME``, to ``NAME``;
        the line form also returns it, as ``%timeit -o`` does:
        ``x = %complete -t 0 Once upon a time``.
        ``{name}`` in the prompt inserts a variable (``{row.title}``,
        ``{items[0]}``, ``{x:.2f}``); other braces stay as written, ``{{``
        is a literal brace. In the line form, flags come first and each takes
        one value (repeat ``--stop`` for several): ``%complete -t 0 Once upon
        a time``; ``--`` ends the flags (``%complete -n 2 -- -1 is``).

        Many prompts: ``--over NAME`` runs the cell per item of a list
        (``{item}``, ``{index}``) or per row of a DataFrame (``{column}``)
        with a progress bar; ``--sweep temperature=0,0.7,1.4`` compares
        settings side by side::

            %%complete --over questions --max-tokens 30 -o answers
            Q: {item}
            A:
        """
        whole_line = line
        if cell is None:
            line, prompt = split_line(line, self.complete.parser)
        else:
            prompt = cell.rstrip("\n")
        args = parse_flags(self.complete.parser, line)
        if args.output is not None and (not args.output.isidentifier() or keyword.iskeyword(args.output)):
            raise UsageError(
                f"-o needs a variable name, got {args.output!r}: letters, digits and _, "
                "not starting with a digit and not a Python keyword, e.g. -o result"
            )
        if not prompt.strip():
            raise UsageError("the prompt is empty: write it in the cell under %%complete, or after the flags")
        self._sync_config()
        try:  # the cell's one Settings: resolved here, passed down, never rebuilt
            settings = _config.resolve(base_url=args.base_url, model=args.model, timeout=args.timeout)
        except ConfigurationError as exc:
            raise UsageError(str(exc)) from None
        params = {s.name: getattr(args, s.name) for s in PARAMS if getattr(args, s.name, None) is not None}
        if params.get("max_tokens") is None and self.default_max_tokens is not None:
            params["max_tokens"] = self.default_max_tokens
        if args.show_probs and params.get("logprobs") is None:
            params["logprobs"] = SHOW_PROBS_LOGPROBS
        if args.over is None and not args.sweep and (args.rpm is not None or args.tpm is not None):
            raise UsageError("--rpm and --tpm pace many requests: use them with --over or --sweep, or drop them")
        if args.over is not None or args.sweep:
            from .magic_batch import run_batch  # imported on use: %load_ext stays cheap

            result = run_batch(self._user_ns, args, prompt, params, settings)
            return self._line_result(result, cell, whole_line)
        rendered: Rendered | None = None
        if not args.no_template:
            try:
                rendered = render(prompt, self._user_ns)
            except ValidationError as exc:
                raise UsageError(str(exc)) from None
            prompt = rendered.text
        try:
            request = CompletionRequest.build(require_model(settings), prompt, stream=not args.no_stream, **params)
        except (ValidationError, ConfigurationError) as exc:
            raise UsageError(str(exc)) from None
        if args.dry_run:
            _print_dry_run(request, settings.base_url, rendered)
            return
        settings = _config.ensure_server(settings)  # about to send: the demo starts here, if nothing is configured
        if settings.is_demo:
            show_demo_notice()
        try:  # the offline demo streams at a readable pace into a cell (batches never ask for it)
            settings = paced(settings)
        except ConfigurationError as exc:
            raise UsageError(str(exc)) from None
        completion = self._run(request, settings, args.output, args.cache)
        if args.show_probs:
            from IPython.display import display

            display(completion.show_probabilities())  # type: ignore[no-untyped-call]
        return self._line_result(completion, cell, whole_line)

    def _line_result(self, value: Any, cell: str | None, line: str) -> Any:
        """What the magic returns: the result in the line form (``x = %complete ...``), None for a cell.

        Except when IPython is about to display the returned value itself (a
        bare ``%complete ...`` as a cell's last line): the text was streamed
        into the cell already, and would be shown a second time. The value is
        in ``_completion`` (and ``-o NAME``) either way.
        """
        if cell is not None or _displayed_by_ipython(self.shell, line):
            return None
        return value

    def _client_for(self, settings: _config.Settings) -> Client:
        """One connection pool while the connection settings stay the same (no new TLS handshake per cell)."""
        key = (settings.base_url, settings.api_key, settings.timeout, settings.max_retries)
        if self._client is None or key != self._client_key:
            from ..client.client import Client

            self.close()
            self._client = Client(settings=settings)
            self._client_key = key
        return self._client

    def close(self) -> None:
        """Close the pooled connection (on ``%unload_ext``)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(
        self, request: CompletionRequest, settings: _config.Settings, output: str | None, cache: bool | None
    ) -> Completion:
        """Stream ``request`` into a live view; store the result before any error escapes."""
        builder = CompletionBuilder(request)
        view = LiveView(request)
        view.start()
        try:
            completion = self._client_for(settings).run(request, builder, on_update=view.update, cache=cache)
        except KeyboardInterrupt as exc:
            completion = self._keep(builder, exc, output, view)
            where = " and ".join(f"`{n}`" for n in (output, "_completion") if n)
            shorten(
                exc,
                f"KeyboardInterrupt: interrupted after {tokens_received(view.chunks)}; partial text kept in {where}",
            )
            raise
        except VmanError as exc:
            kept = self._keep(builder, exc, output, view)
            where = " and ".join(f"`{n}`" for n in (output, "_completion") if n)
            note = f" (the text that arrived is in {where})" if any(kept.texts) else ""
            shorten(exc, f"{type(exc).__name__}: {exc}", note)
            raise
        self._store(completion, output)
        view.finish(completion)
        return completion

    def _keep(self, builder: CompletionBuilder, exc: BaseException, name: str | None, view: LiveView) -> Completion:
        """Store the partial result; show it only if text arrived (else the error says it all)."""
        completion = builder.completion
        if not completion.incomplete or completion.error is None:
            builder.fail(exc)
        self._store(completion, name)
        if any(completion.texts):
            view.finish(completion)
        return completion

    def _store(self, completion: Completion, name: str | None) -> None:
        self._user_ns["_completion"] = completion
        if name:
            self._user_ns[name] = completion

    # -- %vman -------------------------------------------------------------------
    @line_magic  # type: ignore[untyped-decorator, unused-ignore]
    def vman(self, line: str) -> Any:
        """Settings and tools: ``%vman config|models|key|base_url URL|model NAME|demo|panel|history|cache|help``."""
        command, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        handlers: dict[str, Callable[[str], Any]] = {
            "config": self._vman_config,
            "models": self._vman_models,
            "key": self._vman_key,
            "base_url": self._vman_base_url,
            "model": self._vman_model,
            "demo": self._vman_demo,
            "panel": self._vman_panel,
            "history": self._vman_history,
            "cache": self._vman_cache,
            "help": self._vman_help,
            "": self._vman_help,
        }
        handler = handlers.get(command)
        if handler is None:
            raise UsageError(f"unknown %vman command {command!r}\n{_VMAN_HELP}")
        self._sync_config()
        try:
            return handler(rest)
        except (ConfigurationError, ValidationError) as exc:
            raise UsageError(str(exc)) from None
        except VmanError as exc:
            shorten(exc, f"{type(exc).__name__}: {exc}")
            raise

    def _vman_help(self, rest: str) -> None:
        print(_VMAN_HELP)

    def _vman_config(self, rest: str) -> None:
        try:
            settings = _config.resolve()  # no side effects: shows the demo's address only if it already runs
        except ConfigurationError as exc:  # show what is wrong instead of failing: this is where users look
            print(f"the settings cannot be used: {exc}")
            print("fix it with %vman base_url URL (this session) or %config VmanMagic.base_url = 'URL'")
            return
        if settings.is_demo and demo_running():
            settings = _config.ensure_server(settings)
        print("\n".join(settings.describe()))

    def _vman_models(self, rest: str) -> None:
        settings = _config.ensure_server(_config.resolve())
        names = self._client_for(settings).models()
        current = settings.model
        for name in names:
            print(("* " if name == current else "  ") + name)

    def _vman_key(self, rest: str) -> None:
        if rest:
            raise UsageError("do not type the key into the cell (it would be saved): run %vman key alone")
        try:
            key = _config.as_secret(getpass.getpass("API key (hidden; kept for this session only): "))
        except (EOFError, KeyboardInterrupt):
            raise UsageError("no key entered (input was closed or interrupted); nothing changed") from None
        except Exception as exc:  # IPython's StdinNotImplementedError: this front end cannot ask for input
            if type(exc).__name__ != "StdinNotImplementedError":
                raise
            raise UsageError(
                "this front end cannot ask for hidden input: set VMAN_API_KEY before starting Jupyter, "
                "or pass api_key=... to complete()/Client()"
            ) from None
        if key is None:
            raise UsageError("no key entered; nothing changed")
        _config.set_session(api_key=key)
        print("API key set for this session.")

    def _vman_base_url(self, rest: str) -> None:
        if not rest:
            raise UsageError("usage: %vman base_url URL, e.g. %vman base_url https://api.example.com/v1")
        _config.set_session(base_url=rest)
        print(f"base_url for this session: {_config.normalize_base_url(rest)}")

    def _vman_model(self, rest: str) -> None:
        if not rest:
            raise UsageError("usage: %vman model NAME (see %vman models)")
        _config.set_session(model=rest)
        print(f"model for this session: {rest}")

    def _vman_demo(self, rest: str) -> None:
        """``%vman demo [--tokens-per-second N]``: use the demo, streaming cells and the panel at N tokens/s."""
        from ..demo.launch import DEMO_MODEL, demo_base_url

        if rest:
            set_tokens_per_second(_demo_pace_flag(rest))
        _config.set_session(base_url=demo_base_url(), model=DEMO_MODEL)
        tps = tokens_per_second()
        pace = f"{tps:g} tokens/s" if tps else "full speed"
        print(
            f"using the offline demo model {DEMO_MODEL} at {demo_base_url()}; cells and the panel stream at "
            f"{pace} (change it with %vman demo --tokens-per-second N, 0 = full speed)"
        )

    def _vman_history(self, rest: str) -> Any:
        from .magic_history import vman_history  # imported on use: %load_ext stays cheap

        return vman_history(rest)

    def _vman_cache(self, rest: str) -> None:
        from .magic_history import vman_cache

        vman_cache(rest)

    def _vman_panel(self, rest: str) -> Any:
        from .panel import panel

        return panel(prompt=rest) if rest else panel()


# --------------------------------------------------------------------------- helpers


def _demo_pace_flag(rest: str) -> float:
    """The N of ``--tokens-per-second N`` (or ``=N``), the one flag ``%vman demo`` takes."""
    usage = "usage: %vman demo [--tokens-per-second N], e.g. --tokens-per-second 25 (0 = full speed)"
    name, eq, value = rest.partition("=")
    parts = [name, value] if eq else rest.split()
    if len(parts) != 2 or parts[0] not in ("--tokens-per-second", "--tps"):
        raise UsageError(usage)
    return parse_tokens_per_second(parts[1], "--tokens-per-second")


def _displayed_by_ipython(shell: Any, line: str) -> bool:
    """Whether ``%complete line`` is an expression the running cell will display (its last line, as a rule).

    Reads the cell IPython is running, transformed to Python as IPython runs
    it (``get_ipython().run_line_magic('complete', line)``), and applies
    IPython's own rule (``ast_node_interactivity``) for which top-level
    statements are displayed. Called from code rather than a cell, nothing
    displays the value.
    """
    exec_result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    raw = getattr(getattr(exec_result, "info", None), "raw_cell", None)
    if not isinstance(raw, str):
        return False
    try:
        body = ast.parse(shell.transform_cell(raw)).body
    except SyntaxError:
        return False
    mode = getattr(shell, "ast_node_interactivity", "last_expr")
    shown = [] if mode == "none" else body if mode == "all" else body[-1:]
    displayed = (ast.Expr, ast.Assign, ast.AnnAssign) if mode == "last_expr_or_assign" else (ast.Expr,)
    return any(isinstance(node, displayed) and _is_this_magic(node.value, line) for node in shown)


def _is_this_magic(node: ast.expr | None, line: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "run_line_magic"
        and len(node.args) >= 2
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[1], ast.Constant)
        and node.args[0].value == "complete"
        and node.args[1].value == line
    )


def _print_dry_run(request: CompletionRequest, base_url: str | None, rendered: Rendered | None) -> None:
    print("prompt:")
    print(request.prompt if isinstance(request.prompt, str) else json.dumps(request.prompt, ensure_ascii=False))
    if rendered is not None and rendered.names:
        print("substituted: " + ", ".join("{" + n + "}" for n in rendered.names))
    if rendered is not None and rendered.unresolved:
        print(
            "kept literally (no such variable): "
            + ", ".join("{" + n + "}" for n in rendered.unresolved)
            + "; define it, or write {{ }} to make the braces explicit"
        )
    where = base_url or "http://127.0.0.1:<port>/v1"
    note = "" if base_url else "   (the offline demo server: no base URL is set; a dry run starts nothing)"
    print(f"\nPOST {where}/completions{note}")
    print(json.dumps(request.to_body(), ensure_ascii=False, indent=2))


def load_ipython_extension(ip: Any) -> None:
    """Register the magics (``%load_ext vman_magic``); loading twice is harmless."""
    if "VmanMagic" not in ip.magics_manager.registry:
        ip.register_magics(VmanMagic(shell=ip))


def unload_ipython_extension(ip: Any) -> None:
    """Remove the magics and their configurable again."""
    magics = ip.magics_manager.registry.pop("VmanMagic", None)
    if magics is None:
        return
    magics.close()
    for kind, table in magics.magics.items():
        for name in table:
            ip.magics_manager.magics[kind].pop(name, None)
    if magics in ip.configurables:
        ip.configurables.remove(magics)
