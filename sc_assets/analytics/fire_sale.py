"""Multi-round, stock-level fire-sale simulation and its calibration (METHODS.md §9).

The study has no such model; this is the project's own, after Greenwood, Landier, Thesmar
(2015, JFE 115(3)) leverage targeting and Cont, Schaanning (2017, Norges Bank WP 2/2017)
multi-round fire sales with market depth, with the square-root impact law (Tóth et al. 2011).

State: funds j (the quant sleeves of :class:`~sc_assets.analytics.crowding.HoldingsParams`,
one aggregate fund each) with holdings ``h_jn`` (shares), equity ``E_j`` (CNY), target
leverage ``λ_j`` (gross long / equity: index enhancement 1, market-neutral long book 1 hedged
with futures, DMA 4); stocks n with price ``P_n``, ADV ``V_n`` (shares), daily vol ``σ_n`` and
daily limit ``limit_n``.

One round = one trading day d:

1. **Open.** The exogenous shock of the day: an index move ``m_d`` applied to every stock (the
   price opens at ``P·(1+m_d)``, capped at the limit), a basis move ``Δb_d`` (annualized; a
   deeper discount costs hedged books ``hedge_ratio · gross · (−Δb_d) · roll_horizon/365``, the
   extra carry locked in at the next roll — our reading of "hedged books mark the futures
   leg"), a redemption (share of equity, day 1).
2. **Fund loss.** ``L_j`` = the open P&L (long book minus the futures hedge on its benchmark) plus
   yesterday's intraday P&L not yet acted on. Fund return ``R_j = −L_j / E_j``.
3. **Redemptions** (flow–performance): ``outflow_j = κ · max(0, −R_j) · E_j`` (+ the shock).
4. **Deleverage** to target: new sales ``S_j = max(0, A_j − λ_j (E_j − outflow_j))`` with ``A_j``
   the gross not already being sold. This is the exact leverage-restoring rule; it equals
   ``(λ_j − 1)·L_j + λ_j·outflow_j`` from a book at target — METHODS' ``λ·L + outflow`` is its
   first-order reading with λ counted as debt/equity; an unlevered fund with no outflow
   sells nothing.
5. **Sales** pro rata to remaining holdings: ``new_jn = S_j · h_jn / A_j`` (shares), plus
   unfilled orders carried from yesterday. Stock order ``O_n = Σ_j order_jn``.
6. **Impact**: square-root law with the limit cap (``stress.sqrt_impact``); the fill ratio
   ``F_n / O_n`` is applied pro rata to every fund; the rest carries over.
7. **Mark to market** at the close; the intraday P&L (impact, and the hedge on the benchmark's
   impact part) feeds the next round.

Stop after ``n_days`` or when the shock is over and new sales and carry fall below ``tol_cny``.

Conservation holds by construction and is tested: Σ_days sold_jn = h0_jn − h_jn ≥ 0 and no
fund ever sells more than it holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from sc_assets.analytics.stress import SqrtImpact, fill_sigma


@dataclass(frozen=True)
class FireSaleParams:
    """Fire-sale defaults. ``y``: square-root impact coefficient (METHODS §9: order 1, empirical
    0.5–1; calibrated). ``kappa``: flow–performance slope, outflow = κ·max(0, −fund return) per
    round (ASSUMPTION, calibrated). ``eta``: basis-stress deleveraging of hedged books — each
    day they sell ``eta · e_d`` of their gross, ``e_d`` = how far the annualized basis is below its
    level at the start (0.2 = 20 points deeper) — the "basis shock -> neutral deleveraging" channel
    of wave 1 (ASSUMPTION, calibrated to the observed forced-sale volume). ``hedge_ratio``: futures notional / long book of hedged
    sleeves (1). ``roll_horizon_days``: calendar days of carry a basis move costs (30, one
    monthly roll; ASSUMPTION). ``n_days``: maximum rounds. ``tol_cny``: stop when new sales and
    carried orders are below this."""

    y: float = 0.8
    kappa: float = 1.0
    eta: float = 0.5
    hedge_ratio: float = 1.0
    roll_horizon_days: float = 30.0
    n_days: int = 10
    tol_cny: float = 1e6

    def as_metadata(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Shock:
    """Exogenous shock paths, one entry per day from day 1 (shorter paths are padded with 0).

    market: index move per day (fraction) applied to every stock at the open.
    basis: change of the annualized basis per day (fraction; −0.2 = the discount deepens by
    20 points).
    redemption: day-1 outflow as a share of equity, by strategy (``{"*": x}`` for all).
    """

    market: tuple[float, ...] = ()
    basis: tuple[float, ...] = ()
    redemption: Mapping[str, float] = field(default_factory=dict)

    def scaled(self, k: float) -> Shock:
        return Shock(tuple(k * m for m in self.market), tuple(k * b for b in self.basis),
                     {s: k * v for s, v in self.redemption.items()})

    def length(self) -> int:
        return max(len(self.market), len(self.basis), 1 if self.redemption else 0)


@dataclass
class FireSaleInputs:
    """Everything the simulation needs, as arrays (built by :func:`build_inputs`).

    stocks: ts_code, close, adv_shares, sigma_d (NaN filled), limit_pct, free_float_mv.
    funds: fund, strategy, leverage, hedged, equity. holdings: (J × N) shares.
    bench: (J × N) hedge weights of each fund's benchmark mix (rows sum to 1; zero for unhedged).
    """

    stocks: pd.DataFrame
    funds: pd.DataFrame
    holdings: np.ndarray
    bench: np.ndarray


_STOCK_COLUMNS = ("price", "ret", "impact_ret", "cum_ret", "order_shares", "filled_shares", "unfilled_shares",
                  "locked_limit_down", "held_shares")
_FUND_COLUMNS = ("fund_ret", "pnl_open", "pnl_intraday", "basis_cost", "outflow", "new_sales_cny", "sold_cny",
                 "unfilled_cny", "equity", "gross", "leverage", "target_leverage")


@dataclass
class FireSaleResult:
    """A simulation's output. ``stock_rows`` / ``fund_rows``: column -> one array per simulated
    day (stocks in ``codes`` order, the inputs' rows; funds in ``funds`` order). ``stock_path``
    (day, ts_code, then the stock columns) and ``fund_path`` (day, fund, strategy, then the fund
    columns) are the same values as long frames, day-major, built on first access: the
    calibration scores hundreds of runs on the ``cum_ret`` rows alone (issue 11).
    ``sold``: (J × N) shares sold in total; ``h_final``: holdings after the last day."""

    codes: np.ndarray
    funds: np.ndarray
    strategies: np.ndarray
    stock_rows: dict[str, list[np.ndarray]]
    fund_rows: dict[str, list[np.ndarray]]
    sold: np.ndarray
    h_final: np.ndarray
    days: int

    @cached_property
    def stock_path(self) -> pd.DataFrame:
        n = len(self.codes)
        out = pd.DataFrame({"day": np.repeat(np.arange(1, self.days + 1, dtype="int64"), n),
                            "ts_code": np.tile(self.codes, self.days)})
        for c in _STOCK_COLUMNS:
            out[c] = np.concatenate(self.stock_rows[c]) if self.days else np.zeros(0)
        return out

    @cached_property
    def fund_path(self) -> pd.DataFrame:
        j = len(self.funds)
        out = pd.DataFrame({"day": np.repeat(np.arange(1, self.days + 1, dtype="int64"), j),
                            "fund": np.tile(self.funds, self.days), "strategy": np.tile(self.strategies, self.days)})
        for c in _FUND_COLUMNS:
            out[c] = np.concatenate(self.fund_rows[c]) if self.days else np.zeros(0)
        return out

    def total_sold_cny(self) -> float:
        """CNY sold by all funds over all days (the sum of ``fund_path['sold_cny']``, NaN as 0)."""
        return float(np.nansum(np.concatenate(self.fund_rows["sold_cny"]))) if self.days else 0.0


def build_inputs(
    stocks: pd.DataFrame,
    holdings: pd.DataFrame,
    sleeves: Sequence,
    index_weights: pd.DataFrame | None = None,
) -> FireSaleInputs:
    """Arrange the simulation inputs from mart-shaped frames of one day.

    stocks: ts_code, close, adv_shares, sigma_d, limit_pct, free_float_mv (one row per stock).
    holdings: ts_code, hold_<sleeve> (CNY) — the quant_holdings_estimate rows of the day.
    sleeves: :class:`~sc_assets.analytics.crowding.Sleeve` objects.
    index_weights: index_code, con_code, weight in force that day (for the hedges); without it the
    hedge uses each fund's own holdings (a perfect hedge of its long book).
    """
    s = stocks.reset_index(drop=True).copy()
    s["sigma_d"] = fill_sigma(s)
    h = s[["ts_code"]].merge(holdings, on="ts_code", how="left")
    price = s["close"].to_numpy(dtype=float)
    ok = np.isfinite(price) & (price > 0)
    J, N = len(sleeves), len(s)
    hold = np.zeros((J, N))
    bench = np.zeros((J, N))
    for j, sl in enumerate(sleeves):
        cny = h.get(f"hold_{sl.name}", pd.Series(np.zeros(N))).to_numpy(dtype=float)
        hold[j] = np.where(ok & np.isfinite(cny), cny / np.where(ok, price, 1.0), 0.0)
        if sl.hedged:
            w = np.zeros(N)
            for code, mix in sl.benchmarks:
                if index_weights is not None and len(index_weights):
                    iw = index_weights[index_weights["index_code"] == code]
                    m = s[["ts_code"]].merge(iw[["con_code", "weight"]].rename(columns={"con_code": "ts_code"}), on="ts_code", how="left")
                    wb = m["weight"].fillna(0.0).to_numpy(dtype=float)
                else:
                    wb = hold[j] * np.where(ok, price, 0.0)
                tot = wb.sum()
                if tot > 0:
                    w += mix * wb / tot
            bench[j] = w
    funds = pd.DataFrame(
        {
            "fund": [sl.name for sl in sleeves],
            "strategy": [sl.strategy for sl in sleeves],
            "leverage": [float(sl.leverage) for sl in sleeves],
            "hedged": [bool(sl.hedged) for sl in sleeves],
        }
    )
    gross = (hold * np.where(ok, price, 0.0)).sum(axis=1)
    funds["equity"] = gross / funds["leverage"].to_numpy()
    return FireSaleInputs(s, funds, hold, bench)


def simulate(inputs: FireSaleInputs, shock: Shock, params: FireSaleParams = FireSaleParams()) -> FireSaleResult:
    """Run the multi-round fire sale (see the module docstring). Vectorised over funds and stocks;
    each day's per-stock and per-fund values are kept as arrays (no frame per day; issue 11)."""
    s = inputs.stocks
    p = s["close"].to_numpy(dtype=float).copy()
    p0 = p.copy()
    v = s["adv_shares"].to_numpy(dtype=float)
    sig = s["sigma_d"].to_numpy(dtype=float)
    lim = s["limit_pct"].to_numpy(dtype=float)
    has_lim = np.isfinite(lim)
    J, N = inputs.holdings.shape
    h = inputs.holdings.copy()
    lev = inputs.funds["leverage"].to_numpy(dtype=float)
    hedged = inputs.funds["hedged"].to_numpy(dtype=bool)
    strategies = inputs.funds["strategy"].to_numpy()
    eq = inputs.funds["equity"].to_numpy(dtype=float).copy()
    bench = inputs.bench
    carry = np.zeros((J, N))
    pending = np.zeros(J)  # intraday P&L of the previous round not yet acted on
    valid = np.isfinite(p) & (p > 0)
    pz = np.where(valid, p, 0.0)
    p0_pos = p0 > 0
    p0_div = np.where(p0_pos, p0, 1.0)
    n_shock = shock.length()
    basis_level = 0.0  # cumulative basis change since the start (annualized)
    stock_rows: dict[str, list[np.ndarray]] = {c: [] for c in _STOCK_COLUMNS}
    fund_rows: dict[str, list[np.ndarray]] = {c: [] for c in _FUND_COLUMNS}
    sold_total = np.zeros((J, N))
    # (fund × stock) arrays updated in place and a scratch for products summed right away: no
    # temporaries of that size per day (issue 11; the same operations, so the same results)
    prod, free, new, order, sold = (np.empty((J, N)) for _ in range(5))
    impact = SqrtImpact(v, sig, params.y)
    gross = None
    days = 0
    for d in range(1, params.n_days + 1):
        m = shock.market[d - 1] if d - 1 < len(shock.market) else 0.0
        db = shock.basis[d - 1] if d - 1 < len(shock.basis) else 0.0
        basis_level += db
        excess_discount = max(0.0, -basis_level)
        # 1. open: exogenous move capped at the limit
        m_n = np.full(N, float(m))
        m_n = np.where(has_lim, np.maximum(m_n, -lim), m_n)
        p_prev = pz
        p_open = p_prev * (1.0 + m_n)
        # the book at the previous close: yesterday's closing gross (the same products), day 1 computed
        gross_prev = np.multiply(h, p_prev, out=prod).sum(axis=1) if gross is None else gross
        r_bench_open = bench @ m_n
        hedge_notional = params.hedge_ratio * gross_prev * hedged
        pnl_open = np.multiply(h, p_open - p_prev, out=prod).sum(axis=1) - hedge_notional * r_bench_open
        basis_cost = hedge_notional * max(-db, 0.0) * params.roll_horizon_days / 365.0
        basis_gain = hedge_notional * max(db, 0.0) * params.roll_horizon_days / 365.0
        pnl_open = pnl_open - basis_cost + basis_gain
        # 2. loss since the last decision (yesterday's intraday P&L is already in equity)
        eq_last_decision = eq - pending
        eq = eq + pnl_open
        pl = pnl_open + pending
        with np.errstate(divide="ignore", invalid="ignore"):
            fund_ret = np.where(eq_last_decision > 0, pl / np.where(eq_last_decision > 0, eq_last_decision, 1.0), 0.0)
        # 3. redemptions
        outflow = params.kappa * np.maximum(0.0, -fund_ret) * np.maximum(eq, 0.0)
        if d == 1 and shock.redemption:
            for j in range(J):
                x = shock.redemption.get(str(strategies[j]), shock.redemption.get("*", 0.0))
                outflow[j] += x * max(eq[j], 0.0)
        outflow = np.minimum(outflow, np.maximum(eq, 0.0))
        eq = eq - outflow
        # 4. deleverage: gross not already committed to sales
        np.subtract(h, carry, out=free)
        a_free = np.multiply(free, p_open, out=prod).sum(axis=1)
        target = lev * np.maximum(eq, 0.0)
        new_cny = np.maximum(0.0, a_free - target)
        # basis-stress deleveraging of hedged books (on top of the leverage rule)
        new_cny = np.minimum(new_cny + hedged * params.eta * excess_discount * a_free, a_free)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(a_free > 0, np.minimum(new_cny / np.where(a_free > 0, a_free, 1.0), 1.0), 0.0)
        np.multiply(free, frac[:, None], out=new)
        np.add(carry, new, out=order)
        order_n = order.sum(axis=0)
        # 6. impact: the limit of the day is on the previous close; the open move used part of it
        with np.errstate(divide="ignore", invalid="ignore"):
            lim_left = np.where(has_lim, np.maximum(0.0, 1.0 - (1.0 - lim) / (1.0 + m_n)), np.nan)
        filled_n, imp = impact(order_n, lim_left)
        with np.errstate(divide="ignore", invalid="ignore"):
            fill_ratio = np.where(order_n > 0, filled_n / np.where(order_n > 0, order_n, 1.0), 0.0)
        np.multiply(order, fill_ratio[None, :], out=sold)
        np.minimum(sold, h, out=sold)
        p_close = p_open * (1.0 + imp)
        # 7. intraday P&L (impact on the whole opening book, before the sales; sales executed at the close)
        r_bench_intra = bench @ np.where(p_open > 0, p_close / np.where(p_open > 0, p_open, 1.0) - 1.0, 0.0)
        pnl_intra = np.multiply(h, p_close - p_open, out=prod).sum(axis=1) - hedge_notional * r_bench_intra
        np.subtract(h, sold, out=h)
        np.subtract(order, sold, out=carry)
        sold_total += sold
        eq = eq + pnl_intra
        pending = pnl_intra
        pz = p_close
        days = d
        np.multiply(new, p_open, out=prod)
        new_cny, new_cny_all = prod.sum(axis=1), prod.sum()
        np.multiply(carry, p_close, out=prod)
        carry_cny, carry_cny_all = prod.sum(axis=1), prod.sum()
        sold_cny = np.multiply(sold, p_close, out=prod).sum(axis=1)
        gross = np.multiply(h, p_close, out=prod).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            lev_now = np.where(eq > 0, gross / eq, np.inf)
            day_ret = np.where(p_prev > 0, p_close / np.where(p_prev > 0, p_prev, 1.0) - 1.0, np.nan)
            cum = np.where(p0_pos, p_close / p0_div - 1.0, np.nan)
        for c, x in (("fund_ret", fund_ret), ("pnl_open", pnl_open), ("pnl_intraday", pnl_intra),
                     ("basis_cost", basis_cost - basis_gain), ("outflow", outflow),
                     ("new_sales_cny", new_cny), ("sold_cny", sold_cny),
                     ("unfilled_cny", carry_cny), ("equity", eq), ("gross", gross),
                     ("leverage", lev_now), ("target_leverage", lev)):
            fund_rows[c].append(x)
        for c, x in (("price", p_close), ("ret", day_ret), ("impact_ret", imp), ("cum_ret", cum),
                     ("order_shares", order_n), ("filled_shares", filled_n), ("unfilled_shares", carry.sum(axis=0)),
                     ("locked_limit_down", has_lim & (order_n > filled_n + 1e-9) & (imp <= -lim_left + 1e-12)),
                     ("held_shares", h.sum(axis=0))):
            stock_rows[c].append(x)
        if d >= n_shock and new_cny_all < params.tol_cny and carry_cny_all < params.tol_cny:
            break
    return FireSaleResult(
        codes=s["ts_code"].to_numpy(), funds=inputs.funds["fund"].to_numpy(), strategies=strategies,
        stock_rows=stock_rows, fund_rows=fund_rows,
        sold=sold_total, h_final=h, days=days,
    )


# ---------------------------------------------------------------------------------------------
# bucket paths and calibration
# ---------------------------------------------------------------------------------------------


def _bucket_means(idx: np.ndarray, w: np.ndarray, v: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted means ``Σ w·v / Σ w`` of the rows of each group ``idx`` (0..n-1) over rows with a
    finite value and a positive weight, summed in row order; returns (means, group has rows)."""
    ok = np.isfinite(v) & (w > 0)
    i = idx[ok]
    num = np.bincount(i, weights=w[ok] * v[ok], minlength=n)
    den = np.bincount(i, weights=w[ok], minlength=n)
    has = np.bincount(i, minlength=n) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(has, num / np.where(has, den, 1.0), np.nan), has


def bucket_paths(stock_path: pd.DataFrame, weights: pd.DataFrame, value: str = "cum_ret") -> pd.DataFrame:
    """Weighted bucket averages of a per-stock path.

    stock_path: day, ts_code, <value>; weights: ts_code, bucket, weight (e.g. free-float cap at
    the start). Returns day, bucket, <value> (rows with a finite value and a positive weight;
    sorted by day, bucket).
    """
    m = stock_path[["day", "ts_code", value]].merge(weights[["ts_code", "bucket", "weight"]], on="ts_code", how="inner")
    di, days = pd.factorize(m["day"], sort=True)
    bi, buckets = pd.factorize(m["bucket"], sort=True)
    nb = len(buckets)
    key = (di >= 0) & (bi >= 0)  # rows without a day or bucket belong to no group
    w = np.where(key, m["weight"].to_numpy(dtype=float), 0.0)
    means, has = _bucket_means(np.where(key, di * nb + bi, 0), w, m[value].to_numpy(dtype=float), len(days) * nb)
    pos = np.flatnonzero(has)
    return pd.DataFrame({"day": days.take(pos // max(nb, 1)), "bucket": buckets.take(pos % max(nb, 1)), value: means[pos]})


def observed_cum_returns(panel: pd.DataFrame, start, end) -> pd.DataFrame:
    """Observed cumulative stock returns over ``(start_close, end]`` (the part of
    :func:`observed_bucket_paths` that does not depend on the buckets: compute it once per window
    and pass it as ``cum`` for several bucket sets).

    panel: trade_date, ts_code, adj_close (lookback: must include the last day before ``start``).
    Returns trade_date, ts_code, cum_ret, day (1.. over the trading days in [start, end]).
    """
    p = panel[["trade_date", "ts_code", "adj_close"]].copy()
    p["trade_date"] = pd.to_datetime(p["trade_date"]).astype("datetime64[ns]")
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    wide = p.pivot_table(index="trade_date", columns="ts_code", values="adj_close", aggfunc="last").sort_index()
    wide = wide.ffill()  # a suspended day keeps the last close
    before = wide.index[wide.index < start]
    if not len(before):
        raise ValueError(f"observed_bucket_paths needs the close before {start.date()} (lookback)")
    base = wide.loc[before[-1]]
    win = wide.loc[(wide.index >= start) & (wide.index <= end)]
    cum = win.divide(base, axis=1) - 1.0
    long = cum.stack(future_stack=True).rename("cum_ret").reset_index()
    long.columns = ["trade_date", "ts_code", "cum_ret"]
    day_no = {d: i + 1 for i, d in enumerate(win.index)}
    long["day"] = long["trade_date"].map(day_no).astype("int64")
    long.attrs["days"] = day_no
    return long


def observed_bucket_paths(panel: pd.DataFrame | None, weights: pd.DataFrame, start=None, end=None,
                          cum: pd.DataFrame | None = None) -> pd.DataFrame:
    """Observed cumulative bucket returns over ``(start_close, end]``.

    panel: trade_date, ts_code, adj_close (lookback: must include the last day before ``start``).
    The base is the close of the last trading day before ``start``; days are numbered 1.. over the
    trading days in [start, end]. ``cum``: :func:`observed_cum_returns` of the window, computed
    once (then ``panel``, ``start`` and ``end`` are not used). Returns day, trade_date, bucket, cum_ret.
    """
    long = cum if cum is not None else observed_cum_returns(panel, start, end)
    day_no = long.attrs["days"]
    out = bucket_paths(long, weights)
    dates = pd.DataFrame({"day": list(day_no.values()), "trade_date": list(day_no.keys())})
    return out.merge(dates, on="day")[["day", "trade_date", "bucket", "cum_ret"]]


def _rmse(diff: np.ndarray) -> float:
    """Root mean square of ``diff`` (NaN skipped; NaN if nothing is left)."""
    sq = diff**2
    ok = ~np.isnan(sq)
    return float(np.sqrt(np.where(ok, sq, 0.0).sum() / ok.sum())) if ok.any() else float("nan")


def _controlled_rmse(day: np.ndarray, resid: np.ndarray, z: np.ndarray) -> float:
    """RMSE of ``resid`` after a least-squares intercept and slope on ``z`` within each day (rows
    grouped by ``day``, each day's rows contiguous)."""
    bounds = np.flatnonzero(day[1:] != day[:-1]) + 1
    sse, n = 0.0, 0
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(day)], strict=True):
        yv = resid[a:b]
        X = np.column_stack([np.ones(b - a), z[a:b]])
        coef = np.linalg.lstsq(X, yv, rcond=None)[0]
        sse += float(((yv - X @ coef) ** 2).sum())
        n += b - a
    return float(np.sqrt(sse / max(n, 1)))


def path_error(sim: pd.DataFrame, obs: pd.DataFrame) -> float:
    """Root mean squared difference of cumulative bucket returns over matching (day, bucket)."""
    m = sim.merge(obs, on=["day", "bucket"], suffixes=("_sim", "_obs"))
    if m.empty:
        return float("nan")
    # a simulation that stopped early keeps its last value on later observed days
    return _rmse(m["cum_ret_sim"].to_numpy(dtype=float) - m["cum_ret_obs"].to_numpy(dtype=float))


def extend_path(sim: pd.DataFrame, days: int) -> pd.DataFrame:
    """Carry each bucket's last simulated value to ``days`` days (the fire sale had stopped)."""
    if sim.empty:
        return sim
    last = sim["day"].max()
    if last >= days:
        return sim[sim["day"] <= days]
    tail = sim[sim["day"] == last]
    extra = [tail.assign(day=d) for d in range(last + 1, days + 1)]
    return pd.concat([sim, *extra], ignore_index=True)


@dataclass(frozen=True)
class CalibrationResult:
    y: float
    kappa: float
    eta: float
    rmse: float
    observed_sales_cny: float
    simulated_sales_cny: float
    surface: pd.DataFrame  # y, kappa, eta, rmse
    identified: bool = True  # False: best Y on the grid edge or a flat error curve (see calibrate)
    curvature: float = float("nan")  # min(err(Y/2), err(2Y)) / err(Y) - 1


def excess_volume_sales(panel: pd.DataFrame, start, end, lookback: int = 60) -> pd.DataFrame:
    """Forced sales implied by abnormal volume in [start, end] (CNY), per stock-day.

    Normal volume of stock n on day t is ``vbar_n · (a + c·|r_n,t|)``: ``vbar_n`` its mean volume
    over the ``lookback`` sessions before ``start``, (a, c) a pooled OLS fit of ``vol/vbar`` on
    ``|ret|`` over those sessions (volume rises with the size of the move, forced or not).
    Excess = observed − normal volume (may be negative: noise cancels in sums), in shares and in
    CNY at the close. panel: trade_date, ts_code, vol, ret, close (with the lookback).
    Returns trade_date, ts_code, excess_shares, excess_cny; ``attrs['a']``, ``attrs['c']``.

    Precision: forced sales are a few percent of the window's volume, so the sum is fragile. On the
    synthetic market (400 stocks, wave 1) it gave 1.23x the executed quant sales at the default
    seed and 0.97x .. 4.9x (once negative) on other seeds; 1.11x with 600 stocks. Treat it as an
    order of magnitude, and prefer product-holdings changes where a feed has them.
    """
    p = panel[["trade_date", "ts_code", "vol", "ret", "close"]].copy()
    p["trade_date"] = pd.to_datetime(p["trade_date"]).astype("datetime64[ns]")
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    pre_days = np.sort(p.loc[p["trade_date"] < start, "trade_date"].unique())[-lookback:]
    pre = p[p["trade_date"].isin(pre_days) & p["vol"].gt(0) & p["ret"].notna()]
    vbar = pre.groupby("ts_code")["vol"].mean()
    y = pre["vol"].to_numpy() / vbar.reindex(pre["ts_code"]).to_numpy()
    x = np.abs(pre["ret"].to_numpy())
    ok = np.isfinite(y) & np.isfinite(x)
    a, c = (np.linalg.lstsq(np.column_stack([np.ones(ok.sum()), x[ok]]), y[ok], rcond=None)[0]
            if ok.sum() > 10 else (1.0, 0.0))
    w = p[(p["trade_date"] >= start) & (p["trade_date"] <= end) & p["vol"].notna()].copy()
    normal = vbar.reindex(w["ts_code"]).to_numpy() * (a + c * np.abs(w["ret"].fillna(0.0).to_numpy()))
    w["excess_shares"] = w["vol"].to_numpy() - normal
    w["excess_cny"] = w["excess_shares"] * w["close"]
    out = w.dropna(subset=["excess_shares"])[["trade_date", "ts_code", "excess_shares", "excess_cny"]].reset_index(drop=True)
    out.attrs.update({"a": float(a), "c": float(c)})
    return out


def path_error_controlled(sim: pd.DataFrame, obs: pd.DataFrame, bucket_size: pd.Series | None) -> float:
    """RMSE of (observed − simulated) cumulative bucket returns after removing, day by day, a
    least-squares intercept and slope on the bucket's size exposure (``bucket_size``: bucket ->
    mean standardized ln cap). The control absorbs market and linear size-style moves that are
    not flows (scripted or real style returns); without ``bucket_size`` it is :func:`path_error`."""
    if bucket_size is None:
        return path_error(sim, obs)
    m = sim.merge(obs, on=["day", "bucket"], suffixes=("_sim", "_obs"))
    if m.empty:
        return float("nan")
    order = np.argsort(m["day"].to_numpy(), kind="stable")
    resid = m["cum_ret_obs"].to_numpy(dtype=float) - m["cum_ret_sim"].to_numpy(dtype=float)
    z = m["bucket"].map(bucket_size).astype(float).to_numpy()
    return _controlled_rmse(m["day"].to_numpy()[order], resid[order], z[order])


class _PathScorer:
    """The calibration error of one simulation, on arrays: the same rows, in the same order, and
    the same sums as ``path_error_controlled(extend_path(bucket_paths(res.stock_path, weights),
    n_obs), observed, bucket_size)`` without building frames — the calibration scores hundreds
    of runs (issue 11). ``codes``: the simulation's stocks in order; ``observed``: day, bucket,
    cum_ret, one row per (day, bucket)."""

    def __init__(self, codes: np.ndarray, weights: pd.DataFrame, observed: pd.DataFrame,
                 bucket_size: pd.Series | None, n_obs: int):
        # the rows of bucket_paths' merge within one day: stocks in simulation order, each with its weight rows
        m = pd.DataFrame({"ts_code": codes, "_pos": np.arange(len(codes))}).merge(
            weights[["ts_code", "bucket", "weight"]], on="ts_code", how="inner")
        bi, self.buckets = pd.factorize(m["bucket"], sort=True)
        keep = bi >= 0
        self.pos, self.b = m["_pos"].to_numpy()[keep], bi[keep]
        self.w = m["weight"].to_numpy(dtype=float)[keep]
        self.n_obs, nb = int(n_obs), len(self.buckets)
        ob = self.buckets.get_indexer(observed["bucket"])
        od = observed["day"].to_numpy(dtype="int64")
        ok = (ob >= 0) & (od >= 1) & (od <= self.n_obs)  # other rows match no simulated row
        if pd.Series(od[ok] * max(nb, 1) + ob[ok]).duplicated().any():
            raise ValueError("observed paths must have one row per (day, bucket)")
        self.obs = np.full((self.n_obs, nb), np.nan)
        self.obs_has = np.zeros((self.n_obs, nb), dtype=bool)
        self.obs[od[ok] - 1, ob[ok]] = observed["cum_ret"].to_numpy(dtype=float)[ok]
        self.obs_has[od[ok] - 1, ob[ok]] = True
        self.z = None if bucket_size is None else pd.Series(self.buckets).map(bucket_size).astype(float).to_numpy()

    def __call__(self, cum: np.ndarray) -> float:
        """``cum``: the simulated cumulative returns of the stocks, one array per day (``FireSaleResult.stock_rows['cum_ret']``)."""
        n_d, nb = len(cum), len(self.buckets)
        if not n_d:
            return float("nan")
        idx = (np.arange(n_d)[:, None] * nb + self.b[None, :]).ravel()
        means, has = _bucket_means(idx, np.tile(self.w, n_d), np.stack(cum)[:, self.pos].ravel(), n_d * nb)
        means, has = means.reshape(n_d, nb), has.reshape(n_d, nb)
        present = np.flatnonzero(has.any(axis=1))
        if not len(present):
            return float("nan")
        last = present[-1]  # extend_path: carry the last simulated day to n_obs days
        rows = np.minimum(np.arange(self.n_obs), last)
        sim, sim_has = means[rows], has[rows]
        both = sim_has & self.obs_has
        if not both.any():
            return float("nan")
        day, bucket = np.nonzero(both)  # row-major: by day, then bucket (the merge's order)
        if self.z is None:
            return _rmse(sim[both] - self.obs[both])
        return _controlled_rmse(day, self.obs[both] - sim[both], self.z[bucket])


def fit_eta(inputs: FireSaleInputs, shock: Shock, params: FireSaleParams, target_cny: float,
            eta_max: float = 20.0, iters: int = 30) -> float:
    """η such that the simulated forced sales (CNY, all funds, all days) match ``target_cny``
    (bisection; sales rise with η). 0 if the target is below the sales at η = 0."""
    lo, hi = 0.0, eta_max
    if simulate(inputs, shock, replace(params, eta=0.0)).total_sold_cny() >= target_cny:
        return 0.0
    if simulate(inputs, shock, replace(params, eta=hi)).total_sold_cny() <= target_cny:
        return hi
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if simulate(inputs, shock, replace(params, eta=mid)).total_sold_cny() < target_cny:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def calibrate(
    inputs: FireSaleInputs,
    shock: Shock,
    observed: pd.DataFrame,
    weights: pd.DataFrame,
    params: FireSaleParams = FireSaleParams(),
    y_grid: Sequence[float] = tuple(np.round(np.arange(0.1, 3.01, 0.1), 3)),
    kappa_grid: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0),
    refine: int = 12,
    observed_sales_cny: float | None = None,
    bucket_size: pd.Series | None = None,
    rounds: int = 2,
    ident_tol: float = 0.05,
) -> CalibrationResult:
    """Choose Y (and κ, η) for the fire sale from an observed window.

    Prices alone identify only ``Y·sqrt(sales)``, so the sales scale is pinned separately when
    ``observed_sales_cny`` (forced sales implied by abnormal volume, :func:`excess_volume_sales`)
    is given: for each κ, η is set so the simulated sales match it (:func:`fit_eta`), then Y
    minimises the RMSE between simulated and observed cumulative bucket returns (with the
    per-day size control of :func:`path_error_controlled` when ``bucket_size`` is given) — a grid
    over ``y_grid`` refined by golden section; η and Y are alternated ``rounds`` times. Without
    ``observed_sales_cny`` η stays at ``params.eta`` (METHODS §9: Y and κ on bucket returns).
    The κ with the lowest error wins. ``observed``: day, bucket, cum_ret.

    Identification: Y counts as identified only if the best Y is inside the grid and halving or
    doubling it raises the error by at least ``ident_tol`` (5 %); otherwise ``identified`` is
    False and callers should keep their prior Y (the asset does, and says so).

    On the synthetic market (500 stocks, default seed, wave 1) Y is NOT identified (issue 8):
    the size-controlled error is flat — RMSE 0.954 % at Y = 0.1, 0.927 % at Y = 2.0, 0.933 % at
    Y = 2.8 (curvature 0.8 % < 5 %) — and η runs to its bound because the volume-implied sales
    (28.2 bn CNY) exceed what the model can sell (executed: 16.4 bn). Why, measured with
    stock-level square-root regressions on the same window: (1) the simulator thins depth
    (``V·(1 − 0.6·stress)``) and every observable (returns, limit fills, volume) depends on Y and
    depth only through ``Y/sqrt(depth_t)`` — sales-weighted 1.35 on wave 1 for Y = 1; separating
    them needs the day-to-day variation with stress, which even with the simulator's TRUE sales
    leaves the depth slope free (profile LR χ² < 3.84 for slopes 0 .. 0.9, Y from 0.57 to 1.23);
    (2) from marts the sales scale is biased: excess volume overstates executed sales 1.7x in
    total and 1.5–2.4x per day in a cross-sectional fit. The holdings shape itself is fine: with
    day-by-day size + NLSIZE controls the stock-level impact slope is 4–5 s.e. on the stress days
    and a smooth (preference-free) holdings estimate with the true daily scale gives the same Y as
    the true sales (1.20 vs 1.23). Y vs normal ADV from observables alone (holdings shape x daily
    scale from excess volume): 0.97, 0.87, 0.71, 1.12 on seeds default, 1, 2, 3.
    """
    n_obs = int(observed["day"].max())
    base = replace(params, n_days=max(params.n_days, n_obs))
    rows = []
    # path_error_controlled(extend_path(bucket_paths(res.stock_path, weights), n_obs), observed, bucket_size) on arrays
    score = _PathScorer(inputs.stocks["ts_code"].to_numpy(), weights, observed, bucket_size, n_obs)

    def err(y: float, k: float, eta: float) -> float:
        res = simulate(inputs, shock, replace(base, y=float(y), kappa=float(k), eta=float(eta)))
        e = score(res.stock_rows["cum_ret"])
        rows.append((float(y), float(k), float(eta), e))
        return e

    def best_y(k: float, eta: float) -> tuple[float, float]:
        errs = [(err(y, k, eta), y) for y in y_grid]
        e0, y0 = min(errs)
        ys = sorted(y_grid)
        i = ys.index(y0)
        a, b = ys[max(i - 1, 0)], ys[min(i + 1, len(ys) - 1)]
        g = (np.sqrt(5) - 1) / 2
        c, d_ = b - g * (b - a), a + g * (b - a)
        fc, fd = err(c, k, eta), err(d_, k, eta)
        for _ in range(refine):
            if fc < fd:
                b, d_, fd = d_, c, fc
                c = b - g * (b - a)
                fc = err(c, k, eta)
            else:
                a, c, fc = c, d_, fd
                d_ = a + g * (b - a)
                fd = err(d_, k, eta)
        cand = min([(e0, y0), (fc, c), (fd, d_)])
        return cand[1], cand[0]

    results = []
    for k in kappa_grid:
        y, eta = base.y, base.eta
        e = float("nan")
        for _ in range(max(rounds, 1) if observed_sales_cny is not None else 1):
            if observed_sales_cny is not None:
                eta = fit_eta(inputs, shock, replace(base, y=y, kappa=k), observed_sales_cny)
            y, e = best_y(k, eta)
        results.append((e, y, k, eta))
    e, y, k, eta = min(results)
    sim_sales = simulate(inputs, shock, replace(base, y=y, kappa=k, eta=eta)).total_sold_cny()
    ys = sorted(y_grid)
    at_edge = y <= ys[0] + 1e-9 or y >= ys[-1] - 1e-9
    curv = min(err(max(y / 2, 1e-6), k, eta), err(2 * y, k, eta)) / e - 1 if e > 0 else float("nan")
    identified = (not at_edge) and bool(np.isfinite(curv)) and curv >= ident_tol
    surf = pd.DataFrame(rows, columns=["y", "kappa", "eta", "rmse"])
    return CalibrationResult(float(y), float(k), float(eta), float(e),
                             float(observed_sales_cny) if observed_sales_cny is not None else float("nan"),
                             sim_sales, surf, identified, float(curv))


