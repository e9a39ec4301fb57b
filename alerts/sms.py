"""SMS text arithmetic: GSM-7 versus UCS-2, segment counting, and folding text into GSM-7 where possible."""

from __future__ import annotations

import unicodedata

# The GSM 03.38 default alphabet; the extension table costs two septets a character.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
_REPLACEMENTS = {"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "«": '"', "»": '"'}


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


def to_gsm7(text: str) -> str:
    """Replace characters that would force UCS-2 (curly quotes, most accents) by their plain forms."""
    out = []
    for char in text:
        if char in GSM7_BASIC or char in GSM7_EXTENDED:
            out.append(char)
            continue
        char = _REPLACEMENTS.get(char, char)
        folded = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        out.append(folded if is_gsm7(folded) else "?")
    return "".join(out)


def segments(text: str) -> int:
    """How many SMS segments a text costs (160/153 septets in GSM-7, 70/67 characters in UCS-2)."""
    if is_gsm7(text):
        septets = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)  # UTF-16 code units
    return 1 if units <= 70 else -(-units // 67)
