"""Escalation policy arithmetic: a policy's steps turned into due times. Pure: no Flask, no session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.policies import PolicyError, PolicyStep, parse_policy

__all__ = ["PlannedStep", "PolicyError", "PolicyStep", "deadline", "on_duty", "parse_policy", "plan"]


@dataclass(frozen=True)
class PlannedStep:
    position: int
    repeat_index: int
    tier: int
    quorum: int
    due_at: datetime


def plan(policy: Sequence[PolicyStep], start: datetime) -> list[PlannedStep]:
    """Every page the policy would send if nobody answered, in due order."""
    planned = []
    for position, step in enumerate(policy):
        first = start + timedelta(minutes=step.after_minutes)
        for repeat in range(step.repeat_times + 1):
            due = first + timedelta(minutes=step.repeat_every_minutes * repeat)
            planned.append(PlannedStep(position, repeat, step.tier, step.quorum, due))
    return sorted(planned, key=lambda p: (p.due_at, p.position, p.repeat_index))


def deadline(policy: Sequence[PolicyStep], start: datetime) -> datetime:
    """When the policy expected an acknowledgement at the latest: the first page of the last step."""
    return start + timedelta(minutes=max(step.after_minutes for step in policy))


def on_duty(periods: Sequence[tuple[datetime, datetime]], now: datetime) -> bool:
    """A responder with no rota is always on duty; otherwise one period must cover now."""
    return not periods or any(start <= now < end for start, end in periods)
