"""The ``cluster`` profile end to end on a real local cluster (issue 14).

One module-scoped cluster (PostgreSQL, Redis, moto's S3 server, two Celery workers) under a
temp folder, started and stopped by the tests themselves. A small simulated market (>= 20
sessions) is materialized through raw -> staging -> marts twice: in-process on the ``local``
profile (lake on disk) and on the ``cluster`` profile (Celery workers, lake on S3, runs in
PostgreSQL). Then a worker process is killed mid-run and the rerun must heal the lake.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

pytest.importorskip("dagster_celery")
pytest.importorskip("dagster_postgres")
pytest.importorskip("moto")

from sc_assets.deploy.cluster import BUCKET, LAKE_PREFIX, Cluster, free_port  # noqa: E402
from sc_assets.deploy.profiles import (  # noqa: E402
    ClusterConfigError,
    check_object_store,
    check_postgres,
    check_redis,
)
from sc_assets.partitions import trading_days_between  # noqa: E402
from sc_assets.resources import Warehouse  # noqa: E402
from sc_assets.resources.warehouse import _month_table  # noqa: E402
from sc_assets.simulator import SimulationParams, simulate  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

START, END = "2023-11-01", "2023-12-01"  # before the episode: the marts GX basis range check trips on the simulated Jan-2024 shock
LAYERS = ("raw", "staging", "marts")
RUN_RE = re.compile(r"run ([0-9a-f-]{36}): (SUCCESS|FAILURE)")
PROJECT = Path(__file__).resolve().parents[2]


def _env_patch(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)


@pytest.fixture(scope="module")
def cluster():
    # under /tmp (not pytest's 0700 tmp dirs): PostgreSQL runs as the postgres user
    directory = Path(tempfile.mkdtemp(prefix="sc_assets_cluster_"))
    os.chmod(directory, 0o755)
    data = directory / "data"
    simulate(data, SimulationParams(n_stocks=60, start=START, end=END))  # default seed
    c = Cluster(directory)
    saved = {k: os.environ.get(k) for k in ("SC_ASSETS_PG_PASSWORD", "SC_ASSETS_REDIS_PASSWORD",
                                            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    for k in saved:  # generated credentials, never the caller's
        os.environ.pop(k, None)
    try:
        c.up(workers=2, data_dir=data)
        yield c
    finally:
        c.down()
        for k, v in saved.items():
            if v is not None:
                os.environ[k] = v
        shutil.rmtree(directory, ignore_errors=True)


def _backfill(c: Cluster, layers=LAYERS, wait: bool = True, timeout: float = 240):
    cmd = [sys.executable, "-m", "sc_assets.deploy.cluster", "backfill", "--start", START, "--end", END,
           "--select", ",".join(layers)]
    proc = subprocess.Popen(cmd, env=c.process_env(), cwd=str(PROJECT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _local_reference(cluster: Cluster, root: Path) -> Warehouse:
    """The same chain on the local profile: in-process, lake on disk (the reference)."""
    import dagster as dg

    shutil.copytree(cluster.dir / "data" / "landing", root / "landing")
    mp = pytest.MonkeyPatch()
    mp.setenv("SC_ASSETS_DATA_DIR", str(root))
    mp.delenv("SC_ASSETS_LAKE_URI", raising=False)
    mp.setenv("SC_ASSETS_PROFILE", "local")
    try:
        from sc_assets.definitions import defs
        from sc_assets.deploy.cluster import selected_keys
        from sc_assets.jobs import range_tags

        job = defs.resolve_job_def("full_backfill")
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), tags=range_tags(START, END),
                                        asset_selection=selected_keys(list(LAYERS)), raise_on_error=False)
        assert result.success, [e.step_key for e in result.all_events if e.is_step_failure]
    finally:
        mp.undo()
    return Warehouse(data_dir=str(root), lake_uri="")


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The cluster backfill (a subprocess, steps on the workers) while the local reference runs here."""
    proc = _backfill(cluster, wait=False)
    try:
        local = _local_reference(cluster, tmp_path_factory.mktemp("local_profile"))
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    m = RUN_RE.search(out)
    assert m and m.group(2) == "SUCCESS", out[-3000:]
    return local, m.group(1)


@pytest.fixture(scope="module")
def local_lake(runs) -> Warehouse:
    return runs[0]


