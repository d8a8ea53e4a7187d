"""Private quant managers and their products: index enhancement (CSI500/CSI1000) and market neutral.

A product j on benchmark b holds ``(1 - tau_j)`` of the benchmark book (free-float cap weights of
the index) and ``tau_j`` of the off-benchmark small-cap book of its strategy (the engine's books),
so its daily return is

    index enhancement: (1 - tau) r_bench_book + tau r_off_book + alpha/242 + te*eps
    market neutral:    the same long book - r_index(b) - hedge carry + alpha/242 + te*eps,

hedge carry = -basis_ann(main contract of b, previous close) * calendar days / 365 (a discount costs
the short hedge its convergence). Weekly ``adj_nav`` on each week's last session
(``week_end_sessions``), 1.0 at inception.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sc_assets.simulator.params import SimulationParams

BUCKETS = (">=10bn", "5-10bn", "<5bn")
_SYL = list("明恒宽卓灵衍九坤幻锐天诚稳博量聚鸣因启思盛金瑞泰睿远")


def make_funds(p: SimulationParams, rng: np.random.Generator, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Products: fund_id, name, strategy, benchmark, manager, manager_aum_bucket, tau, alpha, aum_rel, inception_idx."""
    m = p.n_managers
    n_big, n_mid = int(round(0.3 * m)), int(round(0.3 * m))
    bucket = np.array([0] * n_big + [1] * n_mid + [2] * (m - n_big - n_mid))
    aum = np.where(bucket == 0, rng.uniform(10, 60, m), np.where(bucket == 1, rng.uniform(5, 10, m),
                                                                  rng.uniform(1, 5, m)))
    rows = []
    e0 = int(days.searchsorted(pd.Timestamp(p.episode_start)))
    for i in range(m):
        mgr = "".join(rng.choice(_SYL, 2)) + "投资"
        mgr = f"{mgr}{i + 1:02d}"
        has = [rng.random() < 0.85, rng.random() < 0.75, rng.random() < 0.7]
        if bucket[i] == 0:
            has = [True, True, True]
        if not any(has[:2]):
            has[rng.integers(0, 2)] = True
        kinds = [k for k, h in zip(("ie500", "ie1000", "mn"), has, strict=True) if h]
        split = rng.dirichlet(np.ones(len(kinds)) * 3)
        for kind, sh in zip(kinds, split, strict=True):
            strategy = "market_neutral" if kind == "mn" else "index_enhancement"
            if kind == "ie500":
                bench, label = "000905.SH", "中证500指数增强"
            elif kind == "ie1000":
                bench, label = "000852.SH", "中证1000指数增强"
            else:
                bench = "000852.SH" if rng.random() < p.mn_hedge_im_share else "000905.SH"
                label = "市场中性"
            alpha = (p.mn_alpha_ann if kind == "mn" else p.ie_alpha_ann) * rng.uniform(0.6, 1.4)
            incept = int(rng.integers(0, max(e0 - 120, 1))) if rng.random() < 0.25 else 0
            rows.append(dict(
                fund_id=f"QF{len(rows) + 1:04d}", name=f"{mgr[:2]}{label}{rng.integers(1, 9)}号",
                strategy=strategy, hedge_index=bench, benchmark=bench if kind != "mn" else None, manager=mgr,
                manager_aum_bucket=BUCKETS[bucket[i]], tau=rng.uniform(*p.tau_range), alpha_ann=alpha,
                aum_rel=aum[i] * sh, inception_idx=min(incept, len(days) - 1),
            ))
    return pd.DataFrame(rows)


def sleeve_tau(funds: pd.DataFrame, p: SimulationParams) -> dict:
    """AUM-weighted off-benchmark share per (strategy, benchmark) book; DMA uses ``p.dma_tau``."""
    out = {}
    for (strat, b), g in funds.groupby(["strategy", "hedge_index"]):
        key = "IE" if strat == "index_enhancement" else "MN"
        out[(key, b)] = float(np.average(g["tau"], weights=g["aum_rel"]))
    for b in ("000905.SH", "000852.SH"):
        out.setdefault(("IE", b), float(np.mean(p.tau_range)))
        out.setdefault(("MN", b), float(np.mean(p.tau_range)))
        out[("DMA", b)] = p.dma_tau
    return out


def fund_daily_returns(funds: pd.DataFrame, days: pd.DatetimeIndex, book_ret: np.ndarray, books: list,
                       index_levels: dict, main_basis: dict, p: SimulationParams,
                       rng: np.random.Generator) -> np.ndarray:
    """(T, n_funds) daily returns (NaN before inception)."""
    t_n = len(days)
    col = {bk: k for k, bk in enumerate(books)}
    cal = np.r_[1, np.diff(days.values).astype("timedelta64[D]").astype(int)]
    out = np.full((t_n, len(funds)), np.nan)
    eps = rng.standard_normal((t_n, len(funds)))
    for j, f in enumerate(funds.itertuples()):
        strat = "IE" if f.strategy == "index_enhancement" else "MN"
        b = f.hedge_index
        rb = book_ret[:, col[(strat, b, "bench")]]
        ro = book_ret[:, col[(strat, b, "off")]]
        r = (1 - f.tau) * rb + f.tau * ro + f.alpha_ann / 242.0 + p.fund_te_vol * eps[:, j]
        if strat == "MN":
            lv = index_levels[b]
            ri = np.r_[0.0, lv[1:] / lv[:-1] - 1]
            basis_prev = np.r_[main_basis[b][0], main_basis[b][:-1]]
            r = r - ri + basis_prev * cal / 365.0
        r[: f.inception_idx + 1] = np.nan
        out[:, j] = r
    return out


def weekly_navs(funds: pd.DataFrame, days: pd.DatetimeIndex, daily: np.ndarray, p: SimulationParams,
                rng: np.random.Generator, week_ends: pd.DatetimeIndex) -> pd.DataFrame:
    """fund_nav rows (Tushare-like user CSV): one row per product per week end after inception."""
    nav = np.nancumprod(np.where(np.isnan(daily), 0.0, daily) + 1.0, axis=0)
    pos = days.get_indexer(week_ends)
    crash = (week_ends >= pd.Timestamp("2024-01-01")) & (week_ends <= pd.Timestamp("2024-02-29"))
    recs = []
    for j, f in enumerate(funds.itertuples()):
        alive = pos >= f.inception_idx
        miss = (rng.random(len(pos)) < p.fund_missing_prob) & ~crash
        keep = alive & ~miss
        base = nav[f.inception_idx, j]
        for k in np.flatnonzero(keep):
            recs.append((f.fund_id, week_ends[k], f.name, f.strategy, f.benchmark, f.manager, f.manager_aum_bucket,
                         round(float(nav[pos[k], j] / base), 6)))
    return pd.DataFrame(recs, columns=["fund_id", "nav_date", "name", "strategy", "benchmark", "manager",
                                       "manager_aum_bucket", "adj_nav"])
