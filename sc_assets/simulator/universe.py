"""The simulated cross-section: codes, names, SW level-1 industries, boards, listing and share counts.

Everything here is drawn once from the seeded generator before the daily loop; see
:class:`Universe` for the meaning (and units) of each array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sc_assets.simulator.params import SimulationParams

# Shenwan level-1 industries (2021 version, 31 names).
SW_L1 = (
    "农林牧渔", "基础化工", "钢铁", "有色金属", "电子", "汽车", "家用电器", "食品饮料", "纺织服饰",
    "轻工制造", "医药生物", "公用事业", "交通运输", "房地产", "商贸零售", "社会服务", "银行", "非银金融",
    "建筑材料", "建筑装饰", "电力设备", "机械设备", "国防军工", "计算机", "传媒", "通信", "煤炭",
    "石油石化", "环保", "美容护理", "综合",
)
BOARDS = ("main", "chinext", "star", "bse")
# first day a board existed with today's rules (listings before are not drawn)
BOARD_OPEN = {"main": "1990-12-19", "chinext": "2009-10-30", "star": "2019-07-22", "bse": "2021-11-15"}
CHINEXT_REFORM = pd.Timestamp("2020-08-24")  # ChiNext +-20%, no limit on the first 5 days
MAIN_REGISTRATION = pd.Timestamp("2023-04-10")  # main-board listings: no limit on the first 5 days

_NAME_A = list("华中海天金恒瑞康东方长江新光明宏信德安泰盛远鼎诚通联科嘉立永正达")
_NAME_B = ["科技", "股份", "电子", "医药", "材料", "智能", "能源", "精工", "实业", "控股", "传媒", "环境"]


@dataclass
class Universe:
    """Static per-stock arrays (length N).

    code: ts_code (600000.SH / 000001.SZ / 300001.SZ / 688001.SH / 830001.BJ).
    name: short Chinese name; industry: index into ``SW_L1``; board: index into ``BOARDS``.
    list_idx: session index of the listing day (negative = listed before the first simulated session).
    list_date: listing date; delist_idx: first session index NOT listed (T = never delisted).
    cap0: total market cap (CNY) at the first simulated close (or at listing for IPOs).
    price0: price (CNY) at that point; total_sh/float_frac/free_frac: share counts (float / total,
    free / float). beta: market beta; idio_vol: idiosyncratic daily vol; quant_pref: lognormal
    multiplier of the quant books' off-benchmark weight; adj0: starting adjustment factor.
    ipo_pop: listing-day return of IPOs inside the window; st0: ST at the first session.
    """

    code: np.ndarray
    name: np.ndarray
    industry: np.ndarray
    board: np.ndarray
    list_idx: np.ndarray
    list_date: np.ndarray
    delist_idx: np.ndarray
    cap0: np.ndarray
    price0: np.ndarray
    total_sh: np.ndarray
    float_frac: np.ndarray
    free_frac: np.ndarray
    beta: np.ndarray
    idio_vol: np.ndarray
    quant_pref: np.ndarray
    adj0: np.ndarray
    ipo_pop: np.ndarray
    st0: np.ndarray
    no_limit_ipo: np.ndarray  # listing without limits on the first 5 days
    is_sh: np.ndarray

    @property
    def n(self) -> int:
        return len(self.code)


def _codes(board: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(board)
    codes = np.empty(n, dtype=object)
    is_sh = np.zeros(n, dtype=bool)
    main = np.flatnonzero(board == 0)
    sh_main = rng.random(len(main)) < 0.5
    sz_pool = list(range(1, 1000)) + list(range(2001, 3000)) + list(range(3001, 3100))
    sh_pool = list(range(600000, 602000)) + list(range(603000, 604000)) + list(range(605000, 605500))
    i_sh = i_sz = 0
    for k, idx in enumerate(main):
        if sh_main[k] and i_sh < len(sh_pool):
            codes[idx] = f"{sh_pool[i_sh]:06d}.SH"
            is_sh[idx] = True
            i_sh += 1
        else:
            codes[idx] = f"{sz_pool[i_sz]:06d}.SZ"
            i_sz += 1
    for b, (base, suffix) in {1: (300001, "SZ"), 2: (688001, "SH"), 3: (830001, "BJ")}.items():
        idx = np.flatnonzero(board == b)
        for k, i in enumerate(idx):
            codes[i] = f"{base + k:06d}.{suffix}"
            is_sh[i] = suffix == "SH"
    return codes, is_sh


def make_universe(p: SimulationParams, rng: np.random.Generator, days: pd.DatetimeIndex) -> Universe:
    n, t_days = p.n_stocks, len(days)
    board = rng.choice(4, size=n, p=np.asarray(p.board_mix) / sum(p.board_mix))
    start = days[0]
    # boards that did not exist yet at the start: their stocks list inside the window
    board_open = np.array([pd.Timestamp(BOARD_OPEN[b]) for b in BOARDS])
    open_idx = np.searchsorted(days.values, board_open[board].astype("datetime64[ns]"))
    prelisted = (rng.random(n) < p.prelisted_frac) & (board_open[board] < start)
    lo = np.maximum(open_idx, 1)
    hi = max(t_days - 5, 2)
    list_idx = np.where(prelisted, -1 - rng.integers(0, 4000, size=n),
                        np.minimum(lo + (rng.random(n) * np.maximum(hi - lo, 1)).astype(int), t_days - 1))
    # stocks whose board opens after the window cannot list: move them to the main board, prelisted
    late = (~prelisted) & (open_idx >= t_days)
    board[late] = 0
    list_idx[late] = -1 - rng.integers(0, 4000, size=int(late.sum()))
    prelisted = list_idx < 0
    # listing dates: sessions inside the window; business days before it for older listings
    list_date = np.empty(n, dtype="datetime64[D]")
    inside = list_idx >= 0
    list_date[inside] = days.values[list_idx[inside]].astype("datetime64[D]")
    before = pd.bdate_range(end=start - pd.Timedelta(days=1), periods=4000).values.astype("datetime64[D]")
    older = -1 - list_idx[~inside]
    list_date[~inside] = before[::-1][older]
    min_date = np.array([np.datetime64(BOARD_OPEN[b]) for b in BOARDS])[board[~inside]]
    list_date[~inside] = np.maximum(list_date[~inside], min_date)

    z = rng.standard_normal(n)
    board_shift = np.array([0.0, -0.35, 0.0, -1.1])[board]
    lncap = np.log(p.lncap_median) + p.lncap_sd * z + p.lncap_skew * np.maximum(z, 0) ** 2 + board_shift
    lncap = np.where(prelisted, lncap, lncap - 0.4)  # IPOs are smaller
    cap0 = np.exp(np.clip(lncap, np.log(p.cap_min), np.log(p.cap_max)))
    price0 = np.exp(rng.normal(np.log(14.0), 0.7, size=n) + 0.15 * (np.log(cap0) - np.log(p.lncap_median)))
    price0 = np.clip(np.round(price0, 2), 1.5, 1800.0)
    total_sh = np.maximum(np.round(cap0 / price0 / 100.0) * 100.0, 1e6)
    float_frac = np.where(prelisted, rng.uniform(0.55, 1.0, n), rng.uniform(0.10, 0.30, n))
    # large caps have more strategic (non-free) holders
    free_frac = np.clip(rng.uniform(0.45, 0.95, n) - 0.06 * (np.log(cap0) - np.log(p.lncap_median)), 0.2, 1.0)
    lc = (np.log(cap0) - np.log(1e9)) / (np.log(1e12) - np.log(1e9))
    idio = p.idio_vol_small + (p.idio_vol_large - p.idio_vol_small) * np.clip(lc, 0, 1)
    idio = idio * np.exp(rng.normal(0, 0.15, n)) * np.where(board >= 1, 1.15, 1.0)
    beta = rng.uniform(*p.beta_range, size=n)
    quant_pref = np.exp(rng.normal(-0.5 * p.quant_pref_sd**2, p.quant_pref_sd, n))
    adj0 = np.where(prelisted, np.round(np.exp(rng.uniform(0, 1.8, n)), 6), 1.0)
    ld = pd.DatetimeIndex(list_date)
    no_limit = (board == 2) | (board == 3) | ((board == 1) & (ld >= CHINEXT_REFORM)) | ((board == 0) & (ld >= MAIN_REGISTRATION))
    pop = np.where(no_limit, np.exp(rng.normal(np.log(1.0), 0.6, n)) - 1.0 + 0.3, 0.44)
    st0 = prelisted & (rng.random(n) < p.st_frac) & (board <= 1)
    # delistings: small ST names inside the window
    delist_idx = np.full(n, t_days, dtype=np.int64)
    n_del = int(round(p.delist_frac * n))
    if n_del and t_days > 150:
        small = np.argsort(cap0 + np.where(prelisted & (board <= 1), 0, 1e15))[: max(4 * n_del, n_del)]
        pick = rng.choice(small, size=n_del, replace=False)
        delist_idx[pick] = rng.integers(130, t_days, size=n_del)
    codes, is_sh = _codes(board, rng)
    names = np.array([_NAME_A[a] + _NAME_A[b] + _NAME_B[c] for a, b, c in zip(
        rng.integers(0, len(_NAME_A), n), rng.integers(0, len(_NAME_A), n), rng.integers(0, len(_NAME_B), n),
        strict=True)], dtype=object)
    industry = rng.integers(0, len(SW_L1), size=n)
    return Universe(
        code=codes, name=names, industry=industry, board=board, list_idx=list_idx.astype(np.int64),
        list_date=list_date, delist_idx=delist_idx, cap0=cap0, price0=price0, total_sh=total_sh,
        float_frac=float_frac, free_frac=free_frac, beta=beta, idio_vol=idio, quant_pref=quant_pref,
        adj0=adj0, ipo_pop=pop, st0=st0, no_limit_ipo=no_limit, is_sh=is_sh,
    )
