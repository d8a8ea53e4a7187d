"""Row-level validation of canonical raw rows: every bad row goes to quarantine with a reason.

Vectorised over all rows of a batch of files (pandas/numpy). Each row gets at most one
reason, the first that applies in this order (``REASONS``):

1. ``missing key <col>``                      a key column is null
2. ``invalid code <col>``                     a code that is not canonical after normalisation
3. ``missing required value <col>``           a non-nullable column is null
4. ``non-positive <col>``                     a ``spec.price_columns`` value <= 0
5. ``high < low``                             (feeds with high and low)
6. ``close outside [low, high]``              (feeds with close, high and low)
   ``negative <col>``                         a count/amount/cap that cannot be negative (vol,
                                              amount, oi, fd_share, share counts, caps, weight)
   ``vol and amount disagree``                stock_daily: one of vol/amount is zero and the other
                                              not (e.g. a suspended stock "with trades")
   ``amount inconsistent with vol x price``   stock_daily: amount/vol (the day's VWAP) lies far
                                              outside [low, high] (x1.5): a unit mix-up (CNY vs
                                              1,000 CNY, shares vs lots)
   ``total_share out of range``               daily_basic: > 1e8 (10,000 shares), i.e. reported in
                                              shares under the 10,000-share header
   ``total_mv/circ_mv inconsistent with ...`` daily_basic: cap / (close x shares) off by > x1.5
                                              (CNY vs 10,000 CNY, a 10,000x cap jump)
   ``contract past its expiry month``         fut_daily: trade month after the month in the
                                              CFFEX code (IC2312 traded in 2024-01)
   ``date in the future``                     after today (Asia/Shanghai)
7. ``date not a trading day``                 the row's date is not an SSE session
8. ``date is not the file's day``             partitioned feeds: the row's date must equal the
                                              file name's YYYYMMDD (fund_nav: nav_date likewise)
9. ``conflicting duplicate key``              rows of one file sharing a key but differing
                                              elsewhere: all of them are quarantined
   ``duplicate row``                          identical rows of one file: the first is kept,
                                              the rest are quarantined

Checks 1–8 run first; duplicate detection (9) looks only at rows that passed them.
Duplicates *across* files (e.g. ``20240122.csv`` and ``20240122.csv.gz``) are not errors: both
stay in raw with their ``source_*`` columns, and staging keeps the latest landed file (a
re-delivery supersedes). When their values differ the raw asset reports them in a WARN check
(:func:`conflicting_redeliveries`).

Findings that need more than one row or file (WARN checks of the raw assets, not quarantine):
:func:`conflicting_redeliveries`, :func:`missing_index_codes` (an index absent from a day's
index_daily file) and :func:`nav_gaps` (a fund without a NAV in a week between its first and
last NAV).

Invariant: ``len(accepted) + len(quarantined) == len(rows)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sc_assets.feeds.codes import VALID_PATTERNS, code_kind
from sc_assets.feeds.schemas import FeedSpec
from sc_assets.partitions import sessions, week_end_sessions

SOURCE_COLUMNS = ["source_file", "source_line", "source_mtime_ns"]
REASON_PREFIXES = (
    "missing key", "invalid code", "missing required value", "non-positive", "high < low",
    "close outside [low, high]", "negative ", "vol and amount disagree", "amount inconsistent with vol x price",
    "total_share out of range", "total_mv inconsistent", "circ_mv inconsistent", "contract past its expiry month",
    "date in the future", "date not a trading day", "date is not the file's day",
    "conflicting duplicate key", "duplicate row",
)


#: columns that are counts, amounts or caps: a negative value is a bad row
NON_NEGATIVE = ("vol", "amount", "oi", "fd_share", "total_share", "float_share", "free_share",
                "turnover_rate", "turnover_rate_f", "total_mv", "circ_mv", "weight")
#: stock_daily: amount/vol (VWAP) may lie this factor outside [low, high] before it is a unit mix-up
VWAP_SLACK = 1.5
#: daily_basic: market cap / (close x shares) may be off by this factor (unit mix-ups are 10,000x)
CAP_SLACK = 1.5
#: daily_basic: total_share in 10,000 shares above this (1e12 shares; ICBC has ~3.6e11) is a unit mix-up
MAX_TOTAL_SHARE_10K = 1e8


class _Reasons:
    """Reason per row (object array, None = accepted) plus which rows are still unflagged."""

    def __init__(self, n: int) -> None:
        self.text = np.full(n, None, dtype=object)
        self.free = np.ones(n, dtype=bool)

    def flag(self, mask: np.ndarray | pd.Series, text: str) -> None:
        m = np.asarray(mask, dtype=bool) & self.free
        if m.any():
            self.text[m] = text
            self.free &= ~m


def _flag(reason: _Reasons, mask: np.ndarray | pd.Series, text: str) -> None:
    reason.flag(mask, text)


def row_reasons(df: pd.DataFrame, spec: FeedSpec, file_day: pd.Series | None = None) -> np.ndarray:
    """Quarantine reason per row (object array; None = accepted).

    ``df`` holds canonical columns (dates as datetime64) and ``source_file``;
    ``file_day`` (datetime64, aligned with ``df``) is the day in each row's file name,
    required for partitioned feeds.
    """
    n = len(df)
    reason = _Reasons(n)
    if n == 0:
        return reason.text
    for c in spec.key:
        _flag(reason, df[c].isna().to_numpy(), f"missing key {c}")
    for c in spec.code_columns:
        col = df[c]
        ok = col.str.fullmatch(VALID_PATTERNS[code_kind(spec.name, c)])
        _flag(reason, (col.notna() & ~ok.fillna(False).astype(bool)).to_numpy(), f"invalid code {c}")
    for c in spec.required:
        if c not in spec.key:
            _flag(reason, df[c].isna().to_numpy(), f"missing required value {c}")
    for c in spec.price_columns:
        _flag(reason, (df[c] <= 0).fillna(False).to_numpy(dtype=bool), f"non-positive {c}")
    cols = set(df.columns)
    if {"high", "low"} <= cols:
        _flag(reason, (df["high"] < df["low"]).fillna(False).to_numpy(dtype=bool), "high < low")
        if "close" in cols:
            outside = (df["close"] < df["low"]) | (df["close"] > df["high"])
            _flag(reason, outside.fillna(False).to_numpy(dtype=bool), "close outside [low, high]")
    for c in NON_NEGATIVE:
        if c in cols:
            _flag(reason, (df[c] < 0).fillna(False).to_numpy(dtype=bool), f"negative {c}")
    _feed_rules(df, spec, reason)
    if spec.date_column is not None:
        d = pd.to_datetime(df[spec.date_column])
        today = pd.Timestamp.now(tz="Asia/Shanghai").normalize().tz_localize(None)
        _flag(reason, (d > today).fillna(False).to_numpy(dtype=bool), "date in the future")
        _flag(reason, (d.notna() & ~d.isin(sessions())).to_numpy(), "date not a trading day")
        if spec.partitioned and file_day is not None:
            _flag(reason, (d.notna() & (d.to_numpy() != pd.to_datetime(file_day).to_numpy())).to_numpy(),
                  "date is not the file's day")
    _flag_duplicates(df, spec, reason)
    return reason.text


def _num(df: pd.DataFrame, c: str) -> np.ndarray:
    return pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _feed_rules(df: pd.DataFrame, spec: FeedSpec, reason: _Reasons) -> None:
    """Cross-column sanity rules of single feeds (units and impossible combinations)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if spec.name == "stock_daily":
            vol, amount = _num(df, "vol"), _num(df, "amount")
            _flag(reason, (vol == 0) & (amount > 0) | (vol > 0) & (amount == 0), "vol and amount disagree")
            vwap = amount * 10.0 / vol  # (1,000 CNY) / lots -> CNY per share
            off = (vol > 0) & (amount > 0) & ((vwap > _num(df, "high") * VWAP_SLACK) | (vwap < _num(df, "low") / VWAP_SLACK))
            _flag(reason, off, "amount inconsistent with vol x price")
        elif spec.name == "daily_basic":
            close = _num(df, "close")
            _flag(reason, _num(df, "total_share") > MAX_TOTAL_SHARE_10K, "total_share out of range")
            for cap, shares in (("total_mv", "total_share"), ("circ_mv", "float_share")):
                ratio = _num(df, cap) / (close * _num(df, shares))
                _flag(reason, (ratio > CAP_SLACK) | (ratio < 1 / CAP_SLACK), f"{cap} inconsistent with close x {shares}")
        elif spec.name == "fut_daily":
            ym = df["ts_code"].astype("str").str.extract(r"^[A-Z]{1,2}(\d{2})(\d{2})\.CFX$")
            contract = (2000 + pd.to_numeric(ym[0], errors="coerce")) * 12 + pd.to_numeric(ym[1], errors="coerce")
            d = pd.to_datetime(df["trade_date"])
            traded = d.dt.year * 12 + d.dt.month
            _flag(reason, (traded > contract).fillna(False).to_numpy(dtype=bool), "contract past its expiry month")


