"""Every third-party import is declared in pyproject.toml, in the extra that installs it where it is used.

A package that is only on the developer's machine lets the suite pass there and
fail on a fresh one (or pass by accident, when something else happens to pull it
in). This reads the imports with ``ast`` instead of running them, so it catches
an undeclared import even where the package is installed.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LOCAL = {"vman_magic", "tests", "benchmarks", "conftest", "__future__"}

# Which extras install what each folder imports (the base dependencies always count).
# README's commands name these extras: `.[test]` for the suite, `.[lab]` for the notebooks.
EXTRAS_FOR = {"tests": ["test"], "benchmarks": ["bench"], "notebooks": ["lab"]}


@dataclass(frozen=True)
class Import:
    """One ``import`` statement's top-level module, where it stands, and whether failing it is survivable."""

    module: str
    where: str
    optional: bool  # inside a function or a ``try``: the package runs without it


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement such as ``httpx-sse>=0.4; python_version < '3.11'``."""
    return re.split(r"[<>=!~\[;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def declared(extras: Iterable[str]) -> set[str]:
    """The distributions that ``pip install ".[EXTRAS]"`` asks for, following ``vman-magic[...]`` self-references."""
    names = {_name(spec) for spec in PROJECT["dependencies"]}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in PROJECT["optional-dependencies"][extra]:
            if _name(spec) == _name(PROJECT["name"]):
                todo += re.findall(r"[\w-]+", spec.split("[", 1)[1].split("]", 1)[0])
            else:
                names.add(_name(spec))
    return names


def _imports(tree: ast.AST, where: str, optional: bool = False) -> Iterator[Import]:
    """The absolute imports in ``tree``, minus those under ``if TYPE_CHECKING:`` (never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for other in node.orelse:
                yield from _imports(other, where, optional)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name.split(".")[0], f"{where}:{node.lineno}", optional)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield Import(node.module.split(".")[0], f"{where}:{node.lineno}", optional)
        inner = optional or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Try))
        yield from _imports(node, where, inner)


def _notebook_code(path: Path) -> str:
    """A notebook's Python: its code cells without magics and shell lines (``%%complete`` cells are prompts)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    lines = [line for s in sources if not s.startswith("%%") for line in s.splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def imports_in(folder: Path) -> Iterator[Import]:
    """Every third-party import in the ``.py`` files and notebooks under ``folder``."""
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # notebooks may await at top level
    for path in sorted([*folder.rglob("*.py"), *folder.rglob("*.ipynb")]):
        if ".venv" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        code = _notebook_code(path) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8")
        siblings = {p.stem for p in path.parent.glob("*.py")}  # e.g. tests' `from test_client import ...`
        for found in _imports(compile(code, str(path), "exec", flags), path.relative_to(folder.parent).as_posix()):
            if found.module not in sys.stdlib_module_names and found.module not in LOCAL | siblings:
                yield found


def undeclared(folder: Path, extras: list[str]) -> list[str]:
    """``module (where)`` for each import under ``folder`` that the base dependencies plus ``extras`` do not install.

    In the package itself a top-level import must come from the base
    dependencies; an optional one (in a function or a ``try``) may come from any extra.
    """
    distributions = packages_distributions()
    needed, anywhere = declared(extras), declared(PROJECT["optional-dependencies"])
    missing = []
    for found in imports_in(folder):
        names = {_name(d) for d in distributions.get(found.module, [found.module])}
        allowed = anywhere if found.optional and not extras else needed
        if not names & allowed:
            missing.append(f"{found.module} ({found.where})")
    return missing


@pytest.mark.parametrize("folder", ["vman_magic", "tests", "benchmarks", "notebooks"])
def test_every_third_party_import_is_declared(folder: str) -> None:
    """Each folder imports only what the base dependencies and its extra install on a fresh machine."""
    assert undeclared(ROOT / folder, EXTRAS_FOR.get(folder, [])) == []


def test_the_test_extra_installs_what_the_suite_runs() -> None:
    """CI installs only `.[test]`, yet runs the benchmarks' smoke test and the browser tests: test includes both."""
    assert declared(["bench"]) | declared(["browser"]) <= declared(["test"])


def test_the_checker_reports_an_undeclared_import(tmp_path: Path) -> None:
    """An import no extra declares is reported with its place; stdlib, local and TYPE_CHECKING imports are not."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "helper.py").write_text("")
    (tests / "test_x.py").write_text(
        "import json\nimport pytest\nimport helper\nfrom vman_magic import complete\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import not_installed_for_types\n"
        "def f():\n    import surely_undeclared_package.sub\n"
    )
    assert undeclared(tests, ["test"]) == ["surely_undeclared_package (tests/test_x.py:9)"]


def test_the_package_needs_base_dependencies_at_import_time(tmp_path: Path) -> None:
    """In the package an extra's module may be imported only where failing is survivable (a function or a try)."""
    package = tmp_path / "vman_magic"
    package.mkdir()
    (package / "fast.py").write_text("try:\n    import orjson\nexcept ImportError:\n    orjson = None\n")
    (package / "frame.py").write_text("def f():\n    import pandas\n")
    assert undeclared(package, []) == []
    (package / "eager.py").write_text("import pandas\n")
    assert undeclared(package, []) == ["pandas (vman_magic/eager.py:1)"]
