"""The optional online geocoder: geopy's Nominatim client against a local fake of Nominatim's API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from alerts.geocoder import geocoder_from_config
from alerts.geolocation import LocatedBy

HOME = (-1.40, 28.82)  # Masisi
KNOWN = {
    "ngungu": [{"lat": "-1.62", "lon": "28.88", "display_name": "Ngungu, Masisi, Nord-Kivu, RDC"}],
    "mambasa": [{"lat": "-4.04", "lon": "39.67", "display_name": "Mombasa, Kenya"}],  # the trap in GeoNames
}


class FakeNominatim:
    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []
        self.fail = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                fake.queries.append(query)
                if fake.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps(KNOWN.get(query["q"][0], [])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def nominatim():
    fake = FakeNominatim()
    yield fake
    fake.server.shutdown()


def _geocoder(fake, **overrides):
    config = {
        "GEOCODER": "nominatim",
        "GEOCODER_DOMAIN": fake.domain,
        "GEOCODER_SCHEME": "http",
        "GEOCODER_USER_AGENT": "alert-relay-tests",
        "GEOCODER_COUNTRIES": ["cd"],
        "GEOCODER_MIN_DELAY_SECONDS": 0.0,
        "GEOCODER_MAX_KM": 80.0,
        **overrides,
    }
    return geocoder_from_config(config)


def test_off_by_default():
    assert geocoder_from_config({"GEOCODER": ""}) is None


def test_a_place_near_home_is_located_and_the_answer_is_cached(nominatim):
    geocoder = _geocoder(nominatim)
    first = geocoder.locate(["ngungu"], HOME)
    second = geocoder.locate(["ngungu"], HOME)
    assert first is not None
    assert first.located_by is LocatedBy.GEOCODER
    assert (first.lat, first.lon) == (-1.62, 28.88)
    assert "online geocoder" in first.note
    assert second == first
    assert len(nominatim.queries) == 1
    assert nominatim.queries[0]["countrycodes"] == ["cd"]


def test_a_result_far_from_home_is_refused(nominatim):
    assert _geocoder(nominatim).locate(["mambasa"], HOME) is None


def test_an_unknown_word_is_a_cached_miss(nominatim):
    geocoder = _geocoder(nominatim)
    assert geocoder.locate(["kwetu"], HOME) is None
    assert geocoder.locate(["kwetu"], HOME) is None
    assert len(nominatim.queries) == 1


def test_an_unreachable_geocoder_is_not_an_error(nominatim):
    nominatim.fail = True
    assert _geocoder(nominatim, GEOCODER_MAX_KM=81.0).locate(["ngungu"], HOME) is None


def test_a_wrong_setting_is_refused():
    with pytest.raises(ValueError, match="GEOCODER must be"):
        geocoder_from_config({"GEOCODER": "google"})


def test_the_pipeline_asks_the_geocoder_only_for_places_the_gazetteer_lacks(session, nominatim):
    from dataclasses import replace

    from sqlalchemy import select

    from alerts.models import Report
    from tests import factories
    from tests.alerts.test_pipeline import SETTINGS, receive

    net = factories.network(session)
    net["focal_point"].home_lat, net["focal_point"].home_lon = HOME
    session.commit()
    settings = replace(SETTINGS, geocoder=_geocoder(nominatim))
    receive(session, net["focal_point"], "attaque a Ngungu", settings=settings)
    report = session.scalar(select(Report))
    assert (report.located_by, report.lat) == ("geocoder", -1.62)
    assert len(nominatim.queries) == 1
