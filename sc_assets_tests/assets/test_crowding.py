"""Crowding and stress assets end to end on a small hand-built lake (marts-contract frames).

The lake holds 45 stocks over 2023-10-09 .. 2024-02-08 (marts.stock_daily_panel,
staging.stg_index_weight, marts.index_daily_panel, marts.futures_basis_panel); the crowding
assets are materialized over the whole range in one single-run backfill, then the stress
tables. A simulated-market test (the simulator's ground truth Y) lives at the end and is
skipped while ``sc_assets_tests.simulated`` does not exist.
"""

from __future__ import annotations

import warnings

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from sc_assets.analytics.crowding import HoldingsParams, micro_mask
from sc_assets.assets import crowding as ca
from sc_assets.assets import stress as sa
from sc_assets.partitions import trading_days_between

warnings.filterwarnings("ignore", category=dg.BetaWarning)

START, END = "2023-10-09", "2024-02-08"
N = 45


def _build_lake(warehouse, seed=11):
    rng = np.random.default_rng(seed)
    days = trading_days_between(START, END)
    codes = [f"{600000 + i}.SH" if i % 2 else f"{i + 1:06d}.SZ" for i in range(N)]
    shares = np.exp(rng.uniform(np.log(2e8), np.log(2e10), N))
    price = rng.uniform(4, 40, N)
    ffrac = rng.uniform(0.3, 0.8, N)
    rows = []
    for t, d in enumerate(days):
        pre = price.copy()
        r = np.clip(rng.normal(0, 0.02, N), -0.1, 0.1)
        price = np.round(pre * (1 + r), 2)
        susp = np.zeros(N, dtype=bool)
        if 20 <= t < 23:
            susp[3] = True
        turnover = 0.01 * (5e9 / (shares * price)) ** 0.3
        vol = np.where(susp, np.nan, turnover * shares * ffrac)
        close = np.where(susp, np.nan, price)
        rows.append(pd.DataFrame({
            "trade_date": d.date(), "ts_code": codes, "close": close, "pre_close": np.where(susp, np.nan, pre),
            "adj_close": close, "ret": np.where(susp, np.nan, price / pre - 1), "vol": vol, "amount": vol * close,
            "total_mv": close * shares, "free_float_mv": close * shares * ffrac, "is_suspended": susp,
            "limit_pct": 0.10,
        }))
        if susp[3]:
            price[3] = pre[3]
    panel = pd.concat(rows, ignore_index=True)
    warehouse.write_partitions("marts", "stock_daily_panel", panel, days=[d.strftime("%Y-%m-%d") for d in days])
    cap0 = panel[panel["trade_date"] == days[0].date()].set_index("ts_code")["total_mv"].sort_values(ascending=False)
    order = list(cap0.index)
    iw = []
    for reb in ("2023-10-09", "2023-12-01", "2024-01-02"):
        for code, members in (("000300.SH", order[:3]), ("000905.SH", order[3:8]), ("000852.SH", order[8:17]),
                              ("932000.CSI", order[17:35])):
            iw.append(pd.DataFrame({"index_code": code, "con_code": members, "trade_date": pd.Timestamp(reb).date(),
                                    "weight": 1.0 / len(members)}))
    iw = pd.concat(iw, ignore_index=True)
    warehouse.write_partitions("staging", "stg_index_weight", iw, days=sorted({str(d) for d in iw["trade_date"]}))
    idx = pd.DataFrame({"trade_date": [d.date() for d in days], "index_code": "000300.SH",
                        "ret": rng.normal(0, 0.01, len(days))})
    warehouse.write_partitions("marts", "index_daily_panel", idx, days=[d.strftime("%Y-%m-%d") for d in days])
    fut = []
    for d in days:
        stress = -0.40 if pd.Timestamp("2024-01-19") <= d <= pd.Timestamp("2024-01-23") else -0.08
        fut.append({"trade_date": d.date(), "ts_code": "IM2402.CFX", "fut_code": "IM", "is_main": True,
                    "basis_ann": stress, "basis_ann_settle": stress})
        fut.append({"trade_date": d.date(), "ts_code": "IC2402.CFX", "fut_code": "IC", "is_main": True,
                    "basis_ann": stress / 2, "basis_ann_settle": stress / 2})
    fut = pd.DataFrame(fut)
    warehouse.write_partitions("marts", "futures_basis_panel", fut, days=[d.strftime("%Y-%m-%d") for d in days])
    return panel, iw


