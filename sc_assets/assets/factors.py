"""Size factor model assets (group ``factors``): thin wrappers over :mod:`sc_assets.analytics.size`.

Daily assets (trading-day partitions, single-run backfill) handle every key of a run in one
vectorised pass. ``size_exposures``, ``factor_returns``, ``size_decile_returns`` and
``smb_returns`` are one multi-asset step (:func:`size_factors`; issue 11): each chunk of the run
reads the panel once and derives all four tables from exposures kept in memory. Factor returns
and size portfolios of day t use exposures and caps of the previous session t-1 (METHODS §2);
the t-1 of a chunk's first day is read from the ``size_exposures`` lake partition (one session
before the first key of the run included) or, when not in the lake yet, computed from
``marts.stock_daily_panel`` of t-1.
"""

from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from sc_assets.analytics import size as sz
from sc_assets.assets._metadata import PREVIEW_ROWS, range_metadata, table_metadata
from sc_assets.assets._upstream import INDEX_PANEL
from sc_assets.assets._upstream import STOCK_PANEL as PANEL
from sc_assets.partitions import (
    CalendarRangeError,
    daily_asset_args,
    month_chunks,
    previous_trading_day,
    to_key,
    trading_days_between,
)
from sc_assets.resources import Warehouse

LAYER = "factors"
EXPOSURES = dg.AssetKey([LAYER, "size_exposures"])
FACTOR_RETURNS = dg.AssetKey([LAYER, "factor_returns"])
DECILES = dg.AssetKey([LAYER, "size_decile_returns"])
SMB = dg.AssetKey([LAYER, "smb_returns"])

PANEL_COLUMNS = ["trade_date", "ts_code", "industry", "total_mv", "days_listed", "is_suspended", "is_locked", "ret"]
KINDS = {"pandas", "numpy"}
DEFAULTS = sz.SizeParams()
#: Sessions handled per pass of a backfill: memory stays at one chunk of the panel (~1.25M
#: stock-days at 5,000 stocks) whatever the run's length; every day is computed independently
#: (t-1 exposures are read per chunk), so chunking does not change any result.
CHUNK_SESSIONS = 250


class SizeModelConfig(dg.Config):
    """Overrides of :class:`sc_assets.analytics.size.SizeParams` (METHODS §2–3 defaults)."""

    min_days_listed: int = DEFAULTS.min_days_listed
    winsor: float = DEFAULTS.winsor
    n_deciles: int = DEFAULTS.n_deciles

    def params(self) -> sz.SizeParams:
        return replace(DEFAULTS, min_days_listed=self.min_days_listed, winsor=self.winsor, n_deciles=self.n_deciles)


def _dates(df: pd.DataFrame, col: str = "trade_date") -> pd.DataFrame:
    """``trade_date`` as an Arrow DATE column (written as a Parquet DATE; no Python date objects).

    A shallow copy: only the replaced column is new, ``df`` is unchanged (copy-on-write; a deep
    copy of a ~1M-row exposures chunk cost ~0.05 s; issue 11)."""
    out = df.copy(deep=False)
    days = pd.to_datetime(out[col]).to_numpy().astype("datetime64[D]")
    out[col] = pd.arrays.ArrowExtensionArray(pa.array(days, type=pa.date32()))
    return out


def _read_panel(warehouse: Warehouse, days: list[str]) -> pd.DataFrame:
    return warehouse.read_days("marts", "stock_daily_panel", days, list(PANEL_COLUMNS))


def _chunks(keys: list[str]) -> list[list[str]]:
    return month_chunks(keys, CHUNK_SESSIONS) if keys else []


def _previous(keys: list[str]) -> dict[str, str]:
    out = {}
    for k in keys:
        try:
            out[k] = to_key(previous_trading_day(k))
        except CalendarRangeError:  # the first session of the calendar has no t-1
            continue
    return out


#: Exposure columns the regression and the size portfolios read for t-1 (industry and cap are those of t-1).
EXPOSURE_COLUMNS = ["trade_date", "ts_code", "industry", "total_mv", "size", "nlsize"]


