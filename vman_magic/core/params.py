"""The Completions API's parameters, described once.

Every place a user can set a parameter (the ``%%complete`` flags, the panel's
widgets, ``complete(**params)``, "Copy as code") reads this one table, so a
range or a help text cannot drift between them. The ranges are those of the
OpenAI ``CreateCompletionRequest`` schema that VMAN documents.

Standard library only: this module is imported by the client, which must not
pull in IPython or ipywidgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

Kind = Literal["int", "float", "bool", "str", "stop", "logit_bias", "stream_options"]


@dataclass(frozen=True)
class ParamSpec:
    """One API parameter: its JSON type, allowed range and a one-line help."""

    name: str
    kind: Kind
    help: str
    minimum: float | None = None
    maximum: float | None = None
    default: Any = None  # the API's documented default, for help texts only

    @property
    def flag(self) -> str:
        """The ``%%complete`` flag spelling, e.g. ``--max-tokens``."""
        return "--" + self.name.replace("_", "-")

    def range_text(self) -> str:
        """Human text for the allowed range, used in every error message."""
        if self.minimum is not None and self.maximum is not None:
            return f"{_num(self.minimum)}..{_num(self.maximum)}"
        if self.minimum is not None:
            return f">= {_num(self.minimum)}"
        return {
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "str": "a string",
            "stop": "a string or a list of up to 4 strings",
            "logit_bias": 'a JSON object of token id -> bias in -100..100, e.g. {"50256": -100}',
            "stream_options": 'an object such as {"include_usage": true}',
        }[self.kind]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


MAX_STOP: Final = 4

PARAMS: Final[tuple[ParamSpec, ...]] = (
    ParamSpec("max_tokens", "int", "Most tokens to generate per choice.", 0, None, 16),
    ParamSpec("temperature", "float", "Sampling temperature: 0 is greedy, higher is more random.", 0, 2, 1),
    ParamSpec("top_p", "float", "Nucleus sampling: keep the likeliest tokens up to this mass.", 0, 1, 1),
    ParamSpec("n", "int", "How many completions to generate for each prompt.", 1, 128, 1),
    ParamSpec("logprobs", "int", "Return log-probabilities of the K likeliest tokens per step.", 0, 5),
    ParamSpec("stop", "stop", "Up to 4 sequences that end generation (not included in the text)."),
    ParamSpec("echo", "bool", "Echo the prompt before the completion.", default=False),
    ParamSpec("suffix", "str", "Text that comes after the completion (insert mode, where supported)."),
    ParamSpec("best_of", "int", "Generate this many candidates server-side, return the best n.", 0, 20, 1),
    ParamSpec("presence_penalty", "float", "Penalise tokens that already appeared.", -2, 2, 0),
    ParamSpec("frequency_penalty", "float", "Penalise tokens by how often they appeared.", -2, 2, 0),
    ParamSpec("logit_bias", "logit_bias", "Bias (-100..100) added to the logits of given token ids."),
    ParamSpec("seed", "int", "Sample deterministically: same seed and parameters, same text."),
    ParamSpec("user", "str", "An end-user id the provider can use to detect abuse."),
    ParamSpec("stream_options", "stream_options", "Streaming options, e.g. {'include_usage': True}."),
)

PARAMS_BY_NAME: Final[dict[str, ParamSpec]] = {p.name: p for p in PARAMS}

# Bounds of signed 64-bit integers: the schema says ``seed`` is int64.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
