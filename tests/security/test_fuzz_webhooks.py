"""Hostile input at every webhook: never a 5xx, a short plain reason on a 4xx, nothing stored on a refusal,
at most one row per provider message with an E.164 sender on an acceptance, and the app keeps answering."""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from alerts.models import FocalPoint, InboundMessage, Responder
from alerts.states import InboundState
from tests.webhooks.conftest import AT_KEY, FOCAL_POINT_PHONE, OUR_NUMBER, TWILIO_TOKEN

MAX_WEBHOOK_BYTES = 4 * 1024  # small, so that oversized bodies are cheap to build
RESPONDER_PHONE = "+243825550001"
FORM = "application/x-www-form-urlencoded"
E164 = re.compile(r"\+[1-9][0-9]{5,14}", re.ASCII)
FUZZ = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_serial = itertools.count(1)


@pytest.fixture
def app_config() -> dict[str, object]:
    return {
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "AT_WEBHOOK_KEY": AT_KEY,
        "MAX_WEBHOOK_BYTES": MAX_WEBHOOK_BYTES,
        # Every fuzzed message from the focal point goes through the parser, not the rate limit.
        "SENDER_RATE_LIMIT": 100_000,
    }


@pytest.fixture
def senders(session):
    """A focal point and a responder, so that accepted hostile texts reach the parser and the commands."""
    session.add(FocalPoint(name="Focal point", phone=FOCAL_POINT_PHONE, language="fr"))
    session.add(Responder(name="Duty officer", phone=RESPONDER_PHONE, tier=1, language="fr"))
    session.commit()


@dataclass(frozen=True)
class Route:
    path: str
    provider: str
    id_field: str
    sender_field: str | None  # None: a delivery report, which never stores an inbound message
    fields: tuple[str, ...]

    @property
    def is_twilio(self) -> bool:
        return self.provider == "twilio"

    def genuine(self, uid: str) -> dict[str, str]:
        """A form as the provider sends it, with a fresh message id."""
        return {
            "/webhooks/twilio/sms": {
                "MessageSid": f"SM{uid}",
                "AccountSid": "AC" + "0" * 32,
                "From": FOCAL_POINT_PHONE,
                "To": OUR_NUMBER,
                "Body": "attaque a Mweso, 3 morts",
                "NumSegments": "1",
            },
            "/webhooks/twilio/status": {"MessageSid": f"SM{uid}", "MessageStatus": "delivered"},
            "/webhooks/twilio/voice": {
                "CallSid": f"CA{uid}",
                "From": FOCAL_POINT_PHONE,
                "To": OUR_NUMBER,
                "CallStatus": "ringing",
            },
            "/webhooks/africastalking/sms": {
                "id": f"ATXid_{uid}",
                "from": FOCAL_POINT_PHONE,
                "to": "12345",
                "text": "attaque a Mweso, 3 morts",
                "date": "2026-11-23 08:00:00",
                "linkId": "link-1",
            },
            "/webhooks/africastalking/delivery": {"id": f"ATXid_{uid}", "status": "Success"},
            "/webhooks/africastalking/voice": {
                "sessionId": f"ATVId_{uid}",
                "callerNumber": FOCAL_POINT_PHONE,
                "destinationNumber": OUR_NUMBER,
                "isActive": "1",
            },
        }[self.path]


ROUTES = [
    Route("/webhooks/twilio/sms", "twilio", "MessageSid", "From", ("MessageSid", "From", "To", "Body")),
    Route(
        "/webhooks/twilio/status", "twilio", "MessageSid", None, ("MessageSid", "MessageStatus", "ErrorCode")
    ),
    Route("/webhooks/twilio/voice", "twilio", "CallSid", "From", ("CallSid", "From", "To")),
    Route(
        "/webhooks/africastalking/sms",
        "africastalking",
        "id",
        "from",
        ("id", "from", "to", "text", "date"),
    ),
    Route(
        "/webhooks/africastalking/delivery", "africastalking", "id", None, ("id", "status", "failureReason")
    ),
    Route(
        "/webhooks/africastalking/voice",
        "africastalking",
        "sessionId",
        "callerNumber",
        ("sessionId", "callerNumber", "destinationNumber", "isActive"),
    ),
]
ROUTE_IDS = [r.path.removeprefix("/webhooks/") for r in ROUTES]

