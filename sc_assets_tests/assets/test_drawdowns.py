"""Drawdown assets end to end: marts built by hand (contract columns) -> dg.materialize -> lake tables
checked against independent computations (empyrical, pandas rolling corr, direct formulas)."""

from __future__ import annotations

import dagster as dg
import empyrical
import numpy as np
import pandas as pd
import pytest

from sc_assets.assets import drawdowns as A
from sc_assets.partitions import trading_days_between, week_end_sessions
from sc_assets.resources import Warehouse

INDICES = ["000300.SH", "000905.SH", "000852.SH", "932000.CSI", "8841431.WI"]
SMALL_BETA = {"000300.SH": 0.0, "000905.SH": 0.5, "000852.SH": 0.8, "932000.CSI": 1.0, "8841431.WI": 1.3}
CRASH = ("2024-01-15", "2024-02-07")


def _crash_factor(days: pd.DatetimeIndex) -> np.ndarray:
    """Daily small-cap factor: steady premium, a crash 2024-01-15..02-07, rebound after."""
    f = np.full(len(days), 0.0006)
    f[(days >= CRASH[0]) & (days <= CRASH[1])] = -0.02
    f[days > pd.Timestamp(CRASH[1])] = 0.012
    return f


def _build_marts(wh, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    days = trading_days_between("2023-06-01", "2024-03-29")
    f = _crash_factor(days)
    mkt = rng.normal(0.0, 0.008, len(days))
    rows = []
    closes = {}
    for code in INDICES:
        r = mkt + SMALL_BETA[code] * f + rng.normal(0, 0.002, len(days))
        close = 1000 * np.cumprod(1 + r)
        closes[code] = pd.Series(close, index=days)
        rows.append(pd.DataFrame({"trade_date": days.date, "index_code": code, "close": close,
                                  "pre_close": np.r_[1000, close[:-1]], "ret": r, "amount": 1e9}))
    idx = pd.concat(rows, ignore_index=True)
    wh.write_partitions("marts", "index_daily_panel", idx, days=[d.strftime("%Y-%m-%d") for d in days])

    # stocks over the crash window (+ base day): returns fall with size
    base, end = pd.Timestamp("2023-12-29"), pd.Timestamp("2024-02-07")
    wdays = days[(days >= base) & (days <= end)]
    n = 120
    caps = np.exp(rng.uniform(21, 28, n))
    lncap_z = (np.log(caps) - np.log(caps).mean()) / np.log(caps).std()
    srows = []
    for i, d in enumerate(wdays):
        ret = np.where(i == 0, 0.0, mkt[days.get_loc(d)] - 0.01 * (1 - lncap_z) * (d >= pd.Timestamp("2024-01-15"))
                       + rng.normal(0, 0.004, n))
        srows.append(pd.DataFrame({"trade_date": d.date(), "ts_code": [f"{600000 + k}.SH" for k in range(n)],
                                   "total_mv": caps * (1 + 0.001 * i), "ret": ret,
                                   "is_suspended": False}))
    stock = pd.concat(srows, ignore_index=True)
    stock.loc[5, "ret"] = np.nan
    wh.write_partitions("marts", "stock_daily_panel", stock, days=[d.strftime("%Y-%m-%d") for d in wdays])

    # weekly fund NAVs (dated by the week's last session)
    weeks = week_end_sessions(days)
    label = pd.Series(weeks, index=weeks.to_period("W-SUN"))
    wk_f = pd.Series(f).groupby(label.reindex(days.to_period("W-SUN")).to_numpy()).sum().reindex(weeks).to_numpy()
    wclose = {c: closes[c].reindex(weeks).to_numpy() for c in INDICES}
    frows = []
    spec = []
    for i in range(6):
        spec.append(("market_neutral", None, f"N{i}", ">=10bn" if i < 3 else "<5bn"))
    for i in range(10):
        spec.append(("index_enhancement", "000905.SH" if i % 2 == 0 else "000852.SH", f"M{i // 2}",
                     ">=10bn" if i < 6 else "5-10bn"))
    for j, (strategy, bench, manager, bucket) in enumerate(spec):
        alpha = 0.002 + 0.9 * wk_f * (1 + 0.1 * j / 16) + rng.normal(0, 0.002, len(weeks))
        if strategy == "market_neutral":
            wret = alpha
            bclose = np.full(len(weeks), np.nan)
        else:
            b = wclose[bench]
            bret = np.r_[0.0, b[1:] / b[:-1] - 1]
            wret = bret + alpha
            bclose = b
        nav = np.cumprod(1 + wret)
        keep = np.ones(len(weeks), bool)
        if j == 7:
            keep[: 10] = False  # starts mid-sample
        if j == 8:
            keep[20] = False  # a missing week
        frows.append(pd.DataFrame({
            "trade_date": weeks[keep].date, "fund_id": f"P{j:02d}", "name": f"product {j}", "strategy": strategy,
            "benchmark": bench, "manager": manager, "manager_aum_bucket": bucket, "adj_nav": nav[keep],
            "bench_close": bclose[keep],
        }))
    fund = pd.concat(frows, ignore_index=True)
    fund["fund_ret"] = fund.groupby("fund_id")["adj_nav"].pct_change()
    fund["bench_ret"] = fund.groupby("fund_id")["bench_close"].pct_change()
    fund["excess_ret"] = fund["fund_ret"] - fund["bench_ret"]
    wh.write_table("marts", "fund_nav_panel", fund)
    return {"closes": pd.DataFrame(closes), "fund": fund, "stock": stock, "weeks": weeks}


ASSETS = [A.style_relative_nav, A.style_drawdown_table, A.index_drawdown_table, A.neutral_index_worst_weeks,
          A.excess_drawdown_table, A.excess_correlation]


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """One materialization of every drawdown asset, shared by the read-only tests below."""
    wh = Warehouse(data_dir=str(tmp_path_factory.mktemp("dd_data")))
    truth = _build_marts(wh)
    res = dg.materialize(ASSETS, resources={"warehouse": wh})
    assert res.success
    return wh, truth, res


def _read(wh, name):
    df = wh.read("drawdowns", name)
    for c in df.columns:
        if c.endswith("date") or c in ("trade_date", "worst_since", "week_start"):
            df[c] = pd.to_datetime(df[c])
    return df


def test_all_drawdown_assets_materialize_with_metadata(materialized):
    wh, truth, res = materialized
    keys = {e.asset_key.path[-1]: e.event_specific_data.materialization
            for e in res.get_asset_materialization_events()}
    expected = {"style_relative_nav", "style_drawdown_table", "index_drawdown_table", "neutral_index",
                "neutral_index_worst_weeks", "excess_drawdown_table", "excess_drawdown_summary",
                "excess_correlation", "excess_correlation_median"}
    assert set(keys) == expected
    for name, mat in keys.items():
        md = mat.metadata
        assert "preview" in md and "|" in md["preview"].value, name  # a Markdown table
        assert "parameters" in md and md["dagster/row_count"].value > 0, name
        assert wh.exists("drawdowns", name)
    assert "CSI1000 excess MDD %" in keys["excess_drawdown_table"].metadata["preview"].value
    # the catalog views exist for the drawdowns layer
    import duckdb
    con = duckdb.connect(str(wh.catalog_path), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM analytics.neutral_index").fetchone()[0]
    finally:
        con.close()
    assert n > 0


def test_style_tables_match_direct_formula_and_empyrical(materialized):
    wh, truth, _ = materialized
    nav = _read(wh, "style_relative_nav")
    c = truth["closes"]
    pair = nav[nav["pair"] == "932000.CSI/000300.SH"].set_index("trade_date")["relative_nav"]
    ref = (c["932000.CSI"] / c["932000.CSI"].iloc[0]) / (c["000300.SH"] / c["000300.SH"].iloc[0])
    np.testing.assert_allclose(pair.to_numpy(), ref.loc[pair.index].to_numpy(), rtol=1e-12)
    assert set(nav["pair"]) == {"8841431.WI/000300.SH", "932000.CSI/000300.SH", "000852.SH/000300.SH"}
    table = _read(wh, "style_drawdown_table").set_index("pair")
    row = table.loc["932000.CSI/000300.SH"]
    assert row["max_drawdown"] == pytest.approx(empyrical.max_drawdown(ref.pct_change().dropna()), abs=1e-12)
    assert pd.Timestamp(CRASH[0]) <= row["trough_date"] <= pd.Timestamp("2024-02-08")
    days = trading_days_between(row["peak_date"], row["trough_date"])
    assert row["peak_to_trough_days"] == len(days) - 1  # trading days
    # micro-cap fell most relative to CSI300 (designed: higher small-cap beta)
    assert table.loc["8841431.WI/000300.SH", "window_max_drawdown"] < row["window_max_drawdown"] < \
        table.loc["000852.SH/000300.SH", "window_max_drawdown"] < 0


def test_index_drawdown_table_deciles(materialized):
    wh, truth, _ = materialized
    t = _read(wh, "index_drawdown_table")
    dec = t[t["kind"] == "cap_decile"].set_index("series")
    assert len(dec) == 10 and dec["n_stocks"].sum() == 120
    assert dec.loc["D1", "window_return"] < dec.loc["D10", "window_return"]
    assert dec["median_log_cap"].is_monotonic_increasing
    idx = t[t["kind"] == "index"].set_index("series")
    c = truth["closes"]
    w = c.loc["2023-12-29":"2024-02-07", "932000.CSI"]
    assert idx.loc["932000.CSI", "window_return"] == pytest.approx(w.iloc[-1] / w.iloc[0] - 1, rel=1e-12)
    assert idx.loc["932000.CSI", "max_drawdown"] == pytest.approx(
        empyrical.max_drawdown(w.pct_change().dropna()), abs=1e-12)


def test_neutral_index_worst_week_in_crash(materialized):
    wh, truth, _ = materialized
    worst = _read(wh, "neutral_index_worst_weeks")
    series = _read(wh, "neutral_index")
    assert worst["ret"].is_monotonic_increasing and len(worst) == 10
    assert pd.Timestamp(CRASH[0]) <= worst["trade_date"].iloc[0] <= pd.Timestamp("2024-02-08")
    fund = truth["fund"]
    mn = fund[fund["strategy"] == "market_neutral"].pivot(index="trade_date", columns="fund_id", values="adj_nav")
    ref = (mn / mn.shift(1) - 1).mean(axis=1)
    got = series.set_index("trade_date")["ret"]
    np.testing.assert_allclose(got.iloc[1:].to_numpy(), ref.iloc[1:].to_numpy(), atol=1e-14)
    assert series["level"].iloc[0] == 1.0


def test_excess_drawdown_table_and_summary(materialized):
    wh, truth, _ = materialized
    per = _read(wh, "excess_drawdown_table").set_index("fund_id")
    fund = truth["fund"]
    ie = fund[(fund["strategy"] == "index_enhancement") & (pd.to_datetime(fund["trade_date"]) >= "2023-01-01")]
    assert set(per.index) == set(ie["fund_id"])
    for fid in ("P06", "P07"):  # one CSI500, one CSI1000 product (P07 starts mid-sample)
        g = ie[ie["fund_id"] == fid]
        e = (g["adj_nav"] / g["adj_nav"].iloc[0]) / (g["bench_close"] / g["bench_close"].iloc[0])
        assert per.loc[fid, "max_drawdown"] == pytest.approx(
            empyrical.max_drawdown(e.pct_change().dropna()), abs=1e-12)
    assert per.loc["P07", "start_date"] > pd.Timestamp("2023-06-30")
    summ = wh.read("drawdowns", "excess_drawdown_summary")
    row = summ[(summ["group"] == "benchmark") & (summ["benchmark"] == "000852.SH")].iloc[0]
    assert row["median"] == pytest.approx(per.loc[per["benchmark"] == "000852.SH", "max_drawdown"].median())
    assert row["median"] < -0.05  # designed excess crash
    assert (per["trough_date"].between("2024-01-15", "2024-02-08")).mean() > 0.8


def test_excess_correlation_matches_pandas(materialized):
    wh, truth, _ = materialized
    corr = _read(wh, "excess_correlation")
    fund = truth["fund"]
    c = truth["closes"]
    weeks = truth["weeks"]
    wc = c.reindex(weeks)
    g = fund[fund["fund_id"] == "P06"].assign(trade_date=lambda d: pd.to_datetime(d["trade_date"]))
    nav = g.set_index("trade_date")["adj_nav"].reindex(weeks)
    e = nav.pct_change() - wc["000905.SH"].pct_change()
    x = wc["932000.CSI"].pct_change() - wc["000905.SH"].pct_change()
    ref = x.rolling(26, min_periods=20).corr(e)
    got = corr[corr["fund_id"] == "P06"].set_index("trade_date")["corr_26w"].reindex(weeks)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=1e-10, equal_nan=True)
    med = wh.read("drawdowns", "excess_correlation_median")
    allm = med[med["benchmark"] == "all"]
    assert allm["median_corr_26w"].dropna().iloc[-1] > 0.5  # designed: excess loads on small-cap


def test_config_overrides_show_in_metadata(warehouse):
    _build_marts(warehouse, seed=1)
    res = dg.materialize([A.excess_drawdown_table, A.neutral_index_worst_weeks],
                         resources={"warehouse": warehouse},
                         run_config={"ops": {"excess_drawdown_table": {"config": {"method": "arithmetic",
                                                                                   "start": ""}},
                                             "neutral_index_worst_weeks": {"config": {"n_worst_weeks": 3}}}})
    assert res.success
    per = warehouse.read("drawdowns", "excess_drawdown_table")
    assert (per["excess_method"] == "arithmetic").all()
    assert len(warehouse.read("drawdowns", "neutral_index_worst_weeks")) == 3
    mats = {e.asset_key.path[-1]: e.event_specific_data.materialization.metadata
            for e in res.get_asset_materialization_events()}
    assert mats["excess_drawdown_table"]["parameters"].value["method"] == "arithmetic"


def test_index_median_logcap_uses_latest_constituents_on_or_before_base(warehouse):
    import datetime as dt

    w = pd.DataFrame({"index_code": ["A", "A", "A", "B", "A"], "con_code": ["s1", "s2", "s3", "s3", "s9"],
                      "trade_date": [dt.date(2023, 12, 1)] * 4 + [dt.date(2024, 1, 2)], "weight": 0.25})
    warehouse.write_partitions("staging", "stg_index_weight", w, days=["2023-12-01", "2024-01-02"])
    caps = pd.Series({"s1": np.e ** 1, "s2": np.e ** 2, "s3": np.e ** 4, "s9": np.e ** 9})
    got = A._index_median_logcap(warehouse, ["A", "B", "C"], pd.Timestamp("2023-12-29"), caps)
    assert got == pytest.approx({"A": 2.0, "B": 4.0})  # the 2024-01-02 weights are after the base day


def test_index_median_logcap_takes_each_index_on_its_own_latest_day(warehouse):
    import datetime as dt

    d1, d2, d3 = dt.date(2023, 11, 1), dt.date(2023, 11, 15), dt.date(2023, 12, 1)
    w = pd.DataFrame({"index_code": ["A", "A", "B", "B", "A", "C"], "con_code": ["s9", "s9", "s1", "s2", "s3", "s9"],
                      "trade_date": [d1, d1, d1, d1, d3, d2], "weight": 0.5})
    warehouse.write_partitions("staging", "stg_index_weight", w, days=["2023-11-01", "2023-11-15", "2023-12-01"])
    caps = pd.Series({"s1": np.e ** 1, "s2": np.e ** 3, "s3": np.e ** 4, "s9": np.e ** 9})
    got = A._index_median_logcap(warehouse, ["A", "B", "C", "D"], pd.Timestamp("2023-12-29"), caps)
    # A: only its 2023-12-01 constituents (s3); B: its 2023-11-01 ones (s1, s2); C: 2023-11-15; D: none
    assert got == pytest.approx({"A": 4.0, "B": 2.0, "C": 9.0})
    assert A._index_median_logcap(warehouse, ["A"], pd.Timestamp("2023-10-31"), caps) == {}


# ---------------------------------------------------------------- ground truth: the synthetic market
def _simulate(root) -> None:
    """The shared small simulated market (sc_assets_tests.simulated) when present, else the
    simulator's own command with the same settings (300 stocks, 2023-06-01 .. 2024-03-29)."""
    try:
        from sc_assets_tests.simulated import simulate_small_market
    except ImportError:
        from sc_assets.simulator.cli import simulate

        simulate.main(args=["--out", str(root), "--stocks", "300", "--start", "2023-06-01", "--end", "2024-03-29",
                            "--no-progress"], standalone_mode=False)
    else:
        simulate_small_market(root)


def _marts_from_landing(wh: Warehouse) -> None:
    """index_daily_panel and fund_nav_panel per the marts contract, from the landing files read
    through the project's feed readers (a user's files, not the simulator's internals)."""
    from sc_assets.feeds.readers import read_landing_file

    land = wh.root / "landing"
    idx = pd.concat([read_landing_file(p, "index_daily").to_pandas() for p in sorted((land / "index_daily").iterdir())])
    idx = idx.rename(columns={"ts_code": "index_code"})
    idx["trade_date"] = pd.to_datetime(idx["trade_date"])
    idx["ret"] = idx["close"] / idx["pre_close"] - 1
    idx = idx[["trade_date", "index_code", "close", "pre_close", "ret"]]
    days = sorted(idx["trade_date"].dt.strftime("%Y-%m-%d").unique())
    wh.write_partitions("marts", "index_daily_panel", idx.assign(trade_date=idx["trade_date"].dt.date), days=days)
    nav = pd.concat([read_landing_file(p, "fund_nav").to_pandas() for p in sorted((land / "fund_nav").iterdir())])
    nav = nav.rename(columns={"nav_date": "trade_date"})
    nav["trade_date"] = pd.to_datetime(nav["trade_date"])
    nav = nav.merge(idx.rename(columns={"index_code": "benchmark", "close": "bench_close"})[
        ["trade_date", "benchmark", "bench_close"]], on=["trade_date", "benchmark"], how="left")
    nav = nav.sort_values(["fund_id", "trade_date"])
    nav["fund_ret"] = nav.groupby("fund_id")["adj_nav"].pct_change()
    nav["bench_ret"] = nav.groupby("fund_id")["bench_close"].pct_change()
    nav["excess_ret"] = nav["fund_ret"] - nav["bench_ret"]
    wh.write_table("marts", "fund_nav_panel", nav.assign(trade_date=nav["trade_date"].dt.date))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("dd_sim")
    _simulate(root)
    wh = Warehouse(data_dir=str(root))
    _marts_from_landing(wh)
    res = dg.materialize([A.neutral_index_worst_weeks, A.excess_drawdown_table, A.excess_correlation],
                         resources={"warehouse": wh})
    assert res.success
    import json

    params = json.loads((root / "ground_truth" / "params.json").read_text())
    return wh, params


def test_simulated_neutral_worst_week_in_crash_window(simulated):
    wh, params = simulated
    worst = wh.read("drawdowns", "neutral_index_worst_weeks")
    week = pd.Timestamp(worst["trade_date"].iloc[0])
    # the simulator's scripted episode: from episode_start to the rebound (the Spring Festival week)
    assert pd.Timestamp(params["episode_start"]) <= week <= pd.Timestamp(params["rebound_date"])
    assert worst["ret"].iloc[0] < -0.02


def test_simulated_excess_drawdown_medians_in_designed_range(simulated):
    wh, params = simulated
    summ = wh.read("drawdowns", "excess_drawdown_summary")
    med = summ[summ["group"] == "benchmark"].set_index("benchmark")["median"]
    # simulator design (issue 4): CSI1000 median excess max drawdown between 5% and 20%
    assert -0.20 <= med["000852.SH"] <= -0.05
    assert -0.25 <= med["000905.SH"] <= -0.03
    per = wh.read("drawdowns", "excess_drawdown_table")
    troughs = pd.to_datetime(per["trough_date"])
    in_crash = troughs.between(pd.Timestamp(params["episode_start"]), pd.Timestamp(params["rebound_date"]))
    assert in_crash.mean() > 0.8  # the study: troughs clustered mid-January .. early February 2024


def test_simulated_excess_correlation_high(simulated):
    wh, _ = simulated
    med = wh.read("drawdowns", "excess_correlation_median")
    latest = med[med["benchmark"] == "all"].dropna(subset=["median_corr_26w"]).iloc[-1]
    # products hold a small-cap tilt: their excess tracks small-cap excess (study: median > 85%)
    assert latest["median_corr_26w"] > 0.8
