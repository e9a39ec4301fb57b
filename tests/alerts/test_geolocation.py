"""Offline geolocation: gazetteer names, typos, namesakes, explicit coordinates, home fallback and zones."""

from __future__ import annotations

import random

import pytest
from geopy.distance import geodesic

from alerts.geolocation import (
    Gazetteer,
    LocatedBy,
    Location,
    PlaceRecord,
    ZoneArea,
    approx_km,
    geodesic_km,
    zone_for_point,
)
from alerts.parsing import load_keywords, parse_message

PLACES = [
    PlaceRecord(1, "Goma", -1.6792, 29.2228, "Nord-Kivu", "Goma"),
    PlaceRecord(2, "Sake", -1.5739, 29.0434, "Nord-Kivu", "Masisi", ("Saké",)),
    PlaceRecord(3, "Kitchanga", -1.1800, 28.9200, "Nord-Kivu", "Masisi", ("Kitshanga", "Kichanga")),
    PlaceRecord(4, "Mweso", -1.1000, 28.9400, "Nord-Kivu", "Masisi", ("Mweso-Mokoto",)),
    PlaceRecord(5, "Masisi", -1.4000, 28.8167, "Nord-Kivu", "Masisi", ("Masisi-Centre",)),
    PlaceRecord(6, "Nyabiondo", -1.3700, 28.7600, "Nord-Kivu", "Masisi"),
    PlaceRecord(7, "Rutshuru", -1.1856, 29.4486, "Nord-Kivu", "Rutshuru", ("Rutshuru-Centre",)),
    PlaceRecord(8, "Kiwanja", -1.1600, 29.4700, "Nord-Kivu", "Rutshuru"),
    PlaceRecord(9, "Bunagana", -1.2800, 29.6000, "Nord-Kivu", "Rutshuru"),
    PlaceRecord(10, "Bambu", -1.0800, 29.2700, "Nord-Kivu", "Rutshuru", ("Bambo",)),
    PlaceRecord(11, "Kanyabayonga", -0.7000, 29.1800, "Nord-Kivu", "Lubero"),
    PlaceRecord(12, "Beni", 0.4911, 29.4731, "Nord-Kivu", "Beni"),
    PlaceRecord(13, "Oicha", 0.7000, 29.5200, "Nord-Kivu", "Beni", ("Oïcha",)),
    PlaceRecord(14, "Eringeti", 0.8000, 29.6300, "Nord-Kivu", "Beni"),
    PlaceRecord(15, "Mbau", 0.6000, 29.4800, "Nord-Kivu", "Beni"),
    PlaceRecord(16, "Pinga", -0.9900, 28.6300, "Nord-Kivu", "Walikale"),
    PlaceRecord(17, "Kalungu", -1.5200, 28.9500, "Nord-Kivu", "Masisi"),
    PlaceRecord(18, "Kalungu", -2.9500, 28.9000, "Sud-Kivu", "Walungu"),
    PlaceRecord(19, "Walikale", -1.4200, 28.0500, "Nord-Kivu", "Walikale", ("Walikale-Centre",)),
    PlaceRecord(20, "Na", -1.0000, 29.0000, "Nord-Kivu", "Test"),
]
GAZETTEER = Gazetteer(PLACES)
MASISI = (-1.4, 28.8167)
RUTSHURU = (-1.1856, 29.4486)
BENI = (0.4911, 29.4731)
WALIKALE = (-1.3, 28.2)
LUBERO = (-0.9, 29.2)
SOUTH = (-2.63, 28.66)


def locate(words: tuple[str, ...], home: tuple[float, float] | None = MASISI, **kwargs: float) -> Location:
    """Locate place words with no explicit coordinates."""
    return GAZETTEER.locate(words, None, home, **kwargs)


