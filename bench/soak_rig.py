"""The soak test's rig: the production shape on PostgreSQL, a provider-like client, and the checks.

Used by bench/soak.py and tests/soak/. The service runs as in production: gunicorn web workers without the
scheduler, separate `flask --app wsgi worker` processes woken through LISTEN/NOTIFY, SMS_GATEWAYS=twilio
pointed at the local fake of the Twilio API (tests/fakes/providers.py, in this process), which records every
SMS the service hands it.
"""

from __future__ import annotations

import heapq
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_e2e import DEMO_FOCAL_POINTS, TimedFake, alert_points  # noqa: E402
from bench.bench_e2e import service_env as e2e_service_env  # noqa: E402
from bench.bench_webhooks import (  # noqa: E402
    PG_ADMIN_URL,
    Gunicorn,
    drop_postgresql_database,
    postgresql_database,
    run_checked,
)
from tests.fakes.providers import TWILIO, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN  # noqa: E402

SMS_PATH = "/webhooks/twilio/sms"
GAZETTEER_PLACES = (  # alerts/data/demo/gazetteer-north-kivu.csv
    *("Sake", "Mubambiro", "Kitchanga", "Mweso", "Masisi", "Nyabiondo", "Rubaya", "Rutshuru", "Kiwanja"),
    *("Bunagana", "Nyanzale", "Kibirizi", "Bambu", "Kanyabayonga", "Kayna", "Kirumba", "Lubero", "Butembo"),
    *("Beni", "Mavivi", "Oicha", "Eringeti", "Mbau", "Kasindi", "Mutwanga", "Walikale", "Pinga", "Minova"),
    "Goma",
)
# Alerts as focal points write them (no accents, shorthand, five languages); each names a demo place.
PLACE_TEXTS = (
    "Attaque des hommes armes a {place} ce matin, {n} morts",
    "ADF wameshambulia {place} usiku, watu {n} wameuawa",
    "Enlevement de {n} enfants pres de {place} hier soir",
    "Watu wenye silaha wamewateka nyara wanawake {n} {place}",
    "Incendie de {n} maisons a {place} par des miliciens",
    "Pillage des boutiques au marche de {place}",
    "Viol de {n} femmes au champ pres de {place}",
    "Accrochage entre FARDC et miliciens a {place}, tirs entendus",
    "Deplacement massif de {place} vers la brousse depuis {n} jours",
    "Menaces contre la population de {place} par un groupe arme",
    "Armed men looting shops in {place} market tonight",
    "Bato ya mandoki bakoti na {place}, bato {n} bakufi",
    "Abantu bitwaje intwaro bateye {place}, {n} barapfuye",
    "urgent: tuerie a {place}, {n} corps retrouves",
    "Mapigano makali {place} tangu asubuhi, watu wanakimbia",
    "Hommes armes signales a {place}, la population a peur",
)
GPS_TEXTS = (
    "Attaque hommes armes GPS {lat:.4f} {lon:.4f}, {n} morts, maisons brulees",
    "Watu wenye silaha wameua watu {n} GPS {lat:.4f} {lon:.4f}",
    "Armed men attacked the village at GPS {lat:.4f} {lon:.4f}, {n} killed",
)
GPS_SHARE = 4  # one alert in this many carries GPS on a grid 11 km apart: many distinct incidents
MAX_GPS_POINTS = 150


# --- the client: signed webhooks, retried like a provider ---------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    sid: str
    url_path: str
    form: dict[str, str]


