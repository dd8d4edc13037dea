"""Schedule specs and their calendar: validation and next fire times (APScheduler 3 triggers).

Pure: no I/O, no gRPC, no SQL. Every datetime in and out is timezone-aware UTC.

Daylight saving time follows wall-clock semantics for cron specs: a wall-clock time skipped by
a spring-forward change fires once, at the same offset after the change (02:30 -> 03:30); a
wall-clock time repeated by a fall-back change fires once, at its first occurrence. APScheduler
3 yields the repeated time twice (and can step backwards inside the repeated hour), so
`Calendar.next_after` filters its answers. Intervals are elapsed time and ignore DST.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from conveyor.kernel.errors import InvalidArgument, Violation

KINDS = ("once", "interval", "cron")
MAX_CRON_LENGTH = 256
MAX_TZ_LENGTH = 64
MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 366 * 86400.0
MAX_JITTER_S = 3600.0
MAX_PREVIEW = 1000
_SEARCH_STEPS = 64
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DOW_TOKEN = re.compile(r"^(\*|\d+)(?:-(\d+))?(?:/(\d+))?$")
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class Spec:
    """When a schedule fires. Exactly the fields of its kind are meaningful."""

    kind: str
    time_zone: str = "UTC"
    run_at: datetime | None = None
    every_s: float = 0.0
    cron: str = ""
    start: datetime | None = None
    end: datetime | None = None
    jitter_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict for the table."""
        data = asdict(self)
        for key in ("run_at", "start", "end"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        """Inverse of to_json."""
        values = dict(data)
        for key in ("run_at", "start", "end"):
            raw = values.get(key)
            values[key] = datetime.fromisoformat(raw) if raw else None
        return cls(**values)


def _zone(name: str) -> tzinfo:
    if name in ("", "UTC"):
        return UTC
    return ZoneInfo(name)


def _dow(field: str) -> str:
    """A standard cron day-of-week field (0/7 = Sunday) in APScheduler's terms (names)."""
    if any(ch.isalpha() for ch in field):
        return field  # names mean the same to both
    days: set[int] = set()
    for token in field.split(","):
        match = _DOW_TOKEN.match(token.strip())
        if match is None:
            raise ValueError(f"bad day-of-week {token!r}")
        first_s, last_s, step_s = match.groups()
        if first_s == "*":
            first, last = 0, 6
        else:
            first = int(first_s)
            last = int(last_s) if last_s is not None else (6 if step_s else first)
        step = int(step_s) if step_s else 1
        if not (0 <= first <= 7 and 0 <= last <= 7 and first <= last and step >= 1):
            raise ValueError(f"day-of-week {token!r} is out of range 0-7")
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_DOW_NAMES[d] for d in sorted(days))


def cron_trigger(expression: str, zone: tzinfo, *, start: datetime | None) -> CronTrigger:
    """A CronTrigger for a 5-field (minute first) or 6-field (second first) expression."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"expected 5 or 6 fields, got {len(fields)}")
    second, minute, hour, day, month, dow = fields
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day.replace("?", "*"),
        month=month,
        day_of_week=_dow(dow.replace("?", "*")),
        timezone=zone,
        start_date=start,
    )


def _repeated(local: datetime) -> bool:
    """True for the second occurrence of a wall-clock time repeated by a fall-back change."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _end_of_repeat(instant: datetime, zone: tzinfo) -> datetime:
    """The first instant after `instant` that is not a repeated wall-clock time."""
    low, high = instant, instant + timedelta(hours=3)
    while high - low > _MICRO:
        mid = low + (high - low) / 2
        if _repeated(mid.astimezone(zone)):
            low = mid
        else:
            high = mid
    return high


class Calendar:
    """The fire times of a spec (nominal, without jitter)."""

    def __init__(self, spec: Spec, *, anchor: datetime | None = None) -> None:
        self.spec = spec
        self.zone = _zone(spec.time_zone)
        start = spec.start or anchor
        self._trigger: CronTrigger | IntervalTrigger | DateTrigger
        if spec.kind == "cron":
            self._trigger = cron_trigger(spec.cron, self.zone, start=start)
        elif spec.kind == "interval":
            if start is None:
                raise ValueError("an interval needs a start time or an anchor")
            # UTC arithmetic: an interval is elapsed time, not wall-clock time.
            self._trigger = IntervalTrigger(
                seconds=spec.every_s, start_date=start.astimezone(UTC), timezone=UTC
            )
        elif spec.kind == "once":
            if spec.run_at is None:
                raise ValueError("once needs run_at")
            self._trigger = DateTrigger(run_date=spec.run_at, timezone=UTC)
        else:
            raise ValueError(f"unknown kind {spec.kind!r}")

    def next_after(self, after: datetime) -> datetime | None:
        """The first nominal fire time strictly after `after`, or None when none is left."""
        after = after.astimezone(UTC)
        found = self._next_raw(after)
        if found is None or (self.spec.end is not None and found > self.spec.end):
            return None
        return found

    def _next_raw(self, after: datetime) -> datetime | None:
        if self.spec.kind == "once":
            run_at = self.spec.run_at
            if run_at is None or run_at <= after:
                return None
            if self.spec.start is not None and run_at < self.spec.start:
                return None
            return run_at.astimezone(UTC)
        if self.spec.kind == "interval":
            got: datetime | None = self._trigger.get_next_fire_time(None, after + _MICRO)
            return got.astimezone(UTC) if got is not None else None
        start = after + _MICRO
        for _ in range(_SEARCH_STEPS):
            got = self._trigger.get_next_fire_time(None, start.astimezone(self.zone))
            if got is None:
                return None
            instant = got.astimezone(UTC)
            local = instant.astimezone(self.zone)
            if instant > after and not _repeated(local):
                return instant
            # A repeated wall-clock time (or APScheduler stepping back into one): skip past it.
            if _repeated(local):
                start = _end_of_repeat(max(instant, after), self.zone)
            else:
                start = max(instant, after) + timedelta(seconds=1)
        raise ValueError("cron search did not converge")

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """Up to `count` nominal fire times after `after`."""
        times: list[datetime] = []
        cursor = after
        while len(times) < count:
            nxt = self.next_after(cursor)
            if nxt is None:
                break
            times.append(nxt)
            cursor = nxt
        return times


