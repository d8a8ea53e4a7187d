"""The pooled SQLite event log: same files as Dagster's own storage, readable by it."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from sc_assets.assets._metadata import range_metadata
from sc_assets.deploy.profiles import local_instance
from sc_assets.deploy.sqlite_storage import PooledSqliteEventLogStorage, _same, _skeleton, serialize_batch
from sc_assets.partitions import trading_days

TEMPLATE = Path(__file__).parents[2] / "sc_assets" / "deploy" / "dagster.local.yaml"


@dg.asset(partitions_def=trading_days, backfill_policy=dg.BackfillPolicy.single_run())
def tiny(context) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})


RANGE = {"dagster/asset_partition_range_start": "2024-01-02", "dagster/asset_partition_range_end": "2024-02-29"}
#: the partition keys of ``RANGE``
RANGE_KEYS = trading_days.get_partition_keys_in_range(dg.PartitionKeyRange("2024-01-02", "2024-02-29"))


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
        n_days = len(RANGE_KEYS)
        assert len(first.get_asset_materialization_events()) == n_days
        assert instance.get_materialized_partitions(dg.AssetKey("tiny")) == set(RANGE_KEYS)
        instance.delete_run(first.run_id)  # deletes its events and disposes the run's cached engine
        assert first.run_id not in instance.event_log_storage._engines

    # the same files read back with Dagster's stock SQLite storage (no lock-in)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.get() as stock:
        assert type(stock.event_log_storage).__name__ == "SqliteEventLogStorage"
        records = stock.fetch_materializations(dg.AssetKey("tiny"), limit=1000).records
        assert len(records) == n_days
        assert {r.run_id for r in records} == {second.run_id}


@dg.asset(partitions_def=trading_days, backfill_policy=dg.BackfillPolicy.single_run(), code_version="v1")
def tagged(context) -> dg.MaterializeResult:
    # as the project's assets: light entries on every partition's event, the preview on the last one's
    meta = {"days": len(context.partition_keys), "seconds": 0.5, "zero": -0.0,
            "parameters": dg.MetadataValue.json({"window": [1, 2.0, True]}),
            "preview": dg.MetadataValue.md("| a |\n|---|\n| 1 |")}
    return dg.MaterializeResult(metadata=range_metadata(context, meta))


def _index_state(instance: dg.DagsterInstance, run_id: str) -> dict:
    """What a batch write must leave behind exactly as one write per event: the run's log, the
    asset's materializations (per partition), its latest-materialization row and indexed tags."""
    key = dg.AssetKey("tagged")
    logs = [(e.dagster_event_type, e.dagster_event.partition if e.dagster_event else None)
            for e in instance.all_logs(run_id) if e.is_dagster_event and e.dagster_event.asset_key]
    records = instance.fetch_materializations(key, limit=1000, ascending=True).records
    entry = instance.get_asset_records([key])[0].asset_entry
    latest = entry.last_materialization_record.event_log_entry
    tags = instance.event_log_storage.get_event_tags_for_asset(key)
    return {
        "logs": logs,
        "partitions": [r.partition_key for r in records],
        "materialized": instance.get_materialized_partitions(key),
        "latest": (latest.dagster_event.partition, latest.dagster_event.event_specific_data.materialization.metadata),
        "last_run_is_this_run": entry.last_run_id == run_id,
        "tags": sorted(tuple(sorted((k, v) for k, v in t.items() if k != "dagster/data_version")) for t in tags),
        "data_versions": len({t.get("dagster/data_version") for t in tags}),
    }


def _assert_stored_json_is_dagsters(instance: dg.DagsterInstance, events: list) -> None:
    """The batch's rows are Dagster's own (``_event_to_row``: ``serialize_value`` of each event),
    though all but the last partition's JSON come from the batch template; and what was stored
    decodes to the event of the row's own partition and timestamp."""
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable as t

    storage = instance.event_log_storage
    assert storage._batch_rows(events) == [storage._event_to_row(e) for e in events]
    templated = [e for e in events if _same(_skeleton(e), _skeleton(events[0]))]
    assert len(templated) == len(events) - 1  # the last one carries the preview: serialised in full
    with storage.index_connection() as conn:
        rows = conn.execute(t.select().where(t.c.dagster_event_type == "ASSET_MATERIALIZATION")).mappings().all()
    assert len(rows) == len(events)
    for row in rows:
        event = dg.deserialize_value(row["event"], dg.EventLogEntry)
        assert row["event"] == dg.serialize_value(event)
        assert event.dagster_event.partition == row["partition"]
        assert storage._event_insert_timestamp(event) == row["timestamp"]


