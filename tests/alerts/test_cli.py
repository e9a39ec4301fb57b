"""The flask commands an operator runs: imports and the demo network."""

from sqlalchemy import func, select

from alerts.models import EscalationPolicy, FocalPoint, Place, Responder, User, Zone


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_places_import_command_reports_counts(app, session, tmp_path):
    path = tmp_path / "places.csv"
    path.write_text("name,lat,lon,admin1,admin2,alt_names\nMweso,-1.1,28.94,Nord-Kivu,Masisi,Mweso-Mokoto\n")
    result = app.test_cli_runner().invoke(args=["places", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 created, 0 updated, 0 unchanged" in result.output
    assert _count(session, Place) == 1


def test_a_bad_file_exits_non_zero_names_the_line_and_imports_nothing(app, session, tmp_path):
    path = tmp_path / "zones.csv"
    path.write_text("name,lat,lon,radius_km\nGoma,-1.68,29.22,30\nMasisi,-1.4,28.8,-5\n")
    result = app.test_cli_runner().invoke(args=["zones", "import", str(path)])
    assert result.exit_code != 0
    assert "line 3: radius_km '-5' is out of range" in result.output
    assert "nothing imported" in result.output
    assert _count(session, Zone) == 0


def test_all_four_import_commands_exist(app):
    runner = app.test_cli_runner()
    for group in ("places", "zones", "focal-points", "responders"):
        result = runner.invoke(args=[group, "import", "--help"])
        assert result.exit_code == 0, group


def test_demo_seeds_a_network_and_prints_the_coordinator_password_once(app, session):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    assert "coordinator login: coordinator / " in first.output
    counts = {m.__name__: _count(session, m) for m in (Place, Zone, FocalPoint, Responder, User)}
    assert counts["Zone"] >= 5
    assert counts["FocalPoint"] >= 24
    assert {t for (t,) in session.execute(select(Responder.tier).distinct())} == {1, 2, 3}
    assert _count(session, EscalationPolicy) == 4

    second = runner.invoke(args=["demo"])
    assert second.exit_code == 0, second.output
    assert "coordinator / " not in second.output
    assert {m.__name__: _count(session, m) for m in (Place, Zone, FocalPoint, Responder, User)} == counts


def test_every_demo_focal_point_lives_inside_its_zone(app, session):
    from geopy.distance import geodesic

    app.test_cli_runner().invoke(args=["demo"])
    for focal_point in session.scalars(select(FocalPoint)):
        zone = focal_point.zone
        distance = geodesic((focal_point.home_lat, focal_point.home_lon), (zone.lat, zone.lon)).km
        assert distance <= zone.radius_km, focal_point.name
