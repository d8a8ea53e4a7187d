"""Quant holdings, crowding ratios (the study's Table 2) and days to liquidate (METHODS.md §7–8).

Units and conventions
---------------------
* Money in CNY, quantities in shares, ratios as fractions (0.1607, not 16.07).
* ``trade_date`` is a pandas ``datetime64`` day; ``ts_code`` / ``index_code`` are strings.
* Size ranks (cap deciles, the micro-cap bucket) use total market cap (METHODS §1: "the size
  factor uses total cap"); crowding ratios use free-float cap, as the study's Table 2 does.
* ADV = mean daily traded amount (CNY) over the last ``adv_window`` trading rows of a stock,
  *including* the day itself (a suspended day has no amount and is skipped).

Holdings model (METHODS §7): per stock-day holdings = Σ over sleeves of sleeve gross stock
holdings (CNY) × sleeve weight, the weight of a sleeve on benchmark b being
``(1 − τ)·w_b,n + τ·u_n`` with ``w_b`` the index weights carried forward from the latest
rebalance on or before the day (renormalised over listed constituents) and ``u_n`` ∝
``free_float_cap_n^β`` over the non-constituents of b.

Crowding ratios (METHODS §8): ``HS = Q/FF``, ``TS = Q·(A/D)/ADV``, ``RS = ρ·Q/ADV``.

Computation: stock-day rows are laid out on a sessions x stocks grid (:class:`StockGrid`);
index weights in force, bucket memberships (:class:`GridBuckets`), rolling ADV and per-bucket
sums are array operations on it (issue 11: no hash joins of membership rows, no group-bys).

References: Cinda Securities (2024-02-24) Table 2 and its quant AUM figures (see
``HoldingsParams``); ESMA (2020) liquidity stress testing guidelines (days to liquidate).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

CSI300, CSI500, CSI1000, CSI2000 = "000300.SH", "000905.SH", "000852.SH", "932000.CSI"

# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sleeve:
    """One quant strategy sleeve, treated as one aggregate fund.

    gross_cny: gross long stock holdings (CNY). leverage: gross / equity (1 for cash books,
    4 for DMA at 25 % margin). hedged: the long book is hedged with index futures
    (market-neutral, DMA). benchmarks: ((index_code, mix), ...) mixes summing to 1.
    """

    name: str
    strategy: str
    gross_cny: float
    benchmarks: tuple[tuple[str, float], ...]
    leverage: float = 1.0
    hedged: bool = False

    @property
    def equity_cny(self) -> float:
        return self.gross_cny / self.leverage


@dataclass(frozen=True)
class HoldingsParams:
    """Quant AUM and allocation defaults (METHODS §7).

    From the study (Cinda 2024-02-24): quant stock holdings about 1 trillion CNY, mostly private
    quant (``private_quant_cny``); index-enhancement about 71 % of private quant (``ie_share``);
    DMA on about 25 % margin, i.e. 4x gross (``dma_leverage``); public quant 274.5 bn CNY
    (``public_quant_cny``).

    ``tau`` = 0.65 and ``beta`` = 0.3 deviate from METHODS §7 (τ = 0.2, β = 0.5), which contradict
    Table 2 itself: index enhancement + public quant (984.5 bn on CSI500/CSI1000 benchmarks) can
    put at most the 199 + 150 bn that Table 2 finds in CSI500 and CSI1000 on benchmark weights,
    so ``1 − τ ≤ 0.35``; β = 0.3 (ASSUMPTION) tilts the off-benchmark sleeve harder to small caps,
    as the micro-cap row's 16 % (vs 2.7 % in CSI1000) requires.

    ASSUMPTIONS (not in the study, flagged in metadata): the CSI500/CSI1000 split of
    index-enhancement and public quant (``ie_csi500_share``), the IC/IM hedge mix of neutral books
    (``hedge_csi500_share``), the DMA share of the non-index-enhancement private book
    (``dma_share_of_neutral``; DMA gross counts in the 1 trillion), public quant allocated like
    index enhancement, and constant CNY AUM over time.

    ``scale_to_micro_hs`` (option, e.g. 0.1607 = the study's Table 2 small-cap 1000 row): instead
    of constant CNY AUM, scale all sleeves each day so that holdings are that share of the
    micro-cap bucket's free-float cap (the smallest ``micro_fraction`` of traded stocks by total
    cap) — useful on a market whose CNY size differs from 2024 A-shares (the synthetic one).
    """

    private_quant_cny: float = 1.0e12
    ie_share: float = 0.71
    public_quant_cny: float = 274.5e9
    dma_leverage: float = 4.0
    dma_share_of_neutral: float = 0.35
    ie_csi500_share: float = 0.5
    hedge_csi500_share: float = 0.5
    tau: float = 0.65
    beta: float = 0.3
    scale_to_micro_hs: float | None = None
    micro_fraction: float = 0.2

    ASSUMPTIONS = (
        "dma_share_of_neutral",
        "ie_csi500_share",
        "hedge_csi500_share",
        "public quant allocated like index enhancement",
        "constant CNY AUM over time",
    )

    def sleeves(self) -> tuple[Sleeve, ...]:
        ie = self.private_quant_cny * self.ie_share
        rest = self.private_quant_cny - ie
        dma = rest * self.dma_share_of_neutral
        hedge = ((CSI500, self.hedge_csi500_share), (CSI1000, 1.0 - self.hedge_csi500_share))
        return (
            Sleeve("ie_csi500", "index_enhancement", ie * self.ie_csi500_share, ((CSI500, 1.0),)),
            Sleeve("ie_csi1000", "index_enhancement", ie * (1 - self.ie_csi500_share), ((CSI1000, 1.0),)),
            Sleeve("market_neutral", "market_neutral", rest - dma, hedge, 1.0, True),
            Sleeve("dma", "dma", dma, hedge, self.dma_leverage, True),
            Sleeve(
                "public_quant",
                "public_quant",
                self.public_quant_cny,
                ((CSI500, self.ie_csi500_share), (CSI1000, 1.0 - self.ie_csi500_share)),
            ),
        )

    def as_metadata(self) -> dict:
        d = {k: v for k, v in asdict(self).items()}
        d["assumptions"] = list(self.ASSUMPTIONS)
        d["sleeves"] = [
            {
                "name": s.name,
                "strategy": s.strategy,
                "gross_bn_cny": round(s.gross_cny / 1e9, 2),
                "equity_bn_cny": round(s.equity_cny / 1e9, 2),
                "leverage": s.leverage,
                "hedged": s.hedged,
                "benchmarks": dict(s.benchmarks),
            }
            for s in self.sleeves()
        ]
        return d


@dataclass(frozen=True)
class CrowdingParams:
    """Table 2 constants and bucket rules (METHODS §8).

    ``annual_turnover`` A = 30x and ``days_per_year`` D = 242 and ``rho`` = 10 %/day are the values
    that reproduce the study's Table 2 (derived in METHODS §8: RS/TS = ρD/A = 0.8067 in every
    row). ``micro_fraction``: the micro-cap bucket is the smallest fraction of the day's traded
    stocks by total cap — 0.2 mirrors the study's "Wind small-cap 1000" in a ~5,000-stock market
    (our choice; ``micro_n`` fixes a count instead). ``participations``: days-to-liquidate
    participation rates (METHODS §8 defaults 10 %, 20 %).
    """

    annual_turnover: float = 30.0
    days_per_year: float = 242.0
    rho: float = 0.10
    adv_window: int = 20
    adv_min_periods: int = 5
    index_codes: tuple[str, ...] = (CSI300, CSI500, CSI1000, CSI2000)
    n_deciles: int = 10
    micro_fraction: float = 0.2
    micro_n: int | None = None
    participations: tuple[float, ...] = (0.10, 0.20)
    dtl_thresholds: tuple[float, ...] = (1.0, 3.0, 5.0)
    user_lists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def as_metadata(self) -> dict:
        d = asdict(self)
        d["user_lists"] = {k: len(v) for k, v in self.user_lists.items()}
        return d


# ---------------------------------------------------------------------------------------------
# Table 2 ratios
# ---------------------------------------------------------------------------------------------


def crowding_ratios(
    free_float_cap: np.ndarray | pd.Series | float,
    holdings: np.ndarray | pd.Series | float,
    adv: np.ndarray | pd.Series | float,
    annual_turnover: float = 30.0,
    days_per_year: float = 242.0,
    rho: float = 0.10,
) -> dict[str, np.ndarray]:
    """Holdings share, quant share of turnover and redemption-stress share (fractions).

    ``HS = Q/FF``; ``TS = Q·(A/D)/ADV`` (quant books turn over A times a year, so they trade
    Q·A/D a day); ``RS = ρ·Q/ADV`` (selling ρ of holdings in a day as a share of ADV). All three
    inputs in the same money unit. Zero or missing denominators give NaN.
    """
    ff = np.asarray(free_float_cap, dtype=float)
    q = np.asarray(holdings, dtype=float)
    a = np.asarray(adv, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        hs = np.where(ff > 0, q / ff, np.nan)
        ts = np.where(a > 0, q * (annual_turnover / days_per_year) / a, np.nan)
        rs = np.where(a > 0, rho * q / a, np.nan)
    return {"holdings_share": hs, "turnover_share": ts, "redemption_share": rs}


# ---------------------------------------------------------------------------------------------
# index weights carried forward
# ---------------------------------------------------------------------------------------------


def carry_forward_weights(
    index_weights: pd.DataFrame, days: Sequence, index_codes: Iterable[str] | None = None
) -> pd.DataFrame:
    """Index weights in force on each of ``days``: the latest rebalance on or before the day.

    index_weights: index_code, con_code, trade_date (rebalance day), weight (fraction).
    Returns trade_date, index_code, con_code, weight (as published; renormalise downstream),
    rebalance_date — by index code, day, then the rebalance's rows in input order. Days before
    an index's first rebalance get no rows. Vectorised: a ``searchsorted`` per index and one
    gather of the rebalance rows (no merges).
    """
    cols = ["trade_date", "index_code", "con_code", "weight", "rebalance_date"]
    iw = index_weights
    if index_codes is not None:
        iw = iw[iw["index_code"].isin(list(index_codes))]
    day_arr = np.unique(pd.to_datetime(pd.Index(days)).to_numpy(dtype="datetime64[ns]"))
    if iw.empty or not len(day_arr):
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(cols, ["datetime64[ns]", "str", "str", "float", "datetime64[ns]"], strict=True)})
    td = pd.to_datetime(iw["trade_date"]).to_numpy(dtype="datetime64[ns]")
    ic, codes = pd.factorize(iw["index_code"], sort=True)
    order = np.lexsort((td, ic))  # stable: a rebalance's rows keep their input order
    ic_s, td_s = ic[order], td[order]
    g_start = np.flatnonzero(np.r_[True, (ic_s[1:] != ic_s[:-1]) | (td_s[1:] != td_s[:-1])])
    g_len = np.diff(np.r_[g_start, len(order)])
    g_ic, g_td = ic_s[g_start], td_s[g_start]
    day_parts, src_parts = [], []
    for k in range(len(codes)):
        sel = np.flatnonzero(g_ic == k)  # this index's rebalances, dates ascending
        j = np.searchsorted(g_td[sel], day_arr, side="right") - 1
        ok = j >= 0
        grp = sel[j[ok]]
        lens = g_len[grp]
        offs = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        day_parts.append(np.repeat(day_arr[ok], lens))
        src_parts.append(order[np.repeat(g_start[grp], lens) + offs])
    src = np.concatenate(src_parts)
    if not len(src):
        return carry_forward_weights(index_weights.iloc[0:0], days)
    return pd.DataFrame({
        "trade_date": np.concatenate(day_parts),
        "index_code": pd.array(iw["index_code"], dtype="str").take(src),
        "con_code": pd.array(iw["con_code"], dtype="str").take(src),
        "weight": iw["weight"].to_numpy(dtype=float, na_value=np.nan)[src],
        "rebalance_date": td[src],
    })


# ---------------------------------------------------------------------------------------------
# holdings
# ---------------------------------------------------------------------------------------------


def _traded_values(total_mv, is_suspended=None) -> np.ndarray:
    """Rows with a positive total cap (CNY) that are not suspended (null = not suspended): the rows
    size ranks use. ``total_mv`` / ``is_suspended``: one value per row."""
    mv = np.asarray(total_mv, dtype=float)
    traded = ~np.isnan(mv) & (mv > 0)
    if is_suspended is not None:
        traded &= ~np.asarray(pd.array(is_suspended, dtype="boolean").fillna(False), dtype=bool)
    return traded


def _traded(universe: pd.DataFrame) -> np.ndarray:
    """:func:`_traded_values` of a frame's ``total_mv`` and (if present) ``is_suspended``."""
    return _traded_values(universe["total_mv"].to_numpy(dtype=float, na_value=np.nan),
                          universe["is_suspended"] if "is_suspended" in universe else None)


