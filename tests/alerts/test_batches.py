"""Processing stored messages in batches (one transaction for many) decides exactly what processing them one
at a time decides: every later message sees what the earlier ones of its batch did."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import func, select

from alerts.inbound import InboundForm, retry_unprocessed, store_inbound
from alerts.models import (
    Counter,
    FocalPoint,
    InboundMessage,
    Incident,
    IncidentEvent,
    OutboundMessage,
    Place,
    Report,
)
from alerts.outbox import AUTOMATIC_REPLIES
from alerts.pipeline import CELL_DEGREES, PipelineSettings, _Batch, process_message, process_messages
from alerts.states import InboundState
from tests import factories
from tests.conftest import T0, empty_database, postgresql_only

# Small limits, so that the rate limit and the reply cap are reached inside one batch.
SETTINGS = PipelineSettings(sender_rate_limit=3, reply_cap_per_hour=2)
PLACES = [
    ("Kitchanga", -1.18, 28.92, "Kitshanga|Kichanga"),
    ("Mweso", -1.10, 28.94, ""),
    ("Masisi", -1.40, 28.8167, ""),
    ("Rubaya", -1.56, 28.88, ""),
    ("Kalungu", -1.52, 28.95, ""),
]
UNKNOWN, NEWCOMER = "+243990000111", "+243990000222"
_sids = count(1)
_versions = count(1_000_000)


def build_network(database) -> dict[str, str]:
    """The same network, names and phones on every run; returns who is who by phone."""
    who = {"first": "+243810000001", "second": "+243810000002", "third": "+243810000003"}
    with database.session() as session:
        for name, lat, lon, alt in PLACES:
            session.add(Place(name=name, lat=lat, lon=lon, alt_names=alt))
        # A version no other test used: the gazetteer is cached per version, and the ids differ.
        session.add(Counter(name="places_version", value=next(_versions)))
        masisi = factories.zone(session)
        responder = factories.responder(session, 1, [masisi], name="Neema", phone="+243820000001")
        factories.responder(session, 2, [masisi], name="Baraka", phone="+243820000002")
        homes = {"first": (-1.18, 28.92), "second": (-1.40, 28.8167), "third": (-1.37, 28.76)}
        for role, (lat, lon) in homes.items():
            factories.focal_point(session, masisi, lat=lat, lon=lon, name=role, phone=who[role])
        factories.seed_default_policies(session)
        session.commit()
        return {**who, "responder": responder.phone}


def script(who: dict[str, str]) -> list[tuple[str, str]]:
    """A burst as a busy morning brings it: corroborations, a repeat, an upgrade, far and unrelated
    reports, strangers, a registration followed by its sender's first alert, an acknowledgement of an
    incident opened moments before, and senders running into the rate limit and the reply cap."""
    return [
        (who["first"], "attaque a Kitchanga 20 hommes armes"),
        (who["first"], "attaque a kitchanga 20 hommes armés"),
        (who["second"], "Attaque en cours a Kitshanga"),
        (who["second"], "3 personnes tuees a Kitchanga"),
        (who["third"], "attaque a Rubaya"),
        (who["third"], "deplacement des familles a Kitchanga"),
        (UNKNOWN, "attaque a Mweso"),
        (NEWCOMER, "REG Amani Kahindo Mweso"),
        (NEWCOMER, "attaque a Mweso"),
        (who["responder"], "OK 1"),
        (who["first"], "pillage a Kalungu"),
        (who["first"], "attaque a Masisi"),
        (who["second"], "TEST"),
        (who["second"], "AIDE"),
        (who["third"], "hommes armes a Mweso"),
        (who["responder"], "STATUT 2"),
    ]


def store_script(database, who, first: int | None = None) -> list[int]:
    ids = []
    with database.session() as session:
        for second, (phone, text) in enumerate(script(who)[:first]):
            form = InboundForm(
                "twilio",
                f"SM{next(_sids):032d}",
                phone,
                "+15005550006",
                text,
                T0 + timedelta(seconds=second),
                {},
            )
            ids.append(store_inbound(session, form)[0])
    return ids


def snapshot(database) -> dict[str, list]:
    """Everything processing decided, without row ids or flush order."""
    with database.read_sessionmaker() as session:
        numbers = dict(session.execute(select(Incident.id, Incident.number)).all())
        return {
            "incidents": session.execute(
                select(
                    Incident.number,
                    Incident.category,
                    Incident.severity,
                    Incident.status,
                    Incident.confidence,
                    Incident.count,
                    Incident.place_name,
                    Incident.escalation_generation,
                    Incident.update_pending,
                    Incident.last_report_at,
                ).order_by(Incident.number)
            ).all(),
            "reports": sorted(
                (numbers.get(r.incident_id, 0), r.focal_point_id, r.is_repeat, r.located_by, r.category)
                for r in session.scalars(select(Report))
            ),
            "timeline": sorted(
                (numbers[e.incident_id], e.kind, e.detail) for e in session.scalars(select(IncidentEvent))
            ),
            "outbox": sorted(
                session.execute(
                    select(OutboundMessage.recipient, OutboundMessage.purpose, OutboundMessage.body)
                ).all()
            ),
            "inbound": session.execute(
                select(InboundMessage.sender, InboundMessage.state, InboundMessage.sender_kind).order_by(
                    InboundMessage.received_at
                )
            ).all(),
            "focal_points": sorted(session.execute(select(FocalPoint.phone, FocalPoint.status)).all()),
        }


NOW = T0 + timedelta(minutes=1)


def one_at_a_time(database, ids) -> list[str]:
    decisions = []
    for message_id in ids:
        with database.session() as session:
            decisions.append(process_message(session, message_id, now=NOW, settings=SETTINGS).decision)
    return decisions


def all_in_one_batch(database, ids) -> list[str]:
    with database.session() as session:
        messages = session.scalars(
            select(InboundMessage).where(InboundMessage.id.in_(ids)).order_by(InboundMessage.received_at)
        ).all()
        return [o.decision for o in process_messages(session, messages, now=NOW, settings=SETTINGS)]


def engine_batches_of_four(database, ids) -> list[str]:
    decisions: list[str] = []

    def one(session, message_id, now):
        raise AssertionError("no batch should fail")

    def batch(session, messages, now):
        decisions.extend(o.decision for o in process_messages(session, messages, now=now, settings=SETTINGS))

    assert retry_unprocessed(
        database, NOW, one, grace=timedelta(0), process_batch=batch, batch_size=4
    ) == len(ids)
    return decisions


def run(database, mode) -> tuple[list[str], dict[str, list]]:
    empty_database(database)
    who = build_network(database)
    ids = store_script(database, who)
    decisions = mode(database, ids)
    return decisions, snapshot(database)


def test_a_batch_decides_exactly_what_one_message_at_a_time_decides(database):
    alone_decisions, alone = run(database, one_at_a_time)
    # The script exercises what a batch must carry from one message to the next.
    assert sum(d.startswith("opened incident") for d in alone_decisions) >= 3
    assert any(d.startswith("repeat") for d in alone_decisions)
    assert "rate limited" in alone_decisions
    assert any(d.startswith("registration pending") for d in alone_decisions)
    assert any("acknowledged" in d for d in alone_decisions)
    assert any(upgraded for _, kind, upgraded in alone["timeline"] if kind == "upgraded")
    second = alone["inbound"][2].sender
    replies = [r for r in alone["outbox"] if r.recipient == second and r.purpose in AUTOMATIC_REPLIES]
    assert len(replies) == SETTINGS.reply_cap_per_hour

    for mode in (all_in_one_batch, engine_batches_of_four):
        decisions, state = run(database, mode)
        assert decisions == alone_decisions, mode.__name__
        for key, value in alone.items():
            assert state[key] == value, (mode.__name__, key)


def test_a_failing_batch_is_rolled_back_and_its_messages_processed_one_at_a_time(database, caplog):
    who = build_network(database)
    ids = store_script(database, who, first=6)
    broken = ids[3]
    batches: list[list[int]] = []

    def batch(session, messages, now):
        batches.append([m.id for m in messages])
        if broken in batches[-1]:

            def commit():
                session.flush()  # all the batch's work is in the transaction, then it fails
                raise RuntimeError("the batch's commit failed")

            session.commit = commit
        return process_messages(session, messages, now=now, settings=SETTINGS)

    def one(session, message_id, now):
        if message_id == broken:
            raise RuntimeError("this one message cannot be processed")
        process_message(session, message_id, now=now, settings=SETTINGS)

    assert retry_unprocessed(database, NOW, one, grace=timedelta(0), process_batch=batch, batch_size=4) == 5

    assert batches == [ids[:4], ids[4:]]
    with database.read_sessionmaker() as session:
        states = dict(session.execute(select(InboundMessage.id, InboundMessage.state)).all())
        assert states[broken] == InboundState.FAILED
        assert all(states[i] == InboundState.PROCESSED for i in ids if i != broken)
        # Processed once each: the rolled-back batch left no report behind.
        assert sorted(session.scalars(select(Report.inbound_message_id))) == [i for i in ids if i != broken]
    assert "a batch of 4 inbound messages failed with RuntimeError" in caplog.text


@pytest.mark.parametrize("size", [1, 2, 50])
def test_the_engine_takes_messages_oldest_first_in_batches_of_the_configured_size(database, size):
    who = build_network(database)
    ids = store_script(database, who)
    seen: list[list[int]] = []

    def batch(session, messages, now):
        seen.append([m.id for m in messages])
        process_messages(session, messages, now=now, settings=SETTINGS)

    retry_unprocessed(database, NOW, None, grace=timedelta(0), process_batch=batch, batch_size=size)  # type: ignore[arg-type]

    assert [i for chunk in seen for i in chunk] == ids
    assert all(len(chunk) <= size for chunk in seen)
    assert len(seen) == -(-len(ids) // size)


def _second_worker_waiting(database, holder, message_ids: list[int], outcome: list[object]):
    """Start a second worker's batch of these messages in a thread and return once it waits for the matching
    lock that `holder` took; its outcomes (or its exception) land in `outcome`."""
    import threading

    from sqlalchemy import text

    def second_worker() -> None:
        with database.session() as session:
            messages = session.scalars(
                select(InboundMessage).where(InboundMessage.id.in_(message_ids)).order_by(InboundMessage.id)
            ).all()
            try:
                outcome.extend(process_messages(session, messages, now=NOW, settings=SETTINGS))
            except Exception as exc:  # reported by the test, in its own thread
                outcome.append(exc)

    worker = threading.Thread(target=second_worker)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not holder.scalar(
        text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    ):
        time.sleep(0.01)  # polling until the second worker waits, not waiting for time to pass
    return worker


@postgresql_only
def test_a_batch_waits_for_the_matching_lock_before_it_holds_any_row(database):
    """A batch that updated a focal point and then waited for the matching lock deadlocked with the batch
    holding that lock and updating the same focal point (the soak found it)."""

    from sqlalchemy import text, update

    from alerts.pipeline import _lock_matching

    who = build_network(database)
    message_ids = store_script(database, who, first=1)
    outcome: list[object] = []

    with database.session() as holder:
        _lock_matching(holder)  # a first worker's batch, mid-way
        worker = _second_worker_waiting(database, holder, message_ids, outcome)
        holder.execute(text("SET LOCAL lock_timeout = '5s'"))
        holder.execute(update(FocalPoint).where(FocalPoint.phone == who["first"]).values(last_seen_at=T0))
        holder.commit()
    worker.join(timeout=30)

    assert [getattr(o, "decision", o) for o in outcome] == ["opened incident 1"]


@postgresql_only
def test_a_batch_waiting_for_the_matching_lock_has_parsed_its_messages_already(database, monkeypatch):
    """Parsing reads nothing: it happens before the lock, while another worker's batch holds it."""

    from alerts import pipeline
    from alerts.pipeline import _lock_matching

    who = build_network(database)
    message_ids = store_script(database, who, first=3)
    parsed: list[str] = []
    real_parse = pipeline.parse_message

    def recording_parse(body, vocabulary):
        parsed.append(body)
        return real_parse(body, vocabulary)

    monkeypatch.setattr(pipeline, "parse_message", recording_parse)
    placed: list[tuple[str, ...]] = []
    real_locate = pipeline.Gazetteer.locate

    def recording_locate(self, words, coordinates, home):
        placed.append(tuple(words))
        return real_locate(self, words, coordinates, home)

    monkeypatch.setattr(pipeline.Gazetteer, "locate", recording_locate)
    outcome: list[object] = []

    with database.session() as holder:
        _lock_matching(holder)
        worker = _second_worker_waiting(database, holder, message_ids, outcome)
        assert sorted(parsed) == sorted(text for _phone, text in script(who)[:3])
        assert len(placed) == 3  # and placed through the gazetteer
        assert outcome == []  # still waiting
        holder.commit()
    worker.join(timeout=30)

    assert len(outcome) == 3
    assert all(hasattr(o, "decision") for o in outcome), outcome


