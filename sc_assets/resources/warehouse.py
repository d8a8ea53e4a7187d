"""The warehouse: a Parquet lake plus a DuckDB catalog of views over it (DESIGN.md §3).

Layout under the data root::

    lake/<layer>/<asset>/trade_date=YYYY-MM-DD/part.parquet   partitioned assets
    lake/<layer>/<asset>/part.parquet                         unpartitioned assets
    warehouse.duckdb                                          views only: <schema>.<asset>

Every write goes to a temporary file in the target's own folder (names start with ``.tmp``),
is fsynced, then moved into place with ``os.replace``: a crash leaves either the old
partition or the new one, never half of one, and a rerun replaces the partition instead of
appending to it. Readers glob ``trade_date=*/part.parquet`` and so never see temp files.

Compute never holds a DuckDB write lock: queries run on short-lived in-memory connections
that read Parquet directly. Only :meth:`Warehouse.refresh_catalog` opens ``warehouse.duckdb``
for writing, briefly, under an inter-process file lock.

Object storage (``cluster`` profile): when ``lake_uri`` / ``$SC_ASSETS_LAKE_URI`` is
``s3://bucket/prefix`` the lake lives there with the same layout, each partition object is
sent with one PUT after the whole file is built in memory (atomic on S3), and the paths this
class returns are :class:`~sc_assets.resources.object_store.S3Path` handles. Landing files,
reports and ``warehouse.duckdb`` stay under the data root. See ``object_store.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sc_assets.resources.object_store import LAKE_URI_ENV, S3Lake, S3Path, is_s3_uri
from sc_assets.resources.parquet_format import encode
from sc_assets.settings import DATA_DIR_ENV, data_root

PARTITION_COLUMN = "trade_date"
#: A temp file this old (seconds) belongs to a writer that was killed; the next write to its folder removes it.
STALE_TEMP_S = 3600.0
#: ``Warehouse.files`` over at most this many calendar days checks each day's file directly.
SHORT_WINDOW_DAYS = 120
PART_FILE = "part.parquet"
# lake layer -> catalog schema (issue "Foundation": schemas raw, staging, marts, analytics)
CATALOG_SCHEMAS = {"raw": "raw", "staging": "staging", "marts": "marts", "quarantine": "quarantine"}
ANALYTICS_SCHEMA = "analytics"


def catalog_schema(layer: str) -> str:
    """DuckDB schema in ``warehouse.duckdb`` that shows a lake layer's tables."""
    return CATALOG_SCHEMAS.get(layer, ANALYTICS_SCHEMA)


@functools.lru_cache(maxsize=32)
def _resolved_root(value: str, cwd: str) -> Path:
    """``data_root`` memoised per (setting, working directory): every path of a step derives from
    the root, and resolving it is a chain of syscalls (thousands of calls per backfill step)."""
    return data_root(value or None)


def _day(value: str | date | pd.Timestamp) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _days(values: Iterable[str | date | pd.Timestamp]) -> list[str]:
    """``_day`` of each value. Partition keys (``YYYY-MM-DD`` strings) are checked in one numpy parse
    and kept as they are; anything else goes through ``_day`` (a ``pd.Timestamp`` per value was
    ~40 ms per 2,431-day write call; issue 11)."""
    values = list(values)
    if values and all(type(v) is str for v in values):
        with contextlib.suppress(ValueError):
            parsed = np.array(values, dtype="datetime64[D]")
            # "NaT" parses too (and prints as itself): ``_day`` refuses it
            if not np.isnat(parsed).any() and np.datetime_as_string(parsed, unit="D").tolist() == values:
                return values
    return [_day(v) for v in values]