def _rank_by_day(day: np.ndarray, values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-day ascending rank of ``values`` among ``valid`` rows (1-based; ties by row order, like
    pandas ``rank(method="first")``; 0 for invalid rows) and each row's count of valid rows that day.

    The valid rows (non-NaN values) are laid out as days x (row order within the day) and sorted
    along each day with a stable sort: short per-day sorts instead of one stable sort of every row
    (~5x faster on a chunk of the full market; issue 11)."""
    rank = np.zeros(len(values), dtype=np.int64)
    d_codes, _ = pd.factorize(day)
    if not len(d_codes):
        return rank, np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(valid)
    count = np.bincount(d_codes[idx], minlength=int(d_codes.max()) + 1)
    if len(idx):
        small = d_codes.max() < np.iinfo(np.int16).max  # int16: numpy's stable sort is a radix sort
        o = idx[np.argsort(d_codes[idx].astype(np.int16 if small else np.int64), kind="stable")]  # by day, then row
        d = d_codes[o]
        col = np.arange(len(o)) - (np.cumsum(count) - count)[d]
        lay = np.full((len(count), int(count.max())), np.inf)  # padding sorts after every value of the day
        lay[d, col] = values[o]
        srt = np.argsort(lay, axis=1, kind="stable")
        pos = np.empty_like(srt)
        np.put_along_axis(pos, srt, np.broadcast_to(np.arange(lay.shape[1]), lay.shape), axis=1)
        rank[o] = pos[d, col] + 1
    return rank, count[d_codes]


def micro_mask(universe: pd.DataFrame, fraction: float = 0.2, n: int | None = None) -> pd.Series:
    """True for the day's smallest traded stocks by total cap (``n`` of them, else ``fraction``).

    universe: trade_date, total_mv, optionally is_suspended. Ranks are per day; ties by order.
    """
    traded = _traded(universe)
    rank, n_day = _rank_by_day(universe["trade_date"].to_numpy(), universe["total_mv"].to_numpy(dtype=float, na_value=np.nan), traded)
    return pd.Series(_smallest(traded, rank, n_day, fraction, n), index=universe.index)


def _smallest(traded: np.ndarray, rank: np.ndarray, n_day: np.ndarray, fraction: float, n: int | None) -> np.ndarray:
    k = n if n else np.maximum(1, np.round(fraction * n_day))
    return traded & (rank <= k)


def _benchmark_weight(grid: StockGrid, wb: np.ndarray, ff: np.ndarray, tau: float, beta: float) -> np.ndarray:
    """Sleeve weight on one benchmark for every grid cell with a row (sums to 1 per session; 0 elsewhere).

    wb: the benchmark's weights in force (:func:`_in_force_weights`); ff: free-float cap (CNY),
    both sessions x stocks."""
    pr = grid.present
    is_con = pr & ~np.isnan(wb) & (wb > 0)
    wb = np.where(is_con, wb, 0.0)
    tilt = np.where(pr & ~is_con & np.isfinite(ff) & (ff > 0), np.power(np.where(ff > 0, ff, 1.0), beta), 0.0)
    sw = wb.sum(axis=1, keepdims=True)
    st = tilt.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        wn = np.where(sw > 0, wb / sw, 0.0)
        un = np.where(st > 0, tilt / st, 0.0)
    # (1 - τ) w + τ u; if one part is empty on a day the other takes the whole sleeve
    t = np.where((sw > 0) & (st > 0), tau, np.where(st > 0, 1.0, 0.0))
    return (1.0 - t) * wn + t * un


def holdings_on_grid(
    grid: StockGrid, free_float_mv: np.ndarray, index_weights: pd.DataFrame, params: HoldingsParams = HoldingsParams(),
    total_mv: np.ndarray | None = None, traded: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
    """Per stock-day quant holdings (CNY) by sleeve on ``grid`` (METHODS §7).

    free_float_mv (CNY; NaN for suspended), total_mv (CNY) and traded (:func:`_traded_values`):
    sessions x stocks arrays; the last two are needed by ``scale_to_micro_hs`` only.
    Returns ({sleeve name: sessions x stocks holdings}, their sum, the micro-cap mask of
    ``scale_to_micro_hs`` or None). Cells without a row hold 0. Each sleeve sums to its
    gross_cny on every session with a row (before the ``scale_to_micro_hs`` scaling, which breaks
    micro-cap rank ties by ts_code).
    """
    pr = grid.present
    ff = free_float_mv
    sleeves = params.sleeves()
    codes = sorted({b for s in sleeves for b, _ in s.benchmarks})
    bench_w = {b: _benchmark_weight(grid, _in_force_weights(grid, index_weights, b), ff, params.tau, params.beta)
               for b in codes}
    hold = {}
    total = np.zeros(grid.shape)
    for s in sleeves:
        w = sum(mix * bench_w[b] for b, mix in s.benchmarks)
        hold[s.name] = s.gross_cny * np.asarray(w, dtype=float)
        total += hold[s.name]
    micro = None
    if params.scale_to_micro_hs is not None:
        if total_mv is None or traded is None:
            raise ValueError("scale_to_micro_hs needs total_mv in the universe")
        d, _ = grid.cells()  # rows in (trade_date, ts_code) order
        tr = traded[pr]
        rank, n_day = _rank_by_day(d, total_mv[pr], tr)
        micro = np.zeros(grid.shape, dtype=bool)
        micro[pr] = _smallest(tr, rank, n_day, params.micro_fraction, None)
        q_m = np.where(micro, total, 0.0).sum(axis=1, keepdims=True)
        ff_m = np.where(micro, np.nan_to_num(ff), 0.0).sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(q_m > 0, params.scale_to_micro_hs * ff_m / np.where(q_m > 0, q_m, 1.0), 1.0)
        hold = {n: h * k for n, h in hold.items()}
        total = total * k
    return hold, total, micro


def holdings_frame(grid: StockGrid, free_float_mv: np.ndarray, hold: Mapping[str, np.ndarray],
                   total: np.ndarray) -> pd.DataFrame:
    """The rows of :func:`holdings_on_grid` (one per grid cell with a row, by trade_date then
    ts_code): trade_date, ts_code, free_float_mv, hold_<sleeve>, holdings, source ('estimate'),
    holdings_share (holdings / free_float_mv; NaN without a positive free float)."""
    pr = grid.present
    d, c = grid.cells()
    ffo = free_float_mv[pr]
    q = total[pr]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(ffo > 0, q / ffo, np.nan)
    return pd.DataFrame({
        "trade_date": grid.dates()[d],
        "ts_code": pd.array(grid.codes.take(pa.array(c)), dtype="str"),
        "free_float_mv": ffo,
        **{f"hold_{n}": h[pr] for n, h in hold.items()},
        "holdings": q,
        "source": _labels(np.zeros(len(d), dtype=np.int32), pa.array(["estimate"])),
        "holdings_share": share,
    }, copy=False)


def estimate_quant_holdings(
    universe: pd.DataFrame,
    index_weights: pd.DataFrame,
    params: HoldingsParams = HoldingsParams(),
    product_holdings: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per stock-day quant holdings (CNY) by sleeve (METHODS §7).

    universe: trade_date, ts_code, free_float_mv (CNY; NaN for suspended), optionally total_mv
    and is_suspended (needed by ``scale_to_micro_hs``); one row per (trade_date, ts_code).
    index_weights: staging.stg_index_weight rows (index_code, con_code, trade_date, weight).
    product_holdings: optional trade_date, ts_code, holdings (CNY) from a product-holdings feed;
    where present it replaces the estimated total (sleeve columns are scaled to match).

    Returns trade_date, ts_code, free_float_mv, hold_<sleeve> for each sleeve, holdings (CNY),
    holdings_share (holdings / free_float_mv), source ('estimate'|'product_feed'), sorted by
    trade_date, ts_code. Each sleeve's column sums to its gross_cny on every day that has a
    universe. Computed on a sessions x stocks grid (:func:`holdings_on_grid`; issue 11); the
    micro-cap ranks of ``scale_to_micro_hs`` break ties by ts_code.
    """
    day = pd.to_datetime(universe["trade_date"]).to_numpy(dtype="datetime64[ns]")
    g = StockGrid(day, universe["ts_code"], "universe")
    ff = g.wide(universe["free_float_mv"].to_numpy(dtype=float, na_value=np.nan))
    mv = traded = None
    if params.scale_to_micro_hs is not None and "total_mv" in universe:  # else holdings_on_grid refuses
        mv = g.wide(universe["total_mv"].to_numpy(dtype=float, na_value=np.nan))
        traded = g.wide(_traded(universe), False, bool)
    hold, total, _ = holdings_on_grid(g, ff, index_weights, params, mv, traded)
    out = holdings_frame(g, ff, hold, total)
    if product_holdings is not None and len(product_holdings):
        est = out["holdings"].to_numpy()
        ph = product_holdings[["trade_date", "ts_code", "holdings"]].copy()
        ph["trade_date"] = pd.to_datetime(ph["trade_date"]).astype("datetime64[ns]")
        ph = ph.groupby(["trade_date", "ts_code"], as_index=False)["holdings"].sum().rename(columns={"holdings": "_ph"})
        out = out.merge(ph, on=["trade_date", "ts_code"], how="left")
        hit = out["_ph"].notna().to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(hit & (est > 0), out["_ph"].to_numpy() / np.where(est > 0, est, 1.0), 1.0)
        for name in hold:
            col = f"hold_{name}"
            out[col] = out[col].to_numpy() * scale
        out.loc[hit, "holdings"] = out.loc[hit, "_ph"]
        out.loc[hit, "source"] = "product_feed"
        out = out.drop(columns="_ph")
        ffo = out["free_float_mv"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["holdings_share"] = np.where(ffo > 0, out["holdings"].to_numpy() / ffo, np.nan)
    return out


# ---------------------------------------------------------------------------------------------
# row keys, the sessions x stocks grid and rolling liquidity inputs
# ---------------------------------------------------------------------------------------------


def _day_numbers(dates) -> np.ndarray:
    """Days since the epoch (int64) of a date-like column/array."""
    return pd.to_datetime(pd.Series(np.asarray(dates)) if not isinstance(dates, pd.Series) else dates).to_numpy(
        dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)


def _strings(col) -> pa.Array:
    """A string column as one Arrow array (zero-copy for pandas ``str`` columns and Arrow arrays)."""
    arr = col if isinstance(col, pa.Array | pa.ChunkedArray) else pa.array(pd.array(col, dtype="str"))
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def row_positions(table: pd.DataFrame, rows: pd.DataFrame, what: str = "table") -> np.ndarray:
    """Position in ``table`` of each (trade_date, ts_code) row of ``rows``; -1 where absent.

    An integer-keyed hash join (day number x code number; codes hashed in Arrow) instead of a
    merge on a date and a string column; ``table`` must not repeat a key (ValueError naming
    ``what``). Left-join semantics: the result follows the order of ``rows``.
    """
    t_str = _strings(table["ts_code"])
    uniq = pc.unique(t_str)
    n = max(len(uniq), 1)
    t_key = _day_numbers(table["trade_date"]) * n + pc.index_in(t_str, value_set=uniq).to_numpy(zero_copy_only=False)
    idx = pd.Index(t_key)
    if not idx.is_unique:
        dup = table.iloc[np.flatnonzero(idx.duplicated())[:3]][["trade_date", "ts_code"]]
        raise ValueError(f"{what}: duplicate (trade_date, ts_code) rows, e.g. {dup.to_dict('records')}")
    r_code = pc.index_in(_strings(rows["ts_code"]), value_set=uniq).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    r_key = np.where(r_code >= 0, _day_numbers(rows["trade_date"]) * n + r_code, -1)
    return np.where(r_code >= 0, idx.get_indexer(r_key), -1)


class StockGrid:
    """Stock-day rows laid out on a sessions x stocks grid.

    Grid rows are the distinct sessions (ascending day numbers, ``days``), columns the distinct
    ts_codes (sorted, ``codes``, an Arrow string array); ``di`` / ``si`` give the grid row and
    column of each input row and ``present`` marks the cells that have a row. Joins, per-bucket
    sums and rolling windows become array indexing and matrix products on the grid instead of
    hash joins and merges on (date, code) keys (issue 11). A repeated (day, code) is a ValueError
    naming ``what``.
    """

    def __init__(self, day, code, what: str = "table"):
        dn = np.asarray(day)
        dn = dn.astype(np.int64) if np.issubdtype(dn.dtype, np.integer) else _day_numbers(day)
        di, days = pd.factorize(dn, sort=True)
        self.days = np.asarray(days, dtype=np.int64)
        codes = _strings(code)
        uniq = pc.unique(codes)
        self.codes = uniq.take(pc.array_sort_indices(uniq))
        self.di = np.asarray(di, dtype=np.int64)
        self.si = pc.index_in(codes, value_set=self.codes).to_numpy(zero_copy_only=False).astype(np.int64)
        n = np.bincount(self.di * len(self.codes) + self.si, minlength=len(self.days) * len(self.codes))
        if len(n) and n.max() > 1:
            dup = np.flatnonzero(n > 1)[:3]
            ex = [{"trade_date": str(np.datetime64(int(self.days[k // len(self.codes)]), "D")),
                   "ts_code": self.codes[int(k % len(self.codes))].as_py()} for k in dup]
            raise ValueError(f"{what}: duplicate (trade_date, ts_code) rows, e.g. {ex}")
        self.present = (n > 0).reshape(self.shape)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.days), len(self.codes)

    def wide(self, values, fill=np.nan, dtype=float) -> np.ndarray:
        """``values`` (one per input row) on the grid; ``fill`` where a cell has no row."""
        a = np.full(self.shape, fill, dtype=dtype)
        a[self.di, self.si] = values
        return a

    def locate(self, day, code) -> tuple[np.ndarray, np.ndarray]:
        """Grid row and column of (day, code) rows; -1 where the day or the code is not in the grid."""
        dn = np.asarray(day)
        dn = dn.astype(np.int64) if np.issubdtype(dn.dtype, np.integer) else _day_numbers(day)
        d = np.searchsorted(self.days, dn)
        d = np.where((d < len(self.days)) & (self.days[np.minimum(d, max(len(self.days) - 1, 0))] == dn), d, -1) \
            if len(self.days) else np.full(len(dn), -1)
        s = pc.index_in(_strings(code), value_set=self.codes).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return d, s

    def select_days(self, keep: np.ndarray) -> tuple[StockGrid, np.ndarray]:
        """The sub-grid of the sessions where ``keep`` (bool per grid row) and which input rows it keeps."""
        sub = object.__new__(StockGrid)
        sub.days, sub.codes, sub.present = self.days[keep], self.codes, self.present[keep]
        rows = keep[self.di]
        new = np.cumsum(keep) - 1
        sub.di, sub.si = new[self.di[rows]], self.si[rows]
        return sub, rows

    def select_codes(self, keep: np.ndarray) -> StockGrid:
        """The sub-grid of the stocks where ``keep`` (bool per grid column), every input row kept:
        each row's stock must be kept (e.g. ``keep = present.any(axis=0)``)."""
        sub = object.__new__(StockGrid)
        sub.days, sub.codes, sub.present = self.days, self.codes.filter(pa.array(keep)), self.present[:, keep]
        sub.di, sub.si = self.di, (np.cumsum(keep) - 1)[self.si]
        return sub

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid row and column of each cell with a row, in (session, stock) order: ``np.nonzero(present)``
        (built from the row counts; ``a[present]`` gathers values in the same order)."""
        n = self.present.sum(axis=1)
        return (np.repeat(np.arange(len(n), dtype=np.int64), n),
                np.broadcast_to(np.arange(self.shape[1], dtype=np.int64), self.shape)[self.present])

    def dates(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.days.astype("datetime64[D]").astype("datetime64[ns]"))


def _window_sum(a: np.ndarray, window: int) -> np.ndarray:
    """Sum of each cell and the ``window - 1`` rows above it (fewer at the top), column by column."""
    out = a.copy()
    for k in range(1, min(window, len(a))):
        out[k:] += a[:-k]
    return out


def rolling_stat(a: np.ndarray, window: int, min_periods: int, how: str = "mean") -> np.ndarray:
    """Rolling mean or standard deviation (ddof=1) down the rows of a sessions x stocks array.

    NaN cells are skipped (a window needs ``min_periods`` finite values), as pandas ``rolling``
    does column by column. The mean is a direct sum over the window (``window`` shifted adds, no
    running sum: exact zeros stay zero); the std is pandas'.
    """
    if how != "mean":
        return pd.DataFrame(a, copy=False).rolling(window, min_periods=min_periods).std(ddof=1).to_numpy()
    ok = np.isfinite(a)
    s = _window_sum(np.where(ok, a, 0.0), window)
    n = _window_sum(ok.astype(np.float64), window)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n >= max(min_periods, 1), s / n, np.nan)


def wide_rolling(
    panel: pd.DataFrame, stats: Mapping[str, tuple[str, int, int, str]]
) -> tuple[pd.DatetimeIndex, pd.Index, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-stock rolling means / standard deviations on sessions x stocks arrays.

    panel: trade_date, ts_code and the value columns (NaN on suspended days: skipped, not zero;
    a stock without a row on a session is NaN there too). stats: output name -> (value column,
    window, min_periods, 'mean'|'std'); windows count panel sessions (rows of the wide array),
    the day itself included; std has ddof=1 (see :func:`rolling_stat`).
    Returns (sessions, codes (both sorted), {name: sessions x codes array}, row session index,
    row code index) — the last two locate each panel row in the arrays.
    """
    g = StockGrid(panel["trade_date"], panel["ts_code"], "panel")
    out: dict[str, np.ndarray] = {}
    for name, (value, window, min_periods, how) in stats.items():
        a = g.wide(pd.to_numeric(panel[value], errors="coerce").to_numpy(dtype=float, na_value=np.nan))
        out[name] = rolling_stat(a, window, min_periods, how)
    return g.dates(), pd.Index(pd.array(g.codes, dtype="str")), out, g.di, g.si


def adv_and_sigma(
    panel: pd.DataFrame, adv_window: int = 20, adv_min_periods: int = 5, sigma_window: int = 60, sigma_min_periods: int = 20
) -> pd.DataFrame:
    """ADV (CNY and shares) and daily volatility per stock-day from a stock panel with lookback.

    panel: trade_date, ts_code, amount (CNY), vol (shares), ret (fraction).
    Returns trade_date, ts_code, adv_cny, adv_shares, sigma_d (rows where any of the three is
    defined, sorted by trade_date, ts_code); see :func:`wide_rolling` for the windows.
    """
    days, codes, w, _, _ = wide_rolling(panel, liquidity_stats(adv_window, adv_min_periods, sigma_window, sigma_min_periods))
    n_d, n_s = len(days), len(codes)
    flat = {k: v.ravel() for k, v in w.items()}
    keep = np.zeros(n_d * n_s, dtype=bool)
    for v in flat.values():
        keep |= ~np.isnan(v)
    pos = np.flatnonzero(keep)
    out = pd.DataFrame({"trade_date": days.take(pos // max(n_s, 1)), "ts_code": codes.take(pos % max(n_s, 1))})
    for k in ("adv_cny", "adv_shares", "sigma_d"):
        out[k] = flat[k][pos]
    return out


def liquidity_stats(
    adv_window: int = 20, adv_min_periods: int = 5, sigma_window: int | None = 60, sigma_min_periods: int = 20,
    shares: bool = True,
) -> dict[str, tuple[str, int, int, str]]:
    """The :func:`wide_rolling` spec of ADV in CNY (``adv_cny``, from amount), ADV in shares
    (``adv_shares``, from vol; if ``shares``) and daily volatility (``sigma_d``, std of ret; if
    ``sigma_window``)."""
    st = {"adv_cny": ("amount", adv_window, adv_min_periods, "mean")}
    if shares:
        st["adv_shares"] = ("vol", adv_window, adv_min_periods, "mean")
    if sigma_window:
        st["sigma_d"] = ("ret", sigma_window, sigma_min_periods, "std")
    return st


# ---------------------------------------------------------------------------------------------
# buckets
# ---------------------------------------------------------------------------------------------

BUCKET_ORDER = {"micro": 0, "index": 1, "cap_decile": 2, "user": 3, "all": 4, "stock": 5}


class GridBuckets:
    """Bucket memberships on a :class:`StockGrid`, in output order (``BUCKET_ORDER``, then bucket).

    ``types`` / ``labels``: bucket_type and bucket of each bucket; ``member``: sessions x buckets x
    stocks, 1.0 where the stock is in the bucket that session. Per-bucket sums of several value
    layers are then one batched matrix product (:meth:`sums`) instead of a join of membership
    rows and a group-by (issue 11). Buckets without a member on any session are left out.
    """

    def __init__(self, grid: StockGrid, masks: Sequence[tuple[str, str, np.ndarray]]):
        masks = [m for m in masks if m[2].any()]
        self.types = [t for t, _, _ in masks]
        self.labels = [b for _, b, _ in masks]
        self.member = np.zeros((grid.shape[0], len(masks), grid.shape[1]))
        for i, (_, _, m) in enumerate(masks):
            self.member[:, i, :] = m

    def mask(self, bucket_type: str, bucket: str) -> np.ndarray:
        """Sessions x stocks membership of one bucket (all False if it has no member)."""
        for i, (t, b) in enumerate(zip(self.types, self.labels, strict=True)):
            if (t, b) == (bucket_type, bucket):
                return self.member[:, i, :] > 0
        return np.zeros((self.member.shape[0], self.member.shape[2]), dtype=bool)

    def sums(self, layers: np.ndarray) -> np.ndarray:
        """Per bucket and session, the sums of each value layer (sessions x layers x stocks, no NaN)
        over the bucket's stocks: buckets x sessions x layers."""
        return np.einsum("dbs,dks->bdk", self.member, layers, optimize=True)


def _size_buckets(day: np.ndarray, total_mv: np.ndarray, traded: np.ndarray, params: CrowdingParams):
    """Per row: cap decile (1 = smallest; 0 if not traded) and micro-cap membership, among the day's
    traded rows by total cap (ties by row order)."""
    rank, n_day = _rank_by_day(day, total_mv, traded)
    dec = np.zeros(len(total_mv), dtype=np.int64)
    if traded.any():
        pct = rank[traded] / n_day[traded]
        dec[traded] = np.clip(np.ceil(pct * params.n_deciles), 1, params.n_deciles).astype(np.int64)
    return dec, _smallest(traded, rank, n_day, params.micro_fraction, params.micro_n)


def _in_force_weights(grid: StockGrid, index_weights: pd.DataFrame, index_code: str) -> np.ndarray:
    """Weights of ``index_code``'s latest rebalance on or before each grid session, as sessions x
    stocks (NaN: not in that rebalance). Same rule as :func:`carry_forward_weights`, without
    expanding the weights to one row per day; a stock listed twice in a rebalance is a ValueError."""
    out = np.full(grid.shape, np.nan)
    sel = (index_weights["index_code"] == index_code).to_numpy(dtype=bool, na_value=False) if len(index_weights) else []
    if not np.any(sel) or not out.size:
        return out
    iw = index_weights[sel]
    td = _day_numbers(iw["trade_date"])
    reb = np.unique(td)
    j = np.searchsorted(reb, grid.days, side="right") - 1  # rebalance in force per session
    s = pc.index_in(_strings(iw["con_code"]), value_set=grid.codes).fill_null(-1).to_numpy(zero_copy_only=False)
    r = np.searchsorted(reb, td)
    ok = s >= 0
    cell = r[ok] * grid.shape[1] + s[ok]
    if len(cell) != len(np.unique(cell)):
        raise ValueError(f"weights of {index_code}: duplicate (trade_date, con_code) rows")
    cons = np.full((len(reb), grid.shape[1]), np.nan)  # rebalance x stocks
    cons[r[ok], s[ok]] = iw["weight"].to_numpy(dtype=float, na_value=np.nan)[ok]
    return np.where((j >= 0)[:, None], cons[np.maximum(j, 0)], np.nan)


def _index_members(grid: StockGrid, index_weights: pd.DataFrame, index_code: str) -> np.ndarray:
    """Constituents (weight > 0) of ``index_code`` in force on each grid session among the stocks
    with a row that day: a sessions x stocks mask."""
    w = _in_force_weights(grid, index_weights, index_code)
    return grid.present & ~np.isnan(w) & (w > 0)


def bucket_masks(
    grid: StockGrid, total_mv, is_suspended, index_weights: pd.DataFrame, params: CrowdingParams = CrowdingParams(),
) -> GridBuckets:
    """The buckets of :func:`assign_buckets` on ``grid``, in output order (``BUCKET_ORDER``, then
    bucket name).

    ``total_mv`` / ``is_suspended``: one value per input row of ``grid`` (size-rank ties go by
    input row order, as in :func:`assign_buckets`).
    """
    mv = np.asarray(total_mv, dtype=float)
    traded = _traded_values(mv, is_suspended)
    dec, micro = _size_buckets(grid.di, mv, traded, params)
    out = [("micro", "micro_cap", grid.wide(micro, False, bool))]
    if len(index_weights):
        out += [("index", c, _index_members(grid, index_weights, c)) for c in sorted(set(params.index_codes))]
    dg = grid.wide(dec, 0, np.int64)
    out += sorted((("cap_decile", f"D{d:02d}", dg == d) for d in range(1, params.n_deciles + 1)), key=lambda b: b[1])
    for name in sorted(params.user_lists):
        col = pc.is_in(grid.codes, value_set=pa.array(list(params.user_lists[name]), type=pa.string())).to_numpy(
            zero_copy_only=False)
        out.append(("user", name, grid.present & col[None, :]))
    out.append(("all", "market", grid.present))
    return GridBuckets(grid, out)


def assign_buckets(
    universe: pd.DataFrame,
    index_weights: pd.DataFrame,
    params: CrowdingParams = CrowdingParams(),
) -> pd.DataFrame:
    """Bucket memberships per stock-day (long format: one row per stock, day and bucket).

    universe: trade_date, ts_code, total_mv, is_suspended (optional).
    bucket_type / bucket:
      'index' / index code      constituents in force (index weights carried forward);
      'cap_decile' / 'D01'..    deciles of total cap among the day's traded stocks, D01 smallest;
      'micro' / 'micro_cap'     the smallest ``micro_n`` (or ``micro_fraction``) traded stocks by total cap;
      'user' / list name        ``params.user_lists``;
      'all' / 'market'          every stock of the universe.
    Rows: 'all' (universe order), 'index' (by index code, then day, then universe order),
    'cap_decile', 'micro', 'user' (universe order). The same rules as :func:`bucket_masks`.
    """
    day = pd.to_datetime(universe["trade_date"]).to_numpy(dtype="datetime64[ns]")
    g = StockGrid(day, universe["ts_code"], "universe")
    key = pd.DataFrame({"trade_date": day, "ts_code": pd.array(universe["ts_code"], dtype="str")})
    parts = [key.assign(bucket_type="all", bucket="market")]
    if len(index_weights):
        for c in sorted(set(params.index_codes)):
            hit = _index_members(g, index_weights, c)[g.di, g.si]
            r = np.flatnonzero(hit)
            r = r[np.argsort(g.di[r], kind="stable")]
            parts.append(key.iloc[r].assign(bucket_type="index", bucket=c))
    traded = _traded(universe)
    if traded.any():
        dec, micro = _size_buckets(g.di, universe["total_mv"].to_numpy(dtype=float, na_value=np.nan), traded, params)
        labels = np.array([f"D{d:02d}" for d in range(1, params.n_deciles + 1)])
        parts.append(key[traded].assign(bucket_type="cap_decile", bucket=labels[dec[traded] - 1]))
        parts.append(key[micro].assign(bucket_type="micro", bucket="micro_cap"))
    for name, codes in params.user_lists.items():
        parts.append(key[key["ts_code"].isin(list(codes)).to_numpy()].assign(bucket_type="user", bucket=name))
    out = pd.concat(parts, ignore_index=True)
    out["bucket_type"] = out["bucket_type"].astype(str)
    out["bucket"] = out["bucket"].astype(str)
    return out


def masks_from_rows(grid: StockGrid, buckets: pd.DataFrame) -> GridBuckets:
    """Long bucket rows (:func:`assign_buckets`) as :func:`bucket_masks` (rows whose stock-day is
    not in ``grid`` are dropped; membership is a set)."""
    if not len(buckets):
        return GridBuckets(grid, [])
    d, s = grid.locate(buckets["trade_date"], buckets["ts_code"])
    ok = (d >= 0) & (s >= 0)
    ok[ok] = grid.present[d[ok], s[ok]]
    t_code, t_vals = pd.factorize(pd.array(buckets["bucket_type"], dtype="str"))
    b_code, b_vals = pd.factorize(pd.array(buckets["bucket"], dtype="str"))
    grp = t_code * len(b_vals) + b_code
    out = []
    for gk in np.unique(grp[ok]):
        m = np.zeros(grid.shape, dtype=bool)
        r = ok & (grp == gk)
        m[d[r], s[r]] = True
        out.append((str(t_vals[gk // len(b_vals)]), str(b_vals[gk % len(b_vals)]), m))
    return GridBuckets(grid, sorted(out, key=lambda b: (BUCKET_ORDER.get(b[0], 9), b[1])))


# ---------------------------------------------------------------------------------------------
# crowding table and days to liquidate on the grid
# ---------------------------------------------------------------------------------------------


def _labels(codes: np.ndarray, values: pa.Array) -> pd.arrays.ArrowStringArray:
    """``values[codes]`` as a pandas ``str`` array (built in Arrow, no Python string objects)."""
    arr = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), values.cast(pa.large_string()))
    return pd.array(arr.cast(pa.large_string()), dtype="str")


class _Layout:
    """Output rows of a bucket table: per session, ``n_rep`` blocks (one per participation) of the
    session's bucket rows (``buckets`` order) then its stock rows (code order)."""

    def __init__(self, grid: StockGrid, buckets: GridBuckets, exists: np.ndarray, n_rep: int = 1):
        self.grid, self.n_rep = grid, n_rep
        self.d_b, self.b_b = np.nonzero(exists)  # exists: sessions x buckets
        self.d_s, self.s_s = grid.cells()
        nb, ns = exists.sum(axis=1), grid.present.sum(axis=1)
        blk = nb + ns
        self.n = int(blk.sum()) * n_rep
        start = np.r_[0, np.cumsum(blk * n_rep)[:-1]].astype(np.int64)
        loc_b = np.arange(len(self.d_b)) - np.r_[0, np.cumsum(nb)[:-1]].astype(np.int64)[self.d_b]
        loc_s = nb[self.d_s] + np.arange(len(self.d_s)) - np.r_[0, np.cumsum(ns)[:-1]].astype(np.int64)[self.d_s]
        # output row of each bucket row / stock row, per rep
        self.pos_b = [start[self.d_b] + loc_b + r * blk[self.d_b] for r in range(n_rep)]
        self.pos_s = [start[self.d_s] + loc_s + r * blk[self.d_s] for r in range(n_rep)]
        self.types, self.labels = buckets.types, buckets.labels

    def fill(self, bucket_vals: Sequence[np.ndarray], stock_vals: Sequence[np.ndarray], dtype=float) -> np.ndarray:
        """One output column from per-rep values of the bucket rows and of the stock rows."""
        out = np.empty(self.n, dtype=dtype)
        for r in range(self.n_rep):
            out[self.pos_b[r]] = bucket_vals[r]
            out[self.pos_s[r]] = stock_vals[r]
        return out

    def frame(self, cols: Mapping[str, np.ndarray]) -> pd.DataFrame:
        """trade_date, bucket_type, bucket of every output row, then ``cols`` (one frame, no copies)."""
        type_vals = list(dict.fromkeys(self.types)) + ["stock"]
        t_code = np.array([type_vals.index(t) for t in self.types], dtype=np.int64)
        ns_day = self.grid.days * np.int64(86_400 * 10**9)  # datetime64[ns] of each session
        day = self.fill([ns_day[self.d_b]] * self.n_rep, [ns_day[self.d_s]] * self.n_rep, np.int64)
        typ = self.fill([t_code[self.b_b]] * self.n_rep, [np.full(len(self.d_s), len(type_vals) - 1)] * self.n_rep, np.int32)
        lab = self.fill([self.b_b] * self.n_rep, [len(self.labels) + self.s_s] * self.n_rep, np.int32)
        labels = pa.concat_arrays([pa.array(self.labels, type=pa.large_string()), self.grid.codes.cast(pa.large_string())])
        return pd.DataFrame({
            "trade_date": day.view("datetime64[ns]"),
            "bucket_type": _labels(typ, pa.array(type_vals, type=pa.large_string())),
            "bucket": _labels(lab, labels),
            **cols,
        }, copy=False)


def crowding_table_grid(
    grid: StockGrid, buckets: GridBuckets, free_float_mv: np.ndarray, holdings: np.ndarray, adv_cny: np.ndarray,
    params: CrowdingParams = CrowdingParams(),
) -> pd.DataFrame:
    """:func:`crowding_table` on the grid: ``buckets`` from :func:`bucket_masks`, the values as
    sessions x stocks arrays (read at the cells of ``grid.present``)."""
    pr = grid.present
    ff, q, adv = (np.where(pr, a, np.nan) for a in (free_float_mv, holdings, adv_cny))
    missing = pr & (np.isnan(ff) | np.isnan(adv))
    v = np.empty((pr.shape[0], 5, pr.shape[1]))  # sessions x layers x stocks
    v[:, 0], v[:, 1], v[:, 2], v[:, 3], v[:, 4] = pr, missing, np.nan_to_num(ff), np.nan_to_num(q), np.nan_to_num(adv)
    s = buckets.sums(v)  # buckets x sessions x 5
    lay = _Layout(grid, buckets, (s[:, :, 0] > 0).T)
    sb = s[lay.b_b, lay.d_b]  # bucket rows x 5
    cell = pr  # the stock rows' cells, in row order
    cols = {
        "n_stocks": lay.fill([sb[:, 0]], [np.ones(len(lay.d_s))], np.int64),
        "n_missing": lay.fill([sb[:, 1]], [missing[cell]], np.int64),
        "free_float_mv": lay.fill([sb[:, 2]], [ff[cell]]),
        "holdings": lay.fill([sb[:, 3]], [q[cell]]),
        "adv_cny": lay.fill([sb[:, 4]], [adv[cell]]),
    }
    cols.update(crowding_ratios(cols["free_float_mv"], cols["holdings"], cols["adv_cny"], params.annual_turnover,
                                params.days_per_year, params.rho))
    return lay.frame(cols)


def days_to_liquidate_grid(
    grid: StockGrid, buckets: GridBuckets, holdings: np.ndarray, adv_cny: np.ndarray,
    participations: Sequence[float] = (0.10, 0.20), thresholds: Sequence[float] = (1.0, 3.0, 5.0),
) -> pd.DataFrame:
    """:func:`days_to_liquidate` on the grid (see :func:`crowding_table_grid`)."""
    pr = grid.present
    q, adv = (np.where(pr, a, np.nan) for a in (holdings, adv_cny))
    ok = pr & np.isfinite(adv) & (adv > 0) & np.isfinite(q)
    hq = np.where(ok, q, 0.0)
    no_adv = np.where(pr & ~ok, np.nan_to_num(q), 0.0)
    n_p, n_t = len(participations), len(thresholds)
    layers = np.empty((pr.shape[0], 3 + n_p * (1 + n_t), pr.shape[1]))  # sessions x layers x stocks
    layers[:, 0], layers[:, 1], layers[:, 2] = pr, hq, no_adv
    for i, p in enumerate(participations):
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(ok, q / (p * np.where(ok, adv, 1.0)), np.nan)
        layers[:, 3 + i * (1 + n_t)] = np.where(ok, q * d, 0.0)
        for j, t in enumerate(thresholds):
            layers[:, 4 + i * (1 + n_t) + j] = np.where(ok & (d > t), q, 0.0)
    s = buckets.sums(layers)
    lay = _Layout(grid, buckets, (s[:, :, 0] > 0).T, n_p)
    sb = s[lay.b_b, lay.d_b]
    cell = pr  # the stock rows' cells, in row order
    st = {"n_stocks": np.ones(len(lay.d_s)), "holdings": hq[cell], "holdings_no_adv": no_adv[cell]}
    cols = {
        "participation": lay.fill([np.full(len(lay.d_b), float(p)) for p in participations],
                                  [np.full(len(lay.d_s), float(p)) for p in participations]),
        "n_stocks": lay.fill([sb[:, 0]] * n_p, [st["n_stocks"]] * n_p, np.int64),
        "holdings": lay.fill([sb[:, 1]] * n_p, [st["holdings"]] * n_p),
        "holdings_no_adv": lay.fill([sb[:, 2]] * n_p, [st["holdings_no_adv"]] * n_p),
    }
    hq_b, hq_s = sb[:, 1], st["holdings"]
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, c in enumerate(["dtl_days"] + [f"share_gt_{t:g}d" for t in thresholds]):
            # layer k of each participation (q x DTL, then q above each threshold) over the holdings with an ADV
            li = [3 + i * (1 + n_t) + k for i in range(n_p)]
            cols[c] = lay.fill([np.where(hq_b > 0, sb[:, j] / hq_b, np.nan) for j in li],
                               [np.where(hq_s > 0, layers[:, j][cell] / hq_s, np.nan) for j in li])
    return lay.frame(cols)


def crowding_table(
    stock: pd.DataFrame, buckets: pd.DataFrame, params: CrowdingParams = CrowdingParams()
) -> pd.DataFrame:
    """Table 2 per bucket and per stock, per day.

    stock: trade_date, ts_code, free_float_mv, holdings (CNY), adv_cny (CNY/day); one row per
    (trade_date, ts_code).
    buckets: output of :func:`assign_buckets`.
    Returns trade_date, bucket_type, bucket ('stock' rows: bucket = ts_code), n_stocks,
    free_float_mv, holdings, adv_cny, holdings_share, turnover_share, redemption_share.
    Bucket sums skip missing values (a suspended stock adds its holdings but no cap/ADV; such
    stocks are counted in ``n_missing``). Rows sorted by trade_date, bucket type
    (``BUCKET_ORDER``), bucket. Computed on a sessions x stocks grid (:func:`crowding_table_grid`).
    """
    g = StockGrid(stock["trade_date"], stock["ts_code"], "stock")
    val = {c: g.wide(stock[c].to_numpy(dtype=float, na_value=np.nan)) for c in ("free_float_mv", "holdings", "adv_cny")}
    return crowding_table_grid(g, masks_from_rows(g, buckets), val["free_float_mv"], val["holdings"], val["adv_cny"], params)


def days_to_liquidate(
    stock: pd.DataFrame,
    buckets: pd.DataFrame,
    participations: Sequence[float] = (0.10, 0.20),
    thresholds: Sequence[float] = (1.0, 3.0, 5.0),
) -> pd.DataFrame:
    """Days to liquidate quant holdings at participation p of ADV (METHODS §8; ESMA 2020).

    ``DTL_n = Q_n / (p · ADV_n)``. Bucket DTL = holdings-weighted mean of member DTLs;
    ``share_gt_<k>d`` = share of the bucket's holdings (CNY) whose stock needs more than k days.
    Stocks without ADV (suspended too long, new listings) are left out of bucket figures
    (``holdings_no_adv`` reports their CNY). Per-stock rows (bucket_type 'stock') have share
    columns of 0/1.

    stock: trade_date, ts_code, holdings (CNY), adv_cny; one row per (trade_date, ts_code).
    Returns one row per (trade_date, bucket_type, bucket, participation), sorted by trade_date,
    participation, bucket type (``BUCKET_ORDER``), bucket. Computed on a sessions x stocks grid
    (:func:`days_to_liquidate_grid`).
    """
    g = StockGrid(stock["trade_date"], stock["ts_code"], "stock")
    val = {c: g.wide(stock[c].to_numpy(dtype=float, na_value=np.nan)) for c in ("holdings", "adv_cny")}
    return days_to_liquidate_grid(g, masks_from_rows(g, buckets), val["holdings"], val["adv_cny"], participations, thresholds)


__all__ = [
    "CrowdingParams",
    "HoldingsParams",
    "GridBuckets",
    "Sleeve",
    "StockGrid",
    "adv_and_sigma",
    "assign_buckets",
    "bucket_masks",
    "carry_forward_weights",
    "crowding_ratios",
    "crowding_table",
    "crowding_table_grid",
    "days_to_liquidate",
    "days_to_liquidate_grid",
    "estimate_quant_holdings",
    "holdings_frame",
    "holdings_on_grid",
    "liquidity_stats",
    "masks_from_rows",
    "micro_mask",
    "rolling_stat",
    "row_positions",
    "wide_rolling",
]
