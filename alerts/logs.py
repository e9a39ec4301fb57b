"""Logging that never shows a phone number in clear, even where a caller forgets to mask one."""

from __future__ import annotations

import logging
import re

from alerts.phones import mask_phone

# Runs of 8 or more digits, optionally with a leading + and separators, look like phone numbers.
_PHONE_LIKE = re.compile(r"\+?\d[\d \-.]{6,}\d")


class RedactPhonesFilter(logging.Filter):
    """Masks anything that looks like a phone number in a record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _PHONE_LIKE.sub(lambda m: mask_phone(m.group(0)), message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Install one handler on the root logger with the redacting filter (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(f, RedactPhonesFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactPhonesFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
