"""Trading-day partitions against exchange-calendars (the oracle) and the study's calendar facts."""

from __future__ import annotations

import dagster as dg
import exchange_calendars as xcals
import pandas as pd
import pytest

from sc_assets import partitions as p


def test_keys_equal_exchange_calendars_sessions():
    cal = xcals.get_calendar("XSHG", start="2015-01-05", end="2024-12-31")
    keys = p.trading_days.get_partition_keys_in_range(dg.PartitionKeyRange("2015-01-05", "2024-12-31"))
    expected = [d.strftime("%Y-%m-%d") for d in cal.sessions]
    assert keys == expected
    assert len(keys) == 2431  # METHODS.md §1


def test_spring_festival_2024_has_no_partitions():
    keys = p.trading_days.get_partition_keys_in_range(dg.PartitionKeyRange("2024-02-08", "2024-02-19"))
    assert keys == ["2024-02-08", "2024-02-19"]


def test_weekends_and_holidays_are_not_partitions():
    keys = set(p.trading_days.get_partition_keys())
    assert "2024-02-10" not in keys  # Saturday
    assert "2024-10-01" not in keys  # National Day
    assert "2024-02-07" in keys


def test_neighbours_and_ranges():
    assert p.previous_trading_day("2024-02-19") == pd.Timestamp("2024-02-08")
    assert p.next_trading_day("2024-02-08") == pd.Timestamp("2024-02-19")
    assert p.previous_trading_day("2024-02-10") == pd.Timestamp("2024-02-08")  # non-session input
    assert p.next_trading_day("2024-01-19", n=1) == pd.Timestamp("2024-01-22")
    rng = p.trading_days_between("2024-02-05", "2024-02-20")
    assert [d.strftime("%m-%d") for d in rng] == ["02-05", "02-06", "02-07", "02-08", "02-19", "02-20"]


def test_week_labels_use_last_session_of_the_week():
    assert p.last_trading_day_of_week("2024-02-05") == pd.Timestamp("2024-02-08")  # holiday-short week
    assert p.last_trading_day_of_week("2024-01-22") == pd.Timestamp("2024-01-26")
    ends = p.week_end_sessions(p.trading_days_between("2024-01-29", "2024-02-23"))
    assert list(ends.strftime("%Y-%m-%d")) == ["2024-02-02", "2024-02-08", "2024-02-23"]


def test_dates_beyond_the_known_calendar_are_errors_not_guesses():
    beyond = p.last_known_session() + pd.Timedelta(days=40)
    with pytest.raises(p.CalendarRangeError, match="outside the SSE calendar"):
        p.is_trading_day(beyond)
    with pytest.raises(p.CalendarRangeError):
        p.next_trading_day(p.last_known_session())
    with pytest.raises(p.CalendarRangeError):
        p.is_trading_day("2014-12-31")
    with pytest.raises(p.CalendarRangeError, match="not a date"):
        p.is_trading_day("2024-13-45")
    # the partitions definition itself ends with the calendar
    assert p.trading_days.get_last_partition_key() <= p.last_known_session().strftime("%Y-%m-%d")


@pytest.mark.parametrize("size", [1, 3, 15, 22, 40, 250])
def test_month_chunks_end_at_month_ends_and_cover_every_key_once(size):
    keys = list(p.trading_days_between("2023-11-20", "2024-03-12").strftime("%Y-%m-%d"))
    chunks = p.month_chunks(reversed(keys), size)
    assert [k for c in chunks for k in c] == keys and all(0 < len(c) <= size for c in chunks)
    for c, nxt in zip(chunks, chunks[1:], strict=False):
        # a chunk ends inside a month only when its first `size` keys hold no month end
        if c[-1][:7] == nxt[0][:7]:
            assert len(c) == size and len({k[:7] for k in c}) == 1
    assert p.month_chunks([], size) == [[]]
