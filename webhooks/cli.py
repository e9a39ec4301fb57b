"""`flask --app wsgi sms simulate ...`: post a correctly signed provider webhook to a running server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

import click
import requests
from flask import current_app
from flask.cli import AppGroup
from twilio.request_validator import RequestValidator

sms_cli = AppGroup("sms", help="Try the SMS flow by hand.")

TWILIO_SMS_PATH = "/webhooks/twilio/sms"
AT_SMS_PATH = "/webhooks/africastalking/sms"
DEFAULT_TO = {"twilio": "+15005550006", "africastalking": "12345"}
TIMEOUT_SECONDS = 15


def twilio_request(
    base_url: str, sender: str, recipient: str, text: str
) -> tuple[str, dict[str, str], dict[str, str]]:
    """URL, form and headers of an inbound SMS as Twilio posts it, signed with TWILIO_AUTH_TOKEN."""
    token = current_app.config["TWILIO_AUTH_TOKEN"]
    if not token:
        raise click.ClickException("TWILIO_AUTH_TOKEN is not set: the server would refuse the webhook")
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": current_app.config["TWILIO_ACCOUNT_SID"] or "AC" + "0" * 32,
        "From": sender,
        "To": recipient,
        "Body": text,
        "NumSegments": "1",
        "NumMedia": "0",
    }
    # The server checks the signature against PUBLIC_URL when it is set, else against the URL it was sent to.
    signed_url = (current_app.config["PUBLIC_URL"] or base_url).rstrip("/") + TWILIO_SMS_PATH
    signature = RequestValidator(token).compute_signature(signed_url, form)
    return base_url + TWILIO_SMS_PATH, form, {"X-Twilio-Signature": signature}


def africastalking_request(
    base_url: str, sender: str, recipient: str, text: str
) -> tuple[str, dict[str, str], dict[str, str]]:
    """URL (with the webhook key), form and headers of an inbound SMS as Africa's Talking posts it."""
    key = current_app.config["AT_WEBHOOK_KEY"]
    if not key:
        raise click.ClickException("AT_WEBHOOK_KEY is not set: the server would refuse the webhook")
    form = {
        "id": str(uuid.uuid4()),
        "from": sender,
        "to": recipient,
        "text": text,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "linkId": str(uuid.uuid4()),
        "networkCode": "63001",
    }
    return f"{base_url}{AT_SMS_PATH}?{urlencode({'key': key})}", form, {}


REQUEST_BUILDERS = {"twilio": twilio_request, "africastalking": africastalking_request}


@sms_cli.command("simulate")
@click.option("--provider", type=click.Choice(sorted(REQUEST_BUILDERS)), default="twilio", show_default=True)
@click.option("--from", "sender", required=True, help="The sender's phone number, e.g. +243815550001.")
@click.option("--to", "recipient", default=None, help="Our number (default: TWILIO_FROM, or a placeholder).")
@click.option("--url", default="http://127.0.0.1:5000", show_default=True, help="The running server.")
@click.argument("text")
def simulate(provider: str, sender: str, recipient: str | None, url: str, text: str) -> None:
    """Post TEXT from --from as PROVIDER's inbound SMS webhook would, and print the answer."""
    if recipient is None:
        configured = (
            current_app.config["TWILIO_FROM"] if provider == "twilio" else current_app.config["AT_SENDER_ID"]
        )
        recipient = configured or DEFAULT_TO[provider]
    target, form, headers = REQUEST_BUILDERS[provider](url.rstrip("/"), sender, recipient, text)
    try:
        response = requests.post(target, data=form, headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {url}: {type(exc).__name__}") from None
    click.echo(f"HTTP {response.status_code}")
    click.echo(response.text)
    if response.status_code >= 400:
        raise SystemExit(1)
