"""Statements of one shape for every batch: ids of new rows fetched before the flush (PostgreSQL), and
`among`/`not_among`, which are IN lists on SQLite and one array parameter on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select

from alerts.db import among, not_among
from alerts.models import InboundMessage, IncidentEvent
from tests import factories
from tests.alerts.test_batches import all_in_one_batch, build_network, store_script
from tests.conftest import ON_POSTGRESQL, T0, postgresql_only


def _statements(database):
    seen: list[tuple[str, bool]] = []

    def record(_connection, _cursor, statement, _parameters, _context, executemany):
        seen.append((" ".join(statement.split()), executemany))

    event.listen(database.engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(database.engine, "before_cursor_execute", record)


def _stored_incident(database) -> int:
    """An incident for the timeline lines below to belong to; its id."""
    with database.session() as session:
        incident = factories.incident(session, None)
        session.commit()
        return incident.id


def _events(incident_id: int, count: int) -> list[IncidentEvent]:
    return [
        IncidentEvent(incident_id=incident_id, at=T0, kind="note", actor="test", detail=f"line {i}", data={})
        for i in range(count)
    ]


def _insert_events(database, count: int) -> tuple[list[int], list[tuple[str, bool]]]:
    """Add `count` timeline lines in one flush; their ids, in the order added, and the statements sent."""
    incident_id = _stored_incident(database)
    seen, stop = _statements(database)
    try:
        with database.session() as session:
            events = _events(incident_id, count)
            session.add_all(events)
            session.commit()
            ids = [e.id for e in events]
    finally:
        stop()
    return ids, seen


@postgresql_only
def test_new_rows_get_their_ids_in_the_order_they_were_added_and_go_out_as_one_executemany(database):
    ids, seen = _insert_events(database, 5)
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    inserts = [(s, many) for s, many in seen if s.startswith("INSERT INTO incident_events")]
    assert len(inserts) == 1
    statement, many = inserts[0]
    assert many
    assert "RETURNING" not in statement
    with database.session() as session:
        stored = session.scalars(
            select(IncidentEvent.detail).where(IncidentEvent.id.in_(ids)).order_by(IncidentEvent.id)
        ).all()
    assert stored == [f"line {i}" for i in range(5)]  # the ids follow the order the rows were added


@postgresql_only
def test_one_new_row_still_learns_its_id_from_the_insert(database):
    (event_id,), seen = _insert_events(database, 1)
    assert event_id is not None
    assert not any("nextval" in s for s, _many in seen)  # no extra round trip for a single row


def test_ids_of_new_rows_are_unique_across_sessions_adding_at_once(database):
    incident_id = _stored_incident(database)
    first, second = database.sessionmaker(), database.sessionmaker()
    try:
        a, b = _events(incident_id, 3), _events(incident_id, 3)
        first.add_all(a)
        first.flush()
        if not ON_POSTGRESQL:  # SQLite has one writer at a time
            first.commit()
        second.add_all(b)
        second.flush()
        first.commit()
        second.commit()
        assert len({e.id for e in a + b}) == 6
    finally:
        first.close()
        second.close()


def _messages(session, count: int) -> list[int]:
    rows = [
        InboundMessage(
            provider="twilio",
            provider_message_id=f"SM{i}",
            sender=f"+24381000000{i}",
            recipient="+15005550006",
            text="x",
            received_at=T0 + timedelta(seconds=i),
            raw={},
        )
        for i in range(count)
    ]
    session.add_all(rows)
    session.commit()
    return [m.id for m in rows]


def test_among_and_not_among_select_what_in_and_not_in_would(database):
    with database.session() as session:
        ids = _messages(session, 4)
        senders = session.scalars(select(InboundMessage.sender).order_by(InboundMessage.id)).all()

        def chosen(condition) -> list[int]:
            return session.scalars(
                select(InboundMessage.id).where(condition).order_by(InboundMessage.id)
            ).all()

        assert chosen(among(session, InboundMessage.id, ids[1:3])) == ids[1:3]
        assert chosen(among(session, InboundMessage.sender, {senders[0], senders[3]})) == [ids[0], ids[3]]
        assert chosen(not_among(session, InboundMessage.id, ids[1:3])) == [ids[0], ids[3]]
        assert chosen(among(session, InboundMessage.id, [])) == []
        # A value longer than the column is compared whole, not cut to the column's length first.
        full = InboundMessage.sender.type.length
        widest = session.get(InboundMessage, ids[0])
        widest.sender = "+" + "1" * (full - 1)
        session.commit()
        assert chosen(among(session, InboundMessage.sender, [widest.sender])) == [ids[0]]
        assert chosen(among(session, InboundMessage.sender, [widest.sender + "9"])) == []
        assert chosen(not_among(session, InboundMessage.id, [])) == ids


@postgresql_only
def test_among_is_one_statement_whatever_the_number_of_values(database):
    seen, stop = _statements(database)
    try:
        with database.session() as session:
            for count in (1, 7, 120):
                session.scalars(
                    select(InboundMessage.id).where(among(session, InboundMessage.id, range(count)))
                ).all()
    finally:
        stop()
    selects = {s for s, _many in seen if s.startswith("SELECT inbound_messages.id")}
    assert len(selects) == 1
    assert "= ANY" in selects.pop()


def test_a_batch_marks_its_messages_processed_with_one_update_per_state_and_sender_kind(database):
    """Not one row of an executemany per message: the batch's messages share a few (state, sender kind)."""
    ids = store_script(database, build_network(database))
    seen, stop = _statements(database)
    try:
        all_in_one_batch(database, ids)
    finally:
        stop()
    updates = [s for s, _many in seen if s.startswith("UPDATE inbound_messages")]
    with database.session() as session:
        rows = session.execute(
            select(InboundMessage.state, InboundMessage.sender_kind, InboundMessage.processed_at).where(
                InboundMessage.id.in_(ids)
            )
        ).all()
    kinds = {(state, kind) for state, kind, _at in rows}
    assert len(kinds) >= 4  # processed, unverified and rate limited; focal points, responders, strangers
    assert len(updates) == len(kinds)
    assert not any(many for s, many in seen if s.startswith("UPDATE inbound_messages"))
    assert all(at is not None for _s, _k, at in rows)
