"""Size factor model assets (group ``factors``): thin wrappers over :mod:`sc_assets.analytics.size`.

Daily assets (trading-day partitions, single-run backfill) handle every key of a run in one
vectorised pass. Factor returns and size portfolios of day t use exposures and caps of the
previous session t-1 (METHODS §2): they read the t-1 ``size_exposures`` partitions from the
lake, including one session before the first key of the run; a t-1 partition that is not in
the lake yet is computed on the fly from ``marts.stock_daily_panel`` of t-1.
"""

from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd

from sc_assets.analytics import size as sz
from sc_assets.assets._metadata import table_metadata
from sc_assets.assets._upstream import INDEX_PANEL
from sc_assets.assets._upstream import STOCK_PANEL as PANEL
from sc_assets.partitions import (
    CalendarRangeError,
    daily_asset_args,
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


class SizeModelConfig(dg.Config):
    """Overrides of :class:`sc_assets.analytics.size.SizeParams` (METHODS §2–3 defaults)."""

    min_days_listed: int = DEFAULTS.min_days_listed
    winsor: float = DEFAULTS.winsor
    n_deciles: int = DEFAULTS.n_deciles

    def params(self) -> sz.SizeParams:
        return replace(DEFAULTS, min_days_listed=self.min_days_listed, winsor=self.winsor, n_deciles=self.n_deciles)


def _dates(df: pd.DataFrame, col: str = "trade_date") -> pd.DataFrame:
    """``trade_date`` as Python dates (written as a Parquet DATE)."""
    out = df.copy()
    out[col] = pd.to_datetime(out[col]).dt.date
    return out


def _read_panel(warehouse: Warehouse, days: list[str], columns=PANEL_COLUMNS) -> pd.DataFrame:
    try:
        return warehouse.read("marts", "stock_daily_panel", days=days, columns=columns)
    except FileNotFoundError:
        return pd.DataFrame(columns=columns)


def _previous(keys: list[str]) -> dict[str, str]:
    out = {}
    for k in keys:
        try:
            out[k] = to_key(previous_trading_day(k))
        except CalendarRangeError:  # the first session of the calendar has no t-1
            continue
    return out


def _aligned(
    context: dg.AssetExecutionContext, warehouse: Warehouse, params: sz.SizeParams
) -> tuple[pd.DataFrame, dict]:
    """Panel rows of the run's days joined to exposures of t-1 (from the lake or recomputed)."""
    keys = list(context.partition_keys)
    prev = _previous(keys)
    prev_days = sorted(set(prev.values()))
    exp = pd.DataFrame()
    in_lake = [d for d in prev_days if warehouse.partition_path(LAYER, "size_exposures", d).exists()]
    if in_lake:
        exp = warehouse.read(LAYER, "size_exposures", days=in_lake)
    missing = [d for d in prev_days if d not in set(in_lake)]
    if missing:
        p_missing = _read_panel(warehouse, missing)
        if len(p_missing):
            exp = pd.concat([exp, sz.size_exposures(p_missing, params)], ignore_index=True)
    if exp.empty:
        exp = pd.DataFrame(columns=["trade_date", "ts_code", "industry", "total_mv", "size", "nlsize"])
    panel = _read_panel(warehouse, keys)
    aligned = sz.align_previous_exposures(panel, exp, prev)
    info = {
        "exposure_days_from_lake": len(in_lake),
        "exposure_days_recomputed": len(missing),
        "exposure_window": f"{prev_days[0]} .. {prev_days[-1]}" if prev_days else "",
    }
    return aligned, info


# ---- size_exposures -----------------------------------------------------------------------


@dg.asset(
    key=EXPOSURES,
    group_name=LAYER,
    **daily_asset_args(),
    deps=[PANEL],
    kinds=KINDS,
    code_version="1",
    check_specs=[dg.AssetCheckSpec("barra_moments", asset=EXPOSURES, blocking=True,
                                   description="size and nlsize have cap-weighted mean 0 and equal-weighted std 1 each day")],
)
def size_exposures(
    context: dg.AssetExecutionContext, config: SizeModelConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Barra-style size exposures per stock-day: LNCAP (size) and non-linear size (nlsize), with SW industry.

    Estimation universe of day t: positive total cap, not suspended, listed >= min_days_listed
    sessions. size = ln(total_mv) standardized (cap-weighted mean 0, equal-weighted std 1),
    winsorized at ±3, standardized again; nlsize = residual of size^3 on size (sqrt-cap WLS),
    standardized, winsorized, standardized (METHODS §2; MSCI Barra CNE5). Exposures of t are used
    with returns of t+1. Columns: trade_date, ts_code, industry, total_mv (CNY), lncap, size, nlsize.
    """
    params = config.params()
    keys = list(context.partition_keys)
    panel = _read_panel(warehouse, keys, ["trade_date", "ts_code", "industry", "total_mv", "days_listed", "is_suspended"])
    exp = _dates(sz.size_exposures(panel, params))
    warehouse.write_partitions(LAYER, "size_exposures", exp, days=keys)
    warehouse.refresh_catalog([(LAYER, "size_exposures")])

    worst_mean = worst_std = 0.0
    if len(exp):
        g = exp.groupby("trade_date")
        cap_sum = g["total_mv"].sum()
        for col in sz.STYLE_FACTORS:
            cw = (exp[col] * exp["total_mv"]).groupby(exp["trade_date"]).sum() / cap_sum
            sd = g[col].std(ddof=0)
            worst_mean = max(worst_mean, float(cw.abs().max()))
            worst_std = max(worst_std, float((sd - 1).abs().max()))
    ok = worst_mean < 1e-8 and worst_std < 1e-8
    context.log.info(f"size_exposures: {len(exp)} rows over {len(keys)} day(s)")
    return dg.MaterializeResult(
        metadata=table_metadata(
            exp,
            parameters=params.to_dict(),
            n_days=len(keys),
            n_panel_rows=int(len(panel)),
            n_outside_universe=int(len(panel) - len(exp)),
            stocks_per_day_min=int(exp.groupby("trade_date").size().min()) if len(exp) else 0,
        ),
        check_results=[
            dg.AssetCheckResult(
                check_name="barra_moments",
                passed=bool(ok),
                metadata={"max_abs_cw_mean": worst_mean, "max_abs_std_minus_1": worst_std},
            )
        ],
    )


# ---- factor_returns -----------------------------------------------------------------------


@dg.asset(
    key=FACTOR_RETURNS,
    group_name=LAYER,
    **daily_asset_args(),
    deps=[PANEL, EXPOSURES],
    kinds=KINDS,
    code_version="1",
    check_specs=[dg.AssetCheckSpec("industry_constraint_holds", asset=FACTOR_RETURNS, blocking=True,
                                   description="cap-weighted industry factor returns sum to zero each day")],
)
def factor_returns(
    context: dg.AssetExecutionContext, config: SizeModelConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Daily factor returns (country, SW industries, size, nlsize) from constrained cross-sectional WLS.

    Returns of day t on exposures of t-1 (reads size_exposures of the previous session, one
    session before the run's first key included), weights sqrt(cap_{t-1}), constraint: cap-weighted
    industry returns sum to zero (METHODS §3, Barra USE4/CNE5); all days solved in one batched
    numpy pass. Excluded on day t (counted in metadata): suspended, limit-locked, listing day,
    no exposure on t-1, no return, no industry. Long table: trade_date, factor, factor_type, ret
    (daily fraction), std_error, t_stat, and the day's r2 (sqrt-cap weighted), n_stocks, resid_vol.
    """
    params = config.params()
    keys = list(context.partition_keys)
    aligned, info = _aligned(context, warehouse, params)
    long, daily = sz.factor_returns(aligned)
    out = long.merge(daily[["trade_date", "r2", "n_stocks", "resid_vol"]], on="trade_date", how="left")
    out = _dates(out)
    warehouse.write_partitions(LAYER, "factor_returns", out, days=keys)
    warehouse.refresh_catalog([(LAYER, "factor_returns")])

    # constraint check on what was written: sum_k s_k f_k with s_k = cap share of t-1 among used stocks
    use = aligned[aligned["exclusion"].isna()]
    worst = 0.0
    if len(use):
        s = use.groupby([pd.to_datetime(use["trade_date"]), "industry_prev"])["total_mv_prev"].sum()
        s = s / s.groupby(level=0).transform("sum")
        ind = long[long["factor_type"] == "industry"].set_index(["trade_date", "factor"])["ret"]
        ind.index = ind.index.set_names(["trade_date", "industry_prev"])
        prod = (s * ind.reindex(s.index)).groupby(level=0).sum()
        worst = float(prod.abs().max()) if len(prod) else 0.0
    excluded = {r: int(daily[f"n_excluded_{r}"].sum()) for r in sz.EXCLUSION_REASONS}
    no_reg = [to_key(d) for d in daily.loc[daily["n_stocks"] == 0, "trade_date"]]
    styles = out[out["factor_type"] == "style"].pivot(index="trade_date", columns="factor", values="ret")
    summary = daily[["trade_date", "n_stocks", "r2", "resid_vol"]].merge(
        styles.reset_index().assign(trade_date=lambda d: pd.to_datetime(d["trade_date"])), on="trade_date", how="left"
    )
    return dg.MaterializeResult(
        metadata=table_metadata(
            out,
            preview=summary.tail(10),
            parameters=params.to_dict(),
            excluded_stock_days=excluded,
            days_without_regression=no_reg[:50],
            n_stocks_mean=float(daily["n_stocks"].mean()) if len(daily) else 0.0,
            r2_mean=float(daily["r2"].mean()) if daily["r2"].notna().any() else float("nan"),
            **info,
        ),
        check_results=[
            dg.AssetCheckResult(
                check_name="industry_constraint_holds",
                passed=bool(worst < 1e-10),
                metadata={"max_abs_cap_weighted_industry_sum": worst},
            )
        ],
    )


# ---- size portfolios --------------------------------------------------------------------------


@dg.asset(
    key=DECILES,
    group_name=LAYER,
    **daily_asset_args(),
    deps=[PANEL, EXPOSURES],
    kinds=KINDS,
    code_version="1",
)
def size_decile_returns(
    context: dg.AssetExecutionContext, config: SizeModelConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Daily returns of size-decile portfolios (decile 1 = smallest total cap at t-1), equal- and cap-weighted.

    Members of day t: the estimation universe of t-1 (size_exposures of the previous session)
    with a return on t (locked stocks included, suspended ones drop out); cap weights = total
    cap of t-1. Columns: trade_date, decile, ret_ew, ret_cw (daily fractions), n_stocks,
    cap_min, cap_max (CNY, t-1).
    """
    params = config.params()
    keys = list(context.partition_keys)
    aligned, info = _aligned(context, warehouse, params)
    dec = _dates(sz.size_deciles(aligned, params.n_deciles))
    warehouse.write_partitions(LAYER, "size_decile_returns", dec, days=keys)
    warehouse.refresh_catalog([(LAYER, "size_decile_returns")])
    return dg.MaterializeResult(
        metadata=table_metadata(dec, parameters=params.to_dict(), **info)
    )


@dg.asset(
    key=SMB,
    group_name=LAYER,
    **daily_asset_args(),
    deps=[DECILES],
    kinds=KINDS,
    code_version="1",
)
def smb_returns(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Daily small-minus-big: mean of size deciles 1-3 minus mean of deciles 8-10, equal- and cap-weighted.

    From size_decile_returns of the same day (Fama-French-style average of decile portfolios;
    three deciles per leg, METHODS §3). Columns: trade_date, small_ew, big_ew, smb_ew, small_cw,
    big_cw, smb_cw (daily fractions; positive = small caps beat big caps).
    """
    params = DEFAULTS
    keys = list(context.partition_keys)
    try:
        dec = warehouse.read(LAYER, "size_decile_returns", days=keys)
    except FileNotFoundError:
        dec = pd.DataFrame(columns=["trade_date", "decile", "ret_ew", "ret_cw"])
    out = _dates(sz.smb(dec, params))
    warehouse.write_partitions(LAYER, "smb_returns", out, days=keys)
    warehouse.refresh_catalog([(LAYER, "smb_returns")])
    cum = float(np.prod(1 + out["smb_cw"].dropna()) - 1)
    return dg.MaterializeResult(
        metadata=table_metadata(
            out,
            parameters={"smb_small": list(params.smb_small), "smb_big": list(params.smb_big)},
            cumulative_smb_cw_over_run=cum,
        )
    )


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
