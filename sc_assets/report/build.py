"""Sections of the crash report (figures + tables) and the HTML / Markdown rendering.

Sections follow the study (Cinda Securities, "本轮小市值风格与量化策略历史性回撤的分析与展望",
2024-02-24) and METHODS.md:

1. small/large relative NAV (small-cap index / large-cap index)                 METHODS §4
2. drawdown vs market cap over the crash window, by cap decile                   METHODS §3
3. the equal-weighted market-neutral fund index and its worst weeks              METHODS §4 (study: -5.40%, week of 2024-02-08)
4. Table-1-style excess max drawdowns of index-enhancement products              METHODS §5 (study: medians 12.5% / 9.85%)
5. rolling correlation of product excess with small-cap excess                   METHODS §6 (study: median > 85%)
6. Table-2-style crowding: holdings share, turnover share, redemption stress     METHODS §8
7. annualized basis of the main IC/IM contracts with the stress threshold        METHODS §9 (study: wave 1, 2024-01-22, < -30%)
8. ETF net inflows by tracked index and the NLSIZE factor return                 METHODS §9 (wave 2, 2024-02-05..07)
9. stress summary                                                                METHODS §9

Tables are read by name (DESIGN.md §2 data-flow names); columns are found among a few
accepted spellings (``_pick``) so that a renamed column degrades to a note, not a crash.
Percentages in the rendered tables are fractions x 100 with the sign kept (MDD -0.125 -> -12.50%).
Figures are redrawn only when their inputs change (``_Tables.save``; index in ``reports/.figures.json``).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

Loader = Callable[[str, str], "pd.DataFrame | None"]


@dataclass(frozen=True)
class ReportParams:
    """Defaults of the crash report (dates from the study; codes from common.md).

    small_index / large_index: the pair of the relative-NAV figure (CSI2000 vs CSI300).
    window_start / window_end: the crash window shaded in the figures (2024-01-02 .. 2024-02-07).
    wave1 / wave2_start / wave2_end / rebound: event dates (study; METHODS §9).
    basis_threshold: annualized basis stress threshold (fraction; METHODS §9 default 30%).
    history_start: first day plotted in time-series figures (None = all data).
    """

    small_index: str = "932000.CSI"
    large_index: str = "000300.SH"
    extra_indices: tuple[str, ...] = ("000905.SH", "000852.SH", "8841431.WI")
    window_start: str = "2024-01-02"
    window_end: str = "2024-02-07"
    wave1: str = "2024-01-22"
    wave2_start: str = "2024-02-05"
    wave2_end: str = "2024-02-07"
    rebound: str = "2024-02-08"
    basis_threshold: float = 0.30
    history_start: str | None = "2023-07-01"
    n_worst_weeks: int = 10


@dataclass
class Section:
    key: str
    title: str
    inputs: list[str]
    caption: str = ""
    figure: str | None = None  # PNG file name inside the report folder
    table: pd.DataFrame | None = None
    note: str | None = None  # why the section is incomplete
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.note is None


@dataclass
class ReportResult:
    html_path: Path
    markdown_path: Path
    sections: list[Section]
    markdown: str

    @property
    def summary(self) -> dict[str, object]:
        return {
            "sections": len(self.sections),
            "complete": sum(s.ok for s in self.sections),
            "figures": [s.figure for s in self.sections if s.figure],
            "missing": {s.key: s.note for s in self.sections if not s.ok},
        }


#: Partitioned tables the report draws from ``history_start`` on only (time-series figures).
HISTORY_TABLES = {("marts", "index_daily_panel"), ("marts", "futures_basis_panel"), ("marts", "etf_flow_panel"),
                  ("factors", "factor_returns")}


def partitions_needed(layer: str, name: str, days: Sequence[str], p: ReportParams) -> list[str] | None:
    """The partitions (YYYY-MM-DD, a run of the sorted ``days`` present in the lake) of a daily
    table that the report uses; None = the whole table, [] = none (the table counts as missing).

    Reading only these instead of every day of a 10-year lake is the report's main saving (issue 11)
    and changes nothing drawn:
    - crowding.crowding_table: Table 2 is drawn for one day, the last one on or before
      ``window_start`` (else the first day) — the choice :func:`_crowding` makes on the whole table;
    - the index/futures/ETF panels: the days from ``history_start`` on (none: the table is missing);
    - factors.factor_returns: the days from ``history_start`` on, which is all :func:`_etf_nlsize`
      keeps (none: the whole table, whose rows that section then drops, as before).
    """
    if (layer, name) == ("crowding", "crowding_table") and days:
        before = [d for d in days if d <= pd.Timestamp(p.window_start).strftime("%Y-%m-%d")]
        return [before[-1] if before else days[0]]
    if (layer, name) in HISTORY_TABLES and p.history_start is not None:
        start = pd.Timestamp(p.history_start).strftime("%Y-%m-%d")
        since = [d for d in days if d >= start]
        return since if since or layer == "marts" else None
    return None


class MissingInput(Exception):
    """A section's input table or column is not there (the section becomes a note)."""


