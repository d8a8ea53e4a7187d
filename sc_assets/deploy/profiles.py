"""Deployment profiles: one setting, same code (issue 14, docs/CLUSTER.md).

``SC_ASSETS_PROFILE`` = ``local`` (default) | ``cluster``.

``local``
    SQLite instance storage in ``$DAGSTER_HOME`` (``dagster.local.yaml``), Dagster's default
    executor (multiprocess for launched runs, in-process for ``execute_in_process``), the lake
    under ``$SC_ASSETS_DATA_DIR/lake``.
``cluster``
    PostgreSQL run/event/schedule storage (``dagster.cluster.yaml``), the ``dagster-celery``
    executor on a Redis broker (``SC_ASSETS_CELERY_BROKER`` / ``SC_ASSETS_CELERY_BACKEND``) with
    a pool of workers, the lake at ``SC_ASSETS_LAKE_URI`` = ``s3://bucket/prefix``.

Every connection setting comes from an environment variable (``make cluster-up`` writes them
to ``.cluster/env.sh``); none is put into metadata, and error messages name the setting, never
its secret value. :func:`check_cluster` is the preflight that turns "connection refused" or
"password authentication failed" into a :class:`ClusterConfigError` naming the service and
the variable to fix.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

PROFILE_ENV = "SC_ASSETS_PROFILE"
PROFILES = ("local", "cluster")
DEPLOY_DIR = Path(__file__).resolve().parent

PG_ENV = {
    "host": "SC_ASSETS_PG_HOST",
    "port": "SC_ASSETS_PG_PORT",
    "user": "SC_ASSETS_PG_USER",
    "password": "SC_ASSETS_PG_PASSWORD",
    "db": "SC_ASSETS_PG_DB",
}
BROKER_ENV = "SC_ASSETS_CELERY_BROKER"
BACKEND_ENV = "SC_ASSETS_CELERY_BACKEND"
#: Celery queue the workers listen on (dagster-celery's default).
CELERY_QUEUE = "dagster"


#: Dagster settings read from the environment that single-run backfills depend on (issue 11).
#: ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``: one planned event per asset for the whole
#: range, not one per asset and partition (thousands of writes before the first step otherwise;
#: Dagster's trade-off: if the run fails, its partitions are not marked failed in the UI).
#: ``DAGSTER_EVENT_BATCH_SIZE``: the per-partition materializations of a step are stored as one
#: batch (``PooledSqliteEventLogStorage.store_event_batch``: ~0.1 ms of CPU instead of ~5 ms per partition
#: event); storages without a batch write store them one by one as before.
DAGSTER_ENV_DEFAULTS = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    "DAGSTER_EVENT_BATCH_SIZE": "10000",
}


def apply_dagster_env_defaults() -> None:
    """Set :data:`DAGSTER_ENV_DEFAULTS` where the environment does not already (the Makefile exports
    the same values for ``dagster dev``; the code location, ``sc-assets demo`` and ``bench`` call this),
    and tune the process's allocator (:func:`tune_allocator`)."""
    for name, value in DAGSTER_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    tune_allocator()


#: glibc ``mallopt`` settings of :func:`tune_allocator` (parameter number, value in bytes).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: mmap threshold: 1 GiB, or 32 MiB where glibc refuses more (older releases cap it at half its
#: heap size; chunk columns and grids are mostly below that).
MALLOC_SETTINGS = {_M_MMAP_THRESHOLD: (1 << 30, 32 << 20), _M_TRIM_THRESHOLD: (1 << 30,)}


