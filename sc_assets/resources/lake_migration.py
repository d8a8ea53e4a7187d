"""``sc-assets migrate-lake``: move a lake written before month files into month files.

Before issue 11 a partitioned table kept ``<table>/trade_date=YYYY-MM-DD/part.parquet`` per day;
now it keeps ``<table>/YYYY-MM.parquet`` per month (``warehouse.py``). The warehouse refuses to
read or write a table that still has day folders (:class:`~sc_assets.resources.warehouse.LegacyLayoutError`,
naming this command) rather than show it with days missing or write a month file beside them.
:meth:`~sc_assets.resources.warehouse.Warehouse.migrate_day_folders` does the move, on disk or
on object storage; it can be rerun after an interruption.
"""

from __future__ import annotations

import click

from sc_assets.resources.warehouse import Warehouse


@click.command("migrate-lake")
@click.option("--data-dir", default="", help="Data root (default: $SC_ASSETS_DATA_DIR or ./data).")
def migrate_lake(data_dir: str) -> None:
    """Move a lake's per-day partition folders (layout before month files) into month files."""
    warehouse = Warehouse(data_dir=data_dir)
    moved = warehouse.migrate_day_folders()
    if not moved:
        click.echo(f"{warehouse.lake}: no per-day partition folders, nothing to move")
        return
    for table, n in moved.items():
        click.echo(f"{table}: {n} partition(s) moved into month files")
    warehouse.refresh_catalog()
    click.echo(f"catalog views refreshed in {warehouse.catalog_path}")
