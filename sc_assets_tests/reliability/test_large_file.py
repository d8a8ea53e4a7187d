"""A very large landing file (issue 12) is parsed batch by batch (``STREAM_BYTES``) and its
memory stays bounded: peak RSS growth while reading a ~1M-row (60 MB) CSV is measured with
psutil in a fresh forked process and must stay within a small multiple of the result's own
size (the parse buffers do not scale with the file). ``$SC_ASSETS_BIG_ROWS`` sets the size."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from sc_assets.feeds import readers

ROWS = int(os.environ.get("SC_ASSETS_BIG_ROWS", "1000000"))

pytestmark = pytest.mark.slow


def _write_big_csv(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    close = np.round(rng.uniform(5, 50, n), 2)
    codes = np.char.add(np.char.zfill(np.arange(n).astype(str), 6), ".SZ")
    table = pa.table({"ts_code": codes, "trade_date": np.full(n, "20240123"), "open": close,
                      "high": np.round(close * 1.02, 2), "low": np.round(close * 0.98, 2), "close": close,
                      "pre_close": close, "vol": np.full(n, 1000.0), "amount": np.round(close * 100, 3)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pcsv.write_csv(table, path, write_options=pcsv.WriteOptions(quoting_style="none"))


def _measure(root: str, conn) -> None:
    import psutil

    from sc_assets.resources.feed_source import LandingFeedSource

    proc = psutil.Process()
    gc.collect()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    table = readers.read_landing_file(Path(root) / "landing/stock_daily/20240123.csv", "stock_daily")
    read_peak, nbytes, rows = peak[0] - base, table.nbytes, table.num_rows
    del table
    gc.collect()
    batch = LandingFeedSource(data_dir=root).read("stock_daily", ["2024-01-23"])
    done.set()
    t.join()
    conn.send({"read_growth": read_peak, "total_growth": peak[0] - base, "nbytes": nbytes, "rows": rows,
               "landed": batch.landed, "accepted": len(batch.rows), "quarantined": len(batch.quarantined)})
    conn.close()
    os._exit(0)


def test_large_file_is_streamed_with_bounded_memory(tmp_path: Path) -> None:
    root = tmp_path / "big"
    path = root / "landing/stock_daily/20240123.csv"
    _write_big_csv(path, ROWS)
    size = path.stat().st_size
    assert size > readers.STREAM_BYTES  # the batch-by-batch path is the one exercised
    gc.collect()
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_measure, args=(str(root), send))
    p.start()
    m = recv.recv()
    p.join()
    mb = {k: round(v / 1e6, 1) for k, v in m.items() if k.endswith(("growth", "nbytes"))}
    print(f"large file: {ROWS} rows, {size / 1e6:.0f} MB CSV; RSS growth MB {mb}")
    assert m["rows"] == ROWS and m["landed"] == ROWS == m["accepted"] + m["quarantined"]
    # reading: the Arrow result plus bounded parse buffers, not a multiple of the file
    assert m["read_growth"] < 2.5 * m["nbytes"] + 64e6, mb
    # reading + row validation in pandas: a few copies of the rows, still bounded
    assert m["total_growth"] < 8 * m["nbytes"] + 128e6, mb
