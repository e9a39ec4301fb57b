"""CSV imports: whole files or nothing, clear errors naming the line, and idempotent."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from alerts.imports import (
    ImportFailed,
    import_focal_points,
    import_places,
    import_responders,
    import_zones,
)
from alerts.models import FocalPoint, Place, Responder, Zone

PLACES = """name,lat,lon,admin1,admin2,alt_names
Kitchanga,-1.18,28.92,Nord-Kivu,Masisi,Kitshanga|Kichanga
Kalungu,-1.52,28.95,Nord-Kivu,Masisi,
Kalungu,-2.95,28.90,Sud-Kivu,Walungu,
"""
ZONES = "name,lat,lon,radius_km\nMasisi,-1.4,28.8167,35\nGoma,-1.6792,29.2228,30\n"


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_places_import_keeps_two_places_of_the_same_name(session):
    result = import_places(session, io.StringIO(PLACES))
    assert (result.created, result.updated, result.unchanged) == (3, 0, 0)
    assert {(p.admin1, p.lat) for p in session.scalars(select(Place).where(Place.name == "Kalungu"))} == {
        ("Nord-Kivu", -1.52),
        ("Sud-Kivu", -2.95),
    }
    kitchanga = session.scalar(select(Place).where(Place.name == "Kitchanga"))
    assert kitchanga.alt_names == "Kitshanga|Kichanga"


@pytest.mark.parametrize(
    ("importer", "text"),
    [
        (import_places, PLACES),
        (import_zones, ZONES),
    ],
)
def test_importing_the_same_file_twice_changes_nothing(session, importer, text):
    first = importer(session, io.StringIO(text))
    second = importer(session, io.StringIO(text))
    assert second.created == 0
    assert second.updated == 0
    assert second.unchanged == first.created


def test_a_changed_row_updates_the_existing_record(session):
    import_zones(session, io.StringIO(ZONES))
    result = import_zones(
        session, io.StringIO(ZONES.replace("Goma,-1.6792,29.2228,30", "Goma,-1.6792,29.2228,45"))
    )
    assert (result.created, result.updated, result.unchanged) == (0, 1, 1)
    assert session.scalar(select(Zone.radius_km).where(Zone.name == "Goma")) == 45


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name,lat,lon,admin1,admin2\nA,1,2,x,y\n", "line 1: missing column(s) alt_names"),
        (PLACES + "Bad,north,28.9,,,\n", "line 5: lat 'north' is not a number"),
        (PLACES + "Far,95,28.9,,,\n", "line 5: lat '95' is out of range"),
        (PLACES + ",-1.1,28.9,,,\n", "line 5: name is empty"),
        (PLACES + "Kitchanga,-1.18,28.92,,,\n", "line 5: same name and position as line 2"),
        (PLACES + "Inf,inf,28.9,,,\n", "line 5: lat 'inf' is out of range"),
    ],
)
def test_a_bad_places_row_is_named_and_nothing_is_imported(session, text, expected):
    with pytest.raises(ImportFailed) as failure:
        import_places(session, io.StringIO(text))
    assert any(error.startswith(expected) for error in failure.value.errors), failure.value.errors
    assert _count(session, Place) == 0


def test_every_bad_row_is_reported_not_only_the_first(session):
    text = "name,lat,lon,radius_km\nA,1,2,0\nB,x,2,5\nC,1,2,5\n"
    with pytest.raises(ImportFailed) as failure:
        import_zones(session, io.StringIO(text))
    assert [e.split(":")[0] for e in failure.value.errors] == ["line 2", "line 3"]
    assert _count(session, Zone) == 0


FOCAL_POINTS = (
    "name,phone,lat,lon,zone,language\n"
    "Amani K,0815550001,-1.18,28.92,Masisi,sw\n"
    "Neema M,+243 81 555 0002,-1.4,28.8,Goma,fr\n"
)


def test_focal_points_are_stored_with_e164_numbers_and_their_zone(session):
    import_zones(session, io.StringIO(ZONES))
    result = import_focal_points(session, io.StringIO(FOCAL_POINTS), default_region="CD")
    assert result.created == 2
    amani = session.scalar(select(FocalPoint).where(FocalPoint.name == "Amani K"))
    assert amani.phone == "+243815550001"
    assert amani.zone.name == "Masisi"
    assert (amani.home_lat, amani.home_lon, amani.language) == (-1.18, 28.92, "sw")
    assert import_focal_points(session, io.StringIO(FOCAL_POINTS)).unchanged == 2


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("X,12345,-1.1,28.9,Masisi,fr", "line 2: phone"),
        ("X,0815550009,-1.1,28.9,Nowhere,fr", "line 2: zone 'Nowhere' does not exist"),
        ("X,0815550009,-1.1,28.9,Masisi,de", "line 2: language 'de'"),
        ("X,0815550009,-1.1,,Masisi,fr", "line 2: lon is empty"),
    ],
)
def test_bad_focal_point_rows_are_refused_whole(session, row, expected):
    import_zones(session, io.StringIO(ZONES))
    text = f"name,phone,lat,lon,zone,language\n{row}\nGood,0815550010,-1.1,28.9,Masisi,fr\n"
    with pytest.raises(ImportFailed) as failure:
        import_focal_points(session, io.StringIO(text))
    assert failure.value.errors[0].startswith(expected), failure.value.errors
    assert _count(session, FocalPoint) == 0


def test_an_error_about_a_phone_never_shows_the_whole_number(session):
    import_zones(session, io.StringIO(ZONES))
    text = "name,phone,lat,lon,zone,language\nX,99912345678901,-1.1,28.9,Masisi,fr\n"
    with pytest.raises(ImportFailed) as failure:
        import_focal_points(session, io.StringIO(text))
    assert "99912345678901" not in str(failure.value)


def test_the_same_phone_twice_in_a_file_is_an_error(session):
    import_zones(session, io.StringIO(ZONES))
    text = (
        "name,phone,lat,lon,zone,language\n"
        "A,0815550001,-1.1,28.9,Masisi,fr\n"
        "B,+243815550001,-1.1,28.9,Masisi,fr\n"
    )
    with pytest.raises(ImportFailed, match="line 3: same phone as line 2"):
        import_focal_points(session, io.StringIO(text))


RESPONDERS = (
    "name,phone,tier,zones,language\nDuty M,0825550001,1,Masisi,fr\nLead G,0825550002,2,Masisi|Goma,en\n"
)


def test_responders_get_their_tier_and_zones(session):
    import_zones(session, io.StringIO(ZONES))
    assert import_responders(session, io.StringIO(RESPONDERS)).created == 2
    lead = session.scalar(select(Responder).where(Responder.tier == 2))
    assert sorted(z.name for z in lead.zones) == ["Goma", "Masisi"]
    again = import_responders(session, io.StringIO(RESPONDERS))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    moved = import_responders(session, io.StringIO(RESPONDERS.replace("Masisi|Goma", "Goma")))
    assert (moved.updated, moved.unchanged) == (1, 1)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("X,0825550009,4,Masisi,fr", "line 2: tier '4'"),
        ("X,0825550009,1,Masisi|Mars,fr", "line 2: zone(s) 'Mars' do not exist"),
        ("X,0825550009,1,,fr", "line 2: zones is empty"),
    ],
)
def test_bad_responder_rows_are_refused_whole(session, row, expected):
    import_zones(session, io.StringIO(ZONES))
    with pytest.raises(ImportFailed) as failure:
        import_responders(session, io.StringIO(f"name,phone,tier,zones,language\n{row}\n"))
    assert failure.value.errors[0].startswith(expected), failure.value.errors
    assert _count(session, Responder) == 0


def test_a_number_cannot_be_both_a_focal_point_and_a_responder(session):
    import_zones(session, io.StringIO(ZONES))
    import_focal_points(session, io.StringIO(FOCAL_POINTS))
    text = "name,phone,tier,zones,language\nX,0815550001,1,Masisi,fr\n"
    with pytest.raises(ImportFailed, match=r"line 2: phone .* is a focal point's"):
        import_responders(session, io.StringIO(text))


def test_a_tier_3_coordinator_needs_no_zones(session):
    import_zones(session, io.StringIO(ZONES))
    text = "name,phone,tier,zones,language\nCoordinator,0825550003,3,,en\n"
    assert import_responders(session, io.StringIO(text)).created == 1
    assert session.scalar(select(Responder).where(Responder.tier == 3)).zones == []
