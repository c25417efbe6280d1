"""Backfill planning and the next-run preview: pure functions over timetables, no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.backfill import ExistingRun, planned_runs, upcoming_runs
from scheduler.core.timetable import RunInfo, make_timetable


def d(day: int, month: int = 1, hour: int = 0) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


def test_a_daily_range_has_one_run_per_day_both_ends_included() -> None:
    plan = planned_runs(make_timetable("@daily"), d(1), d(10), start_date=d(1, 1),
                        end_date=None, existing={})
    assert [p.logical_date for p in plan] == [d(i) for i in range(1, 11)]
    assert all(p.info.data_interval.start == p.logical_date
               and p.info.data_interval.end == p.logical_date + timedelta(days=1) for p in plan)
    assert not any(p.exists for p in plan)


def test_existing_runs_are_paired_by_logical_date_and_reverse_is_newest_first() -> None:
    existing = {d(3): ExistingRun(7, "backfill__x", "success")}
    plan = planned_runs(make_timetable("@daily"), d(1), d(4), start_date=None, end_date=None,
                        existing=existing, reverse=True)
    assert [p.logical_date for p in plan] == [d(4), d(3), d(2), d(1)]
    assert [p.exists for p in plan] == [False, True, False, False]
    row = plan[1].as_row()
    assert row["exists"] is True and row["state"] == "success"
    assert set(row) >= {"logical_date", "data_interval_start", "data_interval_end", "exists"}


def test_the_dags_start_and_end_dates_narrow_the_range() -> None:
    plan = planned_runs(make_timetable("@daily"), d(1), d(31), start_date=d(5),
                        end_date=d(7), existing={})
    assert [p.logical_date for p in plan] == [d(5), d(6), d(7)]


def test_a_local_time_schedule_keeps_its_wall_clock_across_dst() -> None:
    # 02:30 in Amsterdam: 01:30 UTC in winter, 00:30 UTC in summer; 31 March 2024 has no 02:30
    # (the clocks jump from 02:00 to 03:00): it moves to the first valid time.
    tt = make_timetable("30 2 * * *", "Europe/Amsterdam")
    plan = planned_runs(tt, d(30, 3), d(1, 4, 12), start_date=None, end_date=None, existing={})
    assert [p.logical_date for p in plan] == [
        datetime(2024, 3, 30, 1, 30, tzinfo=UTC), datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
        datetime(2024, 4, 1, 0, 30, tzinfo=UTC)]


def _first(tt_expr: str, day: int) -> RunInfo:
    return RunInfo.interval(d(day), make_timetable(tt_expr).next_run(
        None, start_date=d(day), end_date=None, catchup=True, now=d(day)
    ).data_interval.end)  # type: ignore[union-attr]


def test_upcoming_runs_follow_each_other_from_the_stores_next_run() -> None:
    runs = upcoming_runs(make_timetable("@daily"), _first("@daily", 20), count=3,
                         start_date=d(1), end_date=None, catchup=False, now=d(19))
    assert [r.logical_date for r in runs] == [d(20), d(21), d(22)]
    assert [r.run_after for r in runs] == [d(21), d(22), d(23)]


def test_upcoming_runs_stop_at_the_end_date_and_after_once() -> None:
    runs = upcoming_runs(make_timetable("@daily"), _first("@daily", 20), count=5,
                         start_date=d(1), end_date=d(21), catchup=False, now=d(19))
    assert [r.logical_date for r in runs] == [d(20), d(21)]
    once = RunInfo.exact(d(5))
    assert upcoming_runs(make_timetable("@once"), once, count=3, start_date=d(5),
                         end_date=None, catchup=False, now=d(1)) == [once]
    assert upcoming_runs(make_timetable(None), None, count=3, start_date=None, end_date=None,
                         catchup=False, now=d(1)) == []


def test_without_catchup_a_stale_next_run_is_followed_by_the_latest_interval() -> None:
    # The scheduler was down: the store still owes the 1st, and creating it on the 20th moves
    # the schedule on to the latest complete interval, as the scheduler does.
    first = RunInfo.interval(d(1), d(2))
    runs = upcoming_runs(make_timetable("@daily"), first, count=2, start_date=d(1),
                         end_date=None, catchup=False, now=d(20, 1, 12))
    assert [r.logical_date for r in runs] == [d(1), d(19)]
