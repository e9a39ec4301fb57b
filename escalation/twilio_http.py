"""The Twilio SDK's HTTP client on a urllib3 connection pool, instead of the SDK's own requests session.

The SDK takes the application's own client (`twilio.rest.Client(http_client=...)`, an implementation of
`twilio.http.HttpClient`: one `request` method returning a `twilio.http.response.Response`). Its default one
builds a requests `Request`, prepares it (encoding the form through several layers of type checks), merges the
environment and formats its log lines for every call: about half of a send's CPU (1.2 ms per send against
0.65 here, bench/RESULTS-webhooks.md "Eighth session"), in a worker that sends a receipt for every alert.

This client sends the same request: the same URL (an api_base stands in for api.twilio.com, for a local fake
of the API), the form body encoded as requests encodes it, the SDK's headers, HTTP basic auth, one timeout for
connecting and the same for each read; no retries and no redirects (a retry here would be an SMS sent twice,
uncounted). The environment's proxy (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) and CA bundle (REQUESTS_CA_BUNDLE,
CURL_CA_BUNDLE, else certifi's) apply as requests applies them, read once per host: a running worker's
environment does not change. Errors are urllib3's (`urllib3.exceptions`), sorted by the gateway.
"""

from __future__ import annotations

import base64
import codecs
import json
import logging
import os
import threading
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import certifi
import urllib3
from requests.utils import get_environ_proxies, select_proxy
from twilio.http import HttpClient
from twilio.http.response import Response

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "application/scim+json")


class PooledTwilioHttpClient(HttpClient):
    """What `twilio.http.http_client.TwilioHttpClient` sends, over a thread-safe urllib3 pool."""

    def __init__(self, timeout: float, api_base: str | None = None, pool_size: int = 8) -> None:
        super().__init__(log, False, timeout)
        self._api_base = urlsplit(api_base.rstrip("/")) if api_base else None
        self._pool_size = pool_size
        self._managers: dict[tuple[str, str], urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if timeout is None:
            timeout = self.timeout
        elif timeout <= 0:
            raise ValueError(timeout)
        url = self.rebased(url)
        if params:
            url += ("&" if "?" in url else "?") + _form(params)
        sent = dict(headers or {})
        body = None
        if data:
            if sent.get("Content-Type") in JSON_TYPES:
                body = json.dumps(data).encode()
            else:
                body = _form(data).encode()
                sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if auth is not None:
            credentials = f"{auth[0]}:{auth[1]}".encode("latin-1")
            sent["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        answer = self._manager(url).request(
            method.upper(),
            url,
            body=body,
            headers=sent,
            timeout=urllib3.Timeout(connect=timeout, read=timeout) if timeout else None,
            retries=False,
            redirect=allow_redirects,
        )
        self._test_only_last_response = Response(
            answer.status, answer.data.decode(_charset(answer.headers), errors="replace"), answer.headers
        )
        return self._test_only_last_response

    def rebased(self, url: str) -> str:
        """The URL on api_base where it names Twilio's API (api.twilio.com, or api.<edge>.<region>.twilio.com
        under TWILIO_EDGE and TWILIO_REGION)."""
        if self._api_base is None:
            return url
        parts = urlsplit(url)
        host = parts.hostname or ""
        if not (host.startswith("api.") and host.endswith(".twilio.com")):
            return url
        base = self._api_base
        return urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query, parts.fragment))

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        with self._lock:
            manager = self._managers.get(key)
            if manager is None:
                manager = self._managers[key] = self._new_manager(url)
            return manager

    def _new_manager(self, url: str) -> urllib3.PoolManager:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
        tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
        tls["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
        proxy = select_proxy(url, get_environ_proxies(url))
        if not proxy:
            return urllib3.PoolManager(maxsize=self._pool_size, **tls)
        if "://" not in proxy:
            proxy = "http://" + proxy
        login = urlsplit(proxy)
        proxy_headers = None
        if login.username is not None:
            proxy_headers = urllib3.make_headers(
                proxy_basic_auth=f"{unquote(login.username)}:{unquote(login.password or '')}"
            )
        return urllib3.ProxyManager(proxy, proxy_headers=proxy_headers, maxsize=self._pool_size, **tls)


def _form(fields: dict[str, object]) -> str:
    """A form as requests encodes it: a list repeats its key; None values are left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in fields.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(key, v if isinstance(v, str | bytes) else str(v)) for v in values if v is not None]
    return urlencode(pairs)


def _charset(headers: Any) -> str:
    """The answer's declared charset where Python knows it, else UTF-8 (what Twilio's JSON is)."""
    for parameter in headers.get("Content-Type", "").split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "charset" and value:
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                break
    return "utf-8"
