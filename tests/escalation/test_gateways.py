"""The SMS gateways, with the real Twilio and Africa's Talking SDKs talking to a local fake of each API."""

from __future__ import annotations

import logging
import socket

import pytest

from alerts.phones import mask_phone
from escalation.gateways import (
    AfricasTalkingGateway,
    ConsoleGateway,
    PermanentSendError,
    RetryableSendError,
    SendError,
    SendResult,
    TwilioGateway,
    build_gateways,
    send_with_failover,
)
from tests.fakes.providers import (
    AT_API_KEY,
    AT_SENDER_ID,
    AT_USERNAME,
    CLIENT_TIMEOUT_SECONDS,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_FROM,
    FakeProviders,
    Received,
    fake_providers,  # noqa: F401 - the fixture, imported until tests/conftest.py registers the plugin
)

TO = "+243970001234"
BODY = "ALERTE #12 Rutshuru: attaque signalee. Repondez OK 12"
CALLBACK = "https://alerts.example.org/webhooks/twilio/status"


@pytest.fixture
def twilio(fake_providers: FakeProviders) -> TwilioGateway:  # noqa: F811 - the fixture, by name
    return TwilioGateway(
        TWILIO_ACCOUNT_SID,
        TWILIO_AUTH_TOKEN,
        TWILIO_FROM,
        status_callback_url=CALLBACK,
        api_base=fake_providers.base_url,
        timeout=CLIENT_TIMEOUT_SECONDS,
    )


@pytest.fixture
def africastalking(fake_providers: FakeProviders) -> AfricasTalkingGateway:  # noqa: F811
    return AfricasTalkingGateway(
        AT_USERNAME,
        AT_API_KEY,
        AT_SENDER_ID,
        api_base=fake_providers.base_url,
        timeout=CLIENT_TIMEOUT_SECONDS,
    )


class FailingGateway:
    """A gateway that always raises the error it was given, and counts its calls."""

    def __init__(self, name: str, error: SendError) -> None:
        self.name = name
        self.error = error
        self.calls = 0

    def send(self, to: str, body: str, *, reference: str) -> SendResult:
        self.calls += 1
        raise self.error


# --- successful sends ---


