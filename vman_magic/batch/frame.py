"""``complete_frame``: one completion per DataFrame row, from a ``{column}`` template.

The prompt of each row is ``template`` rendered by :mod:`vman_magic.core.template`
with the row as the namespace, so ``{title}`` is the row's ``title`` and
``{title!r}`` or ``{price:.2f}`` work as in ``str.format``; other braces (JSON,
code) stay literal. A ``{name}`` that is not a column is almost always a typo,
so it is an error listing the columns, raised before anything is sent.

pandas is optional for the package and imported only here, when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.config import Secret, Settings, as_secret
from ..core.errors import ValidationError
from ..core.template import render
from .engine import interrupts_deferred
from .many import BatchInterrupted, BatchResult, complete_many

if TYPE_CHECKING:
    import pandas as pd

    from ..core.models import Completion

__all__ = ["complete_frame", "error_text"]


def complete_frame(
    df: pd.DataFrame,
    template: str,
    *,
    out: str = "completion",
    concurrency: int | None = None,
    inplace: bool = False,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | Secret | None = None,
    timeout: Any = None,
    max_retries: int | None = None,
    settings: Settings | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Complete ``template`` for every row of ``df``; return the frame with result columns.

    Adds ``{out}`` (the text of the first choice), ``{out}_finish_reason``,
    ``{out}_tokens`` (completion tokens, ``<NA>`` when the server sent no
    usage) and ``{out}_error`` (``"ErrorType: message"`` for a row that
    failed). The text columns hold ``""`` where there is nothing to say (no
    text arrived, no finish reason, no error), never ``None`` or ``NaN``: the
    same for every pandas version, and what ``--over`` and a sweep's table
    show; pick the failed rows with ``out[out["completion_error"] != ""]``.
    Existing columns of those names are replaced, so a cell can be re-run.

    Returns a new frame and leaves ``df`` alone, unless ``inplace=True``: then
    ``df`` itself gets the columns and is returned. The connection
    arguments (or ``settings=``) and ``kwargs`` go to
    :func:`~vman_magic.complete_many` (``max_tokens=``, ``rpm=``/``tpm=``
    budgets, ``progress=``, ``on_interrupt=``, ``group_size=``, ``cache=`` ...): with
    ``cache=True`` a re-run sends only the rows without a complete answer in
    the history, so an interrupted or crashed table resumes. To split a job
    across machines, run this per partition with ``rpm``/``tpm`` set to each
    worker's share of the quota (see README, "Scale past one machine"). On
    interrupt the
    :class:`~vman_magic.batch.many.BatchInterrupted` carries the frame with the
    rows that finished as ``.partial``.
    """
    api_key = as_secret(api_key)  # a verbose traceback shows this frame's locals
    pd = _pandas()
    if not isinstance(df, pd.DataFrame):
        raise ValidationError(f"complete_frame needs a pandas DataFrame, got {type(df).__name__}", param="df")
    if not isinstance(template, str):
        raise ValidationError(
            f"template must be a string with {{column}} fields, got {type(template).__name__}", param="template"
        )
    prompts = render_prompts(df, template)
    try:
        results = complete_many(
            prompts, concurrency=concurrency, model=model, base_url=base_url, api_key=api_key, timeout=timeout,
            max_retries=max_retries, settings=settings, **kwargs,
        )  # fmt: skip
    except BatchInterrupted as interrupt:
        with interrupts_deferred():  # a second Ctrl-C while the frame is built must not lose it
            frame = _with_results(df, interrupt.partial, out, inplace)
        raise BatchInterrupted(interrupt.args[0].replace("prompts", "rows"), frame) from None
    return _with_results(df, results, out, inplace)


def render_prompts(df: pd.DataFrame, template: str) -> list[str]:
    """The prompt of every row; a ``{field}`` that is no column raises, listing the columns."""
    columns = [str(c) for c in df.columns]
    rendered = [render(template, {str(k): v for k, v in row.items()}) for row in df.to_dict("records")]
    unresolved = rendered[0].unresolved if rendered else []  # an empty frame sends nothing
    if unresolved:
        missing = ", ".join("{" + name + "}" for name in unresolved)
        raise ValidationError(
            f"template field {missing} is not a column; the columns are: {', '.join(columns) or '(none)'}. "
            "Fix the name, or write {{ and }} for literal braces",
            param="template",
        )
    return [r.text for r in rendered]


def _with_results(df: pd.DataFrame, results: BatchResult, out: str, inplace: bool) -> pd.DataFrame:
    pd = _pandas()
    frame = df if inplace else df.copy()
    frame[out] = results.texts
    frame[f"{out}_finish_reason"] = [c.finish_reason or "" for c in results]
    frame[f"{out}_tokens"] = pd.array(
        [c.usage.completion_tokens if c.usage is not None else None for c in results], dtype="Int64"
    )
    frame[f"{out}_error"] = [error_text(c) for c in results]
    return frame


def error_text(c: Completion) -> str:
    """``"ErrorType: message"`` for a failed item, ``""`` for one that worked (a table cell, never None/NaN)."""
    return "" if c.error is None else f"{type(c.error).__name__}: {c.error}"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "complete_frame needs pandas: pip install 'vman-magic[pandas]' (or pip install pandas)"
        ) from None
    return pandas