@postgresql_only
def test_an_alert_placed_before_the_lock_is_placed_again_if_its_senders_home_changed_meanwhile(database):
    """Placing happens before the matching lock from the homes as they were; a home a coordinator moved
    while the batch waited places the alert from the new home."""
    from sqlalchemy import update

    from alerts.pipeline import _lock_matching

    who = build_network(database)
    with database.session() as session:
        form = InboundForm(
            "twilio", f"SM{next(_sids):032d}", who["third"], "+1500", "hommes armes ici", T0, {}
        )
        message_ids = [store_inbound(session, form)[0]]
    outcome: list[object] = []
    rubaya = (-1.56, 28.88)
    with database.session() as holder:
        _lock_matching(holder)
        worker = _second_worker_waiting(database, holder, message_ids, outcome)
        holder.execute(
            update(FocalPoint)
            .where(FocalPoint.phone == who["third"])
            .values(home_lat=rubaya[0], home_lon=rubaya[1])
        )
        holder.commit()
    worker.join(timeout=30)

    assert [getattr(o, "decision", o) for o in outcome] == ["opened incident 1"]
    with database.session() as session:
        assert session.execute(select(Incident.lat, Incident.lon)).one() == rubaya


@postgresql_only
def test_on_postgresql_a_batch_opens_its_incidents_without_a_flush_each(database):
    """An incident's id and number come from one statement, so the batch writes its rows at its commit:
    one INSERT for all the incidents it opened (and their reports), not a flush per new incident."""
    from sqlalchemy import event

    empty_database(database)
    who = build_network(database)
    ids = store_script(database, who)
    inserts: list[str] = []

    def record(_connection, _cursor, statement, _parameters, _context, _many):
        if statement.startswith("INSERT INTO"):
            inserts.append(statement.split()[2])

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        decisions = all_in_one_batch(database, ids)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)

    opened = sum(d.startswith("opened incident") for d in decisions)
    assert opened >= 3
    # The script's registration and acknowledgement flush once each, mid-batch; new incidents do not.
    assert inserts.count("incidents") < opened, inserts
    with database.read_sessionmaker() as session:
        rows = session.execute(select(Incident.id, Incident.number).order_by(Incident.number)).all()
        assert len(rows) == opened
        # Every report and timeline line points at an incident that exists (allocated ids, not guesses).
        incident_ids = {row.id for row in rows}
        assert (
            set(session.scalars(select(Report.incident_id).where(Report.incident_id.is_not(None))))
            <= incident_ids
        )
        assert set(session.scalars(select(IncidentEvent.incident_id))) <= incident_ids


