"""The warehouse: a Parquet lake plus a DuckDB catalog of views over it (DESIGN.md §3).

Layout under the data root::

    lake/<layer>/<asset>/YYYY-MM.parquet    partitioned assets: one file per calendar month
    lake/<layer>/<asset>/part.parquet       unpartitioned assets
    warehouse.duckdb                        views only: <schema>.<asset>

Partitions are trading days; a month file holds the rows of its month's partitions in day order
and lists those partitions (days with no rows included) in its schema metadata (``DAYS_KEY``).
A 10-year backfill so writes ~120 files per asset instead of ~2,431 day files, each encoded,
fsynced and later read once (issue 11: per-file costs were most of the chain's time); a daily
run rewrites the current month's file. Every write goes to a temporary file in the table's
folder (names start with ``.tmp``), is fsynced, then moved into place with ``os.replace``: a
crash leaves either the old month file or the new one, never half of one, and a rerun replaces
its partitions instead of appending to them. Writers of one table take turns under a lock on its
folder, so a partition written by another run into the same month is never lost. Readers glob
``????-??.parquet`` and so never see temp files.

Compute never holds a DuckDB write lock: queries run on short-lived in-memory connections
that read Parquet directly. Only :meth:`Warehouse.refresh_catalog` opens ``warehouse.duckdb``
for writing, briefly, under an inter-process file lock.

Object storage (``cluster`` profile): when ``lake_uri`` / ``$SC_ASSETS_LAKE_URI`` is
``s3://bucket/prefix`` the lake lives there with the same layout, each month object is
sent with one conditional PUT after the whole file is built in memory (atomic on S3; refused
and merged again when another writer replaced the object meanwhile), and the paths this
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
from collections.abc import Callable, Iterable, Iterator, Sequence
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
PART_FILE = "part.parquet"
#: A partitioned table keeps one file per calendar month, ``YYYY-MM.parquet``; this glob matches
#: those names only (not ``part.parquet``, not the ``.tmp-...`` files of a write in progress).
MONTH_GLOB = "????-??.parquet"
#: Schema metadata key of a month file: its partitions (``YYYY-MM-DD``, comma-separated), including
#: days materialized with no rows.
DAYS_KEY = b"sc_assets.days"
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


def _write_local(table: pa.Table, folder: str, name: str) -> None:
    """Write ``table`` to ``folder/name`` atomically and durably: encoded in memory, temp file in
    ``folder`` written with one call and fsynced through its descriptor, ``os.replace``, then the
    folder fsynced.

    Plain ``os`` calls on ``str`` paths: with one file per day, a 10-year backfill wrote ~2,431
    small files per partitioned asset, and the ``pathlib`` / buffered-file / uuid glue around the
    syscalls was ~0.15 ms of CPU per file, a quarter of the write path (issue 11). A folder that
    did not exist holds no stale temp files, so only an existing one is scanned for them."""
    data = encode(table)
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


def atomic_write_parquet(table: pa.Table, target: Path) -> None:
    """Write ``table`` to ``target`` atomically (temp file in the same folder, fsync, replace, folder fsync).

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
    (one ``scandir`` of a table folder instead of walking the lake per refresh; issue 11); :meth:`Warehouse.clean_temp_files` calls it for every folder of a tree."""
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


#: Month files written concurrently by one ``write_partitions`` call (``$SC_ASSETS_WRITE_THREADS``).
#: Each file is fsynced (file + folder): on one thread the fsync waits dominate (measured with one
#: file per day: ~12 ms/file serial vs ~3.4 ms/file on 8 threads on a loaded 2-core VM, issue 11).
#: Each file stays individually atomic and durable. Encoding releases the GIL, so 2 threads keep
#: both cores busy and the others overlap fsync waits (2/4/8 threads on stg_stock_daily: same CPU,
#: 8 fastest in wall). A bulk variant (every temp file, one syncfs, all
#: renames, one syncfs) was no faster (new files) or slower (rewrites: the journal commit waits for
#: the replaced files' freed blocks), so each write keeps its own fsyncs.
WRITE_THREADS = max(1, int(os.environ.get("SC_ASSETS_WRITE_THREADS", "8")))


def _write_file(table: pa.Table, path: str) -> None:
    _write_local(table, os.path.dirname(path), os.path.basename(path))


def _write_files(items: list[tuple[pa.Table, str]]) -> None:
    """Write each (table, local file path). Several files are written on ``WRITE_THREADS`` threads,
    each taking the next file from one shared iterator (no future per file); after a failure no
    new file is started and the first error is raised."""
    work = iter(items)
    if len(items) <= 1 or WRITE_THREADS == 1:
        for table, path in work:
            _write_file(table, path)
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
                _write_file(*item)
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


def _month_name(month: str) -> str:
    """File name of a partitioned table's month ``YYYY-MM``."""
    return f"{month}.parquet"


