"""Exceptions raised by vman-magic.

The hierarchy, so a caller can catch exactly what it can handle::

    VmanError
    ├── ValidationError          (also a ValueError) a bad argument, caught before sending
    ├── ConfigurationError       no model, a malformed base URL, ...
    ├── APIConnectionError       the server could not be reached, or dropped the connection
    │   └── APITimeoutError      connect/read/total timeout
    ├── APIStatusError           the server answered with an HTTP error status
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── RateLimitError            429
    │   └── InternalServerError       5xx
    ├── APIResponseError         a 200 answer that is not a completion (HTML page, bad JSON)
    ├── StreamError              the stream broke after it started
    │   └── StreamAPIError       the server sent {"error": ...} inside a 200 stream
    └── HistoryError             the local history cannot be read, or has no such entry

Every error that happens after a request was sent carries ``partial``: the
:class:`~vman_magic.Completion` built from whatever arrived, flagged
``incomplete=True``, so no text is ever lost. Messages are short and say what
to change; they never contain the API key (the client never gives it to them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Completion


class VmanError(Exception):
    """Base class of every error this package raises on purpose."""

    partial: Completion | None = None

    def __init__(self, message: str, *, partial: Completion | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.partial = partial

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: one line, since our messages say what to change.

        (The magics replace it with a line that also says where the partial result went.)
        """
        return [f"{type(self).__name__}: {' '.join(str(self).split())}"]


class ValidationError(VmanError, ValueError):
    """An argument is out of range or of the wrong type; nothing was sent.

    ``param`` names the offending field so the panel can show the message
    next to the right widget.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ConfigurationError(VmanError):
    """The configuration cannot work (no model, bad base URL, ...)."""


class APIConnectionError(VmanError):
    """The server could not be reached, or closed the connection mid-answer."""


class APITimeoutError(APIConnectionError):
    """A connect, read or total timeout expired."""


class APIStatusError(VmanError):
    """The server answered with an HTTP error status (4xx/5xx)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        partial: Completion | None = None,
        body: str | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message, partial=partial)
        self.status_code = status_code
        self.type = type
        self.code = code
        self.param = param
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body
        """The whole answer body as text (the message is one line and may be cut)."""
        self.server_message = server_message
        """The server's own error message, whole, when its body had one."""


class BadRequestError(APIStatusError):
    """400: the server rejected a parameter; ``param`` says which, when it does."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong API key."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or endpoint."""


class NotFoundError(APIStatusError):
    """404: unknown model, or a base URL that does not serve the API."""


class RateLimitError(APIStatusError):
    """429: too many requests or tokens; ``retry_after`` is the server's hint."""


class InternalServerError(APIStatusError):
    """5xx: the server or a proxy in front of it failed."""


class APIResponseError(VmanError):
    """A 200 answer that is not a completion: an HTML page, or invalid JSON."""

    def __init__(self, message: str, *, status_code: int = 200, partial: Completion | None = None) -> None:
        super().__init__(message, partial=partial)
        self.status_code = status_code


class StreamError(VmanError):
    """The event stream broke after it started (bad event, or no end)."""


class StreamAPIError(StreamError):
    """The server reported an error inside a 200 event stream."""

    def __init__(
        self,
        message: str,
        *,
        type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
        partial: Completion | None = None,
    ) -> None:
        super().__init__(message, partial=partial)
        self.type = type
        self.code = code
        self.param = param


_MAX_FIELD = 2000  # characters kept of one server-sent error field

_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The most specific :class:`APIStatusError` subclass for a status."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status_code, APIStatusError)


def error_fields(body: Any) -> dict[str, Any]:
    """Pull ``message/type/code/param`` out of an OpenAI-style error body.

    Gateways differ: ``{"error": {...}}``, ``{"error": "text"}``, or a bare
    ``{"message": ...}``. Anything else gives an empty dict, and a field that
    is not a string (an integer ``code`` aside) is left out.
    """
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, str):
            return {"message": err[:_MAX_FIELD]}
        if isinstance(err, dict):
            out: dict[str, Any] = {}
            for key in ("message", "type", "code", "param"):
                value = err.get(key)
                # only strings (and an integer code) are kept: a list or object here is not an error
                # message, and turning a deeply nested one into text could itself fail
                if isinstance(value, str):
                    out[key] = value[:_MAX_FIELD]
                elif key == "code" and isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**6:
                    out[key] = value
            return out
    return {}


class HistoryError(VmanError):
    """The local history of completions cannot answer: it is off, unreadable, or has no such entry.

    Recording never raises it (a broken history file only turns recording off
    with one warning line); reading it (``vman_magic.history()``,
    ``vman_magic.load()``, ``%vman history``) does.
    """