def _merge_info(total: dict, info: dict) -> dict:
    if not total:
        return dict(info)
    lo = total["exposure_window"].split(" .. ")[0] or info["exposure_window"].split(" .. ")[0]
    hi = info["exposure_window"].split(" .. ")[-1] or total["exposure_window"].split(" .. ")[-1]
    return {
        "exposure_days_from_lake": total["exposure_days_from_lake"] + info["exposure_days_from_lake"],
        "exposure_days_recomputed": total["exposure_days_recomputed"] + info["exposure_days_recomputed"],
        "exposure_window": f"{lo} .. {hi}" if lo else "",
    }


def _totals(meta: dict, rows: int, first, last) -> dict:
    """Row count and date range of the whole run on metadata built from its last chunk."""
    meta["dagster/row_count"] = int(rows)
    if first is not None:
        meta["date_range"] = f"{pd.Timestamp(first):%Y-%m-%d} .. {pd.Timestamp(last):%Y-%m-%d}"
    return meta


def _previous_exposures(
    warehouse: Warehouse, chunk: list[str], prev: dict[str, str], exp: pd.DataFrame, params: sz.SizeParams
) -> tuple[pd.DataFrame, dict]:
    """Exposures of the sessions before ``chunk``'s days, in day order (the order a lake read gives).

    A t-1 inside the chunk comes from ``exp`` (computed from this chunk's panel); one outside it
    (the session before the chunk's first day) is read from ``factors.size_exposures`` or, when
    not in the lake yet, computed from ``marts.stock_daily_panel`` of that day."""
    prev_days = sorted(set(prev.values()))
    in_chunk = set(chunk)
    outside = [d for d in prev_days if d not in in_chunk]
    in_lake = warehouse.days_present(LAYER, "size_exposures", outside) if outside else []
    frames = [warehouse.read_days(LAYER, "size_exposures", in_lake, EXPOSURE_COLUMNS)] if in_lake else []
    lake_set = set(in_lake)
    missing = [d for d in outside if d not in lake_set]
    if missing:
        p_missing = _read_panel(warehouse, missing)
        if len(p_missing):
            frames.append(sz.size_exposures(p_missing, params)[EXPOSURE_COLUMNS])
    inside = [d for d in prev_days if d in in_chunk]
    if inside and len(exp):
        codes, days = sz._day_codes(exp["trade_date"])
        rows = days.isin(pd.to_datetime(inside))[codes]
        frames.append(exp[EXPOSURE_COLUMNS] if rows.all() else exp[EXPOSURE_COLUMNS].iloc[np.flatnonzero(rows)])
    if not frames:
        out = pd.DataFrame(columns=EXPOSURE_COLUMNS)
    else:
        out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if outside and inside and max(outside) > min(inside):  # keys with gaps: restore day order
            codes, _ = sz._day_codes(out["trade_date"])
            out = out.iloc[np.argsort(codes, kind="stable")].reset_index(drop=True)
    info = {
        "exposure_days_from_lake": len(in_lake),
        "exposure_days_recomputed": len(missing) + len(inside),
        "exposure_window": f"{prev_days[0]} .. {prev_days[-1]}" if prev_days else "",
    }
    return out, info


def _moments(exp: pd.DataFrame) -> tuple[float, float, int, pd.DatetimeIndex]:
    """barra_moments statistics of one chunk: max |cap-weighted mean| and max |std - 1| over days
    and factors, the fewest stocks in a day, and the chunk's days."""
    codes, days = sz._day_codes(exp["trade_date"])
    g = sz._Groups(codes, len(days))  # day sums over the chunk's day-sorted rows (issue 11)
    cap = exp["total_mv"].to_numpy(dtype=float)
    n = g.count
    cap_sum = g.sum(cap)
    worst_mean = worst_std = 0.0
    for col in sz.STYLE_FACTORS:
        x = exp[col].to_numpy(dtype=float)
        cw = g.sum(x * cap) / cap_sum
        mean = g.sum(x) / n
        sd = np.sqrt(g.sum((x - g.of_rows(mean)) ** 2) / n)
        worst_mean = max(worst_mean, float(np.abs(cw).max()))
        worst_std = max(worst_std, float(np.abs(sd - 1).max()))
    return worst_mean, worst_std, int(n[n > 0].min()), days


