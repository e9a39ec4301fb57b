"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

from alerts import create_app

app = create_app()
