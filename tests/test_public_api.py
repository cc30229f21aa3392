"""The public API, walked: every type a public signature takes or returns, and every error or warning
the package raises, is exported from ``vman_magic``; nothing else is.

Starting from the documented entry points, the test follows every annotation
of every public function, method and property (and of the classes they lead
to) to the package's own classes. That closure, plus every exception and
warning class defined in the package, must be exactly ``vman_magic.__all__``.
The demo server (``vman_magic.demo``) is not walked: its errors become HTTP
answers, never exceptions a caller of this package sees.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import vman_magic

#: What README and the notebooks teach people to call; everything else must be reachable from these.
ENTRY_POINTS = {
    "AsyncClient",
    "Client",
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
}
NOT_WALKED = ("vman_magic.demo", "vman_magic.__main__")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def _package_modules() -> Iterator[Any]:
    yield vman_magic
    for info in pkgutil.walk_packages(vman_magic.__path__, "vman_magic."):
        if not info.name.startswith(NOT_WALKED):
            yield importlib.import_module(info.name)


def _ours(obj: Any) -> bool:
    return inspect.isclass(obj) and obj.__module__.startswith("vman_magic.")


def _annotations(func: Callable[..., Any]) -> list[str]:
    """The annotation strings of a function's parameters and return value."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    found = [p.annotation for p in signature.parameters.values() if p.annotation is not p.empty]
    if signature.return_annotation is not signature.empty:
        found.append(signature.return_annotation)
    return [a if isinstance(a, str) else getattr(a, "__name__", str(a)) for a in found]


def _named_classes(texts: list[str], namespace: dict[str, Any]) -> set[type]:
    """The package's classes that the identifiers in ``texts`` name in ``namespace``."""
    names = {word for text in texts for word in _IDENTIFIER.findall(text)}
    return {namespace[n] for n in names if _ours(namespace.get(n))}


def _public_members(cls: type) -> Iterator[Callable[..., Any]]:
    """``__init__`` and the public methods and property getters defined by ``cls`` and its package bases."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("vman_magic."):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, property) and member.fget is not None:
                yield member.fget
            elif isinstance(member, (staticmethod, classmethod)):
                yield member.__func__
            elif inspect.isfunction(member):
                yield member


def _reachable(start: set[str]) -> set[type]:
    """Every package class reachable from the entry points through public signatures."""
    todo: list[Any] = [getattr(vman_magic, name) for name in start]
    seen: set[type] = set()
    while todo:
        obj = todo.pop()
        functions = list(_public_members(obj)) if inspect.isclass(obj) else [obj]
        for func in functions:
            namespace = dict(getattr(func, "__globals__", vars(sys.modules[func.__module__])))
            for cls in _named_classes(_annotations(func), namespace) - seen:
                seen.add(cls)
                todo.append(cls)
        if _ours(obj):
            seen.add(obj)
    return seen


def _raised() -> set[type]:
    """Every exception and warning class the package defines (outside the demo server)."""
    return {
        obj
        for module in _package_modules()
        for name, obj in vars(module).items()
        if _ours(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == module.__name__
        and not name.startswith("_")
    }


def test_every_type_of_a_public_signature_is_exported() -> None:
    """Client(settings=Settings, retry=RetryPolicy), Client.run(builder: CompletionBuilder), panel() -> Panel, ..."""
    exported = {getattr(vman_magic, name) for name in vman_magic.__all__}
    missing = sorted(f"{c.__module__}.{c.__qualname__}" for c in _reachable(ENTRY_POINTS) - exported)
    assert not missing, f"used in public signatures but not exported: {missing}"


def test_every_error_and_warning_is_exported() -> None:
    """A user can catch (or filter) everything the package raises as vman_magic.<Name>."""
    exported = {getattr(vman_magic, name) for name in vman_magic.__all__}
    missing = sorted(f"{c.__module__}.{c.__qualname__}" for c in _raised() - exported)
    assert not missing, f"raised but not exported: {missing}"


def test_nothing_internal_is_exported() -> None:
    """__all__ is the entry points, the types their signatures reach, the errors, and the version: nothing else."""
    needed = {c.__name__ for c in _reachable(ENTRY_POINTS) | _raised()} | ENTRY_POINTS | {"__version__"}
    extra = sorted(set(vman_magic.__all__) - needed)
    assert not extra, f"exported but not part of any public signature: {extra}"
    assert "parse_sweep" not in vman_magic.__all__  # the --sweep flag parser is the magic's business