# ---- helpers -------------------------------------------------------------------------------------
def _pick(df: pd.DataFrame, *names: str, required: bool = True) -> str | None:
    cols = {c.lower(): c for c in df.columns}
    for n in names:
        if n.lower() in cols:
            return cols[n.lower()]
    if required:
        raise MissingInput(f"none of the columns {list(names)} in ({', '.join(map(str, df.columns))})")
    return None


#: This module's code, part of every figure's digest: a change in how figures are drawn redraws them all.
_CODE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
#: Figure file -> digest of what drew it and its size, from the last build into the folder.
FIGURE_INDEX = ".figures.json"


class _Tables:
    """The sections' inputs (each table loaded once) and the figures' render cache.

    A figure is a pure function of this module's code, matplotlib (version and rcParams), the
    pandas/numpy versions, the report parameters and the tables its section read, and Agg renders
    identical PNG bytes from identical input. :meth:`save` therefore skips rendering (~0.1 s a
    figure) when that digest and the PNG on disk are the ones ``index`` recorded for the previous
    build: a daily update redraws only the figures whose inputs changed (issue 11). ``used`` lists the tables read by
    the current section; ``saved`` collects this build's index entries.
    """

    def __init__(self, loader: Loader, params: ReportParams | None = None, index: dict | None = None):
        self._loader, self._cache, self._digests = loader, {}, {}
        self.params, self.index = params, index or {}
        self.used: list[tuple[str, str]] = []
        self.saved: dict[str, dict] = {}

    def get(self, layer: str, name: str, required: bool = True) -> pd.DataFrame | None:
        key = (layer, name)
        if key not in self._cache:
            try:
                df = self._loader(layer, name)
            except Exception:  # noqa: BLE001 - a broken table is a missing table for the report
                df = None
            self._cache[key] = df
        if key not in self.used:
            self.used.append(key)
        df = self._cache[key]
        if (df is None or df.empty) and required:
            raise MissingInput(f"table {layer}.{name} is missing or empty (materialize it first)")
        if df is not None and "trade_date" in df.columns:
            df = df.copy()
            df["trade_date"] = pd.to_datetime(df["trade_date"])
        return df

    def _table_digest(self, key: tuple[str, str]) -> str:
        if key not in self._digests:
            df = self._cache.get(key)
            h = hashlib.sha256(repr(key).encode())
            if df is not None:
                h.update(repr((list(map(str, df.columns)), list(map(str, df.dtypes)), df.shape)).encode())
                try:
                    h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
                except TypeError:  # cells pandas cannot hash: never reuse a figure drawn from this table
                    h.update(os.urandom(16))
            self._digests[key] = h.hexdigest()
        return self._digests[key]

    def digest(self, name: str) -> str:
        """Digest of everything the figure ``name`` of the current section is drawn from."""
        versions = f"{matplotlib.__version__}|{pd.__version__}|{np.__version__}"
        h = hashlib.sha256(f"{_CODE_DIGEST}|{versions}|{name}|{self.params!r}".encode())
        h.update(repr(sorted((k, repr(v)) for k, v in matplotlib.rcParams.items())).encode())
        for key in self.used:
            h.update(self._table_digest(key).encode())
        return h.hexdigest()

    def save(self, fig, out_dir: Path, name: str) -> str:
        """Write ``fig`` as ``<out_dir>/<name>.png`` (dpi 110, tight layout) unless the previous
        build left the PNG of the same digest there; returns the file name."""
        fname = f"{name}.png"
        path = Path(out_dir) / fname
        digest = self.digest(name)
        last = self.index.get(fname) or {}
        try:
            reuse = last.get("digest") == digest and path.stat().st_size == last.get("size")
        except OSError:
            reuse = False
        if not reuse:
            fig.tight_layout()
            fig.savefig(path, dpi=110)
        plt.close(fig)
        self.saved[fname] = {"digest": digest, "size": path.stat().st_size}
        return fname


def _shade(ax, p: ReportParams) -> None:
    ax.axvspan(pd.Timestamp(p.window_start), pd.Timestamp(p.window_end), color="tab:red", alpha=0.08,
               label="crash window")
    for day, label in ((p.wave1, "wave 1"), (p.wave2_start, "wave 2"), (p.rebound, "rebound")):
        ax.axvline(pd.Timestamp(day), color="grey", lw=0.8, ls="--")
        ax.annotate(label, (pd.Timestamp(day), 1), xycoords=("data", "axes fraction"), fontsize=7,
                    rotation=90, va="top", ha="right", color="grey")


