"""Row-level validation of canonical raw rows: every bad row goes to quarantine with a reason.

Vectorised over all rows of a batch of files, on the Arrow table the feed source read (numpy
views of its columns; pandas only for the few rows of duplicate-key groups and quarantined rows;
issue 11). Missing means null or NaN, as pandas ``isna``. Each row gets at most one reason, the
first that applies in this order (``REASONS``):

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
import pyarrow as pa
import pyarrow.compute as pc

from sc_assets.feeds.codes import code_kind, valid_code_mask
from sc_assets.feeds.readers import ARROW_TYPES
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
#: day number of a null date (never a session, never equal to a file's day)
_NO_DAY = np.iinfo(np.int64).min


class _Reasons:
    """Reason per row (``text``: object array, None = accepted) and the rows not flagged (``free``)."""

    def __init__(self, n: int) -> None:
        self.text = np.full(n, None, dtype=object)
        self.free = np.ones(n, dtype=bool)

    def flag(self, mask: np.ndarray, text: str) -> None:
        m = mask & self.free
        if m.any():
            self.text[m] = text
            self.free &= ~m


def _as_table(rows: pa.Table | pd.DataFrame, spec: FeedSpec) -> pa.Table:
    """The rows as Arrow. A pandas frame (e.g. from a test) is converted once; an all-missing
    object column (Arrow type null) gets the canonical type of its feed column."""
    if isinstance(rows, pa.Table):
        return rows
    table = pa.Table.from_pandas(rows, preserve_index=False)
    for i, f in enumerate(table.schema):
        if pa.types.is_null(f.type) and f.name in spec.column_names:
            table = table.set_column(i, f.name, pc.cast(table[f.name], ARROW_TYPES[spec.column(f.name).dtype]))
    return table


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns (the feed source's ``source_file``) decoded to their values."""
    if not any(pa.types.is_dictionary(f.type) for f in table.schema):
        return table
    return table.cast(pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
                                 for f in table.schema]))


def _missing(col: pa.ChunkedArray) -> np.ndarray:
    """Null (or NaN in a float column): pandas ``isna`` of the column's pandas form."""
    return pc.is_null(col, nan_is_null=True).to_numpy(zero_copy_only=False)


def _floats(col: pa.ChunkedArray) -> np.ndarray:
    """float64 values, null -> NaN (so every comparison with a missing value is False, as in pandas)."""
    return (col if pa.types.is_float64(col.type) else pc.cast(col, pa.float64())).to_numpy()


def _days(col: pa.ChunkedArray) -> np.ndarray:
    """int64 days since 1970-01-01 of a date (or timestamp) column; null -> ``_NO_DAY``."""
    if not pa.types.is_date32(col.type):
        col = pc.cast(col, pa.date32(), safe=False)
    d = pc.fill_null(pc.cast(col, pa.int32()), 0).to_numpy().astype(np.int64)
    if col.null_count:
        d[pc.is_null(col).to_numpy(zero_copy_only=False)] = _NO_DAY
    return d


def _file_days(file_day, n: int) -> np.ndarray:
    """int64 days since 1970-01-01 of each row's file day (datetime64 array or pandas Series)."""
    d = np.asarray(pd.to_datetime(file_day).to_numpy() if isinstance(file_day, pd.Series) else file_day)
    d = d.astype("datetime64[D]").astype(np.int64)
    if len(d) != n:
        raise ValueError(f"file_day has {len(d)} values for {n} rows")
    return d


def row_reasons(rows: pa.Table | pd.DataFrame, spec: FeedSpec, file_day=None) -> np.ndarray:
    """Quarantine reason per row (object array; None = accepted): :func:`check_rows`' ``text``."""
    return check_rows(rows, spec, file_day).text


