"""Phone numbers: E.164 in, masked out."""

import pytest

from alerts.phones import InvalidPhone, mask_phone, to_e164


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+243815550101", "CD", "+243815550101"),
        ("0815550101", "CD", "+243815550101"),
        ("00243 81 555 0101", "CD", "+243815550101"),
        ("+243 (81) 555-0101", "CD", "+243815550101"),
        ("0772123456", "UG", "+256772123456"),
        ("0788123456", "RW", "+250788123456"),
        ("+256772123456", "CD", "+256772123456"),
    ],
)
def test_numbers_are_normalised_to_e164(raw, region, expected):
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "hello", "12345", "+243 1", "+99912345678"])
def test_impossible_numbers_are_refused(raw):
    with pytest.raises(InvalidPhone):
        to_e164(raw, "CD")


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+243815550101", "+243******101"),
        ("0815550101", "*******101"),
        ("1234", "****"),
    ],
)
def test_masking_keeps_only_the_country_and_the_last_digits(phone, expected):
    assert mask_phone(phone) == expected
