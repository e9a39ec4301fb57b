"""WSGI entry point of the RapidSMS peer (`gunicorn peer_rapidsms.wsgi:application`, run from bench/)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peer_rapidsms.settings")
application = get_wsgi_application()
