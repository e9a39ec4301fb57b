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


def test_parse_reads_json_lines_and_writes_one_located_line_for_each(app, tmp_path):
    import json

    runner = app.test_cli_runner()
    places = tmp_path / "places.csv"
    places.write_text(
        "name,lat,lon,admin1,admin2,alt_names\n"
        "Kitchanga,-1.18,28.92,Nord-Kivu,Masisi,Kitshanga\n"
        "Kalungu,-1.52,28.95,Nord-Kivu,Masisi,\n"
        "Kalungu,-2.95,28.90,Sud-Kivu,Walungu,\n"
    )
    assert runner.invoke(args=["places", "import", str(places)]).exit_code == 0
    lines = [
        {"text": "Attaque a Kitshanga, 20 hommes armes", "near": [-1.4, 28.8]},
        {"text": "pillage a Kalungu", "near": [-2.9, 28.9]},
        {"text": "watu wawili wameuawa", "near": [-1.18, 28.92]},
        {"text": "OK 123", "near": None},
        {"text": "Bonjour, votre solde est de 0 FC", "near": None},
    ]
    result = runner.invoke(args=["parse"], input="\n".join(json.dumps(x) for x in lines) + "\n")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.output.splitlines()]
    keys = {
        "kind",
        "category",
        "severity",
        "count",
        "place",
        "lat",
        "lon",
        "located_by",
        "command",
        "ref",
        "language",
    }
    assert all(set(row) == keys for row in out)
    assert (out[0]["category"], out[0]["count"], out[0]["place"], out[0]["located_by"]) == (
        "attack",
        20,
        "Kitchanga",
        "gazetteer",
    )
    assert out[1]["lat"] == -2.95  # the Kalungu nearest the sender
    assert (out[2]["category"], out[2]["count"], out[2]["located_by"]) == ("killing", 2, "home")
    assert (out[3]["kind"], out[3]["command"], out[3]["ref"], out[3]["category"]) == (
        "command",
        "ack",
        123,
        None,
    )
    assert out[4]["kind"] == "unknown"


def test_parse_reports_unreadable_lines_and_carries_on(app):
    result = app.test_cli_runner().invoke(
        args=["parse"], input='not json\n{"text": "OK 5"}\n{"near": [1, 2]}\n'
    )
    assert result.exit_code != 0
    rows = result.output.splitlines()
    assert rows[0].startswith('{"error": "line 1: ')
    assert '"ref": 5' in rows[1]
    assert "line 3" in rows[2]
