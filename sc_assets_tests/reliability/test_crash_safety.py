"""Crash safety (issue 12): SIGKILL the process materializing a backfill at random points, then
rerun it uninterrupted: the lake equals an uninterrupted run's, and readers (the DuckDB views'
``????-??.parquet`` globs) never see a temp file or a half-written partition.

The number of kills is ``$SC_ASSETS_CRASH_CASES`` (default 5, so ``make test`` stays fast);
``$SC_ASSETS_CRASH_SEED`` picks the kill times.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import re
import signal
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from sc_assets_tests.reliability.conftest import CHUNK_DAYS, CRASH_END, CRASH_START, crash_selection
from sc_assets_tests.reliability.lake import (
    assert_lakes_equal,
    copy_landing,
    lake_snapshot,
    materialize_range,
    visible_files,
)

CASES = int(os.environ.get("SC_ASSETS_CRASH_CASES", "5"))
SEED = int(os.environ.get("SC_ASSETS_CRASH_SEED", "12"))


def _child(root: str) -> None:
    os.environ["SC_ASSETS_DATA_DIR"] = root
    materialize_range(Path(root), CRASH_START, CRASH_END, selection=crash_selection(), chunk_days=CHUNK_DAYS)
    os._exit(0)


def _assert_readers_see_only_complete_files(root: Path) -> None:
    for table, files in visible_files(root).items():
        for f in files:
            assert (f == "part.parquet" or re.fullmatch(r"\d{4}-\d{2}\.parquet", f)) and ".tmp" not in f, (table, f)
    lake = root / "lake"
    for p in lake.rglob("*.parquet"):
        if not p.name.startswith(".tmp"):
            pq.read_metadata(p)  # a complete file: footer present
    lake_snapshot(root)  # every view answers
    catalog = root / "warehouse.duckdb"
    if catalog.exists():  # the catalog a user opens with the duckdb CLI survives the kill too
        with duckdb.connect(str(catalog)) as con:
            views = con.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()
            for schema, view in views:
                con.execute(f'SELECT count(*) FROM "{schema}"."{view}"').fetchone()


def test_sigkill_at_random_points_then_rerun_equals_uninterrupted(reference, tiny_landing: Path, tmp_path: Path) -> None:
    _, want, seconds = reference
    root = copy_landing(tiny_landing, tmp_path / "crash")
    rng = random.Random(SEED)
    ctx = mp.get_context("fork")
    killed, finished, leftovers = 0, 0, 0
    log = []
    upper = 0.8 * seconds  # the reference also paid the first GX import
    for _ in range(CASES):
        at = rng.uniform(0.05, upper)
        p = ctx.Process(target=_child, args=(str(root),))
        t0 = time.monotonic()
        p.start()
        deadline = t0 + at
        while time.monotonic() < deadline and p.is_alive():
            time.sleep(0.01)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            killed += 1
        else:
            finished += 1
            upper = min(upper, 0.9 * (time.monotonic() - t0))  # keep later kill points inside a run
        p.join()
        _assert_readers_see_only_complete_files(root)
        leftovers = len(list((root / "lake").rglob(".tmp*"))) if (root / "lake").exists() else 0
        log.append((round(at, 2), p.exitcode, leftovers))
    assert killed >= max(1, CASES // 2), log  # most kill points fall inside the run
    materialize_range(root, CRASH_START, CRASH_END, selection=crash_selection(), chunk_days=CHUNK_DAYS)
    _assert_readers_see_only_complete_files(root)
    assert_lakes_equal(lake_snapshot(root), want)
    print(f"crash cases={CASES} killed={killed} finished={finished} reference={seconds:.1f}s "
          f"temp files left by kills={leftovers} log(at s, exit, tmp)={log}")