@pytest.fixture(scope="module")
def cluster_run(runs) -> tuple[str, None]:
    return runs[1], None


def _s3_warehouse(c: Cluster, monkeypatch) -> Warehouse:
    _env_patch(monkeypatch, c.env())
    return Warehouse(data_dir=str(c.dir / "data"), lake_uri=f"s3://{BUCKET}/{LAKE_PREFIX}")


def _instance(c: Cluster, monkeypatch):
    import dagster as dg

    _env_patch(monkeypatch, c.env())
    return dg.DagsterInstance.from_config(str(c.dagster_home))


def _same(a: pd.DataFrame, b: pd.DataFrame) -> tuple[int, int]:
    """Rows of a not in b and of b not in a (multiset difference, exact values)."""
    con = duckdb.connect()
    con.register("a", pa.Table.from_pandas(a, preserve_index=False))
    con.register("b", pa.Table.from_pandas(b[list(a.columns)], preserve_index=False))
    ab = con.execute("SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b)").fetchone()[0]
    ba = con.execute("SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a)").fetchone()[0]
    con.close()
    return ab, ba


def _compare_lakes(local: Warehouse, remote: Warehouse, layers=LAYERS) -> list[str]:
    tables = [t for t in local.tables() if t[0] in layers]
    assert tables, "the local run wrote nothing"
    assert [t for t in remote.tables() if t[0] in layers] == tables
    compared = []
    for layer, asset in tables:
        assert remote.partitions(layer, asset) == local.partitions(layer, asset), (layer, asset)
        a, b = local.read(layer, asset), remote.read(layer, asset)
        assert list(a.columns) == list(b.columns), (layer, asset)
        assert len(a) == len(b), (layer, asset, len(a), len(b))
        assert _same(a, b) == (0, 0), (layer, asset)
        compared.append(f"{layer}.{asset}")
    return compared


# ---------------------------------------------------------------------------------------
def test_cluster_lake_equals_local_lake(cluster, local_lake, cluster_run, monkeypatch):
    sessions = trading_days_between(START, END)
    assert len(sessions) >= 20
    remote = _s3_warehouse(cluster, monkeypatch)
    compared = _compare_lakes(local_lake, remote)
    assert {"marts.stock_daily_panel", "marts.index_daily_panel", "staging.stg_stock_daily"} <= set(compared)
    assert len(remote.partitions("marts", "stock_daily_panel")) == len(sessions)
    # nothing of the cluster lake landed on the local disk of the cluster's data root
    assert not (cluster.dir / "data" / "lake").exists()
    # the catalog views read the bucket through the warehouse's DuckDB connection
    with remote.connect() as con:
        n = con.execute('SELECT count(*) FROM "marts"."stock_daily_panel"').fetchone()[0]
    assert n == len(local_lake.read("marts", "stock_daily_panel"))


def test_run_records_are_in_postgres(cluster, cluster_run, monkeypatch):
    import psycopg2

    run_id, _ = cluster_run
    env = cluster.env()
    con = psycopg2.connect(host=env["SC_ASSETS_PG_HOST"], port=env["SC_ASSETS_PG_PORT"],
                           user=env["SC_ASSETS_PG_USER"], password=env["SC_ASSETS_PG_PASSWORD"],
                           dbname=env["SC_ASSETS_PG_DB"])
    try:
        with con.cursor() as cur:
            cur.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchone() == ("full_backfill", "SUCCESS")
            cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = "
                        "'ASSET_MATERIALIZATION'", (run_id,))
            assert cur.fetchone()[0] > 0
    finally:
        con.close()
    # and nothing went to a SQLite file in the cluster's DAGSTER_HOME
    assert not list(cluster.dagster_home.rglob("*.db"))