def _date_axis(ax) -> None:
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=8))
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.grid(alpha=0.3)


def _since(df: pd.DataFrame, p: ReportParams, col: str = "trade_date") -> pd.DataFrame:
    if p.history_start is None or col not in df.columns:
        return df
    out = df[df[col] >= pd.Timestamp(p.history_start)]
    return out if len(out) else df


def _calendar_days(df):
    """A daily series/frame on every calendar day of its span, 0 on days without a row: drawn with
    ``fill_between(step="mid")`` it looks like one-day-wide bars (gaps stay empty)."""
    if not len(df):
        return df
    return df.reindex(pd.date_range(df.index.min(), df.index.max(), freq="D"), fill_value=0.0)


def _pct(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.2f}%"


# ---- sections ------------------------------------------------------------------------------------
def _relative_nav(t: _Tables, p: ReportParams, out: Path, s: Section) -> None:
    rel = t.get("drawdowns", "style_relative_nav", required=False)
    if rel is not None and not rel.empty and {"relative_nav", "trade_date"} <= set(rel.columns):
        pair_col = _pick(rel, "pair", required=False)
        series = {str(k): g.set_index("trade_date")["relative_nav"] for k, g in rel.groupby(pair_col)} \
            if pair_col else {"small/large": rel.set_index("trade_date")["relative_nav"]}
        s.inputs = ["drawdowns.style_relative_nav"]
    else:
        idx = t.get("marts", "index_daily_panel")
        wide = idx.pivot_table(index="trade_date", columns="index_code", values="close").sort_index()
        if p.large_index not in wide:
            raise MissingInput(f"large-cap index {p.large_index} not in marts.index_daily_panel")
        series = {}
        for small in (p.small_index, *p.extra_indices):
            if small in wide:
                r = (wide[small] / wide[p.large_index]).dropna()
                series[f"{small} / {p.large_index}"] = r
        if not series:
            raise MissingInput("no small-cap index in marts.index_daily_panel")
        s.inputs = ["marts.index_daily_panel"]
    fig, ax = plt.subplots(figsize=(9, 4))
    for label, r in series.items():
        r = r.sort_index()
        r = r[r.index >= pd.Timestamp(p.history_start)] if p.history_start else r
        if r.empty:
            continue
        ax.plot(r.index, r / r.iloc[0], lw=1.2, label=label)
        w = r[(r.index >= pd.Timestamp(p.window_start)) & (r.index <= pd.Timestamp(p.window_end))]
        prev = r[r.index < pd.Timestamp(p.window_start)]
        if len(w) and len(prev):
            s.facts[f"{label}: relative change over crash window"] = _pct(w.iloc[-1] / prev.iloc[-1] - 1)
    _shade(ax, p)
    _date_axis(ax)
    ax.set_ylabel("relative NAV (start = 1)")
    ax.legend(fontsize=8)
    ax.set_title("Small-cap vs large-cap relative NAV")
    s.figure = t.save(fig, out, s.key)