@pytest.mark.parametrize(
    ("words", "home", "place_id"),
    [
        (("kitchanga",), MASISI, 3),
        (("Kitchanga",), MASISI, 3),
        (("KITCHANGA",), MASISI, 3),
        (("kitshanga",), MASISI, 3),
        (("kichanga",), MASISI, 3),
        (("saké",), MASISI, 2),
        (("sake",), MASISI, 2),
        (("oïcha",), BENI, 13),
        (("oicha",), BENI, 13),
        (("bambo",), RUTSHURU, 10),
        (("masisi centre",), MASISI, 5),
        (("masisi-centre",), MASISI, 5),
        (("masisicentre",), MASISI, 5),
        (("mweso mokoto",), MASISI, 4),
        (("Mweso-Mokoto",), MASISI, 4),
        (("rutshuru centre", "rutshuru"), RUTSHURU, 7),
        (("walikale",), WALIKALE, 19),
        (("nourris", "pinga"), MASISI, 16),
        (("kitchanga ce matin", "kitchanga ce", "kitchanga"), MASISI, 3),
    ],
)
def test_names_and_alternate_names_match_exactly_whatever_the_accents_and_case(
    words: tuple[str, ...], home: tuple[float, float], place_id: int
) -> None:
    found = locate(words, home)
    assert found.located_by is LocatedBy.GAZETTEER
    assert found.place_id == place_id
    assert found.confidence >= 0.8


@pytest.mark.parametrize(
    ("word", "home", "place_id"),
    [
        ("kitchnga", MASISI, 3),
        ("kitchangaa", MASISI, 3),
        ("kichnga", MASISI, 3),
        ("kiwandja", RUTSHURU, 8),
        ("kiwnja", RUTSHURU, 8),
        ("nyabyondo", MASISI, 6),
        ("nyabiondoo", MASISI, 6),
        ("bunangana", RUTSHURU, 9),
        ("bunagna", RUTSHURU, 9),
        ("kanyabayoga", LUBERO, 11),
        ("kanyabayonaga", LUBERO, 11),
        ("erengeti", BENI, 14),
        ("eringetti", BENI, 14),
        ("oisha", BENI, 13),
        ("rutshru", RUTSHURU, 7),
        ("rutchuru", RUTSHURU, 7),
        ("walikal", WALIKALE, 19),
        ("mwesso", MASISI, 4),
    ],
)
def test_typos_in_place_names_are_tolerated(word: str, home: tuple[float, float], place_id: int) -> None:
    found = locate((word,), home)
    assert found.located_by is LocatedBy.GAZETTEER
    assert found.place_id == place_id
    assert 0.0 < found.confidence < 0.9
    assert word in found.note


@pytest.mark.parametrize(
    ("home", "admin1"),
    [
        (MASISI, "Nord-Kivu"),
        (SOUTH, "Sud-Kivu"),
        ((-1.6792, 29.2228), "Nord-Kivu"),
        ((-3.2, 28.8), "Sud-Kivu"),
    ],
)
def test_a_name_shared_by_two_places_resolves_to_the_one_nearest_home(
    home: tuple[float, float], admin1: str
) -> None:
    found = locate(("kalungu",), home)
    assert found.place_name == "Kalungu"
    assert PLACES[found.place_id - 1].admin1 == admin1
    assert "2 candidates" in found.note
    assert "nearest to home" in found.note


def test_a_shared_name_without_a_home_is_taken_with_low_confidence() -> None:
    found = locate(("kalungu",), None)
    assert found.place_name == "Kalungu"
    assert found.confidence < 0.6
    assert "no home" in found.note


@pytest.mark.parametrize(
    ("words", "home"),
    [
        ((), MASISI),
        (("nourris",), MASISI),
        (("ns",), MASISI),
        (("xyzzy", "blorf"), RUTSHURU),
        (("nax", "yax"), MASISI),
    ],
)
def test_no_known_place_falls_back_to_home_and_says_so(
    words: tuple[str, ...], home: tuple[float, float]
) -> None:
    found = locate(words, home)
    assert found.located_by is LocatedBy.HOME
    assert (found.lat, found.lon) == home
    assert found.place_id is None
    assert found.distance_from_home_km == 0.0
    assert "home" in found.note


def test_no_place_and_no_home_gives_no_location() -> None:
    found = locate(("xyzzy",), None)
    assert found.located_by is LocatedBy.NONE
    assert found.lat is None
    assert found.lon is None
    assert found.confidence == 0.0


@pytest.mark.parametrize(
    ("words", "home"),
    [
        (("kitchanga",), MASISI),
        (("xyzzy",), MASISI),
        (("kalungu",), SOUTH),
        ((), None),
    ],
)
def test_explicit_coordinates_win_over_place_names_and_home(
    words: tuple[str, ...], home: tuple[float, float] | None
) -> None:
    found = GAZETTEER.locate(words, (-1.39, 28.81), home)
    assert found.located_by is LocatedBy.COORDINATES
    assert (found.lat, found.lon) == (-1.39, 28.81)
    assert found.confidence >= 0.9
    assert (found.distance_from_home_km is None) == (home is None)


