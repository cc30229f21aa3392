"""Check a finished answer against its request: was it whole, and was every parameter honoured?

Real servers differ from the API in quiet ways (README, "Real servers"):
llama.cpp cuts a running stream short when another request arrives and still
ends it with ``data: [DONE]``, ignores ``n``, never sends usage in a stream,
drops the echoed prompt when streaming; LiteLLM's mock ignores ``stop`` and
``max_tokens``; a prompt longer than the context comes back through LiteLLM
as empty text with finish reason "stop". None of that raises, so without this
module every one of them would look like a complete, faithful answer.

:func:`review` runs once, when a result ends normally
(``CompletionBuilder.finish``, which has already counted the streamed tokens
when the server sent no usage). It never raises and never sends anything: it
marks the result ``incomplete`` with ``cut_short`` when a choice has no finish
reason, and adds one short note per parameter the answer shows was ignored.

Standard library only; it reads the models' attributes and imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Completion, CompletionRequest

__all__ = ["CUT_SHORT", "review"]

CUT_SHORT = "cut short by the server"


def review(c: Completion) -> None:
    """Mark a cut-short answer incomplete, count tokens the server did not, and note what it ignored."""
    req = c.request
    choices = c.choices
    unfinished = [ch.index for ch in choices if not ch.finish_reason]
    if unfinished:
        which = ", ".join(map(str, unfinished[:5])) + (", ..." if len(unfinished) > 5 else "")
        c.incomplete = True
        c.cut_short = (
            f"{CUT_SHORT}: the answer ended without a finish reason for choice {which}"
            if len(choices) > 1
            else f"{CUT_SHORT}: the answer ended without a finish reason"
        )
    if req is None or not choices:
        return
    _empty_stop(c, req)
    _fewer_choices(c, req)
    _echo(c, req)
    _logprobs(c, req)
    _stop(c, req)


def _empty_stop(c: Completion, req: CompletionRequest) -> None:
    if req.max_tokens == 0 or c.incomplete or any(ch.text for ch in c.choices):
        return
    if all(ch.finish_reason == "stop" for ch in c.choices) and (c.usage is None or c.usage.completion_tokens == 0):
        c.notes.append(
            "the server answered with no text and finish reason 'stop', and counted no completion tokens: "
            "it may have failed quietly (e.g. a prompt longer than the model's context); "
            "--no-stream (stream=False) may show its own message"
        )


def _fewer_choices(c: Completion, req: CompletionRequest) -> None:
    expected, got = req.choices_expected, len(c.choices)
    if got >= expected or c.incomplete:
        return
    n = req.n or 1
    prompts = expected // n
    if prompts > 1:
        c.notes.append(
            f"{prompts} prompts were sent in one request but the server returned {got} choice(s): "
            "it does not honour a list of prompts; send them one by one (complete_many without group_size)"
        )
    else:
        c.notes.append(f"n={n} was requested but the server returned {got} choice(s): it ignores n")


def _echo(c: Completion, req: CompletionRequest) -> None:
    prompt = req.prompt
    if req.echo and isinstance(prompt, str) and prompt and not all(ch.text.startswith(prompt) for ch in c.choices):
        how = " when streaming; --no-stream may echo it" if req.stream else ""
        c.notes.append(f"echo was requested but the server did not put the prompt before the text{how}")


def _logprobs(c: Completion, req: CompletionRequest) -> None:
    if req.logprobs is not None and all(ch.logprobs is None for ch in c.choices):
        c.notes.append(
            f"logprobs={req.logprobs} was requested but the server returned none "
            "(some gateways drop them); probabilities cannot be shown for this result"
        )


def _stop(c: Completion, req: CompletionRequest) -> None:
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or ())
    if not stops:
        return
    prompt = req.prompt if req.echo and isinstance(req.prompt, str) else ""
    for s in stops:
        if any(s in (ch.text[len(prompt) :] if ch.text.startswith(prompt) else ch.text) for ch in c.choices):
            c.notes.append(f"the text runs past the stop sequence {s!r}: the server ignored stop")
            return