INJECTIONS = [
    "' OR '1'='1' --",
    "'; DROP TABLE inbound_messages; --",
    '"; SELECT pg_sleep(5); --',
    "<script>alert(document.cookie)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{7*7}}${7*7}<%= 7*7 %>",
    "${jndi:ldap://127.0.0.1/a}",
    "\r\nSet-Cookie: session=stolen",
    "../../../../etc/passwd",
    "%00%0d%0a",
    "\x00",
    "a\x00b",
    "\u202eevil\u202c",  # right-to-left override
    "\ufeff\u200b\u200d",
    "🚨🔥💀" * 20,
    "Ａｔｔａｑｕｅ",
    "مرحبا بالعالم",
    "OK 1; DROP TABLE incidents",
    "FIN 99999999999999999999999",
    "OK -1",
    "REG Jean Mweso",
    "GPS -91.5 181.2 attaque",
    "attaque a Mweso 999999999999999999999 morts",
    "",
    " ",
    "\t\n\r",
]
ABSURD_PHONES = [
    "+243815550001",
    "0815550001",
    "00243815550001",
    "+243 81 555 0001",
    "+243-81-555-0001",
    "(+243) 815550001",
    "tel:+243815550001",
    "+",
    "+0",
    "++243815550001",
    "+243815550001\x00",
    "+243815550001<script>",
    "+99999999999999999999999999999999",
    "9" * 400,
    "+٢٤٣٨١٥٥٥٠٠٠١",  # Arabic-Indic digits
    "+２４３８１５５５０００１",  # full-width digits
    "+1 (202) 555-0143 ext. 12345",
    "AfricasTkng",
    "12345",
    "-1",
    "1e308",
    "NaN",
]
# Settings that make a correct HMAC-SHA1 signature wrong: another algorithm, or one twilio does not know.
SIGNATURE_SETTINGS = ["algorithm=MD5", "key=x,algorithm=HMAC_SHA256", "algorithm=hmac_sha512"]

unicode_text = st.text(st.characters(codec="utf-8"), max_size=120)
hostile_value = st.one_of(
    st.sampled_from(INJECTIONS),
    st.sampled_from(ABSURD_PHONES),
    unicode_text,
    st.integers(min_value=1, max_value=3000).map(lambda n: "\u0661" * n),  # long, multi-byte
)


@st.composite
def hostile_pairs(draw: st.DrawFn, route: Route) -> list[tuple[str, str]]:
    """The genuine form with fields replaced, removed, duplicated and added, in any order."""
    uid = f"{next(_serial):06d}{draw(st.integers(0, 10**9)):010d}"
    form = route.genuine(uid)
    pairs: list[tuple[str, str]] = []
    for name, value in form.items():
        action = draw(st.sampled_from(["keep", "keep", "keep", "replace", "drop"]))
        if action == "keep":
            pairs.append((name, value))
        elif action == "replace":
            pairs.append((name, draw(hostile_value)))
    extra_key = st.one_of(st.sampled_from(route.fields), unicode_text.filter(bool))
    pairs += draw(st.lists(st.tuples(extra_key, hostile_value), max_size=3))
    return draw(st.permutations(pairs))


def twilio_signature(path: str, pairs: list[tuple[str, str]], token: str = TWILIO_TOKEN) -> str:
    return RequestValidator(token).compute_signature(f"http://localhost{path}", MultiDict(pairs))


def at_url(path: str, key: str | None = AT_KEY) -> str:
    return path if key is None else f"{path}?key={quote(key)}"


