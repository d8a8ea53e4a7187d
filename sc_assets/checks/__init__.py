"""Data-quality checks for every layer: Great Expectations suites shown as Dagster asset checks.

Use inside a materialization (STYLE.md §4: checks on the frame just written, blocking ERROR)::

    from sc_assets.checks import gx_check_spec, gx_check_result

    @dg.asset(key=KEY, check_specs=[gx_check_spec(KEY)], ...)
    def my_asset(context, warehouse):
        ...
        return dg.MaterializeResult(metadata=..., check_results=[
            gx_check_result(KEY, "raw.stock_daily", df, days=context.partition_keys)])

Great Expectations is imported on the first validation, not when this package is imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import pandas as pd

GX_CHECK_NAME = "gx_suite_passes"


def _key(asset_key: dg.AssetKey | Sequence[str] | str) -> dg.AssetKey:
    if isinstance(asset_key, dg.AssetKey):
        return asset_key
    if isinstance(asset_key, str):
        return dg.AssetKey(asset_key.split("/") if "/" in asset_key else asset_key.split("."))
    return dg.AssetKey(list(asset_key))


def default_suite_name(asset_key: dg.AssetKey | Sequence[str] | str) -> str:
    """``["marts", "stock_daily_panel"]`` -> ``"marts.stock_daily_panel"``."""
    return ".".join(_key(asset_key).path)


def gx_check_spec(asset_key: dg.AssetKey | Sequence[str] | str, description: str | None = None) -> dg.AssetCheckSpec:
    """The blocking asset check under which the asset's GX suite result is reported."""
    key = _key(asset_key)
    if description is None:
        from sc_assets.checks.gx_suites import SUITES

        suite = SUITES.get(default_suite_name(key))
        description = "Great Expectations suite on the partitions just written" + (
            f": {suite.description}" if suite and suite.description else "")
    return dg.AssetCheckSpec(GX_CHECK_NAME, asset=key, blocking=True, description=description)


def gx_check_result(
    asset_key: dg.AssetKey | Sequence[str] | str,
    suite_name: str | None,
    df: pd.DataFrame,
    days: Sequence[str] | None = None,
) -> dg.AssetCheckResult:
    """Validate ``df`` with the GX suite (default: the asset key as ``layer.name``) once and
    return an ERROR-severity :class:`dagster.AssetCheckResult` for :func:`gx_check_spec`."""
    from sc_assets.checks.gx_suites import PARAMS, validate

    key = _key(asset_key)
    ok, meta = validate(suite_name or default_suite_name(key), df, days=days)
    failed = meta.get("failed", [])
    md = "All expectations passed." if not failed else pd.DataFrame(
        [{"expectation": f["expectation"], "columns": ", ".join(map(str, f.get("columns", []))),
          "unexpected": f.get("unexpected_count"), "examples": str(f.get("examples", ""))[:120]} for f in failed]
    ).to_markdown(index=False)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=GX_CHECK_NAME,
        passed=bool(ok),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "suite": meta["suite"],
            "rows_validated": meta["rows"],
            "expectations_evaluated": meta["evaluated"],
            "expectations_failed": len(failed),
            "gx_seconds": float(meta["seconds"]),
            "failures": dg.MetadataValue.md(md),
            "failed_expectations": dg.MetadataValue.json(failed),
            "parameters": dg.MetadataValue.json(
                {k: getattr(PARAMS, k) for k in PARAMS.__dataclass_fields__}),
        },
    )


__all__ = ["GX_CHECK_NAME", "default_suite_name", "gx_check_result", "gx_check_spec"]
