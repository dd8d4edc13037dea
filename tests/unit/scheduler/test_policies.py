"""Overlap, catch-up, jitter and pause-on-failure policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.scheduler.policies import (
    MAX_BUFFERED,
    CatchupMode,
    Decision,
    Outcome,
    Overlap,
    consecutive_failures,
    decide_overlap,
    jitter_offset,
    plan_catchup,
    release_buffered,
    should_pause,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)

OVERLAP_CASES = [
    # policy, previous running, buffered, decision
    (Overlap.SKIP, False, 0, Decision.START),
    (Overlap.SKIP, True, 0, Decision.SKIP),
    (Overlap.BUFFER_ONE, False, 0, Decision.START),
    (Overlap.BUFFER_ONE, True, 0, Decision.BUFFER),
    (Overlap.BUFFER_ONE, True, 1, Decision.SKIP),
    (Overlap.BUFFER_ONE, False, 1, Decision.SKIP),  # never jumps the waiting fire
    (Overlap.BUFFER_ALL, True, 0, Decision.BUFFER),
    (Overlap.BUFFER_ALL, True, 5, Decision.BUFFER),
    (Overlap.BUFFER_ALL, False, 5, Decision.BUFFER),
    (Overlap.BUFFER_ALL, True, MAX_BUFFERED, Decision.SKIP),
    (Overlap.CANCEL_OTHER, False, 0, Decision.START),
    (Overlap.CANCEL_OTHER, True, 0, Decision.CANCEL_THEN_START),
    (Overlap.ALLOW_ALL, True, 0, Decision.START),
    (Overlap.ALLOW_ALL, False, 0, Decision.START),
]


@pytest.mark.parametrize(("policy", "running", "buffered", "expected"), OVERLAP_CASES)
def test_overlap_policy(policy: Overlap, running: bool, buffered: int, expected: Decision) -> None:
    assert decide_overlap(policy, previous_running=running, buffered=buffered) == expected


def test_buffer_releases_only_when_previous_run_ended() -> None:
    assert release_buffered(previous_running=False, buffered=1)
    assert not release_buffered(previous_running=True, buffered=1)
    assert not release_buffered(previous_running=False, buffered=0)


def fires(*seconds_ago: int, now: datetime) -> list[tuple[datetime, datetime]]:
    return [(now - timedelta(seconds=s), now - timedelta(seconds=s)) for s in seconds_ago]


def test_catchup_coalesce_runs_only_the_latest_fire_in_window() -> None:
    now = T0
    planned = plan_catchup(
        fires(300, 50, 30, 1, now=now), now=now, window_s=60, mode=CatchupMode.COALESCE
    )
    assert [p.outcome for p in planned] == [
        Outcome.MISSED,
        Outcome.COALESCED,
        Outcome.COALESCED,
        Outcome.PENDING,
    ]
    assert "catch-up window" in planned[0].message


def test_catchup_all_runs_every_fire_in_window() -> None:
    now = T0
    planned = plan_catchup(
        fires(300, 50, 30, 1, now=now), now=now, window_s=60, mode=CatchupMode.ALL
    )
    assert [p.outcome for p in planned] == [
        Outcome.MISSED,
        Outcome.PENDING,
        Outcome.PENDING,
        Outcome.PENDING,
    ]


def test_catchup_window_edge_is_inclusive_and_on_time_fire_runs() -> None:
    now = T0
    planned = plan_catchup(fires(60, 0, now=now), now=now, window_s=60, mode=CatchupMode.ALL)
    assert [p.outcome for p in planned] == [Outcome.PENDING, Outcome.PENDING]
    planned = plan_catchup(fires(61, now=now), now=now, window_s=60, mode=CatchupMode.ALL)
    assert [p.outcome for p in planned] == [Outcome.MISSED]


def test_jitter_is_deterministic_and_bounded() -> None:
    offsets = [jitter_offset("s1", T0 + timedelta(minutes=i), 30) for i in range(200)]
    assert all(timedelta(0) <= o < timedelta(seconds=30) for o in offsets)
    assert len(set(offsets)) > 150
    assert jitter_offset("s1", T0, 30) == jitter_offset("s1", T0, 30)
    assert jitter_offset("s1", T0, 0) == timedelta(0)


def test_pause_after_consecutive_failures() -> None:
    assert consecutive_failures(["FAILED", "FAILED", "SUCCEEDED", "FAILED"]) == 2
    assert consecutive_failures(["FAILED", "CANCELLED", "FAILED"]) == 2
    assert consecutive_failures(["SUCCEEDED", "FAILED"]) == 0
    assert should_pause(3, 3)
    assert not should_pause(2, 3)
    assert not should_pause(50, 0)
