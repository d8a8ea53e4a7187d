"""The daily engine of the synthetic A-share market (stocks, indices, ETFs, quant books).

One pass over the sessions; each day:

1. listing / delisting / ST / suspension state, cash dividends and bonus splits (``pre_close`` is
   the exchange's ex-right reference, ``adj_factor`` compounds ``close_{t-1} / pre_close_t``);
2. fundamental return ``r_f = beta f_mkt + f_ind + size_z f_size + nlsize_z f_nls + idio`` with the
   METHODS §2 exposures of the previous close and scripted episode factor returns added;
3. order flow of the quant books (deleveraging, redemptions, DMA margin calls, carried sales) and
   ETF creations, turned into price impact by the square-root law
   ``dP/P = sign(q) Y sigma sqrt(|q| / V)`` (METHODS §9; sigma the stock's true daily vol, V its
   baseline daily volume in shares);
4. price limits: a move beyond the limit closes at the limit price; only
   ``Q_fill = V (budget / (Y sigma))^2`` of a sale fills, the rest carries to the next day; a day on
   which less than ``lock_fill_frac`` could fill is locked (open = high = low = close = limit);
5. OHLC, volume and amount, index levels (cap-rank CSI-like buckets), ETF shares, book P&L.

All randomness comes from one ``numpy.random.Generator`` in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sc_assets.simulator.params import SimulationParams
from sc_assets.simulator.universe import CHINEXT_REFORM, SW_L1, Universe

D_PER_YEAR = 242.0
INDEX_BASE = {"000300.SH": 3500.0, "000905.SH": 6000.0, "000852.SH": 6500.0, "932000.CSI": 2500.0,
              "8841431.WI": 1500.0, "000016.SH": 2600.0}
CSI_INDICES = ("000300.SH", "000905.SH", "000852.SH", "932000.CSI")
ALL_INDICES = CSI_INDICES + ("8841431.WI", "000016.SH")
ETFS = (  # ts_code, tracked index, price divisor (ETF price ~ index / divisor), share of the index's ETF AUM
    ("510300.SH", "000300.SH", 1000.0, 0.6), ("159919.SZ", "000300.SH", 1000.0, 0.4),
    ("510500.SH", "000905.SH", 1000.0, 0.6), ("159922.SZ", "000905.SH", 4000.0, 0.4),
    ("512100.SH", "000852.SH", 3000.0, 0.6), ("159845.SZ", "000852.SH", 3000.0, 0.4),
)
STRATEGIES = ("IE", "MN", "DMA")
BENCHES = ("000905.SH", "000852.SH")
PARTS = ("bench", "off")
BOOKS = [(s, b, part) for s in STRATEGIES for b in BENCHES for part in PARTS]


def round2(x: np.ndarray) -> np.ndarray:
    """Round half up to 0.01 CNY (exchange price rounding)."""
    return np.floor(x * 100.0 + 0.5) / 100.0


def barra_size(cap: np.ndarray, elig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """METHODS §2 size and non-linear size exposures from total caps (CNY; NaN = no close).

    Standardise with the cap-weighted mean and equal-weighted std (ddof=0) of the eligible set,
    clip at +-3, standardise again. NLSIZE: cube of the size exposure, WLS on it (weights
    sqrt(cap), intercept) over the eligible set, residual -> standardise, clip, standardise.
    Stocks outside the eligible set get values from the same transforms (NaN without a cap).
    """
    has = np.isfinite(cap) & (cap > 0)
    e = np.flatnonzero(elig & has)
    x = np.full(cap.shape, np.nan)
    x[has] = np.log(cap[has])
    ce = cap[e]
    w = ce / ce.sum()

    def stdz(v):
        ve = v[e]
        return (v - w @ ve) / ve.std()

    z = stdz(np.clip(stdz(x), -3, 3))
    c = z**3
    sw = np.sqrt(ce)
    ze, ce3 = z[e], c[e]
    s0, s1, s2 = sw.sum(), sw @ ze, sw @ (ze * ze)
    t0, t1 = sw @ ce3, sw @ (ze * ce3)
    det = s0 * s2 - s1 * s1
    b0, b1 = (s2 * t0 - s1 * t1) / det, (s0 * t1 - s1 * t0) / det
    resid = c - b0 - b1 * z
    nl = stdz(np.clip(stdz(resid), -3, 3))
    return z, nl


def _phase_days(days: pd.DatetimeIndex, p: SimulationParams) -> np.ndarray:
    """(T, 3) scripted (market, size, nlsize) factor returns of the episode."""
    t = len(days)
    out = np.zeros((t, 3))

    def idx(d, side="left"):
        return int(days.searchsorted(pd.Timestamp(d), side=side))

    e0, w1, w2s, w2e, rb = (idx(p.episode_start), idx(p.wave1_date), idx(p.wave2_start),
                            idx(p.wave2_end, "right"), idx(p.rebound_date))
    if e0 >= t or pd.Timestamp(p.wave1_date) > days[-1] and False:
        return out
    spans = [
        (e0, max(w1 - 3, e0), p.episode_pre),
        (max(w1 - 3, e0), min(w1 + 2, t), p.episode_wave1),
        (min(w1 + 2, t), w2s, p.episode_mid),
        (w2s, w2e, p.episode_wave2),
        (rb, min(rb + 6, t), p.episode_rebound),
    ]
    for a, b, vals in spans:
        if a < b:
            out[a:b] = vals
    return out


@dataclass
class DayOutput:
    """What the engine hands to the writers for one session (indices into the universe)."""

    t: int
    trading: np.ndarray  # int indices with a bar
    listed: np.ndarray  # int indices listed (incl. suspended)
    bars: dict
    basic: dict
    adj: np.ndarray
    st: np.ndarray
    truth: dict
    index_rows: list
    etf_rows: list
    weights: list = field(default_factory=list)


class Engine:
    """State and step function of the stock market; see the module docstring."""

    def __init__(self, p: SimulationParams, u: Universe, days: pd.DatetimeIndex, rng: np.random.Generator,
                 stress: np.ndarray):
        self.p, self.u, self.days, self.rng, self.stress = p, u, days, rng, stress
        n, t = u.n, len(days)
        self.n, self.t_n = n, t
        self.phase = _phase_days(days, p)
        self.e0 = int(days.searchsorted(pd.Timestamp(p.episode_start)))
        self.w1 = int(days.searchsorted(pd.Timestamp(p.wave1_date)))
        self.w2s = int(days.searchsorted(pd.Timestamp(p.wave2_start)))
        self.w2e = int(days.searchsorted(pd.Timestamp(p.wave2_end), side="right"))
        self.rb = int(days.searchsorted(pd.Timestamp(p.rebound_date)))
        self.ee = int(days.searchsorted(pd.Timestamp(p.episode_end), side="right"))
        # price state
        self.last_close = np.where(u.list_idx < 0, u.price0, np.nan)
        self.adj = u.adj0.copy()
        self.total_sh = u.total_sh.copy()
        self.float_sh = np.round(u.total_sh * u.float_frac / 100) * 100
        self.free_sh = np.round(self.float_sh * u.free_frac / 100) * 100
        # sessions since listing (1 on the listing day); before the window: business days since listing
        pre = u.list_idx < 0
        self.days_listed = np.zeros(n, dtype=np.int64)
        self.days_listed[pre] = np.busday_count(u.list_date[pre], np.datetime64(days[0].date(), "D"))
        self.st_until = np.where(u.st0, p.st_length_days // 2 + rng.integers(0, p.st_length_days, n), -1)
        self.susp_until = np.full(n, -1)
        self.pending_r = np.zeros(n)
        self.carry = np.zeros(n)  # unfilled quant sales (shares), still held
        self.cum_impact = np.zeros(n)
        self.rebound_left = np.zeros(n)
        cap = self.last_close * self.total_sh
        elig = np.isfinite(cap)
        self.size_z, self.nls_z = barra_size(cap, elig) if elig.sum() > 10 else (np.zeros(n), np.zeros(n))
        self.cap_prev = cap
        # indices
        self.members = {code: np.zeros(n, dtype=bool) for code in CSI_INDICES + ("000016.SH",)}
        self.level = {code: INDEX_BASE[code] for code in ALL_INDICES}
        self.micro_n = max(p.micro_min, int(round(p.micro_n_at_5000 * p.n_stocks / 5000)))
        self.sse50_n = max(10, int(round(p.sse50_n_at_5000 * p.n_stocks / 5000)))
        # CSI semi-annual rebalances: first session after the second Friday of June and December
        reb = set()
        for y in range(days[0].year, days[-1].year + 1):
            for m in (6, 12):
                first = pd.Timestamp(year=y, month=m, day=1)
                second_fri = first + pd.Timedelta(days=(4 - first.weekday()) % 7 + 7)
                k = days.searchsorted(second_fri, side="right")
                if k < t:
                    reb.add(int(k))
        self.index_rebalance = reb
        month = days.to_period("M")
        self.month_first = set(np.flatnonzero(np.r_[True, month[1:] != month[:-1]]).tolist())
        # quant books (shares) and DMA equity
        self.books = np.zeros((len(BOOKS), n))
        self.book_ret = np.zeros((t, len(BOOKS)))
        self.book_val = np.zeros((t, len(BOOKS)))
        self.book_sold = np.zeros((t, len(BOOKS)))
        self.dma_equity = 0.0
        self.dma_sell_next = 0.0
        self.dma_path = np.zeros((t, 3))  # gross, equity, sell fraction
        self.sleeve_tau = None  # set by the caller: {(strategy, bench): mean tau}
        # ETFs
        self.etf_units = None
        self.etf_close = np.zeros(len(ETFS))
        self.index_ff_prev = {}
        # factor returns (ground truth)
        self.factors = np.zeros((t, 3 + len(SW_L1)))
        self.index_levels = {code: np.zeros(t) for code in ALL_INDICES}
        self.index_members_n = {code: np.zeros(t, dtype=int) for code in ALL_INDICES}
        self.etf_flow_cny = np.zeros((t, len(ETFS)))
        self.quant_total = np.zeros(t)
        base_to = p.turnover_small * (np.where(np.isfinite(cap), cap, 5e9) / 5e9) ** (-p.turnover_exponent)
        self.base_to0 = np.clip(base_to, 0.003, 0.15)
        self.sigma = np.sqrt((u.beta * p.mkt_vol) ** 2 + p.ind_vol**2 + p.size_vol**2 + u.idio_vol**2)
        self.fut_sigma = None

    # ------------------------------------------------------------------ helpers
    def _limit_pct(self, t: int, st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(up, down) limit fractions; NaN = no limit (first five sessions of registration-era listings)."""
        u, d = self.u, self.days[t]
        b = u.board
        base = np.where(b == 0, np.where(st, 0.05, 0.10), 0.0)
        chinext = np.where(d >= CHINEXT_REFORM, 0.20, np.where(st, 0.05, 0.10))
        base = np.where(b == 1, chinext, base)
        base = np.where(b == 2, 0.20, base)
        base = np.where(b == 3, 0.30, base)
        up, dn = base.copy(), base.copy()
        early = self.days_listed <= 5
        nolim = early & u.no_limit_ipo
        up[nolim] = np.nan
        dn[nolim] = np.nan
        first_old = (self.days_listed == 1) & ~u.no_limit_ipo
        up[first_old] = 0.44
        dn[first_old] = 0.36
        return up, dn

    def _rank_members(self, t: int, listed: np.ndarray, st: np.ndarray) -> None:
        cap = self.cap_prev
        elig = listed & np.isfinite(cap) & ~st & (self.days_listed >= 60)
        idx = np.flatnonzero(elig)
        order = idx[np.argsort(-cap[idx], kind="stable")]
        n = self.p.n_stocks
        for code, lo, hi in self.p.index_bands:
            m = np.zeros(self.n, dtype=bool)
            m[order[int(round(lo * n)):int(round(hi * n))]] = True
            self.members[code] = m
        sh = order[self.u.is_sh[order] & (self.u.board[order] == 0)]
        m = np.zeros(self.n, dtype=bool)
        m[sh[: self.sse50_n]] = True
        self.members["000016.SH"] = m

    def quant_weights(self, listed: np.ndarray, st: np.ndarray, suspended: np.ndarray) -> dict:
        """Target weights per book: benchmark (free-float cap) and off-benchmark (FF^beta x preference)."""
        ff = self.free_sh * np.where(np.isfinite(self.last_close), self.last_close, 0.0)
        out = {}
        elig = listed & ~st & ~suspended & (self.days_listed >= 60) & (ff > 0)
        for b in BENCHES:
            wb = np.where(self.members[b] & listed, ff, 0.0)
            out[(b, "bench")] = wb / wb.sum()
            above = self.members["000300.SH"] | self.members["000905.SH"]
            if b == "000852.SH":
                above = above | self.members["000852.SH"]
            wo = np.where(elig & ~above, ff**self.p.tilt_beta * self.u.quant_pref, 0.0)
            out[(b, "off")] = wo / wo.sum()
        return out

    def rebalance_books(self, t: int, listed, st, suspended) -> None:
        p = self.p
        w = self.quant_weights(listed, st, suspended)
        shares = dict(zip(("IE", "IE1000", "MN", "DMA"), p.sleeve_shares, strict=True))
        sleeve = {("IE", BENCHES[0]): shares["IE"], ("IE", BENCHES[1]): shares["IE1000"],
                  ("MN", BENCHES[0]): shares["MN"] * (1 - p.mn_hedge_im_share),
                  ("MN", BENCHES[1]): shares["MN"] * p.mn_hedge_im_share,
                  ("DMA", BENCHES[0]): shares["DMA"] * (1 - p.mn_hedge_im_share),
                  ("DMA", BENCHES[1]): shares["DMA"] * p.mn_hedge_im_share}
        agg = np.zeros(self.n)
        for (s, b), sh in sleeve.items():
            tau = self.sleeve_tau[(s, b)]
            agg += sh * ((1 - tau) * w[(b, "bench")] + tau * w[(b, "off")])
        ff = self.free_sh * np.where(np.isfinite(self.last_close), self.last_close, 0.0)
        cap = self.cap_prev
        ok = listed & np.isfinite(cap)
        idx = np.flatnonzero(ok)
        small = idx[np.argsort(cap[idx], kind="stable")][: int(round(p.smallcap_bucket_frac * ok.sum()))]
        years = (pd.Timestamp(p.episode_start) - self.days[t]).days / 365.25
        target = p.quant_hs_smallcap * np.exp(-p.quant_growth_ann * max(years, 0.0))
        gross = target * ff[small].sum() / agg[small].sum()
        price = np.where(np.isfinite(self.last_close), self.last_close, 1.0)
        for k, (s, b, part) in enumerate(BOOKS):
            tau = self.sleeve_tau[(s, b)]
            frac = (1 - tau) if part == "bench" else tau
            self.books[k] = np.floor(gross * sleeve[(s, b)] * frac * w[(b, part)] / price / 100) * 100
        dma_rows = [k for k, bk in enumerate(BOOKS) if bk[0] == "DMA"]
        self.dma_equity = float((self.books[dma_rows] * price).sum()) / p.dma_leverage
        self.carry[:] = 0.0

    # ------------------------------------------------------------------ the day
    def step(self, t: int) -> DayOutput:
        p, u, rng, n = self.p, self.u, self.rng, self.n
        d = self.days[t]
        listed = (u.list_idx <= t) & (t < u.delist_idx)
        new = u.list_idx == t
        self.days_listed = np.where(listed, self.days_listed + 1, self.days_listed)
        # ST: random entries (small caps more often), names due to delist are ST for 120 sessions
        entry = listed & (u.board <= 1) & (rng.random(n) < p.st_entry_ann / D_PER_YEAR * 2 *
                                          (np.nan_to_num(self.size_z, nan=0) < -0.5))
        self.st_until = np.where(entry & (self.st_until < t), t + p.st_length_days, self.st_until)
        st = listed & ((self.st_until > t) | ((u.delist_idx < self.t_n) & (u.delist_idx - 120 <= t)))
        # suspensions
        start_s = listed & ~new & (self.days_listed > 5) & (rng.random(n) < p.suspend_prob) & (self.susp_until <= t)
        if start_s.any():
            self.susp_until[start_s] = t + rng.geometric(1.0 / p.suspend_days, int(start_s.sum()))
        suspended = listed & (self.susp_until > t)
        trading = listed & ~suspended
        # index membership and quant rebalances use the previous close
        if t == 0 or t in self.index_rebalance:
            self._rank_members(t, listed, st)
        for code, m in self.members.items():
            self.members[code] = m & listed
        if t == 0 or (t in self.month_first and t < self.e0):
            self.rebalance_books(t, listed, st, suspended)
        # corporate actions
        in_season = d.month in (5, 6, 7)
        div_ev = trading & ~new & (self.days_listed > 5) & in_season & (rng.random(n) < p.div_prob_ann / 63.0)
        split_ev = trading & ~new & (self.days_listed > 5) & (rng.random(n) < p.split_prob_ann / D_PER_YEAR)
        yld = np.zeros(n)
        yld[div_ev] = rng.uniform(*p.div_yield_range, int(div_ev.sum()))
        ratio = np.ones(n)
        ratio[split_ev] = np.asarray(p.split_ratios)[rng.integers(0, len(p.split_ratios), int(split_ev.sum()))]
        base = self.last_close.copy()
        issue = round2(u.price0 / (1 + u.ipo_pop))
        base[new] = issue[new]
        div = np.where(div_ev, round2(yld * np.nan_to_num(base)), 0.0)
        pre = np.where(div_ev | split_ev, round2((base - div) / ratio), base)
        ev = (div_ev | split_ev) & trading
        adj_prev = self.adj.copy()
        self.adj = np.where(ev, np.round(self.adj * base / pre, 6), self.adj)
        if split_ev.any():
            for arr in (self.total_sh, self.float_sh, self.free_sh, *self.books):
                arr[:] = np.where(split_ev, np.round(arr * ratio / 100) * 100, arr)
            self.carry = np.where(split_ev, np.round(self.carry * ratio), self.carry)
        # factor returns
        draws = rng.standard_t(p.tail_df, size=n + 3) * np.sqrt((p.tail_df - 2) / p.tail_df)
        fscale = p.episode_factor_vol_scale if self.e0 <= t < self.ee else 1.0
        f_mkt = fscale * p.mkt_vol * draws[n] + p.mkt_drift_ann / D_PER_YEAR + self.phase[t, 0]
        year = d.year
        prem = next((v for a, b, v in p.size_premium_ann if a <= year <= b), 0.0)
        f_size = fscale * p.size_vol * draws[n + 1] + prem / D_PER_YEAR + self.phase[t, 1]
        f_nls = fscale * p.nls_vol * draws[n + 2] + self.phase[t, 2]
        f_ind = rng.standard_normal(len(SW_L1)) * p.ind_vol
        capw = np.nan_to_num(self.cap_prev)
        share = np.bincount(u.industry, weights=capw, minlength=len(SW_L1))
        share = share / share.sum() if share.sum() > 0 else np.full(len(SW_L1), 1 / len(SW_L1))
        f_ind = f_ind - (share * f_ind).sum()  # industries net to zero (cap-weighted), METHODS §3
        self.factors[t] = np.r_[f_mkt, f_size, f_nls, f_ind]
        zs = np.nan_to_num(self.size_z)
        zn = np.nan_to_num(self.nls_z)
        r_f = u.beta * f_mkt + f_ind[u.industry] + zs * f_size + zn * f_nls + u.idio_vol * draws[:n]
        # suspended stocks accumulate their return until resumption
        self.pending_r = np.where(suspended, self.pending_r + r_f, self.pending_r)
        resumed = trading & (self.pending_r != 0)
        r_f = np.where(resumed, r_f + self.pending_r, r_f)
        self.pending_r[resumed] = 0.0
        # IPO day
        r_f = np.where(new, u.ipo_pop, r_f)
        early = trading & (self.days_listed > 1) & (self.days_listed <= 5) & u.no_limit_ipo
        if early.any():
            r_f[early] += 0.02 * rng.standard_normal(int(early.sum()))
        # rebound: part of the episode's cumulative impact reverts
        if t == self.rb:
            self.rebound_left = p.rebound_frac * np.maximum(-self.cum_impact, 0.0)
        step_rb = np.zeros(n)
        if t >= self.rb:
            step_rb = self.rebound_left * (1 - 0.5 ** (1 / p.rebound_halflife))
            self.rebound_left = self.rebound_left - step_rb
        r_nf = (1 + r_f) * np.exp(step_rb) - 1
        # ---------------------------------------------------------------- order flow
        price_prev = np.where(np.isfinite(pre), pre, 0.0)
        sell_frac = np.zeros(len(BOOKS))
        s = self.stress[t]
        in_crash = self.e0 <= t < self.w2e and self.w1 - 3 <= t
        for k, (strat, _b, _part) in enumerate(BOOKS):
            if strat == "MN":
                sell_frac[k] = p.delever_mn * s
            elif strat == "DMA":
                sell_frac[k] = p.delever_dma * s + self.dma_sell_next + (p.wave2_dma_sell if self.w2s <= t < self.w2e else 0)
            elif in_crash:
                sell_frac[k] = p.ie_redemption
        sell_frac = np.minimum(sell_frac, 0.6)
        if sell_frac.any():
            orders = np.floor(self.books * sell_frac[:, None] * trading[None, :] / 100) * 100
            self.books -= orders
            self.book_sold[t] = orders @ price_prev
            q_sell = orders.sum(axis=0)
        else:
            q_sell = np.zeros(n)
        q_sell = q_sell + np.where(trading, self.carry, 0.0)
        carry_susp = np.where(trading, 0.0, self.carry)
        # ETF creations/redemptions buy/sell the tracked index pro rata to free-float cap
        ff_prev = self.free_sh * np.nan_to_num(self.last_close)
        q_buy = np.zeros(n)
        if self.etf_units is None:
            self.etf_units = np.zeros(len(ETFS))
            for j, (_c, idx_code, div_, shr) in enumerate(ETFS):
                self.etf_close[j] = round(self.level[idx_code] / div_, 3)
                ffi = ff_prev[self.members[idx_code]].sum()
                self.etf_units[j] = p.etf_aum_frac * ffi * shr / self.etf_close[j]
        inflow = np.zeros(len(ETFS))
        ff_index = {code: ff_prev[self.members[code]].sum() for code in {e[1] for e in ETFS}}
        for j, (_c, idx_code, _div, shr) in enumerate(ETFS):
            ffi = ff_index[idx_code]
            aum = self.etf_units[j] * self.etf_close[j]
            x = aum * p.etf_flow_vol * rng.standard_normal()
            if idx_code != "000300.SH" and self.w2s <= t < self.w2e:
                x += p.etf_wave2_inflow * ffi * shr
            if idx_code == "000300.SH" and self.w2s <= t < self.w2e:
                x += p.etf_support_inflow * ffi * shr
            inflow[j] = x
        pp_buy = ff_prev / np.maximum(price_prev, 0.01)
        for code, ffi in sorted(ff_index.items()):
            x = sum(inflow[j] for j, e in enumerate(ETFS) if e[1] == code)
            m = self.members[code] & trading
            if ffi > 0:
                q_buy[m] += x * pp_buy[m] / ffi
        self.etf_flow_cny[t] = inflow
        q = np.where(trading, q_buy - q_sell, 0.0)
        # baseline daily volume (shares): turnover rises as cap falls
        cap_prev = np.where(np.isfinite(self.cap_prev), self.cap_prev, u.cap0)
        base_to = np.clip(p.turnover_small * (cap_prev / 5e9) ** (-p.turnover_exponent), 0.003, 0.15)
        vol_base = np.maximum(base_to * self.free_sh, 100.0)
        depth = 1.0 - p.liquidity_dryup * self.stress[t]
        ys = p.impact_y * self.sigma
        impact = np.sign(q) * ys * np.sqrt(np.abs(q) / (vol_base * depth))
        r_total = (1 + r_nf) * (1 + impact) - 1
        # ---------------------------------------------------------------- limits
        up, dn = self._limit_pct(t, st)
        has_lim = np.isfinite(up)
        up_px = np.where(has_lim, round2(price_prev * (1 + np.nan_to_num(up))), np.inf)
        dn_px = np.where(has_lim, round2(price_prev * (1 - np.nan_to_num(dn))), 0.01)
        close = round2(price_prev * (1 + r_total))
        close = np.clip(close, np.maximum(dn_px, 0.01), up_px)
        fill = np.abs(q)
        lock_dn = np.zeros(n, dtype=bool)
        lock_up = np.zeros(n, dtype=bool)
        dn_ret = dn_px / np.maximum(price_prev, 0.01) - 1
        up_ret = up_px / np.maximum(price_prev, 0.01) - 1
        hit_dn = trading & has_lim & (q < 0) & (r_total <= dn_ret)
        budget = np.maximum(r_nf - dn_ret, 0.0)
        f_dn = np.minimum(vol_base * depth * (budget / ys) ** 2, np.abs(q))
        lock_dn = hit_dn & (f_dn < p.lock_fill_frac * np.abs(q))
        fill = np.where(hit_dn, np.where(lock_dn, 0.0, np.floor(f_dn / 100) * 100), fill)
        hit_up = trading & has_lim & (q > 0) & (r_total >= up_ret)
        budget_u = np.maximum(up_ret - r_nf, 0.0)
        f_up = np.minimum(vol_base * depth * (budget_u / ys) ** 2, np.abs(q))
        lock_up = hit_up & (f_up < p.lock_fill_frac * np.abs(q))
        fill = np.where(hit_up, np.where(lock_up, 0.0, np.floor(f_up / 100) * 100), fill)
        # plain limit moves (no flow) lock too when the fundamental move is far beyond the limit
        lock_dn |= trading & has_lim & (q >= 0) & (r_total < dn_ret - 0.04)
        lock_up |= trading & has_lim & (q <= 0) & (r_total > up_ret + 0.04)
        net_filled = np.sign(q) * fill  # signed shares traded by the flows (negative = sold)
        # unfilled net sales carry as quant sales (ETF redemptions are never carried)
        self.carry = np.where(trading, np.where(q < 0, np.minimum(np.abs(q) - fill, q_sell), 0.0), carry_susp)
        # realised impact (log), accumulated over the episode for the rebound
        r_close = np.where(trading, close / np.maximum(price_prev, 0.01) - 1, 0.0)
        r_nf_clip = np.where(trading, np.clip(r_nf, dn_ret, np.where(np.isfinite(up_ret), up_ret, np.inf)), 0.0)
        imp_real = np.where(trading, np.log1p(r_close) - np.log1p(r_nf_clip), 0.0)
        if self.e0 <= t < self.rb:
            self.cum_impact += imp_real
        # ---------------------------------------------------------------- OHLC and volume
        sig = self.sigma
        r_open = 0.3 * r_close + 0.3 * sig * rng.standard_normal(n)
        open_ = np.clip(round2(price_prev * (1 + r_open)), np.maximum(dn_px, 0.01), up_px)
        hi = np.clip(round2(np.maximum(open_, close) * (1 + 0.4 * sig * np.abs(rng.standard_normal(n)))),
                     0.01, up_px)
        lo = np.clip(round2(np.minimum(open_, close) * (1 - 0.4 * sig * np.abs(rng.standard_normal(n)))),
                     np.maximum(dn_px, 0.01), None)
        hi = np.maximum(hi, np.maximum(open_, close))
        lo = np.minimum(lo, np.minimum(open_, close))
        locked = lock_dn | lock_up
        lim_px = np.where(lock_dn, dn_px, up_px)
        close = np.where(locked, lim_px, close)
        open_ = np.where(locked, lim_px, open_)
        hi = np.where(locked, lim_px, hi)
        lo = np.where(locked, lim_px, lo)
        turn = base_to * np.exp(0.35 * rng.standard_normal(n) - 0.06) * (1 + 8 * np.abs(r_close))
        turn = np.where(locked, turn * 0.05, turn)
        turn = np.where(new, np.maximum(turn, 0.5), turn)
        vol_sh = np.round((turn * self.free_sh + np.abs(fill)) / 100) * 100
        vol_sh = np.where(trading, np.maximum(vol_sh, 100.0), 0.0)
        vwap = np.clip((open_ + hi + lo + 2 * close) / 5, lo, hi)
        amount = vol_sh * vwap
        # ---------------------------------------------------------------- state update
        r_px = np.where(trading, close / np.maximum(price_prev, 0.01) - 1, 0.0)  # price return
        lc_prev = np.where(np.isfinite(self.last_close), self.last_close, np.nan)
        r_tr = np.where(trading & ~new, close * self.adj / (lc_prev * adj_prev) - 1, 0.0)
        r_tr = np.where(np.isfinite(r_tr), r_tr, 0.0)
        price_before = np.where(np.isfinite(self.last_close), self.last_close, 0.0)
        # book returns (total return, weights = value at the previous close after the day's sales)
        tot_prev = self.books @ price_before
        pnl = self.books @ (price_before * r_tr)
        self.book_ret[t] = np.where(tot_prev > 0, pnl / np.where(tot_prev > 0, tot_prev, 1), 0.0)
        self.last_close = np.where(trading, close, self.last_close)
        self.last_close[u.delist_idx <= t] = np.nan
        cap = self.last_close * self.total_sh
        # index returns: price returns weighted by free-float cap at the previous close
        index_rows = []
        ff_w = np.where(np.isfinite(self.cap_prev), self.free_sh * price_before, 0.0)
        vol_lots = vol_sh / 100
        amt_k = amount / 1000
        pp = np.maximum(price_prev, 0.01)
        rel_o = np.where(trading, open_ / pp - 1, 0.0)
        rel_h = np.where(trading, hi / pp - 1, 0.0)
        rel_l = np.where(trading, lo / pp - 1, 0.0)
        for code in ALL_INDICES:
            if code == "8841431.WI":
                ok = listed & np.isfinite(self.cap_prev) & ~st & (self.days_listed >= 20) & ~new
                idx = np.flatnonzero(ok)
                k = min(self.micro_n, len(idx))
                pick = idx[np.argpartition(self.cap_prev[idx], k - 1)[:k]] if k < len(idx) else idx
                m = np.zeros(n, dtype=bool)
                m[pick] = True
                w = m.astype(float)
            else:
                m = self.members[code] & np.isfinite(self.cap_prev)
                w = np.where(m, ff_w, 0.0)
            tw = w.sum()
            prev_level = self.level[code]
            if tw > 0:
                r_i = (w @ r_px) / tw
                ro = (w @ rel_o) / tw
                rh = (w @ rel_h) / tw
                rl = (w @ rel_l) / tw
            else:
                r_i = ro = rh = rl = 0.0
            lvl = prev_level * (1 + r_i)
            self.level[code] = lvl
            self.index_levels[code][t] = lvl
            self.index_members_n[code][t] = int(m.sum())
            o_l = prev_level * (1 + ro)
            index_rows.append((code, round(o_l, 4), round(max(prev_level * (1 + rh), lvl, o_l), 4),
                               round(min(prev_level * (1 + rl), lvl, o_l), 4), round(lvl, 4), round(prev_level, 4),
                               round(float(vol_lots[m & trading].sum()), 2), round(float(amt_k[m & trading].sum()), 3)))
        # ETF shares and prices
        etf_rows = []
        for j, (code, idx_code, div_, _s) in enumerate(ETFS):
            new_close = round(self.level[idx_code] / div_ * (1 + 0.0005 * rng.standard_normal()), 3)
            self.etf_units[j] = max(self.etf_units[j] + inflow[j] / self.etf_close[j], 1e6)
            self.etf_close[j] = new_close
            etf_rows.append((code, round(self.etf_units[j] / 1e4, 2), new_close, idx_code))
        # DMA: hedged P&L, margin call when leverage exceeds the band
        dma_k = [k for k, bk in enumerate(BOOKS) if bk[0] == "DMA"]
        price_now = np.where(np.isfinite(self.last_close), self.last_close, 0.0)
        book_now = self.books @ price_now
        g_prev = float(tot_prev[dma_k].sum())
        g_now = float(book_now[dma_k].sum())
        hedge = 0.0
        for k in dma_k:
            b = BOOKS[k][1]
            lv = self.index_levels[b][t]
            prev_lv = self.index_levels[b][t - 1] if t > 0 else INDEX_BASE[b]
            hedge += float(tot_prev[k]) * (lv / prev_lv - 1)
        if g_prev > 0:
            self.dma_equity += (g_now - g_prev) - hedge
        lev = g_now / self.dma_equity if self.dma_equity > 0 else np.inf
        band = p.dma_leverage * p.dma_margin_call
        self.dma_sell_next = (min(p.dma_max_sell, 1 - p.dma_leverage / lev) if lev > band else 0.0) if g_now > 0 else 0.0
        self.dma_path[t] = (g_now, self.dma_equity, self.dma_sell_next)
        self.book_val[t] = book_now
        hold_sh = self.books.sum(axis=0) + self.carry
        self.quant_total[t] = float(hold_sh @ price_now)
        # end-of-day exposures for tomorrow (and the ground truth of today)
        elig = listed & np.isfinite(cap) & (self.days_listed >= 60)
        self.size_z, self.nls_z = barra_size(cap, elig)
        self.cap_prev = cap
        # ---------------------------------------------------------------- outputs
        tr = np.flatnonzero(trading)
        li = np.flatnonzero(listed)
        lim = np.where(has_lim, up, np.nan)
        bars = dict(open=open_[tr], high=hi[tr], low=lo[tr], close=close[tr], pre_close=price_prev[tr],
                    vol=vol_lots[tr], amount=np.round(amt_k[tr], 3))
        basic = dict(close=close[tr], turnover_rate=np.round(vol_sh[tr] / self.float_sh[tr] * 100, 4),
                     turnover_rate_f=np.round(vol_sh[tr] / self.free_sh[tr] * 100, 4),
                     total_share=self.total_sh[tr] / 1e4, float_share=self.float_sh[tr] / 1e4,
                     free_share=self.free_sh[tr] / 1e4, total_mv=np.round(close[tr] * self.total_sh[tr] / 1e4, 4),
                     circ_mv=np.round(close[tr] * self.float_sh[tr] / 1e4, 4))
        truth = dict(
            lncap=np.log(cap[li]), size_z=self.size_z[li], nlsize_z=self.nls_z[li], eligible=elig[li],
            sigma_d=self.sigma[li], adv_shares=vol_base[li], quant_shares=hold_sh[li],
            quant_cny=hold_sh[li] * price_now[li], quant_sell_shares=q_sell[li], quant_filled_shares=np.maximum(-net_filled, 0.0)[li],
            carry_shares=self.carry[li], etf_buy_shares=q_buy[li], impact_ret=imp_real[li], fundamental_ret=r_f[li],
            limit_pct=lim[li], locked=locked[li], suspended=suspended[li],
        )
        weights = []
        return DayOutput(t=t, trading=tr, listed=li, bars=bars, basic=basic, adj=self.adj[li], st=st[li],
                         truth=truth, index_rows=index_rows, etf_rows=etf_rows, weights=weights)

    def index_weight_rows(self, t: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(index, constituent positions, weight in percent) from today's closes (free-float cap weights)."""
        out = []
        ff = self.free_sh * np.nan_to_num(self.last_close)
        for code in CSI_INDICES:
            m = np.flatnonzero(self.members[code] & (ff > 0))
            w = ff[m] / ff[m].sum() * 100
            out.append((code, m, np.round(w, 6)))
        return out
