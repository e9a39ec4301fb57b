"""Africa's Talking: inbound SMS and delivery reports, which are not signed, so a secret key in the callback
URL (`?key=`) and, optionally, a source-address allowlist stand in for a signature."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from flask import Response, current_app, request

from webhooks.common import (
    WebhookRejected,
    apply_report,
    inbound_form,
    message_id,
    read_form,
    recipient_number,
    require,
    sender_e164,
    store_and_process,
    utcnow,
    wake_engine_for,
    webhook_blueprint,
)

PROVIDER = "africastalking"

bp = webhook_blueprint("africastalking_webhooks", "/webhooks/africastalking")
log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def allowed_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """AT_ALLOWED_IPS parsed once; a malformed entry allows nothing and is logged as a configuration error."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            log.error("configuration error: AT_ALLOWED_IPS entry %r is not an address or network", entry)
    return tuple(networks)


def address_allowed(address: str | None, entries: tuple[str, ...]) -> bool:
    """Whether a source address is in the allowlist (IPv4-mapped IPv6 addresses count as IPv4)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in allowed_networks(entries))


def check_caller() -> None:
    """403 unless the source address is allowed (when a list is set) and the URL carries the right key."""
    key = current_app.config.get("AT_WEBHOOK_KEY", "")
    if not key:
        log.error("configuration error: AT_WEBHOOK_KEY is not set, every Africa's Talking webhook is refused")
        raise WebhookRejected(403, "webhook not configured")
    allowed = tuple(current_app.config.get("AT_ALLOWED_IPS") or ())
    if allowed and not address_allowed(request.remote_addr, allowed):
        raise WebhookRejected(403, "source address not allowed")
    given = request.args.get("key", "")
    if not hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8")):
        raise WebhookRejected(403, "invalid key")


# A provider holds an undelivered SMS for a few days at most; an older `date` is a wrong clock, not a delay.
MAX_DELIVERY_DELAY = timedelta(days=3)


def received_at(date: str, now: datetime) -> datetime:
    """When the provider received the message: its `date` when parseable (UTC unless it says otherwise)
    and plausible (not in the future, not older than a delivery delay); else now."""
    try:
        parsed = datetime.fromisoformat(date.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return now
    if parsed > now or parsed < now - MAX_DELIVERY_DELAY:
        return now
    return parsed


def ok() -> Response:
    return Response("ok\n", mimetype="text/plain")


@bp.post("/sms")
def inbound_sms() -> Response:
    now = utcnow()
    check_caller()
    form = read_form()
    provider_id, sender, recipient = require(form, "id", "from", "to")
    inbound = inbound_form(
        provider=PROVIDER,
        provider_message_id=message_id(provider_id),
        sender=sender_e164(sender, PROVIDER),
        recipient=recipient_number(recipient),
        text=form.get("text", ""),
        received_at=received_at(form.get("date", ""), now),
        form=form,
    )
    wake_engine_for(store_and_process(inbound, now))
    return ok()


@bp.post("/delivery")
def delivery_report() -> Response:
    now = utcnow()
    check_caller()
    form = read_form()
    provider_id, status = require(form, "id", "status")
    apply_report(PROVIDER, message_id(provider_id), status, form.get("failureReason") or None, now)
    return ok()


# Africa's Talking's voice XML: <Reject/> ends an incoming call without answering it (no cost to the caller).
REJECT_CALL = '<?xml version="1.0" encoding="UTF-8"?><Response><Reject/></Response>'


@bp.post("/voice")
def inbound_call() -> Response:
    """A missed-call alert ("beep"), keyed like the SMS callback; stored once per call session."""
    now = utcnow()
    check_caller()
    form = read_form()
    session_id, caller = require(form, "sessionId", "callerNumber")
    if form.get("isActive", "1") == "0":
        return ok()  # the end-of-call notification of a call we already stored
    inbound = inbound_form(
        provider=PROVIDER,
        provider_message_id=message_id(session_id),
        sender=sender_e164(caller, PROVIDER),
        recipient=recipient_number(form.get("destinationNumber", "")),
        text="",
        received_at=now,
        form=form,
        channel="voice",
    )
    wake_engine_for(store_and_process(inbound, now))
    return Response(REJECT_CALL, mimetype="application/xml")
