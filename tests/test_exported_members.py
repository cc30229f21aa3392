"""A guard on the public API: what ``vman_magic`` exports is deliberate and importable."""

from __future__ import annotations

import inspect

import vman_magic
from vman_magic.core import errors as _errors


def test_all_is_sorted_and_unique() -> None:
    """``__all__`` is sorted without duplicates, so a diff shows every API change."""
    assert vman_magic.__all__ == sorted(set(vman_magic.__all__))


def test_every_exported_name_resolves() -> None:
    """Every name in ``__all__`` can be read from the package, and ``dir()`` lists exactly those."""
    for name in vman_magic.__all__:
        assert getattr(vman_magic, name) is not None, name
    assert sorted(dir(vman_magic)) == sorted(vman_magic.__all__)


def test_exported_objects_live_in_the_package() -> None:
    """Exported classes and functions are defined in vman_magic, not re-exported third-party names."""
    for name in vman_magic.__all__:
        value = getattr(vman_magic, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.split(".")[0] == "vman_magic", name


def test_every_error_class_is_exported() -> None:
    """Every exception a user may catch is reachable as ``vman_magic.<Name>``."""
    errors = {
        name for name, value in vars(_errors).items() if inspect.isclass(value) and issubclass(value, _errors.VmanError)
    }
    assert errors <= set(vman_magic.__all__)


def test_client_api_signatures() -> None:
    """The entry points take the documented keyword-only arguments."""
    names = {"model", "base_url", "api_key", "stream", "timeout", "max_retries", "on_update"}
    for func in (vman_magic.complete, vman_magic.acomplete):
        params = inspect.signature(func).parameters
        assert names <= {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}, func.__name__
    for cls in (vman_magic.Client, vman_magic.AsyncClient):
        assert {"complete", "run", "models"} <= set(dir(cls)), cls.__name__
        init = inspect.signature(cls).parameters
        assert {"base_url", "api_key", "model", "timeout", "max_retries", "http_client"} <= set(init)