def test_credentials_are_never_logged_or_stored(cluster, cluster_run):
    import psycopg2

    env = cluster.env()
    secrets_ = [env[k] for k in ("SC_ASSETS_PG_PASSWORD", "SC_ASSETS_REDIS_PASSWORD", "AWS_SECRET_ACCESS_KEY")]
    assert all(len(s) >= 8 for s in secrets_)
    # service logs, celery config module, instance folder (compute logs of every step)
    for folder in (cluster.logs, cluster.dagster_home, cluster.dir / "celery"):
        for f in (p for p in folder.rglob("*") if p.is_file()):
            text = f.read_text(errors="replace")
            assert not any(s in text for s in secrets_), f
    con = psycopg2.connect(host=env["SC_ASSETS_PG_HOST"], port=env["SC_ASSETS_PG_PORT"],
                           user=env["SC_ASSETS_PG_USER"], password=env["SC_ASSETS_PG_PASSWORD"],
                           dbname=env["SC_ASSETS_PG_DB"])
    try:
        with con.cursor() as cur:  # run records, run config/tags and every event's metadata
            for s in secrets_:
                cur.execute("SELECT (SELECT count(*) FROM event_logs WHERE event LIKE %s) + "
                            "(SELECT count(*) FROM runs WHERE run_body LIKE %s)", (f"%{s}%", f"%{s}%"))
                assert cur.fetchone()[0] == 0
    finally:
        con.close()


def test_steps_ran_on_more_than_one_celery_worker(cluster, cluster_run, monkeypatch):
    import dagster as dg

    run_id, _ = cluster_run
    instance = _instance(cluster, monkeypatch)
    hosts, pids = set(), set()
    for rec in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        md = rec.dagster_event.engine_event_data.metadata if rec.dagster_event.engine_event_data else {}
        if "Celery worker" in md:
            hosts.add(md["Celery worker"].value)
    for rec in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START):
        pids.add(rec.dagster_event.pid)
    assert {h.split("@")[0] for h in hosts} == {"worker1", "worker2"}, hosts
    assert len(pids) >= 2
    assert os.getpid() not in pids  # no step ran in the launching process


#: the step whose worker process is killed mid-step
KILLED_STEP = "marts__stock_daily_panel"


def test_killed_worker_leaves_no_half_partition_and_rerun_heals(cluster, local_lake, cluster_run, monkeypatch):
    """SIGKILL the worker process running a marts step: the partitions in the bucket are whole
    objects or absent, the task goes back to the queue, another worker process reruns the step
    and the run ends with the same lake as the local profile."""
    import dagster as dg

    remote = _s3_warehouse(cluster, monkeypatch)
    instance = _instance(cluster, monkeypatch)
    marts = [(layer, a) for layer, a in local_lake.tables() if layer == "marts"]
    # start from a lake without the marts, so whatever exists after the kill came from this run
    for _, asset in marts:
        for key in remote.lake_store.list(remote.table_dir("marts", asset).key):
            remote.lake_store.delete(key)
    before = {r.run_id for r in instance.get_runs()}
    proc = _backfill(cluster, layers=("marts",), wait=False)
    killed = killed_step = None
    deadline = time.monotonic() + 150
    try:
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            runs = [r for r in instance.get_runs() if r.run_id not in before]
            if runs:
                # the heaviest mart: the other marts steps can finish within the wait below, and a
                # kill after the step ended tests nothing (the performance round made them fast)
                starts = [r for r in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_START)
                          if r.step_key == KILLED_STEP]
                if starts:
                    time.sleep(0.5)  # inside the step: reading upstream / writing partitions
                    killed, killed_step = starts[0].dagster_event.pid, starts[0].step_key
                    os.kill(killed, signal.SIGKILL)  # the Celery pool process running the step
            time.sleep(0.1)
        assert killed is not None, "no step started on a worker"
        # right after the kill: every object present is a whole Parquet file with the local rows
        for layer, asset in marts:
            for day in remote.partitions(layer, asset):
                got = remote.read(layer, asset, days=[day])
                want = local_lake.read(layer, asset, days=[day])
                assert len(got) == len(want) and _same(want, got) == (0, 0), (asset, day)
        out, _ = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and "SUCCESS" in out, out[-3000:]
    run_id = RUN_RE.search(out).group(1)
    attempts = [r.dagster_event.pid for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
                if r.step_key == killed_step]
    assert len(attempts) >= 2 and attempts[0] == killed and attempts[-1] != killed, attempts
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    _compare_lakes(local_lake, remote, layers=("marts",))


# ---------------------------------------------------------------------------------------
def test_bad_credentials_name_the_service_and_setting(cluster, monkeypatch):
    _env_patch(monkeypatch, cluster.env())
    monkeypatch.setenv("SC_ASSETS_PG_PASSWORD", "wrong-pg-secret")
    with pytest.raises(ClusterConfigError, match="PostgreSQL.*rejected the credentials.*SC_ASSETS_PG_PASSWORD") as e:
        check_postgres()
    assert "wrong-pg-secret" not in str(e.value)
    broker = cluster.env()["SC_ASSETS_CELERY_BROKER"]
    monkeypatch.setenv("SC_ASSETS_CELERY_BROKER", re.sub(r"//:[^@]*@", "//:wrong-redis-secret@", broker))
    with pytest.raises(ClusterConfigError, match="Redis broker.*rejected the credentials.*SC_ASSETS_CELERY_BROKER") as e:
        check_redis()
    assert "wrong-redis-secret" not in str(e.value)


