"""A local fake of the Twilio and Africa's Talking send APIs, scripted per test, for the real SDKs to talk to.

One small threaded HTTP server on 127.0.0.1 answers both:
- Twilio `POST /2010-04-01/Accounts/{sid}/Messages.json` (HTTP basic auth: account sid and auth token);
- Africa's Talking `POST /version1/messaging` (the `apiKey` header and the `username` form field).

`fake.script(provider, [...])` queues what the next requests to that provider get; once the queue is empty
they get "ok". Behaviours: "ok"; "timeout" (answer only after TIMEOUT_SECONDS, longer than the short client
timeout tests use); an HTTP status such as "500", "503" or "429"; for Twilio "reject:21211" (HTTP 400 with
that error code); for Africa's Talking "status:403" (HTTP 201 whose recipient line has that statusCode).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import pytest

TWILIO_ACCOUNT_SID = "AC" + "0" * 31 + "1"
TWILIO_AUTH_TOKEN = "fake-twilio-auth-token"
TWILIO_FROM = "+15005550006"
AT_USERNAME = "relay-test"
AT_API_KEY = "fake-at-api-key"
AT_SENDER_ID = "ALERTE"

CLIENT_TIMEOUT_SECONDS = 0.5  # what tests give the gateways
TIMEOUT_SECONDS = 1.0  # how long a "timeout" behaviour keeps the client waiting: longer than the above

TWILIO = "twilio"
AFRICASTALKING = "africastalking"

_TWILIO_ERRORS = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21214: "'To' phone number cannot be reached.",
    21408: "Permission to send an SMS has not been enabled for the region of the 'To' number: {to}.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS.",
    21614: "'To' number is not a valid mobile number",
}
_AT_STATUS_NAMES = {
    401: "RiskHold",
    402: "InvalidSenderId",
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    405: "InsufficientBalance",
    406: "UserInBlacklist",
    407: "CouldNotRoute",
    409: "DoNotDisturbRejection",
    500: "InternalServerError",
    501: "GatewayError",
    502: "RejectedByGateway",
}


class Received(NamedTuple):
    """What a provider was asked to send."""

    provider: str
    to: str
    body: str


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the fake saw it, with every form field (sender, status callback...)."""

    provider: str
    to: str
    body: str
    form: dict[str, str] = field(default_factory=dict)
    authorised: bool = True


@dataclass
class _Reply:
    status: int
    payload: Any  # dict -> JSON, str -> text/plain
    delay: float = 0.0


