"""One PLANNED asset-check row per check and run, for both event-log storages of the project.

Dagster 1.13.27 writes a planned asset-check evaluation into the index table
``asset_check_executions`` once per partition of the run (each row holding the whole planned
event, ~22 KB, mostly the trading calendar's holiday exclusions) whenever the run's last
planned asset is partitioned: a run of selected assets over a range (a UI backfill of a
selection), not the full job. Every check of this project is unpartitioned (a test guards
that) and its result is stored without a partition, so those rows were never updated: they
stayed PLANNED (the UI lists each partition as SKIPPED, or EXECUTION_FAILED after a failed
run) and grew the index by ~53 MB per check over ten years. Cause, in Dagster: ``create_run``
keeps the partitions definition of the plan's last asset output,
``get_resolved_partitions_subset_for_events`` hands that subset to unpartitioned checks, and
``SqlEventLogStorage._store_asset_check_evaluation_planned`` inserts a row per key.

:class:`OnePlannedCheckRow` overrides that method with one row, partition NULL: the row
Dagster's result handler looks up and moves to SUCCEEDED / FAILED, as after a full-job run.
:class:`~sc_assets.deploy.sqlite_storage.PooledSqliteEventLogStorage` (local profile) and
:class:`~sc_assets.deploy.postgres_storage.PostgresEventLogStorage` (cluster profile) use it.
"""

from __future__ import annotations

from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster_shared.serdes import serialize_value


class OnePlannedCheckRow:
    """Mixin for a ``SqlEventLogStorage``: one PLANNED row per check and run (module docstring)."""

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        planned = event.get_dagster_event().event_specific_data
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert().values(
                asset_key=planned.asset_key.to_string(),
                check_name=planned.check_name,
                run_id=event.run_id,
                partition=None,
                execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                evaluation_event=serialize_value(event),
                evaluation_event_timestamp=self._event_insert_timestamp(event),
                evaluation_event_storage_id=event_id,
            ))
