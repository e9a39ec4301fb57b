"""Configuration comes from the environment; the secret key is generated once and kept out of the code."""

import stat

from alerts.config import load_config


def test_defaults_are_safe_and_the_database_lives_under_instance(tmp_path):
    config = load_config(tmp_path / "instance", environ={})
    assert config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'instance' / 'alerts.db'}"
    assert config["SMS_GATEWAYS"] == ["console"]
    assert config["SCHEDULER_ENABLED"] is False


def test_environment_variables_override_defaults(tmp_path):
    environ = {
        "DATABASE_URL": "postgresql://db/alerts",
        "SMS_GATEWAYS": "twilio, africastalking",
        "SCHEDULER_ENABLED": "true",
        "SENDER_RATE_LIMIT": "3",
        "SECRET_KEY": "from-env",
    }
    config = load_config(tmp_path, environ=environ)
    assert config["DATABASE_URL"] == "postgresql://db/alerts"
    assert config["SMS_GATEWAYS"] == ["twilio", "africastalking"]
    assert config["SCHEDULER_ENABLED"] is True
    assert config["SENDER_RATE_LIMIT"] == 3
    assert config["SECRET_KEY"] == "from-env"


def test_a_missing_secret_key_is_generated_once_and_kept_private(tmp_path):
    first = load_config(tmp_path, environ={})["SECRET_KEY"]
    second = load_config(tmp_path, environ={})["SECRET_KEY"]
    assert first == second
    assert len(first) >= 64
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600
