"""SMS gateways: one send() over Twilio, Africa's Talking or the console; errors sorted into retry or stop.

A `RetryableSendError` means "not this message's fault": the dispatcher may try the next gateway now and this
one again later (timeouts, 5xx, 429, and also a gateway's own account problems such as rejected credentials or
an empty balance, which another provider does not share). A `PermanentSendError` means the message itself
cannot be delivered (invalid, unreachable or blocked number): no gateway will do better, so failover stops.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import requests
import urllib3
from africastalking.SMS import SMSService
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.rest import Client as TwilioClient

from alerts.phones import mask_phone
from escalation.twilio_http import PooledTwilioHttpClient

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0
TWILIO_STATUS_CALLBACK_PATH = "/webhooks/twilio/status"


@dataclass(frozen=True)
class SendResult:
    """A message the provider accepted: its id (for delivery reports) and its first status."""

    provider: str
    provider_message_id: str
    status: str


class SendError(Exception):
    """A send that failed; `retryable` says whether another gateway, or a later try, may succeed."""

    retryable: bool = True

    def __init__(self, provider: str, reason: str, *, code: str | None = None) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.code = code  # the provider's own error or status code, when it gave one


class RetryableSendError(SendError):
    """The provider, the network or this gateway's account failed: try the next gateway, later this one."""

    retryable = True


class PermanentSendError(SendError):
    """The message cannot be delivered to this number by any gateway: stop and show it on the incident."""

    retryable = False


class Gateway(Protocol):
    """Something that hands one SMS to a provider; `reference` is our outbox id, for logs and correlation."""

    name: str

    def send(self, to: str, body: str, *, reference: str) -> SendResult: ...


_PHONE_LIKE = re.compile(r"\+?\d[\d ]{6,}\d")


def _scrub(text: str, limit: int = 300) -> str:
    """A provider's error text fit for logs and the outbox: phone numbers masked, length capped."""
    return _PHONE_LIKE.sub(lambda match: mask_phone(match.group()), text.strip())[:limit]


# --- console -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleMessage:
    """One message the console gateway pretended to send."""

    to: str
    body: str
    reference: str
    provider_message_id: str


def _console_id() -> str:
    return f"CONSOLE{uuid.uuid4().hex}"


class ConsoleGateway:
    """Development gateway: logs a masked line and keeps messages in memory; sends nothing."""

    name = "console"

    def __init__(self, id_factory: Callable[[], str] = _console_id) -> None:
        self.sent: list[ConsoleMessage] = []
        self._id_factory = id_factory
        self._lock = threading.Lock()

    def send(self, to: str, body: str, *, reference: str) -> SendResult:
        message_id = self._id_factory()
        with self._lock:
            self.sent.append(ConsoleMessage(to, body, reference, message_id))
        # The body can name a focal point and a place: only its length is logged, like the masked number.
        log.info("console SMS ref=%s to=%s chars=%d id=%s", reference, mask_phone(to), len(body), message_id)
        return SendResult(self.name, message_id, "sent")


# --- Twilio ------------------------------------------------------------------------------------------------

# Error codes of messages.create that are about the recipient: no gateway will reach this number.
# https://www.twilio.com/docs/api/errors (the 3000x codes normally arrive in status callbacks, not here).
TWILIO_RECIPIENT_ERRORS: dict[int, str] = {
    21211: "invalid 'To' phone number",
    21214: "'To' number cannot be reached",
    21610: "recipient has unsubscribed (replied STOP)",
    21612: "'To' number not reachable via SMS from this sender",
    21614: "'To' number is not a mobile number",
    30003: "unreachable handset",
    30004: "message blocked",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "carrier filtering",
}
# Error codes about our Twilio account or its configuration: this gateway cannot send, another one may.
TWILIO_ACCOUNT_ERRORS: dict[int, str] = {
    20003: "credentials rejected",
    20005: "account not active",
    20404: "resource not found (check TWILIO_ACCOUNT_SID and TWILIO_API_BASE)",
    21408: "account has no permission to send SMS to this region",
    21606: "'From' number cannot send SMS",
    21608: "trial account can only send to verified numbers",
    21611: "'From' number has too many queued messages",
}
_TWILIO_ORIGIN_HOST = "api.twilio.com"


