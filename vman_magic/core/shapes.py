"""The read-only shape of a result, as the views see it.

:mod:`vman_magic.core.render` and :mod:`vman_magic.core.heatmap` draw a
:class:`~vman_magic.Completion`, and ``Completion`` calls them for its own
``_repr_mimebundle_`` and ``show_probabilities()``. So that the dependency
runs one way (models -> views), the views never import the models: they take
these structural protocols, which a ``Completion`` satisfies (mypy checks it
at every call site), and so would any object of the same shape.

Standard library only; imports nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

__all__ = ["ChoiceShape", "LogprobsShape", "RequestShape", "ResultShape", "UsageShape"]


class LogprobsShape(Protocol):
    """Per-token log-probabilities of one choice."""

    @property
    def tokens(self) -> Sequence[str]: ...
    @property
    def token_logprobs(self) -> Sequence[float | None]: ...
    @property
    def top_logprobs(self) -> Sequence[Mapping[str, float] | None]: ...


class ChoiceShape(Protocol):
    """One generated text."""

    @property
    def index(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def logprobs(self) -> LogprobsShape | None: ...


class UsageShape(Protocol):
    """Token counts."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def counted_by_client(self) -> bool: ...


class RequestShape(Protocol):
    """What the views need to know about the request: how the choices are numbered."""

    @property
    def n(self) -> int | None: ...
    @property
    def choices_expected(self) -> int: ...


class ResultShape(Protocol):
    """A completion result, streamed or finished, complete or not."""

    @property
    def request(self) -> RequestShape | None: ...
    @property
    def choices(self) -> Sequence[ChoiceShape]: ...
    @property
    def text(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def usage(self) -> UsageShape | None: ...
    @property
    def incomplete(self) -> bool: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def notes(self) -> Sequence[str]: ...
    @property
    def cut_short(self) -> str | None: ...
    @property
    def elapsed(self) -> float | None: ...
    @property
    def time_to_first_token(self) -> float | None: ...
    @property
    def tokens_per_second(self) -> float | None: ...
    @property
    def history_id(self) -> int | None: ...
    @property
    def cached(self) -> bool: ...
