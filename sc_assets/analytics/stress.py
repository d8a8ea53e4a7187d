"""Basis stress events, square-root impact with price limits, and redemption stress (METHODS.md §9).

Units and conventions
---------------------
* Returns and basis as fractions (−0.30 = a 30 % annualized discount); money in CNY; quantities
  in shares; ``sigma_d`` is a daily return standard deviation; ``limit_pct`` the board's daily
  limit as a positive fraction (0.10 main board, 0.05 ST, 0.20 ChiNext/STAR, 0.30 BSE; NaN = no
  limit).
* One simulated day = one trading session. Impact is permanent (no decay) and the price of a
  day starts from the previous simulated close, so the limit-down bound of a day is
  ``P_prev · (1 − limit_pct)`` (before the exchange's 0.01 CNY rounding).

Square-root law (Tóth et al. 2011; Almgren et al. 2005): selling Q shares in a day moves the
price by ``ΔP/P = −Y · σ_d · sqrt(Q / V)`` with V the ADV in shares. When that would pass the
limit, the stock closes locked limit-down, only ``Q_fill = V · (limit / (Y σ_d))²`` trades and
the rest carries to the next day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------------------------
# basis
# ---------------------------------------------------------------------------------------------


def annualized_basis(futures: np.ndarray | float, spot: np.ndarray | float, days_to_expiry: np.ndarray | float):
    """``(F/S − 1) · 365 / days`` with days = calendar days to expiry, at least 1 (METHODS §9)."""
    f = np.asarray(futures, dtype=float)
    s = np.asarray(spot, dtype=float)
    d = np.maximum(np.asarray(days_to_expiry, dtype=float), 1.0)
    return (f / s - 1.0) * 365.0 / d


def basis_stress_events(
    basis_panel: pd.DataFrame,
    threshold: float = 0.30,
    products: Sequence[str] = ("IC", "IM"),
    column: str = "basis_ann",
) -> pd.DataFrame:
    """Runs of consecutive trading days where a product's main contract has ``basis_ann < −threshold``.

    basis_panel: marts.futures_basis_panel rows (trade_date, ts_code, fut_code, is_main, basis_ann).
    Runs are consecutive in the panel's trading days of that product (a day without a main row
    ends a run). Also returns product ``'IC|IM'`` runs: days when *any* listed product is beyond the
    threshold (depth = the deeper of the two).

    Returns fut_code, start, end, duration_days (trading days), depth (min basis, negative),
    depth_date, depth_contract, mean_basis.
    """
    cols = ["fut_code", "start", "end", "duration_days", "depth", "depth_date", "depth_contract", "mean_basis"]
    b = basis_panel.loc[basis_panel["is_main"].fillna(False).astype(bool) & basis_panel["fut_code"].isin(list(products))]
    b = b[["trade_date", "fut_code", "ts_code", column]].copy()
    b["trade_date"] = pd.to_datetime(b["trade_date"]).astype("datetime64[ns]")
    b = b.sort_values(["fut_code", "trade_date"]).drop_duplicates(["fut_code", "trade_date"], keep="first")
    if len(products) > 1 and len(b):
        any_ = b.sort_values(column).drop_duplicates("trade_date", keep="first").copy()
        any_["fut_code"] = "|".join(products)
        b = pd.concat([b, any_.sort_values("trade_date")], ignore_index=True)
    out = []
    for code, g in b.groupby("fut_code", sort=True):
        g = g.sort_values("trade_date").reset_index(drop=True)
        hit = (g[column] < -threshold).to_numpy()
        if not hit.any():
            continue
        run_id = np.cumsum(np.r_[True, hit[1:] != hit[:-1]])
        for rid in np.unique(run_id[hit]):
            r = g[run_id == rid]
            k = r[column].idxmin()
            out.append(
                (code, r["trade_date"].iloc[0], r["trade_date"].iloc[-1], len(r), float(r[column].min()),
                 g.loc[k, "trade_date"], g.loc[k, "ts_code"], float(r[column].mean()))
            )
    res = pd.DataFrame(out, columns=cols)
    if res.empty:
        res = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            cols, ["str", "datetime64[ns]", "datetime64[ns]", "int64", "float", "datetime64[ns]", "str", "float"], strict=True)})
    res["duration_days"] = res["duration_days"].astype("int64")
    return res.sort_values(["start", "fut_code"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# square-root impact with limits
# ---------------------------------------------------------------------------------------------


class SqrtImpact:
    """The square-root law of :func:`sqrt_impact` for fixed stocks (ADV, σ) and Y: the parts that
    do not depend on the order are computed once, so a multi-day simulation calls it per day on
    the orders and limits alone (issue 11)."""

    def __init__(self, adv_shares: np.ndarray, sigma_d: np.ndarray, y: float):
        v = np.asarray(adv_shares, dtype=float)
        s = np.asarray(sigma_d, dtype=float)
        self.tradable = np.isfinite(v) & (v > 0)
        self.vv = np.where(self.tradable, v, 1.0)
        self.ys = max(float(y), 0.0) * np.where(np.isfinite(s), s, 0.0)
        self.ys_pos = self.ys > 0
        self.ys_div = np.where(self.ys_pos, self.ys, 1.0)

    def __call__(self, order_shares: np.ndarray, limit_pct: np.ndarray | float = np.nan) -> tuple[np.ndarray, np.ndarray]:
        q = np.maximum(np.asarray(order_shares, dtype=float), 0.0)
        lim = np.broadcast_to(np.asarray(limit_pct, dtype=float), q.shape)
        raw = self.ys * np.sqrt(q / self.vv)
        capped = np.isfinite(lim) & (raw > lim)
        with np.errstate(divide="ignore", invalid="ignore"):
            q_fill = np.where(self.ys_pos, self.vv * (lim / self.ys_div) ** 2, q)
        filled = np.where(self.tradable, np.where(capped, np.minimum(q_fill, q), q), 0.0)
        ret = np.where(self.tradable, np.where(capped, -lim, -raw), 0.0)
        return filled, ret


def sqrt_impact(
    order_shares: np.ndarray,
    adv_shares: np.ndarray,
    sigma_d: np.ndarray,
    y: float,
    limit_pct: np.ndarray | float = np.nan,
) -> tuple[np.ndarray, np.ndarray]:
    """One day of forced selling per stock: ``(filled_shares, return)``.

    ``return = −Y σ sqrt(filled / V)``; if selling the whole order would pass ``−limit_pct``,
    the stock locks at the limit: ``filled = V (limit / (Y σ))²`` (≤ order) and return =
    −limit. No ADV (suspended, V ≤ 0 or NaN) → nothing trades, return 0. Orders ≤ 0 → 0.
    A NaN ``sigma_d`` must be filled by the caller. (:class:`SqrtImpact` for repeated days.)
    """
    return SqrtImpact(adv_shares, sigma_d, y)(order_shares, limit_pct)


# ---------------------------------------------------------------------------------------------
# redemption stress
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedemptionParams:
    """Redemption stress defaults (METHODS §9): ``redeem_per_day`` of initial AUM for ``n_days``
    (10 %/day for 5 days), impact coefficient ``y`` (empirical 0.5–1, calibrated by the fire-sale
    asset; 0.8 is our prior), then up to ``drain_days`` more days selling only the carried-over
    orders (our choice, 5)."""

    redeem_per_day: float = 0.10
    n_days: int = 5
    y: float = 0.8
    drain_days: int = 5

    def as_metadata(self) -> dict:
        return asdict(self)


def fill_sigma(stocks: pd.DataFrame, column: str = "sigma_d") -> np.ndarray:
    """σ with NaNs replaced by the cross-sectional median (then 0.02 if none is known)."""
    s = stocks[column].to_numpy(dtype=float)
    med = np.nanmedian(s) if np.isfinite(s).any() else 0.02
    return np.where(np.isfinite(s) & (s > 0), s, med)


def redemption_stress(stocks: pd.DataFrame, params: RedemptionParams = RedemptionParams()) -> pd.DataFrame:
    """Forced sales of a redemption wave, stock by stock and day by day.

    stocks (one row per stock, as of the stress day): ts_code, close (CNY), holdings (CNY of
    quant holdings), adv_shares, adv_cny, sigma_d, limit_pct.
    Every sleeve sells pro rata to its holdings, so stock n receives a new order of
    ``redeem_per_day · H_n / P_0`` shares on each of the first ``n_days`` days, plus yesterday's
    unfilled shares; it never sells more than it still holds.

    Returns one row per stock and day (day = 1..): ts_code, day, new_order_shares, carry_in_shares,
    order_shares, filled_shares, unfilled_shares, order_share_adv (order / ADV), filled_share_adv,
    ret (impact return of the day), price, cum_ret, locked_limit_down, held_shares (after the day),
    sold_cny (filled × the day's close).
    """
    p0 = stocks["close"].to_numpy(dtype=float)
    h0 = np.where(p0 > 0, stocks["holdings"].to_numpy(dtype=float) / np.where(p0 > 0, p0, 1.0), 0.0)
    v = stocks["adv_shares"].to_numpy(dtype=float)
    sig = fill_sigma(stocks)
    lim = stocks["limit_pct"].to_numpy(dtype=float) if "limit_pct" in stocks else np.full(len(stocks), np.nan)
    held = h0.copy()
    carry = np.zeros_like(h0)
    price = p0.copy()
    cols = ("new_order_shares", "carry_in_shares", "order_shares", "filled_shares", "unfilled_shares", "order_share_adv",
            "filled_share_adv", "ret", "price", "cum_ret", "locked_limit_down", "held_shares", "sold_cny")
    rows: dict[str, list[np.ndarray]] = {c: [] for c in cols}  # one array per day: one frame at the end (issue 11)
    total_days = params.n_days + params.drain_days
    impact = SqrtImpact(v, sig, params.y)
    days = 0
    for d in range(1, total_days + 1):
        new = params.redeem_per_day * h0 if d <= params.n_days else np.zeros_like(h0)
        order = np.minimum(new + carry, held)
        new_eff = np.minimum(new, held)
        filled, ret = impact(order, lim)
        prev = price
        price = prev * (1.0 + ret)
        held = held - filled
        carry_in = carry
        carry = order - filled
        with np.errstate(divide="ignore", invalid="ignore"):
            osh = np.where(v > 0, order / v, np.nan)
            fsh = np.where(v > 0, filled / v, np.nan)
        for c, x in (("new_order_shares", new_eff), ("carry_in_shares", carry_in), ("order_shares", order),
                     ("filled_shares", filled), ("unfilled_shares", carry), ("order_share_adv", osh),
                     ("filled_share_adv", fsh), ("ret", ret), ("price", price),
                     ("cum_ret", np.where(p0 > 0, price / np.where(p0 > 0, p0, 1.0) - 1.0, np.nan)),
                     ("locked_limit_down", np.isfinite(lim) & (order > filled + 1e-9) & (ret <= -lim + 1e-12)),
                     ("held_shares", held), ("sold_cny", filled * price)):
            rows[c].append(x)
        days = d
        if d >= params.n_days and not (carry > 1e-9).any():
            break
    n = len(stocks)
    out = pd.DataFrame({"ts_code": np.tile(stocks["ts_code"].to_numpy(), days),
                        "day": np.repeat(np.arange(1, days + 1, dtype="int64"), n)})
    for c in cols:
        out[c] = np.concatenate(rows[c]) if days else np.zeros(0)
    return out


def redemption_bucket_summary(
    per_stock: pd.DataFrame, stocks: pd.DataFrame, buckets: pd.DataFrame, n_days: int
) -> pd.DataFrame:
    """Per-bucket cumulative impact of a redemption stress.

    per_stock: :func:`redemption_stress` output; stocks: its input (ts_code, free_float_mv,
    holdings, close); buckets: ts_code, bucket_type, bucket (one day).
    Returns bucket_type, bucket, n_stocks, holdings, sold_cny, unfilled_cny (after the last
    simulated day, at its price), impact_ff_weighted (free-float-weighted cumulative return at
    the end), impact_median, share_locked_any (stocks locked limit-down on at least one day),
    max_order_share_adv (largest single-day order / ADV, median across stocks), days_simulated.
    """
    last = per_stock.sort_values("day").groupby("ts_code").tail(1).set_index("ts_code")
    locked = per_stock.groupby("ts_code")["locked_limit_down"].any()
    sold = per_stock.groupby("ts_code")["sold_cny"].sum()
    max_osh = per_stock.groupby("ts_code")["order_share_adv"].max()
    s = stocks.set_index("ts_code")[["free_float_mv", "holdings"]].copy()
    s["cum_ret"] = last["cum_ret"]
    s["unfilled_cny"] = last["unfilled_shares"] * last["price"]
    s["sold_cny"] = sold
    s["locked"] = locked
    s["max_osh"] = max_osh
    m = buckets[["ts_code", "bucket_type", "bucket"]].merge(s.reset_index(), on="ts_code", how="inner")
    m["_w"] = m["free_float_mv"].fillna(0.0)
    m["_wr"] = m["_w"] * m["cum_ret"].fillna(0.0)
    g = m.groupby(["bucket_type", "bucket"], sort=False)
    res = g.agg(
        n_stocks=("ts_code", "size"),
        holdings=("holdings", "sum"),
        sold_cny=("sold_cny", "sum"),
        unfilled_cny=("unfilled_cny", "sum"),
        _wr=("_wr", "sum"),
        _w=("_w", "sum"),
        impact_median=("cum_ret", "median"),
        share_locked_any=("locked", "mean"),
        max_order_share_adv=("max_osh", "median"),
    ).reset_index()
    res["impact_ff_weighted"] = np.where(res["_w"] > 0, res["_wr"] / res["_w"].where(res["_w"] > 0, 1.0), np.nan)
    res["days_simulated"] = int(per_stock["day"].max()) if len(per_stock) else 0
    res["redemption_days"] = int(n_days)
    res["share_locked_any"] = res["share_locked_any"].astype(float)
    res["n_stocks"] = res["n_stocks"].astype("int64")
    return res.drop(columns=["_wr", "_w"])


__all__ = [
    "RedemptionParams",
    "SqrtImpact",
    "annualized_basis",
    "basis_stress_events",
    "fill_sigma",
    "redemption_bucket_summary",
    "redemption_stress",
    "sqrt_impact",
]