def _drawdown_vs_cap(t: _Tables, p: ReportParams, out: Path, s: Section) -> None:
    df = t.get("factors", "drawdown_vs_size")
    dec = _pick(df, "decile", "cap_decile", "size_decile", "bucket")
    ycols = [c for c in df.columns if c != dec and pd.api.types.is_numeric_dtype(df[c])
             and any(k in c.lower() for k in ("median", "ret", "return", "drawdown"))]
    if not ycols:
        raise MissingInput(f"factors.drawdown_vs_size has no return column ({', '.join(df.columns)})")
    tab = df[df[dec].notna()].copy()
    num = pd.to_numeric(tab[dec], errors="coerce")
    if num.notna().all():
        tab = tab.assign(**{dec: num.astype(int)}).sort_values(dec)
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(tab))
    width = 0.8 / min(len(ycols), 3)
    for i, c in enumerate(ycols[:3]):
        ax.bar(x + i * width, 100 * tab[c].astype(float), width=width, label=c)
    ax.set_xticks(x + width * (min(len(ycols), 3) - 1) / 2, tab[dec].astype(str))
    ax.set_xlabel(f"{dec} (1 = smallest caps at window start)")
    ax.set_ylabel("window return (%)")
    ax.axhline(0, color="k", lw=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Return {p.window_start} .. {p.window_end} by market-cap decile")
    s.figure = t.save(fig, out, s.key)
    s.table = tab[[dec, *ycols[:4]]].reset_index(drop=True)
    slope = _pick(df, "slope", "slope_ln_cap", "beta_ln_cap", required=False)
    if slope:
        s.facts["slope of window return on ln(cap)"] = f"{float(df[slope].dropna().iloc[0]):.4f}"


def _neutral_index(t: _Tables, p: ReportParams, out: Path, s: Section) -> None:
    worst = t.get("drawdowns", "neutral_index_worst_weeks")
    series = t.get("drawdowns", "neutral_index", required=False)
    ret_col = _pick(worst, "weekly_ret", "week_ret", "ret", "return", "weekly_return")
    date_col = _pick(worst, "week_end", "trade_date", "week", "date")
    worst = worst.copy()
    worst[date_col] = pd.to_datetime(worst[date_col])
    worst = worst.sort_values(ret_col).head(p.n_worst_weeks).reset_index(drop=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    if series is not None and not series.empty:
        vcol = _pick(series, "index", "nav", "neutral_index", "level", "value", required=False)
        if vcol is None:
            vcol = [c for c in series.columns if pd.api.types.is_numeric_dtype(series[c])][-1]
        ser = series.sort_values("trade_date")
        ax.plot(ser["trade_date"], ser[vcol], lw=1.2, color="tab:blue")
        ax.scatter(worst[date_col], np.interp(mdates.date2num(worst[date_col]),
                   mdates.date2num(ser["trade_date"]), ser[vcol].astype(float)), color="tab:red", zorder=3,
                   s=18, label=f"{len(worst)} worst weeks")
        ax.set_ylabel("neutral fund index")
        ax.legend(fontsize=8)
        _date_axis(ax)
    else:
        ax.text(0.5, 0.5, "drawdowns.neutral_index not available", ha="center", transform=ax.transAxes)
    ax.set_title("Equal-weighted market-neutral fund index")
    ax2 = axes[1]
    ax2.barh(worst[date_col].dt.strftime("%Y-%m-%d")[::-1], 100 * worst[ret_col].astype(float)[::-1],
             color="tab:red")
    ax2.set_xlabel("weekly return (%)")
    ax2.set_title("Worst weeks")
    ax2.grid(axis="x", alpha=0.3)
    s.figure = t.save(fig, out, s.key)
    s.table = pd.DataFrame({"week ending": worst[date_col].dt.strftime("%Y-%m-%d"),
                            "weekly return": worst[ret_col].map(_pct)})
    s.facts["worst week"] = f"{worst[date_col].iloc[0]:%Y-%m-%d}: {_pct(worst[ret_col].iloc[0])} (study: -5.40%, 2024-02-08)"


def _excess_table(t: _Tables, p: ReportParams, out: Path, s: Section) -> None:
    summary = t.get("drawdowns", "excess_drawdown_summary", required=False)
    per = t.get("drawdowns", "excess_drawdown_table")
    mdd = _pick(per, "max_drawdown", "mdd", "excess_max_drawdown", "excess_mdd")
    bench = _pick(per, "benchmark", "bench")
    bucket = _pick(per, "manager_aum_bucket", "aum_bucket", required=False)
    level = _pick(per, "level", "row_type", "kind", required=False)
    if level is not None:  # a table with per-product and summary rows: keep products
        per = per[per[level].astype(str).str.lower().isin(["product", "fund"])] if \
            per[level].astype(str).str.lower().isin(["product", "fund"]).any() else per
    per = per[per[mdd].notna()]
    def stats(g) -> pd.DataFrame:
        return pd.DataFrame({
            "products": g.size(),
            "median excess MDD": g.median().map(_pct),
            "25% quantile": g.quantile(0.25).map(_pct),
            "75% quantile": g.quantile(0.75).map(_pct),
            "worst": g.min().map(_pct),
            "best": g.max().map(_pct),
        }).reset_index()

    # per benchmark over all managers (the study's headline medians), then by manager AUM bucket
    tab = stats(per.groupby(bench, dropna=False)[mdd])
    tab.insert(1, "manager AUM", "all")
    if bucket:
        by_bucket = stats(per.groupby([bench, bucket], dropna=False)[mdd]).rename(columns={bucket: "manager AUM"})
        tab = pd.concat([tab, by_bucket], ignore_index=True).sort_values([bench], kind="stable")
    if summary is not None and not summary.empty:
        summary = summary.copy()
        for c in summary.columns:
            if pd.api.types.is_float_dtype(summary[c]) and any(
                    k in c.lower() for k in ("median", "q25", "q75", "worst", "best", "mean", "drawdown", "mdd")):
                summary[c] = summary[c].map(_pct)
        s.table = summary
        s.inputs.append("drawdowns.excess_drawdown_summary")
    else:
        s.table = tab
    fig, ax = plt.subplots(figsize=(8, 4))
    labels, data = [], []
    for key, grp in per.groupby(bench):
        labels.append(str(key))
        data.append(100 * grp[mdd].astype(float).to_numpy())
    ax.boxplot(data, tick_labels=labels)
    ax.set_ylabel("excess max drawdown (%)")
    ax.set_title("Index-enhancement products: excess max drawdown by benchmark")
    ax.grid(axis="y", alpha=0.3)
    s.figure = t.save(fig, out, s.key)
    for key, grp in per.groupby(bench):
        s.facts[f"median excess MDD, {key}"] = _pct(grp[mdd].median()) + " (study: CSI500 -12.5%, CSI1000 -9.85%)"


def _correlations(t: _Tables, p: ReportParams, out: Path, s: Section) -> None:
    df = t.get("drawdowns", "excess_correlation")
    date_col = _pick(df, "trade_date", "week_end", "date")
    df = df.copy()
    df[date_col] = pd.to_datetime(df[date_col])
    corr_cols = [c for c in df.columns if "corr" in c.lower() and pd.api.types.is_numeric_dtype(df[c])]
    if not corr_cols:
        raise MissingInput(f"drawdowns.excess_correlation has no correlation column ({', '.join(df.columns)})")
    fund_col = _pick(df, "fund_id", "product", required=False)
    fig, ax = plt.subplots(figsize=(9, 4))
    for c in corr_cols[:2]:
        med = df.groupby(date_col)[c].median() if fund_col else df.set_index(date_col)[c]
        med = med.sort_index().dropna()
        ax.plot(med.index, med.to_numpy(), lw=1.3, label=f"median {c}")
        if fund_col:
            q = df.groupby(date_col)[c].quantile([0.25, 0.75]).unstack().sort_index().dropna()
            ax.fill_between(q.index, q[0.25], q[0.75], alpha=0.15)
        if len(med):
            s.facts[f"latest median {c}"] = f"{med.iloc[-1]:.2f} (study: > 0.85)"
    if not any(np.isfinite(df[c].astype(float)).any() for c in corr_cols[:2]):
        plt.close(fig)
        raise MissingInput("drawdowns.excess_correlation has no finite correlation yet (history shorter "
                           "than the rolling window's minimum number of weeks)")
    ax.axhline(0.85, color="tab:red", ls=":", lw=1, label="0.85 (study)")
    _shade(ax, p)
    _date_axis(ax)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("correlation")
    ax.legend(fontsize=8)
    ax.set_title("Rolling correlation: product excess vs small-cap excess (weekly)")
    s.figure = t.save(fig, out, s.key)


def _crowding(t: _Tables, p: ReportParams, out: Path, s: Section) -> None:
    df = t.get("crowding", "crowding_table")
    bucket = _pick(df, "bucket", "bucket_name", "group")
    level = _pick(df, "level", "row_type", "kind", required=False)
    if level is not None and df[level].astype(str).str.lower().eq("bucket").any():
        df = df[df[level].astype(str).str.lower().eq("bucket")]
    if "trade_date" in df.columns:
        at = pd.Timestamp(p.window_start) if (df["trade_date"] <= pd.Timestamp(p.window_start)).any() \
            else df["trade_date"].min()
        day = df.loc[df["trade_date"] <= at, "trade_date"].max()
        df = df[df["trade_date"] == day]
        s.facts["as of"] = f"{day:%Y-%m-%d}"
    hs = _pick(df, "hs", "holdings_share")
    ts = _pick(df, "ts", "turnover_share")
    rs = _pick(df, "rs", "redemption_share", "redemption_stress_share")
    ff = _pick(df, "ff_cap", "free_float_cap", "free_float_mv", "ff", required=False)
    q = _pick(df, "holdings", "quant_holdings", "q", required=False)
    tab = pd.DataFrame({"bucket": df[bucket].astype(str)})
    if ff:
        tab["free-float cap (100m CNY)"] = (df[ff].astype(float) / 1e8).map("{:,.2f}".format)
    if q:
        tab["quant holdings (100m CNY)"] = (df[q].astype(float) / 1e8).map("{:,.2f}".format)
    tab["holdings share"] = df[hs].map(_pct)
    tab["quant share of turnover"] = df[ts].map(_pct)
    tab["redemption-stress share"] = df[rs].map(_pct)
    s.table = tab.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(df))
    for i, (c, lab) in enumerate(((hs, "holdings share"), (ts, "turnover share"), (rs, "redemption stress"))):
        ax.bar(x + (i - 1) * 0.27, 100 * df[c].astype(float), width=0.27, label=lab)
    ax.set_xticks(x, df[bucket].astype(str), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("%")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Quant crowding by bucket (Table 2 style)")
    s.figure = t.save(fig, out, s.key)


def _basis(t: _Tables, p: ReportParams, out: Path, s: Section) -> None:
    fut = t.get("marts", "futures_basis_panel")
    for c in ("fut_code", "basis_ann", "is_main"):
        _pick(fut, c)
    main = fut[fut["is_main"].astype(bool) & fut["fut_code"].isin(["IC", "IM", "IF"])]
    main = _since(main, p)
    if main.empty:
        raise MissingInput("no main IC/IM/IF contract rows in marts.futures_basis_panel")
    fig, ax = plt.subplots(figsize=(9, 4))
    for code, g in main.groupby("fut_code"):
        g = g.sort_values("trade_date")
        ax.plot(g["trade_date"], 100 * g["basis_ann"].astype(float), lw=1.1, label=f"{code} main")
        s.facts[f"{code} min annualized basis"] = (
            f"{_pct(g['basis_ann'].min())} on {g.loc[g['basis_ann'].idxmin(), 'trade_date']:%Y-%m-%d}")
    ax.axhline(-100 * p.basis_threshold, color="tab:red", ls=":", label=f"-{p.basis_threshold:.0%} threshold")
    events = t.get("stress", "basis_stress_events", required=False)
    if events is not None and not events.empty:
        sc = _pick(events, "start", "start_date", required=False)
        ec = _pick(events, "end", "end_date", required=False)
        if sc and ec:
            for _, ev in events.iterrows():
                ax.axvspan(pd.Timestamp(ev[sc]), pd.Timestamp(ev[ec]) + pd.Timedelta(days=1), color="orange",
                           alpha=0.25)
            s.table = events.reset_index(drop=True)
            s.inputs.append("stress.basis_stress_events")
    _shade(ax, p)
    _date_axis(ax)
    ax.set_ylabel("annualized basis (%)")
    ax.legend(fontsize=8)
    ax.set_title("Annualized basis of the main index-futures contracts")
    s.figure = t.save(fig, out, s.key)


def _etf_nlsize(t: _Tables, p: ReportParams, out: Path, s: Section) -> None:
    etf = t.get("marts", "etf_flow_panel", required=False)
    fr = t.get("factors", "factor_returns", required=False)
    if (etf is None or etf.empty) and (fr is None or fr.empty):
        raise MissingInput("marts.etf_flow_panel and factors.factor_returns are both missing")
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    notes = []
    if etf is not None and not etf.empty:
        flows = _since(etf, p).pivot_table(index="trade_date", columns="index_code", values="net_inflow",
                                           aggfunc="sum").sort_index() / 1e8
        # daily bars drawn as one step-filled polygon per index (hundreds of bar patches render slowly):
        # inflows stacked upwards, outflows from zero down
        daily = _calendar_days(flows.fillna(0.0))
        bottom = np.zeros(len(daily))
        for code in daily.columns:
            v = daily[code].to_numpy()
            axes[0].fill_between(daily.index, np.where(v >= 0, bottom, v), np.where(v >= 0, bottom + v, 0.0),
                                 step="mid", linewidth=0, label=str(code))
            bottom = bottom + np.where(v >= 0, v, 0)
        w2 = flows.loc[pd.Timestamp(p.wave2_start):pd.Timestamp(p.wave2_end)].sum()
        for code, v in w2.items():
            s.facts[f"ETF net inflow {p.wave2_start}..{p.wave2_end}, {code}"] = f"{v:,.1f} (100m CNY)"
        axes[0].legend(fontsize=7, ncol=3)
    else:
        notes.append("marts.etf_flow_panel missing")
    axes[0].set_ylabel("ETF net inflow (100m CNY)")
    axes[0].set_title("ETF flows by tracked index and the non-linear size factor")
    if fr is not None and not fr.empty:
        if "factor" in fr.columns:  # long format
            vcol = _pick(fr, "factor_return", "ret", "return", "value", "f")
            nl = fr[fr["factor"].astype(str).str.lower().isin(["nlsize", "nls", "non_linear_size"])]
            nl = nl.set_index("trade_date")[vcol]
        else:
            nl = fr.set_index("trade_date")[_pick(fr, "nlsize", "f_nlsize", "nls", "ret_nlsize")]
        nl = nl.sort_index()
        if p.history_start:
            nl = nl[nl.index >= pd.Timestamp(p.history_start)]
        nl_daily = _calendar_days(100 * nl.astype(float).fillna(0.0))
        axes[1].fill_between(nl_daily.index, 0.0, nl_daily.to_numpy(), step="mid", linewidth=0,
                             color="tab:purple", label="NLSIZE daily return")
        axes[1].plot(nl.index, 100 * nl.astype(float).cumsum(), color="k", lw=1, label="cumulative")
        w2 = nl.loc[pd.Timestamp(p.wave2_start):pd.Timestamp(p.wave2_end)].sum()
        s.facts[f"NLSIZE return {p.wave2_start}..{p.wave2_end}"] = _pct(w2)
        axes[1].legend(fontsize=8)
    else:
        notes.append("factors.factor_returns missing")
    axes[1].set_ylabel("NLSIZE return (%)")
    for ax in axes:
        _shade(ax, p)
        _date_axis(ax)
    s.figure = t.save(fig, out, s.key)
    if notes:
        s.caption += " (partial: " + "; ".join(notes) + ")"


def _stress(t: _Tables, p: ReportParams, out: Path, s: Section) -> None:
    df = t.get("stress", "stress_summary")
    s.table = df.reset_index(drop=True)
    item = _pick(df, "item", "metric", "name", required=False)
    value = _pick(df, "value", required=False)
    unit = _pick(df, "unit", required=False)
    section = _pick(df, "section", "kind", required=False)
    if item and value and unit:
        # price impacts (fractions) of the stress scenarios, bucket by bucket, one bar per scenario
        impacts = df[df[unit].astype(str).str.startswith("cumulative return")
                     & df[item].astype(str).str.contains("impact")].copy()
        if not impacts.empty:
            impacts["bucket"] = impacts[item].astype(str).str.split().str[-1]
            impacts["scenario"] = impacts[section].astype(str) if section else \
                impacts[item].astype(str).str.split().str[0]
            wide = impacts.pivot_table(index="bucket", columns="scenario", values=value, aggfunc="first")
            fig, ax = plt.subplots(figsize=(9, 4))
            x = np.arange(len(wide))
            w = 0.8 / max(len(wide.columns), 1)
            for i, c in enumerate(wide.columns):
                ax.bar(x + i * w, 100 * wide[c].astype(float), width=w, label=str(c))
            ax.set_xticks(x + w * (len(wide.columns) - 1) / 2, wide.index, rotation=15)
            ax.set_ylabel("simulated price impact (%)")
            ax.axhline(0, color="k", lw=0.8)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_title("Stress scenarios: cumulative price impact by bucket")
            s.figure = t.save(fig, out, s.key)
        for _, row in df.iterrows():
            u = str(row[unit])
            v = row[value]
            if "fraction" in u or "return" in u:
                s.facts[str(row[item])] = _pct(v)
            elif pd.notna(v):
                s.facts[str(row[item])] = f"{float(v):.4g} ({u})"
            if len(s.facts) >= 12:
                break
        return
    num = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    label = next((c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])), None)
    if num and label and len(df) <= 40:
        fig, ax = plt.subplots(figsize=(9, max(3, 0.3 * len(df) + 1)))
        ax.barh(df[label].astype(str)[::-1], df[num[0]].astype(float)[::-1], color="tab:gray")
        ax.set_xlabel(num[0])
        ax.set_title("Stress summary")
        ax.grid(axis="x", alpha=0.3)
        s.figure = t.save(fig, out, s.key)


