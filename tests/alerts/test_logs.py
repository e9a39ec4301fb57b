"""Logs never carry a phone number in clear."""

import logging

from alerts.logs import RedactPhonesFilter


def _format(message, *args):
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, None)
    RedactPhonesFilter().filter(record)
    return record.getMessage()


def test_a_phone_number_passed_as_an_argument_is_masked():
    assert _format("from %s", "+243815550101") == "from +243******101"


def test_a_phone_number_inside_the_message_is_masked():
    assert "815550101" not in _format("sender 0815550101 rejected")


def test_ordinary_numbers_stay_readable():
    assert _format("incident %d: %d reports in %s ms", 123, 4, "12.5") == "incident 123: 4 reports in 12.5 ms"


def test_dates_and_times_stay_readable():
    assert _format("next run at 2026-11-23 11:21:55,827 UTC") == "next run at 2026-11-23 11:21:55,827 UTC"


def test_a_spaced_international_number_is_masked():
    assert "555 0101" not in _format("sender +243 81 555 0101 unknown")
