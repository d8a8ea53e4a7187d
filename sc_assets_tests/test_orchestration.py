"""The after-close schedule and the landing sensor (unit level, no daemon).

The sensor is evaluated against a small stand-in code location with the same asset keys as
the real chain (raw feeds -> staging -> marts -> analytics), so these tests depend only on the
orchestration code; ``test_definitions.py`` checks the real Definitions.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from sc_assets.feeds.schemas import FEEDS
from sc_assets.jobs import RANGE_END_TAG, RANGE_START_TAG, daily_update, full_backfill, range_tags
from sc_assets.partitions import trading_days
from sc_assets.schedules import daily_update_schedule
from sc_assets.sensors import (
    decode_cursor,
    encode_cursor,
    file_sha,
    landing_sensor,
    scan_landing,
)

SH = ZoneInfo("Asia/Shanghai")


# ---- schedule ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "when, expected_key",
    [
        (datetime(2024, 2, 8, 18, 30, tzinfo=SH), "2024-02-08"),  # last session before Spring Festival
        (datetime(2024, 1, 22, 18, 30, tzinfo=SH), "2024-01-22"),  # wave-1 day
        (datetime(2024, 2, 9, 18, 30, tzinfo=SH), None),  # Friday of Spring Festival: closed
        (datetime(2024, 2, 12, 18, 30, tzinfo=SH), None),  # Monday of Spring Festival: closed
        (datetime(2023, 10, 2, 18, 30, tzinfo=SH), None),  # National Day
    ],
)
def test_schedule_requests_the_trading_day_and_skips_holidays(when, expected_key):
    ctx = dg.build_schedule_context(scheduled_execution_time=when)
    result = daily_update_schedule(ctx)
    if expected_key is None:
        assert isinstance(result, dg.SkipReason)
        assert "not an SSE trading day" in result.skip_message
    else:
        assert isinstance(result, dg.RunRequest)
        assert result.partition_key == expected_key
        assert result.run_key == expected_key


def test_schedule_uses_the_shanghai_date_not_utc():
    # 18:30 Shanghai on 2024-01-22 is 10:30 UTC the same day; 01:00 Shanghai on 2024-01-23 is
    # still 2024-01-22 in UTC: the schedule must use the Shanghai date.
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2024, 1, 23, 1, 0, tzinfo=SH))
    result = daily_update_schedule(ctx)
    assert result.partition_key == "2024-01-23"


def test_schedule_definition():
    assert daily_update_schedule.cron_schedule == "30 18 * * 1-5"
    assert daily_update_schedule.execution_timezone == "Asia/Shanghai"
    assert daily_update_schedule.job_name == daily_update.name


def test_range_tags():
    assert range_tags("2024-01-02", "2024-02-08") == {
        RANGE_START_TAG: "2024-01-02", RANGE_END_TAG: "2024-02-08"}
    assert full_backfill.name == "full_backfill"


# ---- sensor -----------------------------------------------------------------------------------
def _standin_definitions() -> dg.Definitions:
    """raw.<feed> for every feed -> staging.stg_<feed> -> marts panels -> analytics."""
    specs = []
    for name, spec in FEEDS.items():
        part = trading_days if spec.partitioned else None
        specs.append(dg.AssetSpec(["raw", name], partitions_def=part, group_name="raw"))
        specs.append(dg.AssetSpec(["staging", f"stg_{name}"], deps=[["raw", name]], partitions_def=part,
                                  group_name="staging"))
    specs.append(dg.AssetSpec(["marts", "stock_daily_panel"], partitions_def=trading_days, group_name="marts",
                              deps=[["staging", "stg_stock_daily"], ["staging", "stg_daily_basic"],
                                    ["staging", "stg_stock_basic"]]))
    specs.append(dg.AssetSpec(["marts", "index_daily_panel"], partitions_def=trading_days, group_name="marts",
                              deps=[["staging", "stg_index_daily"]]))
    specs.append(dg.AssetSpec(["marts", "fund_nav_panel"], group_name="marts",
                              deps=[["staging", "stg_fund_nav"], ["marts", "index_daily_panel"]]))
    specs.append(dg.AssetSpec(["drawdowns", "excess_drawdown_table"], group_name="drawdowns",
                              deps=[["marts", "fund_nav_panel"]]))
    specs.append(dg.AssetSpec(["factors", "size_exposures"], partitions_def=trading_days, group_name="factors",
                              deps=[["marts", "stock_daily_panel"]]))
    return dg.Definitions(assets=specs, jobs=[daily_update], sensors=[landing_sensor])


@pytest.fixture(scope="module")
def standin_defs():
    return _standin_definitions()


def _drop(root: Path, feed: str, name: str, text: str, age_s: float = 60.0) -> Path:
    path = root / "landing" / feed / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def _tick(defs, cursor=None):
    ctx = dg.build_sensor_context(cursor=cursor, definitions=defs)
    result = landing_sensor(ctx)
    requests = [] if isinstance(result, dg.SkipReason) or result is None else list(result)
    return requests, ctx.cursor


def _keys(req: dg.RunRequest) -> set[str]:
    return {k.to_user_string() for k in req.asset_selection}


def test_new_file_requests_its_partition_and_downstream(data_dir, standin_defs):
    _drop(data_dir, "stock_daily", "20240122.csv", "ts_code,trade_date\n600000.SH,20240122\n")
    requests, cursor = _tick(standin_defs)
    assert len(requests) == 1
    req = requests[0]
    assert req.partition_key == "2024-01-22"
    assert "stock_daily/20240122.csv@" in req.run_key
    # exactly the changed feed and what is downstream of it, nothing upstream or beside it
    assert _keys(req) == {"raw/stock_daily", "staging/stg_stock_daily", "marts/stock_daily_panel",
                          "factors/size_exposures"}
    assert set(decode_cursor(cursor)) == {"stock_daily/20240122.csv"}


def test_identical_redrop_does_nothing_and_change_triggers_exactly_its_partition(data_dir, standin_defs):
    body = "ts_code,trade_date\n600000.SH,20240122\n"
    _drop(data_dir, "stock_daily", "20240122.csv", body)
    _drop(data_dir, "stock_daily", "20240123.csv", body.replace("22", "23"))
    first, cursor = _tick(standin_defs)
    assert sorted(r.partition_key for r in first) == ["2024-01-22", "2024-01-23"]

    # nothing changed -> skip
    again, cursor = _tick(standin_defs, cursor)
    assert again == []
    # the same bytes dropped again (new mtime) -> hashed, recognised, no run
    _drop(data_dir, "stock_daily", "20240122.csv", body, age_s=10)
    again, cursor = _tick(standin_defs, cursor)
    assert again == []
    # a changed file -> one run for exactly its day, with a new run key
    _drop(data_dir, "stock_daily", "20240123.csv", body.replace("22", "23") + "000001.SZ,20240123\n", age_s=5)
    changed, cursor = _tick(standin_defs, cursor)
    assert [r.partition_key for r in changed] == ["2024-01-23"]
    assert changed[0].run_key not in {r.run_key for r in first}
    sha = file_sha(data_dir / "landing" / "stock_daily" / "20240123.csv")
    assert changed[0].run_key.endswith(f"stock_daily/20240123.csv@{sha}")


def test_files_of_one_day_share_one_run(data_dir, standin_defs):
    _drop(data_dir, "stock_daily", "20240205.csv", "a\n1\n")
    _drop(data_dir, "index_daily", "20240205.csv.gz", "b\n2\n")
    requests, _ = _tick(standin_defs)
    assert len(requests) == 1 and requests[0].partition_key == "2024-02-05"
    assert {"raw/stock_daily", "raw/index_daily", "marts/fund_nav_panel"} <= _keys(requests[0])


def test_many_changed_days_become_one_single_run_backfill(data_dir, standin_defs):
    for day in ["20240102", "20240103", "20240104", "20240105", "20240108", "20240109", "20240110"]:
        _drop(data_dir, "index_daily", f"{day}.csv", f"x\n{day}\n")
    requests, _ = _tick(standin_defs)
    assert len(requests) == 1
    req = requests[0]
    assert req.partition_key is None
    assert req.tags[RANGE_START_TAG] == "2024-01-02" and req.tags[RANGE_END_TAG] == "2024-01-10"


def test_reference_snapshot_requests_unpartitioned_assets_only(data_dir, standin_defs):
    _drop(data_dir, "stock_basic", "20240329.csv", "ts_code,name\n600000.SH,PF\n")
    requests, _ = _tick(standin_defs)
    assert len(requests) == 1
    req = requests[0]
    assert req.partition_key is None and RANGE_START_TAG not in req.tags
    assert _keys(req) == {"raw/stock_basic", "staging/stg_stock_basic"}


def test_ignored_files(data_dir, standin_defs, tmp_path):
    _drop(data_dir, "stock_daily", "20240210.csv", "holiday\n")  # Spring Festival: no session
    _drop(data_dir, "stock_daily", "notes.txt", "x\n")
    _drop(data_dir, "stock_daily", ".20240122.csv.part", "x\n")
    _drop(data_dir, "no_such_feed", "20240122.csv", "x\n")
    _drop(data_dir, "stock_daily", "20240124.csv", "fresh\n", age_s=0)  # still being written
    outside = tmp_path / "outside.csv"
    outside.write_text("secret\n")
    (data_dir / "landing" / "stock_daily" / "20240125.csv").symlink_to(outside)  # points out of the root
    requests, cursor = _tick(standin_defs)
    assert requests == []
    assert decode_cursor(cursor) == {}


def test_cursor_roundtrip_and_garbage_cursor(data_dir):
    files = {f"stock_daily/2024{m:02d}{d:02d}.csv": [123456789 + d, 1000 + d, "0123456789abcdef"]
             for m in range(1, 13) for d in range(1, 29)}
    enc = encode_cursor(files)
    assert decode_cursor(enc) == files
    assert len(enc) < 30 * len(files)  # compact: ~20 bytes per file
    assert decode_cursor("not a cursor") == {}
    assert decode_cursor(None) == {}


def test_scan_forgets_deleted_files(data_dir):
    p = _drop(data_dir, "stock_daily", "20240122.csv", "x\n")
    changes, state = scan_landing(data_dir, {})
    assert [c.name for c in changes] == ["20240122.csv"]
    p.unlink()
    changes, state = scan_landing(data_dir, state)
    assert changes == [] and state == {}


def test_sensor_against_the_real_code_location(data_dir):
    """The hand-made landing fixtures, seen by the sensor of the real Definitions."""
    import shutil

    from sc_assets.definitions import defs

    shutil.copytree(Path(__file__).parent / "fixtures" / "landing", data_dir / "landing")
    for p in (data_dir / "landing").rglob("*"):
        if p.is_file():
            t = time.time() - 60
            os.utime(p, (t, t))
    ctx = dg.build_sensor_context(definitions=defs)
    requests = list(landing_sensor(ctx))
    graph = defs.resolve_asset_graph()
    by_day = {r.partition_key: r for r in requests}
    # fixture days 2024-01-19 (fund_nav), 22, 23, 24, 26 -> one run each (<= 5 days)
    assert set(by_day) == {"2024-01-19", "2024-01-22", "2024-01-23", "2024-01-24", "2024-01-26"}
    day22 = {k.to_user_string() for k in by_day["2024-01-22"].asset_selection}
    assert {"raw/stock_daily", "staging/stg_stock_daily", "marts/stock_daily_panel"} <= day22
    # the reference snapshots changed in the same tick: included in the day runs
    assert {"raw/stock_basic", "raw/fut_basic"} <= day22
    for r in requests:
        assert set(r.asset_selection) <= set(graph.get_all_asset_keys())
        # the daily_update job can run every requested selection
        defs.resolve_job_def("daily_update").get_subset(asset_selection=set(r.asset_selection))
    # a second tick with the cursor sees nothing new
    ctx2 = dg.build_sensor_context(definitions=defs, cursor=ctx.cursor)
    assert isinstance(landing_sensor(ctx2), dg.SkipReason)


# ---- demo helpers -----------------------------------------------------------------------------
def test_demo_landing_range_snaps_to_sessions(data_dir):
    from sc_assets.demo import landing_range

    for name in ("20231230.csv", "20240102.csv", "20240210.csv.gz", "notes.txt"):  # Sat, session, holiday
        _drop(data_dir, "stock_daily", name, "x\n")
    assert landing_range(data_dir) == ("2024-01-02", "2024-02-08")


def test_demo_instance_follows_dagster_home(tmp_path, monkeypatch):
    from sc_assets.demo import get_instance

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert get_instance().is_ephemeral
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    inst = get_instance()
    assert not inst.is_ephemeral and home.is_dir()
    assert Path(inst.root_directory).resolve() == home.resolve()
