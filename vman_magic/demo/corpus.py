"""The demo model's training text: docstrings of a fixed list of standard-library modules.

Every Python installation carries these sources, so the model trains offline
and nothing is fetched at run time. Docstrings are read with :mod:`ast` from
the source files, never by importing the modules (importing ``turtle`` or
``tkinter`` would have side effects). A module whose source is missing (some
distributions ship only bytecode) is skipped; the corpus hash, part of the
model cache key, changes with it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
from typing import Final

MODULES: Final = (
    "argparse", "asyncio.events", "asyncio.streams", "asyncio.tasks", "bdb", "bisect", "calendar",
    "cmd", "collections", "colorsys", "concurrent.futures._base", "configparser", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "doctest", "email.message", "enum",
    "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "gettext", "glob",
    "graphlib", "gzip", "heapq", "hmac", "http.client", "http.server", "imaplib", "inspect",
    "ipaddress", "json", "json.decoder", "linecache", "locale", "logging", "logging.handlers",
    "mailbox", "multiprocessing.managers", "multiprocessing.pool", "numbers", "operator", "optparse",
    "pathlib", "pdb", "pickle", "platform", "poplib", "pprint", "pydoc", "queue", "random", "re",
    "reprlib", "sched", "secrets", "selectors", "shlex", "shutil", "signal", "smtplib", "socket",
    "sqlite3", "ssl", "statistics", "string", "subprocess", "sysconfig", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "trace", "traceback", "turtle", "types", "typing",
    "unittest.case", "unittest.mock", "urllib.parse", "urllib.request", "uuid", "warnings", "wave",
    "weakref", "xml.dom.minidom", "xml.etree.ElementTree", "zipfile",
)  # fmt: skip

_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def source_files() -> list[str]:
    """Paths of the modules' ``.py`` sources that exist on this machine."""
    paths = []
    for name in MODULES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin.endswith(".py") and os.path.isfile(spec.origin):
            paths.append(spec.origin)
    return paths


def corpus_key() -> str:
    """A cheap fingerprint of the corpus (paths, sizes, mtimes, Python version) for the cache key.

    Hashing the docstrings themselves would mean parsing every module, which
    is most of the training time; the file stats change whenever they could.
    """
    h = hashlib.sha256(sys.version.encode())
    for path in source_files():
        st = os.stat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def _module_docstrings(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, _DOC_NODES):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= 20:
                docs.append(doc)
    return docs


def load_documents() -> list[str]:
    """All docstrings of :data:`MODULES`, in a stable order: one document each."""
    docs: list[str] = []
    for path in source_files():
        docs.extend(_module_docstrings(path))
    if len(docs) < 200:
        raise RuntimeError(
            f"only {len(docs)} docstrings found in the standard library sources; the demo model needs "
            "the .py files of the standard library (install your distribution's python3 source package)"
        )
    return docs


def corpus_hash(documents: list[str]) -> str:
    """A short hex digest of the docstrings themselves: the model's ``system_fingerprint``."""
    h = hashlib.sha256()
    for doc in documents:
        h.update(doc.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:16]
