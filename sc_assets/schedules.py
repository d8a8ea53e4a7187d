"""The after-close schedule: ``daily_update`` at 18:30 Asia/Shanghai on SSE trading days.

Why a hand-written ``@schedule`` and not ``build_schedule_from_partitioned_job``: our
partitions are a weekday cron minus exchange holidays, and that helper rejects an hour/minute
offset for it (STYLE.md P8). The cron fires Monday–Friday at 18:30 Shanghai time; on a
weekday on which the SSE is closed (Spring Festival, National Day, ...) the tick yields a
``SkipReason`` and no run is created. On a trading day it requests that day's partition with
``run_key = <day>`` so a retried tick never launches a second run for the same day.

The data for day D (bars, daily_basic, ...) is published by vendors after the 15:00 close;
18:30 leaves time for the landing files to arrive. A day whose files arrive later is picked
up by the landing sensor (``sc_assets.sensors``), which reruns exactly that partition.

The schedule starts STOPPED: turn it on in the UI (Automation) or with
``dagster schedule start daily_update_schedule`` and keep ``dagster-daemon`` running
(``make dev`` runs it).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from sc_assets.jobs import daily_update
from sc_assets.partitions import TIMEZONE, CalendarRangeError, is_trading_day, to_key

CRON = "30 18 * * 1-5"
SHANGHAI = ZoneInfo(TIMEZONE)


def _shanghai_day(ts: datetime) -> str:
    if ts.tzinfo is None:  # naive times are read as Shanghai wall-clock time
        ts = ts.replace(tzinfo=SHANGHAI)
    return ts.astimezone(SHANGHAI).strftime("%Y-%m-%d")


@dg.schedule(
    name="daily_update_schedule",
    job=daily_update,
    cron_schedule=CRON,
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="daily_update for the day's partition at 18:30 Asia/Shanghai on SSE trading days; "
    "non-trading weekdays are skipped.",
    tags={"sc_assets/trigger": "schedule"},
)
def daily_update_schedule(context: dg.ScheduleEvaluationContext):
    """Request the trading day's partition after the close; skip exchange holidays."""
    day = _shanghai_day(context.scheduled_execution_time)
    try:
        trading = is_trading_day(day)
    except CalendarRangeError as exc:
        return dg.SkipReason(f"{day}: {exc}")
    if not trading:
        return dg.SkipReason(f"{day} is not an SSE trading day: no run")
    key = to_key(day)
    return dg.RunRequest(run_key=key, partition_key=key, tags={"sc_assets/trigger": "schedule"})


SCHEDULES = [daily_update_schedule]

__all__ = ["CRON", "SCHEDULES", "daily_update_schedule"]
