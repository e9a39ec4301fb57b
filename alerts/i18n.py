"""The pages in French or English: English text is the key, French comes from alerts/data/ui_fr.json."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LANGUAGES = ("fr", "en")


@cache
def _french() -> dict[str, str]:
    data = json.loads((Path(__file__).parent / "data" / "ui_fr.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def translate(text: str, language: str) -> str:
    """The text in the page's language; English (the key) when there is no translation."""
    if language == "fr":
        return _french().get(text, text)
    return text
