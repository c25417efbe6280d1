"""Timetables: which runs a schedule owes, as pure functions of time.

A timetable turns a DAG's ``schedule`` into data intervals, with Airflow 2's semantics:

* cron and preset schedules: a run's ``logical_date`` is the *start* of its data interval, the
  interval ends at the next cron tick, and the run may start once its interval has ended
  (``run_after == data_interval.end``);
* ``{"interval": seconds}`` (a ``timedelta``): intervals
  ``[anchor + k*delta, anchor + (k+1)*delta]`` anchored at the DAG's ``start_date`` (or at the
  end of the previous run);
* ``"@once"``: one run at ``start_date`` with the empty interval ``[start_date, start_date]``;
* ``None``: manual runs only.

Nothing here reads a clock, a file or a database: ``now`` is always a parameter. Inputs may be
tz-aware in any zone (naive datetimes are taken as UTC); every datetime returned is tz-aware UTC.

Cron expressions are evaluated on the DAG's local wall clock (a ``zoneinfo`` name), so
``30 2 * * *`` in ``Europe/Amsterdam`` stays 02:30 local time across DST changes:

* a local time that does not exist (a DST gap) moves forward to the first valid time, i.e. the
  instant the clocks jump (``02:30`` on the spring-forward day runs at ``03:00`` local);
* an ambiguous local time (the repeated hour when clocks go back) takes its first occurrence;
* exception, as in Airflow (apache/airflow#24523): a cron that fires every hour (hour field
  ``*``) follows the clock as it reads at every real instant, so ``0 * * * *`` fires in both
  occurrences of the repeated hour and simply has no tick inside a gap. Its intervals therefore
  stay one real hour long across DST, instead of one of them being 0 or 2 hours.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from scheduler.errors import TimetableError

#: Presets and the cron expressions they stand for (Airflow's set).
CRON_PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}
ONCE = "@once"
VALID_PRESETS: tuple[str, ...] = (ONCE, *CRON_PRESETS)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TINY = timedelta(microseconds=1)
# How far ahead/behind we look for a clock that goes back. Real-world DST folds are at most
# 2 hours; the probe must see past the fold but not past the next transition.
_FOLD_PROBE = timedelta(hours=3)
_MAX_SCAN = 200_000  # cron ticks examined by one search before giving up (never hit in practice)

_CRON_HINT = (
    "use five fields 'minute hour day-of-month month day-of-week' (e.g. '30 2 * * *'), "
    f"a preset ({', '.join(VALID_PRESETS)}), a timedelta, or None for manual runs only"
)


@dataclass(frozen=True)
class DataInterval:
    """The span of data a run processes: ``[start, end]``, ``start <= end``.

    Both ends are stored as tz-aware UTC whatever they were given in (naive means UTC), so an
    interval read back from a database that drops time zones compares equal to the original.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", to_utc(self.start))
        object.__setattr__(self, "end", to_utc(self.end))
        if self.start > self.end:
            raise ValueError(f"data interval starts after it ends: {self.start} > {self.end}")


@dataclass(frozen=True)
class RunInfo:
    """One run a schedule owes: its logical date, data interval and earliest start time."""

    logical_date: datetime
    data_interval: DataInterval
    run_after: datetime

    @classmethod
    def interval(cls, start: datetime, end: datetime) -> RunInfo:
        """A run over ``[start, end]`` that may start once the interval has ended."""
        return cls(logical_date=start, data_interval=DataInterval(start, end), run_after=end)

    @classmethod
    def exact(cls, at: datetime) -> RunInfo:
        """A run at one instant, with an empty data interval (``@once``)."""
        return cls(logical_date=at, data_interval=DataInterval(at, at), run_after=at)


