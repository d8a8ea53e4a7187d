"""Keys of the staging/marts tables that the Python asset layers read (defined by dbt_like_sql/)."""

import dagster as dg

STOCK_PANEL = dg.AssetKey(["marts", "stock_daily_panel"])
INDEX_PANEL = dg.AssetKey(["marts", "index_daily_panel"])
FUTURES_BASIS = dg.AssetKey(["marts", "futures_basis_panel"])
FUND_NAV = dg.AssetKey(["marts", "fund_nav_panel"])
INDEX_WEIGHT = dg.AssetKey(["staging", "stg_index_weight"])
