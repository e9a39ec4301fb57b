"""Logging that never shows a phone number in clear, even where a caller forgets to mask one."""

from __future__ import annotations

import logging
import re

from alerts.phones import mask_phone

# Eight or more digits, optionally after a + and separated by single spaces or dots, look like a phone
# number; dashes and colons are left alone so that dates and times stay readable.
_PHONE_LIKE = re.compile(r"(?<![\w.])\+?\d(?:[ .]?\d){7,14}(?!\w)")


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
    # One line a second per job is noise; job errors still come through at ERROR.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
