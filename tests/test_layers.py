"""The layers of ARCHITECTURE.md, enforced: which module may import which, and no import cycles.

Every module of the package is parsed with :mod:`ast`; an import counts when
it runs at some point (module level or inside a function), and not when it
only serves type checkers (under ``if TYPE_CHECKING:``). Relative imports are
resolved to absolute module names, so ``from ..demo import launch`` counts as
an import of ``vman_magic.demo.launch``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vman_magic"
STDLIB = sys.stdlib_module_names
UI = {"IPython", "ipywidgets", "traitlets"}


@dataclass(frozen=True)
class Import:
    """One runtime import: who imports what, and whether at module level."""

    importer: str
    target: str  # absolute, e.g. "vman_magic.core.config" or "httpx"
    top_level: bool
    line: int

    def __str__(self) -> str:
        where = "module level" if self.top_level else "inside a function"
        return f"{self.importer} imports {self.target} ({where}, line {self.line})"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, top_level: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Import statements under ``node``, skipping ``if TYPE_CHECKING:`` bodies (their ``else`` runs)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, top_level
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), top_level)
        else:
            inner = top_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from _walk(child, inner)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        anchor = parts if is_package else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    # "from . import x" / "from .core import config": x may be a module; count it when it is one
    names = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        names.append(candidate if _is_module(candidate) else base)
    return list(dict.fromkeys(names))


def _is_module(name: str) -> bool:
    if not name.startswith("vman_magic"):
        return False
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@cache
def imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, top_level in _walk(tree, True):
            for target in _targets(module, path.name == "__init__.py", node):
                found.append(Import(module, target, top_level, node.lineno))
    return tuple(found)


def _inside(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _violations(importers: tuple[str, ...], allowed: Callable[[Import], bool]) -> list[str]:
    """Imports by modules under ``importers`` that ``allowed(import)`` rejects."""
    return [str(i) for i in imports() if _inside(i.importer, *importers) and not allowed(i)]


def test_the_parser_sees_the_imports_it_should() -> None:
    """Sanity: known edges are found, relative imports resolve, TYPE_CHECKING-only imports are skipped."""
    edges = {(i.importer, i.target) for i in imports()}
    assert ("vman_magic.client.client", "httpx") in edges
    assert ("vman_magic.client.client", "vman_magic.core.config") in edges
    assert ("vman_magic.notebook.magic", "vman_magic.notebook.magic_batch") in edges  # imported inside a function
    assert ("vman_magic.core.errors", "vman_magic.core.models") not in edges  # only for type checkers
    assert len({i.importer for i in imports()}) >= 40


def test_core_imports_only_the_standard_library_and_core() -> None:
    """core/ is the shared contract: stdlib and other core modules, nothing above it, nothing third-party."""
    bad = _violations(
        ("vman_magic.core",), lambda i: i.target.split(".")[0] in STDLIB or _inside(i.target, "vman_magic.core")
    )
    assert not bad, "\n".join(bad)


def test_client_imports_no_notebook_batch_demo_or_ui() -> None:
    """client/ works in a script: no IPython, ipywidgets, demo server, notebook or batch layer."""
    forbidden = ("vman_magic.demo", "vman_magic.notebook", "vman_magic.batch", *UI)
    bad = _violations(("vman_magic.client",), lambda i: not _inside(i.target, *forbidden))
    assert not bad, "\n".join(bad)


def test_demo_server_imports_no_client_batch_or_notebook() -> None:
    """demo/ talks to the rest over HTTP only; it shares nothing with the client but core's request rules."""
    forbidden = ("vman_magic.client", "vman_magic.batch", "vman_magic.notebook", "vman_magic.testing", *UI)
    bad = _violations(("vman_magic.demo",), lambda i: not _inside(i.target, *forbidden))
    assert not bad, "\n".join(bad)


def test_views_import_no_magic() -> None:
    """The views (render, heatmap, the live view) are used by the magic, the panel and batches; never the reverse."""
    views = ("vman_magic.core.render", "vman_magic.core.heatmap", "vman_magic.notebook.display")
    forbidden = ("vman_magic.notebook.magic", "vman_magic.notebook.magic_batch", "vman_magic.notebook.panel")
    bad = _violations(views, lambda i: not _inside(i.target, *forbidden) and i.target != "vman_magic.core.models")
    assert not bad, "\n".join(bad)


def test_batch_imports_no_notebook_and_no_ui_at_module_level() -> None:
    """batch/ runs in scripts: no notebook layer at all, and IPython only lazily, where a view is drawn."""
    bad = _violations(
        ("vman_magic.batch",),
        lambda i: not _inside(i.target, "vman_magic.notebook") and not (i.top_level and _inside(i.target, *UI)),
    )
    assert not bad, "\n".join(bad)


def test_logbook_imports_only_stdlib_core_and_platformdirs() -> None:
    """logbook/ (the history) sits right above core: the client and batches call it, it calls neither, no UI.

    (pandas only inside ``History.to_pandas``, as in the batch layer.)
    """
    bad = _violations(
        ("vman_magic.logbook",),
        lambda i: (
            i.target.split(".")[0] in STDLIB
            or i.target == "platformdirs"
            or (i.target == "pandas" and not i.top_level)
            or _inside(i.target, "vman_magic.core", "vman_magic.logbook")
        ),
    )
    assert not bad, "\n".join(bad)


def _cycle() -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for i in imports():
        if i.target.startswith("vman_magic") and i.target != i.importer:
            graph.setdefault(i.importer, set()).add(i.target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycles_between_modules() -> None:
    """No module imports, directly or through others, a module that imports it back."""
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("vman_magic.core.render", "vman_magic.core.models"),
        ("vman_magic.core.heatmap", "vman_magic.core.models"),
        ("vman_magic.notebook.magic_batch", "vman_magic.notebook.magic"),
    ],
)
def test_former_circles_run_one_way_even_for_type_checkers(lower: str, upper: str) -> None:
    """The two circles the review found are gone for type checkers too: the lower module never names the upper."""
    path = PACKAGE.parent.joinpath(*lower.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    named = {
        target
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for target in _targets(lower, False, node)
    }
    assert upper not in named