def spec_violations(spec: Spec, *, prefix: str, now: datetime | None = None) -> list[Violation]:
    """Every problem with a spec, as field violations under `prefix` (e.g. "schedule.spec").

    With `now`, a spec that can never fire again (a past one-shot or end time) is a problem too.
    """
    out: list[Violation] = []
    if spec.kind not in KINDS:
        out.append(Violation(prefix, "set exactly one of once, interval or cron", "REQUIRED"))
        return out
    zone_ok = True
    if len(spec.time_zone) > MAX_TZ_LENGTH:
        out.append(Violation(f"{prefix}.time_zone", "at most 64 characters", "TOO_LONG"))
        zone_ok = False
    else:
        try:
            _zone(spec.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            out.append(
                Violation(
                    f"{prefix}.time_zone",
                    f"unknown IANA time zone {spec.time_zone!r}",
                    "UNKNOWN_TIME_ZONE",
                )
            )
            zone_ok = False
    if spec.kind == "once" and spec.run_at is None:
        out.append(Violation(f"{prefix}.once.run_time", "required", "REQUIRED"))
    if spec.kind == "interval" and not MIN_INTERVAL_S <= spec.every_s <= MAX_INTERVAL_S:
        out.append(
            Violation(
                f"{prefix}.interval.every",
                f"must be between 1 second and 366 days, got {spec.every_s:g} s",
                "OUT_OF_RANGE",
            )
        )
    if spec.kind == "cron":
        if not spec.cron.strip():
            out.append(Violation(f"{prefix}.cron.expression", "required", "REQUIRED"))
        elif len(spec.cron) > MAX_CRON_LENGTH:
            out.append(Violation(f"{prefix}.cron.expression", "at most 256 characters", "TOO_LONG"))
        elif zone_ok:
            try:
                cron_trigger(spec.cron, _zone(spec.time_zone), start=None)
            except ValueError as exc:
                out.append(
                    Violation(
                        f"{prefix}.cron.expression",
                        f"invalid cron expression {spec.cron!r}: {exc}",
                        "INVALID_CRON",
                    )
                )
    if spec.start is not None and spec.end is not None and spec.end <= spec.start:
        out.append(Violation(f"{prefix}.end_time", "must be after start_time", "END_BEFORE_START"))
    if spec.kind == "once" and spec.run_at and spec.end and spec.run_at > spec.end:
        out.append(Violation(f"{prefix}.once.run_time", "is after end_time", "AFTER_END_TIME"))
    if spec.kind == "once" and spec.run_at and spec.start and spec.run_at < spec.start:
        out.append(
            Violation(f"{prefix}.once.run_time", "is before start_time", "BEFORE_START_TIME")
        )
    if now is not None and spec.kind == "once" and spec.run_at and spec.run_at <= now:
        out.append(Violation(f"{prefix}.once.run_time", "is in the past", "IN_THE_PAST"))
    if now is not None and spec.end is not None and spec.end <= now:
        out.append(Violation(f"{prefix}.end_time", "is in the past", "IN_THE_PAST"))
    if not 0 <= spec.jitter_s <= MAX_JITTER_S:
        out.append(Violation(f"{prefix}.jitter", "must be between 0 and 1 hour", "OUT_OF_RANGE"))
    return out


def check_spec(spec: Spec, *, prefix: str = "spec") -> None:
    """Raise INVALID_ARGUMENT with every violation when the spec is not valid."""
    violations = spec_violations(spec, prefix=prefix)
    if violations:
        raise InvalidArgument(
            f"invalid schedule spec: {violations[0].description}",
            reason="INVALID_SCHEDULE",
            violations=violations,
        )


def preview(spec: Spec, *, after: datetime, count: int) -> list[datetime]:
    """The next `count` nominal fire times of a valid spec after `after`."""
    check_spec(spec)
    if not 0 < count <= MAX_PREVIEW:
        raise InvalidArgument(
            f"count must be between 1 and {MAX_PREVIEW}",
            violations=[Violation("count", f"got {count}", "OUT_OF_RANGE")],
        )
    return Calendar(spec, anchor=spec.start or after).upcoming(after, count)
