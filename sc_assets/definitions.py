"""The single Definitions object of the sc_assets code location (workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from sc_assets import assets
from sc_assets.resources import Warehouse

defs = dg.Definitions(
    assets=dg.load_assets_from_package_module(assets),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    resources={"warehouse": Warehouse()},
)
