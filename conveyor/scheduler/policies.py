"""Scheduling policies as pure functions: overlap, catch-up (misfire), jitter, pause-on-failure.

Nothing here reads a clock: callers pass `now`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from conveyor.kernel.states import TERMINAL_RUN_STATES as TERMINAL_RUN_STATES

MAX_BUFFERED = 100
DEFAULT_CATCHUP_WINDOW_S = 60.0
MAX_CATCHUP_WINDOW_S = 366 * 86400.0
MAX_PAUSE_AFTER = 1000


class Overlap(StrEnum):
    """What a fire does while the schedule's previous run is still going."""

    SKIP = "SKIP"
    BUFFER_ONE = "BUFFER_ONE"
    BUFFER_ALL = "BUFFER_ALL"
    CANCEL_OTHER = "CANCEL_OTHER"
    ALLOW_ALL = "ALLOW_ALL"


class CatchupMode(StrEnum):
    """How fires missed but inside the catch-up window run."""

    COALESCE = "COALESCE"
    ALL = "ALL"


class Outcome(StrEnum):
    """What came of a fire (the action row's outcome)."""

    PENDING = "PENDING"
    BUFFERED = "BUFFERED"
    STARTED = "STARTED"
    SKIPPED = "SKIPPED"
    MISSED = "MISSED"
    COALESCED = "COALESCED"
    ERROR = "ERROR"


class Decision(StrEnum):
    """The overlap policy's answer for one fire."""

    START = "START"
    SKIP = "SKIP"
    BUFFER = "BUFFER"
    CANCEL_THEN_START = "CANCEL_THEN_START"


def buffer_capacity(policy: Overlap) -> int:
    """How many fires may wait behind a running run."""
    if policy == Overlap.BUFFER_ONE:
        return 1
    if policy == Overlap.BUFFER_ALL:
        return MAX_BUFFERED
    return 0


def decide_overlap(policy: Overlap, *, previous_running: bool, buffered: int) -> Decision:
    """Start, skip, buffer or cancel-then-start one fire.

    `buffered` counts fires already waiting; a new fire never jumps that queue.
    """
    if policy == Overlap.ALLOW_ALL:
        return Decision.START
    capacity = buffer_capacity(policy)
    if capacity and buffered:
        return Decision.BUFFER if buffered < capacity else Decision.SKIP
    if not previous_running:
        return Decision.START
    if policy == Overlap.CANCEL_OTHER:
        return Decision.CANCEL_THEN_START
    if capacity:
        return Decision.BUFFER
    return Decision.SKIP


def release_buffered(*, previous_running: bool, buffered: int) -> bool:
    """Whether the oldest waiting fire may start now."""
    return buffered > 0 and not previous_running


@dataclass(frozen=True)
class PlannedFire:
    """One due fire and what the catch-up policy makes of it."""

    nominal: datetime
    due: datetime
    outcome: Outcome
    message: str = ""


def plan_catchup(
    fires: Sequence[tuple[datetime, datetime]],
    *,
    now: datetime,
    window_s: float,
    mode: CatchupMode,
) -> list[PlannedFire]:
    """Classify due fires (nominal, due) oldest first: run (PENDING), MISSED or COALESCED.

    A fire whose due time is more than `window_s` before `now` is missed. Of those inside the
    window, COALESCE runs only the latest; ALL runs each of them.
    """
    window = timedelta(seconds=window_s)
    late = [f for f in fires if now - f[1] > window]
    timely = [f for f in fires if now - f[1] <= window]
    planned = [
        PlannedFire(
            nominal,
            due,
            Outcome.MISSED,
            f"not run: {(now - due).total_seconds():.1f} s late, "
            f"beyond the {window_s:g} s catch-up window",
        )
        for nominal, due in late
    ]
    for index, (nominal, due) in enumerate(timely):
        if mode == CatchupMode.COALESCE and index < len(timely) - 1:
            planned.append(
                PlannedFire(nominal, due, Outcome.COALESCED, "coalesced into a later fire")
            )
        else:
            planned.append(PlannedFire(nominal, due, Outcome.PENDING))
    return planned


def jitter_offset(schedule_id: str, nominal: datetime, jitter_s: float) -> timedelta:
    """A deterministic delay in [0, jitter_s) for one fire, the same in every scheduler."""
    if jitter_s <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule_id}|{nominal.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(microseconds=int(fraction * jitter_s * 1_000_000))


def consecutive_failures(run_states_newest_first: Iterable[str]) -> int:
    """Failed runs in a row counted from the newest finished one (CANCELLED is neutral)."""
    count = 0
    for state in run_states_newest_first:
        if state == "FAILED":
            count += 1
        elif state == "SUCCEEDED":
            break
    return count


def should_pause(failures: int, pause_after: int) -> bool:
    """Pause-on-failure: true once `failures` reaches a non-zero `pause_after`."""
    return pause_after > 0 and failures >= pause_after
