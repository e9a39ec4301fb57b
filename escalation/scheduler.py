"""The engine's jobs on APScheduler: escalate, dispatch the outbox, retry unprocessed inbound messages.

The scheduler holds no state of its own: each run reads what is due from the database. Embedded (`make run`),
it runs inside the single web process; in production `flask --app wsgi worker` runs it, once or many times.
A commit in the pipeline wakes it at once: in-process through `wake()`, across processes through
PostgreSQL's LISTEN/NOTIFY on the channel `alerts_wakeup`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    SchedulerEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from sqlalchemy.orm import Session

from alerts import pipeline
from alerts.db import Database
from alerts.inbound import DEFAULT_BATCH_SIZE, retry_unprocessed
from alerts.models import InboundMessage
from alerts.pipeline import PipelineSettings
from alerts.spool import Spool
from escalation.dispatcher import DispatchStats, dispatch
from escalation.engine import DEFAULT_UPDATE_THROTTLE, sweep
from escalation.gateways import Gateway, build_gateways
from escalation.line_checks import send_line_checks

log = logging.getLogger(__name__)
WAKEUP_CHANNEL = "alerts_wakeup"
MAX_PUMP_PASSES = 20
# Messages one pass of the pump takes (at least two batches: Engine.per_pass), in transactions of
# `batch_size`; escalation runs between passes.
INBOUND_PER_PASS = 200
EMBEDDED_BATCH_SIZE = 10  # inside a web process: shorter stretches of the interpreter lock between requests
# On SIGTERM, how long a worker waits for its running jobs to end their pass (systemd waits 90 s by default).
SHUTDOWN_WAIT_SECONDS = 30.0


def utc_clock() -> datetime:
    return datetime.now(UTC)


class Engine:
    """The three jobs bound to one database and one list of gateways."""

    def __init__(
        self,
        database: Database,
        gateways: list[Gateway],
        settings: PipelineSettings,
        clock: Callable[[], datetime] = utc_clock,
        worker: str | None = None,
        update_throttle: timedelta = DEFAULT_UPDATE_THROTTLE,
        line_checks: tuple[bool, int, int] = (False, 14, 50),
        batch_size: int = DEFAULT_BATCH_SIZE,
        spool: Spool | None = None,
        gather: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        pause: Callable[[float], object] | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.gather = gather  # seconds: in a burst, the least time between two passes' starts (_gather)
        self.monotonic = monotonic
        self.spool = spool
        self.update_throttle = update_throttle
        self.line_checks_enabled, self.line_check_days, self.line_check_daily_cap = line_checks
        self.database = database
        self.gateways = gateways
        self.settings = settings
        self.clock = clock
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.scheduler: BaseScheduler | None = None
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()
        self._woken = threading.Event()
        self._more_to_send = threading.Event()
        # Held while a pump or a dispatch runs: a wake-up then only asks it for another pass, and the
        # interval's tick that comes meanwhile returns at once.
        self._pump_lock = threading.Lock()
        self._dispatch_lock = threading.Lock()
        self.pause = pause or self._stopping.wait  # a shutdown ends a pause at once
        self._last_pass: float | None = None  # when the last pass that processed messages started
        self._bursting = False  # that pass found more than one message waiting
        self._backlog = False  # the last pass found a full page of due messages: more are waiting

    @classmethod
    def from_app(cls, app: Flask) -> Engine:
        return cls(
            app.extensions["alerts_db"],
            build_gateways(app.config),
            PipelineSettings.from_config(app.config),
            update_throttle=timedelta(minutes=app.config["UPDATE_THROTTLE_MINUTES"]),
            line_checks=(
                app.config["LINE_CHECKS_ENABLED"],
                app.config["LINE_CHECK_DAYS"],
                app.config["LINE_CHECK_DAILY_CAP"],
            ),
            batch_size=app.config["INBOUND_BATCH_SIZE"] or default_batch_size(app),
            spool=app.extensions.get("alerts_spool"),
            gather=max(0, app.config["INBOUND_GATHER_MS"]) / 1000,
        )

    def escalate(self) -> int:
        """Plan and run due steps; pages just written are sent at once, not at the next tick."""
        steps = sweep(
            self.database.sessionmaker, self.clock(), self.worker, update_throttle=self.update_throttle
        )
        if steps:
            self._send_now()
        return steps

    def dispatch(self) -> DispatchStats:
        return dispatch(self.database.sessionmaker, self.gateways, self.clock)

    def _send_now(self) -> None:
        """Pages were just written. With the scheduler running, the dispatch job sends them in its own thread
        while the pump goes on with the next messages (a provider call takes 100s of ms; the pump used to wait
        for a batch of them after every escalation run); without it (tests, benchmarks), here."""
        if not self._running():
            self.dispatch()
            return
        self._more_to_send.set()
        self._run_now("dispatch")

    def _running(self) -> bool:
        return self.scheduler is not None and self.scheduler.running

    def _run_now(self, job_id: str) -> None:
        """Move a job's next run to now, unless it is running: the scheduler would only skip that run, and
        say so; a running job is asked for another pass through its event instead."""
        running = {"pump": self._pump_lock, "dispatch": self._dispatch_lock}[job_id]
        job = self.scheduler.get_job(job_id) if self.scheduler is not None else None
        if job is not None and not running.locked():
            job.modify(next_run_time=datetime.now(UTC))

    def dispatch_job(self) -> DispatchStats:
        """The dispatch job: sends until nothing is due, taking another pass when the pump wrote pages
        meanwhile (asking the scheduler then would have it skip the run), up to a bound that keeps it fair."""
        total = DispatchStats()
        if not self._dispatch_lock.acquire(blocking=False):
            return total  # a tick while a dispatch runs (the job allows a second instance for this)
        try:
            for _ in range(MAX_PUMP_PASSES):
                self._more_to_send.clear()
                stats = self.dispatch()
                total.merge(stats)
                if self._stopping.is_set():  # what it claimed is sent and recorded; the rest waits
                    break
                if not stats.attempted and not self._more_to_send.is_set():
                    break
        finally:
            self._dispatch_lock.release()
        return total

    def process_inbound(self) -> int:
        """Process stored messages: new ones at once, failed ones when their backoff is over (SQLite: those
        the webhooks spooled are moved into the database first)."""
        if self.spool is not None:
            self.spool.move(self.database.sessionmaker)

        def process(session: Session, message_id: int, _batch_start: datetime) -> None:
            pipeline.process_message(session, message_id, now=self.clock(), settings=self.settings)

        def process_batch(session: Session, messages: list[InboundMessage], _batch_start: datetime) -> None:
            pipeline.process_messages(session, messages, now=self.clock(), settings=self.settings)

        return retry_unprocessed(
            self.database,
            self.clock(),
            process,
            grace=timedelta(0),
            limit=self.per_pass,
            process_batch=process_batch,
            batch_size=self.batch_size,
            on_due=lambda due: self._saw_due(len(due)),
        )

    def _saw_due(self, count: int) -> None:
        """A full page of due messages means more are waiting, even where another worker claimed most of this
        one (they read the same page): the next pass goes at once."""
        self._backlog = count >= self.per_pass

    @property
    def per_pass(self) -> int:
        """Messages a pass reads as due: two batches at least, so that two workers reading the same page can
        each claim one (with one batch a page, the second worker found every row locked and waited)."""
        return max(INBOUND_PER_PASS, 2 * self.batch_size)

    def line_checks(self) -> int:
        """TEST requests to focal points silent too long (when LINE_CHECKS_ENABLED)."""
        with self.database.session() as session:
            return send_line_checks(session, self.clock(), self.line_check_days, self.line_check_daily_cap)

    def pump(self) -> int:
        """Inbound messages through the pipeline, then escalation: the path of a new alert, in order.

        A wake-up that arrives while a pass runs would be dropped by the scheduler (one instance at a time),
        so the pass repeats while there was work or a wake-up, up to a bound that keeps the job fair.
        """
        done = 0
        if not self._pump_lock.acquire(blocking=False):
            return done  # a tick while a pump runs (the job allows a second instance for this)
        try:
            for _ in range(MAX_PUMP_PASSES):
                self._gather()
                if self._stopping.is_set():  # shut down while gathering: what is stored waits for a worker
                    break
                self._woken.clear()
                started = self.monotonic()
                processed = self.process_inbound()
                if processed:  # a pass that found nothing (a tick in a quiet spell) delays nobody
                    self._last_pass, self._bursting = started, processed > 1
                else:  # a full page that other workers hold all of: they are on it, no need to spin
                    self._backlog = False
                if processed and self._running():  # their receipts go out beside the next pass
                    self._send_now()
                done += processed + self.escalate()
                # Another pass only for messages that came meanwhile or did not fit in this one: the
                # escalation run above already ran every step due, and nothing else makes inbound work.
                if not self._backlog and not self._woken.is_set():
                    break
        finally:
            self._pump_lock.release()
        return done

    def _gather(self) -> None:
        """In a burst, let messages gather for up to `gather` seconds after the last pass that processed some
        began, unless it found a full page. A pass costs as much CPU as 20 to 25 of its messages (the reads of
        what is due and of the batch's context, the escalation run after it, the commits): in a burst, fewer
        and fuller passes leave more of the CPUs to the webhooks. A burst is a pass that found more than one
        message waiting: alerts arriving one at a time (5 a second is still one at a time for passes of tens
        of milliseconds) are processed at once, as is the first message after a quiet spell."""
        if not self.gather or self._backlog or not self._bursting or self._last_pass is None:
            return
        remaining = self._last_pass + self.gather - self.monotonic()
        if remaining > 0:
            self.pause(remaining)

    def run_once(self) -> tuple[int, DispatchStats]:
        """One tick of every job, in order (tests and benchmarks drive this directly)."""
        return self.pump(), self.dispatch()

    # --- scheduling ---------------------------------------------------------------------------

    def build_scheduler(self, blocking: bool = False, tick_seconds: float = 1.0) -> BaseScheduler:
        scheduler: BaseScheduler = (
            BlockingScheduler(timezone=UTC) if blocking else BackgroundScheduler(timezone=UTC)
        )
        jobs: dict[str, tuple[Callable[[], Any], float]] = {
            "pump": (self.pump, tick_seconds),
            "dispatch": (self.dispatch_job, tick_seconds),
        }
        if self.line_checks_enabled:
            jobs["line_checks"] = (self.line_checks, 600.0)
        for job_id, (function, seconds) in jobs.items():
            scheduler.add_job(
                function,
                "interval",
                seconds=seconds,
                id=job_id,
                # A pump gathering a burst runs for seconds: with one instance, the scheduler would log a
                # skipped run at every tick meanwhile; the second instance returns at once (see pump).
                max_instances=1 if job_id == "line_checks" else 2,
                coalesce=True,
                misfire_grace_time=None,
            )
        failures = JobFailures()
        scheduler.add_listener(failures.failed, EVENT_JOB_ERROR)
        scheduler.add_listener(failures.executed, EVENT_JOB_EXECUTED)
        self.scheduler = scheduler
        return scheduler

    def wake(self) -> None:
        """Run the jobs now instead of at the next tick.

        While a pump runs, the wake-up only makes it take another pass (a burst of webhooks notifies once
        per message; asking the scheduler each time would only have it skip the run, and say so).
        """
        self._woken.set()
        if not self._running() or self._pump_lock.locked():
            return
        for job_id in ("pump", "dispatch"):
            self._run_now(job_id)

    def start(self, blocking: bool = False) -> None:
        if self._stopping.is_set():  # SIGTERM before it started: a blocking start would never return
            return
        scheduler = self.scheduler or self.build_scheduler(blocking)
        # SIGTERM can also land while the scheduler starts, before it counts as running (shutdown() then
        # finds nothing to stop): checked again the moment it runs, before a blocking start would block.
        scheduler.add_listener(self._stop_if_told, EVENT_SCHEDULER_STARTED)
        if self.database.is_postgresql:
            self._listener = threading.Thread(target=self._listen, name="alerts-wakeup", daemon=True)
            self._listener.start()
        log.info("scheduler started (%s, worker %s)", "blocking" if blocking else "background", self.worker)
        scheduler.start()

    def wait_for_jobs(self, timeout: float) -> bool:
        """After `shutdown`, wait up to `timeout` seconds for a running pump or dispatch to end its pass (what
        a dispatch claimed is sent and recorded, rather than left `sending` until its lease runs out, and
        no job is cut off by the interpreter's exit). True when none runs any more."""
        deadline = time.monotonic() + timeout
        while self._pump_lock.locked() or self._dispatch_lock.locked():
            if time.monotonic() >= deadline:
                log.warning("stopping with a job still running after %g s", timeout)
                return False
            time.sleep(0.05)
        return True

    def _stop_if_told(self, _event: SchedulerEvent) -> None:
        if self._stopping.is_set() and self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def shutdown(self) -> None:
        self._stopping.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _listen(self) -> None:
        """Wake on NOTIFY from any process that committed new work (PostgreSQL only)."""
        import psycopg

        url = self.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stopping.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as connection:
                    connection.execute(f"LISTEN {WAKEUP_CHANNEL}")
                    # One connection for good: a NOTIFY sent while reconnecting would be lost.
                    while not self._stopping.is_set():
                        for _ in connection.notifies(timeout=5.0):
                            self.wake()
            except psycopg.Error:
                log.exception("wake-up listener lost its connection; reconnecting")
                self._stopping.wait(2.0)


def default_batch_size(app: Flask) -> int:
    """Messages per transaction when INBOUND_BATCH_SIZE is not set.

    200 in a worker process: in a burst's backlog a batch costs less per message the more it holds (its
    reads of the senders, their recent traffic and reports, the candidate incidents and their reporters are
    one statement each, whatever its size). 2,400 soak-shaped alerts on PostgreSQL, CPU per message of the
    worker and of its PostgreSQL backend: 0.73 + 0.27 ms at 100, 0.58 + 0.20 at 200, 0.50 + 0.16 at 400;
    200 takes most of that without holding the matching lock twice as long. 10 when the scheduler shares a
    web process (its requests wait while a batch holds the interpreter). SQLite has one writer at a time:
    with the webhooks storing into the spool, only the engine and the pages' writes wait for a batch;
    without it (INBOUND_SPOOL=0), every webhook would, so one message per transaction there.
    """
    if not app.extensions["alerts_db"].is_postgresql and app.extensions.get("alerts_spool") is None:
        return 1
    return EMBEDDED_BATCH_SIZE if app.config["SCHEDULER_ENABLED"] else DEFAULT_BATCH_SIZE


class JobFailures:
    """Logs a job's failures without flooding: the first with its traceback, the same failure again (same job,
    same exception type) at most once per `every` seconds with how many times it happened meanwhile, and the
    job's recovery. With the database down every job fails every tick; the log must still be readable."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._failing: dict[
            str, tuple[str, float, int]
        ] = {}  # job -> (exception type, last logged, unlogged)

    def failed(self, event: JobExecutionEvent) -> None:
        kind, now = type(event.exception).__name__, self.clock()
        previous = self._failing.get(event.job_id)
        if previous is not None and previous[0] == kind and now - previous[1] < self.every:
            self._failing[event.job_id] = (kind, previous[1], previous[2] + 1)
            return
        since = f" ({previous[2]} more failures since the last report)" if previous and previous[2] else ""
        log.error("job %s failed: %r%s", event.job_id, event.exception, since, exc_info=event.exception)
        self._failing[event.job_id] = (kind, now, 0)

    def executed(self, event: JobExecutionEvent) -> None:
        previous = self._failing.pop(event.job_id, None)
        if previous is not None:
            log.warning("job %s runs again after failing with %s", event.job_id, previous[0])


def notify_workers(database: Database) -> None:
    """Tell every worker process, through PostgreSQL, that there is new work."""
    if database.is_postgresql:
        with database.engine.connect() as connection:
            connection.exec_driver_sql(f"NOTIFY {WAKEUP_CHANNEL}")
            connection.commit()


def register(app: Flask) -> None:
    """Composition: the engine, its wake-up hooks, and the worker commands."""
    engine = Engine.from_app(app)
    app.extensions["alerts_engine"] = engine
    app.extensions.setdefault("alerts_wakeups", []).append(engine.wake)
    database = app.extensions["alerts_db"]
    if not app.config["SCHEDULER_ENABLED"] and database.is_postgresql:
        # Worker processes elsewhere: a commit that leaves them work tells them through PostgreSQL, in
        # its own transaction where it can (store_inbound's `notify`), else right after.
        app.extensions["alerts_notify_channel"] = WAKEUP_CHANNEL
        app.extensions.setdefault("alerts_remote_wakeups", []).append(partial(notify_workers, database))
