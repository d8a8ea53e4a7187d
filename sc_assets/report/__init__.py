"""The crash report: PNG figures like the study's, an HTML page and a Markdown summary.

Pure pandas/matplotlib (Agg backend), no Dagster import: :func:`build_report` takes a table
loader ``(layer, name) -> DataFrame | None`` and an output folder, and returns the rendered
sections. Every section degrades to a note when its input table is missing or lacks the
columns it needs, so a partial chain still yields a report.
"""

from sc_assets.report.build import ReportParams, ReportResult, Section, build_report

__all__ = ["ReportParams", "ReportResult", "Section", "build_report"]
