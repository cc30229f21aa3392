"""The one scrubber: server text with the API key taken out, in any form we sent it.

A gateway can echo what it received: an error page quoting the
``Authorization`` header, a redirect whose ``Location`` carries it
URL-encoded, an error event inside a stream, a log line cut half-way through
the key. Every string that came from a server passes :meth:`Scrubber.scrub`
before it reaches a message, a footer, a status line, a log record or an
exception (the client applies it at the one place its errors leave, and to
the few result fields a view shows, see :mod:`vman_magic.client.shape`).

What is masked, as ``****``:

* the key as sent, and its URL-encoded and JSON-escaped forms;
* any run of at least :data:`MIN_PARTIAL` characters of one of those forms
  (a server that cut the key, or masked its middle as OpenAI's error
  message does, still shows a prefix and a suffix we sent).

Matching ignores case (proxies lower-case headers). A short key (under
:data:`MIN_PARTIAL` characters) is masked only whole. The scrubber never
shows the key: its ``repr`` is constant, and it keeps no local variable
holding the compiled pattern (a verbose traceback prints frame locals).

Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.parse
from collections.abc import Iterable

__all__ = ["MASK", "MIN_PARTIAL", "Scrubber", "scrub_error"]

MASK = "****"
MIN_PARTIAL = 8  # a run of this many characters of the key is treated as the key


class Scrubber:
    """Masks one or more secrets in text; ``Scrubber([])`` passes text through unchanged."""

    __slots__ = ("_forms", "_pattern")

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            secret = secret.strip()
            if len(secret) < 4:  # too short to tell from ordinary text
                continue
            forms.update({secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)})
            forms.add(json.dumps(secret)[1:-1])
            forms.add(json.dumps(secret)[1:-1].replace("/", "\\/"))
        self._forms = tuple(sorted(forms, key=len, reverse=True))
        pieces: set[str] = set()
        for form in self._forms:
            if len(form) <= MIN_PARTIAL:
                pieces.add(form)
            else:  # every window of MIN_PARTIAL characters: a match is grown to the longest run of the key
                pieces.update(form[i : i + MIN_PARTIAL] for i in range(len(form) - MIN_PARTIAL + 1))
        self._pattern = (
            re.compile("|".join(re.escape(p) for p in sorted(pieces, key=len, reverse=True)), re.IGNORECASE)
            if pieces
            else None
        )

    @classmethod
    def none(cls) -> Scrubber:
        """A scrubber with nothing to hide (no key configured)."""
        return cls(())

    def __repr__(self) -> str:
        return "<Scrubber>"

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, text: str) -> str:
        """``text`` with every whole or partial form of the secrets replaced by ``****``."""
        if self._pattern is None or not text:
            return text
        if self._pattern.search(text) is None:
            return text
        return self._mask_runs(text)

    __call__ = scrub

    def _mask_runs(self, text: str) -> str:
        out: list[str] = []
        pos = 0
        lowered = text.lower()
        while (match := self._pattern.search(text, pos)) is not None:  # type: ignore[union-attr]
            start, end = match.span()
            start, end = self._grow(lowered, start, end)
            out.append(text[pos:start])
            out.append(MASK)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _grow(self, lowered: str, start: int, end: int) -> tuple[int, int]:
        """Widen a window match to the longest stretch of ``lowered`` that is a piece of one form."""
        best = (start, end)
        for form in self._forms:
            low = form.lower()
            piece = lowered[start:end]
            at = low.find(piece)
            while at >= 0:
                left, right = start, end
                i, j = at, at + (end - start)
                while i > 0 and left > 0 and lowered[left - 1] == low[i - 1]:
                    left, i = left - 1, i - 1
                while j < len(low) and right < len(lowered) and lowered[right] == low[j]:
                    right, j = right + 1, j + 1
                if right - left > best[1] - best[0]:
                    best = (left, right)
                at = low.find(piece, at + 1)
        return best


def scrub_error(error: BaseException, scrubber: Scrubber) -> BaseException:
    """Scrub an exception's message and its string attributes in place; returns it.

    Our errors keep their message in ``args[0]`` and ``message``, and the
    server's ``type``/``code``/``param`` as attributes; all are server text.
    """
    if not scrubber:
        return error
    error.args = tuple(scrubber(a) if isinstance(a, str) else a for a in error.args)
    for name in ("message", "type", "code", "param", "request_id"):
        value = getattr(error, name, None)
        if isinstance(value, str):
            with contextlib.suppress(AttributeError):  # a read-only attribute of a foreign exception
                setattr(error, name, scrubber(value))
    return error
