"""The texts the service sends, in the recipient's language, from alerts/data/messages.json."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DEFAULT_LANGUAGE = "fr"


@cache
def _catalogue() -> dict[str, dict[str, str]]:
    path = Path(__file__).parent / "data" / "messages.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if not key.startswith("_")}


def render(key: str, language: str | None, **fields: Any) -> str:
    """The text `key` in `language` (French when missing), with its fields filled in."""
    variants = _catalogue()[key]
    template = variants.get(language or DEFAULT_LANGUAGE) or variants[DEFAULT_LANGUAGE]
    return template.format(**fields)