EXPOSURES_DESCRIPTION = """Barra-style size exposures per stock-day: LNCAP (size) and non-linear size (nlsize), with SW industry.

Estimation universe of day t: positive total cap, not suspended, listed >= min_days_listed
sessions. size = ln(total_mv) standardized (cap-weighted mean 0, equal-weighted std 1),
winsorized at ±3, standardized again; nlsize = residual of size^3 on size (sqrt-cap WLS),
standardized, winsorized, standardized (METHODS §2; MSCI Barra CNE5). Exposures of t are used
with returns of t+1. Columns: trade_date, ts_code, industry, total_mv (CNY), lncap, size, nlsize.
"""
FACTOR_RETURNS_DESCRIPTION = """Daily factor returns (country, SW industries, size, nlsize) from constrained cross-sectional WLS.

Returns of day t on exposures of t-1 (size_exposures of the previous session: computed in the
same step when t-1 is in the run, otherwise read from the lake, or computed from the panel of
t-1 when not there), weights sqrt(cap_{t-1}), constraint: cap-weighted industry returns sum to
zero (METHODS §3, Barra USE4/CNE5); all days solved in one batched numpy pass. Excluded on day t
(counted in metadata): suspended, limit-locked, listing day, no exposure on t-1, no return, no
industry. Long table: trade_date, factor, factor_type, ret (daily fraction), std_error, t_stat,
and the day's r2 (sqrt-cap weighted), n_stocks, resid_vol.
"""
DECILES_DESCRIPTION = """Daily returns of size-decile portfolios (decile 1 = smallest total cap at t-1), equal- and cap-weighted.

Members of day t: the estimation universe of t-1 (size_exposures of the previous session, as
for factor_returns) with a return on t (locked stocks included, suspended ones drop out); cap
weights = total cap of t-1. Columns: trade_date, decile, ret_ew, ret_cw (daily fractions),
n_stocks, cap_min, cap_max (CNY, t-1).
"""
SMB_DESCRIPTION = """Daily small-minus-big: mean of size deciles 1-3 minus mean of deciles 8-10, equal- and cap-weighted.

From size_decile_returns of the same day (Fama-French-style average of decile portfolios;
three deciles per leg, METHODS §3). Columns: trade_date, small_ew, big_ew, smb_ew, small_cw,
big_cw, smb_cw (daily fractions; positive = small caps beat big caps).
"""
BARRA_MOMENTS = dg.AssetCheckSpec("barra_moments", asset=EXPOSURES, blocking=True,
                                  description="size and nlsize have cap-weighted mean 0 and equal-weighted std 1 each day")
INDUSTRY_CONSTRAINT = dg.AssetCheckSpec("industry_constraint_holds", asset=FACTOR_RETURNS, blocking=True,
                                        description="cap-weighted industry factor returns sum to zero each day")


