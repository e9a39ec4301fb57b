"""Who may reach what: every route of the app has a declared access policy, and every policy is enforced for
every kind of caller (anonymous, a responder of the incident's zone, a responder of another zone, a
coordinator, an admin, and the API token of each). A new route without a policy fails this module."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from alerts.api import issue_token
from alerts.models import EscalationPolicy, User
from tests import factories
from tests.webhooks.conftest import at_sms_form, twilio_sms_form

CSRF = "csrf-token-of-the-test"
PAGE_CALLERS = ("responder_a", "responder_b", "coordinator", "admin")
USERS = {
    "admin": ("admin", None),
    "coordinator": ("coordinator", None),
    "responder_a": ("responder", "responder_a"),
    "responder_b": ("responder", "responder_b"),
}
CALLERS = (
    "anonymous",
    *(f"session:{name}" for name in PAGE_CALLERS),
    *(f"token:{name}" for name in PAGE_CALLERS),
    "token:invalid",
)


@dataclass(frozen=True)
class Probe:
    """One request that exercises an endpoint; `{...}` in the path is filled from the network's ids."""

    policy: str
    method: str
    path: str
    data: dict[str, str] = field(default_factory=dict)


# Every endpoint of the app -> the requests that prove its policy. Policies:
#   public        anyone, no login
#   form          anyone, but only with the session's CSRF token (the login page's own forms)
#   session       any logged-in user; anonymous callers are sent to /login; an API token is no login
#   zoned         as session, and a responder of another zone gets a 404 (the incident is not theirs)
#   staff         coordinators and admins; responders get 403
#   zoned_staff   as staff, on an incident: another zone's responder gets 404 (it is not theirs to see)
#   admin         admins only; everyone else logged in gets 403
#   api           any valid API token; none or a bad one is a 401; a page login is no token
#   api_zoned     as api, and another zone's responder gets a 404
#   api_staff     coordinator and admin tokens; responder tokens get 403
#   api_unknown   the API's catch-all: 401 without a token, 404 with one
#   twilio        a valid X-Twilio-Signature, whoever is logged in
#   africastalking  the right ?key=, whoever is logged in
ACCESS: dict[str, list[Probe]] = {
    "health.healthz": [Probe("public", "GET", "/healthz")],
    "auth.login": [Probe("public", "GET", "/login")],
    "auth.logout": [Probe("form", "POST", "/logout")],
    "auth.set_language": [Probe("form", "POST", "/language", {"language": "en"})],
    "log.index": [Probe("session", "GET", "/")],
    "log.updates": [Probe("session", "GET", "/log/updates?cursor=0")],
    "log.export_csv": [Probe("session", "GET", "/log.csv")],
    "log.map_page": [Probe("session", "GET", "/map")],
    "log.map_data": [Probe("session", "GET", "/map/data.json")],
    "log.incident": [Probe("zoned", "GET", "/incidents/{incident}")],
    "log.act": [
        Probe("zoned", "POST", "/incidents/{incident}/note", {"note": "called the chief"}),
        Probe("zoned", "POST", "/incidents/{incident}/acknowledge"),
        Probe("zoned_staff", "POST", "/incidents/{incident}/merge", {"into": "{other_incident}"}),
        Probe("zoned_staff", "POST", "/incidents/{incident}/split", {"report": "0"}),
    ],
    "log.network": [Probe("staff", "GET", "/network")],
    "log.response_times": [Probe("staff", "GET", "/response-times")],
    "admin.index": [Probe("admin", "GET", "/admin/")],
    "admin.export_csv": [
        Probe("admin", "GET", "/admin/focal-points.csv"),
        Probe("admin", "GET", "/admin/responders.csv"),
    ],
    "admin.import_file": [Probe("admin", "POST", "/admin/zones/import")],
    "admin.focal_points": [Probe("admin", "GET", "/admin/focal-points")],
    "admin.focal_point_status": [
        Probe("admin", "POST", "/admin/focal-points/{focal_point}/status", {"action": "suspend"})
    ],
    "admin.responders": [Probe("admin", "GET", "/admin/responders")],
    "admin.responder_active": [
        Probe("admin", "POST", "/admin/responders/{responder}/active", {"active": "0"})
    ],
    "admin.zones": [Probe("admin", "GET", "/admin/zones")],
    "admin.zone_dedup": [
        Probe(
            "admin", "POST", "/admin/zones/{zone}", {"dedup_distance_km": "5", "dedup_window_minutes": "60"}
        )
    ],
    "admin.places": [Probe("admin", "GET", "/admin/places")],
    "admin.policies": [Probe("admin", "GET", "/admin/policies")],
    "admin.policy": [
        Probe("admin", "GET", "/admin/policies/{policy}"),
        Probe("admin", "POST", "/admin/policies/{policy}", {"steps": '[{{"tier": 1}}]'}),
    ],
    "admin.policy_new": [
        Probe("admin", "POST", "/admin/policies/new", {"zone_id": "{zone}", "severity": "low"})
    ],
    "admin.policy_delete": [Probe("admin", "POST", "/admin/policies/{zone_policy}/delete")],
    "admin.users": [Probe("admin", "GET", "/admin/users")],
    "admin.user_create": [
        Probe(
            "admin", "POST", "/admin/users", {"username": "newcomer", "role": "coordinator", "language": "en"}
        )
    ],
    "admin.user_unlock": [Probe("admin", "POST", "/admin/users/{victim}/unlock")],
    "admin.user_delete": [Probe("admin", "POST", "/admin/users/{victim}/delete")],
    "api.openapi": [Probe("public", "GET", "/api/openapi.json")],
    "api.incidents": [Probe("api", "GET", "/api/incidents")],
    "api.incident": [Probe("api_zoned", "GET", "/api/incidents/{incident}")],
    "api.incident_cap": [Probe("api_zoned", "GET", "/api/incidents/{incident}/cap.xml")],
    "api.cap_feed": [Probe("api", "GET", "/api/cap.xml")],
    "api.zones": [Probe("api", "GET", "/api/zones")],
    "api.response_times": [Probe("api_staff", "GET", "/api/response-times")],
    "api.network_health": [Probe("api_staff", "GET", "/api/network-health")],
    "api.not_found": [Probe("api_unknown", "GET", "/api/users")],
    "twilio_webhooks.inbound_sms": [Probe("twilio", "POST", "/webhooks/twilio/sms")],
    "twilio_webhooks.delivery_status": [Probe("twilio", "POST", "/webhooks/twilio/status")],
    "twilio_webhooks.inbound_call": [Probe("twilio", "POST", "/webhooks/twilio/voice")],
    "africastalking_webhooks.inbound_sms": [Probe("africastalking", "POST", "/webhooks/africastalking/sms")],
    "africastalking_webhooks.delivery_report": [
        Probe("africastalking", "POST", "/webhooks/africastalking/delivery")
    ],
    "africastalking_webhooks.inbound_call": [
        Probe("africastalking", "POST", "/webhooks/africastalking/voice")
    ],
}
NOT_ROUTES = {"static"}  # the stylesheet and scripts: public files, no data