def _flag_duplicates(df: pd.DataFrame, spec: FeedSpec, reason: _Reasons) -> None:
    alive = reason.free
    if not alive.any():
        return
    subset = list(spec.key) + ["source_file"]
    sub = df.loc[alive, subset]
    dup = sub.duplicated(keep=False).to_numpy()
    if not dup.any():
        return
    idx = np.flatnonzero(alive)[dup]  # positions of rows in duplicate-key groups
    rows = df.iloc[idx]
    values = rows[spec.column_names]
    row_hash = pd.util.hash_pandas_object(values, index=False).to_numpy()
    grp = rows[subset].reset_index(drop=True)
    grp["_h"] = row_hash
    n_distinct = grp.groupby(subset, dropna=False, sort=False)["_h"].transform("nunique").to_numpy()
    conflicting = n_distinct > 1
    identical_extra = (~conflicting) & grp.duplicated(subset=subset + ["_h"], keep="first").to_numpy()
    reason.text[idx[conflicting]] = "conflicting duplicate key"
    reason.text[idx[identical_extra]] = "duplicate row"
    reason.free[idx[conflicting | identical_extra]] = False


def reason_counts(reasons: pd.Series | np.ndarray) -> dict[str, int]:
    s = pd.Series(reasons, dtype=object).dropna()
    return {str(k): int(v) for k, v in s.value_counts().sort_index().items()}


