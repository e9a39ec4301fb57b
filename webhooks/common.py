"""What both providers' webhooks share: reading and checking the body, normalising, storing, processing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import MultiDict

from alerts import pipeline
from alerts.delivery import apply_delivery_report
from alerts.inbound import InboundForm, describe_error, log_processing_failure, mark_failed, store_inbound
from alerts.phones import InvalidPhone, mask_phone, to_e164
from alerts.spool import Spool
from alerts.web import notify_channel, request_session, wake_engine

log = logging.getLogger(__name__)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_ID_CHARS = 80  # inbound_messages.provider_message_id
MAX_RECIPIENT_CHARS = 40  # inbound_messages.recipient


class WebhookRejected(Exception):
    """A request the provider edge refuses: answered with `status` and a short plain-text reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def rejected_response(error: WebhookRejected) -> Response:
    """A short plain-text 4xx; the log line says which webhook and why, never what the message held."""
    log.warning("webhook %s %s rejected: %d %s", request.method, request.path, error.status, error.reason)
    return Response(error.reason + "\n", status=error.status, mimetype="text/plain")


class StorageUnavailable(Exception):
    """The database refused the message: the provider must retry, so this is a 503."""


def storage_unavailable(_error: StorageUnavailable) -> Response:
    """The provider retries on a 5xx: the message is not lost, only delayed."""
    return Response("storage unavailable, retry later\n", status=503, mimetype="text/plain")


def webhook_blueprint(name: str, url_prefix: str) -> Blueprint:
    """A blueprint whose WebhookRejected errors become short plain-text answers."""
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)
    blueprint.register_error_handler(WebhookRejected, rejected_response)
    blueprint.register_error_handler(StorageUnavailable, storage_unavailable)
    return blueprint


def utcnow() -> datetime:
    """The time a webhook arrived: the edge is where the clock is read, services take it as a parameter."""
    return datetime.now(UTC)


