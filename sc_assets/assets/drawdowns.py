"""Drawdown tables (group ``drawdowns``): thin wrappers over :mod:`sc_assets.analytics.drawdowns`
and :mod:`sc_assets.analytics.correlations` (METHODS §4–§6, issue 7).

All assets here are unpartitioned tables that read a window of the lake (declared in each
description and in the ``window`` metadata): ``marts.index_daily_panel`` and
``marts.stock_daily_panel`` (partitioned, read by date range) and ``marts.fund_nav_panel``
(a weekly table). Each computes every series in one vectorised pass and replaces its table.
No ``from __future__ import annotations`` here: Dagster resolves the Config annotations at
definition time.
"""

import json
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd

from sc_assets.analytics import correlations as cr
from sc_assets.analytics import drawdowns as dd
from sc_assets.assets._metadata import markdown_preview, table_metadata
from sc_assets.assets._upstream import FUND_NAV, INDEX_PANEL, INDEX_WEIGHT, STOCK_PANEL
from sc_assets.partitions import CalendarRangeError, previous_trading_day, trading_days_between
from sc_assets.resources import Warehouse

LAYER = "drawdowns"
KINDS = {"pandas", "numpy"}

STYLE_NAV = dg.AssetKey([LAYER, "style_relative_nav"])
STYLE_TABLE = dg.AssetKey([LAYER, "style_drawdown_table"])
INDEX_TABLE = dg.AssetKey([LAYER, "index_drawdown_table"])
NEUTRAL_INDEX = dg.AssetKey([LAYER, "neutral_index"])
NEUTRAL_WORST = dg.AssetKey([LAYER, "neutral_index_worst_weeks"])
EXCESS_TABLE = dg.AssetKey([LAYER, "excess_drawdown_table"])
EXCESS_SUMMARY = dg.AssetKey([LAYER, "excess_drawdown_summary"])
EXCESS_CORR = dg.AssetKey([LAYER, "excess_correlation"])
EXCESS_CORR_MEDIAN = dg.AssetKey([LAYER, "excess_correlation_median"])

D = dd.DEFAULTS
C = cr.DEFAULTS
DATE_COLS = ("trade_date", "start_date", "end_date", "peak_date", "trough_date", "recovery_date",
             "week_start", "worst_since", "median_trough_date", "window_start", "window_end")


# ---- helpers -------------------------------------------------------------------------------------
def _as_dates(df: pd.DataFrame) -> pd.DataFrame:
    """Date-like columns as Python dates (Parquet DATE); nulls stay null."""
    out = df.copy()
    for c in DATE_COLS:
        if c in out.columns:
            s = pd.to_datetime(out[c])
            out[c] = pd.Series(np.where(s.notna(), s.dt.date, None), index=out.index, dtype=object)
    return out


def _index_closes(warehouse: Warehouse, codes: list[str], start: str | None = None,
                  end: str | None = None) -> pd.DataFrame:
    """Daily closes (rows = sessions, columns = index codes) from marts.index_daily_panel (start/end:
    YYYY-MM-DD or dates, inclusive; None = open)."""
    raw = warehouse.query("marts", "index_daily_panel",
                          "SELECT trade_date, index_code, close FROM files WHERE index_code IN (SELECT unnest($codes))",
                          start=start, end=end, codes=[str(c) for c in codes])
    if raw.empty:
        return pd.DataFrame(columns=codes, dtype="float64")
    raw = raw.assign(trade_date=pd.to_datetime(raw["trade_date"]))
    wide = raw.pivot_table(index="trade_date", columns="index_code", values="close", aggfunc="last")
    wide.columns = [str(c) for c in wide.columns]
    wide.columns.name = None
    try:  # on the SSE session grid, so durations count trading days and gaps stay NaN
        grid = trading_days_between(wide.index.min(), wide.index.max())
        wide = wide.reindex(grid.union(wide.index))
    except CalendarRangeError:
        pass
    return wide.reindex(columns=codes).sort_index().astype("float64")


def _fund_nav(warehouse: Warehouse, strategy: str, start: str | None = None) -> pd.DataFrame:
    nav = warehouse.read("marts", "fund_nav_panel")
    nav = nav.assign(trade_date=pd.to_datetime(nav["trade_date"]))
    nav = nav[nav["strategy"].astype(str) == strategy]
    if start:
        nav = nav[nav["trade_date"] >= pd.Timestamp(start)]
    return nav.sort_values(["fund_id", "trade_date"]).reset_index(drop=True)


