"""gunicorn settings for `make run` and production; the command line can override each one."""

import os
import sys

bind = os.environ.get("BIND", "127.0.0.1:5000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
accesslog = "-"
EMBEDDED_SWITCH_INTERVAL = 0.0005
# The access log never shows query strings: the Africa's Talking webhook key travels in one.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


def post_worker_init(worker):
    """Embedded mode (SCHEDULER_ENABLED=1, one worker): start the escalation scheduler in the worker."""
    app = worker.wsgi
    engine = getattr(app, "extensions", {}).get("alerts_engine")
    if engine is not None and app.config.get("SCHEDULER_ENABLED"):
        # The scheduler's threads share the interpreter lock with the request threads: a request waiting for
        # it waits at most this long (default 5 ms) each time it comes back from the database.
        sys.setswitchinterval(EMBEDDED_SWITCH_INTERVAL)
        engine.start()


def worker_exit(server, worker):
    app = worker.wsgi
    engine = getattr(app, "extensions", {}).get("alerts_engine")
    if engine is not None:
        engine.shutdown()