SECTIONS: list[tuple[str, str, list[str], str, Callable]] = [
    ("relative_nav", "Small caps vs large caps: relative NAV", ["drawdowns.style_relative_nav", "marts.index_daily_panel"],
     "Small-cap index divided by large-cap index, rebased to 1; the crash window is shaded.", _relative_nav),
    ("drawdown_vs_cap", "The fall grows as market cap shrinks", ["factors.drawdown_vs_size"],
     "Compounded return over the crash window by market-cap decile at the window start.", _drawdown_vs_cap),
    ("neutral_index", "Market-neutral fund index and its worst weeks",
     ["drawdowns.neutral_index", "drawdowns.neutral_index_worst_weeks"],
     "Equal-weighted index of market-neutral products' weekly NAV returns; the worst weeks on the right.",
     _neutral_index),
    ("excess_drawdowns", "Table 1: excess max drawdowns of index-enhancement products",
     ["drawdowns.excess_drawdown_table"],
     "Max drawdown of relative excess NAV (fund NAV / benchmark), by benchmark and manager AUM bucket.", _excess_table),
    ("excess_correlation", "Rolling correlation of product excess with small-cap excess",
     ["drawdowns.excess_correlation"],
     "26- and 52-week rolling Pearson correlation of weekly excess returns; median across products, IQR band.",
     _correlations),
    ("crowding", "Table 2: quant crowding", ["crowding.crowding_table"],
     "Holdings share HS = Q/FF, quant share of turnover TS = Q(A/D)/ADV, redemption stress RS = rho Q/ADV.",
     _crowding),
    ("basis", "Annualized basis and the stress threshold", ["marts.futures_basis_panel", "stress.basis_stress_events"],
     "(F/S - 1) x 365 / days to expiry of the main IC/IM/IF contracts; stress events shaded.", _basis),
    ("etf_nlsize", "Wave 2: ETF inflows and the non-linear size factor",
     ["marts.etf_flow_panel", "factors.factor_returns"],
     "Daily ETF net inflow (share change x close) by tracked index, and the NLSIZE factor return.", _etf_nlsize),
    ("stress_summary", "Stress summary", ["stress.stress_summary"],
     "Redemption stress, fire-sale simulation and basis events in one table.", _stress),
]