@pytest.mark.parametrize(
    ("word", "home"),
    [
        ("erengeti", MASISI),
        ("kanyabayoga", SOUTH),
        ("bunangana", BENI),
    ],
)
def test_a_fuzzy_match_far_from_home_is_not_taken_silently(word: str, home: tuple[float, float]) -> None:
    found = locate((word,), home, max_fuzzy_km=60.0)
    assert found.located_by is LocatedBy.HOME
    assert "rejected" in found.note
    assert "km from home" in found.note


def test_a_fuzzy_match_without_a_home_is_kept_with_low_confidence() -> None:
    found = locate(("erengeti",), None)
    assert found.place_id == 14
    assert found.confidence < 0.5
    assert "no home" in found.note


def test_an_exact_match_far_from_home_is_kept_but_flagged() -> None:
    found = locate(("eringeti",), MASISI)
    assert found.place_id == 14
    assert found.confidence < 0.9 * 0.8
    assert "far from home" in found.note


def test_widening_the_fuzzy_radius_accepts_a_distant_typo() -> None:
    assert locate(("erengeti",), MASISI, max_fuzzy_km=500.0).place_id == 14


def test_an_exact_match_beats_a_fuzzy_one_on_an_earlier_word() -> None:
    assert locate(("kitchnga", "mweso"), MASISI).place_id == 4


@pytest.mark.parametrize("word", ["na", "ya", "i", "a", "mu", "ku"])
def test_short_place_names_are_only_matched_exactly(word: str) -> None:
    found = locate((word + "x",), MASISI)
    assert found.located_by is LocatedBy.HOME


def test_the_note_explains_a_gazetteer_match() -> None:
    found = locate(("kichanga",), (-1.2, 28.95))
    assert found.note.startswith("gazetteer: 'kichanga' = Kitchanga (alt name), 1 of 1 candidates")
    assert "km from home" in found.note
    assert found.distance_from_home_km == pytest.approx(geodesic_km((-1.2, 28.95), (-1.18, 28.92)))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (MASISI, RUTSHURU),
        (MASISI, BENI),
        ((-1.52, 28.95), (-2.95, 28.90)),
        ((0.0, 29.0), (0.01, 29.01)),
    ],
)
def test_the_cheap_distance_is_within_one_percent_of_geodesic(
    a: tuple[float, float], b: tuple[float, float]
) -> None:
    assert approx_km(a, b) == pytest.approx(geodesic_km(a, b), rel=0.01)


def test_the_geodesic_distance_is_geopys_to_the_last_digit() -> None:
    rng = random.Random(7)
    pairs = [
        (MASISI, RUTSHURU),
        (MASISI, MASISI),
        ((0.0, 0.0), (0.0, 180.0)),
        ((-89.9, 10.0), (89.9, -170.0)),
    ]
    for _ in range(500):
        lat, lon = rng.uniform(-3.0, 1.0), rng.uniform(27.0, 31.0)  # the Kivus, a village to a province apart
        pairs.append(((lat, lon), (lat + rng.uniform(-2, 2) * rng.random() ** 3, lon + rng.uniform(-2, 2))))
    pairs += [
        ((rng.uniform(-90, 90), rng.uniform(-180, 180)), (rng.uniform(-90, 90), rng.uniform(-180, 180)))
        for _ in range(200)
    ]
    for a, b in pairs:
        assert geodesic_km(a, b) == geodesic(a, b).km, (a, b)


# --- parser and gazetteer together ----

KEYWORDS = load_keywords()


@pytest.mark.parametrize(
    ("text", "home", "place_id"),
    [
        ("ATTAQUE a Kitchanga ce matin, 20 hommes armes", MASISI, 3),
        ("attaque a kichnga svp", MASISI, 3),
        ("Mapigano makali karibu na Kitshanga tangu jana", MASISI, 3),
        ("Nyumba zimechomwa moto Bambo usiku", RUTSHURU, 10),
        ("hommes armés signalés à Kalungu", MASISI, 17),
        ("hommes armés signalés à Kalungu", SOUTH, 18),
        ("la population fuit Kanyabayonga vers Kayna", RUTSHURU, 11),
        ("Watu wanakimbia kutoka Kiwanja kwenda Rutshuru", RUTSHURU, 8),
        ("babomi bato mibale na Oisha", BENI, 13),
        ("abantu bitwaje intwaro bageze i Nyabyondo", MASISI, 6),
        ("gunfire heard near Erengeti", BENI, 14),
        ("attaque a Mweso-Mokoto", MASISI, 4),
        ("ATTAQUE A MASISI CENTRE", MASISI, 5),
        ("enlevement au champ ku Kiwandja", RUTSHURU, 8),
    ],
)
def test_parsed_place_words_locate_the_alert(text: str, home: tuple[float, float], place_id: int) -> None:
    parsed = parse_message(text, KEYWORDS)
    assert GAZETTEER.locate(parsed.place_words, parsed.coordinates, home).place_id == place_id


