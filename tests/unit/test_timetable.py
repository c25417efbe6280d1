"""Timetables: Airflow 2 data intervals, catchup, backfill ranges and DST on the local clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.core.timetable import (
    CronTimetable,
    DataInterval,
    DeltaTimetable,
    NullTimetable,
    OnceTimetable,
    RunInfo,
    make_timetable,
)
from scheduler.errors import DagDefinitionError, TimetableError

AMS = ZoneInfo("Europe/Amsterdam")
NY = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def chain(tt, start_date, n, *, now=None, catchup=True, end_date=None) -> list[RunInfo]:
    """``n`` successive runs from the first one, as the loop would create them."""
    now = now or utc(2100, 1, 1)
    runs: list[RunInfo] = []
    last = None
    for _ in range(n):
        info = tt.next_run(last, start_date=start_date, end_date=end_date, catchup=catchup, now=now)
        if info is None:
            break
        runs.append(info)
        last = info.data_interval
    return runs


def local_walls(runs: list[RunInfo], tz: ZoneInfo) -> list[str]:
    return [r.logical_date.astimezone(tz).strftime("%m-%d %H:%M%z") for r in runs]


# -- make_timetable ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "cron"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
    ],
)
def test_presets_are_their_cron_expressions(preset: str, cron: str) -> None:
    tt = make_timetable(preset)
    assert isinstance(tt, CronTimetable)
    assert tt.expression == cron
    assert tt.summary == preset
    assert tt.periodic
    start = utc(2024, 1, 1)
    assert chain(tt, start, 5) == chain(make_timetable(cron), start, 5)


def test_summaries_and_kinds() -> None:
    assert make_timetable("0 2 * * *").summary == "0 2 * * *"
    assert make_timetable(None).summary == "None"
    assert make_timetable("@once").summary == "@once"
    assert make_timetable({"interval": 3600.0}).summary == "1:00:00"
    assert make_timetable(timedelta(days=1)).summary == "1 day, 0:00:00"
    assert isinstance(make_timetable(None), NullTimetable)
    assert isinstance(make_timetable("@once"), OnceTimetable)
    assert isinstance(make_timetable({"interval": 60}), DeltaTimetable)
    assert not make_timetable(None).periodic
    assert not make_timetable("@once").periodic
    assert make_timetable({"interval": 60}).periodic


@pytest.mark.parametrize(
    "bad",
    ["61 * * * *", "not a cron", "* * * *", "0 0 * * * *", "0 0 30 2 *", "H * * * *", ""],
)
def test_bad_cron_raises_timetable_error_with_hint(bad: str) -> None:
    with pytest.raises(TimetableError) as info:
        make_timetable(bad)
    assert isinstance(info.value, DagDefinitionError)
    assert info.value.hint
    assert "Fix:" in str(info.value)


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(TimetableError) as info:
        make_timetable("@continuous")
    assert "@continuous" in str(info.value)
    for preset in ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly"):
        assert preset in info.value.hint


@pytest.mark.parametrize("bad", [{"interval": 0}, {"interval": -5}, {"every": 3}, timedelta(0)])
def test_bad_interval_raises(bad) -> None:
    with pytest.raises(TimetableError):
        make_timetable(bad)


def test_unknown_time_zone_raises() -> None:
    with pytest.raises(TimetableError) as info:
        make_timetable("0 2 * * *", "Mars/Olympus_Mons")
    assert "IANA" in info.value.hint


# -- cron: first run, catchup, last, end_date --------------------------------------------------


def test_cron_run_covers_the_interval_that_ends_at_the_next_tick() -> None:
    tt = make_timetable("@daily")
    info = tt.next_run(None, start_date=utc(2024, 1, 1), end_date=None, catchup=True,
                       now=utc(2024, 6, 1))
    assert info == RunInfo(utc(2024, 1, 1), DataInterval(utc(2024, 1, 1), utc(2024, 1, 2)),
                           utc(2024, 1, 2))


def test_cron_first_run_aligns_start_date_forward() -> None:
    tt = make_timetable("0 2 * * *")
    info = tt.next_run(None, start_date=utc(2024, 1, 1, 3), end_date=None, catchup=True,
                       now=utc(2024, 6, 1))
    assert info is not None
    assert info.logical_date == utc(2024, 1, 2, 2)
    assert info.data_interval.end == info.run_after == utc(2024, 1, 3, 2)


def test_cron_catchup_chains_contiguous_intervals() -> None:
    runs = chain(make_timetable("@daily"), utc(2024, 1, 1), 10)
    assert [r.logical_date.day for r in runs] == list(range(1, 11))
    for a, b in zip(runs, runs[1:], strict=False):
        assert a.data_interval.end == b.data_interval.start


def test_no_catchup_takes_latest_complete_interval() -> None:
    tt = make_timetable("@daily")
    info = tt.next_run(None, start_date=utc(2024, 1, 1), end_date=None, catchup=False,
                       now=utc(2024, 6, 15, 10))
    assert info is not None
    assert info.data_interval == DataInterval(utc(2024, 6, 14), utc(2024, 6, 15))
    assert info.run_after <= utc(2024, 6, 15, 10)


def test_no_catchup_on_a_tick_takes_the_interval_ending_now() -> None:
    tt = make_timetable("@daily")
    info = tt.next_run(None, start_date=utc(2024, 1, 1), end_date=None, catchup=False,
                       now=utc(2024, 6, 15))
    assert info is not None
    assert info.data_interval == DataInterval(utc(2024, 6, 14), utc(2024, 6, 15))


def test_no_catchup_never_goes_before_start_date() -> None:
    tt = make_timetable("@daily")
    # start_date in the future: the first interval at start_date, due later.
    info = tt.next_run(None, start_date=utc(2024, 7, 1), end_date=None, catchup=False,
                       now=utc(2024, 6, 15, 10))
    assert info is not None
    assert info.logical_date == utc(2024, 7, 1)
    assert info.run_after > utc(2024, 6, 15, 10)
    # start_date inside the current (incomplete) interval: the first one is not over yet.
    info = tt.next_run(None, start_date=utc(2024, 6, 14, 12), end_date=None, catchup=False,
                       now=utc(2024, 6, 15, 10))
    assert info is not None
    assert info.logical_date == utc(2024, 6, 15)
    assert info.run_after == utc(2024, 6, 16)


def test_no_catchup_without_start_date_uses_now() -> None:
    tt = make_timetable("@hourly")
    info = tt.next_run(None, start_date=None, end_date=None, catchup=False,
                       now=utc(2024, 6, 15, 10, 30))
    assert info is not None
    assert info.data_interval == DataInterval(utc(2024, 6, 15, 9), utc(2024, 6, 15, 10))
    first = tt.next_run(None, start_date=None, end_date=None, catchup=True, now=utc(2024, 1, 1))
    assert first is None


def test_with_last_catchup_takes_the_next_interval() -> None:
    tt = make_timetable("@daily")
    last = DataInterval(utc(2024, 1, 1), utc(2024, 1, 2))
    info = tt.next_run(last, start_date=utc(2024, 1, 1), end_date=None, catchup=True,
                       now=utc(2024, 6, 1))
    assert info is not None
    assert info.data_interval == DataInterval(utc(2024, 1, 2), utc(2024, 1, 3))


def test_with_last_no_catchup_skips_to_latest_complete() -> None:
    tt = make_timetable("@daily")
    old = DataInterval(utc(2024, 1, 1), utc(2024, 1, 2))
    info = tt.next_run(old, start_date=utc(2024, 1, 1), end_date=None, catchup=False,
                       now=utc(2024, 6, 15, 10))
    assert info is not None
    assert info.data_interval == DataInterval(utc(2024, 6, 14), utc(2024, 6, 15))
    recent = DataInterval(utc(2024, 6, 14), utc(2024, 6, 15))
    info = tt.next_run(recent, start_date=utc(2024, 1, 1), end_date=None, catchup=False,
                       now=utc(2024, 6, 15, 10))
    assert info is not None
    assert info.data_interval == DataInterval(utc(2024, 6, 15), utc(2024, 6, 16))
    assert info.run_after > utc(2024, 6, 15, 10)  # not due yet: the caller waits


def test_end_date_stops_the_schedule() -> None:
    tt = make_timetable("@daily")
    runs = chain(tt, utc(2024, 1, 1), 100, end_date=utc(2024, 1, 5))
    # An interval starting exactly at end_date is still owed; none starts after it.
    assert [r.logical_date for r in runs] == [utc(2024, 1, d) for d in range(1, 6)]


def test_inputs_in_any_zone_or_naive_and_outputs_in_utc() -> None:
    tt = make_timetable("@daily")
    naive = tt.next_run(None, start_date=datetime(2024, 1, 1), end_date=None, catchup=True,
                        now=datetime(2024, 6, 1))
    aware = tt.next_run(None, start_date=datetime(2024, 1, 1, 1, tzinfo=AMS), end_date=None,
                        catchup=True, now=utc(2024, 6, 1))
    assert naive == aware
    assert naive is not None
    assert naive.logical_date.tzinfo is UTC
    assert naive.data_interval.end.tzinfo is UTC


def test_data_interval_is_normalised_to_utc() -> None:
    naive = DataInterval(datetime(2024, 1, 1), datetime(2024, 1, 2))
    assert naive == DataInterval(utc(2024, 1, 1), utc(2024, 1, 2))
    assert naive.start.tzinfo is UTC
    local = DataInterval(datetime(2024, 1, 1, 1, tzinfo=AMS), datetime(2024, 1, 2, 1, tzinfo=AMS))
    assert local == naive
    with pytest.raises(ValueError):
        DataInterval(utc(2024, 1, 2), utc(2024, 1, 1))


# -- manual runs and backfill ranges -----------------------------------------------------------


def test_cron_manual_interval_is_the_last_complete_one() -> None:
    tt = make_timetable("@daily")
    expected = DataInterval(utc(2024, 1, 24), utc(2024, 1, 25))
    assert tt.manual_interval(utc(2024, 1, 25, 1)) == expected
    assert tt.manual_interval(utc(2024, 1, 25)) == expected


def test_manual_interval_of_none_once_and_delta() -> None:
    at = utc(2024, 3, 1, 12, 30)
    assert make_timetable(None).manual_interval(at) == DataInterval(at, at)
    assert make_timetable("@once").manual_interval(at) == DataInterval(at, at)
    assert make_timetable({"interval": 3600}).manual_interval(at) == DataInterval(
        at - timedelta(hours=1), at
    )


def test_runs_between_is_inclusive_on_both_ends() -> None:
    tt = make_timetable("@daily")
    runs = tt.runs_between(utc(2024, 1, 1), utc(2024, 1, 5))
    assert [r.logical_date for r in runs] == [utc(2024, 1, d) for d in range(1, 6)]
    assert runs[-1].data_interval.end == utc(2024, 1, 6)
    assert tt.runs_between(utc(2024, 1, 1, 1), utc(2024, 1, 1, 23)) == []


def test_runs_between_respects_start_and_end_date() -> None:
    tt = make_timetable("@daily")
    runs = tt.runs_between(utc(2024, 1, 1), utc(2024, 1, 31), start_date=utc(2024, 1, 10),
                           end_date=utc(2024, 1, 12))
    assert [r.logical_date.day for r in runs] == [10, 11, 12]


def test_runs_between_matches_the_catchup_chain() -> None:
    tt = make_timetable("15 */6 * * 1-5", "America/New_York")
    start = utc(2024, 3, 1)
    runs = chain(tt, start, 60)
    assert tt.runs_between(start, runs[-1].logical_date) == runs


def test_none_schedule_owes_nothing() -> None:
    tt = make_timetable(None)
    assert tt.next_run(None, start_date=utc(2024, 1, 1), end_date=None, catchup=True,
                       now=utc(2025, 1, 1)) is None
    assert tt.runs_between(utc(2024, 1, 1), utc(2024, 12, 31)) == []


def test_once_runs_once_at_start_date() -> None:
    tt = make_timetable("@once")
    start = utc(2024, 5, 1, 8)
    for catchup in (True, False):
        info = tt.next_run(None, start_date=start, end_date=None, catchup=catchup,
                           now=utc(2025, 1, 1))
        assert info == RunInfo(start, DataInterval(start, start), start)
        assert tt.next_run(info.data_interval, start_date=start, end_date=None, catchup=catchup,
                           now=utc(2025, 1, 1)) is None
    assert tt.next_run(None, start_date=None, end_date=None, catchup=True, now=start) is None
    assert tt.next_run(None, start_date=start, end_date=utc(2024, 1, 1), catchup=True,
                       now=start) is None
    assert tt.runs_between(utc(2024, 1, 1), utc(2024, 12, 31), start_date=start) == [
        RunInfo.exact(start)
    ]
    assert tt.runs_between(utc(2024, 6, 1), utc(2024, 12, 31), start_date=start) == []


# -- timedelta schedules -----------------------------------------------------------------------


def test_delta_intervals_are_anchored_at_start_date() -> None:
    tt = make_timetable({"interval": 90 * 60})
    start = utc(2024, 1, 1, 0, 10)
    runs = chain(tt, start, 3)
    assert [r.logical_date for r in runs] == [start + k * timedelta(minutes=90) for k in range(3)]
    assert all(r.run_after == r.logical_date + timedelta(minutes=90) for r in runs)


def test_delta_no_catchup_takes_latest_complete_on_the_grid() -> None:
    tt = make_timetable({"interval": 3600})
    start = utc(2024, 1, 1, 0, 10)
    info = tt.next_run(None, start_date=start, end_date=None, catchup=False,
                       now=utc(2024, 1, 2, 5, 30))
    assert info is not None
    assert info.data_interval == DataInterval(utc(2024, 1, 2, 4, 10), utc(2024, 1, 2, 5, 10))
    # nothing complete yet: the first interval, due later
    info = tt.next_run(None, start_date=start, end_date=None, catchup=False,
                       now=utc(2024, 1, 1, 0, 40))
    assert info is not None
    assert info.logical_date == start
    # with last: continue from last.end, skipping to the latest complete one
    last = DataInterval(start, start + timedelta(hours=1))
    info = tt.next_run(last, start_date=start, end_date=None, catchup=False,
                       now=utc(2024, 1, 2, 5, 30))
    assert info is not None
    assert info.logical_date == utc(2024, 1, 2, 4, 10)
    info = tt.next_run(last, start_date=start, end_date=None, catchup=True,
                       now=utc(2024, 1, 2, 5, 30))
    assert info is not None
    assert info.logical_date == last.end


def test_delta_without_start_date_is_stable_between_calls() -> None:
    tt = make_timetable({"interval": 3600})
    a = tt.next_run(None, start_date=None, end_date=None, catchup=False, now=utc(2024, 1, 1, 5, 1))
    b = tt.next_run(None, start_date=None, end_date=None, catchup=False, now=utc(2024, 1, 1, 5, 59))
    assert a == b
    assert a is not None
    assert a.data_interval == DataInterval(utc(2024, 1, 1, 4), utc(2024, 1, 1, 5))


def test_delta_runs_between_uses_the_start_date_grid() -> None:
    tt = make_timetable({"interval": 3600})
    start = utc(2024, 1, 1, 0, 10)
    runs = tt.runs_between(utc(2024, 1, 1, 2), utc(2024, 1, 1, 5, 10), start_date=start)
    assert [r.logical_date for r in runs] == [utc(2024, 1, 1, h, 10) for h in (2, 3, 4, 5)]
    runs = tt.runs_between(utc(2024, 1, 1, 2), utc(2024, 1, 1, 4))
    assert [r.logical_date for r in runs] == [utc(2024, 1, 1, h) for h in (2, 3, 4)]


# -- DST ---------------------------------------------------------------------------------------


def test_amsterdam_daily_0230_across_spring_forward() -> None:
    tt = make_timetable("30 2 * * *", "Europe/Amsterdam")
    runs = chain(tt, utc(2024, 3, 29), 4)
    # 02:30 does not exist on 31 March: it moves forward to 03:00, the first valid time.
    assert local_walls(runs, AMS) == [
        "03-29 02:30+0100", "03-30 02:30+0100", "03-31 03:00+0200", "04-01 02:30+0200",
    ]
    assert runs[2].logical_date == utc(2024, 3, 31, 1, 0)
    # 02:30 CET -> 03:00 CEST and 03:00 CEST -> 02:30 CEST are both 23.5 real hours.
    for r in runs[1:3]:
        assert r.data_interval.end - r.data_interval.start == timedelta(hours=23, minutes=30)


def test_amsterdam_daily_0230_across_fall_back() -> None:
    tt = make_timetable("30 2 * * *", "Europe/Amsterdam")
    runs = chain(tt, utc(2024, 10, 25), 4)
    # 02:30 happens twice on 27 October: the first occurrence (CEST) is taken, once.
    assert local_walls(runs, AMS) == [
        "10-25 02:30+0200", "10-26 02:30+0200", "10-27 02:30+0200", "10-28 02:30+0100",
    ]
    assert runs[2].logical_date == utc(2024, 10, 27, 0, 30)
    assert runs[2].data_interval.end - runs[2].data_interval.start == timedelta(hours=25)


def test_amsterdam_hourly_stays_one_real_hour_across_dst() -> None:
    tt = make_timetable("0 * * * *", "Europe/Amsterdam")
    for month, day in ((3, 31), (10, 27)):
        start = datetime(2024, month, day, tzinfo=AMS)
        end = datetime.combine(start.date() + timedelta(days=1), start.timetz())
        runs = tt.runs_between(start, end - timedelta(microseconds=1))
        for r in runs:
            assert r.data_interval.end - r.data_interval.start == timedelta(hours=1)
        walls = [r.logical_date.astimezone(AMS).strftime("%H%z") for r in runs]
        if month == 3:
            assert len(runs) == 23
            assert "02+0100" not in walls and "02+0200" not in walls
        else:
            assert len(runs) == 25
            assert walls.count("02+0200") == 1 and walls.count("02+0100") == 1


def test_amsterdam_half_past_every_hour_across_spring_forward() -> None:
    tt = make_timetable("30 * * * *", "Europe/Amsterdam")
    runs = tt.runs_between(utc(2024, 3, 30, 23), utc(2024, 3, 31, 3))
    assert [r.logical_date for r in runs] == [utc(2024, 3, 30, 23, 30)] + [
        utc(2024, 3, 31, h, 30) for h in range(3)
    ]


def test_every_two_hours_takes_first_occurrence_of_the_repeated_hour() -> None:
    tt = make_timetable("0 */2 * * *", "Europe/Amsterdam")
    runs = tt.runs_between(datetime(2024, 10, 27, tzinfo=AMS),
                           datetime(2024, 10, 27, 6, tzinfo=AMS))
    assert local_walls(runs, AMS) == [
        "10-27 00:00+0200", "10-27 02:00+0200", "10-27 04:00+0100", "10-27 06:00+0100",
    ]


def test_new_york_gap_and_fold() -> None:
    tt = make_timetable("30 2 * * *", "America/New_York")
    runs = chain(tt, utc(2024, 3, 9), 3)
    assert local_walls(runs, NY) == ["03-09 02:30-0500", "03-10 03:00-0400", "03-11 02:30-0400"]
    tt = make_timetable("30 1 * * *", "America/New_York")
    runs = chain(tt, utc(2024, 11, 2), 3)
    assert local_walls(runs, NY) == ["11-02 01:30-0400", "11-03 01:30-0400", "11-04 01:30-0500"]
    assert runs[1].data_interval.end - runs[1].data_interval.start == timedelta(hours=25)


def test_cron_manual_interval_across_dst() -> None:
    tt = make_timetable("30 2 * * *", "Europe/Amsterdam")
    got = tt.manual_interval(datetime(2024, 3, 31, 12, tzinfo=AMS))
    assert got == DataInterval(datetime(2024, 3, 30, 2, 30, tzinfo=AMS).astimezone(UTC),
                               utc(2024, 3, 31, 1))


def test_no_catchup_in_local_time_zone() -> None:
    tt = make_timetable("0 2 * * *", "Europe/Amsterdam")
    now = datetime(2024, 7, 10, 9, tzinfo=AMS)
    info = tt.next_run(None, start_date=utc(2024, 1, 1), end_date=None, catchup=False, now=now)
    assert info is not None
    assert info.data_interval == DataInterval(
        datetime(2024, 7, 9, 2, tzinfo=AMS).astimezone(UTC),
        datetime(2024, 7, 10, 2, tzinfo=AMS).astimezone(UTC),
    )


# -- properties --------------------------------------------------------------------------------

ZONES = [
    "UTC", "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
    "America/Santiago", "Pacific/Chatham", "Europe/London", "Australia/Sydney", "America/Havana",
    "Asia/Tehran", "Africa/Casablanca", "Pacific/Apia",
]
CRONS = [
    "0 * * * *", "30 * * * *", "*/20 * * * *", "0 */2 * * *", "30 2 * * *", "0 0 * * *",
    "15 1,2,3 * * *", "0 3 * * 0", "45 23 * * 1-5", "0 0 1 * *", "5 4 L * *", "0 * * * 6",
]

instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2036, 12, 31), timezones=st.just(UTC)
)
# Times near the DST changes that matter most.
near_dst = st.sampled_from(
    [utc(2024, 3, 30, 22), utc(2024, 10, 26, 22), utc(2024, 3, 10, 4), utc(2024, 11, 3, 3),
     utc(2024, 4, 6, 12), utc(2024, 9, 28, 12), utc(2024, 4, 7, 12), utc(2024, 10, 5, 14)]
).flatmap(lambda t: st.integers(-36 * 60, 36 * 60).map(lambda m: t + timedelta(minutes=m)))
any_instant = st.one_of(instants, near_dst)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CRONS), st.sampled_from(ZONES), any_instant)
def test_chained_cron_intervals_are_contiguous_and_increasing(cron: str, zone: str,
                                                                start: datetime) -> None:
    tt = make_timetable(cron, zone)
    runs = chain(tt, start, 12)
    assert len(runs) == 12
    assert runs[0].logical_date >= start
    for r in runs:
        assert r.logical_date == r.data_interval.start
        assert r.run_after == r.data_interval.end
        assert r.data_interval.start < r.data_interval.end
        assert r.logical_date.tzinfo is UTC
    for a, b in zip(runs, runs[1:], strict=False):
        assert a.data_interval.end == b.data_interval.start
    assert tt.runs_between(start, runs[-1].logical_date) == runs


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CRONS), st.sampled_from(ZONES), any_instant)
def test_next_and_prev_tick_bracket_any_instant(cron: str, zone: str, t: datetime) -> None:
    tt = make_timetable(cron, zone)
    assert isinstance(tt, CronTimetable)
    nxt, prv = tt.next_after(t), tt.prev_before(t)
    assert prv < t < nxt
    assert tt.next_after(prv) >= t  # nothing between prev and t
    assert tt.prev_before(nxt) <= t  # nothing between t and next
    assert tt.align_next(nxt) == nxt and tt.align_prev(prv) == prv


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CRONS), st.sampled_from(ZONES), any_instant, st.integers(0, 10 * 24 * 60))
def test_no_catchup_first_run_is_the_latest_complete_interval(cron: str, zone: str,
                                                              now: datetime, extra: int) -> None:
    tt = make_timetable(cron, zone)
    now = now + timedelta(minutes=extra)
    info = tt.next_run(None, start_date=utc(2000, 1, 1), end_date=None, catchup=False, now=now)
    assert info is not None
    assert info.run_after <= now
    following = tt.next_run(info.data_interval, start_date=utc(2000, 1, 1), end_date=None,
                            catchup=False, now=now)
    assert following is not None
    assert following.logical_date == info.data_interval.end
    assert following.run_after > now


def _brute_force_ticks(cron: str, zone: str, lo: datetime, hi: datetime) -> list[datetime]:
    """The documented tick rule, checked minute by minute: independent of the implementation."""
    tz = ZoneInfo(zone)
    every_hour = cron.split()[1] == "*"
    ticks: set[datetime] = set()
    if every_hour:
        # the clock as it reads at every real instant
        u = lo
        while u <= hi:
            if croniter.match(cron, u.astimezone(tz).replace(tzinfo=None)):
                ticks.add(u)
            u += timedelta(minutes=1)
        return sorted(ticks)
    walls = lo.astimezone(tz).replace(tzinfo=None) - timedelta(hours=3)
    end_wall = hi.astimezone(tz).replace(tzinfo=None) + timedelta(hours=3)
    while walls <= end_wall:
        if croniter.match(cron, walls):
            first = walls.replace(tzinfo=tz, fold=0).astimezone(UTC)
            if first.astimezone(tz).replace(tzinfo=None) == walls:
                ticks.add(first)
            else:  # a gap: the first real minute whose clock reads at or after the wall time
                u = (walls - timedelta(hours=26)).replace(tzinfo=UTC)
                while u.astimezone(tz).replace(tzinfo=None) < walls:
                    u += timedelta(minutes=1)
                ticks.add(u)
        walls += timedelta(minutes=1)
    return sorted(t for t in ticks if lo <= t <= hi)


@pytest.mark.parametrize(
    ("cron", "zone", "around"),
    [
        ("0 * * * *", "Europe/Amsterdam", utc(2024, 3, 31, 1)),
        ("0 * * * *", "Europe/Amsterdam", utc(2024, 10, 27, 1)),
        ("30 * * * *", "Europe/Amsterdam", utc(2024, 10, 27, 1)),
        ("*/20 * * * *", "Australia/Lord_Howe", utc(2024, 4, 6, 15)),
        ("*/20 * * * *", "Australia/Lord_Howe", utc(2024, 10, 5, 15)),
        ("30 2 * * *", "Europe/Amsterdam", utc(2024, 3, 31, 1)),
        ("30 2 * * *", "Europe/Amsterdam", utc(2024, 10, 27, 1)),
        ("15 1,2,3 * * *", "America/New_York", utc(2024, 3, 10, 7)),
        ("15 1,2,3 * * *", "America/New_York", utc(2024, 11, 3, 6)),
        ("0,30 0-3 * * *", "America/Santiago", utc(2024, 9, 8, 4)),
        ("0,30 0-3 * * *", "America/Santiago", utc(2024, 4, 7, 3)),
        ("0 */2 * * *", "Pacific/Chatham", utc(2024, 4, 6, 14)),
        ("10 * * * *", "Pacific/Apia", utc(2011, 12, 30, 10)),
        ("10 9,10,11 * * *", "Pacific/Apia", utc(2011, 12, 30, 10)),
    ],
)
def test_ticks_match_the_documented_rule_by_brute_force(cron: str, zone: str,
                                                         around: datetime) -> None:
    lo, hi = around - timedelta(hours=30), around + timedelta(hours=30)
    tt = make_timetable(cron, zone)
    got = [r.logical_date for r in tt.runs_between(lo, hi)]
    assert got == _brute_force_ticks(cron, zone, lo, hi)
