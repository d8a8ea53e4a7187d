"""LandingFeedSource: listing, path safety, source columns, cross-file duplicates, snapshots."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from sc_assets.resources.feed_source import LandingFeedSource, quarantine_schema, raw_schema
from sc_assets.settings import UnsafePathError
from sc_assets_tests.conftest import FIXTURES


@pytest.fixture
def source(data_dir: Path) -> LandingFeedSource:
    shutil.copytree(FIXTURES / "landing", data_dir / "landing")
    return LandingFeedSource(data_dir=str(data_dir))


def test_list_files_per_feed_and_day(source: LandingFeedSource) -> None:
    files = source.list_files("stock_daily")
    assert [f.rel for f in files] == [
        "landing/stock_daily/20240122.csv", "landing/stock_daily/20240123.csv.gz", "landing/stock_daily/20240124.csv"]
    assert [f.rel for f in source.list_files("stock_daily", ["2024-01-23"])] == ["landing/stock_daily/20240123.csv.gz"]
    assert source.list_files("stock_daily", ["2024-01-25"]) == []
    with pytest.raises(KeyError):
        source.list_files("../etc")


def test_rows_carry_source_columns_and_trade_date(source: LandingFeedSource) -> None:
    b = source.read("stock_daily", ["2024-01-22", "2024-01-23", "2024-01-24"])
    assert b.table.schema.equals(raw_schema("stock_daily"))  # what the raw asset writes, as is
    assert list(b.rows.columns) == raw_schema("stock_daily").names
    assert list(b.quarantined.columns) == quarantine_schema("stock_daily").names
    assert b.landed == 8 + 5 + 5 == len(b.rows) + len(b.quarantined)
    assert b.reasons == {"duplicate row": 1, "high < low": 1, "missing required value close": 1}
    mtimes = {f.rel: f.mtime_ns for f in b.files}
    assert (b.rows["source_mtime_ns"] == b.rows["source_file"].map(mtimes)).all()
    assert b.rows.groupby("source_file")["trade_date"].nunique().eq(1).all()
    assert b.days_without_file == []


def test_fund_nav_trade_date_is_nav_date(source: LandingFeedSource) -> None:
    b = source.read("fund_nav", ["2024-01-19", "2024-01-22"])
    assert (b.rows["trade_date"] == b.rows["nav_date"]).all() and len(b.rows) == 2
    assert b.days_without_file == ["2024-01-22"]


def test_two_files_for_one_day_are_both_kept(source: LandingFeedSource, data_dir: Path) -> None:
    src = data_dir / "landing/stock_daily/20240123.csv.gz"
    (data_dir / "landing/stock_daily/20240123.csv").write_bytes(gzip.decompress(src.read_bytes()))
    os.utime(src, ns=(1, 1))  # the .gz is older
    b = source.read("stock_daily", ["2024-01-23"])
    assert len(b.rows) == 10 and len(b.quarantined) == 0
    assert b.rows.groupby("ts_code")["source_file"].nunique().eq(2).all()
    latest = b.rows.sort_values("source_mtime_ns").groupby("ts_code").tail(1)
    assert set(latest["source_file"]) == {"landing/stock_daily/20240123.csv"}


def test_symlink_out_of_the_root_is_refused(source: LandingFeedSource, data_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    shutil.copy(FIXTURES / "landing/stock_daily/20240122.csv", outside)
    (data_dir / "landing/stock_daily/20240125.csv").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        source.read("stock_daily", ["2024-01-25"])
    # a landing folder that is itself a link out of the root is refused too
    shutil.rmtree(data_dir / "landing/adj_factor")
    (data_dir / "landing/adj_factor").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        source.list_files("adj_factor")


def test_snapshots_merge_latest_wins(source: LandingFeedSource) -> None:
    b = source.read_snapshots("stock_basic")
    assert b.landed == 5 + 6 and len(b.rows) == 6 and b.superseded == 5 and b.accounted
    by_code = b.rows.set_index("ts_code")
    assert by_code.loc["600000.SH", "name"] == "浦发银行"  # the 2024-01-24 file overrides 2024-01-01
    assert set(b.rows["trade_date"]) == {pd.Timestamp("2024-01-24")}
    assert b.days == ["2024-01-01", "2024-01-24"]


def test_no_landing_folder_reads_empty(data_dir: Path) -> None:
    src = LandingFeedSource(data_dir=str(data_dir))
    b = src.read("stock_daily", ["2024-01-22"])
    assert b.landed == 0 and len(b.rows) == 0 and list(b.rows.columns) == raw_schema("stock_daily").names
    assert b.days_without_file == ["2024-01-22"]
