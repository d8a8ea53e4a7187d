"""Idempotency (issue 12): rerunning a partition changes nothing; a re-dropped identical landing
file makes the sensor request no run; a changed file requests exactly its partition and what is
downstream of its feed, and running that request rewrites only that day's files."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from sc_assets.resources import Warehouse
from sc_assets.sensors import landing_sensor
from sc_assets_tests.reliability.conftest import crash_selection
from sc_assets_tests.reliability.lake import all_assets, assert_lakes_equal, lake_snapshot, resources

DAY = "2023-08-15"
NAME = "20230815.csv"


def _hashes(root: Path) -> dict[str, str]:
    lake = root / "lake"
    return {p.relative_to(lake).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(lake.rglob("*.parquet")) if not p.name.startswith(".tmp")}


def _copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


def _run_day(root: Path, selection: dg.AssetSelection) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dg.materialize(all_assets(), selection=selection, resources=resources(root), partition_key=DAY)


def test_rerunning_a_partition_changes_nothing(reference, tmp_path: Path) -> None:
    ref_root, want, _ = reference
    root = _copy_root(ref_root, tmp_path / "rerun")
    before = _hashes(root)
    _run_day(root, crash_selection())
    after = _hashes(root)
    assert set(after) == set(before)  # no new file, no lost file
    changed = sorted(k for k in before if before[k] != after[k])
    # raw partitions are byte-identical; a staging file may differ only in DuckDB's row order
    assert [k for k in changed if not k.startswith("staging/")] == [], changed
    assert_lakes_equal(lake_snapshot(root), want)


def _drop(path: Path, body: bytes, age_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    t = time.time() - age_s
    os.utime(path, (t, t))


def _tick(cursor=None):
    ctx = dg.build_sensor_context(cursor=cursor)
    result = landing_sensor(ctx)
    requests = [] if isinstance(result, dg.SkipReason) or result is None else list(result)
    return requests, ctx.cursor


def test_sensor_identical_redrop_no_run_changed_file_exactly_its_partition(
    reference, tiny_landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sc_assets.definitions import defs

    ref_root, _, _ = reference
    watch = tmp_path / "watched"
    monkeypatch.setenv("SC_ASSETS_DATA_DIR", str(watch))
    src = tiny_landing / "landing"
    days = ["20230814.csv", NAME]
    for name in days:
        _drop(watch / "landing" / "stock_daily" / name, (src / "stock_daily" / name).read_bytes(), 600)
    _drop(watch / "landing" / "daily_basic" / NAME, (src / "daily_basic" / NAME).read_bytes(), 600)

    first, cursor = _tick()
    assert sorted(r.partition_key for r in first) == ["2023-08-14", DAY]
    again, cursor = _tick(cursor)
    assert again == []
    # the same bytes dropped again (new mtime): no run
    _drop(watch / "landing" / "stock_daily" / NAME, (src / "stock_daily" / NAME).read_bytes(), 120)
    redrop, cursor = _tick(cursor)
    assert redrop == []
    # a corrected file: exactly its partition, its feed and everything downstream of it
    df = pd.read_csv(src / "stock_daily" / NAME, dtype=str)
    df.loc[0, "amount"] = f"{float(df.loc[0, 'amount']) * 1.01:.3f}"
    changed = df.to_csv(index=False, lineterminator="\n").encode()
    _drop(watch / "landing" / "stock_daily" / NAME, changed, 60)
    reqs, cursor = _tick(cursor)
    assert len(reqs) == 1 and reqs[0].partition_key == DAY
    graph = defs.resolve_asset_graph()
    raw_key = dg.AssetKey(["raw", "stock_daily"])
    assert set(reqs[0].asset_selection) == dg.AssetSelection.assets(raw_key).downstream().resolve(graph)
    assert dg.AssetKey(["raw", "daily_basic"]) not in reqs[0].asset_selection
    assert _tick(cursor)[0] == []

    # running the request on a copy of the reference lake rewrites only that day's downstream files
    root = _copy_root(ref_root, tmp_path / "applied")
    target = root / "landing" / "stock_daily" / NAME
    target.write_bytes(changed)
    before = _hashes(root)
    keys = set(reqs[0].asset_selection) & crash_selection().resolve(graph)  # the raw -> staging part of it
    _run_day(root, dg.AssetSelection.assets(*keys))
    after = _hashes(root)
    diff = {k for k in before if before[k] != after[k]}
    assert f"raw/stock_daily/{DAY[:7]}.parquet" in diff
    assert diff <= {f"raw/stock_daily/{DAY[:7]}.parquet", f"staging/stg_stock_daily/{DAY[:7]}.parquet"}, diff
    wh, ref = Warehouse(data_dir=str(root)), Warehouse(data_dir=str(ref_root))
    for layer, asset in (("raw", "stock_daily"), ("staging", "stg_stock_daily")):  # the month's other days kept
        others = [d for d in ref.partitions(layer, asset) if d[:7] == DAY[:7] and d != DAY]
        assert others and wh.partitions(layer, asset) == ref.partitions(layer, asset)
        pd.testing.assert_frame_equal(wh.read(layer, asset, days=others), ref.read(layer, asset, days=others))


def test_sensor_ignores_a_file_dated_after_the_last_partition_until_that_day_exists(
    tiny_landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A landing file named for a session whose partition does not exist yet (a future date)
    must not become a run request for an unknown partition (that fails the whole tick)."""
    from sc_assets.partitions import sessions, trading_days
    from sc_assets.sensors import scan_landing

    last = pd.Timestamp(trading_days.get_last_partition_key())
    future = [d for d in sessions() if d > last]
    if not future:
        pytest.skip("the calendar has no session after the last partition")
    name = future[0].strftime("%Y%m%d") + ".csv"
    root = tmp_path / "watched"
    body = (tiny_landing / "landing" / "stock_daily" / NAME).read_bytes()
    _drop(root / "landing" / "stock_daily" / name, body, 600)
    _drop(root / "landing" / "stock_daily" / NAME, body, 600)
    changes, state = scan_landing(root, {})
    assert [c.day for c in changes] == [DAY]
    assert f"stock_daily/{name}" not in state  # looked at again once its partition exists