def _twilio_error(status: int, code: int | None, message: str) -> SendError:
    """Sort a Twilio API error by HTTP status and Twilio error code into retry (fail over) or stop."""
    code_text = str(code) if code is not None else None
    detail = f"HTTP {status}" + (f" error {code}" if code is not None else "")
    if code in TWILIO_RECIPIENT_ERRORS:
        return PermanentSendError("twilio", f"{detail}: {TWILIO_RECIPIENT_ERRORS[code]}", code=code_text)
    if code in TWILIO_ACCOUNT_ERRORS:
        return RetryableSendError("twilio", f"{detail}: {TWILIO_ACCOUNT_ERRORS[code]}", code=code_text)
    if status == 429 or status >= 500 or status in (401, 403):
        return RetryableSendError("twilio", f"{detail}: {_scrub(message)}", code=code_text)
    return PermanentSendError("twilio", f"{detail}: {_scrub(message)}", code=code_text)


class TwilioGateway:
    """Sends with the Twilio SDK (Messages API); delivery reports come to the status callback URL."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_: str,
        status_callback_url: str | None = None,
        api_base: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.from_ = from_
        self.status_callback_url = status_callback_url or None
        self.timeout = timeout
        self._client = TwilioClient(
            account_sid, auth_token, http_client=PooledTwilioHttpClient(timeout, api_base)
        )

    def send(self, to: str, body: str, *, reference: str) -> SendResult:
        options: dict[str, Any] = {"to": to, "from_": self.from_, "body": body}
        if self.status_callback_url:
            options["status_callback"] = self.status_callback_url
        try:
            message = self._client.messages.create(**options)
        except TwilioRestException as exc:
            raise _twilio_error(int(exc.status), _int_or_none(exc.code), str(exc.msg)) from exc
        except TwilioServiceException as exc:
            raise _twilio_error(int(exc.status), _int_or_none(exc.code), exc.detail or exc.title) from exc
        except urllib3.exceptions.NewConnectionError as exc:  # a subclass of ConnectTimeoutError, oddly
            raise RetryableSendError(self.name, f"connection failed: {type(exc).__name__}") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise RetryableSendError(self.name, f"no answer within {self.timeout:g} s") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise RetryableSendError(self.name, f"connection failed: {type(exc).__name__}") from exc
        except (TwilioException, ValueError) as exc:
            raise RetryableSendError(self.name, f"unreadable response: {type(exc).__name__}") from exc
        if not message.sid:
            raise RetryableSendError(self.name, "accepted without a message sid")
        return SendResult(self.name, message.sid, str(message.status or "queued"))


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- Africa's Talking --------------------------------------------------------------------------------------

AT_SUCCESS_CODES = frozenset({100, 101, 102})  # Processed, Sent, Queued
# statusCode -> (status name, retryable). Retryable includes this account's own problems (risk hold, sender
# id, balance): another gateway does not share them. Recipient problems stop failover.
AT_RECIPIENT_STATUSES: dict[int, tuple[str, bool]] = {
    401: ("RiskHold", True),
    402: ("InvalidSenderId", True),
    403: ("InvalidPhoneNumber", False),
    404: ("UnsupportedNumberType", False),
    405: ("InsufficientBalance", True),
    406: ("UserInBlacklist", False),
    407: ("CouldNotRoute", True),
    409: ("DoNotDisturbRejection", False),
    500: ("InternalServerError", True),
    501: ("GatewayError", True),
    502: ("RejectedByGateway", True),
}
_AT_STATUS_BY_NAME = {name: (code, retryable) for code, (name, retryable) in AT_RECIPIENT_STATUSES.items()}


class _AfricasTalkingHttpError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.text = text


class _AfricasTalkingSMS(SMSService):
    """The SDK's SMS service, one per gateway, with a base URL of our choosing and errors keeping the status.

    `africastalking.initialize()` stores one service per product in module globals, so two gateways (or a test
    and the app) would share credentials; this class is instantiated directly instead and touches no global.
    The SDK builds `_baseUrl` in `_init_service` ("https://api.africastalking.com/version1", or the sandbox
    domain when the username is "sandbox"); with api_base set it becomes api_base + "/version1". Its
    `_make_request` calls `requests.post` afresh each time and raises `AfricasTalkingException(res.text)` for
    any non-2xx, losing the HTTP status we need to tell 401 from 429 from 503 (and returns text unless the
    content-type is exactly application/json), so it is overridden to use a pooled session and keep the
    status. The SDK still validates the number and builds the request (URL, apiKey header, form fields).
    """

    def __init__(self, username: str, api_key: str, api_base: str | None, session: requests.Session) -> None:
        self._api_base_override = api_base.rstrip("/") if api_base else None
        self._session = session
        super().__init__(username, api_key)

    def _init_service(self) -> None:
        super()._init_service()
        if self._api_base_override:
            self._baseUrl = self._contentUrl = self._api_base_override + "/version1"

    def _make_request(
        self,
        url: str,
        method: str,
        headers: dict[str, str],
        data: Any,
        params: Any,
        callback: Any = None,
        timeout: Any = None,
    ) -> Any:
        if callback is not None:
            raise NotImplementedError("the gateway sends synchronously")
        response = self._session.request(
            method.upper(), url, headers=headers, data=data, params=params, timeout=timeout
        )
        if not 200 <= response.status_code < 300:
            raise _AfricasTalkingHttpError(response.status_code, response.text)
        return response.json()


class AfricasTalkingGateway:
    """Sends with the Africa's Talking SDK (bulk SMS API); delivery reports come by webhook."""

    name = "africastalking"

    def __init__(
        self,
        username: str,
        api_key: str,
        sender_id: str | None = None,
        api_base: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.sender_id = sender_id or None
        self.timeout = timeout
        self._sms = _AfricasTalkingSMS(username, api_key, api_base, requests.Session())

    def send(self, to: str, body: str, *, reference: str) -> SendResult:
        try:
            payload = self._sms.send(body, [to], sender_id=self.sender_id, timeout=self.timeout)
        except _AfricasTalkingHttpError as exc:
            raise _africastalking_http_error(exc.status, exc.text) from exc
        except requests.Timeout as exc:
            raise RetryableSendError(self.name, f"no answer within {self.timeout:g} s") from exc
        except requests.RequestException as exc:
            raise RetryableSendError(self.name, f"connection failed: {type(exc).__name__}") from exc
        except ValueError as exc:
            if str(exc).startswith("Invalid phone number"):  # the SDK's own check, before any request
                raise PermanentSendError(self.name, "invalid phone number (not +E.164)", code="403") from exc
            raise RetryableSendError(self.name, "unreadable response: not JSON") from exc
        return _africastalking_result(payload)


def _africastalking_http_error(status: int, text: str) -> SendError:
    detail = f"HTTP {status}: {_scrub(text, 200)}"
    if status == 429 or status >= 500 or status in (401, 403):
        return RetryableSendError("africastalking", detail, code=str(status))
    return PermanentSendError("africastalking", detail, code=str(status))


def _africastalking_result(payload: Any) -> SendResult:
    """Read SMSMessageData.Recipients[0]: statusCode 100-102 is accepted, the rest is sorted by the table."""
    try:
        data = payload["SMSMessageData"]
        recipients = data.get("Recipients") or []
        if not recipients:
            # No recipient line: the reason is in Message (e.g. "InvalidSenderId", "UserInBlacklist").
            message = str(data.get("Message", ""))
            code, retryable = _AT_STATUS_BY_NAME.get(message, (None, True))
            error = RetryableSendError if retryable else PermanentSendError
            raise error(
                "africastalking",
                f"no recipient accepted: {_scrub(message, 200)}",
                code=str(code) if code is not None else None,
            )
        recipient = recipients[0]
        status_code = int(recipient["statusCode"])
        status = str(recipient.get("status", ""))
        message_id = str(recipient.get("messageId") or "")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RetryableSendError("africastalking", "unexpected response shape") from exc
    if status_code in AT_SUCCESS_CODES and message_id and message_id != "None":
        return SendResult("africastalking", message_id, status)
    name, retryable = AT_RECIPIENT_STATUSES.get(status_code, (status or "unknown status", True))
    error = RetryableSendError if retryable else PermanentSendError
    raise error("africastalking", f"status {status_code} {name}", code=str(status_code))


# --- configuration and failover ----------------------------------------------------------------------------


def _missing(config: Mapping[str, Any], provider: str, names: Sequence[str]) -> None:
    missing = [name for name in names if not str(config.get(name) or "").strip()]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ValueError(f"SMS gateway {provider!r} is configured but {', '.join(missing)} {verb} not set")


def _build_console(config: Mapping[str, Any], timeout: float) -> Gateway:
    return ConsoleGateway()


def _build_twilio(config: Mapping[str, Any], timeout: float) -> Gateway:
    _missing(config, "twilio", ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"))
    public_url = str(config.get("PUBLIC_URL") or "").rstrip("/")
    return TwilioGateway(
        account_sid=config["TWILIO_ACCOUNT_SID"],
        auth_token=config["TWILIO_AUTH_TOKEN"],
        from_=config["TWILIO_FROM"],
        status_callback_url=public_url + TWILIO_STATUS_CALLBACK_PATH if public_url else None,
        api_base=config.get("TWILIO_API_BASE") or None,
        timeout=timeout,
    )


def _build_africastalking(config: Mapping[str, Any], timeout: float) -> Gateway:
    _missing(config, "africastalking", ("AT_USERNAME", "AT_API_KEY"))
    return AfricasTalkingGateway(
        username=config["AT_USERNAME"],
        api_key=config["AT_API_KEY"],
        sender_id=config.get("AT_SENDER_ID") or None,
        api_base=config.get("AT_API_BASE") or None,
        timeout=timeout,
    )


GATEWAY_BUILDERS: dict[str, Callable[[Mapping[str, Any], float], Gateway]] = {
    "twilio": _build_twilio,
    "africastalking": _build_africastalking,
    "console": _build_console,
}


def build_gateways(config: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> list[Gateway]:
    """The gateways named in SMS_GATEWAYS, in that order; a bad name or missing credential is a ValueError."""
    names = [str(name).strip().lower() for name in config.get("SMS_GATEWAYS") or []]
    if not names:
        raise ValueError("SMS_GATEWAYS is empty: name at least one of " + ", ".join(GATEWAY_BUILDERS))
    unknown = [name for name in names if name not in GATEWAY_BUILDERS]
    if unknown:
        raise ValueError(
            f"unknown SMS gateway {', '.join(map(repr, unknown))} in SMS_GATEWAYS"
            f" (known: {', '.join(GATEWAY_BUILDERS)})"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"an SMS gateway is listed twice in SMS_GATEWAYS: {', '.join(names)}")
    return [GATEWAY_BUILDERS[name](config, timeout) for name in names]


def send_with_failover(
    gateways: Sequence[Gateway], to: str, body: str, *, reference: str
) -> tuple[SendResult | None, list[SendError]]:
    """Try each gateway in order while errors are retryable; stop at the first success or permanent error."""
    if not gateways:
        raise ValueError("no SMS gateway to send with")
    errors: list[SendError] = []
    for gateway in gateways:
        try:
            return gateway.send(to, body, reference=reference), errors
        except SendError as error:
            errors.append(error)
            # The dispatcher records and logs the error; this line adds the masked number, for debugging.
            log.debug(
                "SMS ref=%s to=%s failed on %s (%s): %s",
                reference,
                mask_phone(to),
                gateway.name,
                "retryable" if error.retryable else "permanent",
                error.reason,
            )
            if not error.retryable:
                break
    return None, errors
