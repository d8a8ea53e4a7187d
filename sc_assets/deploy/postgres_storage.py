"""The ``cluster`` profile's event-log storage: dagster-postgres's, with one PLANNED asset-check
row per check and run (:mod:`sc_assets.deploy.check_storage`). Configured in
``dagster.cluster.yaml``; the run and schedule storages are dagster-postgres's own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster_postgres.event_log import PostgresEventLogStorage as _PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from sc_assets.deploy.check_storage import OnePlannedCheckRow


class PostgresEventLogStorage(OnePlannedCheckRow, _PostgresEventLogStorage):
    """dagster-postgres's event-log storage with one planned row per check and run."""

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]) -> PostgresEventLogStorage:
        return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   token_provider=get_token_provider_from_config(config_value))
