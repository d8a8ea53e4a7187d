"""Stress assets: the tables do not depend on the row order of the lake files they read.

A re-materialized partition may hold the same rows in another order (issue 11: reruns of
redemption_stress_by_stock and fire_sale_stock_path came out in another order, and the fire-sale
scenario moved at ~3e-9). The hand-built lake of ``test_crowding`` is stressed twice, the second
time after every input partition was rewritten with its rows shuffled: every stress table must
come out with the same rows in the same order, byte for byte (the calibration's input_hash, a
digest of the input files' bytes, excepted).
"""

from __future__ import annotations

import warnings

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest

from sc_assets.assets import crowding as ca
from sc_assets.assets import stress as sa
from sc_assets.partitions import trading_days_between
from sc_assets_tests.assets.test_crowding import END, _build_lake

warnings.filterwarnings("ignore", category=dg.BetaWarning)

STRESS = [sa.basis_stress_events, sa.redemption_stress, sa.fire_sale_simulation]
TABLES = ("basis_stress_events", "redemption_stress", "redemption_stress_by_stock", "fire_sale_simulation",
          "fire_sale_stock_path", "fire_sale_fund_path", "fire_sale_calibration")
FIRE_CFG = {"y_grid": [0.4, 0.8, 1.2], "kappa_grid": [0.0, 1.0], "wave1_start": "2024-01-15", "wave1_end": "2024-01-23"}
# inputs the stress assets read (each partition rewritten with its rows shuffled)
INPUTS = (("marts", "stock_daily_panel"), ("crowding", "quant_holdings_estimate"), ("staging", "stg_index_weight"),
          ("marts", "index_daily_panel"), ("marts", "futures_basis_panel"))


def _stress(wh) -> dict:
    res = dg.materialize(STRESS, resources={"warehouse": wh},
                         run_config={"ops": {"fire_sale_simulation": {"config": FIRE_CFG}}})
    assert res.success
    out = {}
    for name in TABLES:
        t = pq.read_table(wh.table_path("stress", name))
        out[name] = t.drop_columns(["input_hash"]) if name == "fire_sale_calibration" else t
    return out


def _shuffle_partitions(wh, layer: str, asset: str, rng: np.random.Generator) -> int:
    moved = 0
    for day in wh.partitions(layer, asset):
        t = wh.read_days(layer, asset, [day], None, arrow=True)
        if t.num_rows < 2:
            continue
        perm = rng.permutation(t.num_rows)
        while (perm == np.arange(t.num_rows)).all():
            perm = rng.permutation(t.num_rows)
        wh.write_partitions(layer, asset, t.take(perm), days=[day])
        moved += 1
    return moved


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from sc_assets.resources import Warehouse

    root = tmp_path_factory.mktemp("stress") / "data"
    root.mkdir()
    wh = Warehouse(data_dir=str(root))
    _build_lake(wh)
    first = trading_days_between("2023-12-01", END)
    res = dg.materialize([ca.crowding_tables], selection=[ca.HOLDINGS], resources={"warehouse": wh},
                         tags={"dagster/asset_partition_range_start": first[0].strftime("%Y-%m-%d"),
                               "dagster/asset_partition_range_end": END})
    assert res.success
    return wh


def test_stress_tables_independent_of_input_row_order(lake):
    wh = lake
    first = _stress(wh)
    assert first["fire_sale_stock_path"].num_rows > 0 and first["redemption_stress_by_stock"].num_rows > 0
    rng = np.random.default_rng(5)
    moved = {asset: _shuffle_partitions(wh, layer, asset, rng) for layer, asset in INPUTS}
    assert min(moved["stock_daily_panel"], moved["quant_holdings_estimate"], moved["futures_basis_panel"]) > 20
    second = _stress(wh)
    cal = second["fire_sale_calibration"].to_pandas().set_index("run")
    assert not cal["calibration_reused"].any()  # the shuffled files changed the fingerprints: windows recomputed
    for name in TABLES:
        assert second[name].equals(first[name]), name
    # rows in key order
    per = first["redemption_stress_by_stock"].to_pandas()
    assert per[["day", "ts_code"]].equals(per[["day", "ts_code"]].sort_values(["day", "ts_code"], ignore_index=True))
    sp = first["fire_sale_stock_path"].to_pandas()
    for _, g in sp.groupby("run", sort=False):
        assert g[["day", "ts_code"]].reset_index(drop=True).equals(
            g[["day", "ts_code"]].sort_values(["day", "ts_code"], ignore_index=True))


