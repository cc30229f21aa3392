"""How fast the offline demo streams into a ``%%complete`` cell or the panel: a readable pace.

The demo model writes several hundred tokens a second, so a 60-token answer
lands in one step and there is nothing to watch. A class wants to see the
text arrive, as it does from a real model, so the two interactive faces (a
single ``%%complete`` cell and the Playground panel) ask the demo for
:data:`DEFAULT_TOKENS_PER_SECOND` per stream. They ask *per request*, in the
request's URL (the demo's ``/x/tps=N/v1`` knob, see :mod:`vman_magic.testing`),
rather than slowing the server: batches (``--over``, ``--sweep``,
``complete_many``), the Python API and tests talk to the same server at full
speed.

Only the auto-started demo server is paced: a real server streams at its own
speed, and a demo server a test or a user started itself (``vman-magic demo``,
``testing.serve()``) is left alone. ``%vman demo --tokens-per-second N``
changes the pace for the session, ``VMAN_DEMO_TOKENS_PER_SECOND`` for every
kernel; ``0`` means full speed.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from typing import Final

from ..core.config import Settings
from ..core.errors import ConfigurationError

__all__ = ["DEFAULT_TOKENS_PER_SECOND", "ENV_VAR", "paced", "set_tokens_per_second", "tokens_per_second"]

DEFAULT_TOKENS_PER_SECOND: Final = 25.0  # about as fast as a person reads along; a hosted model is often 20-60
ENV_VAR: Final = "VMAN_DEMO_TOKENS_PER_SECOND"
_UNSET: Final = object()
_session: object = _UNSET  # float (0 = full speed) once %vman demo --tokens-per-second set it


def parse_tokens_per_second(raw: str, where: str) -> float:
    """``"25"`` -> 25.0; anything but a number >= 0 is a ConfigurationError naming ``where`` it came from."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # also rejects NaN
        raise ConfigurationError(f"{where} must be a number of tokens per second >= 0 (0 = full speed), got {raw!r}")
    return value


def tokens_per_second() -> float | None:
    """The pace interactive faces ask the demo for: the session's, the environment's, or the default; None = full speed."""
    if isinstance(_session, float):
        value = _session
    else:
        raw = os.environ.get(ENV_VAR, "").strip()
        value = parse_tokens_per_second(raw, ENV_VAR) if raw else DEFAULT_TOKENS_PER_SECOND
    return value or None


def set_tokens_per_second(value: float | None) -> None:
    """Set the session's pace (``0`` = full speed); ``None`` goes back to the environment or the default."""
    global _session
    _session = _UNSET if value is None else float(value)


def paced(settings: Settings) -> Settings:
    """``settings`` aimed at the demo's pace knob when they reach the auto-started demo server, else unchanged."""
    from ..demo.launch import is_demo_url

    url = settings.url
    if not (settings.is_demo or is_demo_url(url)) or urllib.parse.urlsplit(url).path != "/v1":
        return settings  # another server, or a URL that already carries knobs of its own
    tps = tokens_per_second()
    if tps is None:
        return settings
    from ..demo.faults import knob_url

    return dataclasses.replace(settings, base_url=knob_url(url, tps=tps))
