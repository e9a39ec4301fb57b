"""Benchmark of the Twilio inbound webhook under gunicorn, next to a floor (bench/floor_app.py).

    .venv/bin/python bench/bench_webhooks.py --db sqlite --requests 2000 --concurrency 8
    .venv/bin/python bench/bench_webhooks.py --db postgresql --requests 2000 --concurrency 8

The webhook stores the message, commits and answers; the engine processes stored messages when woken. Targets,
each on a throwaway database:
- "service embedded": `wsgi:app`, one gunicorn worker x 8 threads with the scheduler inside it
  (SCHEDULER_ENABLED=1, as `make run`): processing runs in the background of the same process.
- "service production": `wsgi:app`, gunicorn web workers without scheduler, plus one `flask --app wsgi worker`
  process (woken through LISTEN/NOTIFY on PostgreSQL; on SQLite it has only its 1 s tick).
- "edge only": `wsgi:app` with no scheduler and no worker: messages are stored and never processed, what the
  provider edge alone costs (signature, normalisation, idempotent store and commit, answer). On SQLite the
  service's webhooks store into the spool (alerts/spool.py), which the engine empties into the database.
- "floor": bench/floor_app.py (parse the form, insert one row), in both gunicorn shapes.
For each target, a closed-loop run at full speed (C client threads, each sending its next request as soon as
the last one is answered) gives the maximum rate; a paced run at half that rate gives the latency a provider
sees under ordinary load, measured from each request's scheduled time so that a client falling behind does
not hide queueing. After each run of a processing target the benchmark waits until every stored message is
processed and reports the drain (last processed minus end of the load) and the pipeline's own rate (messages
/ (last processed - first received)). Every request to the service is a genuinely signed Twilio webhook from
a registered demo focal point (the sender rate limit and the reply cap are raised so that none is cut short);
outbound SMS go to the console gateway. Each run also reports the CPU each group of processes spent per
message (the gunicorn server and its workers, the worker process, PostgreSQL's server processes, this client;
read from /proc, the drain included): on two shared CPUs, that is where a target's throughput goes.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-twilio-auth-token"  # noqa: S105 - a throwaway secret for a throwaway server
SMS_PATH = "/webhooks/twilio/sms"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DEMO_FOCAL_POINTS = [f"+24381555{i:04d}" for i in range(40)]  # alerts/demo.py
ALERT_TEXTS = [
    "Attaque a Kiwanja ce matin, 3 morts, maisons brulees",
    "Hommes armes a Rubare, la population fuit vers Rutshuru",
    "Enlevement de 4 enfants pres de Kibirizi hier soir",
    "Watu wenye silaha wameingia Bambu, watu 2 wameuawa",
    "Mapigano makali Kitchanga tangu asubuhi, watu wanakimbia",
    "Incendie de 20 maisons a Nyanzale par des hommes armes",
    "Armed men looting shops in Kanyabayonga market",
    "Viol de 2 femmes au champ pres de Mweso",
    "Pillage du centre de sante a Pinga, menaces contre la population",
    "Accrochage entre militaires et miliciens a Mbau, tirs entendus",
    "Deplacement massif de Eringeti vers Oicha depuis 2 jours",
    "Tuerie a Mutwanga: 5 corps sans vie retrouves",
]
DRAIN_TIMEOUT_SECONDS = 600


@dataclass
class RunResult:
    target: str
    mode: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    drain_seconds: float | None = None  # last message processed, after the load ended
    pipeline_rate: float | None = None  # messages / (last processed - first received)
    unprocessed: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per message, by process group

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Target:
    name: str
    app: str
    workers: int
    threads: int
    floor: bool = False
    scheduler: bool = False  # the embedded scheduler in the (single) web worker
    worker_process: bool = False  # a separate `flask --app wsgi worker`
    env: dict[str, str] = field(default_factory=dict)

    @property
    def processes(self) -> bool:
        return self.scheduler or self.worker_process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgresql_database(name: str) -> str:
    """Drop and create a throwaway database; returns its URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_postgresql_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(kind: str, workdir: Path, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'{name}.db'}"
    return postgresql_database(name)


def service_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "SECRET_KEY": "bench",
        "SCHEDULER_ENABLED": "0",
        "SMS_GATEWAYS": "console",
        "SENDER_RATE_LIMIT": "1000000",
        "AUTO_REPLY_CAP_PER_HOUR": "1000000",
        "LOG_LEVEL": "WARNING",
        "PUBLIC_URL": "",
        "TRUST_PROXY": "0",
        "PYTHONPATH": str(ROOT),
    }


