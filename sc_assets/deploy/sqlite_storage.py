"""A faster SQLite event-log storage for the ``local`` profile.

Dagster's :class:`SqliteEventLogStorage` builds a new SQLAlchemy engine and SQLite connection
for every event it stores (about 7 ms each here) and commits with a full fsync. A single-run
backfill of the demo market emits ~16,000 asset-materialization events (one per asset and
trading day), so the stock storage spent most of a 26-minute demo writing its own log
(measured 41 ms/event vs 6 ms in memory, issue "Orchestration ...").

This subclass changes only how connections are obtained: one engine per shard (the run's
database and the cross-run index), kept for the process's lifetime with a small
connection pool (Dagster's own per-instance lock already serialises access), and WAL journal with
``synchronous=NORMAL`` — the standard SQLite setting for WAL, which keeps the database
consistent after a crash and can lose only the last transactions on power loss. Schema,
migrations, the files on disk and every query are Dagster's own, so the instance stays
readable by stock Dagster (drop the ``event_log_storage`` block from ``dagster.yaml``).

It also implements :meth:`store_event_batch`, which Dagster calls when ``DAGSTER_EVENT_BATCH_SIZE``
is set (the Makefile, ``sc-assets demo`` and ``sc-assets bench`` set it): the per-partition
materializations of a single-run backfill step then go to the run's database in one
transaction and to the cross-run index in a second one, instead of two transactions per
event; the asset's "latest materialization" row is written once per batch (for the batch's
last event, which is what one write per event would leave behind). Rows are identical to
what :meth:`store_event` writes (a test compares the two). Per partition event (issue 11,
CPU on the 2,431-partition no-op floor): the index rows go in as one executemany with
``RETURNING id`` (one compiled statement; was one INSERT compiled per row, ~0.15 ms), and
the event JSON, the costly column (~0.1-0.15 ms with Dagster's serdes), comes from
:func:`serialize_batch`, which serialises the step's shared event once and writes each
partition key and timestamp into it.

Planned asset-check evaluations get one index row per check and run
(:class:`~sc_assets.deploy.check_storage.OnePlannedCheckRow`, shared with the cluster's
PostgreSQL storage).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from dagster import Field, StringSource
from dagster._core.events import ASSET_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster_shared.serdes import serialize_value
from dagster_shared.seven import json  # the JSON encoder serialize_value uses
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from sc_assets.deploy.check_storage import OnePlannedCheckRow

#: Engines kept open at once (one per run database + the index); older ones are disposed.
MAX_OPEN_SHARDS = 8
SQLITE_BUSY_TIMEOUT_SECONDS = 30


def _configure(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


#: Stand-ins for the two fields in which the partition events of one step differ; their JSON
#: marks where :func:`serialize_batch` puts each event's own values.
_PARTITION_MARK = "\x00sc_assets partition\x00"
_TIMESTAMP_MARK = -1.2345678901234567e-300


def _same(a, b) -> bool:
    """Strict structural equality: same types, same field and key order, same scalars. Two such
    trees serialise to the same JSON (``==`` alone would equate 1, 1.0 and True, -0.0 and 0.0,
    and dicts in different key order). Objects other than tuples (NamedTuples, Dagster records),
    dicts, lists and scalars are the same only if identical (enum members)."""
    if a is b:
        return True
    t = type(a)
    if t is not type(b):
        return False
    if isinstance(a, tuple):  # NamedTuples and Dagster @record classes (tuples that ban iter())
        return tuple.__len__(a) == tuple.__len__(b) and all(map(_same, tuple.__iter__(a), tuple.__iter__(b)))
    if t is list:
        return len(a) == len(b) and all(map(_same, a, b))
    if t is dict:
        return len(a) == len(b) and all(
            _same(ka, kb) and _same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True))
    if t is float:
        return a == b and repr(a) == repr(b)
    return t in (str, int, bool) and a == b


def _skeleton(event: EventLogEntry) -> EventLogEntry | None:
    """A partition materialization with its partition and timestamp replaced by the marks
    (``_replace`` copies the tuples without re-validating them); None for any other event."""
    de = event.dagster_event
    if de is None or de.event_type_value != DagsterEventType.ASSET_MATERIALIZATION.value:
        return None
    data = de.event_specific_data
    mat = getattr(data, "materialization", None)
    if not isinstance(getattr(mat, "partition", None), str) or type(event.timestamp) is not float:
        return None
    mat = mat._replace(partition=_PARTITION_MARK)
    return event._replace(timestamp=_TIMESTAMP_MARK,
                          dagster_event=de._replace(event_specific_data=data._replace(materialization=mat)))


def serialize_batch(events: Sequence[EventLogEntry]) -> list[str]:
    """``serialize_value(event)`` for each event of a batch, computed once per batch (issue 11).

    The materializations a single-run backfill step records differ only in the partition key and
    the timestamp (Dagster copies the step's metadata and tags to each). The first event is
    serialised with both replaced by marks; every event equal to it in everything else (checked
    with :func:`_same`) gets that JSON with its own two values written at the marks; any other
    event (e.g. the last partition's, which carries the schema and preview) is serialised in full.
    Partition keys and timestamps are encoded with the same ``json.dumps`` as ``serialize_value`` uses."""
    template = _skeleton(events[0]) if events else None
    if template is None:
        return [serialize_value(e) for e in events]
    probe = serialize_value(template)
    pk_mark, ts_mark = json.dumps(_PARTITION_MARK), f'"timestamp": {json.dumps(_TIMESTAMP_MARK)}'
    if probe.count(pk_mark) != 1 or probe.count(ts_mark) != 1:
        return [serialize_value(e) for e in events]
    partition_first = probe.index(pk_mark) < probe.index(ts_mark)
    head, rest = probe.split(pk_mark if partition_first else ts_mark)
    mid, tail = rest.split(ts_mark if partition_first else pk_mark)
    out = []
    for e in events:
        skeleton = _skeleton(e)
        if skeleton is None or not _same(skeleton, template):
            out.append(serialize_value(e))
            continue
        pk = json.dumps(e.dagster_event.event_specific_data.materialization.partition)
        ts = f'"timestamp": {json.dumps(e.timestamp)}'
        out.append(head + pk + mid + ts + tail if partition_first else head + ts + mid + pk + tail)
    return out


class PooledSqliteEventLogStorage(OnePlannedCheckRow, SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with one cached engine per shard (see module docstring)."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)
        # re-entrant: Dagster may ask has_table() while it holds a connection
        self._db_lock = threading.RLock()

    @classmethod
    def config_type(cls):
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # the parent hard-codes its own class
        base_dir = config_value.get("base_dir") or os.path.join(os.environ["DAGSTER_HOME"], "history", "runs")
        return cls(base_dir, inst_data=inst_data)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool,  # nested uses (a read inside a write) get their own connection
            pool_size=2,
            max_overflow=8,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        event.listen(engine, "connect", _configure)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > MAX_OPEN_SHARDS:
            _, old = self._engines.popitem(last=False)
            old.dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            with self._engine(shard).connect() as conn:
                with conn.begin():
                    yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store a batch of asset events of one run in two transactions (see module docstring).

        Dagster only batches asset events (``BATCH_WRITABLE_EVENTS``); anything else, or a
        batch spanning runs, falls back to one :meth:`store_event` per event."""
        events = list(events)
        run_ids = {e.run_id for e in events}
        if len(run_ids) != 1 or not all(
            e.is_dagster_event and e.dagster_event_type in ASSET_EVENTS and e.dagster_event.asset_key for e in events
        ):
            for e in events:
                self.store_event(e)
            return
        rows = self._batch_rows(events)
        with self.run_connection(run_ids.pop()) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            # one executemany; RETURNING gives each row's id in the order of ``rows``
            table = SqlEventLogStorageTable
            event_ids = list(conn.execute(
                table.insert().returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
            self._store_asset_event_tags(conn, events, event_ids)
            # the asset-key row: only the last event of each (asset, event type) changes what is
            # left behind, applied in the original order (types update overlapping columns)
            last = {(e.dagster_event.asset_key, e.dagster_event_type): i for i, e in enumerate(events)}
            for i in sorted(last.values()):
                self._store_asset_event(conn, events[i], event_ids[i])

    def _batch_rows(self, events: Sequence[EventLogEntry]) -> list[dict]:
        """``[self._event_to_row(e) for e in events]`` (Dagster's event-log rows) with the event JSON
        from :func:`serialize_batch`, the costly column (a test compares the two)."""
        rows = []
        for e, serialized in zip(events, serialize_batch(events), strict=True):
            de = e.get_dagster_event()
            rows.append({
                "run_id": e.run_id,
                "event": serialized,
                "dagster_event_type": de.event_type_value,
                "timestamp": self._event_insert_timestamp(e),
                "step_key": de.step_key,
                "asset_key": de.asset_key.to_string(),
                "partition": de.partition or None,
            })
        return rows

    def has_table(self, table_name: str) -> bool:
        with self._db_lock:
            engine = self._engine(INDEX_SHARD_NAME)
            with engine.connect() as conn:
                return bool(engine.dialect.has_table(conn, table_name))

    def _dispose_shard(self, shard: str) -> None:
        with self._db_lock:
            engine = self._engines.pop(shard, None)
            if engine is not None:
                engine.dispose()

    def delete_events(self, run_id: str) -> None:
        super().delete_events(run_id)
        self._dispose_shard(run_id)

    def wipe(self) -> None:
        for shard in list(self._engines):
            self._dispose_shard(shard)
        super().wipe()

    def dispose(self) -> None:
        for shard in list(self._engines):
            self._dispose_shard(shard)
        super().dispose()