CROWDING_ASSETS = [ca.crowding_tables]
STRESS_ASSETS = [sa.basis_stress_events, sa.redemption_stress, sa.fire_sale_simulation, sa.stress_summary]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from sc_assets.resources import Warehouse

    root = tmp_path_factory.mktemp("crowd") / "data"
    root.mkdir()
    wh = Warehouse(data_dir=str(root))
    panel, iw = _build_lake(wh)
    first = trading_days_between("2023-12-01", END)
    old_chunk, ca.CHUNK_SESSIONS = ca.CHUNK_SESSIONS, 17  # exercise chunked backfills (49 sessions -> 3 chunks)
    res = dg.materialize(
        CROWDING_ASSETS, resources={"warehouse": wh},
        tags={"dagster/asset_partition_range_start": first[0].strftime("%Y-%m-%d"),
              "dagster/asset_partition_range_end": END},
    )
    ca.CHUNK_SESSIONS = old_chunk
    assert res.success
    checks = res.get_asset_check_evaluations()
    res2 = dg.materialize(STRESS_ASSETS, resources={"warehouse": wh},
                          run_config={"ops": {"fire_sale_simulation": {"config": {"y_grid": [0.4, 0.8, 1.2, 1.6],
                                                                                  "kappa_grid": [0.0, 1.0]}}}})
    assert res2.success
    return wh, panel, iw, checks


def test_holdings_partitions_and_blocking_check(built):
    wh, panel, _, checks = built
    assert checks and all(c.passed for c in checks)
    h = wh.read("crowding", "quant_holdings_estimate")
    assert h["trade_date"].nunique() == len(trading_days_between("2023-12-01", END))
    # default: sleeves scaled each day to 16.07 % of the micro-cap bucket's free float (Table 2)
    p = wh.read("marts", "stock_daily_panel", start="2023-12-01")
    m = h.merge(p[["trade_date", "ts_code", "total_mv", "is_suspended"]], on=["trade_date", "ts_code"])
    m["micro"] = micro_mask(m, 0.2)
    g = m[m["micro"]].groupby("trade_date")[["holdings", "free_float_mv"]].sum()
    assert (g["holdings"] / g["free_float_mv"]).to_numpy() == pytest.approx(0.1607, rel=1e-9)
    mix = h.groupby("trade_date")[[f"hold_{s.name}" for s in HoldingsParams().sleeves()]].sum()
    gross = np.array([s.gross_cny for s in HoldingsParams().sleeves()])
    assert (mix.to_numpy() / mix.sum(axis=1).to_numpy()[:, None]) == pytest.approx(
        np.tile(gross / gross.sum(), (len(mix), 1)), rel=1e-9)


def test_crowding_table_matches_its_definition(built):
    wh, panel, _, _ = built
    day = "2024-01-19"  # first day of the third chunk: its ADV needs the lookback across the chunk edge
    ct = wh.read("crowding", "crowding_table", days=[day])
    h = wh.read("crowding", "quant_holdings_estimate", days=[day]).set_index("ts_code")
    # ADV oracle: plain pandas mean of the last 20 sessions' amount, per stock
    p = panel.copy()
    p["trade_date"] = pd.to_datetime(p["trade_date"])
    last20 = sorted(p["trade_date"].unique())
    last20 = [d for d in last20 if d <= pd.Timestamp(day)][-20:]
    adv = p[p["trade_date"].isin(last20)].groupby("ts_code")["amount"].mean()
    stocks = ct[ct["level"] == "stock"].set_index("bucket")
    assert stocks["adv_cny"].to_numpy() == pytest.approx(adv.loc[stocks.index].to_numpy(), rel=1e-9)
    ff = stocks["free_float_mv"]
    assert stocks["holdings_share"].to_numpy() == pytest.approx((h.loc[stocks.index, "holdings"] / ff).to_numpy(), rel=1e-9)
    assert stocks["turnover_share"].to_numpy() == pytest.approx(
        (stocks["holdings"] * 30 / 242 / stocks["adv_cny"]).to_numpy(), rel=1e-9)
    b = ct[ct["level"] == "bucket"].set_index(["bucket_type", "bucket"])
    assert b.loc[("all", "market"), "holdings"] == pytest.approx(h["holdings"].sum())
    assert b.loc[("index", "000905.SH"), "n_stocks"] == 5
    micro = b.loc[("micro", "micro_cap")]
    assert micro["n_stocks"] == 9  # 20 % of 45
    assert micro["redemption_share"] == pytest.approx(0.1 * micro["holdings"] / micro["adv_cny"])


