"""The firing loop: claim due fires, apply the overlap policy, start runs, watch their outcome.

Two loops share one `Firing`: `fire_forever` sleeps until the earliest due time and fires;
`maintain_forever` takes over fires whose scheduler died (expired leases), releases buffered
fires when the previous run ended, and records each started run's state and lag (nominal fire
time -> first step start), pausing a schedule after its configured number of failed runs.
Both take a clock, so tests drive them with `fire_once` / `maintain_once` and no sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from conveyor.kernel.db import Database
from conveyor.kernel.errors import (
    ConveyorError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from conveyor.kernel.ids import utcnow
from conveyor.scheduler import store
from conveyor.scheduler.policies import (
    TERMINAL_RUN_STATES,
    Decision,
    Outcome,
    Overlap,
    decide_overlap,
    release_buffered,
)

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
LEASE_S = 10.0
CLAIM_BATCH = 100
OBSERVE_BATCH = 200
MAX_IDLE_S = 1.0
MAINTAIN_EVERY_S = 0.5
GIVE_UP_AFTER = timedelta(minutes=10)
DEFER_S = 0.02


@dataclass(frozen=True)
class RunInfo:
    """What the scheduler needs to know about a run."""

    run_id: str
    state: str
    first_step_at: datetime | None = None


class ExecutorPort(Protocol):
    """The executor operations the scheduler calls (StartRun, GetRun, CancelRun).

    start_run raises NotFound / InvalidArgument / FailedPrecondition when the executor refuses
    the run for good, and any other exception for a failure worth retrying.
    """

    async def start_run(
        self, *, job_id: str, parameters: dict[str, Any], request_id: str
    ) -> RunInfo: ...

    async def get_run(self, run_id: str) -> RunInfo | None: ...

    async def cancel_run(self, run_id: str, reason: str) -> None: ...


@dataclass(frozen=True)
class Settled:
    """What came of carrying out one fire."""

    action_id: int
    outcome: Outcome
    run_id: str | None = None
    message: str = ""


class Firing:
    """Fires due schedules through an executor; safe to run in several processes at once."""

    def __init__(
        self,
        *,
        db: Database,
        executor: ExecutorPort,
        clock: Clock = utcnow,
        lease_s: float = LEASE_S,
        max_idle_s: float = MAX_IDLE_S,
    ) -> None:
        self._db = db
        self._executor = executor
        self._clock = clock
        self._lease_s = lease_s
        self._max_idle_s = max_idle_s
        self._wake = asyncio.Event()
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

    def wake(self) -> None:
        """Re-read the next due time now (a schedule was created or changed)."""
        self._wake.set()

    # ---- the loops -------------------------------------------------------------------------

    async def fire_forever(self) -> None:
        """Sleep until the earliest due fire, fire, repeat."""
        while True:
            try:
                delay = await self.fire_once()
            except Exception:
                log.exception("firing pass failed")
                delay = self._max_idle_s
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def maintain_forever(self) -> None:
        """Expired leases, buffered fires and run observation, every half second."""
        while True:
            await asyncio.sleep(MAINTAIN_EVERY_S)
            try:
                await self.maintain_once()
            except Exception:
                log.exception("scheduler maintenance pass failed")

    async def fire_once(self) -> float:
        """Claim and carry out every due fire; returns seconds until the next one is due."""
        now = self._clock()

        def claim() -> store.Claimed:
            with self._db.transaction() as session:
                return store.claim_due(
                    session,
                    now=now,
                    lease_s=self._lease_s,
                    limit=CLAIM_BATCH,
                    taken_by=self.identity,
                )

        claimed = await asyncio.to_thread(claim)
        await self.carry_out_all(claimed.fires)
        if claimed.deferred:
            return DEFER_S  # an earlier fire of a due schedule is still being carried out

        def upcoming() -> datetime | None:
            with self._db.transaction() as session:
                return store.next_due(session)

        nxt = await asyncio.to_thread(upcoming)
        if nxt is None:
            return self._max_idle_s
        return max(0.0, min(self._max_idle_s, (nxt - self._clock()).total_seconds()))

    async def maintain_once(self) -> None:
        """One pass of lease takeover, buffer release and run observation."""
        await self.take_over_expired()
        await self.release_buffers()
        await self.observe_runs()

    # ---- carrying out fires ----------------------------------------------------------------

    async def carry_out_all(self, fires: list[store.Fire]) -> list[Settled]:
        """Fires of one schedule in order, different schedules concurrently."""

        async def in_order(group: list[store.Fire]) -> list[Settled]:
            return [await self.carry_out(f) for f in group]

        groups = [
            list(g)
            for _, g in itertools.groupby(
                sorted(fires, key=lambda f: (f.schedule_id, f.nominal)),
                key=lambda f: f.schedule_id,
            )
        ]
        results = await asyncio.gather(*(in_order(g) for g in groups))
        return [s for group in results for s in group]

    async def _overlap_decision(self, fire: store.Fire) -> tuple[Decision, str | None]:
        if fire.released or fire.overlap == Overlap.ALLOW_ALL:
            return Decision.START, None

        def view() -> tuple[str | None, int]:
            with self._db.transaction() as session:
                row = store.get_schedule(session, fire.schedule_id)
                return row.last_run_id, store.buffered_counts(session, fire.schedule_id)

        last_run_id, buffered = await asyncio.to_thread(view)
        running = False
        if last_run_id:
            info = await self._executor.get_run(last_run_id)
            running = info is not None and info.state not in TERMINAL_RUN_STATES
        decision = decide_overlap(fire.overlap, previous_running=running, buffered=buffered)
        return decision, last_run_id

    async def carry_out(self, fire: store.Fire) -> Settled:
        """Apply the overlap policy to one leased fire and start its run if it should."""
        try:
            decision, other = await self._overlap_decision(fire)
        except NotFound:
            return Settled(fire.action_id, Outcome.ERROR, message="schedule deleted")
        if decision == Decision.SKIP:
            return await self._settle(
                fire, Outcome.SKIPPED, message=f"previous run {other} was still running"
            )
        if decision == Decision.BUFFER:
            return await self._settle(
                fire, Outcome.BUFFERED, message=f"waiting for run {other} to end"
            )
        if decision == Decision.CANCEL_THEN_START and other:
            await self._executor.cancel_run(
                other, f"cancelled by schedule {fire.schedule_id} (overlap policy CANCEL_OTHER)"
            )
        try:
            run = await self._executor.start_run(
                job_id=fire.job_id, parameters=fire.parameters, request_id=fire.request_id
            )
        except (NotFound, InvalidArgument, FailedPrecondition) as exc:
            return await self._settle(fire, Outcome.ERROR, message=str(exc))
        except Exception as exc:
            # Left PENDING: when the lease runs out, this or another scheduler tries again
            # with the same request_id, so a run that was in fact created is not doubled.
            log.warning(
                "starting a scheduled run failed; will retry",
                schedule_id=fire.schedule_id,
                error=str(exc) if isinstance(exc, ConveyorError) else repr(exc),
            )
            return Settled(fire.action_id, Outcome.PENDING, message=str(exc))
        log.info(
            "schedule fired",
            schedule_id=fire.schedule_id,
            run_id=run.run_id,
            nominal=fire.nominal.isoformat(),
        )
        return await self._settle(fire, Outcome.STARTED, run_id=run.run_id, state=run.state)

    async def _settle(
        self,
        fire: store.Fire,
        outcome: Outcome,
        *,
        message: str = "",
        run_id: str | None = None,
        state: str | None = None,
    ) -> Settled:
        def work() -> None:
            with self._db.transaction() as session:
                store.settle(
                    session,
                    fire.action_id,
                    outcome=outcome,
                    message=message,
                    run_id=run_id,
                    run_state=state,
                    taken_by=self.identity,
                )

        await asyncio.to_thread(work)
        return Settled(fire.action_id, outcome, run_id, message)

    # ---- maintenance -----------------------------------------------------------------------

    async def take_over_expired(self) -> list[Settled]:
        """Carry out fires whose scheduler died before settling them."""
        now = self._clock()

        def claim() -> list[store.Fire]:
            with self._db.transaction() as session:
                return store.claim_expired(
                    session,
                    now=now,
                    lease_s=self._lease_s,
                    limit=CLAIM_BATCH,
                    give_up_before=now - GIVE_UP_AFTER,
                )

        fires = await asyncio.to_thread(claim)
        if fires:
            log.warning("taking over fires of a stopped scheduler", count=len(fires))
        return await self.carry_out_all(fires)

    async def release_buffers(self) -> list[Settled]:
        """Start the oldest buffered fire of each schedule whose previous run has ended."""
        now = self._clock()

        def waiting() -> list[tuple[str, str | None]]:
            with self._db.transaction() as session:
                return store.schedules_with_buffer(session, limit=CLAIM_BATCH)

        settled: list[Settled] = []
        for schedule_id, last_run_id in await asyncio.to_thread(waiting):
            running = False
            if last_run_id:
                info = await self._executor.get_run(last_run_id)
                running = info is not None and info.state not in TERMINAL_RUN_STATES
            if not release_buffered(previous_running=running, buffered=1):
                continue

            def release(sid: str = schedule_id) -> store.Fire | None:
                with self._db.transaction() as session:
                    return store.release_oldest_buffered(
                        session, sid, now=now, lease_s=self._lease_s
                    )

            fire = await asyncio.to_thread(release)
            if fire is not None:
                settled.append(await self.carry_out(fire))
        return settled

    async def observe_runs(self) -> int:
        """Record state and lag of recently started runs; returns how many were looked at."""
        now = self._clock()

        def pending() -> list[tuple[int, str]]:
            with self._db.transaction() as session:
                return store.to_observe(session, now=now, limit=OBSERVE_BATCH)

        items = await asyncio.to_thread(pending)
        for action_id, run_id in items:
            info = await self._executor.get_run(run_id)
            if info is None:
                continue

            def record(aid: int = action_id, run: RunInfo = info) -> str | None:
                with self._db.transaction() as session:
                    return store.observe(
                        session,
                        aid,
                        run_state=run.state,
                        first_step_at=run.first_step_at,
                        now=now,
                    )

            note = await asyncio.to_thread(record)
            if note:
                log.warning("schedule paused", action_id=action_id, note=note)
        return len(items)