@pytest.mark.parametrize("mode", [one_at_a_time, all_in_one_batch])
def test_an_incident_opened_and_upgraded_in_the_same_batch_starts_a_new_escalation_generation(database, mode):
    empty_database(database)
    who = build_network(database)
    ids = []
    with database.session() as session:
        for second, (phone, text) in enumerate(
            [
                (who["first"], "pillage a Kalungu"),
                (who["second"], "3 personnes tuees a Kalungu par des hommes armes"),
            ]
        ):
            form = InboundForm("twilio", f"SM{next(_sids):032d}", phone, "+15005550006", text, T0, {})
            ids.append(store_inbound(session, replace_time(form, second))[0])
    decisions = mode(database, ids)

    assert decisions[0].startswith("opened incident")
    with database.read_sessionmaker() as session:
        incident = session.scalars(select(Incident)).one()
        kinds = [e.kind for e in session.scalars(select(IncidentEvent).order_by(IncidentEvent.id))]
    assert "upgraded" in kinds
    assert incident.escalation_generation == 1
    assert incident.update_pending is True
    assert incident.callback_pending is False


def replace_time(form: InboundForm, second: int) -> InboundForm:
    from dataclasses import replace

    return replace(form, received_at=T0 + timedelta(seconds=second))


def test_a_batch_reads_the_candidate_incidents_of_all_its_alerts_at_once(database):
    """One query for the places and windows of every alert in the batch (each alert's matching filters the
    rows again); an alert the batch could not foresee (its sender registered in the same batch) reads its
    own."""
    from sqlalchemy import event

    empty_database(database)
    who = build_network(database)
    ids = store_script(database, who)
    reads: list[str] = []

    def record(_connection, _cursor, statement, _parameters, _context, _many):
        if statement.startswith("SELECT incidents.id") and "incidents.last_report_at >=" in statement:
            reads.append(statement)  # a read of candidates (not a lock, not a look-up by number)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        decisions = all_in_one_batch(database, ids)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)

    alerts = sum(d.startswith(("opened incident", "corroboration", "repeat", "merged")) for d in decisions)
    assert alerts >= 8, decisions
    assert len(reads) <= 2, len(reads)


