"""End-to-end latency of a new alert: Twilio webhook answered -> first page at the (fake) Twilio API.

    .venv/bin/python bench/bench_e2e.py --mode embedded --alerts 150 --rate 5
    .venv/bin/python bench/bench_e2e.py --mode production --alerts 150 --rate 5
    .venv/bin/python bench/bench_e2e.py --mode both

The real service runs under gunicorn with SMS_GATEWAYS=twilio and the real Twilio SDK pointed
(TWILIO_API_BASE) at the local fake of the provider APIs (tests/fakes/providers.py), started in this process.
Modes:
- embedded: SQLite, one gunicorn worker with the scheduler inside it (SCHEDULER_ENABLED=1, as `make run`);
- production: PostgreSQL, gunicorn web workers without scheduler plus one `flask --app wsgi worker` process,
  woken through LISTEN/NOTIFY.
Each alert is a signed Twilio webhook from a demo focal point carrying explicit GPS coordinates on a grid
0.1 degree apart (> 10 km, the deduplication distance) inside the demo zones, so each one opens its own
incident. Alerts are paced (default 5/s). Latency = the time the fake Twilio API received the first page
("ALERTE n"/"ALERT n" to a responder) of the incident minus the time the webhook's HTTP answer arrived at the
client (the message was committed before the answer). Both clocks are this process's perf_counter.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from bench.bench_webhooks import (  # noqa: E402 - after the path is set, as a script
    Gunicorn,
    drop_postgresql_database,
    machine,
    postgresql_database,
    run_checked,
    versions,
)
from tests.fakes.providers import (  # noqa: E402
    TWILIO,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_FROM,
    FakeProviders,
    ReceivedRequest,
)

SMS_PATH = "/webhooks/twilio/sms"
DEMO_FOCAL_POINTS = [f"+24381555{i:04d}" for i in range(40)]  # alerts/demo.py
RESPONDER_PREFIX = "+24382555"  # alerts/demo.py: every responder's number starts so
PAGE_RE = re.compile(r"^(?:ALERTE|ALERT|TAHADHARI|LIKEBI|IMPURUZA) (\d+):")
GRID_DEGREES = 0.1  # 11 km between neighbours: more than the 10 km deduplication distance
TEXTS = [
    "Attaque hommes armes GPS {lat:.4f} {lon:.4f}, 3 morts, maisons brulees",
    "Tuerie GPS {lat:.4f} {lon:.4f}: 4 corps retrouves ce matin",
    "Watu wenye silaha wameua watu 2 GPS {lat:.4f} {lon:.4f}",
    "Armed men attacked the village at GPS {lat:.4f} {lon:.4f}, 5 killed",
]


def alert_points(count: int, seed: int) -> list[tuple[float, float]]:
    """Grid points inside the demo zones, shuffled, so consecutive alerts are far apart."""
    from alerts.demo import ZONES

    points = []
    for i in range(int(3.8 / GRID_DEGREES)):
        lat = -2.4 + i * GRID_DEGREES
        for j in range(int(3.5 / GRID_DEGREES)):
            lon = 27.0 + j * GRID_DEGREES
            for _name, zone_lat, zone_lon, radius_km in ZONES:
                dy = (lat - zone_lat) * 111.32
                dx = (lon - zone_lon) * 111.32 * math.cos(math.radians(lat))
                if math.hypot(dx, dy) <= radius_km * 0.85:
                    points.append((round(lat, 4), round(lon, 4)))
                    break
    if count > len(points):
        raise SystemExit(f"at most {len(points)} alerts can each open their own incident")
    random.Random(seed).shuffle(points)
    return points[:count]


@dataclass
class Sent:
    sid: str
    sent_at: float
    answered_at: float
    status: int


class TimedFake(FakeProviders):
    """The fake provider APIs, noting when each request arrived (perf_counter of this process)."""

    def __init__(self, nagle: bool = False, provider_ms: float = 0.0) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, ReceivedRequest]] = []
        self.provider_seconds = provider_ms / 1000
        if not nagle:
            # The stock fake writes headers and body in two segments: Nagle's algorithm on this side and the
            # client's delayed ACK then add about 40 ms to every request, which no real provider does.
            handler = self._server.RequestHandlerClass
            self._server.RequestHandlerClass = type(
                "NoDelayHandler", (handler,), {"disable_nagle_algorithm": True}
            )

    def _record(self, request: ReceivedRequest) -> None:
        arrived = time.perf_counter()
        super()._record(request)
        with self._lock:
            self.arrivals.append((arrived, request))
        if self.provider_seconds:
            time.sleep(self.provider_seconds)  # a real provider's answer takes a while; the arrival counts

    def first_pages(self) -> dict[int, float]:
        """Incident number -> arrival time of its first page to a responder."""
        with self._lock:
            arrivals = list(self.arrivals)
        first: dict[int, float] = {}
        for arrived, request in arrivals:
            if request.provider != TWILIO or not request.to.startswith(RESPONDER_PREFIX):
                continue
            match = PAGE_RE.match(request.body)
            if match:
                number = int(match.group(1))
                first[number] = min(arrived, first.get(number, arrived))
        return first


def service_env(url: str, fake: FakeProviders) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": "bench",
        "SMS_GATEWAYS": "twilio",
        "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
        "TWILIO_FROM": TWILIO_FROM,
        "TWILIO_API_BASE": fake.base_url,
        "PUBLIC_URL": "",  # webhooks are signed over the URL as gunicorn sees it
        "TRUST_PROXY": "0",
        "SENDER_RATE_LIMIT": "1000000",
        "AUTO_REPLY_CAP_PER_HOUR": "1000000",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }


def send_alerts(base: str, points: list[tuple[float, float]], rate: float) -> list[Sent]:
    """One signed webhook per point, paced at `rate` per second from a few client threads."""
    prepared = []
    for i, (lat, lon) in enumerate(points):
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": TWILIO_ACCOUNT_SID,
            "From": DEMO_FOCAL_POINTS[i % len(DEMO_FOCAL_POINTS)],
            "To": "+243990000001",
            "Body": TEXTS[i % len(TEXTS)].format(lat=lat, lon=lon),
            "NumSegments": "1",
            "NumMedia": "0",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        url = base + SMS_PATH
        signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form)
        prepared.append((url, form, {"X-Twilio-Signature": signature}))
    results: list[Sent | None] = [None] * len(prepared)
    start = time.perf_counter() + 0.2
    lanes = 4  # a slow answer must not delay the next alert's send time

    def lane(offset: int) -> None:
        session = requests.Session()
        for index in range(offset, len(prepared), lanes):
            url, form, headers = prepared[index]
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            try:
                status = session.post(url, data=form, headers=headers, timeout=30).status_code
            except requests.RequestException:
                status = 0
            results[index] = Sent(form["MessageSid"], sent, time.perf_counter(), status)

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def incident_numbers(url: str) -> dict[str, int]:
    """MessageSid -> the number of the incident its report opened or joined."""
    from sqlalchemy import select

    from alerts.db import Database
    from alerts.models import InboundMessage, Incident, Report

    database = Database(url)
    try:
        with database.session() as session:
            rows = session.execute(
                select(InboundMessage.provider_message_id, Incident.number)
                .join(Report, Report.inbound_message_id == InboundMessage.id)
                .join(Incident, Incident.id == Report.incident_id)
            ).all()
    finally:
        database.dispose()
    return dict(rows)


@dataclass
class ModeResult:
    mode: str
    alerts: int
    incidents: int
    paged: int
    errors: int
    latencies_ms: list[float]
    from_send_ms: list[float]
    answer_ms: list[float]
    skipped_wakeups: int

    def percentile(self, values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan


def run_mode(mode: str, args: argparse.Namespace, workdir: Path) -> ModeResult:
    fake = TimedFake(nagle=args.stock_fake, provider_ms=args.provider_ms).start()
    worker: subprocess.Popen[bytes] | None = None
    pg_name = "bench_e2e"
    try:
        url = f"sqlite:///{workdir / 'e2e.db'}" if mode == "embedded" else postgresql_database(pg_name)
        env = service_env(url, fake)
        run_checked([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env)
        run_checked([str(BIN / "flask"), "--app", "wsgi", "demo"], env)
        log_path = workdir / f"{mode}.log"
        if mode == "embedded":
            env["SCHEDULER_ENABLED"] = "1"
            workers, threads = 1, 8  # as `make run`
        else:
            env["SCHEDULER_ENABLED"] = "0"
            workers, threads = args.web_workers, 4
            worker_log = (workdir / "worker.log").open("w")
            worker = subprocess.Popen(
                [str(BIN / "flask"), "--app", "wsgi", "worker"],
                cwd=ROOT,
                env=env,
                stdout=worker_log,
                stderr=worker_log,
            )
        with Gunicorn("wsgi:app", env, workers, threads, log_path) as server:
            time.sleep(2.0)  # the scheduler (or the worker and its LISTEN) is up
            points = alert_points(args.alerts, args.seed)
            sent = send_alerts(server.base, points, args.rate)
            deadline = time.monotonic() + args.wait
            numbers: dict[str, int] = {}
            while time.monotonic() < deadline:
                numbers = incident_numbers(url)
                pages = fake.first_pages()
                if len(numbers) == len(sent) and all(n in pages for n in numbers.values()):
                    break
                time.sleep(0.5)
        pages = fake.first_pages()
        latencies, from_send = [], []
        for s in sent:
            number = numbers.get(s.sid)
            if number is not None and number in pages:
                latencies.append((pages[number] - s.answered_at) * 1000)
                from_send.append((pages[number] - s.sent_at) * 1000)
        logs = log_path.read_text() + ((workdir / "worker.log").read_text() if worker else "")
        return ModeResult(
            mode=mode,
            alerts=len(sent),
            incidents=len(set(numbers.values())),
            paged=len(latencies),
            errors=sum(s.status != 200 for s in sent),
            latencies_ms=latencies,
            from_send_ms=from_send,
            answer_ms=[(s.answered_at - s.sent_at) * 1000 for s in sent],
            skipped_wakeups=logs.count("maximum number of running instances reached"),
        )
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
        fake.stop()
        if mode == "production":
            drop_postgresql_database(pg_name)


def table(results: list[ModeResult], rate: float) -> str:
    lines = [
        f"| mode | alerts ({rate:g}/s) | incidents | paged | errors | answer p50 ms "
        "| latency p50 ms | p95 ms | max ms | from send p95 ms | skipped wake-ups |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        p = r.percentile
        lines.append(
            f"| {r.mode} | {r.alerts} | {r.incidents} | {r.paged} | {r.errors} | {p(r.answer_ms, 50):.1f} "
            f"| {p(r.latencies_ms, 50):.0f} | {p(r.latencies_ms, 95):.0f} "
            f"| {max(r.latencies_ms, default=0):.0f} "
            f"| {p(r.from_send_ms, 95):.0f} | {r.skipped_wakeups} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["embedded", "production", "both"], default="both")
    parser.add_argument("--alerts", type=int, default=150, help="alerts per mode, each a new incident")
    parser.add_argument("--rate", type=float, default=5.0, help="alerts per second")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers in production mode")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the last pages")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--provider-ms", type=float, default=0.0, help="how long the fake API takes to answer each send"
    )
    parser.add_argument(
        "--stock-fake", action="store_true", help="keep the fake's Nagle delay (about 40 ms per request)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, SQLite file)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    print(f"# end-to-end latency: {machine()}; {versions()}", flush=True)
    print(f"work dir {workdir}", flush=True)
    modes = ["embedded", "production"] if args.mode == "both" else [args.mode]
    results = []
    try:
        for mode in modes:
            result = run_mode(mode, args, workdir)
            p = result.percentile
            print(
                f"  {mode}: {result.paged}/{result.alerts} paged, p50 {p(result.latencies_ms, 50):.0f} ms, "
                f"p95 {p(result.latencies_ms, 95):.0f} ms",
                flush=True,
            )
            results.append(result)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results, args.rate))


if __name__ == "__main__":
    main()
