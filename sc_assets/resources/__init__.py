"""Dagster resources: the warehouse (Parquet lake + DuckDB catalog) and the landing-folder feed source."""

from sc_assets.resources.feed_source import LandingFeedSource
from sc_assets.resources.warehouse import Warehouse

__all__ = ["LandingFeedSource", "Warehouse"]