# ---- rendering ------------------------------------------------------------------------------------
def _table_html(df: pd.DataFrame, max_rows: int = 40) -> str:
    return df.head(max_rows).to_html(index=False, border=0, classes="tbl", na_rep="", float_format="{:.4g}".format)


def _table_md(df: pd.DataFrame, max_rows: int = 15) -> str:
    return df.head(max_rows).to_markdown(index=False, floatfmt=".4g")


def render_html(sections: Sequence[Section], params: ReportParams, title: str, generated: str) -> str:
    css = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
           "h2{border-bottom:1px solid #ccc;padding-top:.6em}.note{background:#fff4e5;padding:.6em;border-left:4px solid #f0a000}"
           ".tbl{border-collapse:collapse;font-size:13px}.tbl td,.tbl th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}"
           ".facts li{margin:.15em 0}img{max-width:100%}.cap{color:#555;font-size:14px}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{css}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='cap'>Generated {html.escape(generated)}. Crash window {params.window_start} .. "
             f"{params.window_end}; wave 1 {params.wave1}; wave 2 {params.wave2_start} .. {params.wave2_end}; "
             f"rebound from {params.rebound}. Study: Cinda Securities (2024-02-24).</p><ol>"]
    parts += [f"<li><a href='#{s.key}'>{html.escape(s.title)}</a>{'' if s.ok else ' (missing input)'}</li>"
              for s in sections]
    parts.append("</ol>")
    for s in sections:
        parts.append(f"<h2 id='{s.key}'>{html.escape(s.title)}</h2><p class='cap'>{html.escape(s.caption)} "
                     f"Inputs: {html.escape(', '.join(s.inputs))}.</p>")
        if s.note:
            parts.append(f"<p class='note'>Not available: {html.escape(s.note)}</p>")
        if s.figure:
            parts.append(f"<img src='{html.escape(s.figure)}' alt='{html.escape(s.title)}'>")
        if s.facts:
            parts.append("<ul class='facts'>" + "".join(
                f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in s.facts.items()) + "</ul>")
        if s.table is not None and not s.table.empty:
            parts.append(_table_html(s.table))
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(sections: Sequence[Section], params: ReportParams, html_path: Path) -> str:
    lines = ["# 2024 small-cap crash report", "",
             f"Full report with figures: `{html_path}`", "",
             f"Crash window {params.window_start} .. {params.window_end}; wave 1 {params.wave1}; "
             f"wave 2 {params.wave2_start} .. {params.wave2_end}; rebound from {params.rebound}.", ""]
    for s in sections:
        lines.append(f"## {s.title}")
        if s.note:
            lines += ["", f"> Not available: {s.note}"]
        for k, v in s.facts.items():
            lines.append(f"- **{k}**: {v}")
        if s.table is not None and not s.table.empty and s.key in {"excess_drawdowns", "crowding", "neutral_index",
                                                                   "stress_summary"}:
            lines += ["", _table_md(s.table, max_rows=10)]
        lines.append("")
    return "\n".join(lines)