def alert_webhooks(count: int, seed: int, prefix: str = "SM") -> list[Webhook]:
    """`count` Twilio inbound SMS from the demo focal points, each with a fresh MessageSid."""
    rng = random.Random(seed)
    points = alert_points(min(MAX_GPS_POINTS, max(1, count // GPS_SHARE)), seed)
    webhooks = []
    for i in range(count):
        n = rng.randint(2, 12)
        if i % GPS_SHARE == GPS_SHARE - 1:
            lat, lon = points[(i // GPS_SHARE) % len(points)]
            text = rng.choice(GPS_TEXTS).format(lat=lat, lon=lon, n=n)
        else:
            text = rng.choice(PLACE_TEXTS).format(place=rng.choice(GAZETTEER_PLACES), n=n)
        sid = prefix + uuid.UUID(int=rng.getrandbits(128)).hex
        form = {
            "MessageSid": sid,
            "AccountSid": TWILIO_ACCOUNT_SID,
            "From": rng.choice(DEMO_FOCAL_POINTS),
            "To": "+243990000001",
            "Body": text,
            "NumSegments": "1",
            "NumMedia": "0",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        webhooks.append(Webhook(sid, SMS_PATH, form))
    return webhooks


@dataclass
class Attempt:
    started: float  # perf_counter
    ended: float
    status: int  # HTTP status, 0 for a connection error or a timeout

    @property
    def ms(self) -> float:
        return (self.ended - self.started) * 1000


@dataclass
class Delivery:
    """One webhook's history at the client: every attempt until it was accepted (2xx) or given up."""

    webhook: Webhook
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return bool(self.attempts) and 200 <= self.attempts[-1].status < 300


@dataclass
class LoadResult:
    name: str
    deliveries: list[Delivery]
    started: float
    ended: float

    @property
    def attempts(self) -> list[Attempt]:
        return [a for d in self.deliveries for a in d.attempts]

    @property
    def accepted(self) -> int:
        return sum(d.accepted for d in self.deliveries)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else math.nan

    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.attempts)

    def server_errors(self, within: tuple[float, float] | None = None) -> int:
        """5xx answers (and, with `within`, only those whose request started in that window)."""
        return sum(
            a.status >= 500 and (within is None or within[0] <= a.started <= within[1]) for a in self.attempts
        )

    def connection_errors(self) -> int:
        return sum(a.status == 0 for a in self.attempts)

    def client_errors(self) -> int:
        return sum(400 <= a.status < 500 for a in self.attempts)

    def retried(self) -> int:
        return sum(len(d.attempts) > 1 for d in self.deliveries)

    def latency(self, p: float) -> float:
        """Percentile of the accepted attempts' answer time, in ms."""
        ordered = sorted(a.ms for a in self.attempts if 200 <= a.status < 300)
        if not ordered:
            return math.nan
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def retry_delay(attempt: int, rng: random.Random) -> float:
    """Wait before posting a refused webhook again, as a provider would: 0.25 s doubling to 4 s, jittered."""
    return min(0.25 * 2 ** (attempt - 1), 4.0) * rng.uniform(0.8, 1.2)


def deliver(
    base: str,
    webhooks: list[Webhook],
    *,
    concurrency: int = 8,
    rate: float = 0.0,
    give_up_after: float = 300.0,
    name: str = "load",
    sign: bool = True,
    url_path: str | None = None,
) -> LoadResult:
    """Post every webhook from `concurrency` threads, closed loop (rate 0) or paced at `rate` per second.

    A connection error, a timeout or a 5xx goes back in the queue with backoff and is posted again with the
    same MessageSid and signature (a provider's retry) until accepted or `give_up_after` seconds passed.
    """
    deliveries = [Delivery(w) for w in webhooks]
    prepared = []
    for webhook in webhooks:
        url = base + (url_path or webhook.url_path)
        headers = {}
        if sign:
            headers["X-Twilio-Signature"] = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(
                url, webhook.form
            )
        prepared.append((url, webhook.form, headers))
    start = time.perf_counter() + 0.1
    queue: list[tuple[float, int, int]] = [
        (start + (i / rate if rate else 0.0), i, 1) for i in range(len(webhooks))
    ]
    heapq.heapify(queue)
    state = threading.Condition()
    in_flight = 0

    def take() -> tuple[int, int] | None:
        nonlocal in_flight
        with state:
            while True:
                if queue:
                    ready, index, attempt = queue[0]
                    delay = ready - time.perf_counter()
                    if delay <= 0:
                        heapq.heappop(queue)
                        in_flight += 1
                        return index, attempt
                    state.wait(timeout=delay)
                elif in_flight:
                    state.wait(timeout=0.5)
                else:
                    return None

    def done(index: int, attempt: int, ok: bool, rng: random.Random) -> None:
        nonlocal in_flight
        with state:
            in_flight -= 1
            first = deliveries[index].attempts[0].started
            if not ok and time.perf_counter() - first < give_up_after:
                heapq.heappush(queue, (time.perf_counter() + retry_delay(attempt, rng), index, attempt + 1))
            state.notify_all()

    def lane(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        while (taken := take()) is not None:
            index, attempt = taken
            url, form, headers = prepared[index]
            began = time.perf_counter()
            try:
                status = session.post(url, data=form, headers=headers, timeout=15).status_code
            except requests.RequestException:
                status = 0
                session.close()
                session = requests.Session()
            deliveries[index].attempts.append(Attempt(began, time.perf_counter(), status))
            # A 4xx is final: a provider does not retry it (and here it means a bug in the client or server).
            done(index, attempt, 200 <= status < 500, rng)

    threads = [threading.Thread(target=lane, args=(i,), name=f"client-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = max((a.ended for d in deliveries for a in d.attempts), default=start)
    return LoadResult(name, deliveries, start, ended)


# --- the service under test ---------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of a process (gunicorn's workers)."""
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        found: list[int] = []
        for task in tasks:
            found += [int(c) for c in (task / "children").read_text().split()]
        return found
    except OSError:
        return []


class QuietFake(TimedFake):
    """The timed fake, without a stack trace on stderr for each send a killed worker cut off."""

    def __init__(self, provider_ms: float = 0.0) -> None:
        super().__init__(provider_ms=provider_ms)
        default = self._server.handle_error

        def handle_error(request: object, address: object) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):
                default(request, address)

        self._server.handle_error = handle_error  # type: ignore[method-assign]


class GunicornServer(Gunicorn):
    """The benchmarks' gunicorn for the soak: any answer below 500 means up (the peer has no /healthz)."""

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        log: Path,
        *,
        workers: int,
        threads: int,
        gunicorn: Path = BIN / "gunicorn",
        cwd: Path = ROOT,
        health_path: str = "/healthz",
    ) -> None:
        super().__init__(
            app,
            env,
            workers,
            threads,
            log,
            gunicorn=gunicorn,
            cwd=cwd,
            health_path=health_path,
            ready=lambda status: status < 500,
        )

    def workers(self) -> list[int]:
        return children(self.process.pid)


class SchedulerWorkers:
    """`flask --app wsgi worker` processes; a killed one is started again by `restart`."""

    def __init__(self, env: dict[str, str], workdir: Path, count: int) -> None:
        self.env = env
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._lock = threading.Lock()
        for slot in range(count):
            self.processes.append(self._spawn(slot))

    def _spawn(self, slot: int) -> subprocess.Popen[bytes]:
        log = self.workdir / f"worker-{slot}-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("w") as out:
            return subprocess.Popen(
                [str(BIN / "flask"), "--app", "wsgi", "worker"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
            )

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self.processes if p.poll() is None]

    def dead(self) -> list[int]:
        with self._lock:
            return [slot for slot, p in enumerate(self.processes) if p.poll() is not None]

    def restart(self, slot: int) -> int:
        with self._lock:
            self.processes[slot].wait()
            self.processes[slot] = self._spawn(slot)
            return self.processes[slot].pid

    def kill(self, slot: int) -> int:
        with self._lock:
            pid = self.processes[slot].pid
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        with self._lock:
            for process in self.processes:
                if process.poll() is None:
                    process.terminate()
            for process in self.processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


class Service:
    """The production shape on a throwaway PostgreSQL database, the fake Twilio API in this process."""

    def __init__(
        self,
        workdir: Path,
        database: str = "soak",
        *,
        web_workers: int = 2,
        threads: int = 4,
        scheduler_workers: int = 2,
        provider_ms: float = 0.0,
    ) -> None:
        self.workdir = workdir
        self.database = database
        self.web_workers, self.threads, self.scheduler_count = web_workers, threads, scheduler_workers
        self.fake = QuietFake(provider_ms=provider_ms)
        self.url = ""
        self.web: GunicornServer | None = None
        self.scheduler: SchedulerWorkers | None = None

    def __enter__(self) -> Service:
        self.fake.start()
        try:
            self.url = postgresql_database(self.database)
            env = e2e_service_env(self.url, self.fake)
            env["SCHEDULER_ENABLED"] = "0"
            env["PYTHONUNBUFFERED"] = "1"
            run_checked([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env)
            run_checked([str(BIN / "flask"), "--app", "wsgi", "demo"], env)
            self.env = env
            self.web = GunicornServer(
                "wsgi:app",
                env,
                self.workdir / "gunicorn.log",
                workers=self.web_workers,
                threads=self.threads,
            ).wait_ready()
            self.scheduler = SchedulerWorkers(env, self.workdir, self.scheduler_count)
            time.sleep(1.5)  # the workers' LISTEN is up before the first webhook
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.web is not None:
            self.web.stop()
        self.fake.stop()
        if self.url:
            try:
                drop_postgresql_database(self.database)
            except Exception as error:  # the server may be down after a failed outage run
                print(f"warning: could not drop database {self.database}: {error!r}", file=sys.stderr)

    @property
    def base(self) -> str:
        assert self.web is not None
        return self.web.base

    def log_text(self) -> str:
        paths = [self.workdir / "gunicorn.log", *(self.scheduler.logs if self.scheduler else [])]
        return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())


# --- chaos --------------------------------------------------------------------------------------------------


@dataclass
class Kill:
    at: float  # perf_counter
    target: str  # "web" or "scheduler"
    pid: int


class Chaos:
    """kill -9 a random gunicorn worker or scheduler worker every few seconds while the load runs."""

    def __init__(
        self, service: Service, kills: int, seed: int, interval: tuple[float, float] = (1.0, 3.0)
    ) -> None:
        self.service = service
        self.kills_wanted = kills
        self.rng = random.Random(seed)
        self.first = self.rng.randrange(2)
        self.interval = interval
        self.kills: list[Kill] = []
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._restart_dead()

    def _restart_dead(self) -> None:
        scheduler = self.service.scheduler
        assert scheduler is not None
        for slot in scheduler.dead():
            scheduler.restart(slot)
            self.restarts += 1

    def _run(self) -> None:
        web, scheduler = self.service.web, self.service.scheduler
        assert web is not None
        assert scheduler is not None
        while len(self.kills) < self.kills_wanted and not self._stop.wait(self.rng.uniform(*self.interval)):
            # Alternate, from a random first one, so that both kinds are always killed.
            target = ("web", "scheduler")[(len(self.kills) + self.first) % 2]
            if target == "web":
                pids = web.workers()
                if not pids:
                    continue  # gunicorn is respawning them
                pid = self.rng.choice(pids)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            else:
                slots = [s for s in range(len(scheduler.processes)) if s not in scheduler.dead()]
                if not slots:
                    continue
                slot = self.rng.choice(slots)
                pid = scheduler.kill(slot)
                # An operator's supervisor (systemd Restart=always) brings it back after a moment.
                self._stop.wait(self.rng.uniform(0.3, 1.5))
                scheduler.restart(slot)
                self.restarts += 1
            self.kills.append(Kill(time.perf_counter(), target, pid))


# --- draining and the invariants ----------------------------------------------------------------------------


def backlog(url: str) -> dict[str, int]:
    """Work the workers still owe: unprocessed messages, due steps, unsent outbox rows."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        row = connection.execute(
            """
            SELECT
              (SELECT count(*) FROM inbound_messages WHERE state IN ('received', 'failed')),
              (SELECT count(*) FROM escalation_steps
                 WHERE (state = 'pending' AND due_at <= now()) OR state = 'claimed'),
              (SELECT count(*) FROM outbound_messages WHERE state = 'queued' AND next_attempt_at <= now()),
              (SELECT count(*) FROM outbound_messages WHERE state = 'sending'),
              (SELECT count(*) FROM outbound_messages
                 WHERE state = 'queued' AND next_attempt_at > now() AND purpose = 'page'),
              (SELECT count(*) FROM outbound_messages
                 WHERE state = 'queued' AND next_attempt_at > now() AND purpose <> 'page')
            """
        ).fetchone()
    assert row is not None
    # A page waiting out a retry's backoff is owed (every incident must reach a responder); other SMS in
    # backoff are not waited for.
    names = ("inbound", "steps", "outbox due", "outbox sending", "pages later", "outbox later")
    return dict(zip(names, row, strict=True))


def _backlog_or_unreachable(url: str) -> dict[str, int]:
    try:
        return backlog(url)
    except Exception:  # the database restarting: keep waiting
        return {"database unreachable": 1}


def _owed(left: dict[str, int]) -> bool:
    return any(v for k, v in left.items() if k != "outbox later")


def drain(url: str, timeout: float, quiet_for: float = 2.0) -> tuple[float, dict[str, int]]:
    """Wait until the workers owe nothing (twice in a row, `quiet_for` apart); returns (seconds, backlog)."""
    began = time.perf_counter()
    deadline = time.monotonic() + timeout
    left: dict[str, int] = {}
    while time.monotonic() < deadline:
        left = _backlog_or_unreachable(url)
        if not _owed(left):
            time.sleep(quiet_for)
            left = _backlog_or_unreachable(url)
            if not _owed(left):
                return time.perf_counter() - began, left
        time.sleep(0.5)
    return time.perf_counter() - began, left


@dataclass
class Findings:
    """What the database and the fake gateway show after a run."""

    accepted: int = 0
    gave_up: int = 0
    stored: int = 0
    lost: list[str] = field(default_factory=list)  # accepted MessageSids missing from the database
    stored_twice: int = 0
    states: Counter[str] = field(default_factory=Counter)
    without_report: int = 0
    reports_without_incident: int = 0
    incidents: int = 0
    incidents_without_steps: list[int] = field(default_factory=list)
    incidents_without_page_at_gateway: list[int] = field(default_factory=list)
    unpaged_details: list[str] = field(default_factory=list)  # their steps and pages, to explain them
    due_steps_not_done: int = 0
    pages: int = 0
    outbox: int = 0
    outbox_states: Counter[str] = field(default_factory=Counter)
    step_pages_twice: int = 0  # outbox rows for one (step, responder) beyond the first
    sms_at_gateway: int = 0
    duplicates_at_gateway: int = 0  # SMS the fake got more often than the outbox holds rows for them
    duplicates_explained: int = 0  # ... of which a row with attempts > 1 accounts for (cut off mid-send)
    duplicate_details: list[str] = field(default_factory=list)
    sent_but_not_at_gateway: int = 0
    unknown_at_gateway: int = 0  # SMS at the fake that no outbox row accounts for
    cut_off_at_gateway: int = 0  # requests whose sender died before their body arrived (not SMS)
    last_processed: float | None = None  # epoch seconds: the last message through the pipeline
    last_step_done: float | None = None  # ... the last escalation step run (its pages in the outbox)
    log_tracebacks: int = 0
    log_timeouts: int = 0

    @property
    def duplicates_unexplained(self) -> int:
        return self.duplicates_at_gateway - self.duplicates_explained

    @property
    def unprocessed(self) -> int:
        return sum(v for k, v in self.states.items() if k != "processed")

    def problems(self) -> list[str]:
        """Every broken invariant, in words (empty when the run is clean)."""
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} accepted message(s) not stored: {self.lost[:5]}")
        if self.stored_twice:
            found.append(f"{self.stored_twice} MessageSid(s) stored more than once")
        if self.unprocessed:
            found.append(f"messages not processed: {dict(self.states)}")
        if self.without_report:
            found.append(f"{self.without_report} processed alert(s) without a report")
        if self.reports_without_incident:
            found.append(f"{self.reports_without_incident} report(s) without an incident")
        if self.incidents_without_steps:
            found.append(f"incidents without escalation steps: {self.incidents_without_steps[:10]}")
        if self.due_steps_not_done:
            found.append(f"{self.due_steps_not_done} due escalation step(s) not run")
        if self.incidents_without_page_at_gateway:
            found.append(
                "incidents whose pages never reached the gateway: "
                f"{self.incidents_without_page_at_gateway[:10]} {self.unpaged_details}"
            )
        if self.step_pages_twice:
            found.append(f"{self.step_pages_twice} page row(s) written twice for one (step, responder)")
        if self.duplicates_unexplained:
            found.append(
                f"{self.duplicates_unexplained} SMS sent twice without an interrupted send: "
                f"{self.duplicate_details[:5]}"
            )
        if self.sent_but_not_at_gateway:
            found.append(
                f"{self.sent_but_not_at_gateway} outbox row(s) marked sent that the gateway never got"
            )
        if self.unknown_at_gateway:
            found.append(f"{self.unknown_at_gateway} SMS at the gateway that no outbox row accounts for")
        return found


def check(url: str, fake: TimedFake, loads: list[LoadResult], logs: str = "") -> Findings:
    """Compare what the clients had accepted, the database, and what the fake gateway received."""
    import psycopg

    findings = Findings()
    accepted = {d.webhook.sid for load in loads for d in load.deliveries if d.accepted}
    findings.accepted = len(accepted)
    findings.gave_up = sum(not d.accepted for load in loads for d in load.deliveries)
    with psycopg.connect(url, autocommit=True) as connection:
        stored = Counter(
            dict(
                connection.execute(
                    "SELECT provider_message_id, count(*) FROM inbound_messages WHERE provider = 'twilio' "
                    "GROUP BY provider_message_id"
                ).fetchall()
            )
        )
        findings.stored = len(stored)
        findings.lost = sorted(accepted - set(stored))
        findings.stored_twice = sum(c > 1 for c in stored.values())
        findings.states = Counter(
            dict(connection.execute("SELECT state, count(*) FROM inbound_messages GROUP BY state").fetchall())
        )
        findings.without_report = connection.execute(
            "SELECT count(*) FROM inbound_messages m WHERE m.state = 'processed' AND m.sender_kind = "
            "'focal_point' AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.inbound_message_id = m.id)"
        ).fetchone()[0]
        findings.reports_without_incident = connection.execute(
            "SELECT count(*) FROM reports WHERE incident_id IS NULL"
        ).fetchone()[0]
        findings.incidents = connection.execute("SELECT count(*) FROM incidents").fetchone()[0]
        findings.incidents_without_steps = [
            n
            for (n,) in connection.execute(
                "SELECT number FROM incidents i WHERE NOT EXISTS "
                "(SELECT 1 FROM escalation_steps s WHERE s.incident_id = i.id) ORDER BY number"
            )
        ]
        findings.due_steps_not_done = connection.execute(
            "SELECT count(*) FROM escalation_steps WHERE state = 'claimed' "
            "OR (state = 'pending' AND due_at <= now())"
        ).fetchone()[0]
        rows = connection.execute(
            "SELECT o.id, o.recipient, o.body, o.state, o.attempts, o.purpose, o.escalation_step_id, "
            "o.responder_id, i.number FROM outbound_messages o LEFT JOIN incidents i ON i.id = o.incident_id"
        ).fetchall()
        last, paged = connection.execute(
            "SELECT (SELECT extract(epoch FROM max(processed_at)) FROM inbound_messages), "
            "(SELECT extract(epoch FROM max(done_at)) FROM escalation_steps)"
        ).fetchone()
        findings.last_processed = float(last) if last is not None else None
        findings.last_step_done = float(paged) if paged is not None else None
    findings.outbox = len(rows)
    findings.outbox_states = Counter(r[3] for r in rows)
    findings.pages = sum(r[5] == "page" for r in rows)
    per_step = Counter((r[6], r[7]) for r in rows if r[6] is not None)
    findings.step_pages_twice = sum(c - 1 for c in per_step.values() if c > 1)

    at_gateway = Counter((r.to, r.body) for r in fake.requests if r.provider == TWILIO and r.authorised)
    findings.sms_at_gateway = sum(at_gateway.values())
    findings.cut_off_at_gateway = fake.cut_off
    by_sms: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for row in rows:
        by_sms[(row[1], row[2])].append(row)
    sent_states = {"sent", "delivered", "undelivered"}
    for key, count in at_gateway.items():
        holders = by_sms.get(key, [])
        if not holders:
            findings.unknown_at_gateway += count
            continue
        extra = count - len(holders)
        if extra > 0:
            findings.duplicates_at_gateway += extra
            retries = sum(max(0, r[4] - 1) for r in holders)
            findings.duplicates_explained += min(extra, retries)
            findings.duplicate_details.append(
                f"outbox {[r[0] for r in holders]} ({holders[0][5]}, incident {holders[0][8]}): "
                f"{count} at the gateway, attempts {[r[4] for r in holders]}"
            )
    for key, holders in by_sms.items():
        sent = sum(r[3] in sent_states for r in holders)
        findings.sent_but_not_at_gateway += max(0, sent - at_gateway.get(key, 0))
    paged_incidents = {
        r[8] for r in rows if r[5] == "page" and r[3] in sent_states and at_gateway.get((r[1], r[2]))
    }
    with psycopg.connect(url, autocommit=True) as connection:
        numbers = [n for (n,) in connection.execute("SELECT number FROM incidents ORDER BY number")]
    findings.incidents_without_page_at_gateway = [n for n in numbers if n not in paged_incidents]
    if findings.incidents_without_page_at_gateway:
        findings.unpaged_details = unpaged_details(url, findings.incidents_without_page_at_gateway[:3])
    findings.log_tracebacks = logs.count("Traceback (most recent call last)")
    findings.log_timeouts = logs.count("WORKER TIMEOUT")
    return findings


def unpaged_details(url: str, numbers: list[int]) -> list[str]:
    """What became of the steps and pages of incidents with no page at the gateway (for the report)."""
    import psycopg

    details = []
    with psycopg.connect(url, autocommit=True) as connection:
        for number in numbers:
            steps = connection.execute(
                "SELECT s.generation, s.tier, s.state, s.outcome FROM escalation_steps s "
                "JOIN incidents i ON i.id = s.incident_id "
                "WHERE i.number = %s AND s.due_at <= now() ORDER BY s.id",
                (number,),
            ).fetchall()
            pages = connection.execute(
                "SELECT o.state, o.attempts, o.last_error, o.next_attempt_at > now() "
                "FROM outbound_messages o JOIN incidents i ON i.id = o.incident_id "
                "WHERE i.number = %s AND o.purpose = 'page' ORDER BY o.id",
                (number,),
            ).fetchall()
            details.append(
                f"incident {number}: due steps {steps}; pages (state, attempts, error, later): {pages}"
            )
    return details


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


__all__ = [
    "PG_ADMIN_URL",
    "Chaos",
    "Findings",
    "LoadResult",
    "Service",
    "alert_webhooks",
    "check",
    "deliver",
    "drain",
]