def _fsync_dir(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: Temp file names: ``.tmp-<process token>-<counter>-<name>``, unique per process and write without a
#: uuid4 per file (the token is drawn again in a forked child).
_tmp_token = uuid.uuid4().hex[:12]
_tmp_counter = itertools.count()


def _new_tmp_token_in_child() -> None:
    global _tmp_token
    _tmp_token = uuid.uuid4().hex[:12]


os.register_at_fork(after_in_child=_new_tmp_token_in_child)


def _write_local(table: pa.Table | pa.Buffer | bytes, folder: str, name: str) -> None:
    """Write ``table`` (or the bytes of an encoded Parquet file) to ``folder/name`` atomically and
    durably: temp file in ``folder``, written with one call and fsynced through its descriptor,
    ``os.replace``, then the folder fsynced.

    Plain ``os`` calls on ``str`` paths: a 10-year backfill writes ~2,431 small files per partitioned
    asset, and the ``pathlib`` / buffered-file / uuid glue around the syscalls was ~0.15 ms of CPU
    per file, a quarter of the write path (issue 11). A folder that did not exist holds no stale
    temp files, so only an existing one is scanned for them."""
    data = table if isinstance(table, bytes | pa.Buffer) else encode(table)
    try:
        os.mkdir(folder)
    except FileExistsError:
        _remove_stale_temps(folder)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{_tmp_token}-{next(_tmp_counter)}-{name}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_parquet(table: pa.Table | pa.Buffer | bytes, target: Path) -> None:
    """Write ``table`` to ``target`` atomically (temp file in the same folder, fsync, replace, folder fsync).

    ``table`` may also be the bytes of an already serialised Parquet file (local targets only).
    The file is encoded in memory and written with one call (Arrow's file sink issues a write per
    page: ~0.2 ms more per small file, issue 11), then fsynced through the same descriptor.
    An :class:`S3Path` target is written with one PUT of the complete file (atomic on S3).
    """
    if isinstance(target, S3Path):
        target.write_parquet(table)
        return
    _write_local(table, os.fspath(target.parent), target.name)


def _remove_stale_temps(folder: str | Path, min_age_s: float = STALE_TEMP_S) -> int:
    """Remove the ``.tmp*`` entries of ``folder`` older than ``min_age_s`` seconds (all when 0): left
    there by a killed writer, never seen by readers. Every write calls it for the folder it writes
    (one ``scandir`` of a partition folder instead of walking a table's thousands of folders per
    refresh; issue 11); :meth:`Warehouse.clean_temp_files` calls it for every folder of a tree."""
    cutoff = time.time() - min_age_s
    n = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for e in [e for e in entries if e.name.startswith(".tmp")]:
            with contextlib.suppress(FileNotFoundError):
                if min_age_s and e.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    os.unlink(e.path)
                n += 1
    return n


def _to_arrow(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def _as_arrow(df: pd.DataFrame | pa.Table, schema: pa.Schema | None = None) -> pa.Table:
    """A pandas frame converted (with ``schema`` if given); an Arrow table as is (cast to ``schema``)."""
    if isinstance(df, pa.Table):
        return df if schema is None or df.schema == schema else df.cast(schema)
    return _to_arrow(df) if schema is None else pa.Table.from_pandas(df, schema=schema, preserve_index=False)


#: day number given to a null partition value (never a requested day)
_NULL_DAY = np.iinfo(np.int32).min


def _day_numbers(column: pa.ChunkedArray) -> np.ndarray:
    """Days since 1970-01-01 (int32) of a partition column: DATE as is; timestamps (the local
    date of tz-aware ones) and ``YYYY-MM-DD`` strings cast to DATE in Arrow; null -> ``_NULL_DAY``.
    Whole-column integer work: splitting a chunk by day formatted and argsorted one string per row
    (~1.35 ms per written file, as much as encoding it; issue 11)."""
    if not pa.types.is_date32(column.type):
        column = pc.cast(column, pa.date32())
    return pc.fill_null(column.cast(pa.int32()), _NULL_DAY).to_numpy()


def _day_names(numbers: np.ndarray) -> list[str]:
    """``YYYY-MM-DD`` of day numbers (``_NULL_DAY`` -> 'NaT', refused as a day outside the partitions)."""
    return ["NaT" if n == _NULL_DAY else s for n, s in
            zip(numbers.tolist(), np.datetime_as_string(numbers.astype("datetime64[D]"), unit="D").tolist(), strict=True)]


#: Partition files written concurrently by one ``write_partitions`` call (``$SC_ASSETS_WRITE_THREADS``).
#: A multi-year backfill writes thousands of small files, each fsynced (file + folder): on one
#: thread the fsync waits dominate (measured ~12 ms/file serial vs ~3.4 ms/file on 8 threads on a
#: loaded 2-core VM, issue 11). Each file stays individually atomic and durable. Encoding releases
#: the GIL, so 2 threads keep both cores busy and the others overlap fsync waits (2/4/8 threads on
#: stg_stock_daily: same CPU, 8 fastest in wall). A bulk variant (every temp file, one syncfs, all
#: renames, one syncfs) was no faster (new files) or slower (rewrites: the journal commit waits for
#: the replaced files' freed blocks), so each write keeps its own fsyncs.
WRITE_THREADS = max(1, int(os.environ.get("SC_ASSETS_WRITE_THREADS", "8")))


def _write_partition_file(table: pa.Table | pa.Buffer | bytes, folder: str) -> None:
    _write_local(table, folder, PART_FILE)


def _write_files(items: list[tuple[pa.Table | pa.Buffer | bytes, S3Path | str]]) -> None:
    """Write each (table or encoded file, target): an :class:`S3Path` object, or a local partition
    folder (``str``) that gets ``part.parquet``. Local multi-file writes run on ``WRITE_THREADS``
    threads, each taking the next file from one shared iterator (no future per file); after a
    failure no new file is started and the first error is raised."""
    if items and isinstance(items[0][1], S3Path):
        for table, target in items:
            target.write_parquet(table)
        return
    work = iter(items)
    if len(items) <= 1 or WRITE_THREADS == 1:
        for table, folder in work:
            _write_partition_file(table, folder)
        return
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while not errors:
            with lock:
                item = next(work, None)
            if item is None:
                return
            try:
                _write_partition_file(*item)
            except BaseException as exc:  # re-raised in the calling thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker, name=f"lake-write-{i}", daemon=True)
               for i in range(min(WRITE_THREADS, len(items)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class Warehouse(dg.ConfigurableResource):
    """Parquet lake + DuckDB catalog under one data root.

    ``data_dir`` defaults to ``$SC_ASSETS_DATA_DIR`` or ``./data`` (resolved when used).
    ``lake_uri`` defaults to ``$SC_ASSETS_LAKE_URI``; empty means ``<data_dir>/lake`` on disk,
    ``s3://bucket/prefix`` puts the lake on S3-compatible object storage (object_store.py).
    """

    data_dir: str = ""
    lake_uri: str = ""

    # ---- paths -------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return _resolved_root(self.data_dir or os.environ.get(DATA_DIR_ENV) or "", os.getcwd())

    @property
    def lake_store(self) -> S3Lake | None:
        """The object-storage backend when the lake URI is ``s3://...``, else None (local disk)."""
        uri = self.lake_uri or os.environ.get(LAKE_URI_ENV, "")
        if is_s3_uri(uri):
            return S3Lake(uri, cache_dir=self.root / ".lake_cache")
        if uri:
            raise ValueError(f"lake_uri / ${LAKE_URI_ENV} must be empty (local lake) or s3://bucket/prefix, got {uri!r}")
        return None

    @property
    def lake(self) -> Path:
        store = self.lake_store
        if store is not None:
            return store.root()
        return self.root / "lake"

    @property
    def catalog_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def table_dir(self, layer: str, asset: str) -> Path:
        return self.lake / layer / asset

    def partition_path(self, layer: str, asset: str, day: str | date) -> Path:
        return self.table_dir(layer, asset) / f"{PARTITION_COLUMN}={_day(day)}" / PART_FILE

    def table_path(self, layer: str, asset: str) -> Path:
        return self.table_dir(layer, asset) / PART_FILE

    def glob(self, layer: str, asset: str) -> str:
        """DuckDB glob of a table's files (partitioned or not)."""
        d = self.table_dir(layer, asset)
        if (d / PART_FILE).exists():
            return str(d / PART_FILE)
        return str(d / f"{PARTITION_COLUMN}=*" / PART_FILE)

    def exists(self, layer: str, asset: str) -> bool:
        d = self.table_dir(layer, asset)
        return (d / PART_FILE).exists() or any(d.glob(f"{PARTITION_COLUMN}=*/{PART_FILE}"))

    def partitions(self, layer: str, asset: str) -> list[str]:
        """Sorted partition days (YYYY-MM-DD) present in the lake for a partitioned table."""
        d = self.table_dir(layer, asset)
        if isinstance(d, S3Path):  # one object listing
            return sorted(p.parent.name.split("=", 1)[1] for p in d.glob(f"{PARTITION_COLUMN}=*/{PART_FILE}"))
        return sorted(self._partition_files(d))

    @staticmethod
    def _partition_files(d: Path) -> dict[str, str]:
        """{day: file} of the partition folders under ``d`` that hold a file (one ``scandir``)."""
        prefix = f"{PARTITION_COLUMN}="
        out = {}
        try:
            with os.scandir(d) as entries:
                for e in entries:
                    if e.name.startswith(prefix):
                        f = os.path.join(e.path, PART_FILE)
                        if os.path.isfile(f):
                            out[e.name[len(prefix):]] = f
        except (FileNotFoundError, NotADirectoryError):
            pass
        return out

    # ---- writes ------------------------------------------------------------------------
    def write_partitions(
        self,
        layer: str,
        asset: str,
        df: pd.DataFrame | pa.Table,
        days: Sequence[str | date],
        schema: pa.Schema | None = None,
    ) -> dict[str, int]:
        """Replace the partitions ``days`` of ``layer/asset`` with the rows of ``df``.

        ``df`` (pandas, or an Arrow table written as is) must have a ``trade_date`` column; every
        day in ``days`` gets a file (an empty one when ``df`` has no rows for it), rows for days
        outside ``days`` are an error. Returns rows written per day.
        """
        keys = _days(days)
        table = _as_arrow(df, schema)
        if PARTITION_COLUMN not in table.column_names:
            raise ValueError(f"{layer}.{asset}: frame has no {PARTITION_COLUMN!r} column")
        counts: dict[str, int] = {}
        items: list[tuple[pa.Table | pa.Buffer, S3Path | str]] = []
        folder = self.table_dir(layer, asset)  # resolved once, not per file
        local = not isinstance(folder, S3Path)
        base = os.fspath(folder) if local else ""

        def target(key: str) -> S3Path | str:  # a local partition folder, or the S3 object
            return f"{base}/{PARTITION_COLUMN}={key}" if local else folder / f"{PARTITION_COLUMN}={key}" / PART_FILE

        if table.num_rows:
            day = _day_numbers(table.column(PARTITION_COLUMN))
            if not (day[1:] >= day[:-1]).all():  # rows grouped by day (a copy only when out of order)
                order = np.argsort(day, kind="stable")
                day, table = day[order], table.take(pa.array(order))
            starts = np.r_[0, np.flatnonzero(day[1:] != day[:-1]) + 1]
            ends = np.r_[starts[1:], len(day)]
            names = _day_names(day[starts])
            extra = sorted(set(names) - set(keys))
            if extra:
                raise ValueError(f"{layer}.{asset}: rows for days outside the requested partitions: {extra[:5]}")
            for key, s, e in zip(names, starts.tolist(), ends.tolist(), strict=True):
                items.append((table.slice(s, e - s), target(key)))
                counts[key] = e - s
        empty: pa.Table | pa.Buffer = table.slice(0, 0)
        if len(counts) < len(keys) and local:
            # every empty day gets the same file: serialise it once, not once per day (a sparse feed's
            # 10-year backfill writes ~2,300 empty partitions; ~2-4 ms of Parquet encoding each, issue 11)
            empty = encode(empty)
        for key in keys:
            if key not in counts:
                items.append((empty, target(key)))
                counts[key] = 0
        _write_files(items)
        return counts

    def write_table(self, layer: str, asset: str, df: pd.DataFrame | pa.Table, schema: pa.Schema | None = None) -> int:
        """Replace an unpartitioned table atomically (pandas, or an Arrow table as is). Returns rows written."""
        table = _as_arrow(df, schema)
        atomic_write_parquet(table, self.table_path(layer, asset))
        return table.num_rows

    # ---- reads -------------------------------------------------------------------------
    def files(
        self, layer: str, asset: str, start: str | date | None = None, end: str | date | None = None
    ) -> list[str]:
        """Files of a table, restricted to partitions in [start, end] (inclusive) if given.

        On object storage these are local read-through copies (cached by ETag), so callers can
        hand them to any Parquet reader.
        """
        store = self.lake_store
        if store is not None:
            return self._s3_files(store, layer, asset, start, end)
        d = self.table_dir(layer, asset)
        if (d / PART_FILE).exists():
            return [str(d / PART_FILE)]
        lo = _day(start) if start is not None else None
        hi = _day(end) if end is not None else None
        if lo is not None and hi is not None and (span := pd.date_range(lo, hi, freq="D")).size <= SHORT_WINDOW_DAYS:
            # a short window (a daily step's lookback): look up its days instead of listing the
            # table's thousands of partition folders
            paths = (d / f"{PARTITION_COLUMN}={day:%Y-%m-%d}" / PART_FILE for day in span)
            return [str(p) for p in paths if p.is_file()]
        found = self._partition_files(d)
        return [found[day] for day in sorted(found) if (lo is None or day >= lo) and (hi is None or day <= hi)]

    def read(
        self,
        layer: str,
        asset: str,
        start: str | date | None = None,
        end: str | date | None = None,
        columns: Sequence[str] | None = None,
        days: Iterable[str | date] | None = None,
    ) -> pd.DataFrame:
        """Read a lake table (optionally a date range, explicit days, or a column subset) as pandas."""
        if days is not None and (store := self.lake_store) is not None:
            files = self._s3_files(store, layer, asset, None, None, days={_day(d) for d in days})
        elif days is not None:
            files = [str(p) for p in (self.partition_path(layer, asset, d) for d in days) if p.exists()]
        else:
            files = self.files(layer, asset, start, end)
        if not files:
            raise FileNotFoundError(
                f"{layer}.{asset} has no data in the lake at {self.table_dir(layer, asset)}"
                + (f" for {start}..{end}" if start or end else "")
                + " — materialize it first"
            )
        dataset = pq.ParquetDataset(files, partitioning=None)
        return dataset.read(columns=list(columns) if columns else None).to_pandas()

    def days_present(self, layer: str, asset: str, days: Sequence[str]) -> list[str]:
        """The ``days`` (YYYY-MM-DD) whose partition file of ``layer/asset`` is in the lake."""
        if self.lake_store is not None:
            return [d for d in days if self.partition_path(layer, asset, d).exists()]
        d = str(self.table_dir(layer, asset))  # resolved once, not per day
        return [day for day in days if os.path.isfile(os.path.join(d, f"{PARTITION_COLUMN}={day}", PART_FILE))]

    def read_days(
        self, layer: str, asset: str, days: Sequence[str], columns: Sequence[str] | None,
        required: bool = False, arrow: bool = False,
    ) -> pd.DataFrame | pa.Table:
        """Rows of the partitions ``days`` (YYYY-MM-DD; only ``columns``), trade_date as datetime64.

        Like ``read(days=)`` but kept in Arrow until one ``to_pandas`` without Python date objects
        (the factor and crowding layers read millions of rows this way; issue 11). A local
        partition file holds only its day's rows, so no per-row date filter; on object storage
        the span days[0]..days[-1] is read and the other days' rows dropped in Arrow. A table not
        in the lake gives no rows (``required``: a FileNotFoundError). ``columns`` None: all
        columns; ``arrow``: the Arrow table (rows found)."""
        days = sorted(days)
        if not days:
            files = []
        elif self.lake_store is None:
            d = str(self.table_dir(layer, asset))
            present = self.days_present(layer, asset, days)
            files = [os.path.join(d, f"{PARTITION_COLUMN}={day}", PART_FILE) for day in present]
        else:
            files = self.files(layer, asset, days[0], days[-1])
        if not files:
            if required:
                raise FileNotFoundError(f"{layer}.{asset} has no data in the lake for {len(days)} day(s) "
                                        f"{days[:1]}..{days[-1:]} — materialize it first")
            return pd.DataFrame({c: pd.Series(dtype="datetime64[ms]" if c == "trade_date" else object) for c in columns})
        table = pq.ParquetDataset(files, partitioning=None).read(columns=list(columns) if columns else None)
        if self.lake_store is not None and table.num_rows:  # the span's files: keep the rows of ``days``
            day = table.column(PARTITION_COLUMN)
            if not pa.types.is_date32(day.type):
                day = day.cast(pa.timestamp("ms")).cast(pa.date32())
            keep = pc.is_in(day, value_set=pa.array(np.array(days, dtype="datetime64[D]"), type=pa.date32()))
            table = table.filter(keep)
        return table if arrow else table.to_pandas(date_as_object=False)

    def query(self, layer: str, asset: str, sql: str, start: str | date | None = None,
              end: str | date | None = None, arrow: bool = False, files: Sequence[str] | None = None,
              **params) -> pd.DataFrame | pa.Table:
        """``sql`` (a SELECT ... FROM files ...) over the partition files of ``layer/asset`` in [start, end].

        ``files`` in the SQL stands for ``read_parquet($files)``; ``params`` are bound as ``$name``
        (a ``files=`` list overrides the window's files). DuckDB reads a list of thousands of small
        day files faster than a pyarrow dataset (footers read in parallel, only the columns and rows
        the query needs; issue 11). pandas: date columns come back as datetime64. ``arrow``: the
        Arrow table carrying the first file's schema metadata, so ``SELECT * FROM files`` converts
        ``to_pandas`` to the frame :meth:`read` gives. No file: FileNotFoundError."""
        files = list(files) if files is not None else self.files(layer, asset, start, end)
        if not files:
            raise FileNotFoundError(f"{layer}.{asset} has no data in the lake for {start}..{end} — materialize it first")
        with self.connect(tables=[]) as con:
            result = con.sql(sql.replace("FROM files", "FROM read_parquet($files)"), params={"files": files, **params})
            if not arrow:
                return result.df()
            table = result.to_arrow_table()
        return table.replace_schema_metadata(pq.read_schema(files[0]).metadata)

    @contextlib.contextmanager
    def connect(self, tables: Sequence[tuple[str, str]] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived in-memory DuckDB connection with views ``<layer>.<asset>`` on the lake.

        Nothing is locked: the views read Parquet files directly. ``tables`` ((layer, asset)
        pairs) limits the views to those tables: creating a view reads the footer of every
        partition file, so on a multi-year lake pass the tables a query needs (issue 11).
        """
        con = duckdb.connect(":memory:")
        try:
            if (store := self.lake_store) is not None:
                store.register(con)
            for layer, asset in (self.tables() if tables is None else [t for t in tables if self.exists(*t)]):
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
                con.execute(
                    f'CREATE VIEW "{layer}"."{asset}" AS SELECT * FROM '
                    f"read_parquet({_sql_string(self.glob(layer, asset))}, union_by_name=true)"
                )
            yield con
        finally:
            con.close()

    def tables(self) -> list[tuple[str, str]]:
        """(layer, asset) pairs that have at least one file in the lake."""
        out = []
        if (store := self.lake_store) is not None:  # one listing of the whole lake
            pairs = set()
            for key in store.list(store.root().key):
                parts = key[len(store.root().key):].strip("/").split("/")
                if parts[-1] == PART_FILE and (len(parts) == 3 or (len(parts) == 4 and parts[2].startswith(
                        f"{PARTITION_COLUMN}="))) and not parts[0].startswith(".") and not parts[1].startswith("."):
                    pairs.add((parts[0], parts[1]))
            return sorted(pairs)
        if not self.lake.exists():
            return out
        for layer_dir in sorted(p for p in self.lake.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for asset_dir in sorted(p for p in layer_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if self.exists(layer_dir.name, asset_dir.name):
                    out.append((layer_dir.name, asset_dir.name))
        return out

    # ---- catalog -----------------------------------------------------------------------
    def refresh_catalog(
        self, tables: Sequence[tuple[str, str]] | None = None, timeout_s: float = 30.0
    ) -> list[str]:
        """(Re)create ``warehouse.duckdb`` views for ``tables`` ((layer, asset) pairs; default:
        every lake table). Returns the view names. Assets call it once after their writes.

        Held briefly under an exclusive file lock so parallel steps never fight over the
        DuckDB write lock. If another process (a user's duckdb CLI) holds the file for longer
        than ``timeout_s``, raises with a message saying so; the lake itself is unaffected.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if tables is not None and self.lake_store is None and (names := self._views_known(tables)) is not None:
            return names
        lock_path = self.root / ".warehouse.lock"
        names = []
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                deadline = time.monotonic() + timeout_s
                while True:
                    try:
                        con = duckdb.connect(str(self.catalog_path))
                        break
                    except duckdb.IOException as exc:
                        if time.monotonic() > deadline:
                            raise RuntimeError(
                                f"could not open {self.catalog_path} for writing: another process holds it "
                                f"({exc}); the lake is up to date, rerun to refresh the catalog views"
                            ) from exc
                        time.sleep(0.2)
                try:
                    if (store := self.lake_store) is not None:
                        store.register(con)  # views bind (and later read) s3:// globs
                    targets = self.tables() if tables is None else [t for t in tables if self.exists(*t)]
                    # A view over the same glob is kept: DuckDB re-binds a view at every query (new
                    # partitions, columns and types show up), while re-creating one binds it now, reading
                    # the footer of every partition file (~0.5 s per table at 2,430 partitions; issue 11).
                    existing = {(r[0], r[1]): r[2] or "" for r in con.execute(
                        "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()}
                    for layer, asset in targets:
                        schema = catalog_schema(layer)
                        glob = _sql_string(self.glob(layer, asset))
                        names.append(f"{schema}.{asset}")
                        if glob in existing.get((schema, asset), "") and "union_by_name" in existing[(schema, asset)]:
                            continue
                        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                        con.execute(
                            f'CREATE OR REPLACE VIEW "{schema}"."{asset}" AS SELECT * FROM '
                            f"read_parquet({glob}, union_by_name=true)"
                        )
                    views = {f"{r[0]}.{r[1]}": r[2] or "" for r in con.execute(
                        "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()}
                finally:
                    con.close()
                self._remember_views(views)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return names

    # The catalog's views change only when a table appears or its glob changes; most refreshes
    # (every step of a daily update) find them in place. The sidecar records the views and the
    # catalog file's (mtime, size) right after our last write: while the file is unchanged, a
    # refresh whose views are all there returns without opening DuckDB (~0.1-0.2 s per open and
    # checkpointing close). Any other writer changes the file's stamp, and the next refresh
    # opens the catalog again.
    @property
    def _views_sidecar(self) -> Path:
        return self.root / ".warehouse.views.json"

    def _catalog_stamp(self) -> list[int] | None:
        try:
            st = self.catalog_path.stat()
        except FileNotFoundError:
            return None
        return [st.st_mtime_ns, st.st_size]

    def _remember_views(self, views: dict[str, str]) -> None:
        tmp = self._views_sidecar.with_name(f".tmp-{uuid.uuid4().hex}.json")
        tmp.write_text(json.dumps({"catalog": self._catalog_stamp(), "views": views}))
        os.replace(tmp, self._views_sidecar)

    def _views_known(self, tables: Sequence[tuple[str, str]]) -> list[str] | None:
        """The view names if every table's view over its current glob is in the catalog, else None."""
        try:
            known = json.loads(self._views_sidecar.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if known.get("catalog") is None or known["catalog"] != self._catalog_stamp():
            return None
        names = []
        for layer, asset in tables:
            if not self.exists(layer, asset):
                continue
            name = f"{catalog_schema(layer)}.{asset}"
            sql = known["views"].get(name, "")
            if _sql_string(self.glob(layer, asset)) not in sql or "union_by_name" not in sql:
                return None
            names.append(name)
        return names

    def clean_temp_files(self, tables: Sequence[tuple[str, str]] | None = None, min_age_s: float = 0.0) -> int:
        """Remove ``.tmp*`` files left by a killed writer (readers never see them, but they take
        space). Only under ``tables`` if given, and only files older than ``min_age_s`` seconds,
        so a writer still working on its temp file is left alone. Returns how many were removed.
        """
        if self.lake_store is not None:
            return 0  # single-PUT writes leave no temp objects
        roots = [self.lake] if tables is None else [self.table_dir(*t) for t in tables]
        n = 0
        for root in roots:
            for folder, dirs, _files in os.walk(root):  # scandir-based: ~10x faster than Path.rglob
                n += _remove_stale_temps(folder, min_age_s)
                dirs[:] = [d for d in dirs if not d.startswith(".tmp")]  # removed (or still in use)
        return n

    def _s3_files(self, store: S3Lake, layer: str, asset: str, start, end, days: set[str] | None = None) -> list[str]:
        """Local copies of a table's objects on S3 (one listing, downloads only new ETags)."""
        table_key = self.table_dir(layer, asset).key
        objects = store.list(table_key)
        single = f"{table_key}/{PART_FILE}"
        if single in objects and days is None:
            return store.local_copies([single], objects)
        lo = _day(start) if start is not None else None
        hi = _day(end) if end is not None else None
        keys = []
        prefix = f"{table_key}/{PARTITION_COLUMN}="
        for key in sorted(objects):
            if not (key.startswith(prefix) and key.endswith("/" + PART_FILE)):
                continue
            day = key[len(prefix):-len(PART_FILE) - 1]
            if "/" in day:
                continue
            if (lo is None or day >= lo) and (hi is None or day <= hi) and (days is None or day in days):
                keys.append(key)
        return store.local_copies(keys, objects)


def _sql_string(value: str) -> str:
    """Quote a path we built ourselves as a SQL string literal (DDL cannot bind parameters)."""
    return "'" + value.replace("'", "''") + "'"


__all__ = ["PARTITION_COLUMN", "Warehouse", "atomic_write_parquet", "catalog_schema"]
