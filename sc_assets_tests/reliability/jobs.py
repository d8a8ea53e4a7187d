"""A reconstructable job for the multiprocess-executor test (subprocesses rebuild it by import).

Data root: ``$SC_ASSETS_DATA_DIR`` (the resources' default), set by the test before launching.
"""

from __future__ import annotations

import dagster as dg

from sc_assets.resources import LandingFeedSource, Warehouse
from sc_assets_tests.reliability.conftest import CHUNK_DAYS
from sc_assets_tests.reliability.conftest import crash_selection as concurrency_selection
from sc_assets_tests.reliability.lake import all_assets


def multiprocess_job() -> dg.JobDefinition:
    job = dg.define_asset_job("reliability_multiprocess", selection=concurrency_selection(),
                              executor_def=dg.multiprocess_executor.configured({"max_concurrent": 2}))
    defs = dg.Definitions(assets=all_assets(), jobs=[job],
                          resources={"warehouse": Warehouse(), "feed_source": LandingFeedSource(chunk_days=CHUNK_DAYS)})
    return defs.resolve_job_def("reliability_multiprocess")
