"""A coordinator in a real browser: logs in, sees an incident appear after a webhook, acknowledges it."""

from __future__ import annotations

import pytest
import requests
from twilio.request_validator import RequestValidator

from alerts.auth import create_user
from alerts.models import Place
from tests import factories

pytestmark = pytest.mark.browser
PASSWORD = "a long browser password"


def _post_alert(base: str, sender: str, text: str, sid: str) -> None:
    url = f"{base}/webhooks/twilio/sms"
    form = {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": "+243990000001",
        "Body": text,
    }
    signature = RequestValidator("browser-test-token").compute_signature(url, form)
    response = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert response.status_code == 200


def test_log_in_see_a_new_incident_appear_acknowledge_it_and_read_the_timeline(
    app, session, live_server, browser_page
):
    session.add(Place(name="Mweso", lat=-1.10, lon=28.94, alt_names=""))
    net = factories.network(session)
    create_user(session, "coord", "coordinator", PASSWORD, language="en")
    page = browser_page

    page.goto(f"{live_server}/")
    assert "/login" in page.url
    page.fill("input[name=username]", "coord")
    page.fill("input[name=password]", PASSWORD)
    page.click("form.login button")
    page.wait_for_selector("table#log")
    assert page.locator("tr.empty").count() == 1

    _post_alert(live_server, net["focal_point"].phone, "Attaque a Mweso, 3 morts", "SM" + "b" * 32)
    assert app.extensions["alerts_engine"].process_inbound() == 1

    row = page.wait_for_selector("tr#i1")  # the page refreshed itself: no reload
    assert "Mweso" in row.inner_text()
    assert page.locator("#live").is_visible()

    page.click("tr#i1 a")
    page.wait_for_selector("#timeline")
    assert "opened" in page.inner_text("#timeline")
    page.click("button#acknowledge")
    page.wait_for_selector("#timeline li:has-text('acknowledged by coordinator coord (web)')")
    assert page.locator("button#acknowledge").count() == 0

    page.goto(f"{live_server}/")
    assert "acknowledged" in page.inner_text("tr#i1")


def test_the_map_shows_zones_and_open_incidents_without_tiles(app, session, live_server, browser_page):
    session.add(Place(name="Mweso", lat=-1.10, lon=28.94, alt_names=""))
    net = factories.network(session)
    create_user(session, "coord", "coordinator", PASSWORD, language="fr")
    _post_alert(live_server, net["focal_point"].phone, "Attaque a Mweso", "SM" + "c" * 32)
    app.extensions["alerts_engine"].process_inbound()
    page = browser_page
    page.goto(f"{live_server}/login")
    page.fill("input[name=username]", "coord")
    page.fill("input[name=password]", PASSWORD)
    page.click("form.login button")
    page.goto(f"{live_server}/map")
    page.wait_for_selector(".leaflet-tooltip:has-text('Masisi')")
    assert page.locator(".leaflet-tooltip:has-text('#1')").count() == 1
    assert page.locator("img.leaflet-tile").count() == 0  # no tiles configured, still useful
