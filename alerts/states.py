"""Enumerated states stored in the database; check constraints are generated from these."""

from enum import StrEnum

from alerts.geolocation import LocatedBy  # noqa: F401 - stored in reports.located_by


class SenderKind(StrEnum):
    FOCAL_POINT = "focal_point"
    RESPONDER = "responder"
    UNKNOWN = "unknown"


class InboundState(StrEnum):
    RECEIVED = "received"  # stored, not yet processed
    PROCESSED = "processed"
    FAILED = "failed"  # processing raised; retried by a scheduled job
    RATE_LIMITED = "rate_limited"  # stored and marked, never escalated
    UNVERIFIED = "unverified"  # unknown sender, waiting for a coordinator


class FocalPointStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_ALARM = "false_alarm"
    MERGED = "merged"  # a coordinator merged it into another incident (merged_into_id)


class StepState(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    CANCELLED = "cancelled"


class OutboundState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


class UserRole(StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    RESPONDER = "responder"


def in_check(column: str, enum: type[StrEnum]) -> str:
    """SQL for a CHECK constraint that limits a column to an enum's values."""
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"