@dg.multi_asset(
    name="size_factors",
    specs=[
        dg.AssetSpec(EXPOSURES, description=EXPOSURES_DESCRIPTION, group_name=LAYER, deps=[PANEL], kinds=KINDS,
                     code_version="1", skippable=True),
        dg.AssetSpec(FACTOR_RETURNS, description=FACTOR_RETURNS_DESCRIPTION, group_name=LAYER, deps=[PANEL, EXPOSURES],
                     kinds=KINDS, code_version="1", skippable=True),
        dg.AssetSpec(DECILES, description=DECILES_DESCRIPTION, group_name=LAYER, deps=[PANEL, EXPOSURES],
                     kinds=KINDS, code_version="1", skippable=True),
        dg.AssetSpec(SMB, description=SMB_DESCRIPTION, group_name=LAYER, deps=[DECILES], kinds=KINDS,
                     code_version="1", skippable=True),
    ],
    check_specs=[BARRA_MOMENTS, INDUSTRY_CONSTRAINT],
    can_subset=True,
    **daily_asset_args(),
)
def size_factors(context: dg.AssetExecutionContext, config: SizeModelConfig, warehouse: Warehouse):
    """``size_exposures``, ``factor_returns``, ``size_decile_returns`` and ``smb_returns`` in one pass.

    Per chunk of ``CHUNK_SESSIONS`` sessions the panel is read once; exposures are computed and
    kept in memory, and the factor returns, deciles and SMB of the chunk are derived from them
    (issue 11: four assets each re-reading the panel and each other's outputs cost ~3x the reads
    and four Dagster steps). Only the t-1 of the chunk's first day is read from the lake. Any
    subset can be materialized (subsetting); each asset keeps its key, description, checks and
    metadata. ``smb_returns`` alone reads ``size_decile_returns`` from the lake.
    """
    params = config.params()
    keys = sorted(context.partition_keys)
    sel = context.selected_asset_keys
    want_exp, want_fr, want_dec, want_smb = (k in sel for k in (EXPOSURES, FACTOR_RETURNS, DECILES, SMB))
    need_exp = want_exp or want_fr or want_dec
    checks = context.selected_asset_check_keys
    worst_mean = worst_std = worst_ind = 0.0
    rows = {k: 0 for k in (EXPOSURES, FACTOR_RETURNS, DECILES, SMB)}
    n_panel = 0
    min_stocks = None
    first = last = None
    info: dict = {}
    dailies, styles_all, dec_frames, smb_frames = [], [], [], []
    exp_out = fr_out = pd.DataFrame()
    for chunk in _chunks(keys):
        exp = aligned = dec = None
        if need_exp:
            panel = _read_panel(warehouse, chunk)
            n_panel += len(panel)
            exp = sz.size_exposures(panel, params)
        if want_exp:
            if len(exp):
                wm, ws, ms, days = _moments(exp)
                worst_mean, worst_std = max(worst_mean, wm), max(worst_std, ws)
                min_stocks = ms if min_stocks is None else min(min_stocks, ms)
                first = days[0] if first is None else first
                last = days[-1]
            rows[EXPOSURES] += len(exp)
            exp_out = _dates(exp)
            warehouse.write_partitions(LAYER, "size_exposures", exp_out, days=chunk)
        if want_fr or want_dec:
            prev = _previous(chunk)
            exp_prev, chunk_info = _previous_exposures(warehouse, chunk, prev, exp, params)
            info = _merge_info(info, chunk_info)
            if want_fr:
                aligned = sz.align_previous_exposures(panel, exp_prev, prev)
                long, daily = sz.factor_returns(aligned)
                if INDUSTRY_CONSTRAINT.key in checks:
                    worst_ind = max(worst_ind, _constraint_residual(aligned, long))
                fr_out = long.merge(daily[["trade_date", "r2", "n_stocks", "resid_vol"]], on="trade_date", how="left")
                styles_all.append(fr_out.loc[fr_out["factor_type"] == "style", ["trade_date", "factor", "ret"]])
                dailies.append(daily)
                rows[FACTOR_RETURNS] += len(fr_out)
                fr_out = _dates(fr_out)
                warehouse.write_partitions(LAYER, "factor_returns", fr_out, days=chunk)
            if want_dec:
                # the regression's join carries the same trade_date, ret, total_mv_prev and size
                al = aligned if aligned is not None else sz.align_previous_caps(panel, exp_prev, prev)
                dec = sz.size_deciles(al, params.n_deciles)
                del al
                dec_frames.append(dec)
                rows[DECILES] += len(dec)
                warehouse.write_partitions(LAYER, "size_decile_returns", _dates(dec), days=chunk)
            del exp_prev, aligned
        if need_exp:
            del panel, exp
        if want_smb:
            if dec is None:
                dec = warehouse.read_days(LAYER, "size_decile_returns", chunk, ["trade_date", "decile", "ret_ew", "ret_cw"])
            out = _dates(sz.smb(dec, DEFAULTS))
            smb_frames.append(out)
            warehouse.write_partitions(LAYER, "smb_returns", out, days=chunk)
    written = [k for k in (EXPOSURES, FACTOR_RETURNS, DECILES, SMB) if k in sel]
    warehouse.refresh_catalog([(LAYER, k.path[-1]) for k in written])
    context.log.info("size_factors: " + ", ".join(f"{k.path[-1]} {rows[k]} rows" for k in written if k != SMB)
                     + f" over {len(keys)} day(s)")

    if want_exp:
        meta = table_metadata(  # schema and preview from the head: the date range of a ~1M-row chunk costs ~1 s
            exp_out.head(PREVIEW_ROWS),
            parameters=params.to_dict(),
            n_days=len(keys),
            n_panel_rows=int(n_panel),
            n_outside_universe=int(n_panel - rows[EXPOSURES]),
            stocks_per_day_min=min_stocks or 0,
        )
        check = [dg.AssetCheckResult(
            asset_key=EXPOSURES, check_name="barra_moments", passed=bool(worst_mean < 1e-8 and worst_std < 1e-8),
            metadata={"max_abs_cw_mean": worst_mean, "max_abs_std_minus_1": worst_std},
        )] if BARRA_MOMENTS.key in checks else []
        yield dg.MaterializeResult(asset_key=EXPOSURES, check_results=check, metadata=range_metadata(
            context, _totals(meta, rows[EXPOSURES], first, last), asset_key=EXPOSURES, json_once=True))
    if want_fr:
        yield _factor_returns_result(context, params, fr_out, dailies, styles_all, info, rows[FACTOR_RETURNS],
                                     worst_ind, INDUSTRY_CONSTRAINT.key in checks)
    if want_dec:
        dec = _dates(pd.concat(dec_frames, ignore_index=True))
        yield dg.MaterializeResult(asset_key=DECILES, metadata=range_metadata(
            context, table_metadata(dec, parameters=params.to_dict(), **info), asset_key=DECILES, json_once=True))
    if want_smb:
        out = pd.concat(smb_frames, ignore_index=True)
        cum = float(np.prod(1 + out["smb_cw"].dropna()) - 1)
        meta = table_metadata(
            out,
            parameters={"smb_small": list(DEFAULTS.smb_small), "smb_big": list(DEFAULTS.smb_big)},
            cumulative_smb_cw_over_run=cum,
        )
        yield dg.MaterializeResult(asset_key=SMB, metadata=range_metadata(context, meta, asset_key=SMB, json_once=True))


