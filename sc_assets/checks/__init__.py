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
import pyarrow as pa

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
    df: pd.DataFrame | pa.Table,
    days: Sequence[str] | None = None,
) -> dg.AssetCheckResult:
    """Validate ``df`` (pandas or Arrow) with the GX suite (default: the asset key as ``layer.name``) once and
    return an ERROR-severity :class:`dagster.AssetCheckResult` for :func:`gx_check_spec`."""
    check = GxChunkedCheck(asset_key, suite_name)
    check.add(df, days=days)
    return check.result()


class GxChunkedCheck:
    """One GX check over a backfill processed in chunks: :meth:`add` validates one chunk (the
    frame can be released right after), :meth:`result` combines the chunks into ONE
    ERROR-severity :class:`dagster.AssetCheckResult` for :func:`gx_check_spec`.

    Passed = every chunk passed. Metadata: totals (rows, chunks, seconds), and per failing
    expectation (type, columns) the summed unexpected count, the examples of its first failing
    chunk and the date ranges of the first failing chunks. Memory: only the failures are kept.

    Rules that span chunks (a unique key without ``trade_date``) are NOT seen by a per-chunk
    suite; chunks of a partitioned table are disjoint in ``trade_date``, so keys that contain it
    are checked exactly (the SQL runner checks its ``unique_key`` across chunks separately).
    """

    MAX_CHUNKS_LISTED = 5

    def __init__(self, asset_key: dg.AssetKey | Sequence[str] | str, suite_name: str | None = None):
        self.key = _key(asset_key)
        self.suite = suite_name or default_suite_name(self.key)
        self.rows = 0
        self.chunks = 0
        self.evaluated = 0
        self.seconds = 0.0
        self.failed: dict[tuple[str, tuple[str, ...]], dict] = {}
        self.failing_chunks: list[str] = []
        self.n_failing_chunks = 0

    def add(self, df: pd.DataFrame | pa.Table, days: Sequence[str] | None = None) -> bool:
        """Validate one chunk, pandas or Arrow (``days``: its partition keys, for the calendar
        rule). Returns passed."""
        from sc_assets.checks.gx_suites import validate

        ok, meta = validate(self.suite, df, days=days)
        self.suite = meta["suite"]
        self.rows += int(meta["rows"])
        self.chunks += 1
        self.evaluated = max(self.evaluated, int(meta["evaluated"]))
        self.seconds += float(meta["seconds"])
        if not ok:
            self.n_failing_chunks += 1
            span = _span(df, days) or f"chunk {self.chunks}"
            if len(self.failing_chunks) < self.MAX_CHUNKS_LISTED:
                self.failing_chunks.append(span)
            for f in meta["failed"]:
                k = (f["expectation"], tuple(map(str, f.get("columns", []))))
                if k not in self.failed:
                    self.failed[k] = dict(f, chunks=[])
                else:
                    prev = self.failed[k].get("unexpected_count")
                    n = f.get("unexpected_count")
                    self.failed[k]["unexpected_count"] = (prev or 0) + (n or 0) if (prev, n) != (None, None) else None
                listed = self.failed[k]["chunks"]
                if len(listed) < self.MAX_CHUNKS_LISTED:
                    listed.append(span)
        return bool(ok)

    @property
    def passed(self) -> bool:
        return not self.failed

    def result(self) -> dg.AssetCheckResult:
        from sc_assets.checks.gx_suites import PARAMS

        failed = list(self.failed.values())
        md = "All expectations passed." if not failed else pd.DataFrame(
            [{"expectation": f["expectation"], "columns": ", ".join(map(str, f.get("columns", []))),
              "unexpected": f.get("unexpected_count"), "examples": str(f.get("examples", ""))[:120],
              "first failing chunks": ", ".join(f["chunks"][:2])} for f in failed]
        ).to_markdown(index=False)
        return dg.AssetCheckResult(
            asset_key=self.key,
            check_name=GX_CHECK_NAME,
            passed=self.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "suite": self.suite,
                "rows_validated": self.rows,
                "chunks_validated": self.chunks,
                "chunks_failed": self.n_failing_chunks,
                "failing_chunks": dg.MetadataValue.json(self.failing_chunks),
                "expectations_evaluated": self.evaluated,
                "expectations_failed": len(failed),
                "gx_seconds": round(self.seconds, 3),
                "failures": dg.MetadataValue.md(md),
                "failed_expectations": dg.MetadataValue.json(failed),
                "parameters": dg.MetadataValue.json(
                    {k: getattr(PARAMS, k) for k in PARAMS.__dataclass_fields__}),
            },
        )


def _span(df: pd.DataFrame | pa.Table, days: Sequence[str] | None) -> str | None:
    """'first .. last' day of a chunk (its partition keys, else its trade_date values)."""
    if days:
        return f"{min(days)} .. {max(days)}"
    names = df.column_names if isinstance(df, pa.Table) else df.columns
    if "trade_date" in names and len(df):
        d = pd.to_datetime(df.column("trade_date").to_pandas() if isinstance(df, pa.Table) else df["trade_date"])
        return f"{d.min():%Y-%m-%d} .. {d.max():%Y-%m-%d}"
    return None


__all__ = ["GX_CHECK_NAME", "GxChunkedCheck", "default_suite_name", "gx_check_result", "gx_check_spec"]
