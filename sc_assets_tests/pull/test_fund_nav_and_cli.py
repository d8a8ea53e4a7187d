"""Fund NAV CSV validation/splitting and the ``sc-assets pull`` command (click CliRunner)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from sc_assets.cli import main
from sc_assets.feeds import read_landing_file
from sc_assets.pull import cli as pull_cli
from sc_assets.pull.core import FundNavFormatError
from sc_assets.pull.fund_nav import land_fund_nav, read_fund_nav_csv
from sc_assets.pull.tushare import TushareClient
from sc_assets_tests.pull.fakes import RecordedTushareTransport

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fund_nav_example.csv"


def test_example_file_splits_into_one_landing_file_per_nav_date(data_dir):
    src = pd.read_csv(EXAMPLE, dtype="str", keep_default_na=False)
    counts = land_fund_nav(EXAMPLE, data_dir)
    files = sorted((data_dir / "landing" / "fund_nav").glob("*.csv"))
    expected = sorted(pd.to_datetime(src["nav_date"]).dt.strftime("%Y%m%d").unique())
    assert [f.stem for f in files] == expected
    assert counts["written"] == len(expected) and counts["funds"] == src["fund_id"].nunique()
    back = pd.concat([read_landing_file(f, "fund_nav").to_pandas() for f in files])
    assert len(back) == len(src)
    merged = back.assign(nav_date=pd.to_datetime(back["nav_date"]).dt.strftime("%Y-%m-%d")).merge(
        src, on=["fund_id", "nav_date"], suffixes=("", "_src"))
    assert (merged["adj_nav"] == merged["adj_nav_src"].astype(float)).all()
    assert merged.loc[merged["strategy"] == "market_neutral", "benchmark"].isna().all()
    assert set(merged["manager_aum_bucket"]) <= {">=10bn", "5-10bn", "<5bn"}
    # rerun: nothing rewritten
    assert land_fund_nav(EXAMPLE, data_dir)["unchanged"] == len(expected)


def test_bad_fund_nav_rows_are_named_by_line_and_column(tmp_path):
    rows = EXAMPLE.read_text(encoding="utf-8").splitlines()
    bad = rows[:2] + [
        rows[2].replace(">=10bn", "huge"),  # line 3: bucket
        rows[3].replace("2024-01-19", "2024-01-20"),  # line 4: a Saturday
        rows[4].replace("1.3318", "-1"),  # line 5: NAV <= 0
    ]
    p = tmp_path / "navs.csv"
    p.write_text("\n".join(bad) + "\n", encoding="gbk")  # GBK is accepted
    with pytest.raises(FundNavFormatError) as err:
        read_fund_nav_csv(p)
    msg = str(err.value)
    assert "line 3, column 'manager_aum_bucket'" in msg
    assert "line 4, column 'nav_date': not an SSE trading day" in msg
    assert "line 5, column 'adj_nav'" in msg
    p.write_text(rows[0].replace(",manager_aum_bucket", "") + "\n", encoding="utf-8")
    with pytest.raises(FundNavFormatError, match=r"missing column\(s\) \['manager_aum_bucket'\]"):
        read_fund_nav_csv(p)


def test_pull_help_documents_sources_feeds_and_options():
    out = CliRunner().invoke(main, ["pull", "--help"])
    assert out.exit_code == 0
    for text in ("tushare", "akshare", "fund-nav-csv", "TUSHARE_TOKEN", "--start", "--end", "--feeds",
                 "--data-dir", "--calls-per-minute", "--refresh", "stock_daily", "index_weight", "etf_share",
                 "landing/<feed>/<YYYYMMDD>.csv"):
        assert text in out.output, text
    assert "pull" in CliRunner().invoke(main, ["--help"]).output


def test_cli_missing_token_is_a_clear_error(data_dir, monkeypatch):
    monkeypatch.delenv("TUSHARE_TOKEN", raising=False)
    out = CliRunner().invoke(main, ["pull", "--source", "tushare", "--start", "2024-01-22", "--data-dir", str(data_dir)])
    assert out.exit_code != 0
    assert "TUSHARE_TOKEN" in out.output and "Traceback" not in out.output


def test_cli_end_to_end_with_recorded_tushare(data_dir, monkeypatch):
    transport = RecordedTushareTransport()
    monkeypatch.setattr(pull_cli, "_client", lambda source: TushareClient(token="t", transport=transport))
    args = ["pull", "--source", "tushare", "--start", "2024-01-20", "--end", "2024-01-23", "--feeds", "daily,adj_factor",
            "--feeds", "index_daily", "--index", "000905.SH", "--data-dir", str(data_dir), "--no-progress"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    # 2024-01-20/21 are a weekend: only the two sessions are pulled
    assert "2 trading days 2024-01-22..2024-01-23" in out.output
    assert sorted(p.name for p in (data_dir / "landing" / "stock_daily").iterdir()) == ["20240122.csv", "20240123.csv"]
    assert sorted(p.name for p in (data_dir / "landing").iterdir()) == ["adj_factor", "index_daily", "stock_daily"]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "0 calls" in again.output


def test_cli_rejects_unknown_feeds_and_dates_outside_the_calendar(data_dir, monkeypatch):
    monkeypatch.setenv("TUSHARE_TOKEN", "t")
    out = CliRunner().invoke(main, ["pull", "--source", "tushare", "--start", "2024-01-22", "--feeds", "ticks"])
    assert out.exit_code != 0 and "unknown feed(s) ['ticks']" in out.output
    out = CliRunner().invoke(main, ["pull", "--source", "tushare", "--start", "2099-01-02"])
    assert out.exit_code != 0 and "outside the SSE calendar" in out.output


def test_cli_fund_nav_csv(data_dir):
    out = CliRunner().invoke(main, ["pull", "--source", "fund-nav-csv", "--file", str(EXAMPLE), "--data-dir", str(data_dir)])
    assert out.exit_code == 0, out.output
    assert "3 funds" in out.output
    assert (data_dir / "landing" / "fund_nav" / "20240208.csv").exists()


def test_landed_fund_navs_pass_the_raw_layer_validation(data_dir):
    from sc_assets.resources.feed_source import LandingFeedSource

    land_fund_nav(EXAMPLE, data_dir)
    days = sorted(p.stem for p in (data_dir / "landing" / "fund_nav").glob("*.csv"))
    batch = LandingFeedSource(data_dir=str(data_dir)).read("fund_nav", [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in days])
    assert batch.landed == len(pd.read_csv(EXAMPLE)) and len(batch.quarantined) == 0, batch.reasons