class FakeProviders:
    """The server, its record of requests and its script of behaviours."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[str]] = defaultdict(deque)
        self._requests: list[ReceivedRequest] = []
        # Requests whose body stopped short of their Content-Length (the sender died mid-request): a real
        # provider acts on none of them, so they are counted here and not recorded as requests.
        self.cut_off = 0
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            # A short poll lets shutdown() return at once instead of after the default half second.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-providers",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProviders:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes any handler held in a "timeout"
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def script(self, provider: str, behaviours: Iterable[str]) -> None:
        """Queue behaviours for the next requests to provider; "ok" once they run out."""
        if provider not in (TWILIO, AFRICASTALKING):
            raise ValueError(f"unknown provider {provider!r}")
        with self._lock:
            self._scripts[provider].extend(behaviours)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def received(self) -> list[Received]:
        """(provider, to, body) of every request, in arrival order, authorised or not."""
        return [Received(r.provider, r.to, r.body) for r in self.requests]

    def _next_behaviour(self, provider: str) -> str:
        with self._lock:
            script = self._scripts[provider]
            return script.popleft() if script else "ok"

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _hold(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # --- providers ---

    def twilio(self, path: str, headers: Any, form: dict[str, str]) -> _Reply:
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["2010-04-01", "Accounts"] or parts[3] != "Messages.json":
            return _Reply(404, _twilio_error(20404, "The requested resource was not found", 404))
        sid = parts[2]
        expected = "Basic " + base64.b64encode(f"{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}".encode()).decode()
        authorised = sid == TWILIO_ACCOUNT_SID and headers.get("Authorization") == expected
        to, body = form.get("To", ""), form.get("Body", "")
        self._record(ReceivedRequest(TWILIO, to, body, form, authorised))
        if not authorised:
            return _Reply(401, _twilio_error(20003, "Authenticate", 401))
        behaviour = self._next_behaviour(TWILIO)
        if behaviour == "ok":
            return _Reply(201, _twilio_message(sid, form))
        if behaviour == "timeout":
            return _Reply(201, _twilio_message(sid, form), delay=TIMEOUT_SECONDS)
        if behaviour.startswith("reject:"):
            code = int(behaviour.removeprefix("reject:"))
            message = _TWILIO_ERRORS.get(code, "Rejected").format(to=to)
            return _Reply(400, _twilio_error(code, message, 400))
        status = int(behaviour)
        return _Reply(status, _twilio_error(20429 if status == 429 else 20500, "Server error", status))

    def africastalking(self, path: str, headers: Any, form: dict[str, str]) -> _Reply:
        if path.rstrip("/") != "/version1/messaging":
            return _Reply(404, "Not Found")
        authorised = headers.get("apiKey") == AT_API_KEY and form.get("username") == AT_USERNAME
        to, body = form.get("to", ""), form.get("message", "")
        self._record(ReceivedRequest(AFRICASTALKING, to, body, form, authorised))
        if not authorised:
            return _Reply(401, "The supplied authentication is invalid")
        behaviour = self._next_behaviour(AFRICASTALKING)
        if behaviour == "ok":
            return _Reply(201, _at_response(to, 101))
        if behaviour == "timeout":
            return _Reply(201, _at_response(to, 101), delay=TIMEOUT_SECONDS)
        if behaviour.startswith("status:"):
            return _Reply(201, _at_response(to, int(behaviour.removeprefix("status:"))))
        status = int(behaviour)
        return _Reply(status, "Too Many Requests" if status == 429 else "Internal Server Error")


def _twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _twilio_message(account_sid: str, form: dict[str, str]) -> dict[str, Any]:
    sid = "SM" + secrets.token_hex(16)
    now = formatdate(usegmt=True)
    return {
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": form.get("Body", ""),
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From", ""),
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"},
        "to": form.get("To", ""),
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
    }


def _at_response(to: str, status_code: int) -> dict[str, Any]:
    accepted = status_code in (100, 101, 102)
    status = {100: "Processed", 101: "Success", 102: "Queued"}.get(status_code) or _AT_STATUS_NAMES.get(
        status_code, "Failed"
    )
    recipient = {
        "statusCode": status_code,
        "number": to,
        "status": status,
        "cost": "KES 0.8000" if accepted else "0",
        "messageId": "ATXid_" + secrets.token_hex(16) if accepted else "None",
    }
    message = "Sent to 1/1 Total Cost: KES 0.8000" if accepted else "Sent to 0/1 Total Cost: 0"
    return {"SMSMessageData": {"Message": message, "Recipients": [recipient]}}


def _handler_for(fake: FakeProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body in one packet: no 40 ms delayed-ACK stall
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' pooled sessions expect

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = self.rfile.read(length)
            if len(received) < length:  # the client went away mid-request: nothing to act on or answer
                with fake._lock:
                    fake.cut_off += 1
                self.close_connection = True
                return
            raw = received.decode("utf-8")
            form = {key: values[-1] for key, values in parse_qs(raw, keep_blank_values=True).items()}
            path = self.path.split("?", 1)[0]
            if path.startswith("/2010-04-01/"):
                reply = fake.twilio(path, self.headers, form)
            elif path.startswith("/version1/"):
                reply = fake.africastalking(path, self.headers, form)
            else:
                reply = _Reply(404, "Not Found")
            if reply.delay:
                fake._hold(reply.delay)
            self._answer(reply)

        def _answer(self, reply: _Reply) -> None:
            if isinstance(reply.payload, str):
                data, content_type = reply.payload.encode(), "text/plain; charset=utf-8"
            else:
                data, content_type = json.dumps(reply.payload).encode(), "application/json"
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting ("timeout"): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests assert on fake.requests, not on an access log

    return Handler


@pytest.fixture
def fake_providers() -> Iterator[FakeProviders]:
    """A running fake of both providers' send APIs; its base_url goes in TWILIO_API_BASE and AT_API_BASE."""
    fake = FakeProviders().start()
    yield fake
    fake.stop()