def test_days_to_liquidate_partition(built):
    wh, *_ = built
    dtl = wh.read("crowding", "days_to_liquidate", days=["2024-02-08"])
    assert set(dtl["participation"]) == {0.1, 0.2}
    m = dtl[(dtl["bucket"] == "market")].set_index("participation")
    assert m.loc[0.1, "dtl_days"] == pytest.approx(2 * m.loc[0.2, "dtl_days"])


def test_stress_tables(built):
    wh, *_ = built
    ev = wh.read("stress", "basis_stress_events")
    im = ev[ev["fut_code"] == "IM"].iloc[0]
    assert pd.Timestamp(im["start"]) == pd.Timestamp("2024-01-19") and int(im["duration_days"]) == 3
    assert (ev["fut_code"] == "IC").sum() == 0  # IC at -20 %
    red = wh.read("stress", "redemption_stress")
    assert str(red["as_of"].iloc[0]) == "2024-02-08"
    per = wh.read("stress", "redemption_stress_by_stock")
    assert (per["ret"] >= -0.10 - 1e-12).all()
    cal = wh.read("stress", "fire_sale_calibration").set_index("run")
    assert cal.loc["wave2_oos", "status"] == "evaluated"
    # random-walk prices with no flows in them: Y must not count as identified, the prior is kept
    assert not cal.loc["wave1_fit", "y_identified"]
    assert cal.loc["wave1_fit", "y"] == pytest.approx(0.8) and "not identified" in cal.loc["wave1_fit", "status"]
    assert cal.loc["wave1_fit", "eta"] >= 0 and np.isfinite(cal.loc["wave1_fit", "observed_sales_bn_cny"])
    assert np.isfinite(cal.loc["wave2_oos", "rmse"])
    summ = wh.read("stress", "stress_summary")
    assert {"basis", "redemption", "fire_sale", "crowding"} <= set(summ["section"])
    assert summ.loc[summ["item"] == "calibrated Y (wave 1)", "value"].iloc[0] == pytest.approx(cal.loc["wave1_fit", "y"])


def test_fire_sale_calibration_reused_only_for_the_same_inputs(built):
    """A rerun on unchanged wave-1 inputs (the daily update: the new day is outside the window)
    reuses the stored calibration and writes the same tables; a changed setting recalibrates."""
    wh, *_ = built
    names = ("fire_sale_simulation", "fire_sale_stock_path", "fire_sale_fund_path", "fire_sale_calibration")
    before = {n: wh.read("stress", n) for n in names}
    assert not before["fire_sale_calibration"].set_index("run").loc["wave1_fit", "calibration_reused"]
    cfg = {"y_grid": [0.4, 0.8, 1.2, 1.6], "kappa_grid": [0.0, 1.0]}
    res = dg.materialize([sa.fire_sale_simulation], resources={"warehouse": wh},
                         run_config={"ops": {"fire_sale_simulation": {"config": cfg}}})
    assert res.success
    after = {n: wh.read("stress", n) for n in names}
    cal = after["fire_sale_calibration"].set_index("run")
    assert cal.loc["wave1_fit", "calibration_reused"]
    for n in names:
        cols = [c for c in before[n].columns if c != "calibration_reused"]
        pd.testing.assert_frame_equal(after[n][cols], before[n][cols])
    res = dg.materialize([sa.fire_sale_simulation], resources={"warehouse": wh},
                         run_config={"ops": {"fire_sale_simulation": {"config": {"y_grid": [0.8, 1.6], "kappa_grid": [0.0]}}}})
    assert res.success
    cal2 = wh.read("stress", "fire_sale_calibration").set_index("run")
    assert not cal2.loc["wave1_fit", "calibration_reused"]
    assert cal2.loc["wave1_fit", "input_hash"] != cal.loc["wave1_fit", "input_hash"]


