"""Vendor feed formats -> the canonical raw schema (Tushare Pro names and units).

* ``schemas.py``   the feed registry (columns, dtypes, units, keys)
* ``aliases.py``   the ONE alias registry for vendor (Chinese) headers and their unit factors
* ``codes.py``     security-code normalisation (600000 / SH600000 / 600000.XSHG -> 600000.SH, ...)
* ``dates.py``     date-cell parsing (YYYYMMDD, YYYY-MM-DD, datetimes)
* ``readers.py``   one landing file (CSV, CSV.gz, Parquet; UTF-8, BOM, GBK) -> canonical Arrow table
* ``validation.py`` row-level checks that send bad rows to quarantine
"""

from sc_assets.feeds.codes import normalise_code, normalise_codes
from sc_assets.feeds.errors import LandingFileError
from sc_assets.feeds.readers import canonical_schema, read_landing_file
from sc_assets.feeds.schemas import DAILY_FEEDS, FEEDS, REFERENCE_FEEDS

__all__ = [
    "DAILY_FEEDS",
    "FEEDS",
    "REFERENCE_FEEDS",
    "LandingFileError",
    "canonical_schema",
    "normalise_code",
    "normalise_codes",
    "read_landing_file",
]