def quarantine_frame(df: pd.DataFrame, reasons: np.ndarray, spec: FeedSpec, file_day: pd.Series) -> pd.DataFrame:
    """The quarantined rows: every canonical column as a string (dates as YYYY-MM-DD), plus
    ``reason``, ``source_file``, ``source_line`` and ``trade_date`` (DATE: the file's day, the
    quarantine partition). A row's own ``trade_date`` value is kept as ``row_trade_date``."""
    mask = ~pd.isna(reasons)
    q = df.loc[mask]
    out = {"trade_date": pd.to_datetime(pd.Series(file_day).loc[mask] if isinstance(file_day, pd.Series)
                                         else np.asarray(file_day)[mask]).to_numpy()}
    for c in spec.columns:
        s = q[c.name]
        if c.dtype == "date":
            text = pd.to_datetime(s).dt.strftime("%Y-%m-%d")
        else:
            text = s.astype("str")
        text = text.astype(object).where(s.notna(), None)
        out["row_trade_date" if c.name == "trade_date" else c.name] = text.to_numpy()
    out["reason"] = np.asarray(reasons, dtype=object)[mask]
    out["source_file"] = q["source_file"].to_numpy()
    out["source_line"] = q["source_line"].to_numpy(dtype="int64")
    return pd.DataFrame(out)


def quarantine_columns(spec: FeedSpec) -> list[str]:
    return ["trade_date"] + ["row_trade_date" if c == "trade_date" else c for c in spec.column_names] + [
        "reason", "source_file", "source_line"]


# ---- cross-row findings (WARN checks of the raw assets) ----------------------------------
STAGING_ORDER = ["source_mtime_ns", "source_file", "source_line"]


