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
what :meth:`store_event` writes (a test compares the two).

Planned asset-check evaluations of a partitioned run get one row per (check, partition) in the
index; Dagster serialises the same planned event again for every row (2,431 times per check
for a 10-year backfill: ~2.5 s per check, minutes for the chain's checks).
:meth:`_store_asset_check_evaluation_planned` serialises it once; the rows are the same.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from dagster import Field, StringSource
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster_shared.serdes import serialize_value
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

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


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
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
        rows = [self._event_to_row(e) for e in events]  # serialises each event once
        with self.run_connection(run_ids.pop()) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            event_ids = []
            for row in rows:
                with db_result(conn, SqlEventLogStorageTable.insert().values(**row)) as result:
                    event_ids.append(result.inserted_primary_key[0])
            self._store_asset_event_tags(conn, events, event_ids)
            # the asset-key row: only the last event of each (asset, event type) changes what is
            # left behind, applied in the original order (types update overlapping columns)
            last = {(e.dagster_event.asset_key, e.dagster_event_type): i for i, e in enumerate(events)}
            for i in sorted(last.values()):
                self._store_asset_event(conn, events[i], event_ids[i])

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        """Dagster's method with the event serialised once for all partitions (see module docstring)."""
        planned = event.get_dagster_event().event_specific_data
        partition_keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        common = dict(
            asset_key=planned.asset_key.to_string(),
            check_name=planned.check_name,
            run_id=event.run_id,
            execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
            evaluation_event=serialize_value(event),
            evaluation_event_timestamp=self._event_insert_timestamp(event),
            evaluation_event_storage_id=event_id,
        )
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert().values(
                [dict(common, partition=partition_key) for partition_key in partition_keys]))

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
