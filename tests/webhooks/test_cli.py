"""`flask sms simulate` posts a correctly signed webhook to a running server, which stores the message."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from alerts.models import InboundMessage
from tests.webhooks.conftest import AT_KEY, TWILIO_TOKEN


@pytest.fixture
def server_url(app) -> Iterator[str]:
    """The application served by a real HTTP server on a free port, in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def stored_messages(session) -> list[InboundMessage]:
    messages = list(session.scalars(select(InboundMessage)))
    session.commit()
    return messages


@pytest.mark.parametrize("provider", ["twilio", "africastalking"])
def test_a_simulated_sms_reaches_the_server_signed_and_is_stored(app, server_url, session, provider):
    result = app.test_cli_runner().invoke(
        args=[
            "sms",
            "simulate",
            "--provider",
            provider,
            "--from",
            "+243815550007",
            "--url",
            server_url,
            "alerte",
        ]
    )

    assert result.exit_code == 0, result.output
    assert result.output.startswith("HTTP 200\n")
    [message] = stored_messages(session)
    assert (message.provider, message.sender, message.text) == (provider, "+243815550007", "alerte")


@pytest.mark.parametrize(
    "app_config",
    [{"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "AT_WEBHOOK_KEY": AT_KEY, "PUBLIC_URL": "https://x.example"}],
)
def test_behind_a_public_url_the_simulation_signs_that_url(app, server_url, session):
    result = app.test_cli_runner().invoke(
        args=["sms", "simulate", "--from", "+243815550007", "--url", server_url, "alerte"]
    )

    assert result.output.startswith("HTTP 200\n"), result.output
    assert len(stored_messages(session)) == 1


@pytest.mark.parametrize("app_config", [{"TWILIO_AUTH_TOKEN": "", "AT_WEBHOOK_KEY": ""}])
@pytest.mark.parametrize("provider", ["twilio", "africastalking"])
def test_without_a_secret_the_simulation_says_so_instead_of_posting(app, provider):
    result = app.test_cli_runner().invoke(
        args=["sms", "simulate", "--provider", provider, "--from", "+243815550007", "alerte"]
    )

    assert result.exit_code != 0
    assert "is not set" in result.output


def test_a_refused_simulation_prints_the_answer_and_fails(app, server_url, session):
    result = app.test_cli_runner().invoke(
        args=["sms", "simulate", "--from", "not-a-number", "--url", server_url, "alerte"]
    )

    assert result.exit_code == 1
    assert "HTTP 400" in result.output
    assert "invalid sender phone number" in result.output
    assert stored_messages(session) == []
