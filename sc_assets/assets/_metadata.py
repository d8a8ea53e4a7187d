"""Materialization metadata every asset attaches: rows, date range, schema, Markdown preview."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

PREVIEW_ROWS = 10


def column_schema(df: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[dg.TableColumn(str(c), str(t), description=descriptions.get(str(c))) for c, t in df.dtypes.items()]
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
    **extra: Any,
) -> dict[str, Any]:
    """Row count, date range, column schema and a Markdown preview, plus ``extra`` entries.

    ``preview`` replaces the default ``df.head()`` (e.g. a summary table is more useful).
    ``extra`` values that are dicts/lists become JSON metadata.
    """
    meta: dict[str, Any] = {
        "dagster/row_count": int(len(df)),
        "dagster/column_schema": column_schema(df, descriptions),
        "preview": dg.MetadataValue.md(markdown_preview(df if preview is None else preview)),
    }
    if date_column and date_column in df.columns and len(df):
        dates = pd.to_datetime(df[date_column])
        meta["date_range"] = f"{dates.min():%Y-%m-%d} .. {dates.max():%Y-%m-%d}"
    for key, value in extra.items():
        meta[key] = dg.MetadataValue.json(value) if isinstance(value, dict | list) else value
    return meta
