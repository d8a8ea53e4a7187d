"""Issue 4 acceptance: the default episode, read as a user would, through the raw layer.

The default market (demo settings: 1,200 stocks, 2022-01-04 .. 2024-03-29, default seed) is
simulated once; the raw assets are materialized with Dagster for 2023-12-01 .. 2024-02-08 from
its landing files (Tushare CSV and GBK vendor exports mixed); every number below is computed
from the ``raw.*`` DuckDB views, never from the simulator's internals (the ground truth is only
used for the quant holdings, which no feed carries).
"""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sc_assets.assets.raw import RAW_ASSETS
from sc_assets.resources import LandingFeedSource, Warehouse
from sc_assets.simulator import SimulationParams, simulate

WINDOW = ("2024-01-02", "2024-02-07")  # the study's drawdown window (start = close of 2023-12-29)
BASE_DAY = "2023-12-29"
DAILY = ["stock_daily", "daily_basic", "adj_factor", "index_daily", "fut_daily", "fund_nav", "index_weight"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("default_market")
    simulate(root, SimulationParams())
    res = {"warehouse": Warehouse(data_dir=str(root)), "feed_source": LandingFeedSource(data_dir=str(root))}
    tags = {"dagster/asset_partition_range_start": "2023-12-01", "dagster/asset_partition_range_end": "2024-02-08"}
    daily = dg.materialize([RAW_ASSETS[f] for f in DAILY], tags=tags, resources=res)
    ref = dg.materialize([RAW_ASSETS["fut_basic"], RAW_ASSETS["stock_basic"]], resources=res)
    assert daily.success and ref.success
    wh = res["warehouse"]
    quarantined = sum(pq.read_metadata(f).num_rows for f in (root / "lake" / "quarantine").rglob("*.parquet"))
    assert quarantined == 0  # every simulated row passes the raw layer's validation
    return root, wh


def _q(wh: Warehouse, sql: str) -> pd.DataFrame:
    with wh.connect() as con:
        return con.execute(sql).df()


def _index_levels(wh: Warehouse) -> pd.DataFrame:
    df = _q(wh, "select trade_date, ts_code, close from raw.index_daily")
    return df.pivot(index="trade_date", columns="ts_code", values="close").sort_index()


def _mdd(v: pd.Series | pd.DataFrame):
    return (v / v.cummax() - 1).min()


def test_smallcap_drawdown_three_times_csi300_and_monotone_in_cap(raw):
    _, wh = raw
    lv = _index_levels(wh)
    lv.index = pd.to_datetime(lv.index)
    win = lv.loc[BASE_DAY:WINDOW[1]]
    dd = _mdd(win)
    assert dd["8841431.WI"] <= 3 * dd["000300.SH"]  # micro-cap index
    assert dd["932000.CSI"] <= 3 * dd["000300.SH"]  # CSI2000
    assert dd["8841431.WI"] < dd["932000.CSI"] < dd["000852.SH"] < dd["000905.SH"] < dd["000300.SH"] < 0
    # per stock compounded return over the window by total-cap decile at the base day (METHODS §3)
    px = _q(wh, f"""select s.ts_code, s.trade_date, s.close * a.adj_factor as ap
                    from raw.stock_daily s join raw.adj_factor a using (ts_code, trade_date)
                    where s.trade_date between '{BASE_DAY}' and '{WINDOW[1]}'""")
    ap = px.pivot(index="trade_date", columns="ts_code", values="ap").sort_index()
    ret = (ap.ffill().iloc[-1] / ap.iloc[0] - 1).dropna()
    cap = _q(wh, f"select ts_code, total_mv from raw.daily_basic where trade_date = '{BASE_DAY}'").set_index(
        "ts_code")["total_mv"].reindex(ret.index)
    dec = pd.qcut(cap.rank(method="first"), 10, labels=False) + 1
    med = ret.groupby(dec).median()
    # monotone: each smaller decile falls more; 1 pp tolerance for the sampling noise of 120-stock medians
    assert (med.diff().dropna() > -0.01).all(), med.round(3).to_dict()
    assert med.corr(pd.Series(med.index, index=med.index), method="spearman") > 0.95
    assert med.iloc[0] < med.iloc[-1] - 0.2


def test_main_im_basis_below_minus_30pct_on_wave1(raw):
    _, wh = raw
    f = _q(wh, """select f.ts_code, f.close, f.oi, b.fut_code, b.delist_date, b.underlying, i.close as spot
                  from raw.fut_daily f join raw.fut_basic b using (ts_code)
                  join raw.index_daily i on i.ts_code = b.underlying and i.trade_date = f.trade_date
                  where f.trade_date = '2024-01-22'""")
    f = f.sort_values(["fut_code", "oi", "delist_date"], ascending=[True, False, True]).groupby("fut_code").head(1)
    days = (pd.to_datetime(f["delist_date"]) - pd.Timestamp("2024-01-22")).dt.days.clip(lower=1)
    f["basis_ann"] = (f["close"] / f["spot"] - 1) * 365 / days
    b = f.set_index("fut_code")["basis_ann"]
    assert b["IM"] < -0.30
    assert -0.30 <= b["IC"] <= -0.20
    assert b["IF"] > -0.15 and b["IH"] > -0.15


def _excess_mdd(wh: Warehouse) -> pd.DataFrame:
    nav = _q(wh, "select fund_id, nav_date, strategy, benchmark, manager_aum_bucket, adj_nav from raw.fund_nav")
    lv = _index_levels(wh)
    out = []
    for fid, g in nav[nav["strategy"] == "index_enhancement"].groupby("fund_id"):
        g = g.sort_values("nav_date")
        b = lv[g["benchmark"].iloc[0]].reindex(g["nav_date"]).to_numpy()
        e = (g["adj_nav"].to_numpy() / g["adj_nav"].iloc[0]) / (b / b[0])  # relative excess NAV (METHODS §5)
        out.append((fid, g["benchmark"].iloc[0], g["manager_aum_bucket"].iloc[0], _mdd(pd.Series(e))))
    return pd.DataFrame(out, columns=["fund_id", "benchmark", "bucket", "mdd"])


def test_index_enhancement_median_excess_drawdown(raw):
    _, wh = raw
    ex = _excess_mdd(wh)
    med = ex.groupby("benchmark")["mdd"].median()
    assert -0.20 <= med["000852.SH"] <= -0.05  # design ~10%, study 9.85%
    assert -0.20 <= med["000905.SH"] <= -0.05  # design ~12%, study 12.5%
    assert ex["mdd"].min() > -0.35


def test_neutral_products_worst_week_in_crash_window(raw):
    _, wh = raw
    nav = _q(wh, "select fund_id, nav_date, adj_nav from raw.fund_nav where strategy = 'market_neutral'")
    wide = nav.pivot(index="nav_date", columns="fund_id", values="adj_nav").sort_index()
    idx = wide.pct_change(fill_method=None).mean(axis=1).dropna()  # equal-weighted neutral index (METHODS §4)
    worst = pd.Timestamp(idx.idxmin())
    assert pd.Timestamp("2024-01-15") <= worst <= pd.Timestamp("2024-02-08")
    assert -0.09 < idx.min() < -0.03  # design ~ -5% (study -5.40%, week of 2024-02-08)


def test_quant_holdings_share_higher_in_microcap_bucket_than_csi1000(raw):
    root, wh = raw
    ff = _q(wh, f"select ts_code, close * free_share * 1e4 as ff, total_mv from raw.daily_basic "
                f"where trade_date = '{BASE_DAY}'").set_index("ts_code")
    gt = pd.read_parquet(root / "ground_truth" / "stock_days.parquet", columns=["trade_date", "ts_code", "quant_cny"],
                         filters=[("trade_date", "=", pd.Timestamp(BASE_DAY).date())]).set_index("ts_code")
    q = gt["quant_cny"].reindex(ff.index).fillna(0)
    micro = ff["total_mv"].nsmallest(int(0.2 * len(ff))).index  # the small-cap bucket (smallest 20%)
    w = _q(wh, "select index_code, con_code from raw.index_weight where trade_date = '2023-12-01'")
    csi1000 = w.loc[w["index_code"] == "000852.SH", "con_code"]
    hs_micro = q[micro].sum() / ff.loc[micro, "ff"].sum()
    hs_1000 = q.reindex(csi1000).sum() / ff["ff"].reindex(csi1000).sum()
    assert hs_micro > hs_1000
    assert 0.12 < hs_micro < 0.20  # calibrated to the study's 16.07% (Table 2)
    assert np.isfinite(hs_1000) and hs_1000 > 0