def check_rows(rows: pa.Table | pd.DataFrame, spec: FeedSpec, file_day=None) -> _Reasons:
    """The reason of each row (``text``: object array, None = accepted) and the accepted rows
    (``free``: bool array).

    ``rows`` (Arrow, or a pandas frame converted once) hold canonical columns (dates as DATE,
    datetime64 accepted) and ``source_file``; ``file_day`` (datetime64 array or Series, aligned
    with ``rows``) is the day in each row's file name, required for partitioned feeds.

    Whole-column numpy/Arrow work on the batch (no pandas frame: the rules ran on a pandas copy
    of every chunk, ~1.2 ms CPU per landed stock day, issue 11); missing means null or NaN and a
    comparison with a missing value never flags, as the pandas rules did.
    """
    table = _as_table(rows, spec)
    n = table.num_rows
    reason = _Reasons(n)
    if n == 0:
        return reason
    for c in spec.key:
        reason.flag(_missing(table[c]), f"missing key {c}")
    encoded: dict[str, pa.DictionaryArray] = {}  # shared with the duplicate-key check
    for c in spec.code_columns:
        # the pattern runs once per distinct code (~5,000 in a chunk of ~300k rows)
        enc = encoded[c] = _encode(table[c])
        ok = pc.fill_null(valid_code_mask(enc.dictionary, code_kind(spec.name, c)), True)
        ok_np = ok.to_numpy(zero_copy_only=False)
        bad = np.zeros(n, dtype=bool) if ok_np.all() else ~ok_np[pc.fill_null(enc.indices, 0).to_numpy()]
        reason.flag(bad & ~pc.is_null(enc.indices).to_numpy(zero_copy_only=False), f"invalid code {c}")
    for c in spec.required:
        if c not in spec.key:
            reason.flag(_missing(table[c]), f"missing required value {c}")
    names = set(table.column_names)
    num = {c: _floats(table[c]) for c in set(spec.price_columns) | ({"high", "low", "close"} & names)
           | (set(NON_NEGATIVE) & names)}
    with np.errstate(invalid="ignore"):
        for c in spec.price_columns:
            reason.flag(num[c] <= 0, f"non-positive {c}")
        if {"high", "low"} <= names:
            reason.flag(num["high"] < num["low"], "high < low")
            if "close" in names:
                reason.flag((num["close"] < num["low"]) | (num["close"] > num["high"]), "close outside [low, high]")
        for c in NON_NEGATIVE:
            if c in names:
                reason.flag(num[c] < 0, f"negative {c}")
    _feed_rules(table, spec, reason, num)
    if spec.date_column is not None:
        d = _days(table[spec.date_column])
        known = d != _NO_DAY
        today = pd.Timestamp.now(tz="Asia/Shanghai").normalize().tz_localize(None)
        reason.flag(known & (d > (today - pd.Timestamp(0)).days), "date in the future")
        reason.flag(known & ~_is_session(d), "date not a trading day")
        if spec.partitioned and file_day is not None:
            reason.flag(known & (d != _file_days(file_day, n)), "date is not the file's day")
    _flag_duplicates(table, spec, reason, encoded)
    return reason


def _is_session(d: np.ndarray) -> np.ndarray:
    """True where day number ``d`` is an SSE session (a lookup table over the sessions' span)."""
    sess = sessions().to_numpy().astype("datetime64[D]").astype(np.int64)
    lo, hi = int(sess.min()), int(sess.max())
    lut = np.zeros(hi - lo + 1, dtype=bool)
    lut[sess - lo] = True
    inside = (d >= lo) & (d <= hi)
    out = np.zeros(len(d), dtype=bool)
    out[inside] = lut[d[inside] - lo]
    return out


def _feed_rules(table: pa.Table, spec: FeedSpec, reason: _Reasons, num: dict[str, np.ndarray]) -> None:
    """Cross-column sanity rules of single feeds (units and impossible combinations)."""
    def f(c: str) -> np.ndarray:
        if c not in num:
            num[c] = _floats(table[c])
        return num[c]

    with np.errstate(invalid="ignore", divide="ignore"):
        if spec.name == "stock_daily":
            vol, amount = f("vol"), f("amount")
            reason.flag((vol == 0) & (amount > 0) | (vol > 0) & (amount == 0), "vol and amount disagree")
            vwap = amount * 10.0 / vol  # (1,000 CNY) / lots -> CNY per share
            off = (vol > 0) & (amount > 0) & ((vwap > f("high") * VWAP_SLACK) | (vwap < f("low") / VWAP_SLACK))
            reason.flag(off, "amount inconsistent with vol x price")
        elif spec.name == "daily_basic":
            close = f("close")
            reason.flag(f("total_share") > MAX_TOTAL_SHARE_10K, "total_share out of range")
            for cap, shares in (("total_mv", "total_share"), ("circ_mv", "float_share")):
                ratio = f(cap) / (close * f(shares))
                reason.flag((ratio > CAP_SLACK) | (ratio < 1 / CAP_SLACK), f"{cap} inconsistent with close x {shares}")
        elif spec.name == "fut_daily":
            # contract month from the CFFEX code (IC2401.CFX -> 2024-01); no match -> not flagged
            ym = pc.extract_regex(table["ts_code"], r"^[A-Z]{1,2}(?P<y>\d{2})(?P<m>\d{2})\.CFX$")
            yy = _floats(pc.cast(pc.struct_field(ym, "y"), pa.float64()))
            mm = _floats(pc.cast(pc.struct_field(ym, "m"), pa.float64()))
            contract = (2000 + yy) * 12 + mm
            d = _days(table["trade_date"])
            months = d.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)  # since 1970-01
            traded = np.where(d != _NO_DAY, 1970 * 12 + months + 1, np.nan)  # year * 12 + month
            reason.flag(traded > contract, "contract past its expiry month")