def post(client, route: Route, body: bytes, *, signature: str | None = None, key: str | None = AT_KEY, **kw):
    headers = dict(kw.pop("headers", {}))
    kw.setdefault("content_type", FORM)
    if route.is_twilio:
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        return client.post(route.path, data=body, headers=headers, **kw)
    return client.post(at_url(route.path, key), data=body, headers=headers, **kw)


def stored_count(session) -> int:
    session.expire_all()
    count = session.scalar(select(func.count()).select_from(InboundMessage))
    session.commit()  # ends the read transaction: on SQLite it would hold the write lock
    return count


def stored_with_id(session, provider: str, provider_message_id: str) -> list[InboundMessage]:
    session.expire_all()
    rows = session.scalars(
        select(InboundMessage).where(
            InboundMessage.provider == provider, InboundMessage.provider_message_id == provider_message_id
        )
    ).all()
    session.commit()
    return list(rows)


def assert_refusal_is_plain(response) -> None:
    """A 4xx carries a short, single-line plain-text reason that echoes nothing the caller sent."""
    assert response.mimetype == "text/plain", (response.status_code, response.data[:200])
    reason = response.get_data(as_text=True).strip()
    assert 0 < len(reason) <= 80, reason
    assert "\n" not in reason
    assert reason.isprintable()


def assert_answer_is_sound(session, route: Route, response, before: int, pairs=None) -> None:
    """The properties every answer to a webhook must have, whatever it was sent."""
    assert response.status_code < 500, (response.status_code, response.data[:300])
    if currently_in_test_context():  # the statistics show which answers the fuzzing reached
        event(f"{response.status_code} {response.get_data(as_text=True)[:40].strip()}")
    after = stored_count(session)
    if response.status_code >= 400:
        assert_refusal_is_plain(response)
        assert after == before, "a refused request stored a message"
        return
    assert 200 <= response.status_code < 300, response.status_code
    assert after - before in (0, 1)
    if route.sender_field is None:
        assert after == before, "a delivery report stored an inbound message"
        return
    if pairs is not None:
        sent_id = MultiDict(pairs).get(route.id_field, "").strip()
        rows = stored_with_id(session, route.provider, sent_id)
        assert len(rows) <= 1
        for row in rows:
            assert E164.fullmatch(row.sender), row.sender
            assert "\x00" not in row.text
            assert len(row.provider_message_id) <= 80


def assert_still_healthy(client) -> None:
    assert client.get("/healthz").status_code == 200


def assert_processing_never_crashes(app, session) -> None:
    """What the engine does next with the accepted messages: none may fail in the pipeline."""
    app.extensions["alerts_engine"].process_inbound()
    session.expire_all()
    failed = session.scalars(
        select(InboundMessage.error).where(InboundMessage.state == InboundState.FAILED)
    ).all()
    session.commit()
    assert failed == []


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@FUZZ
@given(data=st.data())
def test_authentic_requests_with_hostile_fields_never_break_the_webhook(
    app, client, session, senders, route, data
):
    pairs = data.draw(hostile_pairs(route), label="pairs")
    body = urlencode(pairs).encode("utf-8")
    before = stored_count(session)

    response = post(client, route, body, signature=twilio_signature(route.path, pairs))

    assert_answer_is_sound(session, route, response, before, pairs)
    if route.sender_field is not None and response.status_code < 300:
        assert_processing_never_crashes(app, session)
    assert_still_healthy(client)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.is_twilio], ids=lambda r: r.path)
