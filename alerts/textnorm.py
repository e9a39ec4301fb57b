"""Text normalisation for SMS alerts: accent folding, tokens with offsets, spelling skeletons."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_WORD_RE = re.compile(r"[^\W_]+(?:['’‘`´ʼ][^\W_]+)*")
_APOSTROPHE_RE = re.compile(r"['’‘`´ʼ]")
_ALNUM_SPLIT_RE = re.compile(r"\d+|[^\W\d_]+")
_SPACE_RE = re.compile(r"\s+")

# Spelling variants that Bantu place names take in French, English and local orthographies.
_SKELETON_RULES: tuple[tuple[str, str], ...] = (
    ("tch", "c"),
    ("tsh", "c"),
    ("ch", "c"),
    ("sh", "c"),
    ("dj", "j"),
    ("dz", "z"),
    ("ph", "f"),
    ("ou", "u"),
    ("y", "i"),
    ("w", "u"),
    ("k", "c"),
    ("q", "c"),
)


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a message: folded text, its span in the source, and how it was written."""

    text: str
    start: int
    end: int
    capitalised: bool = False
    glued: bool = False


@lru_cache(maxsize=65536)
def strip_accents(text: str) -> str:
    """Remove diacritics (é→e, ï→i) so unaccented SMS spellings compare equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def fold(text: str) -> str:
    """Accent-fold, casefold and collapse whitespace: the comparison form of any text."""
    return _SPACE_RE.sub(" ", strip_accents(text).casefold()).strip()


def _is_elision(head: str) -> bool:
    """Tell whether the part before an apostrophe is an elided article (l', d', qu', w')."""
    return len(head) == 1 or head.endswith("qu")


def _split_apostrophes(word: str, start: int) -> list[tuple[str, int]]:
    """Drop elided articles (d'hommes → hommes) and join other apostrophes (ng'ombe → ngombe)."""
    parts = _APOSTROPHE_RE.split(word)
    if len(parts) == 1:
        return [(word, start)]
    out: list[tuple[str, int]] = []
    offset = start
    pending = ""
    pending_start = start
    for i, part in enumerate(parts):
        is_last = i == len(parts) - 1
        if not pending and not is_last and _is_elision(strip_accents(part).casefold()):
            offset += len(part) + 1
            continue
        if not pending:
            pending_start = offset
        pending += part
        offset += len(part) + 1
    if pending:
        out.append((pending, pending_start))
    return out


def tokenize(text: str) -> tuple[Token, ...]:
    """Split a message into folded tokens with source offsets; digits and letters are split apart."""
    tokens: list[Token] = []
    for match in _WORD_RE.finditer(text):
        for word, word_start in _split_apostrophes(match.group(), match.start()):
            first = True
            for piece in _ALNUM_SPLIT_RE.finditer(word):
                raw = piece.group()
                folded = strip_accents(raw).casefold()
                if not folded:
                    continue
                tokens.append(
                    Token(
                        text=folded,
                        start=word_start + piece.start(),
                        end=word_start + piece.end(),
                        capitalised=raw[:1].isupper(),
                        glued=not first,
                    )
                )
                first = False
    return tuple(tokens)


def fold_words(text: str) -> tuple[str, ...]:
    """Fold and tokenise a phrase the same way messages are tokenised."""
    return tuple(token.text for token in tokenize(text))


def phrase_key(text: str) -> str:
    """The canonical lookup form of a phrase or place name: folded tokens joined by one space."""
    return " ".join(fold_words(text))


@lru_cache(maxsize=65536)
def skeleton(text: str) -> str:
    """A spelling-tolerant key: Kitchanga, Kitshanga and Kichanga share one skeleton."""
    key = "".join(ch for ch in fold(text) if ch.isalnum())
    for old, new in _SKELETON_RULES:
        key = key.replace(old, new)
    squeezed: list[str] = []
    for ch in key:
        if not squeezed or squeezed[-1] != ch:
            squeezed.append(ch)
    return "".join(squeezed)