def read_form() -> MultiDict[str, str]:
    """The posted form, refused when too big (413), not form-encoded (415) or not UTF-8 (400)."""
    limit = current_app.config["MAX_WEBHOOK_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise WebhookRejected(413, "request body too large")
    if request.mimetype != FORM_CONTENT_TYPE:
        raise WebhookRejected(415, f"expected {FORM_CONTENT_TYPE}")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise WebhookRejected(413, "request body too large")
    try:
        # Werkzeug's own parser would replace bad bytes silently; a message must arrive intact or not at all.
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise WebhookRejected(400, "body is not valid UTF-8") from None
    return MultiDict(pairs)


def require(form: MultiDict[str, str], *names: str) -> list[str]:
    """The values of required fields, or 400 naming the first one missing or empty."""
    values = []
    for name in names:
        value = form.get(name, "").strip()
        if not value:
            raise WebhookRejected(400, f"missing field: {name}")
        values.append(value)
    return values


def message_id(value: str) -> str:
    """A provider's message id, refused when it cannot be one (400) rather than truncated."""
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise WebhookRejected(400, "invalid message id")
    return value


def sender_e164(raw: str, provider: str) -> str:
    """The sender in E.164; a provider never sends an unparseable sender, so one is a 400 (logged masked)."""
    try:
        return to_e164(raw, current_app.config["DEFAULT_REGION"])
    except InvalidPhone:
        log.warning("%s webhook: invalid sender number %s", provider, mask_phone(raw))
        raise WebhookRejected(400, "invalid sender phone number") from None


def recipient_number(raw: str) -> str:
    """Our number the message was sent to: E.164 when it is a phone number, as given for a short code."""
    try:
        return to_e164(raw, current_app.config["DEFAULT_REGION"])
    except InvalidPhone:
        if len(raw) > MAX_RECIPIENT_CHARS or not raw.isprintable():
            raise WebhookRejected(400, "invalid recipient") from None
        return raw


def public_url() -> str:
    """The URL the provider signed: PUBLIC_URL plus the path when set, else the URL as the request shows it.

    Behind a proxy, set PUBLIC_URL (the public origin, with any path prefix the proxy strips) or TRUST_PROXY
    (ProxyFix rebuilds scheme and host from X-Forwarded-Proto and X-Forwarded-Host).
    """
    base = current_app.config.get("PUBLIC_URL", "").rstrip("/")
    if not base:
        return request.url
    query = request.query_string.decode("utf-8", "replace")
    return f"{base}{request.script_root}{request.path}" + (f"?{query}" if query else "")


def inbound_form(
    provider: str,
    provider_message_id: str,
    sender: str,
    recipient: str,
    text: str,
    received_at: datetime,
    form: MultiDict[str, str],
    channel: str = "sms",
) -> InboundForm:
    """The one inbound form both providers are normalised into; NUL characters, which PostgreSQL text
    cannot hold, are dropped (after the signature check, which covers them)."""
    return InboundForm(
        provider=provider,
        provider_message_id=provider_message_id,
        sender=sender,
        recipient=recipient,
        text=text.replace("\x00", ""),
        received_at=received_at,
        raw={key: value.replace("\x00", "") for key, value in form.items()},
        channel=channel,
    )


@dataclass(frozen=True)
class Handled:
    """What became of an inbound message at the edge: stored (always), new or a retry, and processed."""

    message_id: int | None  # None: in the SQLite spool, not in the database yet
    created: bool
    outcome: pipeline.Outcome | None


def store_and_process(form: InboundForm, now: datetime, *, inline: bool = False) -> Handled:
    """Store the message and commit; the engine processes it at once (woken after the answer), or, where
    the provider's answer must carry the receipt, it is processed here. A failure keeps it for retry.
    On SQLite the message goes to the spool (alerts/spool.py) unless it is processed here."""
    spool = current_app.extensions.get("alerts_spool")
    if spool is not None and not inline:
        return _spooled(spool, form)
    session = request_session()
    try:
        message_id, created = store_inbound(session, form, notify=notify_channel())
    except SQLAlchemyError as exc:
        session.rollback()
        # The error's text carries the SQL parameters (the sender and the text): only its type is logged.
        log.error("%s webhook: storing a message failed with %s", form.provider, type(exc).__name__)
        raise StorageUnavailable from None
    if not created:
        log.info("%s webhook: message %s is a retry of a stored message", form.provider, message_id)
        return Handled(message_id, created=False, outcome=None)
    if not inline:
        return Handled(message_id, created=True, outcome=None)
    try:
        outcome = pipeline.process_message(
            session, message_id, now=now, settings=pipeline.PipelineSettings.from_config(current_app.config)
        )
    except Exception as exc:
        session.rollback()
        log_processing_failure(message_id, exc, provider=form.provider)
        try:
            mark_failed(session, message_id, describe_error(exc), now)
        except SQLAlchemyError as mark_exc:
            session.rollback()
            # Still stored as received: the retry job picks it up after its grace period.
            log.error(
                "inbound message %s: recording the failure failed with %s",
                message_id,
                type(mark_exc).__name__,
            )
        return Handled(message_id, created=True, outcome=None)
    return Handled(message_id, created=True, outcome=outcome)


def _spooled(spool: Spool, form: InboundForm) -> Handled:
    try:
        created = spool.put(form)
    except SQLAlchemyError as exc:
        log.error("%s webhook: spooling a message failed with %s", form.provider, type(exc).__name__)
        raise StorageUnavailable from None
    if not created:
        log.info("%s webhook: a retry of a spooled message", form.provider)
    return Handled(None, created=created, outcome=None)


def apply_report(
    provider: str, provider_message_id: str, status: str, error: str | None, now: datetime
) -> str:
    """Apply a delivery report; an unknown message is answered as success so the provider stops retrying."""
    session = request_session()
    try:
        return apply_delivery_report(session, provider, provider_message_id, status, error, now)
    except SQLAlchemyError as exc:
        session.rollback()
        log.error("%s delivery report: database error %s", provider, type(exc).__name__)
        raise StorageUnavailable from None


def wake_engine_for(handled: Handled) -> None:
    """Wake the escalation engine when processing left it work (an incident to escalate, a reply to send).

    Called after any inline reply is recorded as sent, so the dispatcher never picks that reply up too.
    """
    outcome = handled.outcome
    if outcome is None:
        if handled.created:  # stored, not processed yet: the engine's next run is now
            wake_engine(notified=True)  # other processes' workers heard it from the commit
        return
    if outcome.incident_number is not None or outcome.reply_outbound_id is not None:
        wake_engine()
