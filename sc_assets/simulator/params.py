"""All parameters of the synthetic A-share market in one frozen dataclass.

Units: returns and rates are fractions (0.01 = 1%), per trading day unless the name says
``_ann`` (per year) ; money in CNY; dates ISO strings. Study figures quoted below come from
Cinda Securities, "本轮小市值风格与量化策略历史性回撤的分析与展望" (2024-02-24), see
``/work/shared/METHODS.md`` §5, §7, §8, §9, §11.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class SimulationParams:
    """Parameters of :func:`sc_assets.simulator.simulate` (every default documented).

    Cross-section
    -------------
    n_stocks: stocks in the universe (listed at the start or listing later in the window).
    start, end: first and last simulated session (SSE calendar, ``trading_days_between``).
    seed: numpy ``Generator`` seed; same seed -> byte-identical files.
    board_mix: shares of main / chinext / star / bse boards (A-share counts, 2024: ~60/25/11/5%).
    lncap_median, lncap_sd, lncap_skew: ln total cap at the start, ``ln(median) + sd*z + skew*max(z,0)^2``
        clipped to [``cap_min``, ``cap_max``] (study market: ~1e9 .. 3e12 CNY).
    prelisted_frac: share of stocks listed before ``start`` (others IPO inside the window).
    delist_frac: share of stocks delisted inside the window (small, mostly ST names).
    st_frac: share of stocks under ST at the start; ``st_entry_ann`` yearly entry rate.
    suspend_prob: daily probability that a listed stock starts a suspension; mean length ``suspend_days``.
    div_prob_ann, div_yield_range: yearly cash-dividend probability and dividend yield range.
    split_prob_ann: yearly probability of a bonus-share split (ratio drawn from ``split_ratios``).

    Returns
    -------
    Daily returns ``r = beta*f_mkt + f_ind + size_z*f_size + nlsize_z*f_nls + sigma_idio*t4``; exposures
    are the METHODS §2 standardised LNCAP/NLSIZE of the previous close. Fat tails: Student t with
    ``tail_df`` degrees of freedom scaled to unit variance.
    mkt_vol, ind_vol, size_vol, nls_vol: daily factor volatilities; ``mkt_drift_ann`` yearly drift.
    size_premium_ann: yearly mean size-factor return by calendar year range (negative = small caps
        outperform; the study's steady small-cap premium 2021-2023).
    idio_vol_small, idio_vol_large: idiosyncratic daily vol at 1e9 and 1e12 CNY cap (log-linear).
    turnover_small, turnover_exponent: baseline free-float daily turnover at 5e9 CNY and its cap
        elasticity (turnover rises as cap falls).

    Quant books (METHODS §7)
    ------------------------
    quant_hs_smallcap: aggregate quant holdings / free-float cap of the small-cap bucket (the smallest
        ``smallcap_bucket_frac`` of stocks) at the last rebalance before the episode: 16.07% (Table 2).
    quant_growth_ann: yearly growth of quant AUM before the episode (holdings scale back in time).
    sleeve_shares: shares of gross long holdings: index-enhancement CSI500 / CSI1000 (together ~71% of
        private quant, METHODS §7), market-neutral, DMA (gross, at ``dma_leverage`` = 4x, 25% margin).
    tau_range: per-product share of the off-benchmark small-cap sleeve (drawn uniformly).
    tilt_beta: off-benchmark weights proportional to free-float cap ** beta (beta < 1 tilts to small).
    quant_pref_sd: lognormal per-stock quant preference multiplier on the off-benchmark weights.

    Episode (defaults = the study's calendar)
    -----------------------------------------
    episode_start: first session of the 2024 drawdown window (2024-01-02).
    wave1_date: basis shock (2024-01-22); wave2_start/end: ETF inflows + non-linear size swing
        (2024-02-05..07); rebound_date: 2024-02-08.
    impact_y: square-root impact coefficient Y in ``dP/P = -Y sigma sqrt(Q/V)`` (METHODS §9, 0.5-1).
    liquidity_dryup: market depth falls in the stress: the impact law uses V * (1 - liquidity_dryup * stress_t)
        (stress_t in [0, 1] = the basis-shock profile; Brunnermeier-Pedersen liquidity spiral).
    episode_factor_vol_scale: the random parts of the market/size/nlsize factors are scaled by this inside the episode
        (the episode's market path is scripted; keeps the crash comparable across seeds).
    lock_fill_frac: a limit day on which less than this share of the order could trade is locked
        (open = high = low = close = limit, order carried to the next day).
    delever_*: scripted deleveraging of market-neutral/DMA books driven by the basis stress, as the
        fraction of the book sold per day at full stress; DMA additionally restores its leverage to
        ``dma_leverage`` when it exceeds ``dma_leverage * dma_margin_call`` (endogenous fire sale).
    ie_redemption: daily redemption fraction of index-enhancement books from wave1-3 to wave2_end.
    wave2_dma_sell: share of the DMA book sold per day in wave 2 (the DMA unwind of 2024-02-05..07).
    dma_tau, mn_hedge_im_share: off-benchmark share of DMA books; share of MN/DMA books hedged with IM.
    etf_support_inflow: CSI300 ETF inflows per day in wave 2 as a share of CSI300 free-float cap.
    ie_alpha_ann, mn_alpha_ann, fund_te_vol, fund_missing_prob: product alpha (yearly), tracking noise
        (daily), probability that a product misses a weekly NAV (never in Jan-Feb 2024).
    index_bands: CSI-like cap-rank bands as fractions of N (CSI300 top 6%, CSI500 next 10%, CSI1000
        next 20%, CSI2000 next 40%); micro-cap 8841431.WI = the round(400 N / 5000) smallest (min 30),
        equal weight, daily; SSE50 = the round(50 N / 5000) largest SSE main-board names.
    gbk_every, extra_gbk_days: every n-th session (and a few random extra stock_daily/daily_basic days)
        is written as a Wind/Choice-style GBK export; output_format: csv or parquet for the big feeds.
    basis_*: annualised basis process per product: mean, AR(1) coefficient and innovation vol, and the
        wave-1 shock depth (IM main below -30%, IC -20..-30% on 2024-01-22, study §9).
    etf_*: ETF AUM as a share of its index's free-float cap, normal daily flow vol, and wave-2 inflow
        per day as a share of the index free-float cap (CSI500/CSI1000 ETFs, 2024-02-05..07).
    episode_*: scripted factor returns per day in each phase (market, size, nlsize).
    rebound_*: share of the episode's cumulative impact that reverts after the rebound, half-life.
    """

    # cross-section
    n_stocks: int = 1200
    start: str = "2022-01-04"
    end: str = "2024-03-29"
    seed: int = 20240207
    board_mix: tuple[float, float, float, float] = (0.60, 0.25, 0.10, 0.05)
    lncap_median: float = 6.0e9
    lncap_sd: float = 0.95
    lncap_skew: float = 0.45
    cap_min: float = 1.0e9
    cap_max: float = 3.0e12
    prelisted_frac: float = 0.90
    delist_frac: float = 0.015
    st_frac: float = 0.03
    st_entry_ann: float = 0.01
    st_length_days: int = 250
    suspend_prob: float = 0.0004
    suspend_days: float = 4.0
    div_prob_ann: float = 0.65
    div_yield_range: tuple[float, float] = (0.003, 0.035)
    split_prob_ann: float = 0.06
    split_ratios: tuple[float, ...] = (1.2, 1.3, 1.5, 2.0)
    # returns
    mkt_vol: float = 0.011
    mkt_drift_ann: float = 0.04
    ind_vol: float = 0.006
    size_vol: float = 0.0035
    nls_vol: float = 0.0015
    tail_df: float = 4.0
    size_premium_ann: tuple[tuple[int, int, float], ...] = (
        (2015, 2016, -0.10), (2017, 2020, 0.08), (2021, 2023, -0.10), (2024, 2099, 0.0))
    idio_vol_small: float = 0.024
    idio_vol_large: float = 0.011
    beta_range: tuple[float, float] = (0.7, 1.3)
    turnover_small: float = 0.035
    turnover_exponent: float = 0.35
    # quant books
    smallcap_bucket_frac: float = 0.20
    quant_hs_smallcap: float = 0.1607
    quant_growth_ann: float = 0.30
    sleeve_shares: tuple[float, float, float, float] = (0.34, 0.33, 0.18, 0.15)  # IE500, IE1000, MN, DMA
    dma_tau: float = 0.8  # off-benchmark share of DMA books (small-cap heavy)
    mn_hedge_im_share: float = 0.6  # share of market-neutral/DMA books hedged on CSI1000 (IM) vs CSI500 (IC)
    tau_range: tuple[float, float] = (0.30, 0.75)
    tilt_beta: float = 0.2
    quant_pref_sd: float = 0.4
    n_managers: int = 40
    # funds
    ie_alpha_ann: float = 0.10
    mn_alpha_ann: float = 0.14
    fund_te_vol: float = 0.0025
    fund_missing_prob: float = 0.004
    # episode
    episode_start: str = "2024-01-02"
    wave1_date: str = "2024-01-22"
    wave2_start: str = "2024-02-05"
    wave2_end: str = "2024-02-07"
    rebound_date: str = "2024-02-08"
    episode_end: str = "2024-03-29"
    impact_y: float = 1.0
    liquidity_dryup: float = 0.6
    lock_fill_frac: float = 0.2
    delever_mn: float = 0.20
    delever_dma: float = 0.08
    dma_leverage: float = 4.0
    dma_margin_call: float = 1.05
    dma_max_sell: float = 0.35
    wave2_dma_sell: float = 0.30
    ie_redemption: float = 0.02
    episode_factor_vol_scale: float = 0.5
    # phase -> (market, size, nlsize) scripted daily factor returns added to the random draws
    episode_pre: tuple[float, float, float] = (-0.0035, 0.0025, 0.0010)      # episode_start .. wave1-4
    episode_wave1: tuple[float, float, float] = (-0.0060, 0.0040, 0.0015)    # wave1-3 .. wave1+1
    episode_mid: tuple[float, float, float] = (-0.0020, 0.0025, 0.0010)      # wave1+2 .. wave2_start-1
    episode_wave2: tuple[float, float, float] = (0.0060, 0.0020, 0.0040)  # wave2_start .. wave2_end
    episode_rebound: tuple[float, float, float] = (0.0060, -0.0060, -0.0020)  # rebound .. +5 sessions
    rebound_frac: float = 0.6
    rebound_halflife: float = 6.0
    # futures basis (annualised, fractions)
    basis_mean: tuple[tuple[str, float], ...] = (("IF", -0.02), ("IH", -0.01), ("IC", -0.07), ("IM", -0.09))
    basis_ar: float = 0.95
    basis_vol: float = 0.006
    basis_shock: tuple[tuple[str, float], ...] = (("IF", -0.05), ("IH", -0.03), ("IC", -0.17), ("IM", -0.28))
    basis_shock_halflife: float = 4.0
    # ETFs
    etf_aum_frac: float = 0.03
    etf_flow_vol: float = 0.004
    etf_wave2_inflow: float = 0.010
    etf_support_inflow: float = 0.002  # CSI300 ETF inflows per day in wave 2 (state support)
    # indices (scale with N, CSI-like cap-rank buckets; METHODS §1)
    index_bands: tuple[tuple[str, float, float], ...] = (
        ("000300.SH", 0.00, 0.06), ("000905.SH", 0.06, 0.16),
        ("000852.SH", 0.16, 0.36), ("932000.CSI", 0.36, 0.76))
    micro_n_at_5000: int = 400
    micro_min: int = 30
    sse50_n_at_5000: int = 50
    gbk_every: int = 20
    extra_gbk_days: int = 3
    output_format: str = "csv"  # csv | parquet (large daily feeds)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def replace(self, **changes) -> SimulationParams:
        return dataclasses.replace(self, **changes)


DEFAULT = SimulationParams()