def test_every_endpoint_of_the_app_has_a_declared_access_policy(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - NOT_ROUTES
    assert set(ACCESS) == endpoints, (
        f"undeclared: {sorted(endpoints - set(ACCESS))}; gone: {sorted(set(ACCESS) - endpoints)}"
    )


def test_every_method_of_every_endpoint_is_probed(app):
    probed = {(name, probe.method) for name, probes in ACCESS.items() for probe in probes}
    routed = {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in NOT_ROUTES
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    routed.discard(("auth.login", "POST"))  # the login form itself: tested in tests/alerts/test_pages.py
    assert routed <= probed, sorted(routed - probed)


@pytest.fixture
def net(session):
    """Zone A (with incident 1) and zone B (with incident 2), one login and one API token per role."""
    built = factories.network(session)
    zone_b = factories.zone(session, "Beni", 0.49, 29.47, 40)
    responder_b = factories.responder(session, 1, [zone_b])
    incident = factories.incident(session, built["zone"])
    other = factories.incident(session, zone_b, place_name="Oicha", lat=0.70, lon=29.52)
    zone_policy = EscalationPolicy(zone_id=built["zone"].id, severity="medium", steps=[{"tier": 1}])
    session.add(zone_policy)
    responders = {"responder_a": built["tier1"][0], "responder_b": responder_b}
    users, tokens = {}, {}
    for name, (role, responder) in {**USERS, "victim": ("coordinator", None)}.items():
        user = User(
            username=name,
            password_hash="!",  # nobody logs in with a password here: the session is set directly
            role=role,
            responder_id=responders[responder].id if responder else None,
            language="en",
        )
        session.add(user)
        session.flush()
        users[name] = user.id
        tokens[name] = issue_token(session, user)
    session.commit()
    ids = {
        "incident": incident.number,
        "other_incident": other.number,
        "focal_point": built["focal_point"].id,
        "responder": built["tier1"][1].id,
        "zone": built["zone"].id,
        "policy": session.scalar(select(EscalationPolicy.id).where(EscalationPolicy.zone_id.is_(None))),
        "zone_policy": zone_policy.id,
        "victim": users["victim"],
    }
    return {"users": users, "tokens": tokens, "ids": ids}


def client_for(app, net, caller: str):
    """A fresh client as this caller: a session set as a login sets it, or an Authorization header."""
    client = app.test_client()
    kind, _, name = caller.partition(":")
    with client.session_transaction() as browser:
        browser["csrf"] = CSRF
        if kind == "session":
            browser["user_id"] = net["users"][name]
    headers = {}
    if kind == "token":
        token = "arl_not-a-token" if name == "invalid" else net["tokens"][name]
        headers["Authorization"] = f"Bearer {token}"
    return client, headers


def send(client, headers, probe: Probe, ids: dict[str, int], *, csrf: bool = True):
    path = probe.path.format(**ids)
    if probe.method == "GET":
        return client.get(path, headers=headers)
    data = {k: v.format(**ids) for k, v in probe.data.items()}
    if probe.policy == "twilio":
        data = twilio_sms_form()
    elif probe.policy == "africastalking":
        data = at_sms_form()
    elif csrf:
        data["csrf_token"] = CSRF
    return client.post(path, data=data, headers=headers)


def to_login(response) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def expected(policy: str, caller: str) -> str:
    """What this caller must get: allowed, login (redirect), 401, 403 or 404."""
    kind, _, name = caller.partition(":")
    if policy in ("public", "form"):
        return "allowed"
    if policy in ("twilio", "africastalking"):
        return "403"
    if policy.startswith("api"):
        if kind != "token" or name == "invalid":
            return "401"
        if policy == "api_unknown":
            return "404"
        if policy == "api_staff" and name.startswith("responder"):
            return "403"
        if policy == "api_zoned" and name == "responder_b":
            return "404"
        return "allowed"
    if kind != "session":
        return "login"
    if policy == "admin" and name != "admin":
        return "403"
    if policy == "staff" and name.startswith("responder"):
        return "403"
    if policy in ("zoned", "zoned_staff") and name == "responder_b":
        return "404"
    if policy == "zoned_staff" and name.startswith("responder"):
        return "403"
    return "allowed"


def outcome(response) -> str:
    if to_login(response):
        return "login"
    if response.status_code in (401, 403, 404):
        return str(response.status_code)
    if response.status_code == 400 and b"form token" in response.data:
        return "csrf"
    return "allowed" if response.status_code < 500 else f"error {response.status_code}"


# Callers that may change something go last, so that what they change cannot hide a refusal.
ORDER = {"session:admin": 2, "session:coordinator": 1, "token:admin": 1, "token:coordinator": 1}


@pytest.mark.parametrize("endpoint", sorted(ACCESS))
def test_each_caller_gets_exactly_what_the_endpoints_policy_allows(app, net, endpoint):
    wrong = []
    for probe in ACCESS[endpoint]:
        for caller in sorted(CALLERS, key=lambda c: ORDER.get(c, 0)):
            client, headers = client_for(app, net, caller)
            response = send(client, headers, probe, net["ids"])
            want, got = expected(probe.policy, caller), outcome(response)
            if probe.policy == "form" and response.status_code == 302:  # logout itself goes to /login
                got = "allowed"
            if probe.method == "GET" and want == "allowed" and response.status_code != 200:
                got = f"status {response.status_code}"
            if got != want:
                wrong.append(f"{probe.method} {probe.path} as {caller}: expected {want}, got {got}")
    assert wrong == []


@pytest.mark.parametrize(
    "endpoint", sorted(name for name, probes in ACCESS.items() if probes[0].policy.startswith("api"))
)
def test_an_api_refusal_is_json_with_a_bearer_challenge(app, net, endpoint):
    client, headers = client_for(app, net, "session:admin")
    response = send(client, headers, ACCESS[endpoint][0], net["ids"])
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in response.json


@pytest.mark.parametrize(
    "endpoint",
    sorted(
        name
        for name, probes in ACCESS.items()
        if any(p.method == "POST" and p.policy not in ("twilio", "africastalking") for p in probes)
    ),
)
def test_every_form_post_needs_the_sessions_csrf_token(app, net, endpoint):
    for probe in ACCESS[endpoint]:
        if probe.method != "POST":
            continue
        client, headers = client_for(app, net, "session:admin")
        response = send(client, headers, probe, net["ids"], csrf=False)
        assert response.status_code == 400, probe.path
        assert b"form token" in response.data


LISTINGS = ["/", "/log/updates?cursor=0", "/log.csv", "/map/data.json"]
API_LISTINGS = ["/api/incidents", "/api/cap.xml", "/api/zones"]


@pytest.mark.parametrize(
    ("caller", "sees", "never"),
    [("responder_a", "Kitchanga", "Oicha"), ("responder_b", "Oicha", "Kitchanga")],
)
def test_a_responder_lists_only_the_incidents_of_their_zones(app, net, caller, sees, never):
    """Incident 1 is in Kitchanga (zone A), incident 2 in Oicha (zone B): no listing shows the other."""
    page_client, _ = client_for(app, net, f"session:{caller}")
    api_client, bearer = client_for(app, net, f"token:{caller}")
    shown = [page_client.get(path) for path in LISTINGS] + [
        api_client.get(path, headers=bearer) for path in API_LISTINGS[:2]
    ]
    for response in shown:
        assert response.status_code == 200, response.request.path
        assert never not in response.get_data(as_text=True), response.request.path
    assert all(sees in r.get_data(as_text=True) for r in shown[2:])
    zones = api_client.get("/api/zones", headers=bearer).json["zones"]
    assert [z["name"] for z in zones] == ["Masisi" if caller == "responder_a" else "Beni"]