#: Bump when :func:`calibrate`, :func:`fit_eta`, :func:`simulate` or the path helpers change what
#: they compute: it is part of the fire-sale asset's window fingerprint, so stored window runs
#: (calibration and paths) are not reused across a code change.
CALIBRATION_CODE_VERSION = "1"


def estimate_y_regression(
    returns: pd.DataFrame,
    sales: pd.DataFrame,
    stocks: pd.DataFrame,
    limit_margin: float = 0.005,
    controls: Sequence[str] | None = None,
) -> dict:
    """Square-root impact coefficient from stock-day returns and KNOWN net sales (e.g. product
    holdings changes from a feed, or a simulator's ground truth).

    Model, per day t and stock n: ``r_n,t = a_t + b_t z_n − Y σ_n sqrt(q_n,t / V_n) + e`` with z
    the standardized ln cap, or the ``controls`` columns of ``stocks`` (e.g. the Barra ``size`` and
    ``nlsize`` exposures of the start, METHODS §2) — day-by-day market and style moves are nuisance terms;
    σ and V (ADV, shares) as of the start. Stock-days within ``limit_margin`` of a price limit are
    censored (the law is capped there) and dropped. Pooled OLS slope after partialling out
    [1, z] day by day (Frisch–Waugh–Lovell). Returns y, se, n.

    returns: trade_date, ts_code, ret; sales: trade_date, ts_code, net_sell_shares (negative =
    net buying, which moves the price up by the same law); stocks: ts_code, sigma_d, adv_shares, limit_pct, total_mv.
    """
    st_ = stocks.set_index("ts_code")
    lc = np.log(st_["total_mv"].where(st_["total_mv"] > 0))
    z = (lc - lc.mean()) / lc.std()
    m = returns[["trade_date", "ts_code", "ret"]].merge(sales, on=["trade_date", "ts_code"], how="inner")
    sig = st_["sigma_d"].reindex(m["ts_code"]).to_numpy(dtype=float)
    v = st_["adv_shares"].reindex(m["ts_code"]).to_numpy(dtype=float)
    lim = st_["limit_pct"].reindex(m["ts_code"]).to_numpy(dtype=float)
    q = m["net_sell_shares"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        m["x"] = -np.sign(q) * sig * np.sqrt(np.abs(q) / v)  # net buying pushes up by the same law
    ctrl_cols = list(controls) if controls else ["z"]
    if controls:
        for c in ctrl_cols:
            m[c] = st_[c].reindex(m["ts_code"]).to_numpy(dtype=float)
    else:
        m["z"] = z.reindex(m["ts_code"]).to_numpy()
    r = m["ret"].to_numpy(dtype=float)
    ok = np.isfinite(m["x"]) & np.isfinite(r) & (v > 0)
    for c in ctrl_cols:
        ok &= np.isfinite(m[c].to_numpy(dtype=float))
    ok &= ~(np.isfinite(lim) & (np.abs(r) >= lim - limit_margin))
    m = m[ok]
    parts = []
    for _, g in m.groupby("trade_date"):
        if len(g) < 5 + len(ctrl_cols):
            continue
        X = np.column_stack([np.ones(len(g))] + [g[c].to_numpy(dtype=float) for c in ctrl_cols])
        rx = g["x"].to_numpy() - X @ np.linalg.lstsq(X, g["x"].to_numpy(), rcond=None)[0]
        ry = g["ret"].to_numpy() - X @ np.linalg.lstsq(X, g["ret"].to_numpy(), rcond=None)[0]
        parts.append((rx, ry))
    n = sum(len(rx) for rx, _ in parts)
    den = sum(float(rx @ rx) for rx, _ in parts)
    if den <= 0:
        return {"y": float("nan"), "se": float("nan"), "n": n}
    y = sum(float(rx @ ry) for rx, ry in parts) / den
    sse = sum(float(((ry - y * rx) ** 2).sum()) for rx, ry in parts)
    dof = max(n - 1 - (1 + len(ctrl_cols)) * len(parts), 1)
    return {"y": float(y), "se": float(np.sqrt(sse / dof / den)), "n": int(n)}


def shock_from_observed(
    index_panel: pd.DataFrame,
    basis_panel: pd.DataFrame | None,
    start,
    end,
    market_index: str = "000300.SH",
    basis_products: Sequence[str] = ("IC", "IM"),
) -> Shock:
    """The exogenous shock of a window from the marts: the large-cap index's daily returns
    (default CSI300, the least crowded) as the market move, and the daily change of the mean main
    IC/IM annualized basis as the basis move (first day: change from the day before ``start``)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    ix = index_panel[index_panel["index_code"] == market_index].copy()
    ix["trade_date"] = pd.to_datetime(ix["trade_date"])
    ix = ix[(ix["trade_date"] >= start) & (ix["trade_date"] <= end)].sort_values("trade_date")
    market = tuple(float(x) for x in ix["ret"].fillna(0.0))
    basis: tuple[float, ...] = ()
    if basis_panel is not None and len(basis_panel):
        b = basis_panel[basis_panel["is_main"].fillna(False).astype(bool) & basis_panel["fut_code"].isin(list(basis_products))].copy()
        b["trade_date"] = pd.to_datetime(b["trade_date"])
        ser = b.groupby("trade_date")["basis_ann"].mean().sort_index()
        diff = ser.diff()
        days = ix["trade_date"].tolist()
        basis = tuple(float(diff.get(d, 0.0)) if np.isfinite(diff.get(d, np.nan)) else 0.0 for d in days)
    return Shock(market=market, basis=basis)


__all__ = [
    "CalibrationResult",
    "FireSaleInputs",
    "FireSaleParams",
    "FireSaleResult",
    "Shock",
    "bucket_paths",
    "build_inputs",
    "estimate_y_regression",
    "excess_volume_sales",
    "extend_path",
    "fit_eta",
    "path_error_controlled",
    "calibrate",
    "observed_bucket_paths",
    "observed_cum_returns",
    "path_error",
    "shock_from_observed",
    "simulate",
]
