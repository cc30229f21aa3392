"""Layered settings: where the base URL, key, model and timeouts come from.

Layers, lowest to highest priority::

    defaults < environment < IPython config (%config VmanMagic.x = ...)
             < session (%vman ...) < explicit arguments

Environment: ``VMAN_BASE_URL``, ``VMAN_API_KEY``, ``VMAN_MODEL``,
``VMAN_TIMEOUT`` (read timeout in seconds), ``VMAN_MAX_RETRIES``, with
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` as fallbacks so an existing OpenAI
setup works unchanged.

:func:`resolve` records where every value came from, so ``%vman config`` can
answer "why is it using that model?". The key is wrapped in :class:`Secret`
from the moment it is read, so printing settings, a traceback's locals or a
log record can never show it; only the HTTP layer calls ``reveal()``.

Resolving has no side effects: it reads the layers and returns an immutable
:class:`Settings`, nothing more. With no base URL in any layer the settings
say so (``base_url=None``, ``is_demo=True``, the demo's model as default);
starting the offline demo server is a decision the doors take on purpose,
through :func:`ensure_server`, never a by-product of reading settings.

Standard library only; imports nothing above :mod:`vman_magic.core`.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEMO_MODEL",
    "FIELDS",
    "InsecureKeyWarning",
    "Secret",
    "Settings",
    "Timeout",
    "as_secret",
    "clear_session",
    "ensure_server",
    "normalize_base_url",
    "resolve",
    "set_default_server",
    "set_ipython_config",
    "set_session",
    "warn_if_insecure",
]

FIELDS: Final = ("base_url", "api_key", "model", "timeout", "max_retries")
DEFAULT_MAX_RETRIES: Final = 2
#: The one model the offline demo server offers, and the default model when no layer names a server.
DEMO_MODEL: Final = "vman-demo"

_ENV: Final[dict[str, tuple[str, ...]]] = {
    "base_url": ("VMAN_BASE_URL", "OPENAI_BASE_URL"),
    "api_key": ("VMAN_API_KEY", "OPENAI_API_KEY"),
    "model": ("VMAN_MODEL",),
    "timeout": ("VMAN_TIMEOUT",),
    "max_retries": ("VMAN_MAX_RETRIES",),
}

#: Where the demo's settings come from, and how ``%vman config`` words those origins (and the defaults).
DEMO_URL_SOURCE: Final = "demo"
DEMO_MODEL_SOURCE: Final = "demo model"
_ORIGINS: Final[dict[str | None, str]] = {
    None: "default",
    "default": "default",
    DEMO_URL_SOURCE: "the offline demo server, since no VMAN_BASE_URL is set",
    DEMO_MODEL_SOURCE: "the offline demo's model",
}
_MODEL_HINT: Final = "pass model=..., use -m NAME in %%complete, set VMAN_MODEL, or run %vman model NAME"


class Secret:
    """An API key that shows as ``'****'`` everywhere except :meth:`reveal`.

    Every public door (``Client``, ``AsyncClient``, ``panel``, ``complete*``,
    the batch functions, ``%vman key``) wraps a key in a ``Secret`` at once,
    and it stays one down to the single line that writes the
    ``Authorization`` header (an ``httpx.Auth`` in the client). So a repr, a
    log record, or a traceback that captures locals (``%xmode Verbose``,
    ``TracebackException(capture_locals=True)``, Sentry) shows the mask.

    Deliberately not a ``str`` subclass: ``"Bearer " + key`` or ``f"{key}"``
    would then leak the value; here they give the mask or fail loudly.
    Surrounding whitespace (a pasted newline) is dropped.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value._value
        if not isinstance(value, str):
            raise ConfigurationError(f"an API key must be a string, got {type(value).__name__}")
        self._value = value.strip()

    def reveal(self) -> str:
        """The real key, for the ``Authorization`` header only."""
        return self._value

    def header_safe(self) -> bool:
        """Whether the key can go into an HTTP header as it is (no spaces, nothing non-ASCII)."""
        value = self._value
        return bool(value) and value.isascii() and value.isprintable() and " " not in value

    def mask_in(self, text: str) -> str:
        """``text`` with this key replaced by ``****`` (server messages can echo the request)."""
        return text.replace(self._value, "****") if len(self._value) >= 4 else text

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return "****"

    def __format__(self, spec: str) -> str:
        return "****"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("an API key (Secret) cannot be pickled; pass it again where it is needed")


