"""Settings of the RapidSMS peer: configuration from the environment, PostgreSQL, nothing else switched on."""

import os
from urllib.parse import urlsplit

_database = urlsplit(os.environ.get("PEER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/soak_peer"))

SECRET_KEY = os.environ.get("PEER_SECRET_KEY", "soak-peer-throwaway")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "peer_rapidsms.urls"
WSGI_APPLICATION = "peer_rapidsms.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _database.path.lstrip("/"),
        "USER": _database.username or "postgres",
        "PASSWORD": _database.password or "",
        "HOST": _database.hostname or "127.0.0.1",
        "PORT": str(_database.port or 5432),
        # Persistent connections, as a production Django deployment would run (our service pools too).
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
}

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rapidsms",
    "rapidsms.backends.database",
    "rapidsms.contrib.messagelog",
    "rapidsms.contrib.default",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

PROJECT_NAME = "Alert peer"
DEFAULT_RESPONSE = "Merci, votre message est recu par %(project_name)s."
# The reply is stored by the database backend: the peer does no network send inside the request, the most
# favourable choice for it (our service sends through the fake Twilio API from its workers).
INSTALLED_BACKENDS = {"http": {"ENGINE": "rapidsms.backends.database.DatabaseBackend"}}
RAPIDSMS_ROUTER = "rapidsms.router.blocking.BlockingRouter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
