"""Every text the service sends fits one GSM-7 segment, in every language, with realistic fields."""

import pytest

from alerts.sms import is_gsm7, segments, to_gsm7
from alerts.texts import _catalogue, render

FIELDS = {
    "number": 12345,
    "name": "Jean-Baptiste Kambale",
    "category": "VIOLENCE SEXUELLE",
    "place": "Kanyabayonga",
    "count": ", 150 pers.",
    "reports": 12,
    "time": "23:59",
    "status": "false_alarm",
    "phone": "+243815550101",
    "village": "Kanyabayonga",
}


@pytest.mark.parametrize("key", sorted(_catalogue()))
@pytest.mark.parametrize("language", ["fr", "en", "sw", "ln", "rw"])
def test_each_text_is_one_gsm7_segment(key, language):
    text = render(key, language, **FIELDS)
    assert is_gsm7(text), text
    assert segments(text) == 1, (len(text), text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("é" * 160, 1),
        ("[" * 80, 1),
        ("[" * 81, 2),
        ("ŝ" * 70, 1),
        ("ŝ" * 71, 2),
    ],
)
def test_segments_count_septets_and_ucs2(text, expected):
    assert segments(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alerte reçue à Oïcha", "Alerte recue à Oicha"),  # à is GSM-7; ç and ï are not
        ("l’attaque — “vite”", 'l\'attaque - "vite"'),
        ("ok", "ok"),
    ],
)
def test_text_is_folded_into_gsm7(text, expected):
    assert to_gsm7(text) == expected
    assert is_gsm7(to_gsm7(text))