def as_secret(value: str | Secret | None) -> Secret | None:
    """Wrap a key at the door of a public function: its frame's locals then show ``Secret('****')``.

    ``%xmode Verbose`` and ``capture_locals`` tracebacks print every frame's
    locals, so a function that takes ``api_key: str`` must rebind it at once
    (``api_key = as_secret(api_key)``, its first line).
    """
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value) if not isinstance(value, str) or value.strip() else None  # Secret(5) says what is wrong


@dataclass(frozen=True)
class Timeout:
    """Seconds to wait: to connect, between two bytes of an answer, and in total.

    Notebook defaults: a slow model may think for a while before its first
    token (read), but a call should not hang a kernel forever (total).
    ``None`` disables a limit.
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    total: float | None = 600.0

    @classmethod
    def coerce(cls, value: Any) -> Timeout:
        """Accept a number (the read timeout), a ``Timeout``, or an ``httpx.Timeout``."""
        if value is None or isinstance(value, Timeout):
            return value or cls()
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if seconds > 0:
                return cls(read=seconds)
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {value!r}")
        if hasattr(value, "connect") and hasattr(value, "read"):  # httpx.Timeout, duck-typed
            return cls(connect=value.connect, read=value.read)
        raise ConfigurationError(
            f"timeout must be seconds (float), vman_magic Timeout or httpx.Timeout, got {type(value).__name__}"
        )


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one call, client, batch or panel run; immutable.

    Resolved once at the door (a magic cell, a panel run, a public function
    call) and passed down as it is: nothing below re-reads the environment or
    rebuilds it from raw arguments. ``sources`` says where each value came
    from. ``base_url`` is ``None`` while no layer names a server; then
    ``is_demo`` is true and :func:`ensure_server` fills in the offline demo's
    address. The key stays a :class:`Secret`.
    """

    base_url: str | None
    api_key: Secret | None = None
    model: str | None = None
    timeout: Timeout = field(default_factory=Timeout)
    max_retries: int = DEFAULT_MAX_RETRIES
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    is_demo: bool = False

    def __post_init__(self) -> None:
        # built by hand (Settings(base_url=..., api_key="sk-...")): the same rules as resolve()
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            object.__setattr__(self, "api_key", as_secret(self.api_key))
        if self.base_url is not None:
            object.__setattr__(self, "base_url", normalize_base_url(self.base_url))

    @property
    def url(self) -> str:
        """The base URL, which must be known by now (after :func:`ensure_server`)."""
        if self.base_url is None:
            raise ConfigurationError(
                "no base URL is set: set VMAN_BASE_URL, pass base_url=..., or run %vman base_url URL"
            )
        return self.base_url

    def require_model(self, model: str | None = None) -> str:
        """``model`` or the configured one; a ConfigurationError saying how to set it."""
        chosen = model or self.model
        if not chosen:
            raise ConfigurationError(f"no model is set for {self.base_url}: {_MODEL_HINT}")
        return chosen

    def with_server(self, base_url: str, source: str) -> Settings:
        """These settings pointed at ``base_url`` (how :func:`ensure_server` fills in the demo)."""
        return replace(self, base_url=base_url, sources={**self.sources, "base_url": source})

    def describe(self) -> list[str]:
        """Lines for ``%vman config``: each value and its origin, never the key itself."""
        key = "not set" if self.api_key is None else "set"
        values = {
            "base_url": self.base_url or "not started yet",
            "api_key": key,
            "model": self.model or "not set",
            "timeout": f"connect {self.timeout.connect}s, read {self.timeout.read}s, total {self.timeout.total}s",
            "max_retries": str(self.max_retries),
        }
        return [f"{name}: {values[name]} ({_origin(self.sources.get(name))})" for name in FIELDS]