def _span(df: pd.DataFrame, col: str = "trade_date") -> str:
    if df.empty or col not in df:
        return ""
    d = pd.to_datetime(df[col])
    return f"{d.min():%Y-%m-%d} .. {d.max():%Y-%m-%d}"


def _meta(df: pd.DataFrame, preview: pd.DataFrame | None = None, max_rows: int = 40, **extra) -> dict:
    """table_metadata with the whole ``preview`` frame (up to ``max_rows``) as the Markdown preview."""
    meta = table_metadata(df, preview=preview, **extra)
    if preview is not None:
        meta["preview"] = dg.MetadataValue.md(markdown_preview(preview, n=max_rows))
    return meta


def _pct_cols(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = df.copy()
    for c in cols:
        if c in out:
            out[c] = (100.0 * out[c].astype("float64")).round(2)
    return out


# ---- style_relative_nav / style_drawdown_table ----------------------------------------------------
class StyleConfig(dg.Config):
    """Small/large index pairs as "SMALL/LARGE" (default: micro-cap, CSI2000 and CSI1000 vs
    CSI300) and the first day of the relative NAV."""

    pairs: list[str] = [f"{s}/{l_}" for s, l_ in D.style_pairs]
    start: str = D.style_start

    def parsed(self) -> list[tuple[str, str]]:
        out = []
        for p in self.pairs:
            small, _, large = p.partition("/")
            if not small or not large:
                raise ValueError(f"pair {p!r} is not SMALL/LARGE, e.g. 932000.CSI/000300.SH")
            out.append((small.strip(), large.strip()))
        return out


@dg.asset(key=STYLE_NAV, group_name=LAYER, deps=[INDEX_PANEL], kinds=KINDS, code_version="1")
def style_relative_nav(context: dg.AssetExecutionContext, config: StyleConfig,
                       warehouse: Warehouse) -> dg.MaterializeResult:
    """Small/large relative NAV per index pair since `start` (default 2015-01-05) and its drawdown.

    relative_nav_t = (S_t / S_0) / (L_t / L_0) from marts.index_daily_panel closes, base = the
    first session on or after `start` where both indices have a close (METHODS §4–5, same formula
    as the relative excess NAV); drawdown = relative_nav / running peak − 1 (fraction <= 0).
    Window: every session from `start` in the lake. Long table: trade_date, pair, small, large,
    relative_nav, drawdown; sessions where either index has no close are left out.
    """
    pairs = config.parsed()
    codes = sorted({c for p in pairs for c in p})
    closes = _index_closes(warehouse, codes, start=config.start)
    names = [f"{s}/{l_}" for s, l_ in pairs]
    small = pd.DataFrame({n: closes[s] for n, (s, _) in zip(names, pairs, strict=True)}, index=closes.index)
    large = pd.DataFrame({n: closes[l_] for n, (_, l_) in zip(names, pairs, strict=True)}, index=closes.index)
    rel = dd.excess_nav(small, large, "relative")
    draw = dd.drawdown_frame(rel)
    long = pd.DataFrame({
        "trade_date": np.repeat(rel.index.to_numpy(), len(names)),
        "pair": np.tile(np.asarray(names, dtype=object), len(rel)),
        "relative_nav": rel.to_numpy().reshape(-1),
        "drawdown": draw.to_numpy().reshape(-1),
    }).dropna(subset=["relative_nav"])
    lookup = dict(zip(names, pairs, strict=True))
    long.insert(2, "small", long["pair"].map(lambda n: lookup[n][0]).astype(str))
    long.insert(3, "large", long["pair"].map(lambda n: lookup[n][1]).astype(str))
    long["pair"] = long["pair"].astype(str)
    long = _as_dates(long.reset_index(drop=True))
    warehouse.write_table(LAYER, "style_relative_nav", long)
    warehouse.refresh_catalog([(LAYER, "style_relative_nav")])
    missing = [c for c in codes if closes[c].isna().all()] if len(closes) else codes
    if missing:
        context.log.warning(f"style_relative_nav: no closes in marts.index_daily_panel for {missing}")
    latest = long.groupby("pair").tail(1)
    return dg.MaterializeResult(metadata=table_metadata(
        long, preview=latest, parameters={"pairs": config.pairs, "start": config.start},
        window=_span(long), missing_indices=missing))


class StyleTableConfig(dg.Config):
    """Crash window for the window columns (METHODS §3 default 2024-01-02 .. 2024-02-07; the
    window's base is the last session before it)."""

    window_start: str = D.window_start
    window_end: str = D.window_end


@dg.asset(key=STYLE_TABLE, group_name=LAYER, deps=[STYLE_NAV], kinds=KINDS, code_version="1")
def style_drawdown_table(context: dg.AssetExecutionContext, config: StyleTableConfig,
                         warehouse: Warehouse) -> dg.MaterializeResult:
    """Per small/large pair: max drawdown of the relative NAV with peak/trough/recovery dates and durations.

    Reads the whole drawdowns.style_relative_nav table. max_drawdown is a fraction (−0.30 =
    −30%); peak = last session at the running peak before the trough, recovery = first session
    after the trough back at the peak (null if none); durations in trading days (METHODS §4).
    Also the relative return and max drawdown inside the crash window (base = the last session
    before window_start).
    """
    nav = warehouse.read(LAYER, "style_relative_nav")
    nav = nav.assign(trade_date=pd.to_datetime(nav["trade_date"]))
    wide = nav.pivot(index="trade_date", columns="pair", values="relative_nav").sort_index()
    wide.columns.name = None
    stats = dd.drawdown_stats(wide)
    ws, we = pd.Timestamp(config.window_start), pd.Timestamp(config.window_end)
    before = wide.index[wide.index < ws]
    win = wide[(wide.index >= (before[-1] if len(before) else ws)) & (wide.index <= we)]
    wst = dd.drawdown_stats(win)
    pairs = nav.drop_duplicates("pair").set_index("pair")[["small", "large"]]
    out = stats.rename(columns={"peak_to_trough": "peak_to_trough_days",
                                "trough_to_recovery": "trough_to_recovery_days"})
    out = out.assign(window_return=wst["total_return"], window_max_drawdown=wst["max_drawdown"])
    out = pairs.join(out, how="right").rename_axis("pair").reset_index()
    out = out.drop(columns=["start_value"]).rename(columns={"end_value": "relative_nav"})
    out = _as_dates(out)
    warehouse.write_table(LAYER, "style_drawdown_table", out)
    warehouse.refresh_catalog([(LAYER, "style_drawdown_table")])
    preview = _pct_cols(out[["pair", "max_drawdown", "peak_date", "trough_date", "recovery_date",
                             "peak_to_trough_days", "trough_to_recovery_days", "current_drawdown",
                             "window_return", "window_max_drawdown"]],
                        ["max_drawdown", "current_drawdown", "window_return", "window_max_drawdown"])
    return dg.MaterializeResult(metadata=_meta(
        out, date_column="end_date", preview=preview,
        parameters={"window_start": config.window_start, "window_end": config.window_end},
        window=_span(nav), units="fractions in the table; percent in the preview"))


# ---- index_drawdown_table ---------------------------------------------------------------------------
class IndexTableConfig(dg.Config):
    """Indices shown, the window (default the crash window 2024-01-02 .. 2024-02-07) and the
    number of cap buckets (deciles by total cap at the window base, 1 = smallest)."""

    index_codes: list[str] = list(D.index_codes)
    window_start: str = D.window_start
    window_end: str = D.window_end
    n_deciles: int = D.n_deciles


def _index_median_logcap(warehouse: Warehouse, codes: list[str], base: pd.Timestamp,
                         caps: pd.Series) -> dict[str, float]:
    """Median ln(total cap) of each index's constituents (latest staging.stg_index_weight on or
    before ``base``); indices without weights are left out (NaN in the table)."""
    if not warehouse.exists("staging", "stg_index_weight"):
        return {}
    # Two passes over the partitions on or before the base day (``query`` keeps the window's rows):
    # the latest day of each index (two narrow columns), then the constituents of those days only.
    # An index without weights (e.g. the micro-cap index) still needs the whole first pass.
    codes = [str(c) for c in codes]
    try:
        latest = warehouse.query("staging", "stg_index_weight",
                                 "SELECT index_code, max(trade_date) AS trade_date FROM files "
                                 "WHERE index_code IN (SELECT unnest($codes)) GROUP BY index_code",
                                 end=base, codes=codes)
    except FileNotFoundError:  # no weights on or before the base day
        return {}
    if latest.empty:
        return {}
    days = pd.to_datetime(latest["trade_date"])
    w = warehouse.query("staging", "stg_index_weight",
                        "SELECT w.index_code, w.con_code FROM files w JOIN (SELECT unnest($codes) AS index_code, "
                        "unnest($days)::DATE AS trade_date) l USING (index_code, trade_date)",
                        start=days.min(), end=days.max(), codes=latest["index_code"].astype(str).tolist(),
                        days=days.dt.strftime("%Y-%m-%d").tolist())
    logcap = np.log(caps[caps > 0])
    return {str(code): float(logcap.reindex(g["con_code"].astype(str)).median())
            for code, g in w.groupby("index_code")}


@dg.asset(key=INDEX_TABLE, group_name=LAYER, deps=[INDEX_PANEL, STOCK_PANEL, INDEX_WEIGHT], kinds=KINDS,
          code_version="1")
def index_drawdown_table(context: dg.AssetExecutionContext, config: IndexTableConfig,
                         warehouse: Warehouse) -> dg.MaterializeResult:
    """Return and max drawdown over the crash window for each index and each cap decile, with median log cap (study Fig 2).

    Window: window_start .. window_end (default 2024-01-02 .. 2024-02-07), based on the close of
    the last session before it; reads marts.index_daily_panel and marts.stock_daily_panel over
    base .. end, and staging.stg_index_weight (constituents on the base day) for the indices'
    median log cap. Deciles by total cap on the base day (1 = smallest), equal-weighted daily
    returns of their stocks (a suspended stock-day is left out of that day's mean), level from 1
    at the base. Columns: kind, series, n_stocks, median_log_cap (ln CNY), window_return,
    max_drawdown (fractions), peak/trough/recovery dates.
    """
    base = previous_trading_day(config.window_start)
    end = pd.Timestamp(config.window_end)
    closes = _index_closes(warehouse, list(config.index_codes), start=base, end=end)
    closes = closes[(closes.index >= base) & (closes.index <= end)]
    panel = warehouse.read("marts", "stock_daily_panel", start=base, end=end,
                           columns=["trade_date", "ts_code", "total_mv", "ret"])
    panel = panel.assign(trade_date=pd.to_datetime(panel["trade_date"]), ts_code=panel["ts_code"].astype(str))
    caps = panel[panel["trade_date"] == base].set_index("ts_code")["total_mv"].astype("float64")
    rets = panel[panel["trade_date"] > base].pivot(index="trade_date", columns="ts_code", values="ret")
    rets = rets.astype("float64")
    logcap = _index_median_logcap(warehouse, list(config.index_codes), base, caps)
    out = dd.window_table(closes, rets, caps, config.n_deciles, logcap)
    out.insert(0, "window_start", pd.Timestamp(config.window_start))
    out.insert(1, "window_end", end)
    out = _as_dates(out)
    warehouse.write_table(LAYER, "index_drawdown_table", out)
    warehouse.refresh_catalog([(LAYER, "index_drawdown_table")])
    preview = _pct_cols(out[["kind", "series", "n_stocks", "median_log_cap", "window_return", "max_drawdown",
                             "trough_date"]], ["window_return", "max_drawdown"])
    params = {"index_codes": list(config.index_codes), "window_start": config.window_start,
              "window_end": config.window_end, "n_deciles": config.n_deciles}
    return dg.MaterializeResult(metadata=_meta(
        out, date_column="window_end", preview=preview, parameters=params, window=f"{base:%Y-%m-%d} (base) .. {end:%Y-%m-%d}",
        n_stocks=int(len(caps)), units="fractions in the table; percent in the preview"))


# ---- neutral_index / neutral_index_worst_weeks ------------------------------------------------------
class NeutralConfig(dg.Config):
    """Strategy of the products in the index, number of worst weeks, optional first NAV date."""

    strategy: str = "market_neutral"
    n_worst_weeks: int = D.n_worst_weeks
    start: str = ""


@dg.multi_asset(
    specs=[
        dg.AssetSpec(NEUTRAL_INDEX, group_name=LAYER, deps=[FUND_NAV], kinds=KINDS, code_version="1",
                     description="Equal-weighted market-neutral fund index from weekly NAVs (base 1), with "
                                 "weekly return, products counted and drawdown."),
        dg.AssetSpec(NEUTRAL_WORST, group_name=LAYER, deps=[FUND_NAV], kinds=KINDS, code_version="1",
                     description="The N worst weeks of the market-neutral fund index (study: -5.40% in the "
                                 "week ending 2024-02-08, worst since 2015)."),
    ],
)
def neutral_index_worst_weeks(context: dg.AssetExecutionContext, config: NeutralConfig, warehouse: Warehouse):
    """Market-neutral fund index and its worst weeks (METHODS §4).

    Reads every row of marts.fund_nav_panel with the configured strategy (from `start` if set).
    Weeks are Monday–Sunday, labelled by the last SSE session (the Spring Festival week of 2024
    ends 2024-02-08); a NAV dated inside a week is snapped to its label. Week w's return = mean of
    NAV_w / NAV_{w-1} − 1 over products with a NAV at both ends of the week; index = cumulative
    product from 1. worst_since = the latest earlier week at least as bad (null = worst on record).
    """
    nav = _fund_nav(warehouse, config.strategy, config.start or None)
    wide = dd.weekly_panel(nav, "fund_id", "trade_date", "adj_nav")
    index = dd.neutral_index(wide).rename_axis("trade_date").reset_index()
    worst = dd.worst_weeks(index.set_index("trade_date"), config.n_worst_weeks)
    index = _as_dates(index)
    worst = _as_dates(worst)
    warehouse.write_table(LAYER, "neutral_index", index)
    warehouse.write_table(LAYER, "neutral_index_worst_weeks", worst)
    warehouse.refresh_catalog([(LAYER, "neutral_index"), (LAYER, "neutral_index_worst_weeks")])
    params = {"strategy": config.strategy, "n_worst_weeks": config.n_worst_weeks, "start": config.start or None,
              "n_products": int(wide.shape[1])}
    yield dg.MaterializeResult(asset_key=NEUTRAL_INDEX, metadata=table_metadata(
        index, preview=index.tail(10), parameters=params, window=_span(nav)))
    yield dg.MaterializeResult(asset_key=NEUTRAL_WORST, metadata=_meta(
        worst, preview=_pct_cols(worst, ["ret", "drawdown"]), parameters=params, window=_span(nav),
        worst_week=(f"{worst['trade_date'].iloc[0]}: {100 * worst['ret'].iloc[0]:.2f}%" if len(worst) else "")))


# ---- excess_drawdown_table / excess_drawdown_summary ------------------------------------------------
class ExcessConfig(dg.Config):
    """Excess NAV method ("relative" default, or "arithmetic"), first NAV date of the window
    (default 2023-01-01; "" = each product's whole history), strategy, and the AUM bucket of the
    Table 1 preview."""

    method: str = D.excess_method
    start: str = D.excess_start or ""
    strategy: str = "index_enhancement"
    table1_bucket: str = D.aum_bucket_table1


PRODUCT_COLS = ["fund_id", "name", "manager", "manager_aum_bucket", "benchmark"]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(EXCESS_TABLE, group_name=LAYER, deps=[FUND_NAV], kinds=KINDS, code_version="1",
                     description="Per index-enhancement product: excess NAV max drawdown with peak, trough and "
                                 "recovery dates and durations in weeks (study Table 1)."),
        dg.AssetSpec(EXCESS_SUMMARY, group_name=LAYER, deps=[FUND_NAV], kinds=KINDS, code_version="1",
                     description="Medians and quartiles of the excess max drawdown by benchmark, by manager AUM "
                                 "bucket and by both (study: 12.5% CSI500, 9.85% CSI1000, managers >= 10bn)."),
    ],
)
def excess_drawdown_table(context: dg.AssetExecutionContext, config: ExcessConfig, warehouse: Warehouse):
    """Excess max drawdowns of index-enhancement products and their summary (METHODS §5, Table 1).

    Reads marts.fund_nav_panel rows of the strategy from `start` (default 2023-01-01). Excess NAV
    per product on the week grid: relative E_t = (NAV_t/NAV_0)/(B_t/B_0) with B = bench_close on
    the NAV date (default), or arithmetic 1 + Σ (fund_ret − bench_ret); base = the product's first
    NAV in the window. Max drawdown as a negative fraction, durations in weeks.
    """
    if config.method not in dd.EXCESS_METHODS:
        raise ValueError(f"method must be one of {dd.EXCESS_METHODS}, got {config.method!r}")
    nav = _fund_nav(warehouse, config.strategy, config.start or None)
    nav = nav[nav["benchmark"].notna()]
    fnav = dd.weekly_panel(nav, "fund_id", "trade_date", "adj_nav")
    bench = dd.weekly_panel(nav, "fund_id", "trade_date", "bench_close").reindex(index=fnav.index,
                                                                                 columns=fnav.columns)
    excess = dd.excess_nav(fnav, bench, config.method)
    stats = dd.drawdown_stats(excess).rename(columns={
        "peak_to_trough": "peak_to_trough_weeks", "trough_to_recovery": "trough_to_recovery_weeks",
        "total_return": "excess_return", "n_obs": "n_weeks"}).drop(columns=["start_value", "end_value"])
    info = nav.drop_duplicates("fund_id", keep="last").set_index("fund_id")[PRODUCT_COLS[1:]]
    per = info.join(stats, how="inner").rename_axis("fund_id").reset_index()
    for c in PRODUCT_COLS:
        per[c] = per[c].astype(str)
    per.insert(5, "excess_method", config.method)
    per = per.sort_values(["benchmark", "max_drawdown"]).reset_index(drop=True)
    summary = dd.excess_drawdown_summary(per)
    table1 = dd.table1_frame(per, config.table1_bucket or None)
    per_out, summary_out = _as_dates(per), _as_dates(summary)
    warehouse.write_table(LAYER, "excess_drawdown_table", per_out)
    warehouse.write_table(LAYER, "excess_drawdown_summary", summary_out)
    warehouse.refresh_catalog([(LAYER, "excess_drawdown_table"), (LAYER, "excess_drawdown_summary")])
    params = {"method": config.method, "start": config.start or None, "strategy": config.strategy,
              "table1_bucket": config.table1_bucket}
    headline = summary[summary["group"] == "benchmark"].set_index("benchmark")["median"]
    medians = {str(k): round(100 * float(v), 2) for k, v in headline.items()}
    t1 = summary[(summary["group"] == "benchmark_x_aum_bucket")
                 & (summary["manager_aum_bucket"] == config.table1_bucket)].set_index("benchmark")["median"]
    table1_medians = {str(k): round(100 * float(v), 2) for k, v in t1.items()}
    context.log.info(f"excess_drawdown_table: {len(per)} products; median excess MDD % by benchmark {medians}")
    yield dg.MaterializeResult(asset_key=EXCESS_TABLE, metadata=_meta(
        per_out, date_column="end_date", preview=table1, parameters=params, window=_span(nav),
        median_excess_mdd_pct=medians, table1_median_excess_mdd_pct=table1_medians,
        per_product_preview=dg.MetadataValue.md(markdown_preview(_pct_cols(
            per_out[["fund_id", "manager", "manager_aum_bucket", "benchmark", "max_drawdown", "peak_date",
                     "trough_date", "recovery_date"]], ["max_drawdown"]), n=20))))
    yield dg.MaterializeResult(asset_key=EXCESS_SUMMARY, metadata=_meta(
        summary_out, date_column=None,
        preview=_pct_cols(summary_out, ["median", "q25", "q75", "worst", "best"]), parameters=params,
        window=_span(nav), median_excess_mdd_pct=medians, table1_median_excess_mdd_pct=table1_medians))


