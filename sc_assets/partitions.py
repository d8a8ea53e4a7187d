"""Trading-day partitions: Shanghai Stock Exchange sessions (exchange-calendars ``XSHG``).

One partitions definition, ``trading_days``, for every daily asset: weekday ticks at 00:00
Asia/Shanghai minus the weekdays on which the SSE is closed, starting 2015-01-05 and ending
with the last session exchange-calendars knows (its holiday table is finite). A date past
that is a :class:`CalendarRangeError`, never a silent weekday guess.

Use partition *keys* ("YYYY-MM-DD"), not time-window arithmetic: with exclusions, the
window of the day before a holiday ends at the excluded tick (STYLE.md §3).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import date
from functools import lru_cache

import dagster as dg
import exchange_calendars as xcals
import pandas as pd

CALENDAR = "XSHG"
TIMEZONE = "Asia/Shanghai"
START = "2015-01-05"
KEY_FORMAT = "%Y-%m-%d"

DateLike = str | date | pd.Timestamp


class CalendarRangeError(ValueError):
    """A date outside the sessions exchange-calendars knows for the SSE."""


@lru_cache(maxsize=1)
def _calendar() -> xcals.ExchangeCalendar:
    # exchange-calendars 4.x calls Series.values on tz-aware data, which pandas 3.1 flags as
    # deprecated (Pandas4Warning) on every start-up; the warning is theirs, not actionable here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar(CALENDAR, start=START)


@lru_cache(maxsize=1)
def sessions() -> pd.DatetimeIndex:
    """All SSE sessions from 2015-01-05 to the calendar's last known session (tz-naive dates)."""
    return pd.DatetimeIndex(_calendar().sessions).tz_localize(None)


def first_session() -> pd.Timestamp:
    return sessions()[0]


def last_known_session() -> pd.Timestamp:
    return sessions()[-1]


def _ts(day: DateLike) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(day)
    except (ValueError, TypeError) as exc:
        raise CalendarRangeError(f"{day!r} is not a date (expected YYYY-MM-DD)") from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert(TIMEZONE).tz_localize(None)
    ts = ts.normalize()
    if ts < first_session() or ts > last_known_session():
        raise CalendarRangeError(
            f"{ts.date()} is outside the SSE calendar known to exchange-calendars "
            f"({first_session().date()} .. {last_known_session().date()}); upgrade exchange-calendars "
            "for later holidays instead of guessing weekdays"
        )
    return ts


def is_trading_day(day: DateLike) -> bool:
    ts = _ts(day)
    return ts in sessions()


def trading_days_between(start: DateLike, end: DateLike) -> pd.DatetimeIndex:
    """Sessions in [start, end], inclusive."""
    s = sessions()
    return s[(s >= _ts(start)) & (s <= _ts(end))]


def previous_trading_day(day: DateLike, n: int = 1) -> pd.Timestamp:
    """The n-th session strictly before ``day`` (``day`` need not be a session)."""
    s = sessions()
    i = s.searchsorted(_ts(day), side="left") - n
    if i < 0:
        raise CalendarRangeError(f"no session {n} before {day} in the calendar (starts {first_session().date()})")
    return s[i]


def next_trading_day(day: DateLike, n: int = 1) -> pd.Timestamp:
    """The n-th session strictly after ``day``."""
    s = sessions()
    i = s.searchsorted(_ts(day), side="right") + n - 1
    if i >= len(s):
        raise CalendarRangeError(f"no session {n} after {day}: calendar ends {last_known_session().date()}")
    return s[i]


def week_end_sessions(days: pd.DatetimeIndex | None = None) -> pd.DatetimeIndex:
    """Last session of each Monday–Sunday week (METHODS.md §1) among ``days`` (default: all)."""
    s = sessions() if days is None else pd.DatetimeIndex(days)
    week = s.to_period("W-SUN")
    last = pd.Series(s, index=s).groupby(week).transform("max")
    return pd.DatetimeIndex(s[s == last.to_numpy()])


def last_trading_day_of_week(day: DateLike) -> pd.Timestamp:
    """The last session of the Monday–Sunday week containing ``day`` (e.g. 2024-02-08 for 2024-02-05)."""
    ts = _ts(day) if pd.Timestamp(day) <= last_known_session() else pd.Timestamp(day)
    monday = ts - pd.Timedelta(days=ts.weekday())
    in_week = trading_days_between(max(monday, first_session()), min(monday + pd.Timedelta(days=6), last_known_session()))
    if len(in_week) == 0:
        raise CalendarRangeError(f"the week of {ts.date()} has no SSE session")
    return in_week[-1]


def month_chunks(keys: Sequence[str], size: int) -> list[list[str]]:
    """``keys`` (``YYYY-MM-DD`` partition keys) sorted and cut into chunks of at most ``size`` keys,
    each ending at the end of a month where one falls within it: the lake keeps one file per month
    (issue 11), and a chunk ending inside a month would make the next chunk rewrite that month's
    file. Empty ``keys``: one empty chunk."""
    keys = sorted(keys)
    out, i = [], 0
    while i < len(keys):
        n = month_cut(keys[i:], size)
        out.append(keys[i:i + n])
        i += n
    return out or [[]]


def month_cut(keys: Sequence[str], size: int) -> int:
    """How many of the sorted ``keys`` the next chunk of at most ``size`` (>= 1) takes: all when
    they fit, else up to the last month boundary within ``size``, else ``size``."""
    size = max(1, size)
    if size >= len(keys):
        return len(keys)
    for n in range(size, 0, -1):
        if keys[n][:7] != keys[n - 1][:7]:
            return n
    return size


def to_key(day: DateLike) -> str:
    return pd.Timestamp(day).strftime(KEY_FORMAT)


def _exclusions() -> list:
    """Weekdays on which the SSE is closed, as naive datetimes (read in the partitions' timezone)."""
    weekdays = pd.bdate_range(first_session(), last_known_session())
    return [d.to_pydatetime() for d in weekdays.difference(sessions())]


trading_days = dg.TimeWindowPartitionsDefinition(
    start=START,
    end=(last_known_session() + pd.Timedelta(days=1)).strftime(KEY_FORMAT),
    fmt=KEY_FORMAT,
    cron_schedule="0 0 * * 1-5",
    timezone=TIMEZONE,
    exclusions=_exclusions(),
)
"""The only partitions definition for daily assets: one key per SSE session."""


def daily_asset_args() -> dict:
    """The partitioning every daily asset shares: ``trading_days`` with a single-run backfill
    policy (a multi-year backfill is one run that processes the range at once)."""
    return {"partitions_def": trading_days, "backfill_policy": dg.BackfillPolicy.single_run()}
