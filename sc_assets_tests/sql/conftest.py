"""One materialization of every SQL model on the hand-made raw lake, shared by this package's tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg
import pytest

from sc_assets.resources import Warehouse
from sc_assets_tests.sql.rawlake import DAYS, build_raw_lake


def range_tags(start: str, end: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory):
    """(warehouse, materialize result) after running all SQL models over DAYS in one run."""
    from sc_assets.assets.sql import sql_model_assets

    root = Path(tmp_path_factory.mktemp("sqllake"))
    wh = Warehouse(data_dir=str(root))
    build_raw_lake(wh)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize(sql_model_assets, resources={"warehouse": wh}, tags=range_tags(DAYS[0], DAYS[-1]))
    return wh, res