def test_twilio_send_returns_the_message_sid_and_twilio_saw_to_from_body_and_callback(
    twilio: TwilioGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    result = twilio.send(TO, BODY, reference="42")

    assert result.provider == "twilio"
    assert result.provider_message_id.startswith("SM")
    assert len(result.provider_message_id) == 34
    assert result.status == "queued"
    (request,) = fake_providers.requests
    assert (request.provider, request.to, request.body) == ("twilio", TO, BODY)
    assert request.form["From"] == TWILIO_FROM
    assert request.form["StatusCallback"] == CALLBACK


def test_twilio_without_a_public_url_sends_no_status_callback(fake_providers: FakeProviders) -> None:  # noqa: F811
    gateway = TwilioGateway(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM, None, fake_providers.base_url)

    gateway.send(TO, BODY, reference="42")

    assert "StatusCallback" not in fake_providers.requests[0].form


def test_africastalking_send_returns_the_message_id_and_africastalking_saw_to_body_and_sender(
    africastalking: AfricasTalkingGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    result = africastalking.send(TO, BODY, reference="42")

    assert result.provider == "africastalking"
    assert result.provider_message_id.startswith("ATXid_")
    assert result.status == "Success"
    (request,) = fake_providers.requests
    assert (request.provider, request.to, request.body) == ("africastalking", TO, BODY)
    assert request.form["from"] == AT_SENDER_ID


def test_africastalking_without_a_sender_id_sends_no_from_field(fake_providers: FakeProviders) -> None:  # noqa: F811
    gateway = AfricasTalkingGateway(AT_USERNAME, AT_API_KEY, None, fake_providers.base_url)

    gateway.send(TO, BODY, reference="42")

    assert "from" not in fake_providers.requests[0].form


def test_twilio_still_reaches_the_local_api_when_an_edge_and_region_are_set(
    monkeypatch: pytest.MonkeyPatch,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    gateway = TwilioGateway(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM, None, fake_providers.base_url)

    assert gateway.send(TO, BODY, reference="42").provider_message_id.startswith("SM")


def test_two_africastalking_gateways_keep_their_own_credentials(fake_providers: FakeProviders) -> None:  # noqa: F811
    good = AfricasTalkingGateway(AT_USERNAME, AT_API_KEY, None, fake_providers.base_url)
    bad = AfricasTalkingGateway(AT_USERNAME, "another-key", None, fake_providers.base_url)

    with pytest.raises(SendError):
        bad.send(TO, BODY, reference="1")
    assert good.send(TO, BODY, reference="2").status == "Success"


# --- errors, sorted into retry (fail over) or stop ---


@pytest.mark.parametrize(
    ("behaviour", "error_class", "code"),
    [
        ("timeout", RetryableSendError, None),
        ("500", RetryableSendError, "20500"),
        ("503", RetryableSendError, "20500"),
        ("429", RetryableSendError, "20429"),
        ("reject:21211", PermanentSendError, "21211"),  # invalid number
        ("reject:21214", PermanentSendError, "21214"),  # cannot be reached
        ("reject:21610", PermanentSendError, "21610"),  # unsubscribed (STOP)
        ("reject:21612", PermanentSendError, "21612"),  # not reachable by SMS
        ("reject:21614", PermanentSendError, "21614"),  # not a mobile number
        ("reject:21408", RetryableSendError, "21408"),  # our account lacks the region; another may not
        ("reject:21999", PermanentSendError, "21999"),  # any other 4xx stops
    ],
)
def test_twilio_errors_are_retryable_or_permanent(
    twilio: TwilioGateway,
    fake_providers: FakeProviders,  # noqa: F811
    behaviour: str,
    error_class: type[SendError],
    code: str | None,
) -> None:
    fake_providers.script("twilio", [behaviour])

    with pytest.raises(error_class) as caught:
        twilio.send(TO, BODY, reference="42")

    assert caught.value.provider == "twilio"
    assert caught.value.code == code
    assert caught.value.retryable is (error_class is RetryableSendError)


@pytest.mark.parametrize(
    ("behaviour", "error_class", "code"),
    [
        ("timeout", RetryableSendError, None),
        ("500", RetryableSendError, "500"),
        ("502", RetryableSendError, "502"),
        ("429", RetryableSendError, "429"),
        ("400", PermanentSendError, "400"),
        ("status:401", RetryableSendError, "401"),  # RiskHold: this account's problem
        ("status:402", RetryableSendError, "402"),  # InvalidSenderId: this account's configuration
        ("status:403", PermanentSendError, "403"),  # InvalidPhoneNumber
        ("status:404", PermanentSendError, "404"),  # UnsupportedNumberType
        ("status:405", RetryableSendError, "405"),  # InsufficientBalance: fail over to the other provider
        ("status:406", PermanentSendError, "406"),  # UserInBlacklist
        ("status:407", RetryableSendError, "407"),  # CouldNotRoute
        ("status:409", PermanentSendError, "409"),  # DoNotDisturbRejection
        ("status:500", RetryableSendError, "500"),  # InternalServerError
        ("status:501", RetryableSendError, "501"),  # GatewayError
        ("status:502", RetryableSendError, "502"),  # RejectedByGateway
    ],
)
def test_africastalking_errors_are_retryable_or_permanent(
    africastalking: AfricasTalkingGateway,
    fake_providers: FakeProviders,  # noqa: F811
    behaviour: str,
    error_class: type[SendError],
    code: str | None,
) -> None:
    fake_providers.script("africastalking", [behaviour])

    with pytest.raises(error_class) as caught:
        africastalking.send(TO, BODY, reference="42")

    assert caught.value.provider == "africastalking"
    assert caught.value.code == code


def test_a_script_plays_in_order_then_falls_back_to_ok(
    twilio: TwilioGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    fake_providers.script("twilio", ["timeout", "500", "429", "reject:21211", "ok"])

    outcomes = []
    for attempt in range(6):
        try:
            outcomes.append(twilio.send(TO, BODY, reference=str(attempt)).status)
        except SendError as error:
            outcomes.append(type(error).__name__)

    assert outcomes == [
        "RetryableSendError",
        "RetryableSendError",
        "RetryableSendError",
        "PermanentSendError",
        "queued",
        "queued",
    ]
    assert len(fake_providers.received) == 6


@pytest.mark.parametrize("provider", ["twilio", "africastalking"])
def test_a_provider_that_refuses_connections_is_retryable(provider: str) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    gateway = {
        "twilio": lambda: TwilioGateway(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM, None, closed),
        "africastalking": lambda: AfricasTalkingGateway(AT_USERNAME, AT_API_KEY, None, closed),
    }[provider]()

    with pytest.raises(RetryableSendError, match="connection failed"):
        gateway.send(TO, BODY, reference="42")


@pytest.mark.parametrize(
    ("provider", "secret"),
    [("twilio", TWILIO_AUTH_TOKEN), ("africastalking", AT_API_KEY)],
)
def test_rejected_credentials_fail_over_and_never_show_the_secret(
    fake_providers: FakeProviders,  # noqa: F811
    provider: str,
    secret: str,
) -> None:
    config = _config(fake_providers, SMS_GATEWAYS=[provider])
    wrong = {"twilio": "TWILIO_AUTH_TOKEN", "africastalking": "AT_API_KEY"}[provider]
    config[wrong] = "wrong-" + secret
    (gateway,) = build_gateways(config, timeout=CLIENT_TIMEOUT_SECONDS)

    with pytest.raises(RetryableSendError) as caught:
        gateway.send(TO, BODY, reference="42")

    assert "401" in caught.value.reason
    assert secret not in str(caught.value)
    assert fake_providers.requests[0].authorised is False


def test_twilio_error_reasons_mask_the_number(twilio: TwilioGateway, fake_providers: FakeProviders) -> None:  # noqa: F811
    fake_providers.script("twilio", ["reject:21999"])  # Twilio's message for it quotes the number

    with pytest.raises(PermanentSendError) as caught:
        twilio.send(TO, BODY, reference="42")

    assert TO not in str(caught.value)


def test_africastalking_refuses_a_number_not_in_e164_before_any_request(
    africastalking: AfricasTalkingGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    with pytest.raises(PermanentSendError):
        africastalking.send("0970001234", BODY, reference="42")

    assert fake_providers.requests == []


# --- failover ---


def test_failover_moves_to_the_next_gateway_on_a_retryable_error(
    twilio: TwilioGateway,
    africastalking: AfricasTalkingGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    fake_providers.script("twilio", ["503"])

    result, errors = send_with_failover([twilio, africastalking], TO, BODY, reference="42")

    assert result is not None
    assert result.provider == "africastalking"
    assert [(e.provider, e.retryable) for e in errors] == [("twilio", True)]
    assert fake_providers.received == [Received("twilio", TO, BODY), Received("africastalking", TO, BODY)]


def test_failover_moves_on_after_a_timeout(
    twilio: TwilioGateway,
    africastalking: AfricasTalkingGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    fake_providers.script("africastalking", ["timeout"])

    result, errors = send_with_failover([africastalking, twilio], TO, BODY, reference="42")

    assert result is not None
    assert result.provider == "twilio"
    assert [e.provider for e in errors] == ["africastalking"]


def test_failover_stops_at_a_permanent_error(
    twilio: TwilioGateway,
    africastalking: AfricasTalkingGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    fake_providers.script("twilio", ["reject:21211"])

    result, errors = send_with_failover([twilio, africastalking], TO, BODY, reference="42")

    assert result is None
    assert [(e.provider, e.code, e.retryable) for e in errors] == [("twilio", "21211", False)]
    assert [r.provider for r in fake_providers.received] == ["twilio"]


def test_failover_returns_every_error_when_all_gateways_fail(
    twilio: TwilioGateway,
    africastalking: AfricasTalkingGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    fake_providers.script("twilio", ["429"])
    fake_providers.script("africastalking", ["status:405"])

    result, errors = send_with_failover([twilio, africastalking], TO, BODY, reference="42")

    assert result is None
    assert [(e.provider, e.code) for e in errors] == [("twilio", "20429"), ("africastalking", "405")]


def test_failover_with_no_error_returns_the_first_result_and_no_errors() -> None:
    first, second = ConsoleGateway(), ConsoleGateway()

    result, errors = send_with_failover([first, second], TO, BODY, reference="42")

    assert result is not None
    assert errors == []
    assert len(first.sent) == 1
    assert second.sent == []


def test_failover_never_calls_a_gateway_after_a_permanent_error() -> None:
    blocked = FailingGateway("first", PermanentSendError("first", "blocked"))
    spare = FailingGateway("second", RetryableSendError("second", "down"))

    result, errors = send_with_failover([blocked, spare], TO, BODY, reference="42")

    assert result is None
    assert len(errors) == 1
    assert spare.calls == 0


def test_failover_without_gateways_is_an_error() -> None:
    with pytest.raises(ValueError, match="no SMS gateway"):
        send_with_failover([], TO, BODY, reference="42")


# --- configuration ---


def _config(fake: FakeProviders, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "SMS_GATEWAYS": ["twilio", "africastalking"],
        "PUBLIC_URL": "",
        "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
        "TWILIO_FROM": TWILIO_FROM,
        "TWILIO_API_BASE": fake.base_url,
        "AT_USERNAME": AT_USERNAME,
        "AT_API_KEY": AT_API_KEY,
        "AT_SENDER_ID": "",
        "AT_API_BASE": fake.base_url,
    }
    config.update(overrides)
    return config


@pytest.mark.parametrize(
    "order",
    [
        ["twilio", "africastalking", "console"],
        ["africastalking", "twilio"],
        ["console"],
        [" Twilio ", "AfricasTalking"],
    ],
)
def test_build_gateways_keeps_the_configured_order(
    fake_providers: FakeProviders,  # noqa: F811
    order: list[str],
) -> None:
    gateways = build_gateways(_config(fake_providers, SMS_GATEWAYS=order))

    assert [g.name for g in gateways] == [name.strip().lower() for name in order]


def test_built_gateways_send_through_the_configured_api_bases(fake_providers: FakeProviders) -> None:  # noqa: F811
    gateways = build_gateways(_config(fake_providers), timeout=CLIENT_TIMEOUT_SECONDS)

    for gateway in gateways:
        gateway.send(TO, BODY, reference="42")

    assert [r.provider for r in fake_providers.received] == ["twilio", "africastalking"]


@pytest.mark.parametrize(
    ("public_url", "callback"),
    [
        ("https://alerts.example.org", "https://alerts.example.org/webhooks/twilio/status"),
        ("https://alerts.example.org/", "https://alerts.example.org/webhooks/twilio/status"),
        ("", None),
    ],
)
def test_twilio_status_callback_comes_from_the_public_url(
    fake_providers: FakeProviders,  # noqa: F811
    public_url: str,
    callback: str | None,
) -> None:
    (gateway,) = build_gateways(_config(fake_providers, SMS_GATEWAYS=["twilio"], PUBLIC_URL=public_url))

    assert isinstance(gateway, TwilioGateway)
    assert gateway.status_callback_url == callback


@pytest.mark.parametrize(
    ("gateways", "blank", "named"),
    [
        (["twilio"], ["TWILIO_AUTH_TOKEN"], "TWILIO_AUTH_TOKEN"),
        (["twilio"], ["TWILIO_ACCOUNT_SID"], "TWILIO_ACCOUNT_SID"),
        (["twilio"], ["TWILIO_FROM"], "TWILIO_FROM"),
        (["console", "africastalking"], ["AT_API_KEY"], "AT_API_KEY"),
        (["africastalking"], ["AT_USERNAME"], "AT_USERNAME"),
    ],
)
def test_a_provider_without_its_credentials_is_refused_by_name_without_secrets(
    fake_providers: FakeProviders,  # noqa: F811
    gateways: list[str],
    blank: list[str],
    named: str,
) -> None:
    config = _config(fake_providers, SMS_GATEWAYS=gateways, **dict.fromkeys(blank, ""))

    with pytest.raises(ValueError, match=named) as caught:
        build_gateways(config)

    assert TWILIO_AUTH_TOKEN not in str(caught.value)
    assert AT_API_KEY not in str(caught.value)


def test_the_console_needs_no_credentials() -> None:
    (gateway,) = build_gateways({"SMS_GATEWAYS": ["console"]})

    assert isinstance(gateway, ConsoleGateway)


@pytest.mark.parametrize(
    ("gateways", "message"),
    [
        (["twilio", "vonage"], "unknown SMS gateway 'vonage'"),
        ([], "SMS_GATEWAYS is empty"),
        (["console", "console"], "listed twice"),
    ],
)
def test_build_gateways_refuses_a_bad_list(gateways: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_gateways({"SMS_GATEWAYS": gateways})


# --- console ---


def test_the_console_keeps_messages_and_logs_neither_the_number_nor_the_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = ConsoleGateway()

    with caplog.at_level(logging.DEBUG, logger="escalation.gateways"):
        first = gateway.send(TO, BODY, reference="42")
        second = gateway.send(TO, BODY, reference="43")

    assert first.provider == "console"
    assert first.provider_message_id != second.provider_message_id
    assert [(m.to, m.body, m.reference) for m in gateway.sent] == [(TO, BODY, "42"), (TO, BODY, "43")]
    logged = caplog.text
    assert mask_phone(TO) in logged
    assert TO not in logged
    assert TO.removeprefix("+") not in logged
    assert BODY not in logged
    assert "Rutshuru" not in logged


def test_failover_logs_mask_the_number(caplog: pytest.LogCaptureFixture) -> None:
    down = FailingGateway("first", RetryableSendError("first", "down"))

    with caplog.at_level(logging.DEBUG, logger="escalation.gateways"):
        send_with_failover([down, ConsoleGateway()], TO, BODY, reference="42")

    assert "first" in caplog.text
    assert TO not in caplog.text
    assert BODY not in caplog.text


# --- the environment's proxy settings (read once per host, still obeyed) ---


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is: nothing listens there


def _proxy_environment(monkeypatch: pytest.MonkeyPatch, no_proxy: str | None) -> None:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("no_proxy", "NO_PROXY"):
        if no_proxy is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, no_proxy)


def test_twilio_sends_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
    twilio: TwilioGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    _proxy_environment(monkeypatch, no_proxy=None)
    for _ in range(2):  # the second send uses what the first read of the environment found
        with pytest.raises(RetryableSendError, match="connection failed"):
            twilio.send(TO, BODY, reference="1")
    assert not fake_providers.requests


def test_twilio_bypasses_the_proxy_for_hosts_in_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
    twilio: TwilioGateway,
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    _proxy_environment(monkeypatch, no_proxy="127.0.0.1")
    for n in range(2):
        assert twilio.send(TO, BODY, reference=str(n)).provider == "twilio"
    assert len(fake_providers.requests) == 2


def test_the_fake_api_acts_on_no_request_whose_sender_died_before_its_body_arrived(
    fake_providers: FakeProviders,  # noqa: F811
) -> None:
    host, port = fake_providers.base_url.removeprefix("http://").split(":")
    path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json"
    with socket.create_connection((host, int(port))) as client:
        client.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 200\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\nTo=%2B2439".encode()
        )
        client.shutdown(socket.SHUT_WR)  # a killed worker: the rest of the body never comes
        assert client.recv(1024) == b""  # no answer, the connection closed
    assert fake_providers.cut_off == 1
    assert fake_providers.requests == []
