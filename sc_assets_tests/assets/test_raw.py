"""Raw layer end to end: dg.materialize the raw assets on the hand-made landing fixtures."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from sc_assets.assets.raw import RAW_ASSETS
from sc_assets.feeds.schemas import DAILY_FEEDS, FEEDS, REFERENCE_FEEDS
from sc_assets.resources import LandingFeedSource, Warehouse
from sc_assets_tests.conftest import FIXTURES

DAY = "2024-01-22"


def _resources(root: Path) -> dict:
    return {"warehouse": Warehouse(data_dir=str(root)), "feed_source": LandingFeedSource(data_dir=str(root))}


def _root(base: Path) -> Path:
    root = base / "data"
    shutil.copytree(FIXTURES / "landing", root / "landing")
    return root


def _lake_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "lake").rglob("*.parquet"))}


def _meta(result: dg.ExecuteInProcessResult, feed: str) -> dict:
    evs = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["raw", feed]]
    assert evs
    return {k: getattr(v, "value", v) for k, v in evs[-1].materialization.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def one_day(tmp_path_factory: pytest.TempPathFactory):
    root = _root(tmp_path_factory.mktemp("raw_one_day"))
    res = _resources(root)
    daily = dg.materialize([RAW_ASSETS[f] for f in DAILY_FEEDS], partition_key=DAY, resources=res)
    ref = dg.materialize([RAW_ASSETS[f] for f in REFERENCE_FEEDS], resources=res)
    return root, daily, ref


def test_raw_layer_materializes_one_partition_and_duckdb_answers(one_day) -> None:
    root, daily, ref = one_day
    assert daily.success and ref.success
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from raw.stock_daily").fetchall() == [(5,)]
        assert con.execute("select count(*) from quarantine.stock_daily").fetchall() == [(3,)]
        assert con.execute("select count(*) from raw.stock_basic").fetchall() == [(6,)]
        types = dict(con.execute("select column_name, data_type from information_schema.columns "
                                 "where table_schema = 'raw' and column_name = 'trade_date'").fetchall())
        assert set(types.values()) == {"DATE"}
        tables = {t for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'").fetchall()}
    assert tables == set(FEEDS) - {"fund_nav"} | {"fund_nav"}  # every feed has a view, fund_nav empty
    for feed in DAILY_FEEDS:
        assert Warehouse(data_dir=str(root)).days_present("raw", feed, [DAY]) == [DAY], feed


def test_metadata_and_checks(one_day) -> None:
    _, daily, ref = one_day
    m = _meta(daily, "stock_daily")
    assert (m["rows_landed"], m["rows_accepted"], m["rows_quarantined"]) == (8, 5, 3)
    assert m["quarantine_reasons"] == {"duplicate row": 1, "high < low": 1, "missing required value close": 1}
    assert m["source_files"] == ["landing/stock_daily/20240122.csv"]
    assert m["date_range"] == f"{DAY} .. {DAY}" and m["dagster/row_count"] == 5
    assert "ts_code" in [c.name for c in m["dagster/column_schema"].columns]
    checks = {**_checks(daily), **_checks(ref)}
    for feed in FEEDS:
        assert checks[(feed, "rows_accounted_for")].passed, feed
        assert checks[(feed, "gx_suite_passes")].passed, (feed, checks[(feed, "gx_suite_passes")].metadata)
        assert checks[(feed, "landing_file_present")].passed, feed  # fund_nav: 01-22 is not a NAV day
    s = _meta(ref, "stock_basic")
    assert (s["rows_landed"], s["rows_accepted"], s["rows_superseded"]) == (11, 6, 5)


def test_quarantine_rows_point_back_to_the_file(one_day) -> None:
    root, _, _ = one_day
    q = Warehouse(data_dir=str(root)).read("quarantine", "stock_daily", days=[DAY])
    lines = (root / "landing/stock_daily/20240122.csv").read_text().splitlines()
    for r in q.itertuples():
        assert lines[r.source_line - 1].startswith(r.ts_code)
        assert r.source_file == "landing/stock_daily/20240122.csv"


def test_backfill_range_in_one_run_is_idempotent(tmp_path: Path) -> None:
    root = _root(tmp_path)
    res = _resources(root)
    tags = {"dagster/asset_partition_range_start": "2024-01-22", "dagster/asset_partition_range_end": "2024-01-24"}
    first = dg.materialize([RAW_ASSETS["stock_daily"]], tags=tags, resources=res)
    assert first.success
    # one run, one step, one materialization event per partition
    assert len(first.get_step_success_events()) == 1
    assert sorted(e.partition for e in first.get_asset_materialization_events()) == [
        "2024-01-22", "2024-01-23", "2024-01-24"]
    m = _meta(first, "stock_daily")
    assert m["partitions"] == 3 and (m["rows_landed"], m["rows_accepted"]) == (18, 15)
    assert m["date_range"] == "2024-01-22 .. 2024-01-24"
    digest = _lake_digest(root)
    assert len(digest) == 2  # the raw month file (3 partitions) + the quarantine one (the day with rows)
    assert Warehouse(data_dir=str(root)).partitions("quarantine", "stock_daily") == ["2024-01-22"]
    second = dg.materialize([RAW_ASSETS["stock_daily"]], tags=tags, resources=res)
    assert second.success
    assert _lake_digest(root) == digest  # same files, same bytes: no duplicates on rerun
    wh = Warehouse(data_dir=str(root))
    df = wh.read("raw", "stock_daily")
    assert len(df) == 15 and not df.duplicated(["ts_code", "trade_date", "source_file"]).any()
    assert sorted(set(df["trade_date"].astype(str))) == ["2024-01-22", "2024-01-23", "2024-01-24"]
    # a corrected re-delivery replaces the partition and clears its quarantine rows
    landing = root / "landing/stock_daily/20240122.csv"
    landing.write_text("\n".join(landing.read_text().splitlines()[:6]) + "\n")
    third = dg.materialize([RAW_ASSETS["stock_daily"]], partition_key="2024-01-22", resources=res)
    assert third.success and _meta(third, "stock_daily")["rows_quarantined"] == 0
    assert wh.read("quarantine", "stock_daily").empty
    assert len(wh.read("raw", "stock_daily", days=["2024-01-22"])) == 5


def test_missing_file_warns_and_unparseable_file_fails(tmp_path: Path) -> None:
    root = _root(tmp_path)
    res = _resources(root)
    shutil.copy(root / "landing/stock_daily/20240123.csv.gz", root / "landing/stock_daily/20240127.csv.gz")  # a Saturday
    tags = {"dagster/asset_partition_range_start": "2024-01-25", "dagster/asset_partition_range_end": "2024-01-29"}
    empty = dg.materialize([RAW_ASSETS["stock_daily"]], tags=tags, resources=res)
    assert empty.success
    check = _checks(empty)[("stock_daily", "landing_file_present")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["days_without_file"].value == ["2024-01-25", "2024-01-26", "2024-01-29"]
    assert check.metadata["files_on_non_trading_days"].value == ["landing/stock_daily/20240127.csv.gz"]
    wh = Warehouse(data_dir=str(root))
    assert "2024-01-25" in wh.partitions("raw", "stock_daily") and wh.read("raw", "stock_daily", days=["2024-01-25"]).empty

    bad = root / "landing/stock_daily/20240130.csv"
    bad.write_text("ts_code,trade_date,open,high,low,close,pre_close,vol,amount\n"
                   "600000.SH,20240130,6.6,6.8,6.3,6.6,6.5,100,66\n"
                   "000001.SZ,20240130,9.1,9.3,9.0,n/a?,9.0,100,91\n")
    failed = dg.materialize([RAW_ASSETS["stock_daily"]], partition_key="2024-01-30", resources=res,
                            raise_on_error=False)
    assert not failed.success
    msg = " ".join(e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure)
    assert "landing/stock_daily/20240130.csv" in msg and "line 3" in msg and "'close'" in msg
    assert bad.exists()  # the file stays in landing
    assert "2024-01-30" not in wh.partitions("raw", "stock_daily")


def test_range_run_puts_run_level_lists_on_the_last_partition_event_only(tmp_path: Path) -> None:
    """A backfill records one materialization per partition: counts on every event, the file list,
    schema and preview once (on the last partition's event, the one the UI shows)."""
    root = _root(tmp_path)
    tags = {"dagster/asset_partition_range_start": "2024-01-22", "dagster/asset_partition_range_end": "2024-01-24"}
    res = dg.materialize([RAW_ASSETS["stock_daily"]], tags=tags, resources=_resources(root))
    assert res.success
    evs = {e.partition: e.materialization.metadata for e in res.get_asset_materialization_events()}
    assert sorted(evs) == ["2024-01-22", "2024-01-23", "2024-01-24"]
    for day, m in evs.items():
        assert m["rows_landed"].value == evs["2024-01-24"]["rows_landed"].value > 0 and m["partitions"].value == 3
        last = day == "2024-01-24"
        assert ("source_files" in m) == last and ("dagster/column_schema" in m) == last and ("preview" in m) == last
    assert len(evs["2024-01-24"]["source_files"].value) == 3