def _factor_returns_result(context, params, out, dailies, styles_all, info, n_rows, worst, check) -> dg.MaterializeResult:
    """factor_returns metadata (exclusions, days without regression, mean fit, last days' style
    returns) and its industry-constraint check result."""
    daily = pd.concat(dailies, ignore_index=True)
    excluded = {r: int(daily[f"n_excluded_{r}"].sum()) for r in sz.EXCLUSION_REASONS}
    no_reg = [to_key(d) for d in daily.loc[daily["n_stocks"] == 0, "trade_date"]]
    styles = pd.concat(styles_all, ignore_index=True).pivot(index="trade_date", columns="factor", values="ret")
    summary = daily[["trade_date", "n_stocks", "r2", "resid_vol"]].merge(
        styles.reset_index().assign(trade_date=lambda d: pd.to_datetime(d["trade_date"])), on="trade_date", how="left"
    )
    meta = table_metadata(
        out,
        preview=summary.tail(10),
        parameters=params.to_dict(),
        excluded_stock_days=excluded,
        days_without_regression=no_reg[:50],
        n_stocks_mean=float(daily["n_stocks"].mean()) if len(daily) else 0.0,
        r2_mean=float(daily["r2"].mean()) if daily["r2"].notna().any() else float("nan"),
        **info,
    )
    first, last = (daily["trade_date"].iloc[0], daily["trade_date"].iloc[-1]) if len(daily) else (None, None)
    return dg.MaterializeResult(
        asset_key=FACTOR_RETURNS,
        metadata=range_metadata(context, _totals(meta, n_rows, first, last), asset_key=FACTOR_RETURNS, json_once=True),
        check_results=[
            dg.AssetCheckResult(
                asset_key=FACTOR_RETURNS,
                check_name="industry_constraint_holds",
                passed=bool(worst < 1e-10),
                metadata={"max_abs_cap_weighted_industry_sum": worst},
            )
        ] if check else [],
    )


def _constraint_residual(aligned: pd.DataFrame, long: pd.DataFrame) -> float:
    """max over days of |sum_k s_k f_k|, s_k = cap share (t-1) of industry k among the day's used stocks."""
    use = aligned["exclusion"].isna().to_numpy()
    if not use.any():
        return 0.0
    codes, days = sz._day_codes(aligned["trade_date"])
    i_codes, i_uniq = sz._factorize(aligned["industry_prev"])
    use = use & (i_codes >= 0)
    T, K = len(days), len(i_uniq)
    cell = codes[use] * K + i_codes[use]
    cap = np.bincount(cell, weights=aligned["total_mv_prev"].to_numpy(dtype=float)[use], minlength=T * K)
    cap = cap.reshape(T, K)
    day_cap = cap.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = cap / day_cap
    ind = long[long["factor_type"] == "industry"]
    f = np.full((T, K), np.nan)
    li = pd.Index(i_uniq).get_indexer(ind["factor"])
    ld = days.get_indexer(pd.to_datetime(ind["trade_date"]))
    ok = (li >= 0) & (ld >= 0)
    f[ld[ok], li[ok]] = ind["ret"].to_numpy(dtype=float)[ok]
    prod = np.nansum(np.where(cap > 0, share * f, np.nan), axis=1)
    has = day_cap[:, 0] > 0
    return float(np.abs(prod[has]).max()) if has.any() else 0.0


