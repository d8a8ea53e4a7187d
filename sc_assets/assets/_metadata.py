"""Materialization metadata every asset attaches: rows, date range, schema, Markdown preview.

A single-run backfill over N partitions records N materialization events, and Dagster copies
the metadata of the returned ``MaterializeResult`` into EVERY one of them (2,431 copies of the
schema, preview and column lineage for a 10-year backfill; issue 11). :func:`range_metadata`
keeps the copied part small: the heavy entries (schema, preview, lineage, other Markdown) go
to the event of the run's LAST partition only (the latest materialization, the one the UI
shows for the asset), the light ones (rows, date range, parameters, timings) to every event::

    meta = table_metadata(df, parameters=...)
    return dg.MaterializeResult(metadata=range_metadata(context, meta))
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa

PREVIEW_ROWS = 10

#: Entries :func:`range_metadata` attaches to the last partition only (besides Markdown, table
#: schema and column lineage values, whatever their key).
HEAVY_KEYS = frozenset({"dagster/column_schema", "dagster/column_lineage", "preview"})


def column_schema(df: pd.DataFrame | pa.Schema, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    """Column names, types (pandas dtypes, or Arrow types of a ``pyarrow.Schema``) and descriptions."""
    descriptions = descriptions or {}
    types = zip(df.names, df.types, strict=True) if isinstance(df, pa.Schema) else df.dtypes.items()
    return dg.TableSchema(
        columns=[dg.TableColumn(str(c), str(t), description=descriptions.get(str(c))) for c, t in types]
    )


def markdown_preview(df: pd.DataFrame, n: int = PREVIEW_ROWS, floatfmt: str = ".4g") -> str:
    """A Markdown table of the first ``n`` rows (numbers rounded for reading)."""
    if df.empty:
        return "_(no rows)_"
    return df.head(n).to_markdown(index=False, floatfmt=floatfmt)


def table_metadata(
    df: pd.DataFrame,
    date_column: str | None = "trade_date",
    descriptions: Mapping[str, str] | None = None,
    preview: pd.DataFrame | None = None,
    *,
    rows: int | None = None,
    dates: tuple[Any, Any] | None = None,
    schema: pa.Schema | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Row count, date range, column schema and a Markdown preview, plus ``extra`` entries.

    ``preview`` replaces the default ``df.head()`` (e.g. a summary table is more useful).
    A table processed in chunks passes one chunk as ``df`` and its totals: ``rows``, ``dates``
    (first, last) and the Arrow ``schema`` override what ``df`` would give.
    ``extra`` values that are dicts/lists become JSON metadata.
    """
    meta: dict[str, Any] = {
        "dagster/row_count": int(len(df) if rows is None else rows),
        "dagster/column_schema": column_schema(df if schema is None else schema, descriptions),
        "preview": dg.MetadataValue.md(markdown_preview(df if preview is None else preview)),
    }
    if dates is not None:
        if dates[0] is not None:
            meta["date_range"] = f"{pd.Timestamp(dates[0]):%Y-%m-%d} .. {pd.Timestamp(dates[1]):%Y-%m-%d}"
    elif date_column and date_column in df.columns and len(df):
        d = pd.to_datetime(df[date_column])
        meta["date_range"] = f"{d.min():%Y-%m-%d} .. {d.max():%Y-%m-%d}"
    for key, value in extra.items():
        meta[key] = dg.MetadataValue.json(value) if isinstance(value, dict | list) else value
    return meta


def _heavy(key: str, value: Any) -> bool:
    return key in HEAVY_KEYS or isinstance(
        value, dg.MarkdownMetadataValue | dg.TableSchemaMetadataValue | dg.TableColumnLineage
        | dg.TableSchema | dg.TableMetadataValue)


def range_metadata(
    context: dg.AssetExecutionContext,
    meta: Mapping[str, Any],
    asset_key: dg.AssetKey | None = None,
    *,
    once: Collection[str] = (),
    json_once: bool = False,
) -> dict[str, Any]:
    """Metadata for ``MaterializeResult(metadata=...)`` that stays small per partition event.

    For a run of one partition (the daily update) or an unpartitioned asset, returns ``meta``
    unchanged. For a run over several partitions, attaches the heavy entries (schema, preview,
    column lineage, Markdown; see :data:`HEAVY_KEYS`) to the event of the LAST partition key
    only (``context.add_asset_metadata``) and returns the rest plus ``partitions`` (the number
    of partitions of the run), which Dagster copies to every partition's event.
    ``asset_key``: required in a multi-asset (which asset ``meta`` belongs to). ``once``: further
    keys (run-level lists) and, with ``json_once``, every JSON entry (parameters, counts by reason)
    that also go to the last partition's event only.
    """
    key = asset_key or context.assets_def.key
    partitioned = context.assets_def.specs_by_key[key].partitions_def is not None
    keys = list(context.partition_keys) if partitioned else []
    if len(keys) <= 1:
        return dict(meta)
    heavy = {k: v for k, v in meta.items()
             if _heavy(k, v) or k in once or (json_once and isinstance(v, dg.JsonMetadataValue))}
    light = {k: v for k, v in meta.items() if k not in heavy}
    light["partitions"] = len(keys)
    if heavy:
        context.add_asset_metadata(heavy, asset_key=key, partition_key=keys[-1])
    return light