def test_fire_sale_windows_keyed_on_their_lake_files(built):
    """The window fingerprint comes from the files a window reads: a changed panel partition after
    both windows (the daily update's new day) keeps the stored wave-1/wave-2 rows; a changed
    partition inside wave 1 recomputes wave 1 (and wave 2, whose Y/κ/η come from it)."""
    wh, *_ = built
    cfg = {"y_grid": [0.4, 0.8, 1.2, 1.6], "kappa_grid": [0.0, 1.0]}

    def run():
        res = dg.materialize([sa.fire_sale_simulation], resources={"warehouse": wh},
                             run_config={"ops": {"fire_sale_simulation": {"config": cfg}}})
        assert res.success
        return wh.read("stress", "fire_sale_calibration").set_index("run")

    first = run()

    def bump(day, factor):
        p = wh.read("marts", "stock_daily_panel", days=[day])
        p["vol"] = p["vol"] * factor
        p["amount"] = p["amount"] * factor
        wh.write_partitions("marts", "stock_daily_panel", p, days=[day])

    bump("2024-02-08", 1.5)  # the scenario day, after both windows
    after = run()
    assert after.loc["wave1_fit", "calibration_reused"]
    assert (after.loc[["wave1_fit", "wave2_oos"], "input_hash"] == first.loc[["wave1_fit", "wave2_oos"], "input_hash"]).all()
    bump("2024-01-16", 3.0)  # inside wave 1
    changed = run()
    assert not changed.loc["wave1_fit", "calibration_reused"]
    assert changed.loc["wave1_fit", "input_hash"] != first.loc["wave1_fit", "input_hash"]
    assert changed.loc["wave1_fit", "observed_sales_bn_cny"] != first.loc["wave1_fit", "observed_sales_bn_cny"]
    assert changed.loc["wave2_oos", "input_hash"] != first.loc["wave2_oos", "input_hash"]  # 01-16 is in its lookback


def test_crowding_tables_materialize_one_table_alone(built):
    """The multi-asset is subsettable: days_to_liquidate alone (daily run) rewrites only its own
    partition, with the same rows as the backfill wrote (issue 11 computes both tables in one op)."""
    wh, *_ = built
    day = "2023-12-15"  # its ADV window is before the days other tests rewrite in the panel
    ct_file = wh.month_path("crowding", "crowding_table", day)
    ct_mtime = ct_file.stat().st_mtime_ns
    before = wh.read("crowding", "days_to_liquidate", days=[day])
    res = dg.materialize([ca.crowding_tables], selection=[ca.DTL], partition_key=day, resources={"warehouse": wh})
    assert res.success
    assert {e.asset_key for e in res.get_asset_materialization_events()} == {ca.DTL}
    pd.testing.assert_frame_equal(wh.read("crowding", "days_to_liquidate", days=[day]), before)
    assert ct_file.stat().st_mtime_ns == ct_mtime


def _tables(wh, days):
    return {k: wh.read("crowding", k.path[-1], days=days) for k in (ca.HOLDINGS, ca.CROWDING, ca.DTL)}


def test_crowding_step_subsets_reproduce_the_backfill(built):
    """One day (the daily update) of the whole step, then each of the holdings and crowding_table
    alone (the table reading the holdings from the lake), write the rows the chunked backfill
    wrote; a subset yields only its own materializations and checks and leaves the other tables'
    files alone."""
    wh, *_ = built
    days = ["2023-12-13", "2023-12-14"]  # ADV windows before the days other tests rewrite in the panel
    before = _tables(wh, days)
    res = dg.materialize([ca.crowding_tables], partition_key=days[1], resources={"warehouse": wh})
    assert res.success
    assert {e.asset_key for e in res.get_asset_materialization_events()} == {ca.HOLDINGS, ca.CROWDING, ca.DTL}
    assert [c.passed for c in res.get_asset_check_evaluations()] == [True]
    for key, want in [(ca.HOLDINGS, {ca.HOLDINGS}), (ca.CROWDING, {ca.CROWDING})]:
        others = [wh.month_path("crowding", k.path[-1], d) for k in (ca.HOLDINGS, ca.CROWDING, ca.DTL) if k != key
                  for d in days]
        mtimes = [f.stat().st_mtime_ns for f in others]
        res = dg.materialize([ca.crowding_tables], selection=[key], resources={"warehouse": wh},
                             tags={"dagster/asset_partition_range_start": days[0],
                                   "dagster/asset_partition_range_end": days[1]})
        assert res.success
        assert {e.asset_key for e in res.get_asset_materialization_events()} == want
        assert len(res.get_asset_check_evaluations()) == (1 if key == ca.HOLDINGS else 0)
        assert [f.stat().st_mtime_ns for f in others] == mtimes
    after = _tables(wh, days)
    for k in before:
        pd.testing.assert_frame_equal(after[k], before[k])


