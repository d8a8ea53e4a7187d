"""Helpers shared by the reliability tests: a tiny simulated market, the pipeline subset they
run, and lake snapshots read exactly as readers do (the warehouse's DuckDB views over the
``????-??.parquet`` globs)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import dagster as dg
import pandas as pd

from sc_assets.resources import LandingFeedSource, Warehouse
from sc_assets.simulator import SimulationParams, simulate

#: a tiny market: few stocks so 100+ partitions stay quick
TINY = SimulationParams(n_stocks=8, start="2023-07-03", end="2023-12-29", seed=7)

PANEL = dg.AssetKey(["marts", "stock_daily_panel"])
INDEX_PANEL = dg.AssetKey(["marts", "index_daily_panel"])


def tiny_market(root: Path, start: str = TINY.start, end: str = TINY.end, n_stocks: int = TINY.n_stocks) -> Path:
    simulate(root, TINY.replace(start=start, end=end, n_stocks=n_stocks))
    return root


def copy_landing(src_root: Path, dst_root: Path) -> Path:
    """Copy ``landing/`` keeping mtimes (raw rows carry the file's mtime)."""
    dst_root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src_root / "landing", dst_root / "landing", copy_function=shutil.copy2)
    return dst_root


def all_assets() -> list:
    from sc_assets.assets.raw import RAW_ASSETS
    from sc_assets.assets.sql import sql_model_assets

    return list(RAW_ASSETS.values()) + list(sql_model_assets)


def panel_selection(*keys: dg.AssetKey) -> dg.AssetSelection:
    """The marts panels ``keys`` and everything upstream (raw -> staging -> marts)."""
    return dg.AssetSelection.assets(*(keys or (PANEL,))).upstream()


def resources(root: Path, chunk_days: int = 64) -> dict:
    return {"warehouse": Warehouse(data_dir=str(root)),
            "feed_source": LandingFeedSource(data_dir=str(root), chunk_days=chunk_days)}


def range_tags(start: str, end: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def materialize_range(root: Path, start: str, end: str, selection: dg.AssetSelection | None = None,
                      chunk_days: int = 64, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dg.materialize(all_assets(), selection=selection or panel_selection(), resources=resources(root, chunk_days),
                              tags=range_tags(start, end), raise_on_error=raise_on_error)


def visible_files(root: Path) -> dict[str, list[str]]:
    """Per lake table, the files a reader sees (the views' globs), relative to the table folder."""
    wh = Warehouse(data_dir=str(root))
    out = {}
    for layer, asset in wh.tables():
        d = wh.table_dir(layer, asset)
        files = sorted(Path(p) for p in __import__("glob").glob(wh.glob(layer, asset)))
        out[f"{layer}.{asset}"] = [p.relative_to(d).as_posix() for p in files]
    return out


def lake_snapshot(root: Path) -> dict[str, pd.DataFrame]:
    """Every lake table read through the warehouse's DuckDB views, rows in a canonical order."""
    wh = Warehouse(data_dir=str(root))
    out = {}
    with wh.connect() as con:
        for layer, asset in wh.tables():
            df = con.execute(f'SELECT * FROM "{layer}"."{asset}"').df()
            df = df[sorted(df.columns)]
            out[f"{layer}.{asset}"] = df.sort_values(list(df.columns)).reset_index(drop=True) if len(df) else df
    return out


def assert_lakes_equal(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
