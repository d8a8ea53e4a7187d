"""Factor assets end to end: dg.materialize over a partition range on a lake holding a panel."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from sc_assets.analytics import size as sz
from sc_assets.assets import factors as fa
from sc_assets.partitions import to_key
from sc_assets_tests.analytics.test_size import make_panel, prev_map

FACTOR_ASSETS = [fa.size_factors, fa.drawdown_vs_size]
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


@pytest.fixture(scope="module")
def synthetic():
    return make_panel(n_stocks=160, start="2023-10-09", end="2023-12-29", seed=4)


def _seed_lake(warehouse, panel):
    days = sorted({to_key(d) for d in panel["trade_date"]})
    warehouse.write_partitions("marts", "stock_daily_panel", panel, days=days)
    idx = pd.DataFrame(
        {
            "trade_date": np.repeat(pd.to_datetime(days).date, 2),
            "index_code": ["000300.SH", "932000.CSI"] * len(days),
            "close": np.r_[[[3500.0 + i, 2000.0 - 3 * i] for i in range(len(days))]].ravel(),
        }
    )
    warehouse.write_partitions("marts", "index_daily_panel", idx, days=days)
    return days


def _run(assets, warehouse, start, end, run_config=None, selection=None):
    return dg.materialize(
        assets,
        selection=selection,
        resources={"warehouse": warehouse},
        tags={RANGE_TAGS[0]: start, RANGE_TAGS[1]: end},
        run_config=run_config,
    )


def test_backfill_matches_analytics_and_daily_runs_agree(warehouse, synthetic, tmp_path):
    panel, truth = synthetic
    days = _seed_lake(warehouse, panel)
    cfg = {"ops": {"factors__drawdown_vs_size": {"config": {"window_start": "2023-11-01", "window_end": "2023-12-15"}}}}
    res = _run(FACTOR_ASSETS, warehouse, days[0], days[-1], cfg)
    assert res.success
    evals = res.get_asset_check_evaluations()
    assert {e.check_name for e in evals} == {"barra_moments", "industry_constraint_holds"}
    assert all(e.passed for e in evals)

    # one single-run backfill: the lake equals the pure analytics on the whole panel
    exp_ref = sz.size_exposures(panel)
    al = sz.align_previous_exposures(panel, exp_ref, prev_map(panel))
    long_ref, daily_ref = sz.factor_returns(al)
    got = warehouse.read("factors", "factor_returns")
    got["trade_date"] = pd.to_datetime(got["trade_date"])
    m = long_ref.merge(got, on=["trade_date", "factor"], suffixes=("_ref", ""))
    assert len(m) == len(long_ref) == len(got)
    np.testing.assert_allclose(m["ret"], m["ret_ref"], atol=1e-12)
    np.testing.assert_allclose(m["t_stat"], m["t_stat_ref"], rtol=1e-9)
    assert set(warehouse.partitions("factors", "factor_returns")) == set(days)
    # recovered planted factor returns
    wide = got.pivot(index="trade_date", columns="factor", values="ret")
    t = truth.set_index("trade_date").reindex(wide.index)
    assert np.corrcoef(wide["size"], t["size"])[0, 1] > 0.95
    assert np.corrcoef(wide["nlsize"], t["nlsize"])[0, 1] > 0.9

    # metadata: exclusions counted, parameters shown
    mat = {m.asset_key.to_user_string(): m for m in res.get_asset_materialization_events()}
    meta = mat["factors/factor_returns"].materialization.metadata
    excluded = meta["excluded_stock_days"].value
    assert excluded["locked"] == int(daily_ref["n_excluded_locked"].sum()) > 0
    assert excluded["suspended"] == int(daily_ref["n_excluded_suspended"].sum()) > 0
    assert meta["parameters"].value["min_days_listed"] == 60

    # SMB and deciles in the lake match the analytics; drawdown table has its sections
    dec = warehouse.read("factors", "size_decile_returns")
    assert dec.groupby("trade_date")["decile"].nunique().eq(10).all()
    smb = warehouse.read("factors", "smb_returns")
    smb_ref = sz.smb(sz.size_deciles(al))
    np.testing.assert_allclose(
        smb.sort_values("trade_date")["smb_cw"].to_numpy(), smb_ref.sort_values("trade_date")["smb_cw"].to_numpy()
    )
    dd = warehouse.read("factors", "drawdown_vs_size")
    assert (dd["section"] == "decile").sum() == 10 and (dd["section"] == "regression").sum() == 2
    assert set(dd.loc[dd["section"] == "index", "group"]) == {"000300.SH", "932000.CSI"}
    with warehouse.connect() as con:
        n = con.execute("SELECT count(*) FROM factors.factor_returns WHERE factor = 'nlsize'").fetchone()[0]
    assert n == daily_ref["n_stocks"].gt(0).sum()

    # the daily path: one partition later reads its t-1 exposures from the lake -> same answer
    last = days[-1]
    before = got[got["trade_date"] == pd.Timestamp(last)].sort_values("factor").reset_index(drop=True)
    res2 = dg.materialize([fa.size_factors], selection=[fa.FACTOR_RETURNS], resources={"warehouse": warehouse},
                          partition_key=last)
    meta2 = res2.get_asset_materialization_events()[0].materialization.metadata
    assert meta2["exposure_days_from_lake"].value == 1
    after = warehouse.read("factors", "factor_returns", days=[last]).sort_values("factor").reset_index(drop=True)
    np.testing.assert_allclose(after["ret"], before["ret"], atol=1e-14)


def test_range_start_without_lake_exposures_recomputes_t_minus_1(data_dir, synthetic):
    from sc_assets.resources import Warehouse

    wh = Warehouse(data_dir=str(data_dir))
    panel, _ = synthetic
    days = _seed_lake(wh, panel)
    start, end = days[10], days[14]
    res = _run([fa.size_factors], wh, start, end, selection=[fa.FACTOR_RETURNS])  # size_exposures never materialized
    meta = res.get_asset_materialization_events()[0].materialization.metadata
    assert meta["exposure_days_recomputed"].value == 5
    got = wh.read("factors", "factor_returns")
    assert sorted({to_key(d) for d in got["trade_date"]}) == days[10:15]
    exp_ref = sz.size_exposures(panel)
    al = sz.align_previous_exposures(panel, exp_ref, prev_map(panel))
    long_ref, _ = sz.factor_returns(al)
    ref = long_ref[long_ref["trade_date"].between(pd.Timestamp(start), pd.Timestamp(end))]
    got["trade_date"] = pd.to_datetime(got["trade_date"])
    m = ref.merge(got, on=["trade_date", "factor"], suffixes=("_ref", ""))
    assert len(m) == len(ref)
    np.testing.assert_allclose(m["ret"], m["ret_ref"], atol=1e-12)


def test_lineage_below_the_panels():
    specs = {k.to_user_string(): (a, k) for a in FACTOR_ASSETS for k in a.keys}
    deps = {s: {d.to_user_string() for d in a.asset_deps[k]} for s, (a, k) in specs.items()}
    assert "marts/stock_daily_panel" in deps["factors/size_exposures"]
    assert {"marts/stock_daily_panel", "factors/size_exposures"} <= deps["factors/factor_returns"]
    assert deps["factors/smb_returns"] == {"factors/size_decile_returns"}
    assert {"marts/stock_daily_panel", "marts/index_daily_panel"} <= deps["factors/drawdown_vs_size"]
    for a, k in specs.values():
        assert a.group_names_by_key[k] == "factors"
        assert a.descriptions_by_key[k]
    assert len(specs) == 5 and fa.size_factors.can_subset


# ---- ground truth: the synthetic market through the real raw -> staging -> marts chain ----------

SIM_START, SIM_END = "2023-12-01", "2024-02-29"
WAVE2 = ("2024-02-05", "2024-02-07")


@pytest.fixture(scope="module")
def sim_lake(tmp_path_factory):
    """Default synthetic market (1,200 stocks, the crash window) -> marts.stock_daily_panel -> factors.

    1,200 stocks (the demo's cross-section): with fewer stocks the simulator's NLSIZE factor
    (daily vol 0.15%) is below the cross-sectional noise of one day's regression.
    """
    import warnings

    from sc_assets.assets.raw import RAW_ASSETS
    from sc_assets.assets.sql import sql_model_assets
    from sc_assets.partitions import trading_days_between
    from sc_assets.resources import LandingFeedSource, Warehouse
    from sc_assets.simulator import SimulationParams, simulate

    root = tmp_path_factory.mktemp("factor_sim")
    simulate(root, SimulationParams(n_stocks=1200, start=SIM_START, end=SIM_END))
    wh = Warehouse(data_dir=str(root))
    days = trading_days_between(SIM_START, SIM_END).strftime("%Y-%m-%d")
    tags = {RANGE_TAGS[0]: days[0], RANGE_TAGS[1]: days[-1]}
    panel_key = dg.AssetKey(["marts", "stock_daily_panel"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the panel's own blocking GX checks are the SQL layer's business (tested there); the
        # partitions are written before they are evaluated, so do not let them gate this test
        dg.materialize(
            [*RAW_ASSETS.values(), *sql_model_assets],
            selection=dg.AssetSelection.assets(panel_key).upstream(),
            resources={"warehouse": wh, "feed_source": LandingFeedSource(data_dir=str(root))},
            tags=tags,
            raise_on_error=False,
        )
        assert wh.partitions("marts", "stock_daily_panel") == list(days)
        res = dg.materialize([fa.size_factors], selection=[fa.EXPOSURES, fa.FACTOR_RETURNS], resources={"warehouse": wh},
                             tags=tags)
    assert res.success
    return root, wh


def _impact_factor_component(root, industries):
    """Factor returns of the simulator's flow impact alone, from its TRUE exposures (ground truth only).

    The simulator's return is factor part + flow impact + idiosyncratic; the truth file holds the
    factor part. Quant selling / ETF buying concentrate in size buckets, so part of the impact is a
    (non-linear) size move that any cross-sectional regression — Barra's too — books as factor
    return. Its projection on the true exposures (same constrained WLS, verified against
    statsmodels in test_regression) is that part.
    """
    sd = pd.read_parquet(root / "ground_truth" / "stock_days.parquet")
    stocks = pd.read_parquet(root / "ground_truth" / "stocks.parquet")
    sd["trade_date"] = pd.to_datetime(sd["trade_date"])
    days = sorted(sd["trade_date"].unique())
    true_exp = (
        sd.loc[sd["eligible"], ["trade_date", "ts_code", "size_z", "nlsize_z", "lncap"]]
        .rename(columns={"size_z": "size", "nlsize_z": "nlsize"})
        .merge(stocks[["ts_code", "industry"]], on="ts_code")
        .assign(total_mv=lambda d: np.exp(d["lncap"]))
    )
    impact = sd[["trade_date", "ts_code", "impact_ret", "locked", "suspended"]].rename(
        columns={"locked": "is_locked", "suspended": "is_suspended"}
    )
    impact = impact.assign(ret=np.expm1(impact["impact_ret"]), days_listed=10_000)
    al = sz.align_previous_exposures(impact, true_exp, dict(zip(days[1:], days[:-1], strict=True)))
    long, _ = sz.factor_returns(al, industries)
    return long.pivot(index="trade_date", columns="factor", values="ret"), sd


@pytest.mark.slow
def test_ground_truth_recovery_on_simulated_market(sim_lake):
    root, wh = sim_lake
    got = wh.read("factors", "factor_returns")
    got["trade_date"] = pd.to_datetime(got["trade_date"])
    est = got.pivot(index="trade_date", columns="factor", values="ret")
    truth = pd.read_parquet(root / "ground_truth" / "factor_returns.parquet")
    truth = truth.assign(trade_date=pd.to_datetime(truth["trade_date"])).set_index("trade_date").reindex(est.index)
    assert len(est) >= 55 and est[["size", "nlsize"]].notna().all().all()

    # size: recovered against the simulator's factor return itself
    assert np.corrcoef(est["size"], truth["size"])[0, 1] > 0.9
    # size and NLSIZE against the factor content of everything the simulator put in
    # (drawn/scripted factor return + the factor component of its flow impact)
    industries = sorted(got.loc[got["factor_type"] == "industry", "factor"].unique())
    imp, sd = _impact_factor_component(root, industries)
    imp = imp.reindex(est.index).fillna(0.0)
    for f in ("size", "nlsize"):
        c = np.corrcoef(est[f], truth[f] + imp[f])[0, 1]
        assert c > 0.9, (f, c)
    # wave 2: the non-linear size swing has the sign the simulator put in
    w2 = slice(*WAVE2)
    assert np.sign(est.loc[w2, "nlsize"].sum()) == np.sign(truth.loc[w2, "nlsize"].sum()) != 0
    assert np.sign(est.loc[w2, "nlsize"].sum()) == np.sign((truth[f] + imp[f]).loc[w2].sum())

    # exposures from the marts against the simulator's true ones. The estimation universes differ a
    # little (the simulator counts stocks listed < 60 sessions before its start as seasoned, and
    # may keep suspended stocks at their last cap; METHODS §2 wants a close on t), which shifts
    # the standardisation slightly: per-day correlation, and exact equality on any day where the
    # universes coincide.
    exp = wh.read("factors", "size_exposures")
    exp["trade_date"] = pd.to_datetime(exp["trade_date"])
    elig = sd[sd["eligible"]]
    m = exp.merge(elig, on=["trade_date", "ts_code"])
    assert len(m) == len(exp) and len(m) > 0.98 * len(elig)
    n_ours = exp.groupby("trade_date").size()
    n_theirs = elig.groupby("trade_date").size().reindex(n_ours.index)
    same = n_ours.index[(n_ours == n_theirs).to_numpy()]
    exact = m[m["trade_date"].isin(same)]
    np.testing.assert_allclose(exact["size"], exact["size_z"], atol=1e-9)
    np.testing.assert_allclose(exact["nlsize"], exact["nlsize_z"], atol=1e-9)
    for ours, theirs in (("size", "size_z"), ("nlsize", "nlsize_z")):
        per_day = m.groupby("trade_date")[[ours, theirs]].corr().xs(ours, level=1)[theirs]
        assert per_day.min() > 0.95, (ours, per_day.min())


def test_chunked_backfill_equals_one_pass_and_totals_cover_all_chunks(warehouse, synthetic, monkeypatch):
    """A run is processed CHUNK_SESSIONS sessions at a time: same lake as the one-pass analytics,
    metadata totals over every chunk, and the constraint check sees a violation in the last chunk."""
    panel, _ = synthetic
    days = _seed_lake(warehouse, panel)
    monkeypatch.setattr(fa, "CHUNK_SESSIONS", 7)  # 58 sessions -> chunks of <= 7 ending at month ends
    res = _run([fa.size_factors], warehouse, days[0], days[-1])
    assert res.success and all(e.passed for e in res.get_asset_check_evaluations())

    exp_ref = sz.size_exposures(panel)
    al = sz.align_previous_exposures(panel, exp_ref, prev_map(panel))
    long_ref, daily_ref = sz.factor_returns(al)
    dec_ref = sz.size_deciles(al)
    lake = {n: warehouse.read("factors", n) for n in ("size_exposures", "factor_returns", "size_decile_returns")}
    for df in lake.values():
        df["trade_date"] = pd.to_datetime(df["trade_date"])
    m = exp_ref.assign(trade_date=pd.to_datetime(exp_ref["trade_date"])).merge(
        lake["size_exposures"], on=["trade_date", "ts_code"], suffixes=("_ref", ""))
    assert len(m) == len(exp_ref) == len(lake["size_exposures"])
    np.testing.assert_allclose(m["nlsize"], m["nlsize_ref"], rtol=1e-12, atol=1e-12)
    m = long_ref.merge(lake["factor_returns"], on=["trade_date", "factor"], suffixes=("_ref", ""))
    assert len(m) == len(long_ref) == len(lake["factor_returns"])
    np.testing.assert_allclose(m["ret"], m["ret_ref"], rtol=0, atol=1e-14)
    m = dec_ref.merge(lake["size_decile_returns"], on=["trade_date", "decile"], suffixes=("_ref", ""))
    assert len(m) == len(dec_ref) == len(lake["size_decile_returns"])
    np.testing.assert_allclose(m["ret_cw"], m["ret_cw_ref"], rtol=1e-12)

    mat = {e.asset_key.to_user_string(): e.materialization.metadata for e in res.get_asset_materialization_events()}
    assert mat["factors/size_exposures"]["dagster/row_count"].value == len(exp_ref)
    assert mat["factors/factor_returns"]["dagster/row_count"].value == len(long_ref)
    assert mat["factors/factor_returns"]["excluded_stock_days"].value["locked"] == int(
        daily_ref["n_excluded_locked"].sum())
    # t-1 of each chunk's first day from the lake (written by the previous chunk), the rest in memory
    n_chunks = len(fa._chunks(days))
    assert n_chunks > -(-len(days) // 7)  # month ends cut some chunks short
    assert mat["factors/factor_returns"]["exposure_days_from_lake"].value == n_chunks - 1
    assert mat["factors/factor_returns"]["exposure_days_recomputed"].value == len(days) - n_chunks + 1
    assert mat["factors/size_decile_returns"]["dagster/row_count"].value == len(dec_ref)

    # the check statistic: ~0 on the estimate, and a wrong industry return on the run's last day shows
    last = al[al["trade_date"] == al["trade_date"].max()]
    long_last = long_ref[long_ref["trade_date"] == al["trade_date"].max()]
    assert fa._constraint_residual(last, long_last) < 1e-12
    bad = long_last.copy()
    bad.loc[bad["factor_type"] == "industry", "ret"] += 1e-6
    assert fa._constraint_residual(last, bad) > 1e-8


def test_read_returns_exactly_the_requested_days(warehouse, synthetic):
    panel, _ = synthetic
    days = _seed_lake(warehouse, panel)
    want = [days[3], days[9], "2023-12-30"]  # gaps with partitions in between; the last has no file
    got = warehouse.read_days("marts", "stock_daily_panel", want, ["trade_date", "ts_code", "ret"])
    assert list(got.columns) == ["trade_date", "ts_code", "ret"]
    assert sorted({to_key(d) for d in got["trade_date"]}) == want[:2]
    ref = panel[pd.to_datetime(panel["trade_date"]).isin(pd.to_datetime(want))]
    assert len(got) == len(ref)
    assert warehouse.read_days("factors", "size_exposures", want, ["trade_date", "size"]).empty
    with pytest.raises(FileNotFoundError, match="size_exposures"):
        warehouse.read_days("factors", "size_exposures", want, ["trade_date", "size"], required=True)


def test_subsets_of_the_multi_asset_reproduce_the_full_step(warehouse, synthetic):
    """Deciles alone (their own t-1 join), SMB alone (deciles read from the lake) and exposures alone
    write what the four-table step wrote; a subset yields only its own materializations and checks."""
    panel, _ = synthetic
    days = _seed_lake(warehouse, panel)
    names = ("size_exposures", "size_decile_returns", "smb_returns")
    assert _run([fa.size_factors], warehouse, days[0], days[-1]).success
    full = {n: warehouse.read("factors", n) for n in names}
    for key, name in ((fa.DECILES, "size_decile_returns"), (fa.SMB, "smb_returns"), (fa.EXPOSURES, "size_exposures")):
        res = _run([fa.size_factors], warehouse, days[5], days[-1], selection=[key])
        assert res.success
        assert {e.asset_key for e in res.get_asset_materialization_events()} == {key}
        checks = {e.check_name for e in res.get_asset_check_evaluations()}
        assert checks == ({"barra_moments"} if key == fa.EXPOSURES else set())
        pd.testing.assert_frame_equal(warehouse.read("factors", name), full[name])