def test_backfill_with_bad_password_fails_fast_with_a_clear_message(cluster):
    env = {**cluster.process_env(), "SC_ASSETS_PG_PASSWORD": "nope-not-it"}
    out = subprocess.run([sys.executable, "-m", "sc_assets.deploy.cluster", "backfill", "--start", START,
                          "--end", START], env=env, cwd=str(PROJECT), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "PostgreSQL" in out.stderr and "SC_ASSETS_PG_PASSWORD" in out.stderr
    assert "nope-not-it" not in out.stderr + out.stdout


def test_unreachable_servers_name_the_service_and_setting(cluster, monkeypatch):
    _env_patch(monkeypatch, cluster.env())
    closed = free_port()
    monkeypatch.setenv("SC_ASSETS_PG_PORT", str(closed))
    with pytest.raises(ClusterConfigError, match="PostgreSQL unreachable.*SC_ASSETS_PG_PORT"):
        check_postgres()
    monkeypatch.setenv("SC_ASSETS_CELERY_BROKER", f"redis://:x@127.0.0.1:{closed}/0")
    with pytest.raises(ClusterConfigError, match="Redis broker unreachable.*SC_ASSETS_CELERY_BROKER"):
        check_redis()
    monkeypatch.setenv("SC_ASSETS_S3_ENDPOINT", f"http://127.0.0.1:{closed}")
    with pytest.raises(ClusterConfigError, match="S3 object storage unreachable.*SC_ASSETS_S3_ENDPOINT"):
        check_object_store()


def test_s3_partitions_are_atomic_single_objects_and_idempotent(cluster, monkeypatch):
    _env_patch(monkeypatch, cluster.env())
    wh = Warehouse(data_dir=str(cluster.dir / "data"), lake_uri=f"s3://{BUCKET}/unit")
    days = ["2024-01-02", "2024-01-03", "2024-02-01"]
    df = pd.DataFrame({"trade_date": pd.to_datetime(days[:2]).date, "ts_code": ["600000.SH", "000001.SZ"],
                       "close": [1.5, 2.5]})
    assert wh.write_partitions("raw", "t", df, days) == {"2024-01-02": 1, "2024-01-03": 1, "2024-02-01": 0}
    objects = wh.lake_store.list(wh.table_dir("raw", "t").key)
    assert sorted(objects) == ["unit/raw/t/2024-01.parquet", "unit/raw/t/2024-02.parquet"]  # no temp objects
    shutil.rmtree(cluster.dir / "data" / ".lake_cache", ignore_errors=True)
    assert wh.partitions("raw", "t") == days
    assert not list((cluster.dir / "data").rglob(".lake_cache/**/*.parquet"))  # footers only, nothing downloaded
    wh.write_partitions("raw", "t", df.assign(close=[9.0, 2.5]), days)
    out = wh.read("raw", "t").sort_values("ts_code")
    assert out["close"].tolist() == [2.5, 9.0] and len(out) == 2  # replaced, not appended
    assert wh.read("raw", "t", days=["2024-01-03"])["ts_code"].tolist() == ["000001.SZ"]
    wh.write_partitions("raw", "t", df.iloc[1:], days[1:2])  # one day alone: the month's other day kept
    assert wh.read("raw", "t", start="2024-01-01", end="2024-01-31")["close"].tolist() == [9.0, 2.5]
    wh.month_path("raw", "t", "2024-02-01").unlink()
    assert wh.partitions("raw", "t") == days[:2]
    assert wh.clean_temp_files() == 0
    names = wh.refresh_catalog([("raw", "t")])
    assert names == ["raw.t"]


def test_s3_month_update_merges_again_when_another_writer_replaced_it(cluster, monkeypatch):
    """Two writers of one month object: the PUT of the one that merged into an older version is
    refused (If-Match), and it merges again into the other's object, so both days stay."""
    _env_patch(monkeypatch, cluster.env())
    wh = Warehouse(data_dir=str(cluster.dir / "data"), lake_uri=f"s3://{BUCKET}/race")
    frame = lambda d: pd.DataFrame({"trade_date": [pd.Timestamp(d).date()], "ts_code": ["600000.SH"], "close": [1.0]})  # noqa: E731
    wh.write_partitions("raw", "r", frame("2024-01-02"), ["2024-01-02"])
    store = wh.lake_store
    real = store.update_parquet
    calls = []

    def racing(key, build, attempts=20):
        def build_once_raced(current):
            calls.append(current)
            if len(calls) == 1:  # another run writes 2024-01-03 between this writer's read and its PUT
                real(key, functools.partial(_month_table, pa.Table.from_pandas(frame("2024-01-03"), preserve_index=False),
                                            ["2024-01-03"]))
            return build(current)
        return real(key, build_once_raced, attempts)

    monkeypatch.setattr(store, "update_parquet", racing)
    monkeypatch.setattr(type(wh), "lake_store", property(lambda self: store))
    wh.write_partitions("raw", "r", frame("2024-01-04"), ["2024-01-04"])
    assert len(calls) == 2  # refused once, merged again
    assert wh.partitions("raw", "r") == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert len(wh.read("raw", "r")) == 3


def test_s3_lake_of_day_objects_is_refused_until_migrated(cluster, monkeypatch):
    """An object-storage lake in the per-day layout is refused (not shown as empty) for reads and
    writes, and migrate-lake moves its day objects into month objects."""
    from sc_assets.resources.warehouse import LegacyLayoutError

    _env_patch(monkeypatch, cluster.env())
    wh = Warehouse(data_dir=str(cluster.dir / "data"), lake_uri=f"s3://{BUCKET}/legacy")
    store = wh.lake_store
    days = ["2024-01-30", "2024-01-31", "2024-02-01"]
    for i, day in enumerate(days):
        rows = pa.table({"trade_date": pa.array([pd.Timestamp(day).date()] * (i != 1), pa.date32()),
                         "ts_code": ["600000.SH"] * (i != 1), "close": [float(i)] * (i != 1)})
        store.put_parquet(rows, f"{wh.table_dir('raw', 'old').key}/trade_date={day}/part.parquet")
    with pytest.raises(LegacyLayoutError, match="migrate-lake"):
        wh.read("raw", "old")
    with pytest.raises(LegacyLayoutError):
        wh.write_partitions("raw", "old", pd.DataFrame({"trade_date": [pd.Timestamp("2024-02-02").date()],
                                                        "ts_code": ["X"], "close": [9.0]}), ["2024-02-02"])
    assert wh.migrate_day_folders() == {"raw.old": 3}
    assert sorted(k.rsplit("/", 1)[-1] for k in store.list(wh.table_dir("raw", "old").key)) == [
        "2024-01.parquet", "2024-02.parquet"]
    assert wh.partitions("raw", "old") == days
    assert wh.read("raw", "old")["close"].tolist() == [0.0, 2.0]
    assert wh.migrate_day_folders() == {}


def test_postgres_event_log_keeps_one_planned_row_per_check(cluster, monkeypatch):
    """The cluster's event log is the project's PostgreSQL storage: a range run of selected assets
    leaves one finished row per check (Dagster's own leaves a PLANNED row per partition)."""
    import dagster as dg

    from sc_assets.deploy.postgres_storage import PostgresEventLogStorage
    from sc_assets.partitions import trading_days

    @dg.asset(partitions_def=trading_days, backfill_policy=dg.BackfillPolicy.single_run(),
              check_specs=[dg.AssetCheckSpec("rows_positive", asset="pg_checked")])
    def pg_checked(context):
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name="rows_positive", passed=True)])

    @dg.asset(partitions_def=trading_days, backfill_policy=dg.BackfillPolicy.single_run())
    def pg_other(context):
        return None

    instance = _instance(cluster, monkeypatch)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    res = dg.materialize([pg_checked, pg_other], selection=[pg_checked.key], instance=instance,
                         tags={"dagster/asset_partition_range_start": "2024-01-02",
                               "dagster/asset_partition_range_end": "2024-02-29"})
    assert res.success
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("pg_checked"), "rows_positive"), limit=100)
    assert [(r.run_id, r.status.value, r.partition) for r in records] == [(res.run_id, "SUCCEEDED", None)]
