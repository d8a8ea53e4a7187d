"""The pooled SQLite event log: same files as Dagster's own storage, readable by it."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from sc_assets.deploy.sqlite_storage import PooledSqliteEventLogStorage
from sc_assets.partitions import trading_days

TEMPLATE = Path(__file__).parents[2] / "sc_assets" / "deploy" / "dagster.local.yaml"


@dg.asset(partitions_def=trading_days, backfill_policy=dg.BackfillPolicy.single_run())
def tiny(context) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})


RANGE = {"dagster/asset_partition_range_start": "2024-01-02", "dagster/asset_partition_range_end": "2024-02-29"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(TEMPLATE, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_local_profile_uses_pooled_storage_and_records_every_partition(home: Path):
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        first = dg.materialize([tiny], instance=instance, tags=RANGE)
        second = dg.materialize([tiny], instance=instance, tags=RANGE)
        assert first.success and second.success
        n_days = len(trading_days.get_partition_keys_in_range(dg.PartitionKeyRange("2024-01-02", "2024-02-29")))
        assert len(first.get_asset_materialization_events()) == n_days
        assert instance.get_materialized_partitions(dg.AssetKey("tiny")) == set(
            trading_days.get_partition_keys_in_range(dg.PartitionKeyRange("2024-01-02", "2024-02-29")))
        instance.delete_run(first.run_id)  # deletes its events and disposes the run's cached engine
        assert first.run_id not in instance.event_log_storage._engines

    # the same files read back with Dagster's stock SQLite storage (no lock-in)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.get() as stock:
        assert type(stock.event_log_storage).__name__ == "SqliteEventLogStorage"
        records = stock.fetch_materializations(dg.AssetKey("tiny"), limit=1000).records
        assert len(records) == n_days
        assert {r.run_id for r in records} == {second.run_id}
