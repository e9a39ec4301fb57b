"""Every HTML page carries the browser security headers, and the session cookie is HttpOnly and SameSite."""

from __future__ import annotations

import re

import pytest

from alerts.auth import create_user
from tests import factories

PASSWORD = "correct horse battery"


@pytest.fixture
def admin_client(app, session):
    built = factories.network(session)
    factories.incident(session, built["zone"])
    user, _ = create_user(session, "admin", "admin", PASSWORD, language="en")
    session.commit()
    client = app.test_client()
    with client.session_transaction() as browser:
        browser["user_id"] = user.id
    return client


def html_paths(app) -> list[str]:
    """One concrete path for every GET route of the pages (the API, webhooks and files are not HTML)."""
    paths = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint.split(".")[0] in ("api", "static", "health"):
            continue
        path = rule.rule.replace("<int:number>", "1").replace("<int:policy_id>", "1")
        paths.append(path.replace("<kind>", "zones"))
    return sorted(paths)


def assert_security_headers(response, path: str) -> None:
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp, path
    assert "frame-ancestors 'none'" in csp, path
    assert "script-src 'self'" in csp, path
    assert "unsafe-inline" not in csp, path
    assert headers.get("X-Frame-Options") == "DENY", path
    assert headers.get("X-Content-Type-Options") == "nosniff", path
    assert headers.get("Referrer-Policy") in ("no-referrer", "same-origin", "strict-origin"), path


def test_every_html_page_carries_the_security_headers(app, admin_client):
    checked = []
    for path in html_paths(app):
        response = admin_client.get(path)
        if response.mimetype == "text/html":
            assert_security_headers(response, path)
            checked.append(path)
        else:
            assert response.headers.get("X-Content-Type-Options") == "nosniff", path
    assert len(checked) >= 12, checked  # the log, an incident, the map, the staff and the admin pages


@pytest.mark.parametrize("path", ["/login", "/admin/", "/no-such-page", "/incidents/999"])
def test_login_redirect_and_error_pages_carry_them_too(app, client, path):
    response = client.get(path)
    if response.mimetype == "text/html":
        assert_security_headers(response, path)
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


def login(client, password=PASSWORD):
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"username": "coord", "password": password, "csrf_token": csrf})


@pytest.mark.parametrize(
    ("app_config", "secure"), [({}, False), ({"PUBLIC_URL": "https://alerts.example.org"}, True)]
)
def test_the_session_cookie_is_httponly_samesite_and_secure_behind_https(client, session, secure):
    create_user(session, "coord", "coordinator", PASSWORD)
    response = login(client)
    assert response.status_code == 302
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert re.search(r"SameSite=(Lax|Strict)", cookie)
    assert ("secure" in attributes) is secure
