"""Phone numbers: normalised to E.164 on the way in, masked on the way out to pages and logs."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers


class InvalidPhone(ValueError):
    """A phone number that cannot be a real subscriber number."""


@lru_cache(maxsize=8192)
def to_e164(raw: str, default_region: str = "CD") -> str:
    """Normalise a number as written (local or international) to E.164, or raise InvalidPhone.

    Remembered (an invalid number is not): the same few thousand focal points and our own numbers come
    back with every webhook, and parsing is a good part of the webhook's own cost.
    """
    cleaned = (raw or "").strip()
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    try:
        number = phonenumbers.parse(cleaned, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(phone: str) -> str:
    """Keep the country prefix and the last three digits: '+243*****4567' -> '+243******567'."""
    digits = [c for c in phone if c.isdigit()]
    if len(digits) <= 5:
        return "*" * len(digits)
    head = "+" if phone.strip().startswith("+") else ""
    keep_head = 3 if head else 0
    return head + "".join(digits[:keep_head]) + "*" * (len(digits) - keep_head - 3) + "".join(digits[-3:])