def _origin(source: str | None) -> str:
    """``from VMAN_BASE_URL``, ``from %vman``..., or a phrase of its own for defaults and the demo."""
    return _ORIGINS.get(source) or f"from {source}"


# --------------------------------------------------------------------------- layers

_lock = threading.Lock()
_ipython_layer: dict[str, Any] = {}
_session_layer: dict[str, Any] = {}


def _check_names(values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigurationError(f"unknown setting {unknown[0]!r}: the settings are {', '.join(FIELDS)}")


def set_ipython_config(values: Mapping[str, Any]) -> None:
    """Replace the IPython config layer (the magic copies its traitlets here).

    ``None`` values mean "not configured" and are left out.
    """
    _check_names(values)
    with _lock:
        _ipython_layer.clear()
        _ipython_layer.update({k: _wrap(k, v) for k, v in values.items() if v not in (None, "")})


def set_session(**values: Any) -> None:
    """Set session values (``%vman key``, ``%vman model`` ...); ``None`` removes one."""
    _check_names(values)
    for name, value in values.items():
        if name == "base_url" and value:
            normalize_base_url(value)  # fail now, not at the next call
    with _lock:
        for name, value in values.items():
            if value is None:
                _session_layer.pop(name, None)
            else:
                _session_layer[name] = _wrap(name, value)


def clear_session() -> None:
    """Forget everything ``%vman`` set in this session."""
    with _lock:
        _session_layer.clear()


def _wrap(name: str, value: Any) -> Any:
    if name == "api_key" and not isinstance(value, Secret):
        return Secret(str(value))
    return value


# --------------------------------------------------------------------------- resolve


def _environment() -> tuple[dict[str, Any], dict[str, str]]:
    """The environment layer: values (the key already a :class:`Secret`) and the variable each came from.

    A function of its own so the raw text of ``VMAN_API_KEY`` lives only in
    this short frame, never in ``resolve``'s, which a traceback may show.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, env_names in _ENV.items():
        for env in env_names:
            if os.environ.get(env, "").strip():
                values[name], sources[name] = _wrap(name, os.environ[env].strip()), env
                break
    return values, sources


def resolve(**explicit: Any) -> Settings:
    """Merge every layer into :class:`Settings`; arguments given as ``None`` are "not given".

    No side effects: with no base URL in any layer the result has
    ``base_url=None`` and ``is_demo=True`` (and the demo's model unless one is
    set); the doors decide whether to start the demo (:func:`ensure_server`).
    """
    _check_names(explicit)
    values, sources = _environment()
    with _lock:
        layers = [(dict(_ipython_layer), "%config VmanMagic"), (dict(_session_layer), "%vman")]
    layers.append(({k: _wrap(k, v) for k, v in explicit.items() if v is not None}, "argument"))
    for layer, source in layers:
        for name, value in layer.items():
            values[name], sources[name] = value, source

    model = values.get("model") or None
    is_demo = "base_url" not in values
    base_url: str | None = None
    if is_demo:
        sources["base_url"] = DEMO_URL_SOURCE
        if model is None:
            model, sources["model"] = DEMO_MODEL, DEMO_MODEL_SOURCE
    else:
        try:
            base_url = normalize_base_url(str(values["base_url"]))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (the base URL came from {sources['base_url']})") from None
    return Settings(
        base_url=base_url,
        api_key=values.get("api_key"),
        model=model,
        timeout=Timeout.coerce(values.get("timeout")),
        max_retries=_coerce_retries(values.get("max_retries", DEFAULT_MAX_RETRIES)),
        sources=sources,
        is_demo=is_demo,
    )


# --------------------------------------------------------------------------- the default server

DefaultServer = Callable[[Settings], Settings]
_default_server: DefaultServer | None = None


def set_default_server(provider: DefaultServer | None) -> None:
    """Register what :func:`ensure_server` does when no layer names a server.

    The package root registers the offline demo (``vman_magic.demo.launch.ensure_demo``),
    so this layer and the client never import the demo server, yet
    ``Client()`` with nothing configured still works. Dependency inversion:
    the wiring is visible in one place, ``vman_magic/__init__.py``.
    """
    global _default_server
    _default_server = provider


def ensure_server(settings: Settings) -> Settings:
    """``settings`` unchanged when they name a server; else the default server's (the demo, started once).

    Called on purpose by the doors that need a server to talk to: the magic
    sending a cell, the panel, ``complete*``, the batch functions, and
    ``Client``/``AsyncClient`` built with no base URL anywhere. Building a
    client *with* a base URL, or ``%vman config``, never gets here.
    """
    if settings.base_url is not None:
        return settings
    if _default_server is None:
        raise ConfigurationError("no base URL is set: set VMAN_BASE_URL, pass base_url=..., or run %vman base_url URL")
    return _default_server(settings)


def _coerce_retries(value: Any) -> int:
    try:
        retries = int(value)
    except (TypeError, ValueError):
        retries = -1
    if isinstance(value, bool) or retries < 0 or (isinstance(value, float) and not value.is_integer()):
        raise ConfigurationError(f"max_retries must be a whole number >= 0, got {value!r}")
    return retries


def normalize_base_url(url: str) -> str:
    """``https://host``, ``https://host/``, ``https://host/v1/`` all become ``https://host/v1``.

    Other paths are kept (a gateway may live under ``/openai/v1``, and the
    test server's fault prefixes look like ``/x/fault=.../v1``); ``/v1`` is
    appended only when the path does not already end in it.
    """
    text = url.strip()
    if not text.isprintable() or any(c.isspace() for c in text):
        raise ConfigurationError(
            f"the base URL contains a space or a control character (a NUL, a newline?): {_safe_url(text)!r}; "
            "type it again, e.g. https://api.example.com/v1"
        )
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigurationError(
            f"the base URL is malformed ({exc}): {_safe_url(text)!r}; e.g. https://api.example.com/v1 "
            "or http://[::1]:8000/v1 for an IPv6 address"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"the base URL must start with http:// or https:// and name a host, got {_safe_url(text)!r}; "
            "e.g. https://api.example.com/v1"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"the base URL must not have a ?query or #fragment: {_safe_url(text)!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _safe_url(url: str) -> str:
    """The URL with any ``user:password@`` removed, for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url.rsplit("@", 1)[-1] if "@" in url else url
    if "@" in parts.netloc:
        return urllib.parse.urlunsplit(parts._replace(netloc="****@" + parts.netloc.rsplit("@", 1)[1]))
    return url


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses, where plain http is fine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class InsecureKeyWarning(UserWarning):
    """An API key is about to travel unencrypted (plain ``http://`` to another machine)."""


_warned_hosts: set[str] = set()


def warn_if_insecure(settings: Settings) -> None:
    """Warn once per host when the key would be sent over plain http off this machine."""
    parts = urllib.parse.urlsplit(settings.base_url or "")
    host = parts.hostname or ""
    if settings.api_key is None or parts.scheme != "http" or is_loopback(host):
        return
    with _lock:
        if host in _warned_hosts:
            return
        _warned_hosts.add(host)
    warnings.warn(
        f"the API key will be sent unencrypted to http://{host}: use an https:// base URL "
        "unless this is a trusted private network",
        InsecureKeyWarning,
        stacklevel=3,
    )
