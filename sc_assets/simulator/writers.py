"""Landing-file writers: Tushare-style CSV, Wind/Choice-style GBK exports, Parquet.

Files go to ``<root>/landing/<feed>/<YYYYMMDD>.<ext>`` (DESIGN §4). Column names and units are
the canonical raw ones of :mod:`sc_assets.feeds.schemas` (Tushare units). A vendor export uses
the first Chinese alias of each field from :func:`sc_assets.feeds.aliases.export_headers` and
divides canonical values by the alias factor (e.g. 成交额(元) = amount[1,000 CNY] * 1000); its
dates are ``YYYY-MM-DD`` and the file is GBK-encoded. Tushare CSVs use ``YYYYMMDD`` dates.

Writes run on a small thread pool (Arrow releases the GIL while formatting), bounded so that
pending tables never pile up in memory; every file is written to a temp name and renamed.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from sc_assets.feeds.aliases import export_headers
from sc_assets.feeds.schemas import FEEDS

_CSV_OPTS = pcsv.WriteOptions(include_header=False, quoting_style="none", batch_size=8192)


def _scale_for_export(feed: str, table: pa.Table) -> tuple[pa.Table, list[str]]:
    headers = export_headers(feed)
    missing = [c for c in table.column_names if c not in headers]
    if missing:
        raise ValueError(f"feed {feed}: no Chinese alias for {missing}; cannot write a vendor export")
    cols, names = [], []
    for name in table.column_names:
        header, factor = headers[name]
        col = table.column(name)
        if factor != 1.0 and pa.types.is_floating(col.type):
            col = pc.round(pc.divide(col, factor), 6)
        cols.append(col)
        names.append(header)
    return pa.table(cols, names=names), names


def _iso_dates(table: pa.Table, date_col: str) -> pa.Table:
    if date_col not in table.column_names:
        return table
    col = table.column(date_col)
    if pa.types.is_string(col.type):
        iso = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(col, 0, 4), pc.utf8_slice_codeunits(col, 4, 6),
            pc.utf8_slice_codeunits(col, 6, 8), "-")
        return table.set_column(table.column_names.index(date_col), date_col, iso)
    return table


def write_csv(path: Path, table: pa.Table, header: list[str] | None = None, encoding: str = "utf-8") -> None:
    """Write ``table`` as CSV with an unquoted header line (default: the column names)."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as fh:
        fh.write((",".join(header or table.column_names) + "\n").encode(encoding))
        if encoding == "utf-8":
            pcsv.write_csv(table, fh, _CSV_OPTS)
        else:  # data cells are ASCII except names; encode through Python for other code pages
            buf = pa.BufferOutputStream()
            pcsv.write_csv(table, buf, _CSV_OPTS)
            fh.write(buf.getvalue().to_pybytes().decode("utf-8").encode(encoding))
    os.replace(tmp, path)


def write_parquet(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, path)


class LandingWriter:
    """Writes one file per (feed, day) under ``<root>/landing``; thread pool with back-pressure."""

    def __init__(self, root: Path, workers: int = 2, max_pending: int = 48):
        self.root = Path(root)
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.sem = threading.BoundedSemaphore(max_pending)
        self.futures: list[Future] = []
        self.files = 0
        self.paths: list[Path] = []
        for feed in FEEDS:
            (self.root / "landing" / feed).mkdir(parents=True, exist_ok=True)

    def _submit(self, fn, *args) -> None:
        self.sem.acquire()

        def run():
            try:
                fn(*args)
            finally:
                self.sem.release()

        self.futures.append(self.pool.submit(run))
        self.files += 1
        if len(self.futures) > 512:
            done = [f for f in self.futures if f.done()]
            for f in done:
                f.result()
            self.futures = [f for f in self.futures if not f.done()]

    def write(self, feed: str, day: str, table: pa.Table, fmt: str = "csv") -> Path:
        """``day`` as YYYYMMDD; ``fmt`` one of csv, gbk (vendor export), parquet."""
        spec = FEEDS[feed]
        table = table.select(spec.column_names)
        folder = self.root / "landing" / feed
        if fmt == "parquet":
            path = folder / f"{day}.parquet"
            self._submit(write_parquet, path, table)
        elif fmt == "gbk":
            path = folder / f"{day}.csv"
            if spec.date_column:
                table = _iso_dates(table, spec.date_column)
            vendor, names = _scale_for_export(feed, table)
            self._submit(write_csv, path, vendor, names, "gbk")
        else:
            path = folder / f"{day}.csv"
            self._submit(write_csv, path, table, None, "utf-8")
        self.paths.append(path)
        return path

    def close(self) -> None:
        for f in self.futures:
            f.result()
        self.pool.shutdown(wait=True)
