"""vman-magic: OpenAI-compatible text completions as a first-class citizen of Jupyter.

In a notebook::

    %load_ext vman_magic

    %%complete -o r --max-tokens 40
    Once upon a time

From Python::

    import vman_magic
    c = vman_magic.complete("Once upon a time", max_tokens=40)
    print(c.text)
    vman_magic.history("upon")   # every completion is recorded locally; load(id) brings one back

Names are imported lazily (PEP 562), so ``import vman_magic`` and
``%load_ext vman_magic`` stay cheap: IPython's magic machinery, ipywidgets and
the demo model load only when first used.

This module is also where the layers are wired together: it registers the
offline demo as the server to use when no base URL is configured
(:func:`vman_magic.core.config.set_default_server`), so neither the settings
nor the client import the demo server, and nothing starts it until a door
that is about to send a request asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .core import config as _config

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "APIConnectionError": ".core.errors",
    "APIResponseError": ".core.errors",
    "APIStatusError": ".core.errors",
    "APITimeoutError": ".core.errors",
    "AsyncClient": ".client.client",
    "AuthenticationError": ".core.errors",
    "BadRequestError": ".core.errors",
    "BatchInterrupted": ".batch.many",
    "BatchResult": ".batch.many",
    "Choice": ".core.models",
    "Client": ".client.client",
    "Completion": ".core.models",
    "CompletionBuilder": ".core.models",
    "CompletionRequest": ".core.models",
    "ConfigurationError": ".core.errors",
    "History": ".logbook.entries",
    "HistoryEntry": ".logbook.entries",
    "HistoryError": ".core.errors",
    "InsecureKeyWarning": ".core.config",
    "InternalServerError": ".core.errors",
    "Logprobs": ".core.models",
    "NotFoundError": ".core.errors",
    "Panel": ".notebook.panel",
    "PanelBusyError": ".notebook.panel",
    "PermissionDeniedError": ".core.errors",
    "RateLimitError": ".core.errors",
    "RecordedError": ".logbook.rows",
    "RetryPolicy": ".client.retry",
    "Secret": ".core.config",
    "Settings": ".core.config",
    "StreamAPIError": ".core.errors",
    "StreamError": ".core.errors",
    "SweepResult": ".batch.sweep",
    "Tally": ".batch.progress",
    "TemplateError": ".core.template",
    "Timeout": ".core.config",
    "Unfinished": ".batch.many",
    "Usage": ".core.models",
    "ValidationError": ".core.errors",
    "VmanError": ".core.errors",
    "acomplete": ".client.client",
    "acomplete_many": ".batch.many",
    "complete": ".client.client",
    "complete_frame": ".batch.frame",
    "complete_many": ".batch.many",
    "history": ".logbook.entries",
    "load": ".logbook.entries",
    "panel": ".notebook.panel",
    "run_sweep": ".batch.sweep",
}

__all__ = [
    "APIConnectionError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchInterrupted",
    "BatchResult",
    "Choice",
    "Client",
    "Completion",
    "CompletionBuilder",
    "CompletionRequest",
    "ConfigurationError",
    "History",
    "HistoryEntry",
    "HistoryError",
    "InsecureKeyWarning",
    "InternalServerError",
    "Logprobs",
    "NotFoundError",
    "Panel",
    "PanelBusyError",
    "PermissionDeniedError",
    "RateLimitError",
    "RecordedError",
    "RetryPolicy",
    "Secret",
    "Settings",
    "StreamAPIError",
    "StreamError",
    "SweepResult",
    "Tally",
    "TemplateError",
    "Timeout",
    "Unfinished",
    "Usage",
    "ValidationError",
    "VmanError",
    "__version__",
    "acomplete",
    "acomplete_many",
    "complete",
    "complete_frame",
    "complete_many",
    "history",
    "load",
    "load_ipython_extension",
    "panel",
    "run_sweep",
    "unload_ipython_extension",
]


def _offline_demo(settings: _config.Settings) -> _config.Settings:
    """The default server: the offline demo, started on first use (see :mod:`vman_magic.demo.launch`)."""
    from .demo.launch import ensure_demo

    return ensure_demo(settings)


_config.set_default_server(_offline_demo)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vman_magic' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext vman_magic``: register ``%%complete``, ``%complete`` and ``%vman``."""
    from .notebook.magic import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext vman_magic``: remove the magics again."""
    from .notebook.magic import unload_ipython_extension as unload

    unload(ipython)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .batch.frame import complete_frame
    from .batch.many import BatchInterrupted, BatchResult, Unfinished, acomplete_many, complete_many
    from .batch.progress import Tally
    from .batch.sweep import SweepResult, run_sweep
    from .client.client import AsyncClient, Client, acomplete, complete
    from .client.retry import RetryPolicy
    from .core.config import InsecureKeyWarning, Secret, Settings, Timeout
    from .core.errors import (
        APIConnectionError,
        APIResponseError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConfigurationError,
        HistoryError,
        InternalServerError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        StreamAPIError,
        StreamError,
        ValidationError,
        VmanError,
    )
    from .core.models import Choice, Completion, CompletionBuilder, CompletionRequest, Logprobs, Usage
    from .core.template import TemplateError
    from .logbook.entries import History, HistoryEntry, history, load
    from .logbook.rows import RecordedError
    from .notebook.panel import Panel, PanelBusyError, panel