@postgresql_only
def test_a_batch_locks_the_incidents_its_alerts_merge_into_in_one_statement(database):
    """The incidents a batch's alerts will merge into are foreseen from the candidates and row-locked
    together, not one statement per merge, and updated together; what the batch decides is what it decided
    before (the test above, one message at a time against batches)."""
    from sqlalchemy import event

    empty_database(database)
    who = build_network(database)
    with database.session() as session:
        for second, (phone, text) in enumerate(
            [(who["first"], "attaque a Kitchanga 20 hommes armes"), (who["third"], "attaque a Rubaya")]
        ):
            form = InboundForm("twilio", f"SM{next(_sids):032d}", phone, "+15005550006", text, T0, {})
            store_inbound(session, replace_time(form, second))
    earlier = all_in_one_batch(database, _unprocessed(database))
    assert [d.split()[:2] for d in earlier] == [["opened", "incident"]] * 2
    with database.session() as session:
        for second, (phone, text) in enumerate(
            [
                (who["second"], "Attaque en cours a Kitshanga"),  # a new focal point: corroboration
                (who["third"], "hommes armes a Rubaya, attaque"),  # the same focal point again
            ],
            start=10,
        ):
            form = InboundForm("twilio", f"SM{next(_sids):032d}", phone, "+15005550006", text, T0, {})
            store_inbound(session, replace_time(form, second))
    locks: list[str] = []
    updates: list[str] = []

    def record(_connection, _cursor, statement, _parameters, _context, _many):
        if "FROM incidents" in statement and "FOR NO KEY UPDATE" in statement:
            locks.append(statement)
        if statement.startswith("UPDATE incidents"):
            updates.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        decisions = all_in_one_batch(database, _unprocessed(database))
    finally:
        event.remove(database.engine, "before_cursor_execute", record)

    merged = [d for d in decisions if " into " in d]
    assert len(merged) == 2, decisions
    assert {d.rsplit(" ", 1)[1] for d in merged} == {"1", "2"}
    assert len(locks) == 1, locks
    # The merges changed different columns of their incidents; their UPDATEs still share one statement.
    assert len(updates) == 1, updates
    with database.read_sessionmaker() as session:
        counts = dict(
            session.execute(
                select(Incident.number, func.count(Report.id))
                .join(Report, Report.incident_id == Incident.id)
                .group_by(Incident.number)
            ).all()
        )
    assert counts == {1: 2, 2: 2}


