"""The pooled Twilio HTTP client sends what the SDK's own requests-based client sends, and nothing more."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from escalation.twilio_http import PooledTwilioHttpClient

SID, TOKEN = "AC" + "0" * 31 + "7", "a-token"
ANSWER = '{"sid": "SM1", "status": "queued", "body": "d\u00e9j\u00e0"}'


@dataclass
class Seen:
    method: str
    target: str  # the request line's target: a path, or a whole URL through a proxy
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """An HTTP server that notes every request and gives each the scripted answer (or hangs up)."""

    status: int = 201
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    body: bytes = ANSWER.encode()
    hang_up: bool = False
    seen: list[Seen] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    name.lower(): value for name, value in self.headers.items()
                }  # names are case-blind
                recorder.seen.append(Seen(self.command, self.path, headers, body))
                if recorder.hang_up:
                    self.close_connection = True
                    return
                self.send_response(recorder.status)
                for name, value in recorder.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(recorder.body)))
                self.end_headers()
                self.wfile.write(recorder.body)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), recorder.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _sdk_headers(method: str = "POST") -> dict[str, str]:
    return TwilioClient(SID, TOKEN).get_headers(method, None)


# What requests adds on its own (compression it could decode, keep-alive): the rest must match.
REQUESTS_ONLY = {"accept-encoding", "connection", "host"}


def _comparable(seen: Seen) -> tuple[str, str, dict[str, str], bytes]:
    headers = {k: v for k, v in seen.headers.items() if k not in REQUESTS_ONLY}
    return seen.method, seen.target, headers, seen.body


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        (
            None,
            {
                "To": "+243970001234",
                "From": "+15005550006",
                "Body": "ALERTE #12: attaqu\u00e9 \u00e0 Rutshuru & Kiwanja = 2+2 % ?",
                "MediaUrl": ["https://a.example/1.jpg", "https://a.example/2.jpg"],
                "ValidityPeriod": 3600,
                "SmartEncoded": True,
                "StatusCallback": None,
            },
        ),
        ("application/json", {"FriendlyName": "d\u00e9j\u00e0", "Ttl": 60, "Tags": ["a", "b"]}),
    ],
    ids=["form", "json"],
)
def test_the_pooled_client_sends_exactly_what_the_sdks_own_client_sends(
    recorder: tuple[Recorder, str], content_type: str | None, data: dict[str, object]
) -> None:
    server, base = recorder
    headers = _sdk_headers()
    if content_type:
        headers["Content-Type"] = content_type
    url = f"{base}/2010-04-01/Accounts/{SID}/Messages.json"
    arguments: dict[str, Any] = {
        "params": {"PageSize": 2, "To": "+243 97"},
        "data": data,
        "headers": headers,
        "auth": (SID, TOKEN),
        "timeout": 5,
    }

    theirs = TwilioHttpClient().request("POST", url, **dict(arguments, headers=dict(headers)))
    ours = PooledTwilioHttpClient(timeout=5).request("POST", url, **dict(arguments, headers=dict(headers)))

    first, second = server.seen
    assert _comparable(second) == _comparable(first)
    assert second.headers["authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert (ours.status_code, ours.text) == (theirs.status_code, theirs.text) == (201, ANSWER)
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "application/json"


def test_the_answer_is_read_in_the_charset_it_declares(recorder: tuple[Recorder, str]) -> None:
    server, base = recorder
    server.headers = {"Content-Type": "application/json; charset=iso-8859-1"}
    server.body = '{"message": "r\u00e9essayez"}'.encode("iso-8859-1")

    answer = PooledTwilioHttpClient(timeout=5).request("POST", f"{base}/x", data={"a": "b"})

    assert answer.text == '{"message": "r\u00e9essayez"}'


def test_a_redirect_is_answered_not_followed(recorder: tuple[Recorder, str]) -> None:
    server, base = recorder
    server.status, server.headers = 307, {"Location": f"{base}/elsewhere"}

    answer = PooledTwilioHttpClient(timeout=5).request("POST", f"{base}/x", data={"Body": "once"})

    assert answer.status_code == 307
    assert [seen.target for seen in server.seen] == ["/x"]


def test_a_send_cut_off_by_the_server_is_an_error_and_never_tried_again(
    recorder: tuple[Recorder, str],
) -> None:
    server, base = recorder
    server.hang_up = True

    with pytest.raises(urllib3.exceptions.HTTPError):
        PooledTwilioHttpClient(timeout=5).request("POST", f"{base}/x", data={"Body": "once"})

    assert len(server.seen) == 1  # a retry would be the same SMS sent twice


def test_urls_of_twilios_api_go_to_the_api_base_and_others_stay(recorder: tuple[Recorder, str]) -> None:
    _server, base = recorder
    client = PooledTwilioHttpClient(timeout=5, api_base=base + "/")

    assert client.rebased("https://api.twilio.com/2010-04-01/A.json?x=1") == f"{base}/2010-04-01/A.json?x=1"
    assert (
        client.rebased("https://api.dublin.ie1.twilio.com/2010-04-01/A.json") == f"{base}/2010-04-01/A.json"
    )
    assert client.rebased("https://example.org/2010-04-01/A.json") == "https://example.org/2010-04-01/A.json"


def test_a_proxy_from_the_environment_gets_the_request_and_its_credentials(
    monkeypatch: pytest.MonkeyPatch, recorder: tuple[Recorder, str]
) -> None:
    proxy, base = recorder
    host = base.removeprefix("http://")
    monkeypatch.setenv("HTTP_PROXY", f"http://relay:p%40ss@{host}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    answer = PooledTwilioHttpClient(timeout=5).request(
        "POST", "http://api.twilio.example/2010-04-01/A.json", data={"Body": "via the relay"}
    )

    assert answer.status_code == 201
    (seen,) = proxy.seen
    assert seen.target == "http://api.twilio.example/2010-04-01/A.json"  # the whole URL: a proxy's request
    assert seen.headers["proxy-authorization"] == "Basic " + base64.b64encode(b"relay:p@ss").decode()
    assert seen.body == b"Body=via+the+relay"