def conflicting_redeliveries(rows: pd.DataFrame, spec: FeedSpec) -> pd.DataFrame:
    """Keys delivered by more than one landing file with different values.

    ``rows`` are accepted raw rows (canonical columns + ``source_*``). A key (``spec.key``,
    which includes the date) counts when it comes from >= 2 distinct ``source_file`` and its
    non-key canonical values differ between them (an identical re-delivery is not a conflict).
    One row per conflicting key: the key columns, ``files`` (sorted), ``kept_file`` (the file
    staging keeps: latest ``source_mtime_ns``, then file name, then line — as the staging SQL)
    and ``columns_differing``. Sorted by key.
    """
    key = list(spec.key)
    cols = key + ["files", "kept_file", "columns_differing"]
    if rows.empty or "source_file" not in rows.columns:
        return pd.DataFrame(columns=cols)
    multi = rows.groupby(key, dropna=False, sort=False)["source_file"].transform("nunique").to_numpy() > 1
    sub = rows.loc[multi]
    if sub.empty:
        return pd.DataFrame(columns=cols)
    values = [c for c in spec.column_names if c not in key]
    n_distinct = sub.groupby(key, dropna=False, sort=False)[values].transform(
        lambda s: s.nunique(dropna=False))
    conf = sub.loc[(n_distinct > 1).any(axis=1).to_numpy()]
    if conf.empty:
        return pd.DataFrame(columns=cols)
    conf = conf.sort_values(key + STAGING_ORDER)
    g = conf.groupby(key, dropna=False, sort=True)
    out = g["source_file"].agg(files=lambda s: sorted(set(s)), kept_file="last")
    differ = g[values].nunique(dropna=False) > 1
    out["columns_differing"] = [[c for c in values if flags[c]] for _, flags in differ.iterrows()]
    return out.reset_index()[cols]


def missing_index_codes(present: pd.DataFrame, days: list[str], expected: list[str],
                        code_column: str = "ts_code") -> dict[str, list[str]]:
    """``{day: [index codes]}`` of ``expected`` codes without a row on each of ``days``.

    ``present`` has ``trade_date`` and ``code_column`` (accepted raw index_daily rows: ``ts_code``
    is the index code); ``days`` are the YYYY-MM-DD days that had a landing file (a day without
    any file is reported elsewhere).
    """
    have = set(zip(pd.to_datetime(present["trade_date"]).dt.strftime("%Y-%m-%d"), present[code_column].astype(str),
                   strict=True)) if len(present) else set()
    out = {d: [c for c in sorted(expected) if (d, c) not in have] for d in sorted(days)}
    return {d: codes for d, codes in out.items() if codes}


def nav_gaps(navs: pd.DataFrame, id_column: str = "fund_id", date_column: str = "trade_date") -> pd.DataFrame:
    """Funds without a NAV in a week between their first and last NAV.

    Weeks are Monday–Sunday weeks named by their last SSE session
    (:func:`sc_assets.partitions.week_end_sessions`, METHODS.md §1); a NAV dated any day of
    the week covers it. Returns one row per (fund, missing week): ``fund_id``,
    ``missing_week_end`` (YYYY-MM-DD), sorted.
    """
    cols = [id_column, "missing_week_end"]
    if navs.empty:
        return pd.DataFrame(columns=cols)
    d = pd.to_datetime(navs[date_column])
    have = pd.DataFrame({id_column: navs[id_column].astype(str).to_numpy(),
                         "p": d.dt.to_period("W-SUN").to_numpy()}).dropna().drop_duplicates()
    span = have.groupby(id_column)["p"].agg(["min", "max"]).reset_index()
    we = week_end_sessions()
    weeks = pd.DataFrame({"p": we.to_period("W-SUN"), "missing_week_end": we.strftime("%Y-%m-%d")})
    lo, hi = span["min"].min(), span["max"].max()
    weeks = weeks[(weeks["p"] >= lo) & (weeks["p"] <= hi)]
    grid = span.merge(weeks, how="cross")
    grid = grid[(grid["p"] >= grid["min"]) & (grid["p"] <= grid["max"])]
    grid = grid.merge(have.assign(_have=True), on=[id_column, "p"], how="left")
    gaps = grid[grid["_have"].isna()]
    return gaps[cols].sort_values(cols).reset_index(drop=True)