def to_utc(value: datetime) -> datetime:
    """Return ``value`` as tz-aware UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc(value)


class Timetable(ABC):
    """What a schedule owes. Subclasses are immutable; every method is pure."""

    #: The schedule as a person reads it: ``"0 2 * * *"``, ``"@daily"``, ``"1:00:00"``, ``"None"``.
    summary: str
    #: False for schedules that never produce a run by themselves again (``None``, ``@once``).
    periodic: bool

    @abstractmethod
    def next_run(
        self,
        last: DataInterval | None,
        *,
        start_date: datetime | None,
        end_date: datetime | None,
        catchup: bool,
        now: datetime,
    ) -> RunInfo | None:
        """The next scheduled run after the one whose data interval was ``last``.

        ``last=None`` means no scheduled run exists yet. With ``catchup`` the result is the
        first interval at or after ``start_date`` (or the interval right after ``last``);
        without, never earlier than the latest interval that has completely ended by ``now``.
        The result may lie in the future: the caller creates the run only once
        ``run_after <= now``. Returns ``None`` when the schedule owes nothing more (manual-only
        schedule, ``@once`` already run, the next interval starts after ``end_date``, or no
        ``start_date`` where one is needed).
        """

    @abstractmethod
    def runs_between(
        self,
        start: datetime,
        end: datetime,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        """Every run whose logical date is in ``[start, end]`` (both inclusive), oldest first.

        This is what a backfill creates. ``start_date``/``end_date`` (the DAG's), when given,
        narrow the range further.
        """

    @abstractmethod
    def manual_interval(self, run_after: datetime) -> DataInterval:
        """The data interval of a run triggered by hand at ``run_after``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.summary!r})"