def test_batched_partition_events_leave_the_same_state_as_one_write_per_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls: list[int] = []
    batches: list[list] = []
    real = PooledSqliteEventLogStorage.store_event_batch
    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event_batch",
                        lambda self, events: (calls.append(len(events)), batches.append(list(events)),
                                              real(self, events))[-1])
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")  # as the project runs
    states = {}
    for batch in ("0", "10000"):
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch)
        with local_instance(tmp_path / f"home_{batch}") as instance:
            assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
            result = dg.materialize([tagged], instance=instance, tags=RANGE)
            assert result.success
            states[batch] = _index_state(instance, result.run_id)
            if batch != "0":
                _assert_stored_json_is_dagsters(instance, batches[-1])
    n_days = len(RANGE_KEYS)
    # only the batched instance wrote a batch: the step's materializations, one per partition
    assert calls == [n_days]
    assert states["0"] == states["10000"]
    assert len(states["0"]["partitions"]) == n_days and states["0"]["latest"][0] == "2024-02-29"
    assert states["0"]["last_run_is_this_run"]


@dg.asset(partitions_def=trading_days, backfill_policy=dg.BackfillPolicy.single_run(),
          check_specs=[dg.AssetCheckSpec("rows_positive", asset="checked")])
def checked(context) -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name="rows_positive", passed=True)])


def _check_rows(instance: dg.DagsterInstance) -> list[tuple]:
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable

    t = AssetCheckExecutionsTable
    with instance.event_log_storage.index_connection() as conn:
        rows = conn.execute(t.select()).mappings().all()
    out = []
    for r in rows:
        event = dg.deserialize_value(r["evaluation_event"], dg.EventLogEntry) if r["evaluation_event"] else None
        out.append((r["asset_key"], r["check_name"], r["partition"], r["execution_status"],
                    event.dagster_event_type if event else None))
    return sorted(out, key=str)


def test_a_range_run_of_selected_assets_leaves_one_finished_row_per_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Dagster's own storage leaves one PLANNED row per partition for an unpartitioned check of a
    range run of selected assets (never updated: the result has no partition); ours writes one
    planned row per check and run, which the result turns into SUCCEEDED."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    rows = {}
    for variant in ("dagster", "pooled"):
        if variant == "dagster":
            monkeypatch.setattr(PooledSqliteEventLogStorage, "_store_asset_check_evaluation_planned",
                                SqliteEventLogStorage._store_asset_check_evaluation_planned)
        else:
            monkeypatch.undo()
        with local_instance(tmp_path / variant) as instance:
            assert dg.materialize([checked, tiny], selection=[checked.key], instance=instance, tags=RANGE).success
            rows[variant] = _check_rows(instance)
    n_days = len(RANGE_KEYS)
    stuck = [r for r in rows["dagster"] if r[3] == "PLANNED"]
    assert len(stuck) == n_days and {r[2] for r in stuck} == set(RANGE_KEYS)
    assert rows["pooled"] == [('["checked"]', "rows_positive", None, "SUCCEEDED", dg.DagsterEventType.ASSET_CHECK_EVALUATION)]


def test_no_check_of_the_project_is_partitioned():
    """The one-planned-row storage assumes unpartitioned checks (a partitioned check's result is
    stored per partition and would need its per-partition planned rows)."""
    from sc_assets.definitions import defs

    specs = [spec for a in defs.resolve_asset_graph().assets_defs for spec in a.check_specs]
    assert len(specs) > 50 and all(spec.partitions_def is None for spec in specs)


def test_same_is_strict_where_equal_values_serialise_differently():
    from collections import namedtuple

    pair = namedtuple("pair", "a b")
    assert _same(pair(1, {"x": [1.5, "s"]}), pair(1, {"x": [1.5, "s"]}))
    assert _same(dg.AssetKey(["a", "b"]), dg.AssetKey(["a", "b"]))  # Dagster records: by fields
    assert not _same(dg.AssetKey(["a"]), dg.AssetKey(["b"]))
    assert not _same({"a": 1, "b": 2}, {"b": 2, "a": 1})  # metadata entries keep their order in JSON
    assert not _same([1], (1,))
    for a, b in [(1, 1.0), (1, True), (0.0, -0.0), (dg.MetadataValue.int(1), dg.MetadataValue.float(1.0))]:
        assert a == b  # equal to Python, but not the same JSON
        assert not _same(pair(a, 0), pair(b, 0))
        assert dg.serialize_value([a]) != dg.serialize_value([b])


def test_serialize_batch_equals_serialize_value_per_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Different partitions, metadata or timestamps in one batch, in any order: each event gets its own JSON."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "10000")
    with local_instance(tmp_path / "home") as instance:
        assert dg.materialize([tagged], instance=instance, tags=RANGE).success
        events = [r.event_log_entry for r in instance.fetch_materializations(
            dg.AssetKey("tagged"), limit=1000, ascending=True).records]
    mixed = [events[3], events[0], events[-1], events[0]._replace(timestamp=events[0].timestamp + 0.25), events[1]]
    assert serialize_batch(mixed) == [dg.serialize_value(e) for e in mixed]
    assert serialize_batch([]) == []

    def with_partition(e, key):
        data = e.dagster_event.event_specific_data
        return e._replace(dagster_event=e.dagster_event._replace(
            event_specific_data=data._replace(materialization=data.materialization._replace(partition=key))))

    odd = [with_partition(events[0], key) for key in ("2024-01-02", 'q"uote\\é\u4e2d', "", "x" * 300)]
    assert serialize_batch(odd) == [dg.serialize_value(e) for e in odd]
