"""The JSON API over HTTP: tokens, roles and zones on every route, filters, masking, errors, OpenAPI."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts.api import issue_token
from alerts.auth import create_user
from alerts.incidents import next_number
from alerts.models import Place, User
from tests import factories
from tests.alerts.test_pipeline import PLACES, receive
from tests.conftest import T0

PASSWORD = "correct horse battery"
TEXT = "attaque a Mweso, 3 morts"
ROUTES = (
    "/api/incidents",
    "/api/incidents/1",
    "/api/incidents/1/cap.xml",
    "/api/cap.xml",
    "/api/zones",
    "/api/response-times",
    "/api/network-health",
)


def build_api_net(session):
    """Masisi (incident 1, from a focal point's SMS) and Beni (incident 2); a login and a token per role."""
    for name, lat, lon, alt in PLACES:
        session.add(Place(name=name, lat=lat, lon=lon, alt_names=alt))
    next_number(session, "places_version")
    built = factories.network(session)
    built["beni"] = factories.zone(session, "Beni", 0.49, 29.47, 40)
    built["beni_responder"] = factories.responder(session, 1, [built["beni"]])
    session.commit()
    tokens = {}
    for name, role, responder in (
        ("admin", "admin", None),
        ("coord", "coordinator", None),
        ("duty", "responder", built["tier1"][0]),
        ("elsewhere", "responder", built["beni_responder"]),
    ):
        user, _ = create_user(
            session, name, role, PASSWORD, responder_id=responder.id if responder else None, language="en"
        )
        tokens[name] = issue_token(session, user)
    receive(session, built["focal_point"], TEXT)
    factories.incident(
        session,
        built["beni"],
        severity="high",
        category="looting",
        at=T0 + timedelta(days=2),
        place_name="Oicha",
        lat=0.70,
        lon=29.52,
    )
    session.commit()
    built["tokens"] = tokens
    return built


@pytest.fixture
def api_net(session):
    return build_api_net(session)


def bearer(api_net, who):
    return {"Authorization": f"Bearer {api_net['tokens'][who]}"}


def numbers(response):
    return [row["number"] for row in response.json["incidents"]]


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_refuses_a_request_without_a_token(client, api_net, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.json == {"error": "an API token is required: Authorization: Bearer <token>"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer arl_not-a-token", "Bearer ", "Basic YWRtaW46cGFzcw==", "bearer" + " x" * 300],
)
def test_a_wrong_token_is_refused_as_invalid(client, api_net, header):
    response = client.get("/api/incidents", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json == {"error": "invalid API token"}
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_the_right_token_opens_the_api_whatever_the_case_of_the_scheme(client, api_net):
    token = api_net["tokens"]["coord"]
    assert client.get("/api/incidents", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/incidents", headers={"Authorization": f"bearer  {token}"}).status_code == 200


def test_only_the_tokens_sha256_is_stored_and_a_new_token_replaces_the_old(client, api_net, session):
    old = api_net["tokens"]["coord"]
    user = session.scalar(select(User).where(User.username == "coord"))
    assert user.api_token_hash == hashlib.sha256(old.encode()).hexdigest()
    new = issue_token(session, user)
    assert client.get("/api/zones", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/api/zones", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_a_page_session_does_not_open_the_api(client, api_net):
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": "coord", "password": PASSWORD, "csrf_token": csrf})
    assert client.get("/").status_code == 200
    assert client.get("/api/incidents").status_code == 401


def test_the_api_starts_no_session_and_asks_not_to_be_cached(client, api_net):
    response = client.get("/api/incidents", headers=bearer(api_net, "admin"))
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def test_the_users_token_command_prints_a_token_once_and_stores_its_hash(app, api_net, session):
    result = app.test_cli_runner().invoke(args=["users", "token", "duty"])
    assert result.exit_code == 0, result.output
    token = re.search(r"API token for duty: (\S+)", result.output).group(1)
    session.expire_all()
    stored = session.scalar(select(User.api_token_hash).where(User.username == "duty"))
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored
    missing = app.test_cli_runner().invoke(args=["users", "token", "nobody"])
    assert missing.exit_code != 0
    assert "no user 'nobody'" in missing.output


# Who may see what: (token, path, status). "elsewhere" is a responder of Beni; incident 1 is in Masisi.
ACCESS = [
    *[(who, "/api/incidents", 200) for who in ("admin", "coord", "duty", "elsewhere")],
    *[(who, "/api/zones", 200) for who in ("admin", "coord", "duty", "elsewhere")],
    *[(who, "/api/cap.xml", 200) for who in ("admin", "coord", "duty", "elsewhere")],
    *[(who, "/api/incidents/1", 200) for who in ("admin", "coord", "duty")],
    *[(who, "/api/incidents/1/cap.xml", 200) for who in ("admin", "coord", "duty")],
    ("elsewhere", "/api/incidents/1", 404),
    ("elsewhere", "/api/incidents/1/cap.xml", 404),
    ("elsewhere", "/api/incidents/2", 200),
    ("duty", "/api/incidents/2", 404),
    *[
        (who, path, 200)
        for who in ("admin", "coord")
        for path in ("/api/response-times", "/api/network-health")
    ],
    *[
        (who, path, 403)
        for who in ("duty", "elsewhere")
        for path in ("/api/response-times", "/api/network-health")
    ],
]


@pytest.mark.parametrize(("who", "path", "status"), ACCESS)
def test_each_route_answers_each_role_and_zone_as_the_pages_do(client, api_net, who, path, status):
    response = client.get(path, headers=bearer(api_net, who))
    assert response.status_code == status
    if status == 403:
        assert response.json == {"error": "this needs a coordinator's or an admin's token"}
    if status == 404:
        assert response.json["error"].startswith("no incident")


@pytest.mark.parametrize(
    ("who", "expected"), [("admin", [2, 1]), ("coord", [2, 1]), ("duty", [1]), ("elsewhere", [2])]
)
def test_the_log_holds_only_the_tokens_zones(client, api_net, who, expected):
    response = client.get("/api/incidents", headers=bearer(api_net, who))
    assert numbers(response) == expected
    assert response.json["total"] == len(expected)


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("admin", ["Beni", "Masisi"]),
        ("coord", ["Beni", "Masisi"]),
        ("duty", ["Masisi"]),
        ("elsewhere", ["Beni"]),
    ],
)
def test_zones_are_the_tokens_zones(client, api_net, who, expected):
    response = client.get("/api/zones", headers=bearer(api_net, who))
    assert [z["name"] for z in response.json["zones"]] == expected


def test_a_responder_asking_for_another_zone_gets_nothing(client, api_net):
    beni = api_net["beni"].id
    response = client.get(f"/api/incidents?zone={beni}", headers=bearer(api_net, "duty"))
    assert response.json["incidents"] == []


def test_a_row_of_the_log_is_the_pages_row(client, api_net):
    [_, row] = client.get("/api/incidents", headers=bearer(api_net, "coord")).json["incidents"]
    assert row["number"] == 1
    assert (row["category"], row["severity"], row["status"]) == ("killing", "critical", "open")
    assert (row["place"], row["zone"], row["reports"]) == ("Mweso", "Masisi", 1)
    assert row["time"] == T0.isoformat()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=open", [2, 1]),
        ("status=resolved", []),
        ("category=looting", [2]),
        ("severity=critical", [1]),
        ("zone={masisi}", [1]),
        ("since=2026-11-24", [2]),
        ("until=2026-11-24", [1]),
        ("since=2026-11-23&until=2026-11-23", [1]),
        ("q=oicha", [2]),
        ("q=%231", [1]),
        ("per_page=1", [2]),
        ("per_page=1&page=2", [1]),
    ],
)
def test_the_log_filters_are_the_pages_filters(client, api_net, query, expected):
    query = query.format(masisi=api_net["zone"].id)
    response = client.get(f"/api/incidents?{query}", headers=bearer(api_net, "coord"))
    assert response.status_code == 200
    assert numbers(response) == expected


def test_paging_says_where_it_is(client, api_net):
    body = client.get("/api/incidents?per_page=1&page=2", headers=bearer(api_net, "coord")).json
    assert (body["page"], body["pages"], body["total"], body["per_page"]) == (2, 2, 2, 1)


@pytest.mark.parametrize(
    "query",
    [
        "per_page=501",
        "per_page=0",
        "page=0",
        "page=x",
        "page=" + "9" * 5000,
        "status=closed",
        "category=weather",
        "severity=extreme",
        "zone=-1",
        "zone=²",
        "since=yesterday",
        "since=2026-11-25&until=2026-11-24",
        "q=" + "x" * 81,
        "q=%00",
        "q=99999999999999999999",
        "q=²",
    ],
)
def test_a_bad_filter_is_a_400_that_says_which(client, api_net, query):
    response = client.get(f"/api/incidents?{query}", headers=bearer(api_net, "coord"))
    assert response.status_code == 400
    assert response.json["error"].split(":")[0] in query


def test_the_end_of_time_is_not_an_error(client, api_net):
    response = client.get(
        "/api/incidents?until=9999-12-31&since=0001-01-01", headers=bearer(api_net, "coord")
    )
    assert numbers(response) == [2, 1]


def test_an_incident_has_its_reports_timeline_and_messages(client, api_net):
    body = client.get("/api/incidents/1", headers=bearer(api_net, "coord")).json
    assert body["incident"]["number"] == 1
    assert body["incident"]["count"] == 3
    assert body["incident"]["merged_into"] is None
    [report] = body["reports"]
    assert report["text"] == TEXT
    assert report["sender"]["name"] == api_net["focal_point"].name
    assert "opened" in [e["kind"] for e in body["events"]]
    assert any(m["purpose"] == "receipt" for m in body["messages"])


def test_phone_numbers_are_masked_except_for_admin_tokens(client, api_net):
    phone = api_net["focal_point"].phone
    for who in ("coord", "duty"):
        body = client.get("/api/incidents/1", headers=bearer(api_net, who))
        assert phone not in body.get_data(as_text=True)
        assert body.json["reports"][0]["sender"]["phone"].endswith(phone[-3:])
        assert "*" in body.json["reports"][0]["sender"]["phone"]
    admin = client.get("/api/incidents/1", headers=bearer(api_net, "admin")).json
    assert admin["reports"][0]["sender"]["phone"] == phone
    assert phone in [m["to"] for m in admin["messages"]]


def test_network_health_masks_numbers_for_coordinators(client, api_net, session):
    silent = factories.focal_point(session, api_net["zone"], name="Silent One", phone="+243810000999")
    session.commit()
    coord = client.get("/api/network-health?days=1", headers=bearer(api_net, "coord"))
    row = next(f for f in coord.json["silent_focal_points"] if f["id"] == silent.id)
    assert row["phone"] != silent.phone
    assert row["phone"].endswith("999")
    assert coord.json["days"] == 1
    admin = client.get("/api/network-health?days=1", headers=bearer(api_net, "admin"))
    assert silent.phone in [f["phone"] for f in admin.json["silent_focal_points"]]
    assert client.get("/api/network-health?days=0", headers=bearer(api_net, "admin")).status_code == 400


def test_response_times_cover_the_days_asked(client, api_net):
    body = client.get(
        "/api/response-times?since=2026-11-20&until=2026-11-23", headers=bearer(api_net, "coord")
    ).json
    assert (body["since"], body["until"]) == ("2026-11-20", "2026-11-23")
    [masisi] = body["zones"]
    assert (masisi["zone"], masisi["incidents"]) == ("Masisi", 1)
    assert set(masisi) >= {"first_page", "first_delivery", "acknowledged", "resolved"}
    later = client.get(
        "/api/response-times?since=2026-11-27&until=2026-11-27", headers=bearer(api_net, "coord")
    )
    assert later.json["zones"] == []


@pytest.mark.parametrize(
    "query", ["since=2026-11-24&until=2026-11-20", "since=2024-01-01&until=2026-01-01", "until=someday"]
)
def test_response_times_refuse_a_bad_range(client, api_net, query):
    response = client.get(f"/api/response-times?{query}", headers=bearer(api_net, "admin"))
    assert response.status_code == 400


@pytest.mark.parametrize(
    "path", ["/api/incidents/999", "/api/incidents/99999999999999999999", "/api/incidents/999/cap.xml"]
)
def test_an_unknown_incident_is_a_json_404(client, api_net, path):
    response = client.get(path, headers=bearer(api_net, "admin"))
    assert response.status_code == 404
    assert response.json["error"].startswith("no incident")


@pytest.mark.parametrize("path", ["/api/nothing", "/api/incidents/-1", "/api/incidents/one"])
def test_an_unknown_route_is_a_json_404(client, api_net, path):
    response = client.get(path, headers=bearer(api_net, "admin"))
    assert response.status_code == 404
    assert response.json == {"error": "no such API route; see /api/openapi.json"}


def test_a_write_method_is_not_allowed(client, api_net):
    response = client.post("/api/incidents", headers=bearer(api_net, "admin"))
    assert response.status_code == 405


def test_the_openapi_document_is_public_and_lists_every_route(app, client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json
    assert document["openapi"].startswith("3.")
    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.not_found"
    }
    assert set(document["paths"]) == routes
    for path, item in document["paths"].items():
        assert set(item) == {"get"}, path
        if path != "/api/openapi.json":
            assert "401" in item["get"]["responses"], path
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_every_schema_reference_in_the_openapi_document_resolves(client):
    document = client.get("/api/openapi.json").json
    text = client.get("/api/openapi.json").get_data(as_text=True)
    for name in re.findall(r'"#/components/schemas/(\w+)"', text):
        assert name in document["components"]["schemas"], name