def tune_allocator() -> bool:
    """Keep freed numpy/pandas buffers in the process heap for reuse (glibc only; issue 11).

    By default glibc serves a large block (over 128 KiB, a threshold that rises to at most 32 MiB as
    such blocks are freed) with a fresh ``mmap`` and unmaps it on free, so every chunk of a backfill
    faults its arrays' pages in again (zeroed by the kernel). With the mmap and trim thresholds at
    1 GiB the next chunk reuses the same pages: on the full market the crowding step took 0.26M
    instead of 1.39M page faults and 33.4 instead of 36.8 CPU-s (peak RSS 0.91 vs 0.82 GiB), the
    factor step 20.1 instead of 21.3 CPU-s. The price: a process keeps up to 1 GiB of freed heap
    for reuse instead of returning it. Arrow buffers use their own allocator and are not affected.
    Skipped when ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` are set (glibc read them at
    start-up) and on other C libraries. Returns whether both settings were applied."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = [any(mallopt(param, value) == 1 for value in values) for param, values in MALLOC_SETTINGS.items()]
    return all(applied)


class ClusterConfigError(RuntimeError):
    """A cluster service is unreachable or refuses the configured credentials.

    The message names the service and the environment variable(s) to fix; never a secret.
    """


def profile() -> str:
    """The active profile from ``$SC_ASSETS_PROFILE`` (default ``local``)."""
    value = (os.environ.get(PROFILE_ENV) or "local").strip().lower()
    if value not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={value!r}: expected one of {', '.join(PROFILES)}")
    return value


def instance_template(name: str | None = None) -> Path:
    """The ``dagster.yaml`` template of a profile (copied into ``$DAGSTER_HOME``)."""
    return DEPLOY_DIR / f"dagster.{name or profile()}.yaml"


def local_instance(home: str | os.PathLike):
    """A persistent ``local``-profile Dagster instance in ``home`` (created with the profile's
    ``dagster.yaml`` if missing): what ``make demo`` / ``make dev`` use, for in-process runs
    (``sc-assets bench``) that should measure the same storage."""
    import yaml
    from dagster import DagsterInstance

    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        config = yaml.safe_load(instance_template("local").read_text())
        # the event log under this home, not under $DAGSTER_HOME (the storage's default)
        config["event_log_storage"]["config"] = {"base_dir": str(home / "history" / "runs")}
        (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return DagsterInstance.from_config(str(home))


def celery_executor_def():
    """``dagster_celery.celery_executor`` configured from the environment (no secret inlined)."""
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": {"env": BROKER_ENV},
            "backend": {"env": BACKEND_ENV},
            # acks_late + reject_on_worker_lost: a step whose worker process dies is redelivered
            # to another worker (dagster-celery would otherwise wait forever for its result);
            # steps are idempotent (partitions are replaced), so running one twice is safe.
            "config_source": {
                "worker_prefetch_multiplier": 1,
                "task_acks_late": True,
                "task_reject_on_worker_lost": True,
                "broker_connection_retry_on_startup": True,
                "broker_transport_options": {"visibility_timeout": 43200, "max_retries": 3, "interval_start": 0,
                                             "interval_step": 0.2, "interval_max": 0.5},
            },
        },
        name="celery_executor",
    )


def default_executor():
    """The executor for the code location's Definitions: None (Dagster's default) on
    ``local``, the Celery executor on ``cluster``."""
    return celery_executor_def() if profile() == "cluster" else None


# ---------------------------------------------------------------------------------------
# preflight
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceStatus:
    service: str
    ok: bool
    detail: str


def _need(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        raise ClusterConfigError(f"{var} is not set: source .cluster/env.sh (make cluster-up) or export it")
    return value


def check_postgres(timeout_s: int = 3) -> ServiceStatus:
    import psycopg2

    host, port = _need(PG_ENV["host"]), _need(PG_ENV["port"])
    user, db = _need(PG_ENV["user"]), _need(PG_ENV["db"])
    password = os.environ.get(PG_ENV["password"], "")
    try:
        con = psycopg2.connect(host=host, port=port, user=user, password=password, dbname=db,
                               connect_timeout=timeout_s)
    except psycopg2.OperationalError as exc:
        text = str(exc)
        if "password authentication failed" in text or "no password supplied" in text:
            raise ClusterConfigError(
                f"PostgreSQL at {host}:{port} rejected the credentials of user {user!r} "
                f"(check {PG_ENV['user']} / {PG_ENV['password']})") from None
        if "does not exist" in text and "database" in text:
            raise ClusterConfigError(
                f"PostgreSQL at {host}:{port} has no database {db!r} (check {PG_ENV['db']})") from None
        raise ClusterConfigError(
            f"PostgreSQL unreachable at {host}:{port} (check {PG_ENV['host']} / {PG_ENV['port']}; "
            f"is it running? make cluster-up): {text.strip().splitlines()[0] if text.strip() else type(exc).__name__}"
        ) from None
    try:
        version = con.server_version
    finally:
        con.close()
    return ServiceStatus("postgres", True, f"PostgreSQL {version // 10000}.{version % 10000} at {host}:{port}")


def _redact(url: str) -> str:
    from urllib.parse import urlparse

    p = urlparse(url)
    netloc = p.hostname or ""
    if p.port:
        netloc += f":{p.port}"
    return f"{p.scheme}://{netloc}{p.path}"


def check_redis(var: str = BROKER_ENV, timeout_s: float = 3.0) -> ServiceStatus:
    import redis

    url = _need(var)
    where = _redact(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        client.ping()
        info = client.info("server")
    except redis.exceptions.AuthenticationError:
        raise ClusterConfigError(
            f"Redis broker at {where} rejected the credentials (password in {var})") from None
    except redis.exceptions.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc) or "invalid password" in str(exc):
            raise ClusterConfigError(
                f"Redis broker at {where} rejected the credentials (password in {var})") from None
        raise
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise ClusterConfigError(
            f"Redis broker unreachable at {where} (check {var}; is it running? make cluster-up): "
            f"{type(exc).__name__}") from None
    return ServiceStatus("redis", True, f"Redis {info.get('redis_version')} at {where}")


def check_object_store() -> ServiceStatus:
    from sc_assets.resources.object_store import LAKE_URI_ENV, LakeStoreError, S3Lake

    uri = _need(LAKE_URI_ENV)
    store = S3Lake(uri, cache_dir=Path("/nonexistent"))
    try:
        store.check()
    except LakeStoreError as exc:
        raise ClusterConfigError(str(exc)) from None
    return ServiceStatus("s3", True, f"bucket {store.settings.bucket!r} at {store.settings.where()}")


def check_cluster() -> list[ServiceStatus]:
    """Check PostgreSQL, the Redis broker and the S3 bucket; raise on the first problem."""
    return [check_postgres(), check_redis(), check_object_store()]


__all__ = [
    "BACKEND_ENV", "BROKER_ENV", "CELERY_QUEUE", "DAGSTER_ENV_DEFAULTS", "PG_ENV", "PROFILES", "PROFILE_ENV",
    "ClusterConfigError",
    "ServiceStatus", "celery_executor_def", "check_cluster", "check_object_store", "check_postgres", "check_redis",
    "apply_dagster_env_defaults", "default_executor", "instance_template", "local_instance", "profile",
]