def build_report(loader: Loader, out_dir: Path, params: ReportParams | None = None,
                 generated: str | None = None) -> ReportResult:
    """Render every section into ``out_dir`` (PNG per figure, crash_report.html, crash_report.md).

    ``loader(layer, name)`` returns a table or None (or raises) when it is not materialized.
    """
    params = params or ReportParams()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        index = json.loads((out_dir / FIGURE_INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    tables = _Tables(loader, params, index if isinstance(index, dict) else {})
    sections = []
    for key, title, inputs, caption, fn in SECTIONS:
        s = Section(key=key, title=title, inputs=list(inputs), caption=caption)
        tables.used = []
        try:
            fn(tables, params, out_dir, s)
        except MissingInput as exc:
            s.note = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad section must not sink the report
            s.note = f"{type(exc).__name__}: {exc}"
        finally:
            plt.close("all")
        if s.figure is None and s.note is None and s.table is None:
            s.note = "no figure or table could be drawn from the inputs"
        sections.append(s)
    for old in out_dir.glob("*.png"):  # a figure whose input disappeared must not linger
        if old.name not in tables.saved:
            old.unlink()
    tmp = out_dir / f".{FIGURE_INDEX}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(tables.saved, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, out_dir / FIGURE_INDEX)
    generated = generated or pd.Timestamp.now(tz="Asia/Shanghai").strftime("%Y-%m-%d %H:%M %Z")
    html_path = out_dir / "crash_report.html"
    md_path = out_dir / "crash_report.md"
    html_path.write_text(render_html(sections, params, "2024 A-share small-cap crash: report", generated),
                         encoding="utf-8")
    md = render_markdown(sections, params, html_path)
    md_path.write_text(md, encoding="utf-8")
    return ReportResult(html_path=html_path, markdown_path=md_path, sections=sections, markdown=md)


def params_dict(p: ReportParams) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(p).items()}