def _basis_reference(wh, cols):
    files = wh.files("marts", "futures_basis_panel")
    return pq.ParquetDataset(files, partitioning=None).read(columns=cols).to_pandas()


def test_basis_row_cache_follows_the_lake(warehouse):
    """The cached futures-panel reader returns the rows of a full read after partitions are added,
    rewritten and removed, and rebuilds an unreadable cache."""
    import pandas as pd

    days = [d.strftime("%Y-%m-%d") for d in trading_days_between("2023-12-01", "2024-01-31")]
    rng = np.random.default_rng(3)

    def write(ds, shift=0.0):
        rows = [{"trade_date": pd.Timestamp(d).date(), "ts_code": f"{p}2402.CFX", "fut_code": p, "is_main": True,
                 "basis_ann": rng.normal(-0.1, 0.1) + shift, "basis_ann_settle": rng.normal(-0.1, 0.1)}
                for d in ds for p in ("IC", "IM")]
        warehouse.write_partitions("marts", "futures_basis_panel", pd.DataFrame(rows), days=ds)

    cols = ["trade_date", "ts_code", "fut_code", "is_main", "basis_ann"]
    cache = warehouse.root / ".cache" / "stress" / "futures_basis_rows.parquet"
    write(days[:-3])
    pd.testing.assert_frame_equal(sa._read_basis_panel(warehouse, cols), _basis_reference(warehouse, cols))
    assert cache.exists()
    write(days[-3:])  # new days (the daily update)
    write(days[-6:-5], shift=-1.0)  # a rewritten day (January)
    warehouse.month_path("marts", "futures_basis_panel", days[2]).unlink()  # a month removed (December)
    got = sa._read_basis_panel(warehouse, cols)
    ref = _basis_reference(warehouse, cols)
    pd.testing.assert_frame_equal(got, ref)
    december = sum(d < "2024-01" for d in days)
    assert len(got) == 2 * (len(days) - december) and (got["basis_ann"] < -0.5).sum() == 2
    settle = ["trade_date", "fut_code", "basis_ann_settle"]
    pd.testing.assert_frame_equal(sa._read_basis_panel(warehouse, settle), _basis_reference(warehouse, settle))
    cache.write_bytes(b"not parquet")
    pd.testing.assert_frame_equal(sa._read_basis_panel(warehouse, cols), ref)


def test_stress_state_memo_invalidated_by_a_rewritten_file(lake):
    """The stress state of a day is built once per process and rebuilt when a file it reads changes."""
    wh = lake
    cparams = sa.cr.CrowdingParams()
    day = sa._latest_holdings_day(wh, "")
    first, *_ = sa._stress_stocks(wh, day, cparams)
    memo = sa._STATE_MEMO[0][1][0]
    again, *_ = sa._stress_stocks(wh, day, cparams)
    assert sa._STATE_MEMO[0][1][0] is memo  # served from the memo
    assert again.equals(first)
    lookback = sa.lookback_keys([day], 10)[0]
    p = wh.read("marts", "stock_daily_panel", days=[lookback])
    p["vol"] = p["vol"] * 4.0
    wh.write_partitions("marts", "stock_daily_panel", p, days=[lookback])
    changed, *_ = sa._stress_stocks(wh, day, cparams)
    assert sa._STATE_MEMO[0][1][0] is not memo
    assert (changed["adv_shares"].to_numpy() > first["adv_shares"].to_numpy()).all()
