"""marts.fund_nav_panel: the benchmark close of each NAV row equals an as-of lookup (pandas
``merge_asof``: last index session on or before the NAV date, null close kept), on edge cases the
hand-made lake does not have (weekend NAV dates, NAVs before the first close, null closes, unknown
and missing benchmarks, several funds on one benchmark)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from sc_assets.sql_models import load_models


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    sessions = pd.bdate_range("2024-01-02", "2024-02-09")
    ix = pd.concat([
        pd.DataFrame({"index_code": "000905.SH", "trade_date": sessions,
                      "close": 5000.0 + np.arange(len(sessions))}),
        pd.DataFrame({"index_code": "000852.SH", "trade_date": sessions[3:],
                      "close": 6000.0 - np.arange(len(sessions) - 3)}),
    ], ignore_index=True)
    ix.loc[(ix.index_code == "000905.SH") & (ix.trade_date == "2024-01-19"), "close"] = np.nan  # null close
    nav_dates = pd.to_datetime(["2024-01-02", "2024-01-05", "2024-01-07", "2024-01-19", "2024-01-21",
                                "2024-01-26", "2024-02-10"])  # Sundays, a Saturday, a null-close Friday
    rows = []
    for fund, bench in (("F1", "000905.SH"), ("F2", "000905.SH"), ("F3", "000852.SH"), ("F4", None),
                        ("F5", "399999.SZ")):
        for k, d in enumerate(nav_dates):
            rows.append({"fund_id": fund, "trade_date": d, "nav_date": d, "name": fund, "strategy": "x",
                         "benchmark": bench, "manager": "m", "manager_aum_bucket": "<5bn",
                         "adj_nav": 1.0 + 0.01 * k + (0.001 if fund == "F2" else 0.0), "source_file": "f"})
    nav = pd.DataFrame(rows)
    for df in (ix, nav):
        df["trade_date"] = df["trade_date"].dt.date
    nav["nav_date"] = nav["trade_date"]
    return nav, ix


def test_bench_close_is_the_last_close_on_or_before_the_nav_date():
    nav, ix = _frames()
    model = load_models()["fund_nav_panel"]
    con = duckdb.connect()
    con.execute('CREATE SCHEMA staging; CREATE SCHEMA marts')
    con.register("nav_df", nav)
    con.register("ix_df", ix)
    con.execute('CREATE TABLE staging.stg_fund_nav AS SELECT * FROM nav_df')
    con.execute('CREATE TABLE marts.index_daily_panel AS SELECT * FROM ix_df')
    out = con.sql(model.sql).df()
    out["trade_date"] = pd.to_datetime(out["trade_date"])

    # oracle: pandas as-of merge per benchmark (exact date match included), then returns by fund
    left = nav.assign(trade_date=pd.to_datetime(nav["trade_date"])).sort_values("trade_date")
    right = ix.assign(trade_date=pd.to_datetime(ix["trade_date"])).sort_values("trade_date")
    oracle = pd.merge_asof(left, right.rename(columns={"index_code": "benchmark", "close": "bench_close"}),
                           on="trade_date", by="benchmark", direction="backward")
    oracle = oracle.sort_values(["fund_id", "trade_date"]).reset_index(drop=True)
    g = oracle.groupby("fund_id")
    oracle["fund_ret"] = oracle["adj_nav"] / g["adj_nav"].shift(1) - 1
    oracle["bench_ret"] = oracle["bench_close"] / g["bench_close"].shift(1) - 1
    oracle["excess_ret"] = oracle["fund_ret"] - oracle["bench_ret"]

    assert list(out.columns) == ["trade_date", "fund_id", "name", "strategy", "benchmark", "manager",
                                 "manager_aum_bucket", "adj_nav", "fund_ret", "bench_close", "bench_ret",
                                 "excess_ret"]
    assert len(out) == len(nav)
    assert (out["fund_id"].to_numpy() == oracle["fund_id"].to_numpy()).all()
    assert (out["trade_date"].to_numpy() == oracle["trade_date"].to_numpy()).all()
    for c in ("bench_close", "fund_ret", "bench_ret", "excess_ret"):
        np.testing.assert_allclose(out[c].astype(float), oracle[c].astype(float), rtol=1e-12, equal_nan=True)
    f1 = out[out.fund_id == "F1"].set_index("trade_date")["bench_close"]
    assert f1["2024-01-07"] == 5003.0  # Sunday -> Friday 2024-01-05's close
    assert np.isnan(f1["2024-01-19"]) and np.isnan(f1["2024-01-21"])  # the last session's close is null
    f3 = out[out.fund_id == "F3"].set_index("trade_date")["bench_close"]
    assert np.isnan(f3["2024-01-02"]) and f3["2024-01-05"] == 6000.0  # before the index's first close
    assert out.loc[out.fund_id.isin(["F4", "F5"]), "bench_close"].isna().all()
