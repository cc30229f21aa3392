"""The demo model's tokenizer: GPT-style word pieces plus a lossless character fallback.

Id layout (fixed, so ids written in a notebook stay valid across Python versions
for every character, and across runs of the same Python for word pieces)::

    0                          <|endoftext|>  (document separator; the model may emit it to end)
    1 .. len(pieces)           word pieces learnt from the corpus, e.g. " the", " function", "\\n    "
    CHAR_BASE + ord(ch)        one token per Unicode code point (surrogates excluded)

Single characters are *only* ever character tokens (a piece is at least two
characters long), so every text has exactly one tokenization and ``decode``
of ``encode(text)`` is ``text`` for any string: Chinese characters are single
tokens, and a streamed token never splits a character.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

EOT: Final = 0
EOT_TEXT: Final = "<|endoftext|>"
#: Ids below this are word pieces; at and above it, characters.
CHAR_BASE: Final = 32768
MAX_PIECES: Final = CHAR_BASE - 1
#: One past the largest valid token id.
ID_LIMIT: Final = CHAR_BASE + 0x110000
_SURROGATES: Final = range(CHAR_BASE + 0xD800, CHAR_BASE + 0xE000)

# GPT-2's pre-tokenizer, restated with the ``re`` module: contractions, words
# with one optional leading space, numbers, punctuation runs, and whitespace
# (a run of spaces keeps its last space for the next word, as GPT-2 does).
_SPLIT: Final = re.compile(r"'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")


def split(text: str) -> list[str]:
    """Cut text into pre-tokens whose concatenation is exactly ``text``."""
    pieces: list[str] = []
    pos = 0
    for match in _SPLIT.finditer(text):
        if match.start() > pos:  # the pattern covers every character; this is a safety net
            pieces.extend(text[pos : match.start()])
        pieces.append(match.group())
        pos = match.end()
    if pos < len(text):
        pieces.extend(text[pos:])
    return pieces


class Tokenizer:
    """Maps text to ids and back; built from a corpus's most frequent pre-tokens."""

    def __init__(self, pieces: Sequence[str]) -> None:
        if len(pieces) > MAX_PIECES:
            raise ValueError(f"at most {MAX_PIECES} word pieces fit below CHAR_BASE, got {len(pieces)}")
        self.pieces: list[str] = [EOT_TEXT, *pieces]
        self.piece_ids: dict[str, int] = {p: i for i, p in enumerate(self.pieces) if i}

    @classmethod
    def train(cls, documents: Iterable[str], *, max_pieces: int = 24000, min_count: int = 1) -> Tokenizer:
        """Keep the most frequent multi-character pre-tokens (ties broken alphabetically)."""
        counts: Counter[str] = Counter()
        for doc in documents:
            counts.update(split(doc))
        ranked = sorted((p for p, c in counts.items() if c >= min_count and len(p) > 1), key=lambda p: (-counts[p], p))
        return cls(ranked[:max_pieces])

    @property
    def n_pieces(self) -> int:
        """Word pieces plus ``<|endoftext|>``: ids ``0 .. n_pieces - 1``."""
        return len(self.pieces)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; unknown pre-tokens fall back to one id per character."""
        ids: list[int] = []
        piece_ids = self.piece_ids
        for piece in split(text):
            pid = piece_ids.get(piece)
            if pid is not None:
                ids.append(pid)
            elif piece[0] == " " and piece[1:] in piece_ids:
                ids.append(CHAR_BASE + 32)
                ids.append(piece_ids[piece[1:]])
            else:
                ids.extend(CHAR_BASE + ord(ch) for ch in piece)
        return ids

    def token(self, token_id: int) -> str:
        """The text of one token (``<|endoftext|>`` for the separator)."""
        if token_id >= CHAR_BASE:
            return chr(token_id - CHAR_BASE)
        return self.pieces[token_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a token sequence; ``<|endoftext|>`` tokens are kept as their marker text."""
        return "".join(self.token(i) for i in ids)

    def is_valid(self, token_id: int) -> bool:
        """True for ids that denote a token: a known piece or a non-surrogate character."""
        if token_id < 0 or token_id >= ID_LIMIT:
            return False
        if token_id < CHAR_BASE:
            return token_id < len(self.pieces)
        return token_id not in _SURROGATES

    @property
    def n_valid(self) -> int:
        """How many ids are valid: the size of the vocabulary the model normalises over."""
        return len(self.pieces) + 0x110000 - len(_SURROGATES)
