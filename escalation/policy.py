"""Escalation policy arithmetic: a policy's steps turned into due times. Pure: no Flask, no session."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


class PolicyError(ValueError):
    """A policy that cannot be run as written."""


@dataclass(frozen=True)
class PolicyStep:
    after_minutes: int
    tier: int
    repeat_every_minutes: int = 0
    repeat_times: int = 0
    quorum: int = 1

    def as_dict(self) -> dict[str, int]:
        return {
            "after_minutes": self.after_minutes,
            "tier": self.tier,
            "repeat_every_minutes": self.repeat_every_minutes,
            "repeat_times": self.repeat_times,
            "quorum": self.quorum,
        }


@dataclass(frozen=True)
class PlannedStep:
    position: int
    repeat_index: int
    tier: int
    quorum: int
    due_at: datetime


def parse_policy(steps: Iterable[Mapping[str, Any]]) -> tuple[PolicyStep, ...]:
    """Validate a policy's steps as stored (JSON); raise PolicyError naming the bad step."""
    parsed = []
    for index, raw in enumerate(steps, start=1):
        try:
            step = PolicyStep(
                after_minutes=int(raw.get("after_minutes", 0)),
                tier=int(raw["tier"]),
                repeat_every_minutes=int(raw.get("repeat_every_minutes", 0)),
                repeat_times=int(raw.get("repeat_times", 0)),
                quorum=int(raw.get("quorum", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyError(f"step {index}: {exc!r}") from None
        if step.tier not in (1, 2, 3):
            raise PolicyError(f"step {index}: tier must be 1, 2 or 3")
        if step.after_minutes < 0 or step.repeat_times < 0 or step.quorum < 1:
            raise PolicyError(f"step {index}: negative delay or repeat, or quorum below 1")
        if step.repeat_times and step.repeat_every_minutes <= 0:
            raise PolicyError(f"step {index}: repeats need repeat_every_minutes above 0")
        parsed.append(step)
    if not parsed:
        raise PolicyError("a policy needs at least one step")
    return tuple(parsed)


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