# ---- drawdown vs size -------------------------------------------------------------------------


class DrawdownVsSizeConfig(dg.Config):
    """Window and universe of ``drawdown_vs_size`` (defaults: the study's 2024-01-02 -> 2024-02-07)."""

    window_start: str = "2024-01-02"
    window_end: str = "2024-02-07"
    min_days_listed: int = DEFAULTS.min_days_listed
    n_deciles: int = DEFAULTS.n_deciles
    index_codes: list[str] = ["000300.SH", "000905.SH", "000852.SH", "932000.CSI", "8841431.WI"]


@dg.asset(
    key=dg.AssetKey([LAYER, "drawdown_vs_size"]),
    group_name=LAYER,
    deps=[PANEL, INDEX_PANEL],
    kinds=KINDS,
    code_version="1",
)
def drawdown_vs_size(
    context: dg.AssetExecutionContext, config: DrawdownVsSizeConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Window return by cap decile and by index, and its regression on ln(cap): "the fall grows linearly as cap shrinks".

    Window (config, default 2024-01-02 -> 2024-02-07) compounds daily returns from the close of
    the last session before window_start to the close of window_end (the last session on or
    before it). Deciles by total cap at that base close (1 = smallest): n, cap range, median,
    equal- and cap-weighted return; indices: close(end)/close(base) - 1; regression rows: WLS
    (sqrt-cap weights) and OLS slope of window return on ln(cap) with R^2. Reads
    marts.stock_daily_panel and marts.index_daily_panel over the window only.
    """
    sessions = trading_days_between(config.window_start, config.window_end)
    if len(sessions) == 0:
        raise ValueError(f"no trading session in {config.window_start} .. {config.window_end}")
    base, end = to_key(previous_trading_day(sessions[0])), to_key(sessions[-1])
    panel = warehouse.read("marts", "stock_daily_panel", start=base, end=end,
                           columns=["trade_date", "ts_code", "ret", "total_mv", "days_listed"])
    if not (pd.to_datetime(panel["trade_date"]) == pd.Timestamp(base)).any():
        raise ValueError(f"marts.stock_daily_panel has no rows for the window base {base}: materialize it first")
    stock_win = sz.window_returns(panel, base, end, config.min_days_listed)
    idx_win = None
    try:
        idx = warehouse.read("marts", "index_daily_panel", days=[base, end], columns=["trade_date", "index_code", "close"])
        idx = idx[idx["index_code"].isin(config.index_codes)]
        idx_win = sz.index_window_returns(idx, base, end)
    except FileNotFoundError:
        context.log.warning("marts.index_daily_panel not in the lake: table has no index rows")
    out = sz.drawdown_vs_size(stock_win, idx_win, config.n_deciles)
    out.insert(0, "window_end", pd.Timestamp(end).date())
    out.insert(0, "window_base", pd.Timestamp(base).date())
    warehouse.write_table(LAYER, "drawdown_vs_size", out)
    warehouse.refresh_catalog([(LAYER, "drawdown_vs_size")])
    reg = out[out["section"] == "regression"].set_index("group")
    return dg.MaterializeResult(
        metadata=table_metadata(
            out,
            date_column="window_end",
            preview=out.drop(columns=["window_base", "window_end"]),
            parameters={"window_start": config.window_start, "window_end": config.window_end,
                        "window_base_close": base, "min_days_listed": config.min_days_listed,
                        "n_deciles": config.n_deciles, "index_codes": list(config.index_codes),
                        "regression_weights": "wls: sqrt(cap at base); ols: equal"},
            n_stocks=int(len(stock_win)),
            wls_slope_per_ln_cap=float(reg.loc["wls", "slope"]),
            wls_r2=float(reg.loc["wls", "r2"]),
        )
    )