#: combined key codes below this many values are made dense with a lookup table, larger ones hashed
_DENSE_LIMIT = 1 << 21


def _encode(col: pa.ChunkedArray) -> pa.DictionaryArray:
    return pc.dictionary_encode(col).combine_chunks()


def _group_ids(table: pa.Table, columns: list[str], encoded: dict | None = None,
               rows: np.ndarray | None = None) -> np.ndarray:
    """int64 id of the distinct combination of ``columns`` (null is a value) per row, or per row
    of ``rows`` (positions) if given; ids are >= 0 and below ``max(rows, _DENSE_LIMIT)`` (for
    ``np.bincount``), not necessarily consecutive.

    Each column is dictionary-encoded (``encoded``: encodings already made); the codes are
    combined smallest cardinality first and kept dense with a lookup table while the code space
    is small (a day, a file and ~5,000 stock codes: no hashing of rows), else with
    ``pd.factorize`` (issue 11)."""
    codes = []
    for c in columns:
        enc = encoded[c] if encoded and c in encoded else _encode(table[c])
        k = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        codes.append((len(enc.dictionary) + 1, k if rows is None else k[rows]))
    codes.sort(key=lambda x: x[0])
    if not codes:
        return np.zeros(table.num_rows if rows is None else len(rows), dtype=np.int64)
    size, ids = codes[0]
    for i, (card, k) in enumerate(codes[1:], start=2):
        ids = ids * card + k
        size *= card
        if size <= _DENSE_LIMIT and i == len(codes):
            break  # small enough for a bincount; ids need not be dense
        if size <= _DENSE_LIMIT:
            used = np.zeros(size, dtype=bool)
            used[ids] = True
            ids = (np.cumsum(used) - 1)[ids]
            size = int(used.sum())
        else:
            ids, uniq = pd.factorize(ids)
            ids, size = ids.astype(np.int64), len(uniq)
    return ids


def _flag_duplicates(table: pa.Table, spec: FeedSpec, reason: _Reasons, encoded: dict) -> None:
    alive = reason.free
    if not alive.any():
        return
    subset = list(spec.key) + ["source_file"]
    pos = np.flatnonzero(alive)
    ids = _group_ids(table, subset, encoded, rows=None if alive.all() else pos)
    dup = np.bincount(ids)[ids] > 1  # rows in duplicate-key groups (keep=False)
    if not dup.any():
        return
    # rare: the few rows of duplicate-key groups, in pandas (row hashes of the canonical values)
    idx = pos[dup]
    rows = _plain(table.take(pa.array(idx))).to_pandas(date_as_object=False)
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


def last_per_key(table: pa.Table, key: list[str]) -> np.ndarray:
    """Positions of the last row of each distinct ``key`` (nulls equal), in row order
    (``DataFrame.drop_duplicates(subset=key, keep="last")``)."""
    if table.num_rows == 0:
        return np.array([], dtype=np.int64)
    ids = _group_ids(table, key)
    last = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    last[ids] = np.arange(len(ids))  # later rows overwrite earlier ones
    return np.sort(last[last >= 0])


def reason_counts(reasons: np.ndarray, accepted: np.ndarray) -> dict[str, int]:
    """Rows per reason (sorted by reason) of a reason array and its accepted (None) positions."""
    if accepted.all():
        return {}
    flagged = np.asarray(reasons, dtype=object)[~accepted]
    values, counts = np.unique(flagged.astype(str), return_counts=True)
    return {str(k): int(v) for k, v in zip(values, counts, strict=True)}


def quarantine_frame(rows: pa.Table | pd.DataFrame, reasons: np.ndarray, spec: FeedSpec, file_day) -> pd.DataFrame:
    """The quarantined rows: every canonical column as a string (dates as YYYY-MM-DD), plus
    ``reason``, ``source_file``, ``source_line`` and ``trade_date`` (DATE: the file's day, the
    quarantine partition). A row's own ``trade_date`` value is kept as ``row_trade_date``.

    Only the quarantined rows are converted to pandas (the text is pandas' ``str`` of each value)."""
    mask = ~pd.isna(np.asarray(reasons, dtype=object))
    table = _as_table(rows, spec)
    days = np.asarray(pd.to_datetime(file_day).to_numpy() if isinstance(file_day, pd.Series) else file_day)
    idx = np.flatnonzero(mask)
    q = _plain(table.select([c.name for c in spec.columns] + ["source_file", "source_line"]).take(
        pa.array(idx, pa.int64()))).to_pandas(date_as_object=False)
    out = {"trade_date": pd.to_datetime(days[mask]).to_numpy()}
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
