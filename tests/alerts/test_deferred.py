"""Rows queued beside the unit of work (alerts/deferred.py) read and write as pending objects would: written
at the flush after the ORM's rows, seen by an autoflushing query, given their ids, gone with a rollback."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from alerts import incidents
from alerts.deferred import defer_insert, deferred_inserts, deferring
from alerts.models import Incident, IncidentEvent, OutboundMessage, Report
from tests import factories
from tests.alerts.test_batches import all_in_one_batch, build_network, store_script
from tests.conftest import T0


def _line(incident_id: int, detail: str) -> dict[str, object]:
    return {"incident_id": incident_id, "at": T0, "kind": "note", "actor": "t", "detail": detail, "data": {}}


def _incident(database) -> int:
    with database.session() as session:
        incident = factories.incident(session, None)
        session.commit()
        return incident.id


def _details(database, incident_id: int) -> list[str]:
    with database.session() as session:
        return list(
            session.scalars(
                select(IncidentEvent.detail)
                .where(IncidentEvent.incident_id == incident_id)
                .order_by(IncidentEvent.id)
            )
        )


def test_rows_queued_in_a_block_are_written_when_it_ends_with_their_ids_in_queue_order(database):
    incident_id = _incident(database)
    with database.session() as session:
        with deferred_inserts(session):
            assert deferring(session)
            rows = [defer_insert(session, IncidentEvent, _line(incident_id, d), with_id=True) for d in "abc"]
            assert [r.id for r in rows] == [None, None, None]  # not written yet
            assert rows[0].detail == "a"  # read like the object it stands for
        assert not deferring(session)
        ids = [r.id for r in rows]
        session.commit()
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    with database.session() as session:
        written = session.scalars(select(IncidentEvent).where(IncidentEvent.id.in_(ids))).all()
        assert sorted((e.id, e.detail) for e in written) == list(zip(ids, "abc", strict=True))


def test_an_autoflushing_query_in_the_block_sees_the_queued_rows_and_a_no_autoflush_one_does_not(database):
    incident_id = _incident(database)
    count = select(func.count()).select_from(IncidentEvent).where(IncidentEvent.incident_id == incident_id)
    with database.session() as session:
        with deferred_inserts(session):
            defer_insert(session, IncidentEvent, _line(incident_id, "first"))
            with session.no_autoflush:
                assert session.scalar(count) == 0
            assert session.scalar(count) == 1  # nothing else to flush: the rows are written all the same
            defer_insert(session, IncidentEvent, _line(incident_id, "second"))
            assert session.scalar(count) == 2
        session.commit()
    assert _details(database, incident_id) == ["first", "second"]


def test_a_queued_row_is_written_after_the_pending_object_it_references(database):
    with database.session() as session:
        number = incidents.next_number(session)
        last = session.scalar(select(func.max(Incident.id))) or 0
        incident_id = last + 1000  # known before the flush, as the pipeline's are on PostgreSQL
        with deferred_inserts(session):
            defer_insert(session, IncidentEvent, _line(incident_id, "opened"))  # queued before its parent
            session.add(
                Incident(
                    id=incident_id,
                    number=number,
                    category="attack",
                    severity="high",
                    first_report_at=T0,
                    last_report_at=T0,
                    created_at=T0,
                )
            )
        session.commit()
    assert _details(database, incident_id) == ["opened"]


def test_a_commit_inside_the_block_writes_the_queued_rows(database):
    incident_id = _incident(database)
    with database.session() as session, deferred_inserts(session):
        defer_insert(session, IncidentEvent, _line(incident_id, "committed"))
        session.commit()  # with no ORM change to flush
        assert _details(database, incident_id) == ["committed"]


def _fail_in_a_block(session, line: dict[str, object]) -> None:
    with deferred_inserts(session):
        defer_insert(session, IncidentEvent, line)
        raise RuntimeError("processing failed")


def test_an_exception_in_the_block_writes_nothing_and_a_rollback_drops_what_was_queued(database):
    incident_id = _incident(database)
    with database.session() as session:
        with pytest.raises(RuntimeError, match="processing failed"):
            _fail_in_a_block(session, _line(incident_id, "lost with the error"))
        session.rollback()
        assert not deferring(session)
        session.commit()
        with deferred_inserts(session):
            defer_insert(session, IncidentEvent, _line(incident_id, "rolled back"))
            session.rollback()
            defer_insert(session, IncidentEvent, _line(incident_id, "kept"))
        session.commit()
    assert _details(database, incident_id) == ["kept"]


def test_outside_a_block_nothing_is_queued(database):
    with database.session() as session:
        assert defer_insert(session, IncidentEvent, _line(1, "x")) is None
        assert not deferring(session)


def test_a_batch_writes_its_reports_timeline_lines_and_receipts_without_orm_objects(database):
    """The point of deferring: a batch's thousands of rows of these kinds never pass through the unit of work
    (they were a third of its CPU, under the lock that serialises batches), and are all written."""
    ids = store_script(database, build_network(database))
    added: list[str] = []

    def watch(session, _context, _instances):
        added.extend(getattr(o, "purpose", type(o).__name__) for o in session.new)

    event.listen(database.sessionmaker, "before_flush", watch)
    try:
        decisions = all_in_one_batch(database, ids)
    finally:
        event.remove(database.sessionmaker, "before_flush", watch)
    assert len(decisions) == len(ids)
    # An acknowledgement's notices to the other responders are rarer and still objects; replies never.
    assert not {"Report", "IncidentEvent", "receipt", "confirmation"} & set(added)
    assert "Incident" in added
    with database.session() as session:
        for kind in (Report, IncidentEvent, OutboundMessage):
            assert session.scalar(select(func.count()).select_from(kind)) > 0