def _unprocessed(database) -> list[int]:
    with database.read_sessionmaker() as session:
        return list(
            session.scalars(
                select(InboundMessage.id)
                .where(InboundMessage.state == InboundState.RECEIVED)
                .order_by(InboundMessage.received_at)
            )
        )


def test_a_batch_finds_its_own_incidents_near_a_place_as_a_scan_of_all_of_them_would():
    """Matching looks up the batch's incidents by map cell instead of scanning them all per alert: for boxes
    small and wide, across cell edges, it finds every incident a scan finds in the box, only nearby ones."""
    rng = random.Random(7)
    batch = _Batch(None, T0, SETTINGS, [], {}, {}, None, {})  # type: ignore[arg-type]
    held = []
    for incident_id in range(1, 301):
        # Around North Kivu, some exactly on a cell's edge; every tenth without a place (never a candidate).
        lat = round(rng.uniform(-2.0, 0.5), 2) if incident_id % 7 else -1.25
        lon = round(rng.uniform(28.0, 30.0), 2) if incident_id % 11 else 29.0
        incident = Incident(id=incident_id, lat=None if incident_id % 10 == 0 else lat, lon=lon)
        batch.opened(incident)
        held.append(incident)
    for _ in range(400):
        lat, lon = rng.uniform(-2.2, 0.7), rng.uniform(27.8, 30.2)
        half = rng.choice([0.01, 0.09, 0.3, 1.5, 4.0])  # from a village's box to wider than the whole batch
        box = (lat - half, lat + half, lon - half, lon + half)
        found = batch.incidents_in(*box)
        inside = {
            i.id
            for i in held
            if i.lat is not None and box[0] <= i.lat <= box[1] and box[2] <= i.lon <= box[3]
        }
        assert inside <= found.keys()
        for incident in found.values():  # nothing further than the cells the box touches
            assert box[0] - CELL_DEGREES <= incident.lat <= box[1] + CELL_DEGREES
            assert box[2] - CELL_DEGREES <= incident.lon <= box[3] + CELL_DEGREES


def test_a_batch_keeps_its_reports_by_focal_point_and_by_incident():
    batch = _Batch(None, T0, SETTINGS, [], {}, {}, None, {})  # type: ignore[arg-type]
    batch.opened(Incident(id=1, lat=-1.1, lon=28.9))
    batch.opened(Incident(id=2, lat=-1.4, lon=28.8))
    first = Report(incident_id=1, focal_point_id=10)
    second = Report(incident_id=2, focal_point_id=10)
    third = Report(incident_id=1, focal_point_id=20)
    for report, text in ((first, "a"), (second, "b"), (third, "c")):
        batch.add_report(report, text)
    assert batch.reports_of(10) == [(first, "a"), (second, "b")]
    assert batch.reports_of(30) == []
    assert batch.reporters(1, besides=third) == {10}
    assert batch.reporters(1, besides=first) == {20}
    assert batch.reporters(2, besides=first) == {10}