@pytest.mark.parametrize(
    "text",
    [
        "attaq ds notre village, bcp de coups de feu",
        "watu wenye silaha wameonekana karibu na kijiji",
        "bato ya mindoki na mboka",
        "armed men in the village last night",
    ],
)
def test_a_text_naming_no_place_is_placed_at_home(text: str) -> None:
    parsed = parse_message(text, KEYWORDS)
    assert GAZETTEER.locate(parsed.place_words, parsed.coordinates, MASISI).located_by is LocatedBy.HOME


def test_real_names_still_resolve_among_ten_thousand_generated_places() -> None:
    """Speed is measured in bench/bench_parse.py; here, that a large gazetteer does not blur the matches."""
    rng = random.Random(7)
    syllables = ["ka", "ki", "mu", "ba", "nya", "ru", "sha", "nga", "mbo", "lu", "ge", "to", "wa", "ndu"]
    places = list(PLACES)
    while len(places) < 10_000:
        name = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        places.append(PlaceRecord(len(places) + 1, name, rng.uniform(-3, 1), rng.uniform(27.8, 30)))
    gazetteer = Gazetteer(places)
    for words, expected in (
        (("kitchanga",), "Kitchanga"),
        (("kitshanga",), "Kitchanga"),
        (("masisi",), "Masisi"),
    ):
        location = gazetteer.locate(words, None, MASISI)
        assert location.place_name == expected, words
        assert location.located_by is LocatedBy.GAZETTEER


# --- zones ----

ZONES = [
    ZoneArea(1, "Goma", -1.6792, 29.2228, 40.0),
    ZoneArea(2, "Rutshuru", -1.1856, 29.4486, 35.0),
    ZoneArea(3, "Beni", 0.4911, 29.4731, 50.0),
    ZoneArea(
        4,
        "Masisi polygon",
        -1.4,
        28.8167,
        1.0,
        ((-1.0, 28.5), (-1.0, 29.05), (-1.6, 29.05), (-1.6, 28.5)),
    ),
]


@pytest.mark.parametrize(
    ("point", "zone_id"),
    [
        ((-1.6792, 29.2228), 1),
        ((-1.70, 29.20), 1),
        ((-1.16, 29.47), 2),
        ((0.70, 29.52), 3),
        ((-1.18, 28.92), 4),
        ((-1.40, 28.80), 4),
        ((-1.10, 28.60), 4),
        ((-1.55, 29.04), 1),
        ((-1.45, 29.30), 1),
        ((-4.0, 29.0), 1),
        ((1.5, 29.8), 3),
    ],
)
def test_zone_for_point_finds_the_zone_holding_the_point_or_the_nearest(
    point: tuple[float, float], zone_id: int
) -> None:
    zone = zone_for_point(point[0], point[1], ZONES)
    assert zone is not None
    assert zone.id == zone_id


def test_when_two_circles_overlap_the_nearest_centre_wins() -> None:
    zones = [ZoneArea(1, "A", 0.0, 29.0, 100.0), ZoneArea(2, "B", 0.0, 29.5, 100.0)]
    assert zone_for_point(0.0, 29.4, zones).id == 2
    assert zone_for_point(0.0, 29.1, zones).id == 1


def test_a_polygon_decides_containment_even_far_from_its_centre() -> None:
    zones = [
        ZoneArea(1, "long strip", 0.0, 29.0, 1.0, ((0.0, 28.0), (0.0, 31.0), (0.1, 31.0), (0.1, 28.0))),
        ZoneArea(2, "circle", 0.05, 30.9, 5.0),
    ]
    assert zone_for_point(0.05, 30.5, zones).id == 1


def test_no_zones_means_no_zone() -> None:
    assert zone_for_point(-1.0, 29.0, []) is None
