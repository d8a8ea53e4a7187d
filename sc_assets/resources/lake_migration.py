"""Move a lake written before issue 11 (one folder per trading day) into month files.

Before issue 11 a partitioned table kept ``<table>/trade_date=YYYY-MM-DD/part.parquet`` per day;
now it keeps ``<table>/YYYY-MM.parquet`` per month (``warehouse.py``). The warehouse refuses a
table that still has day folders (:class:`LegacyLayoutError`, naming this command) rather than
show it with days missing. ``sc-assets migrate-lake`` moves each month's day files into its month
file, atomically, before it removes those folders: a run killed half-way leaves every day either
in its old folder or in its month file (or both), and running it again finishes the move.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.parquet as pq

from sc_assets.resources.warehouse import LEGACY_DAY_PREFIX, PART_FILE, Warehouse


def _day_folders(table_dir: Path) -> dict[str, str]:
    """{YYYY-MM-DD: folder} of a table's per-day partition folders."""
    with os.scandir(table_dir) as entries:
        return {e.name[len(LEGACY_DAY_PREFIX):]: e.path for e in entries
                if e.is_dir() and e.name.startswith(LEGACY_DAY_PREFIX)}


def migrate_day_folders(warehouse: Warehouse) -> dict[str, int]:
    """Move every local table's day folders into month files; returns partitions moved per table
    (``layer.asset``). A folder without its ``part.parquet`` (a killed writer's) is removed."""
    if warehouse.lake_store is not None:
        raise click.UsageError("migrate-lake moves a local lake; copy an object-storage lake down first")
    moved: dict[str, int] = {}
    lake = warehouse.lake
    if not lake.exists():
        return moved
    for layer_dir in sorted(p for p in lake.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for table_dir in sorted(p for p in layer_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            folders = _day_folders(table_dir)
            if not folders:
                continue
            months: dict[str, list[str]] = {}
            for day in sorted(folders):
                months.setdefault(day[:7], []).append(day)
            for days in months.values():
                present = [d for d in days if os.path.isfile(os.path.join(folders[d], PART_FILE))]
                if present:
                    tables = [pq.read_table(os.path.join(folders[d], PART_FILE)) for d in present]
                    table = pa.concat_tables(tables, promote_options="permissive")
                    warehouse.write_partitions(layer_dir.name, table_dir.name, table, present)
                for day in days:  # only after the month file holds them
                    shutil.rmtree(folders[day], ignore_errors=True)
                moved[f"{layer_dir.name}.{table_dir.name}"] = moved.get(f"{layer_dir.name}.{table_dir.name}", 0) + len(present)
    return moved


@click.command("migrate-lake")
@click.option("--data-dir", default="", help="Data root (default: $SC_ASSETS_DATA_DIR or ./data).")
def migrate_lake(data_dir: str) -> None:
    """Move a lake's per-day partition folders (layout before issue 11) into month files."""
    warehouse = Warehouse(data_dir=data_dir)
    moved = migrate_day_folders(warehouse)
    if not moved:
        click.echo(f"{warehouse.lake}: no per-day partition folders, nothing to move")
        return
    for table, n in moved.items():
        click.echo(f"{table}: {n} partition(s) moved into month files")
    warehouse.refresh_catalog()
    click.echo(f"catalog views refreshed in {warehouse.catalog_path}")
