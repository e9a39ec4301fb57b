"""gunicorn settings for `make run` and production; the command line can override each one."""

import gc
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
    """Every worker, whatever its app (the benchmarks' floor and RapidSMS peer run under these settings
    too): the cycle collector's threshold, GC_GEN0_THRESHOLD (alerts/runtime.py says why; 0: Python's).
    Embedded mode (SCHEDULER_ENABLED=1, one worker): start the escalation scheduler in the worker."""
    gen0 = int(os.environ.get("GC_GEN0_THRESHOLD", "10000"))
    if gen0 > 0:
        gc.set_threshold(gen0, *gc.get_threshold()[1:])
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
        # Embedded: the jobs running end their pass before the worker exits (within graceful_timeout).
        engine.wait_for_jobs(graceful_timeout / 2)
