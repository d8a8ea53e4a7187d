"""The report layer: ``crash_report`` (HTML + PNG figures + a Markdown summary in the UI)."""

# no `from __future__ import annotations`: Dagster resolves the Config annotation at decoration time

import importlib
from collections.abc import Iterable

import dagster as dg
import pandas as pd

from sc_assets.assets._metadata import table_metadata
from sc_assets.report import ReportParams, build_report
from sc_assets.report.build import SECTIONS, params_dict, partitions_needed
from sc_assets.resources import Warehouse

#: Analytics layers the report reads (every asset in them becomes an upstream dependency).
ANALYTICS_LAYERS = ("factors", "drawdowns", "crowding", "stress")
#: Marts the report reads directly (common.md marts contract).
MARTS_READ = ("index_daily_panel", "futures_basis_panel", "etf_flow_panel")
#: Modules of sc_assets.assets whose assets may feed the report; missing modules are skipped.
UPSTREAM_MODULES = ("factors", "drawdowns", "crowding", "stress", "sql")


def _asset_keys(objs: Iterable[object]) -> set[dg.AssetKey]:
    keys: set[dg.AssetKey] = set()
    for obj in objs:
        if isinstance(obj, dg.AssetsDefinition):
            keys |= set(obj.keys)
        elif type(obj) in (list, tuple):  # not NamedTuple/@record subclasses
            keys |= _asset_keys(obj)
        elif type(obj) is dict:
            keys |= _asset_keys(obj.values())
    return keys


def upstream_keys() -> list[dg.AssetKey]:
    """The analytics tables and the marts the report reads, as defined by the other asset modules.

    Discovered from the modules (not hard-coded) so the lineage shows exactly the tables that
    exist; a section whose table is not defined degrades to a note in the report.
    """
    keys: set[dg.AssetKey] = set()
    for name in UPSTREAM_MODULES:
        try:
            mod = importlib.import_module(f"sc_assets.assets.{name}")
        except ImportError:
            continue
        keys |= _asset_keys(vars(mod).values())
    wanted = {k for k in keys if len(k.path) == 2 and k.path[0] in ANALYTICS_LAYERS}
    wanted |= {k for k in keys if k.path[:1] == ["marts"] and k.path[-1] in MARTS_READ}
    return sorted(wanted, key=lambda k: k.to_user_string())


class CrashReportConfig(dg.Config):
    """Overrides of :class:`sc_assets.report.ReportParams` (dates YYYY-MM-DD)."""

    small_index: str = ReportParams.small_index
    large_index: str = ReportParams.large_index
    window_start: str = ReportParams.window_start
    window_end: str = ReportParams.window_end
    basis_threshold: float = ReportParams.basis_threshold
    history_start: str | None = ReportParams.history_start


@dg.asset(
    key=["report", "crash_report"],
    group_name="report",
    deps=upstream_keys(),
    kinds={"html", "matplotlib"},
    code_version="1",
    owners=["team:sc-assets"],
    tags={"layer": "report"},
)
def crash_report(
    context: dg.AssetExecutionContext, config: CrashReportConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """HTML report with PNG figures like the study's (relative NAV, drawdown vs cap, neutral index, Table 1, correlations, Table 2, basis, ETF flows + NLSIZE, stress), written to <data_root>/reports/.

    Reads each analytics table whole, except crowding.crowding_table (only the Table-2 day: the
    last partition on or before ``window_start``), and the index/futures/ETF panels and
    factors.factor_returns from ``history_start`` on (default 2023-07-01). Each section that
    lacks its input table becomes a note instead of a figure. A Markdown summary is attached
    as metadata.
    """
    params = ReportParams(
        small_index=config.small_index, large_index=config.large_index,
        window_start=config.window_start, window_end=config.window_end,
        basis_threshold=config.basis_threshold, history_start=config.history_start,
    )

    def load(layer: str, name: str) -> pd.DataFrame | None:
        if not warehouse.exists(layer, name):
            return None
        days = warehouse.partitions(layer, name)
        try:
            if not days:  # an unpartitioned table: its one file
                return warehouse.read(layer, name)
            need = partitions_needed(layer, name, days, params)
            if need == []:
                return None
            start, end = (need[0], need[-1]) if need else (None, None)
            return warehouse.query(layer, name, "SELECT * FROM files", start=start, end=end,
                                   arrow=True).to_pandas()
        except FileNotFoundError:
            return None

    out_dir = warehouse.root / "reports"
    result = build_report(load, out_dir, params)
    sections = pd.DataFrame({
        "section": [s.title for s in result.sections],
        "status": ["ok" if s.ok else "missing input" for s in result.sections],
        "figure": [s.figure or "" for s in result.sections],
        "note": [s.note or "" for s in result.sections],
    })
    for s in result.sections:
        if s.note:
            context.log.warning(f"report section {s.key!r}: {s.note}")
    meta = table_metadata(sections, date_column=None, preview=sections[["section", "status", "figure"]])
    meta.update({
        "report_path": dg.MetadataValue.path(str(result.html_path)),
        "report_url": dg.MetadataValue.url(result.html_path.resolve().as_uri()),
        "summary_path": dg.MetadataValue.path(str(result.markdown_path)),
        "summary": dg.MetadataValue.md(result.markdown),
        "sections_complete": f"{result.summary['complete']} / {len(result.sections)}",
        "figures": dg.MetadataValue.json(result.summary["figures"]),
        "parameters": dg.MetadataValue.json(params_dict(params)),
    })
    return dg.MaterializeResult(metadata=meta)


__all__ = ["SECTIONS", "CrashReportConfig", "crash_report", "upstream_keys"]
