"""Policy arithmetic, by table: when each page falls due."""

from datetime import timedelta

import pytest

from escalation.policy import PolicyError, deadline, on_duty, parse_policy, plan
from tests.conftest import T0

CRITICAL = [
    {"after_minutes": 0, "tier": 1, "repeat_every_minutes": 15, "repeat_times": 2},
    {"after_minutes": 0, "tier": 2},
    {"after_minutes": 10, "tier": 3},
]


def _minutes(planned):
    return [(p.tier, p.repeat_index, int((p.due_at - T0).total_seconds() // 60)) for p in planned]


def test_a_critical_policy_pages_tiers_1_and_2_at_once_and_tier_3_after_10_minutes():
    assert _minutes(plan(parse_policy(CRITICAL), T0)) == [
        (1, 0, 0),
        (2, 0, 0),
        (3, 0, 10),
        (1, 1, 15),
        (1, 2, 30),
    ]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([{"tier": 1}], [(1, 0, 0)]),
        ([{"tier": 2, "after_minutes": 5}], [(2, 0, 5)]),
        (
            [{"tier": 1, "repeat_every_minutes": 10, "repeat_times": 3}],
            [(1, 0, 0), (1, 1, 10), (1, 2, 20), (1, 3, 30)],
        ),
        ([{"tier": 1, "after_minutes": 30}, {"tier": 2, "after_minutes": 5}], [(2, 0, 5), (1, 0, 30)]),
    ],
)
def test_planned_due_times(steps, expected):
    assert _minutes(plan(parse_policy(steps), T0)) == expected


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "at least one step"),
        ([{"tier": 4}], "tier must be 1, 2 or 3"),
        ([{"after_minutes": 5}], "step 1"),
        ([{"tier": 1, "repeat_times": 2}], "repeat_every_minutes"),
        ([{"tier": 1, "quorum": 0}], "quorum"),
        ([{"tier": "one"}], "step 1"),
    ],
)
def test_broken_policies_are_refused_with_the_step_named(steps, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(steps)


def test_the_deadline_is_the_last_step_start():
    assert deadline(parse_policy(CRITICAL), T0) == T0 + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("periods", "offset_hours", "expected"),
    [
        ([], 0, True),
        ([(0, 8)], 3, True),
        ([(0, 8)], 8, False),
        ([(0, 8), (12, 20)], 13, True),
        ([(0, 8), (12, 20)], 10, False),
    ],
)
def test_on_duty_follows_the_rota(periods, offset_hours, expected):
    spans = [(T0 + timedelta(hours=a), T0 + timedelta(hours=b)) for a, b in periods]
    assert on_duty(spans, T0 + timedelta(hours=offset_hours)) is expected
