"""Fixtures of the reliability suite: one tiny simulated market and its uninterrupted reference
lake, built once per session (each test copies the landing folder before writing a lake)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sc_assets_tests.reliability.lake import copy_landing, lake_snapshot, materialize_range, tiny_market

#: the reference backfill (crash, concurrency, idempotency tests): raw -> staging for the bar and
#: cap feeds over every session of the tiny market (>= 100 partitions), in ONE single-run backfill
CRASH_START, CRASH_END = "2023-07-03", "2023-12-29"
CHUNK_DAYS = 32


def crash_selection():
    import dagster as dg

    return dg.AssetSelection.assets(dg.AssetKey(["staging", "stg_stock_daily"]),
                                    dg.AssetKey(["staging", "stg_daily_basic"])).upstream()


@pytest.fixture(scope="session")
def tiny_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data root with only ``landing/`` (and ground truth) of the tiny market: copy, don't write."""
    return tiny_market(tmp_path_factory.mktemp("tiny_market"))


@pytest.fixture(scope="session")
def reference(tiny_landing: Path, tmp_path_factory: pytest.TempPathFactory):
    """(root, lake snapshot, seconds) of one uninterrupted in-process backfill CRASH_START..END."""
    root = copy_landing(tiny_landing, tmp_path_factory.mktemp("reference"))
    t0 = time.perf_counter()
    materialize_range(root, CRASH_START, CRASH_END, selection=crash_selection(), chunk_days=CHUNK_DAYS)
    seconds = time.perf_counter() - t0
    return root, lake_snapshot(root), seconds
