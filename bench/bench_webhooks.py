"""Benchmark of the Twilio inbound webhook under gunicorn, next to a floor (bench/floor_app.py).

    .venv/bin/python bench/bench_webhooks.py --db sqlite --requests 2000 --concurrency 8
    .venv/bin/python bench/bench_webhooks.py --db postgresql --requests 2000 --concurrency 8

For each target (the service, then the floor) on a throwaway database: a closed-loop run at full speed (C
client threads, each sending its next request as soon as the last one is answered) gives the maximum rate; a
paced run at half that rate gives the latency a provider sees under ordinary load. Latencies of the paced run
are measured from each request's scheduled time, so a client that falls behind does not hide queueing.
A third target, "edge only" (bench/edge_app.py), is the service with processing skipped: the provider
edge's own cost. Every request to the service is a genuinely signed Twilio webhook from a registered demo
focal point, and is processed in full (the sender rate limit and the reply cap are raised so that none is
cut short).
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
from dataclasses import dataclass
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


@dataclass
class RunResult:
    target: str
    mode: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


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


def database_url(kind: str, workdir: Path, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'{name}.db'}"
    return postgresql_database(name)


def service_env(url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "SECRET_KEY": "bench",
        "SCHEDULER_ENABLED": "0",
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
    """A gunicorn server on a free port with the project's settings, stopped on exit."""

    def __init__(self, app: str, env: dict[str, str], workers: int, threads: int, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [
            str(BIN / "gunicorn"),
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
            app,
        ]
        self.log = log.open("w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=self.log)

    def __enter__(self) -> Gunicorn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log.name}")
            try:
                if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer within 30 s")

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


def bench_target(
    name: str,
    app: str,
    prepare: Callable[[Path], dict[str, str]],
    args: argparse.Namespace,
    workdir: Path,
) -> list[RunResult]:
    env = prepare(workdir)
    with Gunicorn(app, env, args.workers, args.threads, workdir / f"{name}.log") as server:
        warm_up(server.base)
        full = drive(server.base, args.requests, args.concurrency, None, name)
        print(f"  {name} max: {full.rate:.0f} msg/s", flush=True)
        paced = args.paced_requests or args.requests // 2
        half = drive(server.base, paced, args.concurrency * 2, full.rate / 2, name)
        print(f"  {name} paced at {full.rate / 2:.0f}/s: p99 {half.percentile(99):.1f} ms", flush=True)
    return [full, half]


def prepare_service(args: argparse.Namespace, name: str) -> Callable[[Path], dict[str, str]]:
    def prepare(workdir: Path) -> dict[str, str]:
        env = service_env(database_url(args.db, workdir, name), workdir)
        run_checked([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env)
        run_checked([str(BIN / "flask"), "--app", "wsgi", "demo"], env)
        return env

    return prepare


def prepare_floor(args: argparse.Namespace) -> Callable[[Path], dict[str, str]]:
    def prepare(workdir: Path) -> dict[str, str]:
        from bench.floor_app import create_schema

        url = database_url(args.db, workdir, "bench_floor")
        create_schema(url)
        return {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}

    return prepare


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "unknown CPU")
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {system}"


def table(results: list[RunResult], db: str) -> str:
    lines = [
        "| database | target | run | requests | errors | msg/s | p50 ms | p99 ms |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {db} | {r.target} | {r.mode} | {r.requests} | {r.errors} | {r.rate:.0f} "
            f"| {statistics.median(r.latencies_ms):.1f} | {r.percentile(99):.1f} |"
        )
    return "\n".join(lines)


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
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, SQLite files)")
    args = parser.parse_args()
    random.seed(1)

    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    print(f"# webhooks benchmark: {args.db}, {machine()}", flush=True)
    print(f"gunicorn {args.workers} workers x {args.threads} threads; work dir {workdir}", flush=True)
    try:
        results = bench_target("service", "wsgi:app", prepare_service(args, "bench"), args, workdir)
        edge_app = "bench.edge_app:create_edge_app()"
        results += bench_target("edge only", edge_app, prepare_service(args, "bench_edge"), args, workdir)
        results += bench_target("floor", "bench.floor_app:create_app()", prepare_floor(args), args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    service, edge, floor = results[0], results[2], results[4]
    print()
    print(table(results, args.db))
    print()
    print(
        f"service/floor throughput: {service.rate / floor.rate:.0%} (target >= 70%); "
        f"edge only/floor: {edge.rate / floor.rate:.0%}; "
        f"service p99 at half its max rate: {results[1].percentile(99):.1f} ms (target < 50 ms)"
    )


if __name__ == "__main__":
    main()
