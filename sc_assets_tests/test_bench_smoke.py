"""Smoke run of ``sc-assets bench`` on a tiny market (raw layer only, to stay seconds-long).

Checks the harness, not the speed: every measure and target is in results.json (both copies),
stage times are attributed to the layer that ran, the I/O floor read every landed row (it
matches what the raw layer accounted for), the daily update landed the held-back session, and
the drawdown baseline agrees with its per-series loop. No timing asserts.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from sc_assets import bench
from sc_assets.feeds.schemas import DAILY_FEEDS
from sc_assets.partitions import trading_days_between
from sc_assets.resources import Warehouse
from sc_assets.settings import DATA_DIR_ENV


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("bench")
    root, out = base / "data", base / "out"
    mp.setenv(DATA_DIR_ENV, str(root))  # run_bench exports both; restored after the module
    for name, value in bench.DAGSTER_ENV_DEFAULTS.items():
        mp.setenv(name, value)
    try:
        results = bench.run_bench(stocks=40, start="2024-01-02", end="2024-01-19", root=root, out_dir=out,
                                  wls_days=3, dd_series=20, dd_repeats=1, layers=("raw",), echo=lambda *_: None)
    finally:
        mp.undo()
    return results, root, out


def test_results_json_has_every_measure_and_target(smoke):
    results, root, out = smoke
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads((root / "bench" / "results.json").read_text())
    assert set(on_disk["measures"]) == set(bench.MEASURES)
    assert [t["measure"] for t in on_disk["targets"]] == [t.measure for t in bench.TARGETS]
    for t in on_disk["targets"]:
        assert t["pass"] in (True, False, None)
        if t["value"] is not None:
            assert t["pass"] == next(x for x in bench.TARGETS if x.measure == t["measure"]).passes(t["value"])
    table = bench.results_table(results)
    for t in bench.TARGETS:
        assert t.label in table


def test_chain_stages_are_attributed_to_the_layers_that_ran(smoke):
    results, _root, _out = smoke
    m = results["measures"]
    assert results["chain"]["success"], results["chain"]["errors"]
    steps = results["chain"]["steps"]
    assert steps and {s["layer"] for s in steps} == {"raw"}
    assert m["stage_raw_s"] == pytest.approx(sum(s["seconds"] for s in steps), abs=0.01)
    assert all(m[f"stage_{layer}_s"] == 0 for layer in bench.LAYERS if layer != "raw")
    assert m["chain_s"] >= m["stage_raw_s"] and m["chain_overhead_s"] >= 0
    assert m["simulate_s"] > 0 and m["peak_rss_gib"] > 0.05  # a Python process with dagster loaded
    orch = results["orchestration_floor"]  # every raw daily feed is one partitioned step
    first, last = results["range"]["backfill"]
    assert orch["partitioned_steps_in_chain"] == len(DAILY_FEEDS)
    assert orch["partitions"] == len(trading_days_between(first, last)) > 1
    # the factors layer did not run: the WLS baseline reports why instead of a number
    assert m["factor_returns_speedup"] is None and "error" in results["wls_baseline"]


def test_io_floor_reads_every_landed_row_and_daily_update_lands_the_last_day(smoke):
    results, root, _out = smoke
    last = results["range"]["incremental"]
    assert results["range"]["held_back_files"] >= 4  # stock_daily, daily_basic, adj_factor, st_flags, ...
    assert results["incremental"]["success"]
    assert not list((root / ".bench_holdback").rglob("*.*"))  # everything held back was landed again
    con = duckdb.connect()
    for feed in ("stock_daily", "daily_basic", "adj_factor", "st_flags"):
        assert feed in DAILY_FEEDS
        lake = root / "lake"
        n = con.execute(f"SELECT count(*) FROM read_parquet('{lake}/raw/{feed}/????-??.parquet')").fetchone()[0]
        q = list((lake / "quarantine" / feed).glob("????-??.parquet"))
        if q:
            n += con.execute(f"SELECT count(*) FROM read_parquet('{lake}/quarantine/{feed}/????-??.parquet')").fetchone()[0]
        assert results["io_floor"]["per_feed"][feed]["rows"] == n, feed
        assert Warehouse(data_dir=str(root)).days_present("raw", feed, [last]) == [last]
    assert results["io_floor"]["per_feed"]["stock_daily"]["vendor_files"] >= 1  # GBK exports took the slow path


def test_drawdown_baseline_agrees_with_its_loop(smoke):
    dd = smoke[0]["drawdown_baseline"]
    assert dd["same_dates"] and dd["max_abs_diff_mdd"] < 1e-10 and dd["max_abs_diff_corr"] < 1e-8
    assert smoke[0]["measures"]["drawdown_corr_speedup"] == pytest.approx(dd["speedup"], rel=0.01)