def test_failed_holdings_check_stops_the_tables(built, monkeypatch):
    """The blocking sleeves check still blocks the bucket tables inside the one step: the holdings
    are written and reported with the failed check, the tables are neither rebuilt nor
    materialized, and the step fails."""
    wh, *_ = built
    day = "2023-12-12"
    files = [wh.month_path("crowding", k.path[-1], day) for k in (ca.CROWDING, ca.DTL)]
    mtimes = [f.stat().st_mtime_ns for f in files]
    monkeypatch.setattr(ca, "CHECK_TOLERANCE", 0.0)  # every estimate "fails" (max error >= 0)
    res = dg.materialize([ca.crowding_tables], partition_key=day, resources={"warehouse": wh}, raise_on_error=False)
    assert not res.success
    assert {e.asset_key for e in res.get_asset_materialization_events()} == {ca.HOLDINGS}
    assert [c.passed for c in res.get_asset_check_evaluations()] == [False]
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_a_failed_background_write_fails_the_step(built, monkeypatch):
    """Chunk writes run on a writer thread beside the next chunk's compute: a write error still
    fails the step, and no table reports a materialization."""
    from sc_assets.resources.warehouse import Warehouse

    wh, *_ = built
    real = Warehouse.write_partitions
    calls = []

    def flaky(self, layer, name, df, days, schema=None):
        calls.append((name, list(days)))
        if name == "crowding_table" and len([c for c in calls if c[0] == name]) == 2:
            raise OSError("disk full")
        return real(self, layer, name, df, days=days, schema=schema)

    monkeypatch.setattr(Warehouse, "write_partitions", flaky)
    monkeypatch.setattr(ca, "CHUNK_SESSIONS", 2)
    res = dg.materialize([ca.crowding_tables], resources={"warehouse": wh}, raise_on_error=False,
                         tags={"dagster/asset_partition_range_start": "2023-12-04",
                               "dagster/asset_partition_range_end": "2023-12-11"})
    assert not res.success
    assert "disk full" in str(res.get_step_failure_events()[0].event_specific_data.error.to_string())
    assert res.get_asset_materialization_events() == []
    assert len({tuple(d) for n, d in calls}) >= 2  # the first chunks were written before the failure


def test_holdings_config_under_the_step(built):
    """The sleeves' run config goes under ``ops.crowding_tables.config.holdings``: constant CNY AUM
    (scale_to_micro_hs 0) makes each sleeve sum to its gross AUM every day, checked in CNY mode."""
    wh, *_ = built
    day = "2023-12-20"
    cfg = {"ops": {"crowding_tables": {"config": {"holdings": {"scale_to_micro_hs": 0.0, "private_quant_cny": 5e11}}}}}
    res = dg.materialize([ca.crowding_tables], selection=[ca.HOLDINGS], partition_key=day, resources={"warehouse": wh},
                         run_config=cfg)
    assert res.success
    (check,) = res.get_asset_check_evaluations()
    assert check.passed and check.metadata["mode"].value == "cny"
    h = wh.read("crowding", "quant_holdings_estimate", days=[day])
    for s in HoldingsParams(private_quant_cny=5e11).sleeves():
        assert h[f"hold_{s.name}"].sum() == pytest.approx(s.gross_cny, rel=1e-12)
    assert dg.materialize([ca.crowding_tables], selection=[ca.HOLDINGS], partition_key=day,
                          resources={"warehouse": wh}).success  # back to the default estimate


@pytest.mark.parametrize("scaled", [True, False])
def test_sleeves_check_error_measures_a_sleeve_off_its_target(built, monkeypatch, scaled):
    """The check's error is 0 for the estimate and the relative miss of a sleeve (CNY mode) or of the
    micro-cap holdings share (scaled mode) when the holdings are off by 1 %: the check can fail."""
    wh, *_ = built
    keys = ["2023-12-18", "2023-12-19"]
    params = HoldingsParams(scale_to_micro_hs=0.1607 if scaled else None)
    inp = ca._ChunkInputs(wh, keys, ca.CrowdingConfig().params(), 0)
    iw = ca.read_index_weights(wh, keys[0], keys[-1])
    assert ca._holdings_chunk(inp, iw, params)[2] < 1e-9
    real = ca.cr.holdings_on_grid

    def off(*args, **kw):
        hold, total, micro = real(*args, **kw)
        name = next(iter(hold))
        return {**hold, name: hold[name] * 1.01}, total * (1.01 if scaled else 1.0), micro

    monkeypatch.setattr(ca.cr, "holdings_on_grid", off)
    assert ca._holdings_chunk(inp, iw, params)[2] == pytest.approx(0.01, rel=1e-6)
