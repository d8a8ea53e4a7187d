"""Where sc_assets keeps its data.

The data root is ``SC_ASSETS_DATA_DIR`` (default ``./data`` relative to the working
directory). Everything the project writes or reads from outside lives under it:

    <root>/landing/<feed>/<YYYYMMDD>.<csv|csv.gz|parquet>   files dropped by vendors / the simulator
    <root>/lake/<layer>/<asset>/YYYY-MM.parquet                one file per month of trading-day partitions
    <root>/lake/quarantine/<feed>/YYYY-MM.parquet
    <root>/warehouse.duckdb                                  catalog of views over the lake
    <root>/reports/                                          crash report (HTML, PNG, Markdown)
    <root>/ground_truth/                                     simulator truth (tests only)
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "SC_ASSETS_DATA_DIR"


class UnsafePathError(ValueError):
    """A path read from outside (file name, config) points outside the data root."""


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The resolved data root: ``explicit``, else ``$SC_ASSETS_DATA_DIR``, else ``./data``."""
    value = explicit or os.environ.get(DATA_DIR_ENV) or "data"
    return Path(value).expanduser().resolve()


def inside_root(root: Path, path: str | os.PathLike) -> Path:
    """Resolve ``path`` (relative to ``root`` if relative) and require it to stay inside ``root``.

    Symlinks are resolved first, so a link that points out of the data root is refused too.
    """
    root = Path(root).resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafePathError(f"path {str(path)!r} resolves to {resolved}, outside the data root {root}")
    return resolved
