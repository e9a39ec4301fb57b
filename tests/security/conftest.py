"""The security suite's app: both providers' secrets set, so every webhook route can be reached."""

from __future__ import annotations

import pytest

from tests.webhooks.conftest import AT_KEY, TWILIO_TOKEN

SECRET_KEY = "test-secret-key"


@pytest.fixture
def app_config() -> dict[str, object]:
    return {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "AT_WEBHOOK_KEY": AT_KEY}
