"""The single Definitions object of the sc_assets code location (workspace.yaml).

Assets and asset checks are loaded from every module of ``sc_assets.assets``; jobs,
the after-close schedule and the landing sensor come from ``jobs``/``schedules``/``sensors``.
The marts panels carry a freshness policy (shown in the UI's asset health / freshness).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from sc_assets import assets
from sc_assets.deploy.profiles import apply_dagster_env_defaults, default_executor
from sc_assets.jobs import JOBS
from sc_assets.resources import LandingFeedSource, Warehouse
from sc_assets.schedules import SCHEDULES
from sc_assets.sensors import SENSORS

apply_dagster_env_defaults()  # batched event writes in run workers (read per event, not at start-up)

#: The panels every analytics layer reads (common.md "Marts contract").
PANELS = (
    "stock_daily_panel",
    "index_daily_panel",
    "futures_basis_panel",
    "etf_flow_panel",
    "fund_nav_panel",
)

#: Panels are updated after each close on trading days (18:30 Shanghai). A Friday update must
#: still count as fresh on Monday evening: fail after 3 days 6 hours without a materialization,
#: warn after 30 hours. Exchange holidays longer than a weekend (Spring Festival, National Day)
#: show as stale until the first session after them — the data is then really that old.
PANEL_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(days=3, hours=6), warn_window=timedelta(hours=30)
)


def _with_panel_freshness(spec: dg.AssetSpec) -> dg.AssetSpec:
    if len(spec.key.path) == 2 and spec.key.path[0] == "marts" and spec.key.path[1] in PANELS:
        return dg.apply_freshness_policy(spec, PANEL_FRESHNESS)
    return spec


defs = dg.Definitions(
    assets=dg.map_asset_specs(_with_panel_freshness, dg.load_assets_from_package_module(assets)),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={"warehouse": Warehouse(), "feed_source": LandingFeedSource()},
    # SC_ASSETS_PROFILE=cluster: the Celery executor (sc_assets/deploy/profiles.py); local: Dagster's default
    executor=default_executor(),
)