def _is_month_name(name: str) -> bool:
    return (len(name) == 15 and name.endswith(".parquet") and name[4] == "-"
            and name[:4].isdigit() and name[5:7].isdigit())


#: Per-day partition folders (``trade_date=YYYY-MM-DD/part.parquet``): the layout before issue 11.
LEGACY_DAY_PREFIX = f"{PARTITION_COLUMN}="


class LegacyLayoutError(RuntimeError):
    """A table still holds per-day partition folders; ``sc-assets migrate-lake`` moves them."""


def _month_files(folder: str) -> dict[str, str]:
    """{YYYY-MM: path} of the month files in a local table folder (one ``scandir``). A folder with
    per-day partition folders of the old layout is refused: its days would be missing."""
    try:
        with os.scandir(folder) as entries:
            names = {e.name: e.path for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return {}
    if any(n.startswith(LEGACY_DAY_PREFIX) for n in names):
        raise LegacyLayoutError(_legacy_message(folder))
    return {n[:7]: p for n, p in names.items() if _is_month_name(n)}


def _legacy_message(where: str) -> str:
    return (f"{where} holds per-day partition folders ({LEGACY_DAY_PREFIX}YYYY-MM-DD/), the lake layout before "
            "month files: run `sc-assets migrate-lake` once (same data root and lake) to move them into month files")


def _existing(path: str) -> str | None:
    return path if os.path.isfile(path) else None


#: path -> ((inode, size, mtime), days) of month files already read; a rewrite is a new inode
_DAY_LISTS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {}


def file_days(path: str) -> tuple[str, ...]:
    """The partitions (sorted ``YYYY-MM-DD``) a month file holds, from its footer (cached per file
    identity: inode, size, mtime). A file without the day list (not written by the warehouse)
    lists its row days."""
    st = os.stat(path)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _DAY_LISTS.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    days = _footer_days(path)
    _DAY_LISTS[path] = (stamp, days)
    return days


def _footer_days(path: str) -> tuple[str, ...]:
    days = _days_of(pq.read_schema(path).metadata or {})
    if days is not None:
        return days
    column = pq.read_table(path, columns=[PARTITION_COLUMN]).column(0)
    return tuple(sorted(set(_day_names(np.unique(_day_numbers(column))))))


def _days_of(metadata: dict[bytes, bytes]) -> tuple[str, ...] | None:
    """The day list of a month file's schema metadata (None: not written by the warehouse)."""
    value = metadata.get(DAYS_KEY)
    if value is None:
        return None
    return tuple(value.decode().split(",")) if value else ()


def _user_metadata(meta: dict | None) -> dict | None:
    """Schema metadata without the month file's day list (not part of a table read from it)."""
    if not meta or DAYS_KEY not in meta:
        return meta
    return {k: v for k, v in meta.items() if k != DAYS_KEY} or None


def _numbers(days: Iterable[str]) -> np.ndarray:
    return np.array(list(days), dtype="datetime64[D]").astype(np.int32)


def _month_table(rows: pa.Table, keys: list[str], old: str | None) -> pa.Table:
    """The new content of a month file: ``rows`` (the partitions ``keys``, grouped by day) plus the
    rows of the month's other partitions in ``old`` (its current file, if any), in day order
    (each day's rows in their order), with the day list under ``DAYS_KEY``."""
    days = set(keys)
    # the day list straight from the footer: this runs under the table's lock, trust no cache
    kept = [d for d in _footer_days(old) if d not in days] if old is not None else []
    if kept:
        previous = pq.read_table(old)
        mask = np.isin(_day_numbers(previous.column(PARTITION_COLUMN)), _numbers(kept))
        previous = previous.filter(pa.array(mask))
        try:  # no new rows (empty days): the kept rows as they are, whatever an empty frame's types
            merged = previous if not rows.num_rows else pa.concat_tables(
                [_conform(previous, rows.schema), rows], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise ValueError(
                f"{old}: the month's other partitions ({kept[0]}..{kept[-1]}) have columns "
                f"{previous.schema} that cannot take the types of the new rows' {rows.schema} ({exc}); "
                "rematerialize the whole month") from exc
        day = _day_numbers(merged.column(PARTITION_COLUMN))
        if not (day[1:] >= day[:-1]).all():  # a new day before kept ones (not the daily append): re-sort
            merged = merged.take(pa.array(np.argsort(day, kind="stable")))
        rows = merged
        days.update(kept)
    meta = dict(rows.schema.metadata or {})
    meta[DAYS_KEY] = ",".join(sorted(days)).encode()
    return rows.replace_schema_metadata(meta)


def _conform(previous: pa.Table, schema: pa.Schema) -> pa.Table:
    """A month's kept rows in the new rows' column types (a date column now written as a
    timestamp, an int widened); columns the new rows lack, or have only as nulls (an all-None
    pandas column), stay as they are (the concat then unifies them)."""
    names = previous.column_names
    for i, name in enumerate(names):
        j = schema.get_field_index(name)
        if j >= 0 and previous.schema.field(i).type != schema.field(j).type and not pa.types.is_null(schema.field(j).type):
            previous = previous.set_column(i, name, previous.column(i).cast(schema.field(j).type))
    return previous.replace_schema_metadata(schema.metadata)


def _read_rows(files: list[str], columns: Sequence[str] | None,
               keep: list[str] | tuple[str | None, str | None] | None) -> pa.Table:
    """Rows of month (or table) ``files`` (only ``columns``; all if None) whose partition is in
    ``keep``: a list of days, a (first, last) pair of days (None: open), or None (every row).
    The rows are filtered on what was read (a day list checked beforehand could be stale by the
    time the file is opened); nothing is copied when every row is kept."""
    cols = list(columns) if columns else None
    extra = keep is not None and cols is not None and PARTITION_COLUMN not in cols
    table = pq.ParquetDataset(files, partitioning=None).read(columns=cols + [PARTITION_COLUMN] if extra else cols)
    if keep is not None and table.num_rows:
        day = _day_numbers(table.column(PARTITION_COLUMN))
        if isinstance(keep, tuple):
            lo, hi = (_numbers([d])[0] if d is not None else None for d in keep)
            mask = np.ones(len(day), bool) if lo is None else day >= lo
            if hi is not None:
                mask &= day <= hi
        else:
            mask = np.isin(day, _numbers(keep))
        if not mask.all():
            table = table.filter(pa.array(mask))
    if extra:
        table = table.drop_columns([PARTITION_COLUMN])
    return table.replace_schema_metadata(_user_metadata(table.schema.metadata))


#: descriptors of the table locks this process holds or waits for (see ``_close_locks_in_child``)
_held_locks: set[int] = set()


@contextlib.contextmanager
def _table_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on a local table folder: other threads and processes wait. (On object
    storage a month object is replaced by a conditional PUT instead, ``S3Lake.update_parquet``.)"""
    path = os.fspath(folder)
    os.makedirs(path, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    _held_locks.add(fd)  # before flock: a child forked while this thread waits must close it too
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        _held_locks.discard(fd)
        with contextlib.suppress(OSError):  # released even if a forked child still has a copy
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _close_locks_in_child() -> None:
    """A child forked while a writer thread held a table lock shares that lock (one open file
    description) but not the thread that releases it: closing its copies keeps the child from
    holding the parent's lock, and from waiting on it forever when it writes the same table."""
    for fd in list(_held_locks):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held_locks.clear()


os.register_at_fork(after_in_child=_close_locks_in_child)


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

    def table_path(self, layer: str, asset: str) -> Path:
        return self.table_dir(layer, asset) / PART_FILE

    def month_path(self, layer: str, asset: str, day: str | date) -> Path:
        """The file of a partitioned table that holds ``day``'s partition (its month's file)."""
        return self.table_dir(layer, asset) / _month_name(_day(day)[:7])

    def glob(self, layer: str, asset: str) -> str:
        """DuckDB glob of a table's files (partitioned or not)."""
        d = self.table_dir(layer, asset)
        if (d / PART_FILE).exists():
            return str(d / PART_FILE)
        # object storage has no temp objects, and the fsspec glob DuckDB reads s3:// through takes no ``?``
        return str(d / ("*.parquet" if isinstance(d, S3Path) else MONTH_GLOB))

    def exists(self, layer: str, asset: str) -> bool:
        d = self.table_dir(layer, asset)
        if isinstance(d, S3Path):
            return (d / PART_FILE).exists() or bool(self._s3_month_keys(layer, asset, None)[0])
        return os.path.isfile(os.path.join(d, PART_FILE)) or bool(_month_files(os.fspath(d)))

    def partitions(self, layer: str, asset: str) -> list[str]:
        """Sorted partition days (YYYY-MM-DD) present in the lake for a partitioned table."""
        return sorted(day for days in self._month_days(layer, asset).values() for day in days)

    def _month_days(self, layer: str, asset: str, months: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
        """{YYYY-MM: its partitions} of a table's month files (of ``months``; all if None), from the
        footers only: on object storage ranged reads, not downloads of whole months."""
        keep = None if months is None else set(months).__contains__
        if (store := self.lake_store) is not None:
            keys, objects = self._s3_month_keys(layer, asset, keep)
            out = {m: _days_of(store.footer_metadata(k, objects[k][0])) for m, k in keys.items()}
            return {m: d if d is not None else file_days(store.local_copies([keys[m]], objects)[0]) for m, d in out.items()}
        return {m: file_days(f) for m, f in self._month_map(layer, asset, keep).items()}

    def _month_paths(self, layer: str, asset: str, months: Iterable[str] | None = None) -> list[str]:
        """Readable local files (sorted by month) of a partitioned table's ``months`` (all if None)
        that are in the lake."""
        found = self._month_map(layer, asset, None if months is None else set(months).__contains__)
        return [found[m] for m in sorted(found)]

    def _month_map(self, layer: str, asset: str, keep: Callable[[str], bool] | None = None) -> dict[str, str]:
        """{YYYY-MM: readable local file} of a partitioned table's months in the lake (those ``keep``
        accepts; all if None); on object storage read-through copies of them (one listing,
        downloads only new ETags). A table with per-day folders (the layout before month files)
        raises :class:`LegacyLayoutError`."""
        if (store := self.lake_store) is not None:
            keys, objects = self._s3_month_keys(layer, asset, keep)
            return dict(zip(keys, store.local_copies(list(keys.values()), objects), strict=True))
        found = _month_files(os.fspath(self.table_dir(layer, asset)))
        return {m: f for m, f in found.items() if keep is None or keep(m)}

    def _s3_month_keys(self, layer: str, asset: str, keep: Callable[[str], bool] | None
                       ) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
        """({YYYY-MM: object key} of the months ``keep`` accepts, the table's listing {key: (etag,
        size)}) on object storage; day objects of the old layout raise :class:`LegacyLayoutError`."""
        store = self.lake_store
        table_key = self.table_dir(layer, asset).key
        objects = store.list(table_key)
        names = {k[len(table_key) + 1:]: k for k in sorted(objects)}
        if any(n.startswith(LEGACY_DAY_PREFIX) for n in names):
            raise LegacyLayoutError(_legacy_message(store.uri(table_key)))
        return {n[:7]: k for n, k in names.items() if _is_month_name(n) and (keep is None or keep(n[:7]))}, objects

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
        day in ``days`` becomes a partition (with no rows when ``df`` has none for it), rows for
        days outside ``days`` are an error. Returns rows written per day.

        Each month's file is rewritten once: the new rows plus the rows of the month's other
        partitions already in the file (read back only when the file holds days not in ``days``),
        in day order, with the file's day list in its metadata. The whole read-modify-write of a
        table runs under an exclusive lock on its folder, so concurrent writers of different days
        of one month (other runs, other processes) never lose each other's partitions.
        """
        keys = _days(days)
        table = _as_arrow(df, schema)
        if PARTITION_COLUMN not in table.column_names:
            raise ValueError(f"{layer}.{asset}: frame has no {PARTITION_COLUMN!r} column")
        counts: dict[str, int] = {}
        months: dict[str, pa.Table] = {}  # month -> its new rows
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
            counts = dict(zip(names, (ends - starts).tolist(), strict=True))
            for m, run in itertools.groupby(range(len(names)), key=lambda i: names[i][:7]):  # days in order
                run = list(run)
                months[m] = table.slice(int(starts[run[0]]), int(ends[run[-1]] - starts[run[0]]))
        by_month: dict[str, list[str]] = {}
        for key in keys:
            counts.setdefault(key, 0)
            by_month.setdefault(key[:7], []).append(key)
        self._write_months(layer, asset, {m: (months.get(m, table.slice(0, 0)), k) for m, k in by_month.items()})
        return counts

    def _write_months(self, layer: str, asset: str, months: dict[str, tuple[pa.Table, list[str]]],
                      legacy_ok: bool = False) -> None:
        """Merge each month's (rows, partition keys) into its month file (see :meth:`write_partitions`).
        A table still holding per-day folders is refused (its days would be overwritten later by
        ``migrate-lake``), except by the migration itself (``legacy_ok``)."""
        folder = self.table_dir(layer, asset)
        if (store := self.lake_store) is not None:
            if not legacy_ok:
                self._s3_month_keys(layer, asset, None)  # one listing: refuses day folders
            for m, (rows, keys) in sorted(months.items()):
                store.update_parquet(f"{folder.key}/{_month_name(m)}", functools.partial(_month_table, rows, keys))
            return
        with _table_lock(folder):
            base = os.fspath(folder)
            if not legacy_ok:
                _month_files(base)  # refuses day folders
            _write_files([(_month_table(rows, keys, _existing(os.path.join(base, _month_name(m)))),
                           os.path.join(base, _month_name(m))) for m, (rows, keys) in sorted(months.items())])

    def write_table(self, layer: str, asset: str, df: pd.DataFrame | pa.Table, schema: pa.Schema | None = None) -> int:
        """Replace an unpartitioned table atomically (pandas, or an Arrow table as is). Returns rows written."""
        table = _as_arrow(df, schema)
        atomic_write_parquet(table, self.table_path(layer, asset))
        return table.num_rows

    # ---- reads -------------------------------------------------------------------------
    def files(
        self, layer: str, asset: str, start: str | date | None = None, end: str | date | None = None
    ) -> list[str]:
        """Files of a table: an unpartitioned table's file, or the month files of a partitioned one
        that hold partitions in [start, end] (inclusive; all if not given). A month file also
        holds its month's other days: callers keep the rows they need (:meth:`read`,
        :meth:`query` and :meth:`read_days` do).

        On object storage these are local read-through copies (cached by ETag), so callers can
        hand them to any Parquet reader.
        """
        d = self.table_dir(layer, asset)
        if (d / PART_FILE).exists():
            if (store := self.lake_store) is not None:
                return store.local_copies([d.key + "/" + PART_FILE])
            return [str(d / PART_FILE)]
        lo = _day(start)[:7] if start is not None else None
        hi = _day(end)[:7] if end is not None else None
        found = self._month_map(layer, asset, lambda m: (lo is None or m >= lo) and (hi is None or m <= hi))
        return [found[m] for m in sorted(found)]

    def read(
        self,
        layer: str,
        asset: str,
        start: str | date | None = None,
        end: str | date | None = None,
        columns: Sequence[str] | None = None,
        days: Iterable[str | date] | None = None,
    ) -> pd.DataFrame:
        """Read a lake table (optionally a date range, explicit days, or a column subset) as pandas.
        An unpartitioned table is read whole (range and days select partitions)."""
        partitioned = not (self.table_dir(layer, asset) / PART_FILE).exists()
        if days is not None:
            wanted = sorted({_day(d) for d in days})
            files = self._month_paths(layer, asset, {d[:7] for d in wanted}) if partitioned else self.files(layer, asset)
        else:
            files = self.files(layer, asset, start, end)
        if not files:
            raise FileNotFoundError(
                f"{layer}.{asset} has no data in the lake at {self.table_dir(layer, asset)}"
                + (f" for {start}..{end}" if start or end else "")
                + " — materialize it first"
            )
        if not partitioned:
            keep = None
        elif days is not None:
            keep = wanted
        elif start is not None or end is not None:
            keep = (_day(start) if start is not None else None, _day(end) if end is not None else None)
        else:
            keep = None
        return _read_rows(files, columns, keep).to_pandas()

    @staticmethod
    def file_rows(path: str, start: str, end: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The rows of one lake file (from :meth:`files`) whose partition is in [start, end]."""
        return _read_rows([path], columns, (_day(start), _day(end)))

    def days_present(self, layer: str, asset: str, days: Sequence[str]) -> list[str]:
        """The ``days`` (YYYY-MM-DD) that are partitions of ``layer/asset`` in the lake."""
        have = {day for month in self._month_days(layer, asset, {d[:7] for d in days}).values() for day in month}
        return [day for day in days if day in have]

    def read_days(
        self, layer: str, asset: str, days: Sequence[str], columns: Sequence[str] | None,
        required: bool = False, arrow: bool = False,
    ) -> pd.DataFrame | pa.Table:
        """Rows of the partitions ``days`` (YYYY-MM-DD; only ``columns``), trade_date as datetime64.

        Like ``read(days=)`` but kept in Arrow until one ``to_pandas`` without Python date objects
        (the factor and crowding layers read millions of rows this way; issue 11). The month files
        of ``days`` are read; rows of their other days are dropped (no copy when the files hold
        only requested days, as in a backfill chunk of whole months). A table not in the lake gives
        no rows (``required``: a FileNotFoundError). ``columns`` None: all columns; ``arrow``: the
        Arrow table (rows found)."""
        days = sorted(days)
        files = self._month_paths(layer, asset, {d[:7] for d in days}) if days else []
        if not files:
            if required:
                raise FileNotFoundError(f"{layer}.{asset} has no data in the lake for {len(days)} day(s) "
                                        f"{days[:1]}..{days[-1:]} — materialize it first")
            return pd.DataFrame({c: pd.Series(dtype="datetime64[ms]" if c == "trade_date" else object)
                                 for c in columns or []})
        table = _read_rows(files, columns, days)
        return table if arrow else table.to_pandas(date_as_object=False)

    def query(self, layer: str, asset: str, sql: str, start: str | date | None = None,
              end: str | date | None = None, arrow: bool = False, files: Sequence[str] | None = None,
              **params) -> pd.DataFrame | pa.Table:
        """``sql`` (a SELECT ... FROM files ...) over the rows of ``layer/asset`` in [start, end].

        ``files`` in the SQL stands for the table's rows in the window (``read_parquet($files)``
        of its month files, filtered to [start, end] when given); ``params`` are bound as
        ``$name``. A ``files=`` list overrides the window: then every row of those files is read.
        pandas: date columns come back as datetime64. ``arrow``: the Arrow table carrying the
        first file's schema metadata, so ``SELECT * FROM files`` converts ``to_pandas`` to the
        frame :meth:`read` gives. No file: FileNotFoundError."""
        window = files is None and (start is not None or end is not None)
        files = list(files) if files is not None else self.files(layer, asset, start, end)
        if not files:
            raise FileNotFoundError(f"{layer}.{asset} has no data in the lake for {start}..{end} — materialize it first")
        source = "read_parquet($files)"
        if window:
            source = (f"(SELECT * FROM read_parquet($files) WHERE CAST({PARTITION_COLUMN} AS DATE) "
                      "BETWEEN $__lo AND $__hi)")
            params = {**params, "__lo": pd.Timestamp(_day(start) if start is not None else "1900-01-01").date(),
                      "__hi": pd.Timestamp(_day(end) if end is not None else "2999-12-31").date()}
        with self.connect(tables=[]) as con:
            result = con.sql(sql.replace("FROM files", f"FROM {source}"), params={"files": files, **params})
            if not arrow:
                return result.df()
            table = result.to_arrow_table()
        return table.replace_schema_metadata(_user_metadata(pq.read_schema(files[0]).metadata))

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
                if len(parts) == 3 and (parts[2] == PART_FILE or _is_month_name(parts[2])) \
                        and not parts[0].startswith(".") and not parts[1].startswith("."):
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

    def migrate_day_folders(self) -> dict[str, int]:
        """Move every table's per-day partition folders (``trade_date=YYYY-MM-DD/part.parquet``, the
        layout before month files) into month files; returns partitions moved per ``layer.asset``.
        Each month file is written (merged with what it already holds) before that month's day
        folders are removed: a run killed half-way leaves every day in its folder, its month file
        or both, and running again finishes the move."""
        moved: dict[str, int] = {}
        store = self.lake_store
        for (layer, asset), days in sorted(self._day_folders().items()):
            by_month: dict[str, list[str]] = {}
            for day in sorted(days):
                by_month.setdefault(day[:7], []).append(day)
            for month, month_days in by_month.items():
                found = {d: days[d] for d in month_days if days[d] is not None}
                paths = store.local_copies(list(found.values())) if store is not None else list(found.values())
                if found:
                    rows = pa.concat_tables([pq.read_table(p) for p in paths], promote_options="permissive")
                    self._write_months(layer, asset, {month: (rows, sorted(found))}, legacy_ok=True)
                for day in month_days:  # only now that the month file holds them
                    if store is not None:
                        if days[day] is not None:
                            store.delete(days[day])
                    else:
                        shutil.rmtree(os.path.join(self.lake, layer, asset, f"{LEGACY_DAY_PREFIX}{day}"), ignore_errors=True)
                moved[f"{layer}.{asset}"] = moved.get(f"{layer}.{asset}", 0) + len(found)
        return moved

    def _day_folders(self) -> dict[tuple[str, str], dict[str, str | None]]:
        """{(layer, asset): {day: its part file (local path or object key), None if missing}} of the
        per-day partition folders in the lake."""
        out: dict[tuple[str, str], dict[str, str | None]] = {}
        if (store := self.lake_store) is not None:
            root = store.root().key
            for key in store.list(root):
                parts = key[len(root):].strip("/").split("/")
                if len(parts) == 4 and parts[2].startswith(LEGACY_DAY_PREFIX) and parts[3] == PART_FILE:
                    out.setdefault((parts[0], parts[1]), {})[parts[2][len(LEGACY_DAY_PREFIX):]] = key
            return out
        if not self.lake.exists():
            return out
        for layer_dir in sorted(p for p in self.lake.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for table_dir in sorted(p for p in layer_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                with os.scandir(table_dir) as entries:
                    for e in entries:
                        if e.is_dir() and e.name.startswith(LEGACY_DAY_PREFIX):
                            f = os.path.join(e.path, PART_FILE)
                            out.setdefault((layer_dir.name, table_dir.name), {})[e.name[len(LEGACY_DAY_PREFIX):]] = (
                                f if os.path.isfile(f) else None)
        return out


def _sql_string(value: str) -> str:
    """Quote a path we built ourselves as a SQL string literal (DDL cannot bind parameters)."""
    return "'" + value.replace("'", "''") + "'"


__all__ = ["PARTITION_COLUMN", "Warehouse", "atomic_write_parquet", "catalog_schema"]
