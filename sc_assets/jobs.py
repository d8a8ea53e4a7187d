"""Asset jobs of the code location (DESIGN.md §8).

``daily_update``
    Every asset of the chain for ONE trading day: the partitioned (daily) assets for the
    requested partition key, then, in dependency order, the cross-day (unpartitioned) assets
    that read a window of the lake (drawdown tables, crowding tables, stress, the report).
    The schedule and the landing sensor launch it. On the ``local`` profile it runs every step
    in the run's own process (``in_process_executor``): one day's steps take milliseconds to
    seconds, while the default multiprocess executor starts a Python process per step (imports
    of Dagster, pandas and Great Expectations: several seconds each, ~54 steps), which made a
    scheduled update minutes long. Steps are idempotent, so a crashed run is simply rerun. On
    ``cluster`` the Celery executor of the Definitions applies (issue 11).

``full_backfill``
    The same chain over a RANGE of trading days in one run. Every partitioned asset has
    ``BackfillPolicy.single_run()``, so each step receives all keys of the range at once
    (``context.partition_keys``) and processes them in one vectorised pass. Launch it with the
    tags ``dagster/asset_partition_range_start`` / ``..._end`` (``sc-assets demo`` does), or —
    the usual way in the UI — select assets in the asset graph and "Materialize" a partition
    range: the graph honours the single-run policy; a backfill launched from a job page does
    not (STYLE.md P9).

Both select every asset of every group (raw, staging, marts, factors, drawdowns, crowding,
stress, report) and their asset checks; they differ in intent and tags, not in selection.
"""

from __future__ import annotations

import dagster as dg

from sc_assets.deploy.profiles import profile

#: Layers in dependency order; each is an asset group (``group_name = layer``).
LAYERS = ("raw", "staging", "marts", "factors", "drawdowns", "crowding", "stress", "report")

#: Every asset of the chain. ``AssetSelection.groups(*LAYERS)`` would silently drop an asset
#: put in a new group; ``all()`` cannot, and test_definitions checks every group is a layer.
CHAIN = dg.AssetSelection.all()

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

daily_update = dg.define_asset_job(
    "daily_update",
    selection=CHAIN,
    description=(
        "All daily assets for one trading day (raw -> staging -> marts -> factors/crowding), then the "
        "cross-day assets that read a window of the lake (drawdowns, stress, crash_report). Launched by "
        "the 18:30 Asia/Shanghai schedule and by the landing-folder sensor."
    ),
    tags={"sc_assets/job": "daily_update"},
    executor_def=dg.in_process_executor if profile() == "local" else None,
)

full_backfill = dg.define_asset_job(
    "full_backfill",
    selection=CHAIN,
    description=(
        "The whole chain over a range of trading days in ONE run (single-run backfill policy on every "
        "partitioned asset). Launch with tags dagster/asset_partition_range_start/_end, or from the "
        "asset graph with a partition range (backfills from a job page ignore the policy)."
    ),
    tags={"sc_assets/job": "full_backfill"},
)


def range_tags(start: str, end: str) -> dict[str, str]:
    """Run tags that make one run cover the partition keys ``start..end`` (inclusive)."""
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}


JOBS = [daily_update, full_backfill]

__all__ = ["CHAIN", "JOBS", "LAYERS", "daily_update", "full_backfill", "range_tags"]
