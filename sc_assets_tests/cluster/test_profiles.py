"""Profiles without servers: the setting, the executor it selects, the instance templates."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sc_assets.deploy import profiles
from sc_assets.deploy.profiles import ClusterConfigError

pytest.importorskip("dagster_celery")
pytest.importorskip("dagster_postgres")


def test_profile_defaults_to_local_and_rejects_unknown(monkeypatch):
    monkeypatch.delenv("SC_ASSETS_PROFILE", raising=False)
    assert profiles.profile() == "local"
    assert profiles.default_executor() is None  # Dagster's default executor, local behaviour unchanged
    monkeypatch.setenv("SC_ASSETS_PROFILE", "Cluster ")
    assert profiles.profile() == "cluster"
    monkeypatch.setenv("SC_ASSETS_PROFILE", "k8s")
    with pytest.raises(ValueError, match="SC_ASSETS_PROFILE='k8s'"):
        profiles.profile()


def test_cluster_profile_selects_celery_executor_configured_from_env(monkeypatch):
    monkeypatch.setenv("SC_ASSETS_PROFILE", "cluster")
    import dagster as dg

    ex = profiles.default_executor()
    assert ex is not None and ex.name == "celery_executor"

    @dg.asset
    def a() -> None: ...

    job = dg.Definitions(assets=[a], executor=ex).resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "celery_executor"


def test_cluster_instance_template_resolves_postgres_from_env(tmp_path: Path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    env = {"SC_ASSETS_PG_HOST": "db.example", "SC_ASSETS_PG_PORT": "6543", "SC_ASSETS_PG_USER": "u",
           "SC_ASSETS_PG_PASSWORD": "s3cret-value", "SC_ASSETS_PG_DB": "dagster"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    shutil.copyfile(profiles.instance_template("cluster"), tmp_path / "dagster.yaml")
    text = (tmp_path / "dagster.yaml").read_text()
    assert "s3cret-value" not in text and "password:\n        env: SC_ASSETS_PG_PASSWORD" in text
    config, _ = dagster_instance_config(str(tmp_path))
    from dagster._config import process_config
    from dagster._core.storage.config import pg_config
    from dagster_postgres.utils import pg_url_from_config

    # three storages, one postgres_db block (a YAML anchor); the event log is the project's class
    assert config["event_log_storage"]["module"] == "sc_assets.deploy.postgres_storage"
    assert config["run_storage"]["config"] == config["event_log_storage"]["config"] == config["schedule_storage"]["config"]
    resolved = process_config(pg_config(), config["event_log_storage"]["config"])  # as the storage does
    assert resolved.success, resolved.errors
    pg = resolved.value["postgres_db"]
    assert pg["hostname"] == "db.example" and pg["port"] == 6543 and pg["password"] == "s3cret-value"
    url = pg_url_from_config(resolved.value)
    assert url.startswith("postgresql+psycopg2://u:") and url.endswith("@db.example:6543/dagster?connect_timeout=5")
    # the local template stays SQLite (no storage block)
    local, _ = dagster_instance_config(str(profiles.instance_template("local").parent),
                                       config_filename=profiles.instance_template("local").name)
    assert "storage" not in local or "postgres" not in (local.get("storage") or {})
    assert "run_storage" not in local


def test_preflight_names_the_missing_setting(monkeypatch):
    for var in ("SC_ASSETS_PG_HOST", "SC_ASSETS_CELERY_BROKER", "SC_ASSETS_LAKE_URI"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ClusterConfigError, match="SC_ASSETS_PG_HOST is not set"):
        profiles.check_postgres()
    with pytest.raises(ClusterConfigError, match="SC_ASSETS_CELERY_BROKER is not set"):
        profiles.check_redis()
    with pytest.raises(ClusterConfigError, match="SC_ASSETS_LAKE_URI is not set"):
        profiles.check_object_store()


def test_lake_uri_must_be_s3_or_empty(tmp_path: Path, monkeypatch):
    from sc_assets.resources import Warehouse

    monkeypatch.delenv("SC_ASSETS_LAKE_URI", raising=False)
    assert Warehouse(data_dir=str(tmp_path)).lake == tmp_path.resolve() / "lake"
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        _ = Warehouse(data_dir=str(tmp_path), lake_uri="gs://x/y").lake
    wh = Warehouse(data_dir=str(tmp_path), lake_uri="s3://bkt/some/prefix")
    assert str(wh.month_path("raw", "stock_daily", "2024-01-02")) == "s3://bkt/some/prefix/raw/stock_daily/2024-01.parquet"
