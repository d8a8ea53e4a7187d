"""The landing-folder feed source: lists and reads ``<data_root>/landing/<feed>/<YYYYMMDD>.<ext>``.

Layout (DESIGN.md §4)::

    landing/<feed>/<YYYYMMDD>.csv | .csv.gz | .parquet

Daily feeds have one file per trading day (several files for one day are all read: e.g.
``20240122.csv`` and a re-delivered ``20240122.csv.gz``; both stay in raw and staging keeps the
latest by ``source_mtime_ns``). Reference feeds (stock_basic, fut_basic) are snapshots; the
raw table merges all snapshots, later files overriding earlier ones per key.

Every returned raw row carries ``trade_date`` (DATE; fund_nav: = nav_date; reference feeds: the
snapshot file's day), ``source_file`` (path relative to the data root), ``source_line``
(1-based line in the file, header = line 1) and ``source_mtime_ns`` (the file's mtime).

Landing files are only ever read: never moved, rewritten or deleted. Every path is resolved
inside the data root (``settings.inside_root``): ``..`` or a symlink that leads out of the
root is refused with :class:`sc_assets.settings.UnsafePathError`.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sc_assets.feeds.readers import canonical_schema, read_landing_files
from sc_assets.feeds.schemas import FEEDS, FeedSpec
from sc_assets.feeds.validation import check_rows, last_per_key, quarantine_frame, reason_counts
from sc_assets.settings import data_root, inside_root

FILE_RE = re.compile(r"^(\d{8})\.(csv|csv\.gz|parquet)$")
SOURCE_FIELDS = [
    pa.field("source_file", pa.string()),
    pa.field("source_line", pa.int64()),
    pa.field("source_mtime_ns", pa.int64()),
]


def raw_schema(feed: str) -> pa.Schema:
    """Arrow schema of ``raw.<feed>``: canonical columns, ``trade_date`` (added when the feed's
    date column has another name or the feed is a reference snapshot), then the source columns."""
    schema = canonical_schema(feed)
    if "trade_date" not in schema.names:
        schema = schema.append(pa.field("trade_date", pa.date32()))
    for f in SOURCE_FIELDS:
        schema = schema.append(f)
    return schema


def quarantine_schema(feed: str) -> pa.Schema:
    """Arrow schema of ``quarantine.<feed>``: trade_date (the file's day), every canonical
    column as a string (the row's own trade_date as ``row_trade_date``), reason, source."""
    spec = FEEDS[feed]
    fields = [pa.field("trade_date", pa.date32())]
    fields += [pa.field("row_trade_date" if c == "trade_date" else c, pa.string()) for c in spec.column_names]
    fields += [pa.field("reason", pa.string()), pa.field("source_file", pa.string()), pa.field("source_line", pa.int64())]
    return pa.schema(fields)


@dataclass(frozen=True)
class LandingFile:
    feed: str
    day: date  # from the file name
    path: Path  # resolved, inside the data root
    rel: str  # relative to the data root, e.g. landing/stock_daily/20240122.csv
    mtime_ns: int
    size: int


@dataclass
class FeedBatch:
    """What one read of the landing folder produced.

    ``table`` holds the accepted rows (Arrow, exactly ``raw_schema``: what the raw asset writes,
    issue 11), ``rows`` the same as a pandas frame (converted on first use), ``quarantined`` the
    rejected ones (pandas, quarantine schema). ``landed == len(rows) + len(quarantined) + superseded``;
    ``superseded`` is non-zero only for reference snapshots (rows overridden by a later file).
    """

    feed: str
    days: list[str]
    files: list[LandingFile]
    table: pa.Table
    quarantined: pd.DataFrame
    landed: int
    superseded: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @functools.cached_property
    def rows(self) -> pd.DataFrame:
        """The accepted rows as pandas (dates as datetime64)."""
        return self.table.to_pandas(date_as_object=False)

    @property
    def days_without_file(self) -> list[str]:
        have = {f"{f.day:%Y-%m-%d}" for f in self.files}
        return [d for d in self.days if d not in have]

    @property
    def accounted(self) -> bool:
        return self.landed == self.table.num_rows + len(self.quarantined) + self.superseded


@functools.lru_cache(maxsize=64)
def _empty_quarantine(feed: str) -> pd.DataFrame:
    """An empty quarantine frame of ``feed`` (callers get a shallow copy)."""
    return quarantine_schema(feed).empty_table().to_pandas(date_as_object=False)


def _day_key(day: str | date | pd.Timestamp) -> str:
    return pd.Timestamp(day).strftime("%Y-%m-%d")


class LandingFeedSource(dg.ConfigurableResource):
    """Reads vendor/simulator files from ``<data_root>/landing`` into validated raw rows.

    ``data_dir`` defaults to ``$SC_ASSETS_DATA_DIR`` or ``./data`` (like ``Warehouse``).
    ``chunk_days``: raw assets process a long backfill this many days at a time, so memory
    stays bounded (one chunk of rows in memory, not the whole history).
    """

    data_dir: str = ""
    chunk_days: int = 64

    @property
    def root(self) -> Path:
        return data_root(self.data_dir or None)

    def landing_dir(self, feed: str) -> Path:
        if feed not in FEEDS:
            raise KeyError(f"unknown feed {feed!r}; known feeds: {sorted(FEEDS)}")
        return inside_root(self.root, Path("landing") / feed)

    def list_files(self, feed: str, days: Iterable[str | date] | None = None) -> list[LandingFile]:
        """Landing files of ``feed`` (optionally only for ``days``), sorted by (day, mtime, name).

        One ``scandir`` of the landing folder: a regular file there is inside the data root
        (the folder is resolved); only a symlink is resolved and checked (``inside_root``)."""
        d = self.landing_dir(feed)
        if not d.is_dir():
            return []
        want = None if days is None else {pd.Timestamp(x).strftime("%Y%m%d") for x in days}
        root = self.root
        out = []
        with os.scandir(d) as entries:
            for e in entries:
                m = FILE_RE.match(e.name)
                if not m or (want is not None and m.group(1) not in want):
                    continue
                path = d / e.name
                if e.is_symlink():
                    resolved = inside_root(root, path)  # refuses symlinks out of the root
                    if not resolved.is_file():
                        continue
                    st = resolved.stat()
                else:
                    if not e.is_file(follow_symlinks=False):
                        continue
                    resolved, st = path, e.stat(follow_symlinks=False)
                day = pd.Timestamp(m.group(1)).date()
                out.append(LandingFile(feed, day, resolved, path.relative_to(root).as_posix(), st.st_mtime_ns,
                                       st.st_size))
        out.sort(key=lambda f: (f.day, f.mtime_ns, f.rel))
        return out

    def off_calendar_files(self, feed: str, start: str | date, end: str | date) -> list[LandingFile]:
        """Files dated in [start, end] whose day is not an SSE session (weekend/holiday): no
        partition ever reads them, so the raw assets report them instead of ignoring them."""
        from sc_assets.partitions import sessions

        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        sess = set(sessions())
        return [f for f in self.list_files(feed)
                if lo <= pd.Timestamp(f.day) <= hi and pd.Timestamp(f.day) not in sess]

    # ---- reading --------------------------------------------------------------------
    def _read_files(self, spec: FeedSpec, files: Sequence[LandingFile]) -> tuple[pa.Table, np.ndarray]:
        """The canonical rows of ``files`` with ``source_line``, ``source_file`` and
        ``source_mtime_ns`` (Arrow), and each row's file day (datetime64[D])."""
        if not files:
            schema = canonical_schema(spec.name)
            for f in (SOURCE_FIELDS[1], SOURCE_FIELDS[0], SOURCE_FIELDS[2]):
                schema = schema.append(f)
            return schema.empty_table(), np.array([], dtype="datetime64[D]")
        # one read for all the files (readers.read_landing_files batches them), then the
        # per-file lineage columns built once, vectorised; source_file stays dictionary-encoded
        # (file index -> name) through validation, which groups rows by it (decoded in _finish)
        table, counts = read_landing_files([f.path for f in files], spec.name, [f.rel for f in files])
        which = pa.array(np.repeat(np.arange(len(files), dtype=np.int32), counts))
        table = table.append_column("source_file", pa.DictionaryArray.from_arrays(
            which, pa.array([f.rel for f in files], pa.string())))
        table = table.append_column("source_mtime_ns", pc.take(
            pa.array([f.mtime_ns for f in files], pa.int64()), which))
        file_days = np.repeat(np.array([np.datetime64(f.day, "D") for f in files]), counts)
        return table, file_days

    def _finish(self, spec: FeedSpec, table: pa.Table, file_day: np.ndarray,
                keep: np.ndarray, reasons: np.ndarray) -> tuple[pa.Table, pd.DataFrame]:
        """Accepted rows (Arrow, raw schema) and quarantined rows (pandas, quarantine schema)."""
        clean = bool(keep.all())
        rows = table if clean else table.filter(pa.array(keep))
        if spec.date_column is None:
            rows = rows.append_column("trade_date", pa.array(file_day[keep], pa.date32()))
        elif spec.date_column != "trade_date":
            rows = rows.append_column("trade_date", rows[spec.date_column])
        schema = raw_schema(spec.name)
        rows = rows.select(schema.names)
        if not rows.schema.equals(schema):
            rows = rows.cast(schema)
        if clean:  # the common case: no pandas work at all
            q = _empty_quarantine(spec.name).copy(deep=False)
        else:
            q = quarantine_frame(table, reasons, spec, file_day)[quarantine_schema(spec.name).names]
        return rows, q

    def read(self, feed: str, days: Sequence[str | date], files: Sequence[LandingFile] | None = None) -> FeedBatch:
        """Read and validate every landing file of the daily ``feed`` for ``days``.

        ``files``: those days' files when the caller already listed the folder (a backfill lists
        it once, not once per chunk); default: list them now."""
        spec = FEEDS[feed]
        if not spec.partitioned:
            raise ValueError(f"{feed} is a reference snapshot feed: use read_snapshots()")
        keys = [_day_key(d) for d in days]
        files = self.list_files(feed, keys) if files is None else list(files)
        table, file_day = self._read_files(spec, files)
        check = check_rows(table, spec, file_day)
        rows, q = self._finish(spec, table, file_day, check.free, check.text)
        return FeedBatch(feed, keys, files, rows, q, landed=table.num_rows,
                         reasons=reason_counts(check.text, check.free))

    def read_snapshots(self, feed: str) -> FeedBatch:
        """Read every snapshot of a reference ``feed`` and merge them: per key, the row from the
        latest file (by file day, then mtime) wins. Rows overridden are counted as superseded."""
        spec = FEEDS[feed]
        files = self.list_files(feed)
        table, file_day = self._read_files(spec, files)
        check = check_rows(table, spec, file_day)
        rows, q = self._finish(spec, table, file_day, check.free, check.text)
        merged = rows.take(pa.array(last_per_key(rows, list(spec.key)), pa.int64()))
        days = sorted({f"{f.day:%Y-%m-%d}" for f in files})
        return FeedBatch(feed, days, files, merged, q, landed=table.num_rows,
                         superseded=rows.num_rows - merged.num_rows, reasons=reason_counts(check.text, check.free))


__all__ = ["FeedBatch", "LandingFeedSource", "LandingFile", "quarantine_schema", "raw_schema"]
