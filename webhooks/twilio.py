"""Twilio: inbound SMS and delivery reports, each signed with X-Twilio-Signature over the public URL."""

from __future__ import annotations

import hmac
import logging
from datetime import datetime

from flask import Response, current_app, request
from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, RequestValidator, get_signature_algorithm
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.datastructures import MultiDict

from alerts import outbox
from alerts.web import request_session
from webhooks.common import (
    Handled,
    WebhookRejected,
    apply_report,
    inbound_form,
    message_id,
    public_url,
    read_form,
    recipient_number,
    require,
    sender_e164,
    store_and_process,
    utcnow,
    wake_engine_for,
    webhook_blueprint,
)

PROVIDER = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"

bp = webhook_blueprint("twilio_webhooks", "/webhooks/twilio")
log = logging.getLogger(__name__)


def signed_form() -> MultiDict[str, str]:
    """The posted form once its signature is verified against every field; 403 otherwise."""
    token = current_app.config.get("TWILIO_AUTH_TOKEN", "")
    if not token:
        log.error("configuration error: TWILIO_AUTH_TOKEN is not set, every Twilio webhook is refused")
        raise WebhookRejected(403, "webhook not configured")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        raise WebhookRejected(403, "missing signature")
    form = read_form()
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    validator = RequestValidator(token)
    url = public_url()
    # The URL exactly as we see it first (Twilio's usual signature, one HMAC); then `validate`, which also
    # tries the URL with and without its port (Twilio signs either way).
    if _signed_over(validator, url, form, signature, algorithm):
        return form
    if not validator.validate(url, form, signature, algorithm=algorithm):
        raise WebhookRejected(403, "invalid signature")
    return form


def _signed_over(
    validator: RequestValidator, url: str, form: MultiDict[str, str], signature: str, algorithm: str
) -> bool:
    try:
        expected = validator.compute_signature(url, form, algorithm)
    except ValueError:  # an algorithm the package does not know: `validate` refuses it and logs why
        return False
    return hmac.compare_digest(expected.encode(), signature.encode())


EMPTY_TWIML = str(MessagingResponse())


def twiml(reply: str | None) -> Response:
    if not reply:
        return Response(EMPTY_TWIML, mimetype="application/xml")
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return Response(str(response), mimetype="application/xml")


def inline_reply(handled: Handled, now: datetime) -> str | None:
    """The receipt to send as the TwiML reply, once the outbox records it as sent (so it is sent once)."""
    outcome = handled.outcome
    if not current_app.config["TWILIO_REPLY_WITH_RECEIPT"] or outcome is None:
        return None
    if not outcome.reply or outcome.reply_outbound_id is None:
        return None
    session = request_session()
    try:
        recorded = outbox.mark_sent_inline(session, outcome.reply_outbound_id, provider=PROVIDER, now=now)
    except Exception as exc:
        session.rollback()
        # The receipt stays queued in the outbox: the dispatcher sends it instead.
        log.error(
            "inbound message %s: recording the inline receipt failed with %s",
            handled.message_id,
            type(exc).__name__,
        )
        return None
    if recorded is False:  # the dispatcher took the receipt first: it must not go out twice
        return None
    return outcome.reply


@bp.post("/sms")
def inbound_sms() -> Response:
    now = utcnow()
    form = signed_form()
    sid, sender, recipient = require(form, "MessageSid", "From", "To")
    inbound = inbound_form(
        provider=PROVIDER,
        provider_message_id=message_id(sid),
        sender=sender_e164(sender, PROVIDER),
        recipient=recipient_number(recipient),
        text=form.get("Body", ""),
        received_at=now,
        form=form,
    )
    handled = store_and_process(inbound, now, inline=current_app.config["TWILIO_REPLY_WITH_RECEIPT"])
    reply = inline_reply(handled, now)
    wake_engine_for(handled)
    return twiml(reply)


@bp.post("/status")
def delivery_status() -> Response:
    now = utcnow()
    form = signed_form()
    sid, status = require(form, "MessageSid", "MessageStatus")
    apply_report(PROVIDER, message_id(sid), status, form.get("ErrorCode") or None, now)
    return Response(status=204)


@bp.post("/voice")
def inbound_call() -> Response:
    """A missed-call alert ("beep"): refused unanswered, so it costs the caller nothing, and stored."""
    now = utcnow()
    form = signed_form()
    sid, caller, recipient = require(form, "CallSid", "From", "To")
    inbound = inbound_form(
        provider=PROVIDER,
        provider_message_id=message_id(sid),
        sender=sender_e164(caller, PROVIDER),
        recipient=recipient_number(recipient),
        text="",
        received_at=now,
        form=form,
        channel="voice",
    )
    wake_engine_for(store_and_process(inbound, now))
    response = VoiceResponse()
    response.reject()
    return Response(str(response), mimetype="application/xml")
