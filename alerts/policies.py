"""Escalation policies as data: the one validation of a policy's steps, used by the admin and the engine."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

STEP_DEFAULTS = {"after_minutes": 0, "tier": 0, "repeat_every_minutes": 0, "repeat_times": 0, "quorum": 1}
# Upper bounds keep one typo from planning thousands of pages.
STEP_LIMITS = {"after_minutes": 10080, "repeat_every_minutes": 10080, "repeat_times": 50, "quorum": 10}
MAX_STEPS = 20


class PolicyError(ValueError):
    """A policy that cannot be run as written; the message names the bad step."""


@dataclass(frozen=True)
class PolicyStep:
    after_minutes: int
    tier: int
    repeat_every_minutes: int = 0
    repeat_times: int = 0
    quorum: int = 1

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def parse_policy(steps: Any) -> tuple[PolicyStep, ...]:
    """Validate a policy's steps as stored (a JSON list of objects)."""
    if not isinstance(steps, list | tuple) or not steps:
        raise PolicyError('the steps must be a JSON list of at least one step, like [{"tier": 1}]')
    if len(steps) > MAX_STEPS:
        raise PolicyError(f"at most {MAX_STEPS} steps")
    return tuple(_step(index, raw) for index, raw in enumerate(steps, start=1))


def _step(index: int, raw: object) -> PolicyStep:
    if not isinstance(raw, dict):
        raise PolicyError(f'step {index}: must be an object like {{"after_minutes": 0, "tier": 1}}')
    unknown = sorted(set(raw) - set(STEP_DEFAULTS))
    if unknown:
        raise PolicyError(f"step {index}: unknown field(s) {', '.join(unknown)}")
    if "tier" not in raw:
        raise PolicyError(f"step {index}: tier is missing")
    values: dict[str, int] = {}
    for name, default in STEP_DEFAULTS.items():
        value = raw.get(name, default)
        if type(value) is not int:  # bool is an int subclass: true/false are not numbers of minutes
            raise PolicyError(f"step {index}: {name} must be a whole number")
        values[name] = value
    if values["tier"] not in (1, 2, 3):
        raise PolicyError(f"step {index}: tier must be 1, 2 or 3")
    for name, high in STEP_LIMITS.items():
        low = 1 if name == "quorum" else 0
        if not low <= values[name] <= high:
            raise PolicyError(f"step {index}: {name} must be between {low} and {high}")
    if values["repeat_times"] and values["repeat_every_minutes"] <= 0:
        raise PolicyError(f"step {index}: repeats need repeat_every_minutes above 0")
    return PolicyStep(**values)


def steps_as_data(steps: Iterable[PolicyStep]) -> list[dict[str, int]]:
    return [step.as_dict() for step in steps]