# ---- excess_correlation / excess_correlation_median -------------------------------------------------
class CorrelationConfig(dg.Config):
    """Small-cap index (default 932000.CSI; "8841431.WI" for micro-cap), rolling windows in
    weeks with their minimum observations (26/20 and 52/40), strategy."""

    small_cap: str = C.small_cap
    windows: list[int] = [w for w, _ in C.windows]
    min_periods: list[int] = [m for _, m in C.windows]
    strategy: str = C.strategy

    def params(self) -> cr.CorrelationParams:
        if len(self.windows) != len(self.min_periods):
            raise ValueError("windows and min_periods need the same length")
        return replace(C, small_cap=self.small_cap, strategy=self.strategy,
                       windows=tuple(zip(self.windows, self.min_periods, strict=True)))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(EXCESS_CORR, group_name=LAYER, deps=[FUND_NAV, INDEX_PANEL], kinds=KINDS, code_version="1",
                     description="Rolling 26w/52w correlation of each index-enhancement product's weekly excess "
                                 "with the small-cap index's excess over the same benchmark."),
        dg.AssetSpec(EXCESS_CORR_MEDIAN, group_name=LAYER, deps=[FUND_NAV, INDEX_PANEL], kinds=KINDS,
                     code_version="1",
                     description="Weekly cross-product median of the rolling excess correlations (all products "
                                 "and per benchmark; study: above 85%)."),
    ],
)
def excess_correlation(context: dg.AssetExecutionContext, config: CorrelationConfig, warehouse: Warehouse):
    """Rolling excess correlations of index-enhancement products with small-cap excess (METHODS §6).

    Reads every marts.fund_nav_panel row of the strategy and the daily closes of the benchmarks
    and the small-cap index in marts.index_daily_panel over the same span. Weekly returns on the
    SSE week grid (weeks end on their last session, holiday-short weeks compound); product
    excess e_w = r_fund,w − r_bench,w, reference r_small,w − r_bench,w; Pearson correlation over
    the trailing window (26 weeks, ≥ 20 pairwise-complete weeks; 52 weeks, ≥ 40), all products at
    once with rolling sums.
    """
    params = config.params()
    nav = _fund_nav(warehouse, params.strategy)
    nav = nav[nav["benchmark"].notna()]
    fnav = dd.weekly_panel(nav, "fund_id", "trade_date", "adj_nav")
    fund_bench = nav.drop_duplicates("fund_id", keep="last").set_index("fund_id")["benchmark"].astype(str)
    benches = sorted(set(fund_bench))
    if fnav.empty:
        long = cr.excess_correlations(pd.DataFrame(), pd.DataFrame(), fund_bench, params.windows)
    else:
        lo = fnav.index.min() - pd.Timedelta(days=14)
        closes = _index_closes(warehouse, [*benches, params.small_cap], start=lo, end=fnav.index.max())
        wret = dd.weekly_returns(closes).reindex(fnav.index)
        f_ret = fnav / fnav.shift(1) - 1.0  # consecutive weeks only (a gap week is NaN)
        b_ret = pd.DataFrame({f: wret[fund_bench[f]] for f in fnav.columns}, index=fnav.index)
        fund_excess = f_ret - b_ret
        small_excess = pd.DataFrame({b: wret[params.small_cap] - wret[b] for b in benches}, index=fnav.index)
        long = cr.excess_correlations(fund_excess, small_excess, fund_bench, params.windows)
        if closes[params.small_cap].isna().all():
            context.log.warning(f"excess_correlation: no closes for small-cap index {params.small_cap}")
    long.insert(3, "small_cap", params.small_cap)
    med = cr.cross_product_median(long, params.windows)
    long, med = _as_dates(long), _as_dates(med)
    warehouse.write_table(LAYER, "excess_correlation", long)
    warehouse.write_table(LAYER, "excess_correlation_median", med)
    warehouse.refresh_catalog([(LAYER, "excess_correlation"), (LAYER, "excess_correlation_median")])
    meta = {"parameters": json.loads(json.dumps(params.as_dict())), "window": _span(nav)}
    latest = med[med["benchmark"] == "all"].tail(1)
    latest_vals = {c: round(float(latest[c].iloc[0]), 4) for c in med.columns
                   if c.startswith("median_corr") and len(latest) and pd.notna(latest[c].iloc[0])}
    yield dg.MaterializeResult(asset_key=EXCESS_CORR, metadata=table_metadata(
        long, preview=long.dropna(subset=[f"corr_{params.windows[0][0]}w"]).tail(10), **meta))
    yield dg.MaterializeResult(asset_key=EXCESS_CORR_MEDIAN, metadata=table_metadata(
        med, preview=med[med["benchmark"] == "all"].tail(10), latest_median=latest_vals, **meta))
