"""The pages over HTTP: login, CSRF, roles and zones, the log and its refresh, an incident and its actions."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts.auth import MAX_FAILED_LOGINS, create_user
from alerts.models import Incident, IncidentEvent, Place, User
from alerts.states import IncidentStatus
from tests import factories
from tests.alerts.test_pipeline import PLACES, receive
from tests.conftest import T0

PASSWORD = "correct horse battery"


@pytest.fixture
def net(session):
    for name, lat, lon, alt in PLACES:
        session.add(Place(name=name, lat=lat, lon=lon, alt_names=alt))
    from alerts.incidents import next_number

    next_number(session, "places_version")
    built = factories.network(session)
    built["beni"] = factories.zone(session, "Beni", 0.49, 29.47, 40)
    built["beni_responder"] = factories.responder(session, 1, [built["beni"]])
    session.commit()
    for name, role, responder in (
        ("admin", "admin", None),
        ("coord", "coordinator", None),
        ("duty", "responder", built["tier1"][0]),
        ("elsewhere", "responder", built["beni_responder"]),
    ):
        create_user(
            session, name, role, PASSWORD, responder_id=responder.id if responder else None, language="en"
        )
    receive(session, built["focal_point"], "attaque a Mweso, 3 morts")
    session.commit()
    return built


def token(client, path="/login"):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def login(client, username, password=PASSWORD):
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token(client)}
    )


def test_nobody_sees_anything_without_logging_in(client, net):
    for path in (
        "/",
        "/incidents/1",
        "/log/updates",
        "/log.csv",
        "/map",
        "/map/data.json",
        "/network",
        "/response-times",
    ):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login")


def test_a_login_opens_the_log_with_the_incident(client, net):
    assert login(client, "coord").status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert 'id="i1"' in page
    assert "Mweso" in page
    assert "Alert log" in page


def test_a_wrong_password_is_refused_and_repeated_failures_lock_the_account(client, net, session):
    for _ in range(MAX_FAILED_LOGINS):
        assert login(client, "coord", "wrong").status_code == 401
    response = login(client, "coord")
    assert response.status_code == 401
    assert "locked" in response.get_data(as_text=True)
    user = session.scalar(select(User).where(User.username == "coord"))
    assert user.locked_until is not None


def test_an_unknown_user_gets_the_same_answer_as_a_wrong_password(client, net):
    unknown = login(client, "nobody").get_data(as_text=True)
    wrong = login(client, "coord", "nope").get_data(as_text=True)
    assert "wrong username or password" in unknown
    assert "wrong username or password" in wrong


def test_a_form_without_its_csrf_token_is_refused(client, net):
    login(client, "coord")
    response = client.post("/incidents/1/acknowledge", data={})
    assert response.status_code == 400
    response = client.post("/login", data={"username": "coord", "password": PASSWORD})
    assert response.status_code == 400


def test_acknowledging_on_the_page_is_recorded_with_who_did_it(client, net, session):
    login(client, "coord")
    response = client.post("/incidents/1/acknowledge", data={"csrf_token": token(client, "/incidents/1")})
    assert response.status_code == 302
    session.commit()
    event = session.scalar(select(IncidentEvent).where(IncidentEvent.kind == "acknowledged"))
    assert event.actor == "coordinator coord (web)"
    page = client.get("/incidents/1").get_data(as_text=True)
    assert "acknowledged by coordinator coord (web)" in page


def test_notes_resolve_and_false_alarm_from_the_page(client, net, session):
    login(client, "coord")
    csrf = token(client, "/incidents/1")
    client.post("/incidents/1/note", data={"csrf_token": csrf, "note": "called the chief, confirmed"})
    client.post("/incidents/1/resolve", data={"csrf_token": csrf})
    session.commit()
    kinds = session.scalars(select(IncidentEvent.kind).order_by(IncidentEvent.id)).all()
    assert kinds[-2:] == ["note", "resolved"]
    page = client.get("/incidents/1").get_data(as_text=True)
    assert "called the chief, confirmed" in page
    assert 'id="resolve"' not in page


def test_responders_see_their_zones_only(client, net):
    login(client, "elsewhere")
    assert 'id="i1"' not in client.get("/").get_data(as_text=True)
    assert client.get("/incidents/1").status_code == 404
    assert client.post("/incidents/1/acknowledge", data={"csrf_token": token(client, "/")}).status_code == 404
    assert client.get("/log/updates?cursor=0").json["rows"] == []
    client.post("/logout", data={"csrf_token": token(client, "/")})
    login(client, "duty")
    assert client.get("/incidents/1").status_code == 200


@pytest.mark.parametrize(
    ("user", "path", "status"),
    [
        ("duty", "/network", 403),
        ("duty", "/response-times", 403),
        ("coord", "/network", 200),
        ("coord", "/response-times", 200),
        ("admin", "/network", 200),
        ("duty", "/map", 200),
        ("duty", "/map/data.json", 200),
    ],
)
def test_pages_refuse_the_roles_that_may_not_see_them(client, net, user, path, status):
    login(client, user)
    assert client.get(path).status_code == status


def test_merge_and_split_are_for_coordinators_not_responders(client, net):
    login(client, "duty")
    assert (
        client.post("/incidents/1/merge", data={"csrf_token": token(client, "/"), "into": "1"}).status_code
        == 403
    )


def test_phone_numbers_are_masked_except_for_admins(client, net):
    phone = net["focal_point"].phone
    login(client, "coord")
    assert phone not in client.get("/incidents/1").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": token(client, "/")})
    login(client, "admin")
    assert phone in client.get("/incidents/1").get_data(as_text=True)


def test_the_refresh_sends_only_what_changed(client, net, session):
    login(client, "coord")
    cursor = int(re.search(r'data-cursor="(\d+)"', client.get("/").get_data(as_text=True)).group(1))
    quiet = client.get(f"/log/updates?cursor={cursor}")
    assert quiet.json == {"cursor": cursor, "rows": []}
    assert len(quiet.data) < 200
    receive(
        session,
        net["second"] if "second" in net else factories.focal_point(session, net["zone"]),
        "attaque a Rubaya",
        at=T0 + timedelta(minutes=5),
    )
    session.commit()
    changed = client.get(f"/log/updates?cursor={cursor}")
    assert [row["number"] for row in changed.json["rows"]] == [2]
    assert changed.json["rows"][0]["place"] == "Rubaya"
    assert len(changed.data) < 5 * 1024


def test_the_log_page_is_small_on_first_load(client, net, session):
    for minute in range(1, 50):
        receive(
            session,
            factories.focal_point(session, net["zone"]),
            "attaque a Rubaya",
            at=T0 + timedelta(hours=minute * 7),
        )
    session.commit()
    login(client, "coord")
    total = sum(len(client.get(path).data) for path in ("/", "/static/app.css", "/static/log.js"))
    assert total < 100 * 1024


def test_filters_search_and_csv_export(client, net, session):
    receive(
        session, factories.focal_point(session, net["zone"]), "pillage a Rubaya", at=T0 + timedelta(hours=8)
    )
    session.commit()
    login(client, "coord")
    assert 'id="i2"' in client.get("/?q=rubaya").get_data(as_text=True)
    assert 'id="i1"' not in client.get("/?q=rubaya").get_data(as_text=True)
    assert 'id="i1"' in client.get("/?q=1").get_data(as_text=True)
    assert 'id="i2"' not in client.get("/?category=killing").get_data(as_text=True)
    assert 'id="i2"' in client.get(f"/?status={IncidentStatus.OPEN}&severity=high").get_data(as_text=True)
    csv_text = client.get("/log.csv?category=looting").get_data(as_text=True)
    header, *rows = csv_text.strip().splitlines()
    assert header.split(",")[:4] == ["number", "time", "category", "severity"]
    assert [r.split(",")[0] for r in rows] == ["2"]


def test_the_csv_export_shows_a_formula_as_text(client, net, session):
    incident = session.scalars(select(Incident)).first()
    incident.place_name = "=cmd|' /C calc'!A0"  # a village named in an SMS
    session.commit()
    login(client, "coord")

    rows = list(csv.DictReader(io.StringIO(client.get("/log.csv").get_data(as_text=True))))

    row = next(r for r in rows if r["number"] == str(incident.number))
    assert row["place"] == "'=cmd|' /C calc'!A0"
    assert row["lat"] == str(incident.lat)  # a negative coordinate is a number, not a formula


def test_pages_carry_security_headers(client, net):
    login(client, "coord")
    headers = client.get("/").headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_language_is_the_users_choice(client, net):
    login(client, "coord")
    assert "Alert log" in client.get("/").get_data(as_text=True)
    client.post("/language", data={"csrf_token": token(client, "/"), "language": "fr", "next": "/"})
    assert "Journal des alertes" in client.get("/").get_data(as_text=True)


def test_users_create_command_prints_the_password_once(app, session, net):
    result = app.test_cli_runner().invoke(args=["users", "create", "alice", "--role", "coordinator"])
    assert result.exit_code == 0, result.output
    assert "coordinator login: alice / " in result.output
    again = app.test_cli_runner().invoke(args=["users", "create", "alice", "--role", "coordinator"])
    assert "exists already" in again.output


@pytest.mark.parametrize("query", ["q=%C2%B2", "zone=%C2%B2", "q=" + "9" * 20, "q=a%00b", "zone=" + "9" * 30])
def test_odd_search_input_is_not_an_error(client, net, query):
    login(client, "coord")
    assert client.get(f"/?{query}").status_code == 200
    assert client.get(f"/log/updates?cursor=0&{query}").status_code == 200