@FUZZ
@given(
    data=st.data(),
    forgery=st.sampled_from(["missing", "garbage", "other token", "other url", "added field", "settings"]),
    garbage=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
)
def test_forged_twilio_requests_are_refused_and_store_nothing(client, session, route, data, forgery, garbage):
    pairs = data.draw(hostile_pairs(route), label="pairs")
    signature = {
        "missing": None,
        "garbage": garbage,
        "other token": twilio_signature(route.path, pairs, token=TWILIO_TOKEN + "x"),
        "other url": twilio_signature("/webhooks/twilio/other", pairs),
        "added field": twilio_signature(route.path, pairs),
        "settings": twilio_signature(route.path, pairs),
    }[forgery]
    headers = {}
    if forgery == "added field":
        pairs = [*pairs, ("Injected", garbage or "x")]
    if forgery == "settings":
        headers["X-Twilio-Webhooks-Signature-Settings"] = data.draw(st.sampled_from(SIGNATURE_SETTINGS))
    before = stored_count(session)

    response = post(client, route, urlencode(pairs).encode(), signature=signature, headers=headers)

    assert 400 <= response.status_code < 500, response.status_code
    assert_answer_is_sound(session, route, response, before)
    assert_still_healthy(client)


@pytest.mark.parametrize("route", [r for r in ROUTES if not r.is_twilio], ids=lambda r: r.path)
@FUZZ
@given(
    data=st.data(),
    key=st.one_of(st.none(), unicode_text, st.sampled_from(["", AT_KEY + "x", AT_KEY.upper()])),
)
def test_africastalking_requests_without_the_right_key_are_refused(client, session, route, data, key):
    if key == AT_KEY:
        key += "x"
    pairs = data.draw(hostile_pairs(route), label="pairs")
    before = stored_count(session)

    response = post(client, route, urlencode(pairs).encode(), key=key)

    assert (response.status_code, response.text) == (403, "invalid key\n")
    assert stored_count(session) == before
    assert_still_healthy(client)


CONTENT_TYPES = [
    FORM,
    f"{FORM}; charset=latin-1",
    "application/json",
    "multipart/form-data; boundary=x",
    "text/plain",
    "text/xml",
    "application/octet-stream",
    "",
]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=600),
        st.sampled_from(
            [
                b'{"MessageSid": "SM1", "From": "+243815550001"}',
                b"<Response><Message>x</Message></Response>",
                b'--x\r\nContent-Disposition: form-data; name="id"\r\n\r\n1\r\n--x--\r\n',
                b"&&&===&&&",
                b"%",
                b"a=%zz&b=%f",
            ]
        ),
    ),
    content_type=st.one_of(
        st.sampled_from(CONTENT_TYPES),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    ),
)
def test_raw_bodies_and_wrong_content_types_never_break_the_webhook(
    client, session, route, body, content_type
):
    before = stored_count(session)
    signature = twilio_signature(route.path, [])

    response = post(client, route, body, signature=signature, content_type=content_type)

    assert_answer_is_sound(session, route, response, before)
    if content_type in CONTENT_TYPES[2:]:
        assert response.status_code in (400, 403, 415), response.status_code
    assert_still_healthy(client)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@settings(FUZZ, max_examples=12)
@given(
    extra=st.integers(min_value=1, max_value=5 * MAX_WEBHOOK_BYTES),
    declared=st.sampled_from(["length", "chunked"]),
)
def test_oversized_bodies_are_a_413_and_store_nothing(client, session, route, extra, declared):
    pairs = list(route.genuine(f"big{next(_serial)}").items())
    body = urlencode(pairs).encode()
    body += b"&pad=" + b"x" * (MAX_WEBHOOK_BYTES - len(body) + extra)
    signature = twilio_signature(route.path, pairs)  # the size is refused before the signature is checked
    before = stored_count(session)
    if declared == "length":
        response = post(client, route, body, signature=signature)
    else:  # no Content-Length: the webhook must stop reading at the limit all the same
        headers = {"X-Twilio-Signature": signature, "Transfer-Encoding": "chunked"}
        response = client.post(
            at_url(route.path) if not route.is_twilio else route.path,
            input_stream=io.BytesIO(body),
            content_type=FORM,
            headers=headers,
            environ_overrides={"wsgi.input_terminated": True},
        )

    assert response.status_code == 413, response.status_code
    assert_answer_is_sound(session, route, response, before)
    assert_still_healthy(client)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@settings(FUZZ, max_examples=20)