def run_checked(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


class Gunicorn:
    """A gunicorn server on a free port with the project's settings (any app, any venv), stopped on exit."""

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        workers: int,
        threads: int,
        log: Path,
        *,
        gunicorn: Path = BIN / "gunicorn",
        cwd: Path = ROOT,
        health_path: str = "/healthz",
        ready: Callable[[int], bool] = lambda status: status == 200,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.health_path = health_path
        self.ready = ready
        self.log_path = log
        command = [
            str(gunicorn),
            "--config",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--access-logfile",
            os.devnull,
            "--no-control-socket",  # the default path is shared by every gunicorn on the machine
            app,
        ]
        self.log = log.open("w")
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log, stderr=self.log)

    def wait_ready(self, timeout: float = 60.0) -> Gunicorn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            try:
                if self.ready(requests.get(self.base + self.health_path, timeout=1).status_code):
                    return self
            except requests.RequestException:
                pass  # not listening yet, or its worker still booting
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> Gunicorn:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess:
    """`flask --app wsgi worker` (the production scheduler), stopped on exit."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [str(BIN / "flask"), "--app", "wsgi", "worker"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def signed_request(base: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """A Twilio inbound SMS webhook with a fresh MessageSid, signed over the URL and every field."""
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": random.choice(DEMO_FOCAL_POINTS),
        "To": "+243990000001",
        "Body": random.choice(ALERT_TEXTS),
        "NumSegments": "1",
        "NumMedia": "0",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    url = base + SMS_PATH
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    return url, form, {"X-Twilio-Signature": signature}


def drive(base: str, total: int, concurrency: int, rate: float | None, target: str) -> RunResult:
    """Send `total` webhooks from `concurrency` threads, as fast as possible or paced at `rate` per second."""
    prepared = [signed_request(base) for _ in range(total)]  # signing is the client's cost, not the server's
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.2

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        own: list[float] = []
        own_errors = 0
        while True:
            index = next(counter)
            if index >= total:
                break
            url, form, headers = prepared[index]
            scheduled = start + index / rate if rate else None
            if scheduled is not None:
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            sent = time.perf_counter()
            try:
                response = session.post(url, data=form, headers=headers, timeout=30)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            done = time.perf_counter()
            own.append((done - (scheduled or sent)) * 1000)
            own_errors += not ok
        with lock:
            latencies.extend(own)
            errors += own_errors

    while time.perf_counter() < start:
        time.sleep(0.01)
    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return RunResult(target, f"paced {rate:.0f}/s" if rate else "max", total, errors, seconds, latencies)


def warm_up(base: str) -> None:
    session = requests.Session()
    for _ in range(20):
        url, form, headers = signed_request(base)
        session.post(url, data=form, headers=headers, timeout=30)


def wait_for_drain(url: str, since: datetime, load_ended: datetime, result: RunResult) -> None:
    """Wait until no stored message is left unprocessed (nor spooled, on SQLite); note the drain time and the
    pipeline's rate."""
    from sqlalchemy import func, select

    from alerts.db import Database
    from alerts.models import InboundMessage
    from alerts.spool import open_spool
    from alerts.states import InboundState

    database = Database(url)
    spool = open_spool(url, "auto")
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        waiting = 0
        while time.monotonic() < deadline:
            with database.read_sessionmaker() as session:
                waiting = session.scalar(
                    select(func.count())
                    .select_from(InboundMessage)
                    .where(InboundMessage.state.in_([InboundState.RECEIVED, InboundState.FAILED]))
                )
            if spool is not None:
                waiting += spool.waiting()
            if not waiting:
                break
            time.sleep(0.2)
        with database.read_sessionmaker() as session:
            count, first, last = session.execute(
                select(
                    func.count(), func.min(InboundMessage.received_at), func.max(InboundMessage.processed_at)
                ).where(InboundMessage.received_at >= since, InboundMessage.processed_at.is_not(None))
            ).one()
    finally:
        database.dispose()
        if spool is not None:
            spool.dispose()
    result.unprocessed = waiting
    if count and first and last:
        result.drain_seconds = max(0.0, (last - load_ended).total_seconds())
        result.pipeline_rate = count / max((last - first).total_seconds(), 1e-3)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds so far) of every process readable in /proc."""
    table: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


class CpuMeter:
    """CPU seconds spent by each group of processes between two snapshots: the web server (a gunicorn master
    and its workers), the worker process, PostgreSQL's server processes, and this client. Where a target's
    CPU goes per message is what tells production and the floor apart on a machine whose CPUs are all busy."""

    def __init__(self, groups: dict[str, int | None], postgres: bool) -> None:
        self.groups = groups  # name -> root pid (its descendants count too); None: not running
        self.postgres = postgres  # count PostgreSQL's server processes (not with SQLite)

    def snapshot(self) -> dict[str, float]:
        if not Path("/proc/self/stat").exists():
            return {}
        table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (parent, _name, _cpu) in table.items():
            children.setdefault(parent, []).append(pid)
        totals: dict[str, float] = {}
        for group, root in self.groups.items():
            if root is None or root not in table:
                continue
            pending, seconds = [root], 0.0
            while pending:
                pid = pending.pop()
                seconds += table[pid][2]
                pending += children.get(pid, [])
            totals[group] = seconds
        if self.postgres:
            totals["postgres"] = sum(
                cpu for _parent, name, cpu in table.values() if name.startswith("postgres")
            )
        own = os.times()
        totals["client"] = own.user + own.system
        return totals


def measured(
    base: str, url: str | None, run: Callable[[], RunResult], meter: CpuMeter | None = None
) -> RunResult:
    """One run; for a processing target, followed by the wait until every stored message is processed."""
    since = datetime.now(UTC)
    before = meter.snapshot() if meter else {}
    result = run()
    if url is not None:
        wait_for_drain(url, since, datetime.now(UTC), result)
    if meter:
        after = meter.snapshot()
        done = max(1, result.requests - result.errors)
        result.cpu_ms = {k: (after[k] - before[k]) * 1000 / done for k in after if k in before}
    return result


def bench_target(target: Target, args: argparse.Namespace, workdir: Path) -> list[RunResult]:
    name = "bench_" + "".join(c if c.isalnum() else "_" for c in target.name)
    url = database_url(args.db, workdir, name)
    if target.floor:
        from bench.floor_app import create_schema

        create_schema(url)
        env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    else:
        env = service_env(url)
        run_checked([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env)
        run_checked([str(BIN / "flask"), "--app", "wsgi", "demo"], env)
        env |= {"SCHEDULER_ENABLED": "1" if target.scheduler else "0", **target.env}
    drain_url = url if target.processes else None
    log = workdir / f"{name}.log"
    try:
        with (
            Gunicorn(target.app, env, target.workers, target.threads, log) as server,
            WorkerProcess(env, workdir / f"{name}-worker.log")
            if target.worker_process
            else _nothing() as worker,
        ):
            meter = CpuMeter(
                {"web": server.process.pid, "worker": worker.process.pid if worker else None},
                postgres=args.db == "postgresql",
            )
            measured(server.base, drain_url, lambda: _warm(server.base))
            full = measured(
                server.base,
                drain_url,
                lambda: drive(server.base, args.requests, args.concurrency, None, target.name),
                meter,
            )
            print(f"  {target.name} max: {full.rate:.0f} msg/s{_drained(full)}{_cpu(full)}", flush=True)
            paced = args.paced_requests or args.requests // 2
            half = measured(
                server.base,
                drain_url,
                lambda: drive(server.base, paced, args.concurrency * 2, full.rate / 2, target.name),
                meter,
            )
            print(
                f"  {target.name} paced at {full.rate / 2:.0f}/s: p99 {half.percentile(99):.1f} ms"
                f"{_drained(half)}{_cpu(half)}",
                flush=True,
            )
    finally:
        if args.db == "postgresql":
            drop_postgresql_database(name)
    return [full, half]


def _warm(base: str) -> RunResult:
    warm_up(base)
    return RunResult("warm-up", "warm-up", 20, 0, 1.0, [0.0])


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _drained(result: RunResult) -> str:
    if result.pipeline_rate is None:
        return ""
    return f"; drained {result.drain_seconds:.1f} s after the load, pipeline {result.pipeline_rate:.0f} msg/s"


def _cpu(result: RunResult) -> str:
    if not result.cpu_ms:
        return ""
    parts = ", ".join(f"{k} {v:.2f}" for k, v in result.cpu_ms.items())
    return f"; CPU ms/msg: {parts} (total {sum(result.cpu_ms.values()):.2f})"


def _cpu_cell(result: RunResult) -> str:
    order = ("web", "worker", "postgres", "client")
    return ", ".join(f"{result.cpu_ms[k]:.2f}" if k in result.cpu_ms else "-" for k in order)


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "unknown CPU")
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {system}"


def versions() -> str:
    """PostgreSQL's server version (when reachable) and SQLite's library version."""
    import sqlite3

    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            postgresql = connection.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:  # a benchmark header, not a failure
        postgresql = f"unreachable ({type(exc).__name__})"
    return f"PostgreSQL {postgresql}, SQLite {sqlite3.sqlite_version}"


def table(results: list[RunResult], db: str) -> str:
    lines = [
        "| database | target | run | requests | errors | msg/s | p50 ms | p99 ms | drain s "
        "| pipeline msg/s | CPU ms/msg: web, worker, postgres, client |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        drain = f"{r.drain_seconds:.1f}" if r.drain_seconds is not None else "-"
        pipeline = f"{r.pipeline_rate:.0f}" if r.pipeline_rate is not None else "-"
        if r.unprocessed:
            drain += f" ({r.unprocessed} left)"
        lines.append(
            f"| {db} | {r.target} | {r.mode} | {r.requests} | {r.errors} | {r.rate:.0f} "
            f"| {statistics.median(r.latencies_ms):.1f} | {r.percentile(99):.1f} | {drain} | {pipeline} "
            f"| {_cpu_cell(r)} |"
        )
    return "\n".join(lines)


def targets(args: argparse.Namespace) -> list[Target]:
    web = f"{args.workers}x{args.threads}"
    floor = "bench.floor_app:create_app()"
    return [
        Target("service embedded 1x8", "wsgi:app", 1, 8, scheduler=True),
        Target("floor 1x8", floor, 1, 8, floor=True),
        Target(
            f"service production {web} + worker", "wsgi:app", args.workers, args.threads, worker_process=True
        ),
        Target(f"edge only {web}", "wsgi:app", args.workers, args.threads),
        Target(f"floor {web}", floor, args.workers, args.threads, floor=True),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=2000, help="requests of the full-speed run")
    parser.add_argument(
        "--paced-requests",
        type=int,
        default=0,
        help="requests of the paced run (default: half of --requests)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="client threads of the full-speed run")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("GUNICORN_THREADS", "4")))
    parser.add_argument("--only", help="run only the targets whose name contains this")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every target this many times, interleaved, and compare medians (a shared machine drifts)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, SQLite files)")
    args = parser.parse_args()
    random.seed(1)

    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    print(f"# webhooks benchmark: {args.db}, {machine()}, {versions()}", flush=True)
    print(f"requests {args.requests}, concurrency {args.concurrency}; work dir {workdir}", flush=True)
    chosen = [t for t in targets(args) if not args.only or args.only in t.name]
    results: list[RunResult] = []
    try:
        for round_number in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {round_number} of {args.rounds}", flush=True)
            for target in chosen:
                results += bench_target(target, args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results, args.db))
    by_name = _medians([r for r in results if r.mode == "max"], lambda r: r.rate)
    paced = _medians([r for r in results if r.mode != "max"], lambda r: r.percentile(99))
    print()
    if args.rounds > 1:
        print(f"medians of {args.rounds} rounds:")
    for service, floor in (
        ("service embedded 1x8", "floor 1x8"),
        (
            f"service production {args.workers}x{args.threads} + worker",
            f"floor {args.workers}x{args.threads}",
        ),
        (f"edge only {args.workers}x{args.threads}", f"floor {args.workers}x{args.threads}"),
    ):
        if service in by_name and floor in by_name:
            print(
                f"{service} / {floor} throughput: {by_name[service] / by_name[floor]:.0%} "
                f"({by_name[service]:.0f} / {by_name[floor]:.0f} msg/s, target >= 70%); "
                f"p99 at half its max rate: {paced[service]:.1f} ms (target < 50 ms)"
            )


def _medians(results: list[RunResult], value: Callable[[RunResult], float]) -> dict[str, float]:
    """Per target, the median of `value` over its runs."""
    runs: dict[str, list[float]] = {}
    for result in results:
        runs.setdefault(result.target, []).append(value(result))
    return {target: statistics.median(values) for target, values in runs.items()}


if __name__ == "__main__":
    main()