class NullTimetable(Timetable):
    """``schedule=None``: manual runs only."""

    summary = "None"
    periodic = False

    def next_run(
        self,
        last: DataInterval | None,
        *,
        start_date: datetime | None,
        end_date: datetime | None,
        catchup: bool,
        now: datetime,
    ) -> RunInfo | None:
        """Always ``None``: this schedule never creates runs by itself."""
        return None

    def runs_between(
        self,
        start: datetime,
        end: datetime,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        """Always empty: there is nothing to backfill for a manual-only schedule."""
        return []

    def manual_interval(self, run_after: datetime) -> DataInterval:
        """``[run_after, run_after]``."""
        at = to_utc(run_after)
        return DataInterval(at, at)


class OnceTimetable(Timetable):
    """``"@once"``: one run at ``start_date`` (regardless of ``catchup``), then nothing."""

    summary = ONCE
    periodic = False

    def next_run(
        self,
        last: DataInterval | None,
        *,
        start_date: datetime | None,
        end_date: datetime | None,
        catchup: bool,
        now: datetime,
    ) -> RunInfo | None:
        """The run at ``start_date`` if none happened yet, else ``None``.

        ``None`` too without a ``start_date`` or when ``start_date`` is after ``end_date``.
        """
        if last is not None or start_date is None:
            return None
        at = to_utc(start_date)
        if end_date is not None and at > to_utc(end_date):
            return None
        return RunInfo.exact(at)

    def runs_between(
        self,
        start: datetime,
        end: datetime,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        """The single run at ``start_date`` if it lies in the range.

        Without a ``start_date`` the one run is placed at ``start``.
        """
        lo, hi = to_utc(start), to_utc(end)
        at = to_utc(start_date) if start_date is not None else lo
        if end_date is not None and at > to_utc(end_date):
            return []
        return [RunInfo.exact(at)] if lo <= at <= hi else []

    def manual_interval(self, run_after: datetime) -> DataInterval:
        """``[run_after, run_after]``."""
        at = to_utc(run_after)
        return DataInterval(at, at)


class DeltaTimetable(Timetable):
    """A fixed ``timedelta`` between runs, anchored at ``start_date`` (or the previous run)."""

    periodic = True

    def __init__(self, delta: timedelta) -> None:
        if delta <= timedelta(0):
            raise TimetableError(
                f"schedule interval must be positive, got {delta}",
                hint="give a timedelta longer than zero, e.g. timedelta(hours=1)",
            )
        self.delta = delta
        self.summary = str(delta)

    def _latest_complete_start(self, anchor: datetime, now: datetime) -> datetime:
        """Start of the latest interval on the grid from ``anchor`` that has ended by ``now``.

        If none has ended yet, the first interval of the grid (``anchor`` itself).
        """
        k = (now - anchor) // self.delta - 1
        return anchor + max(k, 0) * self.delta

    def next_run(
        self,
        last: DataInterval | None,
        *,
        start_date: datetime | None,
        end_date: datetime | None,
        catchup: bool,
        now: datetime,
    ) -> RunInfo | None:
        """See :meth:`Timetable.next_run`.

        Without ``last`` the grid is anchored at ``start_date`` (at the Unix epoch when there is
        no start date and ``catchup`` is off, so repeated calls agree; ``None`` with catchup on).
        With ``last`` the grid continues from ``last.end``.
        """
        now_u = to_utc(now)
        sd = _opt_utc(start_date)
        if last is None:
            if sd is None:
                if catchup:
                    return None
                anchor = _EPOCH
            else:
                anchor = sd
        else:
            anchor = to_utc(last.end)
            if sd is not None and sd > anchor:
                anchor = sd
        start = anchor if catchup else self._latest_complete_start(anchor, now_u)
        if end_date is not None and start > to_utc(end_date):
            return None
        return RunInfo.interval(start, start + self.delta)

    def runs_between(
        self,
        start: datetime,
        end: datetime,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        """Runs on the grid anchored at ``start_date`` (or at ``start`` without one)."""
        lo, hi = to_utc(start), to_utc(end)
        sd = _opt_utc(start_date)
        anchor = sd if sd is not None else lo
        if sd is not None and sd > lo:
            lo = sd
        if end_date is not None:
            hi = min(hi, to_utc(end_date))
        k = -((anchor - lo) // self.delta)  # ceil((lo - anchor) / delta)
        at = anchor + k * self.delta
        runs: list[RunInfo] = []
        while at <= hi:
            runs.append(RunInfo.interval(at, at + self.delta))
            at += self.delta
        return runs

    def manual_interval(self, run_after: datetime) -> DataInterval:
        """``[run_after - delta, run_after]``, as in Airflow."""
        at = to_utc(run_after)
        return DataInterval(at - self.delta, at)


class CronTimetable(Timetable):
    """A cron expression evaluated on the local wall clock of a time zone (see module doc)."""

    periodic = True

    def __init__(self, expression: str, tz: str = "UTC", *, summary: str | None = None) -> None:
        self.expression = expression
        self.timezone = tz
        self._tz = _zone(tz)
        self.summary = summary or expression
        fields = expression.split()
        if len(fields) != 5:
            raise TimetableError(
                f"invalid cron expression {expression!r}: expected 5 fields, got {len(fields)}",
                hint=_CRON_HINT,
            )
        probe = datetime(2000, 1, 1)
        try:
            cron = croniter(expression, probe)
            cron.get_next(datetime)
        except CroniterBadDateError:
            raise TimetableError(
                f"cron expression {expression!r} never matches a real date",
                hint="check the day-of-month and month fields (e.g. February has no 30th)",
            ) from None
        except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
            raise TimetableError(
                f"invalid cron expression {expression!r}: {exc}", hint=_CRON_HINT
            ) from None
        # Airflow's rule (#24523): a schedule that fires every hour follows the real clock.
        self._every_hour = cron.expanded[1] == ["*"]

    # -- the tick set --------------------------------------------------------------------------

    def _wall(self, t: datetime) -> datetime:
        """The local wall-clock reading at instant ``t`` (naive)."""
        return t.astimezone(self._tz).replace(tzinfo=None)

    def _offset(self, t: datetime) -> timedelta:
        offset = t.astimezone(self._tz).utcoffset()
        assert offset is not None
        return offset

    def _exists(self, local: datetime) -> bool:
        return self._wall(local.astimezone(UTC)) == local.replace(tzinfo=None)

    def _instants(self, wall: datetime) -> list[datetime]:
        """The UTC instants at which the cron tick at naive local ``wall`` fires, ascending."""
        first = wall.replace(tzinfo=self._tz, fold=0)
        second = wall.replace(tzinfo=self._tz, fold=1)
        if self._exists(first):
            if not self._every_hour:
                return [first.astimezone(UTC)]  # an ambiguous time takes its first occurrence
            out = [first.astimezone(UTC)]
            later = second.astimezone(UTC)
            if later != out[0] and self._exists(second):
                out.append(later)
            return out
        if self._every_hour:
            return []  # the real hour is covered by the ticks around the gap
        return [self._gap_end(wall)]

    def _gap_end(self, wall: datetime) -> datetime:
        """The instant the clocks jump over the non-existent local time ``wall``."""
        before = wall.replace(tzinfo=self._tz, fold=0).utcoffset()
        after = wall.replace(tzinfo=self._tz, fold=1).utcoffset()
        assert before is not None and after is not None
        # PEP 495: in a gap fold=0 uses the offset before the jump, fold=1 the one after.
        lo = (wall - max(before, after)).replace(tzinfo=UTC)  # still before the jump
        hi = (wall - min(before, after)).replace(tzinfo=UTC)  # already after it
        pre = self._offset(lo)
        while hi - lo > timedelta(seconds=1):
            mid = lo + timedelta(seconds=(hi - lo).total_seconds() // 2)
            if self._offset(mid) == pre:
                lo = mid
            else:
                hi = mid
        return hi

    def _walls(self, start: datetime, *, forward: bool) -> Iterator[datetime]:
        """Naive cron matches strictly after (or before) naive ``start``."""
        cron = croniter(self.expression, start)
        step = cron.get_next if forward else cron.get_prev
        for _ in range(_MAX_SCAN):
            yield step(datetime)
        raise RuntimeError(f"no cron tick found for {self.expression!r} near {start}")

    def next_after(self, t: datetime) -> datetime:
        """The first tick strictly after instant ``t`` (UTC)."""
        t = to_utc(t)
        wall = self._wall(t)
        # If the clock goes back soon, instants after t may read wall times at or before wall(t).
        back = max(timedelta(0), self._offset(t) - self._offset(t + _FOLD_PROBE))
        walls = self._walls(wall - back, forward=True)
        if back:
            found: list[datetime] = []
            for w in walls:
                found.extend(u for u in self._instants(w) if u > t)
                if w >= wall + back:
                    break
            if found:
                return min(found)
        for w in walls:
            later = [u for u in self._instants(w) if u > t]
            if later:
                return later[0]
        raise AssertionError("unreachable")  # _walls raises first

    def prev_before(self, t: datetime) -> datetime:
        """The last tick strictly before instant ``t`` (UTC)."""
        t = to_utc(t)
        wall = self._wall(t)
        # If the clock went back recently, instants before t may read wall times after wall(t).
        fwd = max(timedelta(0), self._offset(t - _FOLD_PROBE) - self._offset(t))
        walls = self._walls(wall + fwd, forward=False)
        if fwd:
            found: list[datetime] = []
            for w in walls:
                found.extend(u for u in self._instants(w) if u < t)
                if w <= wall - fwd:
                    break
            if found:
                return max(found)
        for w in walls:
            earlier = [u for u in self._instants(w) if u < t]
            if earlier:
                return earlier[-1]
        raise AssertionError("unreachable")

    def align_next(self, t: datetime) -> datetime:
        """The first tick at or after ``t``."""
        return self.next_after(to_utc(t) - _TINY)

    def align_prev(self, t: datetime) -> datetime:
        """The last tick at or before ``t``."""
        return self.prev_before(to_utc(t) + _TINY)

    # -- the Timetable API ---------------------------------------------------------------------

    def next_run(
        self,
        last: DataInterval | None,
        *,
        start_date: datetime | None,
        end_date: datetime | None,
        catchup: bool,
        now: datetime,
    ) -> RunInfo | None:
        """See :meth:`Timetable.next_run`.

        Without ``catchup`` the earliest interval considered is the latest one whose end is at
        or before ``now`` (or the first one at/after ``start_date`` if that is later). With
        ``last`` the next interval starts at ``last.end`` (not re-aligned, so intervals stay
        contiguous when the schedule changed). ``None`` without ``start_date`` and ``last``
        when ``catchup`` is on.
        """
        sd = _opt_utc(start_date)
        earliest = self.align_next(sd) if sd is not None else None
        if not catchup:
            latest_start = self.prev_before(self.align_prev(to_utc(now)))
            earliest = latest_start if earliest is None else max(earliest, latest_start)
        if last is None:
            if earliest is None:
                return None
            start = earliest
        else:
            start = to_utc(last.end)
            if earliest is not None and earliest > start:
                start = earliest
        if end_date is not None and start > to_utc(end_date):
            return None
        return RunInfo.interval(start, self.next_after(start))

    def runs_between(
        self,
        start: datetime,
        end: datetime,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        """Every cron tick in ``[start, end]`` (narrowed by start/end date) as a run."""
        lo, hi = to_utc(start), to_utc(end)
        if start_date is not None:
            lo = max(lo, to_utc(start_date))
        if end_date is not None:
            hi = min(hi, to_utc(end_date))
        runs: list[RunInfo] = []
        if lo > hi:
            return runs
        at = self.align_next(lo)
        while at <= hi:
            nxt = self.next_after(at)
            runs.append(RunInfo.interval(at, nxt))
            at = nxt
        return runs

    def manual_interval(self, run_after: datetime) -> DataInterval:
        """The interval that ended last at ``run_after``: ``[tick before e, e]``, where ``e``
        is the last tick at or before ``run_after`` (Airflow's manual-run data interval)."""
        end = self.align_prev(to_utc(run_after))
        return DataInterval(self.prev_before(end), end)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise TimetableError(
            f"unknown time zone {name!r}",
            hint="use an IANA time zone name such as 'UTC' or 'Europe/Amsterdam'",
        ) from None


def make_timetable(
    schedule: str | Mapping[str, float] | timedelta | None, timezone: str = "UTC"
) -> Timetable:
    """Build the timetable for a serialized ``schedule`` evaluated in ``timezone``.

    ``schedule`` is a cron string, a preset (see :data:`VALID_PRESETS`), ``{"interval":
    seconds}`` or a ``timedelta``, or ``None`` (manual only). Raises
    :class:`~scheduler.errors.TimetableError` (a ``DagDefinitionError``) with a hint for a bad
    cron expression, an unknown preset, a non-positive interval or an unknown time zone.
    """
    _zone(timezone)
    if schedule is None:
        return NullTimetable()
    if isinstance(schedule, timedelta):
        return DeltaTimetable(schedule)
    if isinstance(schedule, Mapping):
        seconds = schedule.get("interval")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise TimetableError(
                f"invalid schedule {dict(schedule)!r}",
                hint='a serialized interval schedule looks like {"interval": 3600.0}',
            )
        return DeltaTimetable(timedelta(seconds=seconds))
    if not isinstance(schedule, str):
        raise TimetableError(f"invalid schedule {schedule!r}", hint=_CRON_HINT)
    text = schedule.strip()
    if text == ONCE:
        return OnceTimetable()
    if text.startswith("@"):
        if text in CRON_PRESETS:
            return CronTimetable(CRON_PRESETS[text], timezone, summary=text)
        raise TimetableError(
            f"unknown schedule preset {text!r}",
            hint=f"use one of {', '.join(VALID_PRESETS)}, a cron expression, or None",
        )
    return CronTimetable(text, timezone)
