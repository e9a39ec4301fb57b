"""SQLAlchemy 2.x models: one class for each word of the glossary in DESIGN.md."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from alerts.parsing import Category, Severity
from alerts.states import (
    FocalPointStatus,
    InboundState,
    IncidentStatus,
    LocatedBy,
    OutboundState,
    SenderKind,
    StepState,
    UserRole,
    in_check,
)

# A missed-call "beep" is category "unknown": something is wrong, nobody has said what yet.
CATEGORIES = (*(c.value for c in Category), "unknown")
SEVERITIES = tuple(s.value for s in Severity)


def _values_check(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (only for defaults; services take `now` as a parameter)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone, so it is restored on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware UTC time is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute as is
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Zone(Base):
    """A base's area of responsibility: a centre and radius, or a polygon."""

    __tablename__ = "zones"
    __table_args__ = (
        CheckConstraint("radius_km > 0", name="radius_positive"),
        CheckConstraint("lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180", name="centre_on_earth"),
        CheckConstraint("dedup_distance_km > 0", name="dedup_distance_positive"),
        CheckConstraint("dedup_window_minutes > 0", name="dedup_window_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    base_name: Mapped[str] = mapped_column(String(120), default="")
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    radius_km: Mapped[float] = mapped_column(Float)
    # [[lat, lon], ...] when an operator imported a polygon; the circle is used otherwise.
    polygon: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    dedup_distance_km: Mapped[float] = mapped_column(Float, default=10.0)
    dedup_window_minutes: Mapped[int] = mapped_column(Integer, default=360)
    line_check_days: Mapped[int | None] = mapped_column(Integer)  # None: the deployment's LINE_CHECK_DAYS
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Place(Base):
    """One gazetteer entry; the same name may exist in several places."""

    __tablename__ = "places"
    __table_args__ = (
        UniqueConstraint("name", "lat", "lon", name="name_position"),
        CheckConstraint("lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180", name="on_earth"),
        Index("ix_places_lat_lon", "lat", "lon"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    admin1: Mapped[str] = mapped_column(String(120), default="")
    admin2: Mapped[str] = mapped_column(String(120), default="")
    alt_names: Mapped[str] = mapped_column(Text, default="")  # separated by "|", as in the import format
    source: Mapped[str] = mapped_column(String(60), default="import")


class FocalPoint(Base):
    """A registered sender: a community alert network member with a phone and a home village."""

    __tablename__ = "focal_points"
    __table_args__ = (
        CheckConstraint(in_check("status", FocalPointStatus), name="status"),
        CheckConstraint("phone LIKE '+%'", name="phone_e164"),
        CheckConstraint(
            "home_lat IS NULL OR (home_lat BETWEEN -90 AND 90 AND home_lon BETWEEN -180 AND 180)",
            name="home_on_earth",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    language: Mapped[str] = mapped_column(String(8), default="fr")
    home_lat: Mapped[float | None] = mapped_column(Float)
    home_lon: Mapped[float | None] = mapped_column(Float)
    home_place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="SET NULL"))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=FocalPointStatus.ACTIVE)
    last_seen_at: Mapped[datetime | None]
    line_check_sent_at: Mapped[datetime | None]  # the last TEST request we sent (one per period)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    zone: Mapped[Zone | None] = relationship()
    home_place: Mapped[Place | None] = relationship()


responder_zones = Table(
    "responder_zones",
    Base.metadata,
    Column("responder_id", ForeignKey("responders.id", ondelete="CASCADE"), primary_key=True),
    Column("zone_id", ForeignKey("zones.id", ondelete="CASCADE"), primary_key=True),
)


class Responder(Base):
    """A registered recipient of escalations: tier 1 duty officer, 2 team lead, 3 coordinator."""

    __tablename__ = "responders"
    __table_args__ = (
        CheckConstraint("tier BETWEEN 1 AND 3", name="tier"),
        CheckConstraint("phone LIKE '+%'", name="phone_e164"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    tier: Mapped[int] = mapped_column(Integer)
    language: Mapped[str] = mapped_column(String(8), default="fr")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    zones: Mapped[list[Zone]] = relationship(secondary=responder_zones)
    duty_periods: Mapped[list[DutyPeriod]] = relationship(
        back_populates="responder", cascade="all, delete-orphan"
    )


class DutyPeriod(Base):
    """One period of the on-call rota; a responder with no periods is always on duty."""

    __tablename__ = "duty_periods"
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="ends_after_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    responder_id: Mapped[int] = mapped_column(ForeignKey("responders.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]

    responder: Mapped[Responder] = relationship(back_populates="duty_periods")


class EscalationPolicy(Base):
    """Who is told about an incident, and when: ordered steps per zone (or default) and severity."""

    __tablename__ = "escalation_policies"
    __table_args__ = (
        CheckConstraint(_values_check("severity", SEVERITIES), name="severity"),
        UniqueConstraint("zone_id", "severity", name="zone_severity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id", ondelete="CASCADE"))
    severity: Mapped[str] = mapped_column(String(16))
    # [{"after_minutes": 0, "tier": 1, "repeat_every_minutes": 15, "repeat_times": 2, "quorum": 1}, ...]
    steps: Mapped[list[Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InboundMessage(Base):
    """One SMS (or missed call) as the provider delivered it, stored before anything else is done."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id", name="provider_message"),
        CheckConstraint(in_check("state", InboundState), name="state"),
        CheckConstraint(in_check("sender_kind", SenderKind), name="sender_kind"),
        Index("ix_inbound_messages_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_inbound_messages_sender_received_at", "sender", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_message_id: Mapped[str] = mapped_column(String(80))
    channel: Mapped[str] = mapped_column(String(8), default="sms")  # sms or voice
    sender: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(40), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime]
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sender_kind: Mapped[str] = mapped_column(String(16), default=SenderKind.UNKNOWN)
    state: Mapped[str] = mapped_column(String(16), default=InboundState.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]


class Incident(Base):
    """The event itself: one or more reports merged by deduplication, with a status and a timeline."""

    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint(in_check("status", IncidentStatus), name="status"),
        CheckConstraint(_values_check("category", CATEGORIES), name="category"),
        CheckConstraint(_values_check("severity", SEVERITIES), name="severity"),
        CheckConstraint("confidence BETWEEN 0 AND 1", name="confidence"),
        # Matching's bounded query: the time window first, then the bounding box, all inside one index
        # (a separate lat/lon index tempts SQLite's planner into scanning a latitude band of all history).
        Index("ix_incidents_status_last_report_at", "status", "last_report_at", "lat", "lon"),
        # The engine's two per-wake queries read only the few rows they want, however long the history.
        Index(
            "ix_incidents_unplanned",
            "id",
            postgresql_where=text("policy_snapshot IS NULL"),
            sqlite_where=text("policy_snapshot IS NULL"),
        ),
        Index(
            "ix_incidents_update_pending",
            "id",
            postgresql_where=text("update_pending = true"),
            sqlite_where=text("update_pending = 1"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)  # what responders type in "OK 123"
    category: Mapped[str] = mapped_column(String(32))
    secondary_categories: Mapped[list[Any]] = mapped_column(JSON, default=list)
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=IncidentStatus.OPEN)
    count: Mapped[int | None] = mapped_column(Integer)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="SET NULL"))
    place_name: Mapped[str] = mapped_column(String(200), default="")
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id", ondelete="SET NULL"), index=True)
    confidence: Mapped[float] = mapped_column(Float, default=0.5)
    first_report_at: Mapped[datetime]
    last_report_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None]
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="SET NULL"))
    # The policy in force, copied when escalation starts, so later edits do not change a running escalation.
    policy_snapshot: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    escalation_generation: Mapped[int] = mapped_column(Integer, default=0)
    # A corroboration since responders were last told; sent at most once per throttle period.
    update_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    last_update_at: Mapped[datetime | None]
    # A missed call ("beep") waits for a responder to call back and record what was learned.
    callback_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    zone: Mapped[Zone | None] = relationship()
    place: Mapped[Place | None] = relationship()
    acknowledged_by: Mapped[Responder | None] = relationship()
    reports: Mapped[list[Report]] = relationship(back_populates="incident", order_by="Report.received_at")
    events: Mapped[list[IncidentEvent]] = relationship(
        back_populates="incident", order_by="IncidentEvent.id", viewonly=True
    )


class Report(Base):
    """An inbound message understood as an alert: category, severity, place, count, confidence."""

    __tablename__ = "reports"
    __table_args__ = (
        CheckConstraint(_values_check("category", CATEGORIES), name="category"),
        CheckConstraint(_values_check("severity", SEVERITIES), name="severity"),
        CheckConstraint(in_check("located_by", LocatedBy), name="located_by"),
        CheckConstraint("confidence BETWEEN 0 AND 1", name="confidence"),
        Index("ix_reports_focal_point_id_received_at", "focal_point_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    inbound_message_id: Mapped[int] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), unique=True
    )
    focal_point_id: Mapped[int | None] = mapped_column(ForeignKey("focal_points.id", ondelete="SET NULL"))
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    category: Mapped[str] = mapped_column(String(32))
    secondary_categories: Mapped[list[Any]] = mapped_column(JSON, default=list)
    severity: Mapped[str] = mapped_column(String(16))
    count: Mapped[int | None] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(8))
    place_text: Mapped[str] = mapped_column(String(200), default="")
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="SET NULL"))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    located_by: Mapped[str] = mapped_column(String(16), default=LocatedBy.NONE)
    location_note: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[float] = mapped_column(Float, default=0.5)
    is_repeat: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime]

    inbound_message: Mapped[InboundMessage] = relationship()
    focal_point: Mapped[FocalPoint | None] = relationship()
    incident: Mapped[Incident | None] = relationship(back_populates="reports")
    place: Mapped[Place | None] = relationship()


class IncidentEvent(Base):
    """One line of an incident's timeline: what was decided, by whom, and why. Append-only."""

    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident_id_at", "incident_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))  # opened, merged, located, paged, acknowledged, note...
    actor: Mapped[str] = mapped_column(String(120), default="system")
    detail: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    incident: Mapped[Incident] = relationship(back_populates="events")


@event.listens_for(IncidentEvent, "before_update")
@event.listens_for(IncidentEvent, "before_delete")
def _timeline_is_append_only(mapper: Any, connection: Any, target: IncidentEvent) -> None:
    raise ValueError("the incident timeline is append-only")


class EscalationStep(Base):
    """Due work: notify a tier about an incident at a due time, claimed by exactly one worker."""

    __tablename__ = "escalation_steps"
    __table_args__ = (
        CheckConstraint(in_check("state", StepState), name="state"),
        CheckConstraint("tier BETWEEN 1 AND 3", name="tier"),
        CheckConstraint("quorum >= 1", name="quorum"),
        UniqueConstraint("incident_id", "generation", "position", "repeat_index", name="step_identity"),
        Index("ix_escalation_steps_state_due_at", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)  # bumped when an upgrade restarts escalation
    position: Mapped[int] = mapped_column(Integer)  # index of the step in the policy snapshot
    repeat_index: Mapped[int] = mapped_column(Integer, default=0)
    tier: Mapped[int] = mapped_column(Integer)
    quorum: Mapped[int] = mapped_column(Integer, default=1)
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default=StepState.PENDING)
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    claimed_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(Text, default="")

    incident: Mapped[Incident] = relationship()


class OutboundMessage(Base):
    """An SMS in the outbox, written in the transaction of the decision that caused it, sent later."""

    __tablename__ = "outbound_messages"
    __table_args__ = (
        CheckConstraint(in_check("state", OutboundState), name="state"),
        CheckConstraint("recipient LIKE '+%'", name="recipient_e164"),
        UniqueConstraint("idempotency_key", name="idempotency_key"),
        Index("ix_outbound_messages_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbound_messages_provider_message_id", "provider", "provider_message_id"),
        Index("ix_outbound_messages_recipient_created_at", "recipient", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(24), default="page")  # page, receipt, confirmation, update...
    state: Mapped[str] = mapped_column(String(16), default=OutboundState.QUEUED)
    idempotency_key: Mapped[str] = mapped_column(String(120))
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    responder_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id", ondelete="SET NULL"))
    focal_point_id: Mapped[int | None] = mapped_column(ForeignKey("focal_points.id", ondelete="SET NULL"))
    escalation_step_id: Mapped[int | None] = mapped_column(
        ForeignKey("escalation_steps.id", ondelete="SET NULL")
    )
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(80))
    provider_status: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    segments: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]

    incident: Mapped[Incident | None] = relationship()


class User(Base):
    """A login for the alert log pages: admin, coordinator or responder."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(in_check("role", UserRole), name="role"),
        CheckConstraint("failed_logins >= 0", name="failed_logins"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    responder_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id", ondelete="SET NULL"))
    language: Mapped[str] = mapped_column(String(8), default="fr")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    # SHA-256 hex of the user's API token (`flask users token`); the token itself is shown once, never stored.
    api_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Counter(Base):
    """Named counters incremented atomically in the database (incident numbers)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)
