"""Drawdowns, weekly returns, the market-neutral fund index and excess NAVs (METHODS.md §1, §4, §5).

Pure numpy/pandas, no Dagster. Every function works on a whole (T x S) panel at once —
rows = dates (trading days, or week labels for weekly series), columns = series (index
pairs, products, deciles) — with ``np.fmax.accumulate`` along time; there is no Python loop
per series over the history.

Conventions
-----------
* Values are levels > 0 (NAV, index close, relative NAV). A series of *returns* is turned
  into levels from a base of 1 (:func:`levels_from_returns`), so a loss on the first day
  counts — the same anchor empyrical's ``max_drawdown`` uses.
* ``P_t = max_{s<=t} V_s`` (NaN ignored), ``D_t = V_t / P_t - 1`` (<= 0, NaN where V is NaN),
  ``MDD = min_t D_t`` as a negative fraction (empyrical's sign). Tables show percentages
  with the sign: the study's "median excess drawdown 12.5%" is ``MDD = -0.125``.
* NaN before a series starts, after it ends and in gaps stays NaN: nothing is forward-filled.
  The running peak carries across a gap (the peak is a fact of the past), the drawdown does not.
* Dates: peak = the last date before the trough at which the series stood at the running
  peak; trough = the first date of the minimum drawdown; recovery = the first date after the
  trough with ``V >= V_peak`` (null if never). Durations count rows of the grid the panel is on
  — trading days for a daily session grid, weeks for a weekly grid — so callers put series on
  a full calendar grid (:func:`week_grid`, SSE sessions) before calling.
* A series that never falls below its running peak (monotone up, constant) has ``MDD = 0``
  and null peak/trough/recovery dates; an all-NaN series has NaN and nulls.
* Weeks (METHODS §1): Monday–Sunday, labelled by the week's last SSE session
  (:func:`sc_assets.partitions.week_end_sessions`; the Spring Festival week of 2024 ends
  Thursday 2024-02-08). A weekly return runs close-to-close between consecutive week labels,
  so a holiday-short week compounds the days it has.

References: METHODS.md §4–§5; the study (Cinda Securities, 2024-02-24) Table 1 and its
market-neutral index figure (worst week −5.40%, week ending 2024-02-08).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from sc_assets.partitions import last_known_session, sessions, week_end_sessions


@dataclass(frozen=True)
class DrawdownParams:
    """Defaults of the drawdown tables (every one is overridable in the assets' config).

    style_pairs: (small, large) index pairs for the relative NAV: Wind micro-cap, CSI2000 and
        CSI1000 each against CSI300 (issue 7; the study's size-style charts).
    style_start: first day of the relative NAV (2015, the study's "worst since 2015").
    window_start / window_end: the crash window of the index/decile table (METHODS §3
        ``drawdown_vs_size`` default: 2024-01-02 → 2024-02-07; the start level is the close of
        the last trading day before the window).
    index_codes: indices shown beside the cap deciles.
    n_deciles: cap buckets by total cap at the window start (1 = smallest), equal-weighted.
    n_worst_weeks: rows of the neutral index's worst-weeks table.
    excess_method: "relative" (METHODS §5 default) or "arithmetic".
    excess_start: first NAV date of the excess-NAV window. Our choice (the issue is silent):
        2023-01-01, so the max drawdown measures the 2024 episode as the study's Table 1 does,
        not the 2015/2021 episodes of a long history. ``None`` = each product's whole history.
    aum_bucket_table1: manager AUM bucket of the study's Table 1 (managers above 10 bn CNY).
    """

    style_pairs: tuple[tuple[str, str], ...] = (
        ("8841431.WI", "000300.SH"),
        ("932000.CSI", "000300.SH"),
        ("000852.SH", "000300.SH"),
    )
    style_start: str = "2015-01-05"
    window_start: str = "2024-01-02"
    window_end: str = "2024-02-07"
    index_codes: tuple[str, ...] = ("000300.SH", "000905.SH", "000852.SH", "932000.CSI", "8841431.WI")
    n_deciles: int = 10
    n_worst_weeks: int = 10
    excess_method: str = "relative"
    excess_start: str | None = "2023-01-01"
    aum_bucket_table1: str = ">=10bn"

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULTS = DrawdownParams()
EXCESS_METHODS = ("relative", "arithmetic")


# --------------------------------------------------------------------------------------------
# core: drawdown series and statistics on a (T x S) panel
# --------------------------------------------------------------------------------------------
def _as_2d(values: np.ndarray) -> np.ndarray:
    a = np.asarray(values, dtype="float64")
    return np.asfortranarray(a[:, None] if a.ndim == 1 else a)  # time-contiguous: fast accumulate


def running_peak(values: np.ndarray) -> np.ndarray:
    """``P_t = max_{s<=t} V_s`` along axis 0, ignoring NaN (NaN until a series starts)."""
    a = _as_2d(values)
    if a.shape[0] == 0:
        return a.copy()
    return np.fmax.accumulate(a, axis=0)


def drawdown_array(values: np.ndarray) -> np.ndarray:
    """``D_t = V_t / P_t − 1`` for a (T,) or (T x S) array of levels; NaN where V is NaN."""
    a = _as_2d(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = a / running_peak(a) - 1.0
    return d.reshape(np.shape(values)) if np.ndim(values) == 1 else d


def drawdown_frame(levels: pd.DataFrame) -> pd.DataFrame:
    """Drawdown of each column of ``levels`` (same index/columns; fractions <= 0)."""
    return pd.DataFrame(drawdown_array(levels.to_numpy(dtype="float64")), index=levels.index,
                        columns=levels.columns)


def levels_from_returns(returns: pd.DataFrame | pd.Series, base_date=None) -> pd.DataFrame | pd.Series:
    """Levels from simple returns with a base of 1 *before* the first return.

    The base row is dated ``base_date`` (default: the day before the first index value when
    the index is dated, else position -1 is simply prepended). NaN returns inside a series
    count as 0 for the level (the series is flat that day) but stay NaN before its first
    return — the same treatment as empyrical's ``cum_returns``.
    """
    frame = returns.to_frame() if isinstance(returns, pd.Series) else returns
    r = np.asfortranarray(frame.to_numpy(dtype="float64"))
    t, s = r.shape
    valid = ~np.isnan(r)
    has = valid.any(axis=0) if t else np.zeros(s, bool)
    first = np.argmax(valid, axis=0) if t else np.zeros(s, int)
    out = np.empty((t + 1, s), order="F")
    out[0] = np.nan
    if t:
        np.cumprod(1.0 + np.where(valid, r, 0.0), axis=0, out=out[1:])
        # a series' base 1 sits right before its first return; NaN before that
        out[np.arange(t + 1)[:, None] < first[None, :]] = np.nan
        out[first[has], np.flatnonzero(has)] = 1.0
        out[:, ~has] = np.nan
    if base_date is None:
        if isinstance(frame.index, pd.DatetimeIndex) and len(frame):
            base_date = frame.index[0] - pd.Timedelta(days=1)
        else:
            base_date = -1
    idx = pd.Index([base_date]).append(frame.index)
    res = pd.DataFrame(out, index=idx, columns=frame.columns)
    return res.iloc[:, 0] if isinstance(returns, pd.Series) else res


def max_drawdown(levels: np.ndarray | pd.DataFrame) -> np.ndarray:
    """``MDD = min_t D_t`` per column (negative fraction; 0 if never below a peak; NaN if empty)."""
    d = _as_2d(np.asarray(levels, dtype="float64"))
    if d.shape[0] == 0:
        return np.full(d.shape[1], np.nan)
    dd = drawdown_array(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(dd, axis=0)


STAT_COLUMNS = [
    "start_date", "end_date", "n_obs", "start_value", "end_value", "total_return", "max_drawdown",
    "peak_date", "trough_date", "recovery_date", "peak_to_trough", "trough_to_recovery",
    "current_drawdown",
]


def drawdown_stats(levels: pd.DataFrame) -> pd.DataFrame:
    """Drawdown statistics of every column of ``levels`` in one vectorised pass.

    ``levels``: index = ascending dates on the grid durations are counted in (sessions or
    week labels), columns = series ids, values = levels > 0 with NaN where a series has no
    value. Returns one row per column (index = the column ids) with
    ``start_date, end_date`` (first/last non-NaN), ``n_obs``, ``start_value, end_value``,
    ``total_return`` (end/start − 1), ``max_drawdown`` (fraction <= 0), ``peak_date,
    trough_date, recovery_date``, ``peak_to_trough`` and ``trough_to_recovery`` (rows of the
    grid: trading days or weeks; nullable Int64) and ``current_drawdown`` (at the series' last
    value). Conventions: module docstring.
    """
    cols = levels.columns
    v = np.asfortranarray(levels.to_numpy(dtype="float64"))  # time-contiguous: fast accumulate
    t, s = v.shape
    out = pd.DataFrame(index=cols)
    if t == 0 or s == 0:
        for c in STAT_COLUMNS:
            out[c] = pd.Series(np.nan, index=cols, dtype="float64")
        out["n_obs"] = 0
        return _stat_dtypes(out, levels.index)
    dates = levels.index
    parts = [_dd_block(v[:, j:j + BLOCK]) for j in range(0, s, BLOCK)]  # cache-sized column blocks
    b = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    has, in_dd, has_rec = b["has"], b["in_dd"], b["has_rec"]

    def pick(idx: np.ndarray, ok: np.ndarray) -> pd.Series:
        vals = dates[np.clip(idx, 0, t - 1)]
        return pd.Series(vals, index=cols).where(ok)

    out["start_date"] = pick(b["first"], has)
    out["end_date"] = pick(b["last"], has)
    out["n_obs"] = b["n_obs"]
    out["start_value"] = b["start_v"]
    out["end_value"] = b["end_v"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["total_return"] = b["end_v"] / b["start_v"] - 1.0
    out["max_drawdown"] = b["mdd"]
    out["peak_date"] = pick(b["peak_i"], in_dd)
    out["trough_date"] = pick(b["trough"], in_dd)
    out["recovery_date"] = pick(b["rec_i"], has_rec)
    ptt = pd.array(b["trough"] - b["peak_i"], dtype="Int64")
    ptt[~in_dd] = pd.NA
    ttr = pd.array(b["rec_i"] - b["trough"], dtype="Int64")
    ttr[~has_rec] = pd.NA
    out["peak_to_trough"] = ptt
    out["trough_to_recovery"] = ttr
    out["current_drawdown"] = b["current"]
    return _stat_dtypes(out, dates)


BLOCK = 32
"""Columns per block in :func:`drawdown_stats`: (T x 32) arrays stay in the L2 cache, which
makes the elementwise passes several times faster than on a whole 2,431 x 500 panel."""


def _dd_block(v: np.ndarray) -> dict[str, np.ndarray]:
    """Drawdown statistics of a (T x s) block as row indices and values (see drawdown_stats)."""
    v = np.asfortranarray(v)
    t, s = v.shape
    cidx = np.arange(s)
    ar = np.arange(t)[:, None]
    valid = ~np.isnan(v)
    has = valid.any(axis=0)
    first = np.where(has, np.argmax(valid, axis=0), 0)
    last = np.where(has, t - 1 - np.argmax(valid[::-1], axis=0), 0)
    peak = np.fmax.accumulate(v, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dd = v / peak
    dd -= 1.0
    dd_fill = np.where(valid, dd, np.inf)
    trough = np.argmin(dd_fill, axis=0)
    mdd = np.where(has, dd_fill[trough, cidx], np.nan)
    in_dd = has & (mdd < 0)
    peak_val = peak[trough, cidx]
    # peak: the last row up to the trough at the running peak's value (ties: the latest)
    at_peak = (v == peak_val) & (ar <= trough)
    peak_i = t - 1 - np.argmax(at_peak[::-1], axis=0)
    # recovery: the first row after the trough back at (or above) the peak value
    rec_mask = (v >= peak_val) & (ar > trough)
    has_rec = in_dd & rec_mask.any(axis=0)
    rec_i = np.argmax(rec_mask, axis=0)
    return {
        "has": has, "first": first, "last": last, "n_obs": valid.sum(axis=0),
        "start_v": np.where(has, v[first, cidx], np.nan), "end_v": np.where(has, v[last, cidx], np.nan),
        "mdd": mdd, "trough": trough, "in_dd": in_dd, "peak_i": peak_i, "rec_i": rec_i,
        "has_rec": has_rec, "current": np.where(has, dd[last, cidx], np.nan),
    }


def _stat_dtypes(out: pd.DataFrame, dates) -> pd.DataFrame:
    if isinstance(dates, pd.DatetimeIndex):
        for c in ("start_date", "end_date", "peak_date", "trough_date", "recovery_date"):
            out[c] = pd.to_datetime(out[c])
    for c in ("peak_to_trough", "trough_to_recovery"):
        out[c] = out[c].astype("Int64")
    out["n_obs"] = out["n_obs"].astype("int64")
    return out


# --------------------------------------------------------------------------------------------
# weeks (METHODS §1)
# --------------------------------------------------------------------------------------------
def _calendar_week_ends() -> pd.Series:
    """Map Mon–Sun period -> the week's last SSE session (full calendar)."""
    ends = week_end_sessions()
    return pd.Series(ends, index=ends.to_period("W-SUN"))


def week_labels(dates) -> pd.DatetimeIndex:
    """The label of each date's Monday–Sunday week: the week's last SSE session.

    Dates outside the calendar exchange-calendars knows fall back to the week's Friday (a
    synthetic label, only for test data far from the SSE calendar).
    """
    d = pd.DatetimeIndex(pd.to_datetime(dates)).normalize()
    if len(d) == 0:
        return pd.DatetimeIndex([])
    periods = d.to_period("W-SUN")
    cal = _calendar_week_ends()
    lab = pd.Series(periods).map(cal)
    fallback = pd.Series(periods.start_time + pd.Timedelta(days=4))
    return pd.DatetimeIndex(lab.where(lab.notna(), fallback))


def week_grid(first, last) -> pd.DatetimeIndex:
    """Every week label (last session of each Mon–Sun week) from ``first``'s week to ``last``'s."""
    first, last = pd.Timestamp(first), pd.Timestamp(last)
    ends = week_end_sessions()
    lo, hi = week_labels([first])[0], week_labels([last])[0]
    grid = ends[(ends >= lo) & (ends <= hi)]
    if len(grid) == 0 or hi > last_known_session() or lo < sessions()[0]:
        # outside the known calendar: weekly Fridays
        periods = pd.period_range(first.to_period("W-SUN"), last.to_period("W-SUN"), freq="W-SUN")
        grid = week_labels(periods.start_time)
    return pd.DatetimeIndex(grid)


def weekly_levels(levels: pd.DataFrame) -> pd.DataFrame:
    """Weekly levels from daily levels: each column's last value within each Mon–Sun week.

    Index = week labels on the full grid between the first and last week (a week with no
    value is NaN, never filled). The current, unfinished week is labelled by its calendar week
    end but holds the latest close so far.
    """
    if levels.empty:
        return levels.copy()
    idx = pd.DatetimeIndex(levels.index)
    lab = week_labels(idx)
    w = levels.groupby(lab.to_numpy()).last()  # last non-NaN per column within the week
    w.index = pd.DatetimeIndex(w.index)
    grid = week_grid(idx.min(), idx.max())
    return w.reindex(grid)


def weekly_returns(levels: pd.DataFrame) -> pd.DataFrame:
    """Close-to-close weekly simple returns between consecutive week labels (METHODS §1).

    ``levels`` daily (or already weekly) levels; a week lacking either end is NaN (no
    return spans two weeks). The first week of each series is NaN (no previous close).
    """
    w = weekly_levels(levels)
    return w / w.shift(1) - 1.0


def weekly_panel(long: pd.DataFrame, id_col: str, date_col: str, value_col: str) -> pd.DataFrame:
    """Pivot a long weekly table (e.g. fund NAVs) onto the week grid: rows = week labels,
    columns = ids. Dates are snapped to their week label; several values in one week keep
    the latest. Missing weeks stay NaN."""
    if long.empty:
        return pd.DataFrame(dtype="float64")
    df = long[[id_col, date_col, value_col]].copy()
    df[date_col] = pd.to_datetime(df[date_col])
    df = df.dropna(subset=[value_col]).sort_values([id_col, date_col])
    if df.empty:
        return pd.DataFrame(dtype="float64")
    df["_week"] = week_labels(df[date_col]).to_numpy()
    df = df.drop_duplicates([id_col, "_week"], keep="last")
    wide = df.pivot(index="_week", columns=id_col, values=value_col).astype("float64")
    wide.index = pd.DatetimeIndex(wide.index, name="trade_date")
    wide.columns.name = None
    return wide.reindex(week_grid(wide.index.min(), wide.index.max())).rename_axis("trade_date")


# --------------------------------------------------------------------------------------------
# market-neutral fund index (METHODS §4)
# --------------------------------------------------------------------------------------------
def neutral_index(nav_wide: pd.DataFrame) -> pd.DataFrame:
    """Equal-weighted index of products from weekly NAVs (rows = week grid, columns = products).

    Week w's return = mean of ``NAV_w / NAV_{w-1} − 1`` over products with a NAV at both ends
    of the week; index = cumulative product from 1 at the first week. A week in which no
    product qualifies has ``ret`` NaN and leaves the level unchanged.
    Returns index = week labels, columns ``ret, n_products, level, drawdown``.
    """
    nav = nav_wide.to_numpy(dtype="float64")
    if nav.shape[0] == 0:
        return pd.DataFrame(columns=["ret", "n_products", "level", "drawdown"], dtype="float64")
    prev = np.vstack([np.full((1, nav.shape[1]), np.nan), nav[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = nav / prev - 1.0
    ok = ~np.isnan(r)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(ok, r, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
    level = np.cumprod(1.0 + np.nan_to_num(mean, nan=0.0))
    out = pd.DataFrame({"ret": mean, "n_products": n.astype("int64"), "level": level},
                       index=nav_wide.index)
    out["drawdown"] = drawdown_array(level)
    return out


def worst_weeks(index: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` lowest weekly returns of a weekly index (from :func:`neutral_index`).

    Columns: ``rank`` (1 = worst), ``trade_date`` (the week's last session), ``week_start``
    (Monday), ``ret``, ``n_products``, ``level``, ``drawdown`` (of the index at that week) and
    ``worst_since``: the latest earlier week with a return at least as low (null = the worst
    on record up to then; the study: "worst since 2015").
    """
    r = index["ret"].dropna()
    cols = ["rank", "trade_date", "week_start", "ret", "n_products", "level", "drawdown", "worst_since"]
    if r.empty or n <= 0:
        return pd.DataFrame(columns=cols)
    worst = r.nsmallest(n)
    dates = pd.DatetimeIndex(r.index)
    vals = r.to_numpy()
    rows = []
    for rank, (day, ret) in enumerate(worst.items(), start=1):  # n rows, not a loop over history
        earlier = (dates < day) & (vals <= ret)
        since = dates[earlier][-1] if earlier.any() else pd.NaT
        rows.append({
            "rank": rank, "trade_date": pd.Timestamp(day),
            "week_start": pd.Timestamp(day) - pd.Timedelta(days=pd.Timestamp(day).weekday()),
            "ret": float(ret), "n_products": int(index.at[day, "n_products"]),
            "level": float(index.at[day, "level"]), "drawdown": float(index.at[day, "drawdown"]),
            "worst_since": since,
        })
    out = pd.DataFrame(rows, columns=cols)
    out["worst_since"] = pd.to_datetime(out["worst_since"])
    return out


# --------------------------------------------------------------------------------------------
# excess NAV of index-enhancement products (METHODS §5)
# --------------------------------------------------------------------------------------------
def _first_valid_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = ~np.isnan(a)
    has = valid.any(axis=0)
    return np.where(has, np.argmax(valid, axis=0), 0), has


def excess_nav(nav: pd.DataFrame, bench: pd.DataFrame, method: str = "relative") -> pd.DataFrame:
    """Excess NAV of each product (same index/columns as ``nav``).

    ``nav``: product NAVs on the week grid; ``bench``: each product's benchmark close on the
    same dates (same shape). Rows where either is NaN are NaN. The base is each product's
    first row with both values.

    * ``relative`` (default): ``E_t = (NAV_t / NAV_0) / (B_t / B_0)``.
    * ``arithmetic``: ``E_t = 1 + Σ_{s<=t} e_s`` with ``e_s = r_fund,s − r_bench,s`` between the
      product's consecutive observations (a gap week is spanned, as ``fund_ret`` in
      ``marts.fund_nav_panel`` is).
    """
    if method not in EXCESS_METHODS:
        raise ValueError(f"excess method {method!r} not in {EXCESS_METHODS}")
    b = bench.reindex(index=nav.index, columns=nav.columns)
    f = nav.to_numpy(dtype="float64").copy()
    bb = b.to_numpy(dtype="float64").copy()
    both = ~np.isnan(f) & ~np.isnan(bb)
    f[~both] = np.nan
    bb[~both] = np.nan
    if f.shape[0] == 0:
        return pd.DataFrame(f, index=nav.index, columns=nav.columns)
    first, has = _first_valid_rows(f)
    cidx = np.arange(f.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "relative":
            e = (f / f[first, cidx]) / (bb / bb[first, cidx])
        else:
            f_prev = pd.DataFrame(f).ffill().shift(1).to_numpy()
            b_prev = pd.DataFrame(bb).ffill().shift(1).to_numpy()
            step = (f / f_prev - 1.0) - (bb / b_prev - 1.0)
            step = np.where(both, np.nan_to_num(step, nan=0.0), 0.0)
            e = np.where(both, 1.0 + np.cumsum(step, axis=0), np.nan)
    e[:, ~has] = np.nan
    return pd.DataFrame(e, index=nav.index, columns=nav.columns)


def excess_drawdown_summary(per_product: pd.DataFrame, value: str = "max_drawdown") -> pd.DataFrame:
    """Medians and quartiles of ``value`` by benchmark, by manager AUM bucket and by both.

    ``per_product`` needs ``benchmark``, ``manager_aum_bucket`` and ``value`` columns. Rows:
    ``group`` ('benchmark' | 'aum_bucket' | 'benchmark_x_aum_bucket' | 'all'), ``benchmark``,
    ``manager_aum_bucket`` ('all' where not split), ``n_products``, ``median``, ``q25``,
    ``q75`` (of the negative MDD, so q25 is the deeper quartile), ``worst`` (min), ``best``
    (max) and ``median_trough_date`` when a ``trough_date`` column is present.
    """
    cols = ["group", "benchmark", "manager_aum_bucket", "n_products", "median", "q25", "q75",
            "worst", "best", "median_trough_date"]
    df = per_product.dropna(subset=[value])
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.assign(_all="all")
    has_trough = "trough_date" in df.columns
    if has_trough:
        df = df.assign(trough_date=pd.to_datetime(df["trough_date"]))
    parts = []
    for group, keys in (("benchmark", ["benchmark"]), ("aum_bucket", ["manager_aum_bucket"]),
                        ("benchmark_x_aum_bucket", ["benchmark", "manager_aum_bucket"]), ("all", ["_all"])):
        g = df.groupby(keys, dropna=False)[value]
        s = pd.DataFrame({
            "n_products": g.size(), "median": g.median(), "q25": g.quantile(0.25),
            "q75": g.quantile(0.75), "worst": g.min(), "best": g.max(),
        })
        if has_trough:
            s["median_trough_date"] = df.groupby(keys, dropna=False)["trough_date"].median().dt.normalize()
        else:
            s["median_trough_date"] = pd.NaT
        s = s.reset_index()
        if "benchmark" not in s:
            s["benchmark"] = "all"
        if "manager_aum_bucket" not in s:
            s["manager_aum_bucket"] = "all"
        s["group"] = group
        parts.append(s[cols])
    return pd.concat(parts, ignore_index=True)


def table1_frame(per_product: pd.DataFrame, bucket: str | None = ">=10bn",
                 benchmarks: dict[str, str] | None = None) -> pd.DataFrame:
    """The study's Table 1 shape: one row per manager, one column per benchmark with the excess
    max drawdown in percent (median over the manager's products on that benchmark), and a last
    row ``median`` = the median over the products shown. ``bucket`` filters managers by AUM
    bucket (None = all)."""
    benchmarks = benchmarks or {"000905.SH": "CSI500 excess MDD %", "000852.SH": "CSI1000 excess MDD %"}
    df = per_product
    if bucket is not None:
        df = df[df["manager_aum_bucket"] == bucket]
    df = df[df["benchmark"].isin(list(benchmarks))].dropna(subset=["max_drawdown"])
    if df.empty:
        return pd.DataFrame(columns=["manager", *benchmarks.values()])
    pct = df.assign(mdd_pct=100.0 * df["max_drawdown"])
    wide = pct.pivot_table(index="manager", columns="benchmark", values="mdd_pct", aggfunc="median")
    wide = wide.reindex(columns=list(benchmarks)).rename(columns=benchmarks)
    med = pct.groupby("benchmark")["mdd_pct"].median().reindex(list(benchmarks))
    med.index = [benchmarks[k] for k in med.index]
    wide.loc["median"] = med
    out = wide.reset_index().rename(columns={"index": "manager"})
    out.columns.name = None
    return out


# --------------------------------------------------------------------------------------------
# index and cap-decile window table (the study's Fig 2)
# --------------------------------------------------------------------------------------------
def cap_deciles(caps: pd.Series, n: int = 10) -> pd.Series:
    """Decile (1 = smallest) of each stock by cap; NaN/non-positive caps get no decile."""
    c = caps[(caps > 0) & caps.notna()]
    if c.empty:
        return pd.Series(dtype="int64")
    ranks = c.rank(method="first")
    return pd.Series(np.ceil(ranks.to_numpy() * n / len(c)).astype("int64"), index=c.index).clip(1, n)


def window_table(index_levels: pd.DataFrame, stock_returns: pd.DataFrame, start_caps: pd.Series,
                 n_deciles: int = 10, index_median_logcap: dict[str, float] | None = None) -> pd.DataFrame:
    """Return and max drawdown over a window for indices and equal-weighted cap deciles.

    ``index_levels``: closes (rows = the base day + window sessions, columns = index codes);
    the first row is the base (close of the last session before the window).
    ``stock_returns``: daily simple returns of stocks over the window sessions (rows = window
    sessions, columns = ts_code; NaN = suspended / not listed that day, excluded from the
    day's mean); ``start_caps``: total cap (CNY) on the base day — deciles by it, 1 = smallest.
    Decile level = cumulative product of the equal-weighted mean return, from 1 at the base.
    Returns rows ``kind`` ('index' | 'cap_decile'), ``series``, ``n_stocks``,
    ``median_log_cap`` (ln CNY at the base day), ``window_return``, ``max_drawdown``,
    ``peak_date``, ``trough_date``.
    """
    parts = []
    if not index_levels.empty:
        st = drawdown_stats(index_levels)
        st = st.assign(kind="index", series=st.index.astype(str), n_stocks=pd.NA,
                       median_log_cap=[(index_median_logcap or {}).get(c, np.nan) for c in st.index])
        parts.append(st)
    dec = cap_deciles(start_caps, n_deciles)
    if len(dec) and not stock_returns.empty:
        rets = stock_returns.reindex(columns=dec.index)
        g = rets.T.groupby(dec.to_numpy())
        dec_ret = g.mean().T  # (days x deciles), NaN-skipping mean
        dec_ret.columns = [f"D{int(c)}" for c in dec_ret.columns]
        base = index_levels.index[0] if not index_levels.empty else None
        lv = levels_from_returns(dec_ret.fillna(0.0), base_date=base)
        st = drawdown_stats(lv)
        logcap = np.log(start_caps.reindex(dec.index)).groupby(dec.to_numpy()).median()
        counts = dec.value_counts()
        st = st.assign(kind="cap_decile", series=st.index.astype(str),
                       n_stocks=[int(counts.get(int(c[1:]), 0)) for c in st.index],
                       median_log_cap=[float(logcap.get(int(c[1:]), np.nan)) for c in st.index])
        parts.append(st)
    cols = ["kind", "series", "n_stocks", "median_log_cap", "window_return", "max_drawdown",
            "peak_date", "trough_date", "recovery_date"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True).rename(columns={"total_return": "window_return"})
    out["n_stocks"] = out["n_stocks"].astype("Int64")
    return out[cols]


# --------------------------------------------------------------------------------------------
# benchmark: vectorised tables vs a per-series loop (issue 7 "measure")
# --------------------------------------------------------------------------------------------
def benchmark_vs_loop(n_series: int = 500, n_days: int = 2431, seed: int = 7,
                      windows: tuple[tuple[int, int], ...] = ((26, 20), (52, 40)), repeats: int = 4) -> dict:
    """Time the vectorised tables against a per-series loop on a random (n_days x n_series) panel.

    Vectorised: :func:`levels_from_returns` + :func:`drawdown_stats` +
    :func:`sc_assets.analytics.correlations.rolling_corr_multi` (both windows). Loop, per
    series: empyrical ``max_drawdown``, pandas peak/trough/recovery dates and durations (the
    same columns) and pandas ``rolling(w, m).corr`` per window. Best of ``repeats`` after a
    warm-up (loop: best of ``repeats // 2``). Returns timings (s), the speed-up and the
    agreement of the two (max |diff| of MDD and correlations, identical dates). Needs
    empyrical-reloaded (dev extra)."""
    import empyrical

    from sc_assets.analytics.correlations import rolling_corr_multi

    rng = np.random.default_rng(seed)
    rets = rng.normal(0.0003, 0.015, size=(n_days, n_series))
    x = rng.normal(0, 0.01, size=n_days)
    y = 0.8 * x[:, None] + rng.normal(0, 0.006, size=(n_days, n_series))
    dates = pd.bdate_range("2015-01-05", periods=n_days)
    ret_df = pd.DataFrame(rets, index=dates)
    y_df = pd.DataFrame(y, index=dates)

    def vectorised():
        lv_ = levels_from_returns(ret_df)
        return lv_, drawdown_stats(lv_), rolling_corr_multi(x, y_df.to_numpy(), windows)

    def per_series_loop():
        xs = pd.Series(x, index=dates)
        rows = []
        corr = [np.empty((n_days, n_series)) for _ in windows]
        for j in range(n_series):  # the per-series baseline the vectorised tables replace
            r = ret_df[j]
            mdd = empyrical.max_drawdown(r)
            nav = lv[j].dropna()
            dd = nav / nav.cummax() - 1.0
            trough = dd.idxmin()
            peak = nav[:trough][::-1].idxmax()  # the last date at the peak
            after = nav[trough:].iloc[1:]
            rec = after.index[after >= nav[peak]].min() if mdd < 0 else pd.NaT
            pos = nav.index.get_indexer
            rows.append({
                "start_date": nav.index[0], "end_date": nav.index[-1], "n_obs": len(nav),
                "total_return": nav.iloc[-1] / nav.iloc[0] - 1.0, "max_drawdown": mdd,
                "peak_date": peak, "trough_date": trough, "recovery_date": rec,
                "peak_to_trough": int(pos([trough])[0] - pos([peak])[0]),
                "trough_to_recovery": int(pos([rec])[0] - pos([trough])[0]) if rec is not pd.NaT else None,
                "current_drawdown": dd.iloc[-1],
            })
            for k, (w, m) in enumerate(windows):
                corr[k][:, j] = xs.rolling(w, min_periods=m).corr(y_df[j]).to_numpy()
        return pd.DataFrame(rows), corr

    lv, stats, corrs = vectorised()  # warm-up (first-touch page faults, lazy imports)
    t_vec = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        lv, stats, corrs = vectorised()
        t_vec = min(t_vec, time.perf_counter() - t0)
    t_loop = np.inf
    for _ in range(max(1, repeats // 2)):
        t0 = time.perf_counter()
        loop, loop_corr = per_series_loop()
        t_loop = min(t_loop, time.perf_counter() - t0)
    same_dates = bool(all((loop[c].to_numpy() == stats[c].to_numpy()).all()
                          for c in ("peak_date", "trough_date", "start_date", "end_date")))
    mdd_loop = loop["max_drawdown"].to_numpy()
    err_mdd = float(np.nanmax(np.abs(stats["max_drawdown"].to_numpy() - mdd_loop)))
    err_corr = float(max(np.nanmax(np.abs(c - lc)) for c, lc in zip(corrs, loop_corr, strict=True)))
    return {"n_series": n_series, "n_days": n_days, "vectorised_s": t_vec, "loop_s": t_loop,
            "speedup": t_loop / t_vec, "max_abs_diff_mdd": err_mdd, "max_abs_diff_corr": err_corr,
            "same_dates": same_dates}
