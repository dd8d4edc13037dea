"""Calendar maths: DST in several zones, 5/6-field cron, intervals, once, bad specs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conveyor.kernel.errors import InvalidArgument
from conveyor.scheduler.domain import Calendar, Spec, check_spec, preview, spec_violations


def local_fires(expr: str, zone: str, after_local: datetime, count: int) -> list[str]:
    tz = ZoneInfo(zone)
    cal = Calendar(Spec(kind="cron", cron=expr, time_zone=zone))
    return [
        t.astimezone(tz).strftime("%m-%d %H:%M%z")
        for t in cal.upcoming(after_local.replace(tzinfo=tz).astimezone(UTC), count)
    ]


# (zone, day before spring-forward, day before fall-back)
ZONES = [
    ("Europe/Berlin", datetime(2026, 3, 28, 12), datetime(2026, 10, 24, 12)),
    ("America/New_York", datetime(2026, 3, 7, 12), datetime(2026, 10, 31, 12)),
    ("Australia/Sydney", datetime(2026, 10, 3, 12), datetime(2026, 4, 4, 12)),
]


@pytest.mark.parametrize(("zone", "spring", "_fall"), ZONES)
def test_0230_daily_fires_once_on_spring_forward_day(
    zone: str, spring: datetime, _fall: datetime
) -> None:
    fires = local_fires("30 2 * * *", zone, spring, 3)
    day = (spring + timedelta(days=1)).strftime("%m-%d")
    on_day = [f for f in fires if f.startswith(day)]
    assert len(on_day) == 1
    assert on_day[0][6:11] == "03:30"  # the skipped 02:30 fires just after the change
    assert len({f[:5] for f in fires}) == 3  # one fire per day


@pytest.mark.parametrize(("zone", "_spring", "fall"), ZONES)
def test_0230_daily_fires_once_on_fall_back_day(
    zone: str, _spring: datetime, fall: datetime
) -> None:
    fires = local_fires("30 2 * * *", zone, fall, 3)
    day = (fall + timedelta(days=1)).strftime("%m-%d")
    on_day = [f for f in fires if f.startswith(day)]
    assert len(on_day) == 1
    assert on_day[0][6:11] == "02:30"
    assert [f[:5] for f in fires] == sorted({f[:5] for f in fires})


def test_hourly_cron_is_never_doubled_in_the_repeated_hour() -> None:
    fires = local_fires("15 * * * *", "Europe/Berlin", datetime(2026, 10, 25, 0), 5)
    assert fires == [
        "10-25 00:15+0200",
        "10-25 01:15+0200",
        "10-25 02:15+0200",
        "10-25 03:15+0100",
        "10-25 04:15+0100",
    ]


def test_six_field_cron_fires_every_second() -> None:
    cal = Calendar(Spec(kind="cron", cron="*/2 * * * * *"))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert cal.upcoming(start, 3) == [start + timedelta(seconds=s) for s in (2, 4, 6)]


def test_day_of_week_uses_standard_cron_numbers() -> None:
    cal = Calendar(Spec(kind="cron", cron="0 9 * * 0,6", time_zone="UTC"))
    days = {t.strftime("%a") for t in cal.upcoming(datetime(2026, 1, 1, tzinfo=UTC), 6)}
    assert days == {"Sat", "Sun"}
    weekdays = Calendar(Spec(kind="cron", cron="0 9 * * 1-5"))
    got = {t.strftime("%a") for t in weekdays.upcoming(datetime(2026, 1, 1, tzinfo=UTC), 10)}
    assert got == {"Mon", "Tue", "Wed", "Thu", "Fri"}


def test_interval_is_elapsed_time_across_dst() -> None:
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    cal = Calendar(Spec(kind="interval", every_s=3600, time_zone="Europe/Berlin", start=start))
    fires = cal.upcoming(start - timedelta(seconds=1), 6)
    assert fires == [start + timedelta(hours=h) for h in range(6)]


def test_interval_edges_start_end_and_alignment() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(minutes=3)
    cal = Calendar(Spec(kind="interval", every_s=60, start=start, end=end))
    assert cal.next_after(start - timedelta(days=1)) == start  # the start itself fires
    assert cal.next_after(start) == start + timedelta(minutes=1)  # strictly after
    assert cal.next_after(start + timedelta(seconds=61)) == start + timedelta(minutes=2)
    assert cal.next_after(end - timedelta(microseconds=1)) == end  # the end itself fires
    assert cal.next_after(end) is None


def test_once_fires_once() -> None:
    at = datetime(2026, 5, 1, 12, tzinfo=UTC)
    cal = Calendar(Spec(kind="once", run_at=at))
    assert cal.upcoming(at - timedelta(days=1), 5) == [at]
    assert cal.next_after(at) is None


def test_cron_respects_start_and_end() -> None:
    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    cal = Calendar(Spec(kind="cron", cron="0 * * * *", start=start, end=start + timedelta(hours=2)))
    assert cal.upcoming(datetime(2025, 1, 1, tzinfo=UTC), 10) == [
        start,
        start + timedelta(hours=1),
        start + timedelta(hours=2),
    ]


BAD = [
    (Spec(kind="cron", cron="61 * * * *"), "spec.cron.expression", "INVALID_CRON"),
    (Spec(kind="cron", cron="* * * *"), "spec.cron.expression", "INVALID_CRON"),
    (Spec(kind="cron", cron="0 0 * * 9"), "spec.cron.expression", "INVALID_CRON"),
    (Spec(kind="cron", cron=""), "spec.cron.expression", "REQUIRED"),
    (
        Spec(kind="cron", cron="0 * * * *", time_zone="Nowhere/City"),
        "spec.time_zone",
        "UNKNOWN_TIME_ZONE",
    ),
    (Spec(kind="interval", every_s=0), "spec.interval.every", "OUT_OF_RANGE"),
    (Spec(kind="interval", every_s=0.5), "spec.interval.every", "OUT_OF_RANGE"),
    (
        Spec(
            kind="interval",
            every_s=60,
            start=datetime(2026, 2, 1, tzinfo=UTC),
            end=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        "spec.end_time",
        "END_BEFORE_START",
    ),
    (Spec(kind="once"), "spec.once.run_time", "REQUIRED"),
    (Spec(kind=""), "spec", "REQUIRED"),
    (Spec(kind="cron", cron="0 * * * *", jitter_s=7200), "spec.jitter", "OUT_OF_RANGE"),
]


@pytest.mark.parametrize(("spec", "field", "reason"), BAD)
def test_bad_specs_name_the_field(spec: Spec, field: str, reason: str) -> None:
    found = [(v.field, v.reason) for v in spec_violations(spec, prefix="spec")]
    assert (field, reason) in found
    with pytest.raises(InvalidArgument):
        check_spec(spec)


def test_specs_that_can_never_fire_again_are_rejected_given_now() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    past_once = Spec(kind="once", run_at=now - timedelta(seconds=1))
    assert spec_violations(past_once, prefix="spec") == []
    found = [(v.field, v.reason) for v in spec_violations(past_once, prefix="spec", now=now)]
    assert found == [("spec.once.run_time", "IN_THE_PAST")]
    ended = Spec(kind="cron", cron="* * * * *", end=now)
    found = [(v.field, v.reason) for v in spec_violations(ended, prefix="spec", now=now)]
    assert found == [("spec.end_time", "IN_THE_PAST")]
    early = Spec(kind="once", run_at=now, start=now + timedelta(hours=1))
    found = [(v.field, v.reason) for v in spec_violations(early, prefix="spec")]
    assert found == [("spec.once.run_time", "BEFORE_START_TIME")]


def test_preview_bounds_the_count() -> None:
    spec = Spec(kind="cron", cron="* * * * *")
    with pytest.raises(InvalidArgument):
        preview(spec, after=datetime(2026, 1, 1, tzinfo=UTC), count=1001)
    assert len(preview(spec, after=datetime(2026, 1, 1, tzinfo=UTC), count=1000)) == 1000


def test_spec_round_trips_through_json() -> None:
    spec = Spec(kind="once", run_at=datetime(2026, 1, 1, tzinfo=UTC), time_zone="Asia/Tokyo")
    assert Spec.from_json(spec.to_json()) == spec