@given(
    bad=st.sampled_from(
        [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf", b"\x80"]
    ),
    percent_encoded=st.booleans(),
    field=st.integers(min_value=0, max_value=5),
)
def test_bytes_that_are_not_utf8_are_a_400_and_store_nothing(
    client, session, route, bad, percent_encoded, field
):
    pairs = list(route.genuine(f"utf{next(_serial)}").items())
    name, value = pairs[field % len(pairs)]
    encoded = [urlencode([pair]).encode() for pair in pairs]
    raw = bad if not percent_encoded else quote(bad).encode()
    encoded[field % len(pairs)] = quote(name).encode() + b"=" + quote(value).encode() + raw
    before = stored_count(session)

    response = post(client, route, b"&".join(encoded), signature=twilio_signature(route.path, pairs))

    assert (response.status_code, response.text) == (400, "body is not valid UTF-8\n")
    assert_answer_is_sound(session, route, response, before)
    assert_still_healthy(client)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.is_twilio], ids=lambda r: r.path)
@settings(FUZZ, max_examples=15)
@given(
    host=st.sampled_from(
        [
            "localhost:99999",
            "localhost:abc",
            "[::1",
            "évil.example",
            "a" * 300,
            "localhost:0",
            "",
            "local host",
        ]
    ),
    query=st.sampled_from(["", "?a=1", "?%ff=%fe", "?%ED%A0%80", "?key=" + "x" * 2000, "?bodySHA256=abc"]),
)
def test_hostile_hosts_and_query_strings_are_refused_not_crashed(client, session, route, host, query):
    pairs = list(route.genuine(f"host{next(_serial)}").items())
    before = stored_count(session)

    response = client.post(
        route.path + query,
        data=urlencode(pairs).encode(),
        content_type=FORM,
        headers={"Host": host, "X-Twilio-Signature": twilio_signature(route.path, pairs)},
    )

    assert response.status_code < 500, response.status_code
    assert stored_count(session) == before or response.status_code < 300
    assert_still_healthy(client)


@pytest.mark.parametrize(
    "date",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01 00:00:00",
        "1970-01-01T00:00:00Z",
        "2026-13-45",
        "2026-11-23T08:00:00+25:00",
        "nan",
    ],
)
def test_africastalking_sms_with_an_absurd_date_is_never_a_5xx(client, session, senders, date):
    route = ROUTES[3]
    pairs = [(k, date if k == "date" else v) for k, v in route.genuine(f"date{next(_serial)}").items()]
    before = stored_count(session)

    response = post(client, route, urlencode(pairs).encode())

    assert_answer_is_sound(session, route, response, before, pairs)
    assert_still_healthy(client)


@pytest.mark.parametrize("date", ["0001-01-01 00:00:00", "1970-01-01T00:00:00Z"])
def test_an_implausibly_old_provider_date_is_not_the_received_time(client, session, senders, date):
    route = ROUTES[3]
    pairs = [(k, date if k == "date" else v) for k, v in route.genuine(f"old{next(_serial)}").items()]

    assert post(client, route, urlencode(pairs).encode()).status_code == 200

    [row] = stored_with_id(session, "africastalking", MultiDict(pairs)["id"])
    assert row.received_at.replace(tzinfo=UTC) > datetime.now(UTC) - timedelta(days=7)


def test_a_retried_hostile_message_is_stored_once(client, session, senders):
    route = ROUTES[0]
    pairs = [*route.genuine(f"retry{next(_serial)}").items()]
    pairs = [(k, INJECTIONS[1] if k == "Body" else v) for k, v in pairs]
    body, signature = urlencode(pairs).encode(), twilio_signature(route.path, pairs)
    for _ in range(3):
        assert post(client, route, body, signature=signature).status_code == 200
    assert len(stored_with_id(session, "twilio", MultiDict(pairs)["MessageSid"])) == 1
