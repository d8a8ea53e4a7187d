"""Private-fund NAVs from the user's own vendor file -> ``landing/fund_nav/<YYYYMMDD>.csv``.

Neither Tushare nor AkShare carries private (私募) quant products, so users bring one CSV
(UTF-8, or UTF-8 with BOM, or GBK), one row per fund per NAV date, with these columns
(see ``examples/fund_nav_example.csv`` and docs/REAL_DATA.md):

| column | meaning |
|---|---|
| fund_id | product id (any stable string, e.g. the AMAC filing code SXX123) |
| name | product name |
| strategy | ``index_enhancement``, ``market_neutral`` or another lower-case token (e.g. ``cta``) |
| benchmark | tracked index code for index-enhancement products (``000905.SH``); empty otherwise |
| manager | manager name |
| manager_aum_bucket | ``>=10bn``, ``5-10bn`` or ``<5bn`` (CNY) |
| nav_date | NAV date, a trading day (normally the week's last), YYYY-MM-DD or YYYYMMDD |
| adj_nav | adjusted NAV (dividends reinvested), > 0 |
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sc_assets import partitions
from sc_assets.feeds.schemas import FEEDS
from sc_assets.pull.core import FundNavFormatError, LandingWriter, normalize_code, to_ts

COLUMNS = FEEDS["fund_nav"].column_names
AUM_BUCKETS = (">=10bn", "5-10bn", "<5bn")
_STRATEGY = re.compile(r"^[a-z][a-z0-9_]*$")


def read_fund_nav_csv(path: str | Path) -> pd.DataFrame:
    """Read and validate a fund NAV CSV; errors name the file, the line and the column."""
    path = Path(path)
    raw = None
    for enc in ("utf-8-sig", "gbk"):
        try:
            raw = pd.read_csv(path, dtype="str", encoding=enc, keep_default_na=False)
            break
        except UnicodeDecodeError:
            continue
    if raw is None:
        raise FundNavFormatError(f"{path}: not UTF-8 or GBK text")
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise FundNavFormatError(f"{path}: missing column(s) {missing}; expected {COLUMNS}")
    df = raw[COLUMNS].apply(lambda s: s.str.strip())
    problems: list[str] = []

    def bad(mask: pd.Series, column: str, why: str) -> None:
        for i in df.index[mask.to_numpy()][:5]:
            problems.append(f"{path}: line {i + 2}, column {column!r}: {why} (value {df.at[i, column]!r})")

    for c in ("fund_id", "name", "strategy", "manager", "manager_aum_bucket", "nav_date", "adj_nav"):
        bad(df[c] == "", c, "empty")
    bad((df["strategy"] != "") & ~df["strategy"].str.match(_STRATEGY), "strategy",
        "expected a lower-case token such as index_enhancement or market_neutral")
    bad((df["manager_aum_bucket"] != "") & ~df["manager_aum_bucket"].isin(AUM_BUCKETS), "manager_aum_bucket",
        f"expected one of {list(AUM_BUCKETS)}")
    nav = pd.to_numeric(df["adj_nav"], errors="coerce")
    bad((df["adj_nav"] != "") & ~(nav > 0), "adj_nav", "expected a number > 0")
    dates = to_ts(df["nav_date"].where(df["nav_date"] != ""))
    bad((df["nav_date"] != "") & dates.isna(), "nav_date", "not a date (YYYY-MM-DD or YYYYMMDD)")
    ok = dates.notna()
    if ok.any():
        sessions = partitions.sessions()
        in_range = (dates >= sessions[0]) & (dates <= sessions[-1])
        bad(ok & ~in_range, "nav_date", "outside the SSE calendar")
        bad(ok & in_range & ~dates.isin(sessions), "nav_date", "not an SSE trading day")
    bench = []
    for i, v in df["benchmark"].items():
        if v == "":
            bench.append(None)
            continue
        try:
            bench.append(normalize_code(v))
        except ValueError:
            bench.append(None)
            problems.append(f"{path}: line {i + 2}, column 'benchmark': not an index code (value {v!r})")
    dup = df.assign(d=dates).duplicated(["fund_id", "d"], keep=False) & ok
    bad(dup, "nav_date", "duplicate (fund_id, nav_date)")
    if problems:
        raise FundNavFormatError("fund NAV CSV rejected:\n  " + "\n  ".join(problems))
    return df.assign(nav_date=dates, adj_nav=nav, benchmark=bench)


def land_fund_nav(path: str | Path, root: Path, start=None, end=None) -> dict[str, int]:
    """Validate ``path`` and split it into ``<root>/landing/fund_nav/<YYYYMMDD>.csv`` (one per NAV date)."""
    df = read_fund_nav_csv(path)
    days = sorted(df["nav_date"].unique())
    if start is not None:
        days = [d for d in days if d >= pd.Timestamp(start)]
    if end is not None:
        days = [d for d in days if d <= pd.Timestamp(end)]
    counts = LandingWriter(Path(root)).write_days("fund_nav", df, [pd.Timestamp(d) for d in days])
    counts["funds"] = int(df["fund_id"].nunique())
    return counts
