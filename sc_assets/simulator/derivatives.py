"""CFFEX stock-index futures (IF/IH/IC/IM): contract calendar and the basis process.

Contract months: the current month, the next month and the next two quarter months (Mar, Jun,
Sep, Dec) trade at once. Expiry = the third Friday of the contract month, moved to the next
session if that Friday is not a trading day (CFFEX rules). Codes ``IC2401.CFX``. IM listed
2022-07-22. Prices follow the annualised basis ``F = S * (1 + b * days / 365)`` with ``days``
the calendar days to expiry (min 1, METHODS §9) and ``b`` the product's basis process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sc_assets.partitions import sessions

PRODUCTS = {  # fut_code -> (underlying index, multiplier, first listing date)
    "IF": ("000300.SH", 300.0, "2010-04-16"),
    "IH": ("000016.SH", 300.0, "2015-04-16"),
    "IC": ("000905.SH", 200.0, "2015-04-16"),
    "IM": ("000852.SH", 200.0, "2022-07-22"),
}
BASE_OI = {"IF": 220_000.0, "IH": 90_000.0, "IC": 160_000.0, "IM": 130_000.0}
TICK = 0.2


def third_friday(year: int, month: int) -> pd.Timestamp:
    first = pd.Timestamp(year=year, month=month, day=1)
    offset = (4 - first.weekday()) % 7
    return first + pd.Timedelta(days=offset + 14)


def expiry(year: int, month: int) -> pd.Timestamp:
    """Third Friday, moved to the next SSE session if it is a holiday (inside the known calendar)."""
    fri = third_friday(year, month)
    s = sessions()
    if s[0] <= fri <= s[-1]:
        return s[s.searchsorted(fri)]
    return fri


@dataclass(frozen=True)
class Contract:
    fut_code: str
    ts_code: str
    year: int
    month: int
    expiry: pd.Timestamp


def _months(start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[int, int]]:
    out, y, m = [], start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append((y, m))
        m += 1
        if m == 13:
            y, m = y + 1, 1
    return out


def active_contracts(day: pd.Timestamp, expiries: dict[tuple[int, int], pd.Timestamp]) -> list[tuple[int, int]]:
    """(year, month) of the four contracts trading on ``day``: current, next, two next quarters."""
    y, m = day.year, day.month
    if day > expiries[(y, m)]:
        m += 1
        if m == 13:
            y, m = y + 1, 1
    cur = (y, m)
    nxt = (y + (m == 12), 1 if m == 12 else m + 1)
    out = [cur, nxt]
    qy, qm = nxt
    while len(out) < 4:
        qm += 1
        if qm == 13:
            qy, qm = qy + 1, 1
        if qm in (3, 6, 9, 12):
            out.append((qy, qm))
    return out


def expiry_table(start: pd.Timestamp, end: pd.Timestamp) -> dict[tuple[int, int], pd.Timestamp]:
    lo = start - pd.DateOffset(months=13)
    return {(y, m): expiry(y, m) for y, m in _months(lo, end + pd.DateOffset(months=13))}


def basis_process(days: pd.DatetimeIndex, p, rng: np.random.Generator) -> tuple[dict, dict, np.ndarray]:
    """Annualised basis per product per day and the wave-1 stress profile.

    Returns ``(basis, shock, stress)``: basis[fut] (T,) = mean + AR(1) + shock; shock[fut] (T,) the
    scripted wave-1/wave-2 component; stress (T,) in [0, 1], the IM shock relative to its peak.
    """
    t = len(days)
    prof = np.zeros(t)
    w1 = days.searchsorted(pd.Timestamp(p.wave1_date))
    if 0 <= w1 < t and days[min(w1, t - 1)] == pd.Timestamp(p.wave1_date):
        for k, v in ((-3, 0.25), (-2, 0.5), (-1, 0.75)):
            if w1 + k >= 0:
                prof[w1 + k] = v
        after = np.arange(w1, t)
        prof[w1:] = 0.5 ** ((after - w1) / p.basis_shock_halflife)
        w2 = days.searchsorted(pd.Timestamp(p.wave2_start))
        w2e = days.searchsorted(pd.Timestamp(p.wave2_end), side="right")
        if w2 < t:
            prof[w2:w2e] = np.maximum(prof[w2:w2e], 0.7)
            if w2e < t:
                after2 = np.arange(w2e, t)
                prof[w2e:] = np.maximum(prof[w2e:], 0.7 * 0.5 ** ((after2 - w2e + 1) / p.basis_shock_halflife))
    mean, peak = dict(p.basis_mean), dict(p.basis_shock)
    basis, shock = {}, {}
    for fut in PRODUCTS:
        eps = rng.standard_normal(t) * p.basis_vol
        x = np.zeros(t)
        for i in range(1, t):
            x[i] = p.basis_ar * x[i - 1] + eps[i]
        # keep the scripted shock dominant around wave 1: damp the AR noise there
        x = x * (1 - 0.8 * prof)
        shock[fut] = peak[fut] * prof
        basis[fut] = mean[fut] + x + shock[fut]
    return basis, shock, prof


def futures_tables(days: pd.DatetimeIndex, spot: dict[str, np.ndarray], basis: dict, p,
                   rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """fut_daily rows (raw units) and fut_basic reference rows for all contracts traded in ``days``."""
    exp = expiry_table(days[0], days[-1])
    rows = []
    seen: dict[str, dict] = {}
    prev: dict[str, tuple[float, float]] = {}
    t_n = len(days)
    for fut, (under, mult, listed) in PRODUCTS.items():
        s = spot[under]
        first = max(days.searchsorted(pd.Timestamp(listed)), 0)
        for i in range(first, t_n):
            d = days[i]
            act = active_contracts(d, exp)
            cur_dte = max((exp[act[0]] - d).days, 1)
            for slot, (y, m) in enumerate(act):
                code = f"{fut}{y % 100:02d}{m:02d}.CFX"
                e = exp[(y, m)]
                dte = max((e - d).days, 1)
                b = basis[fut][i] + rng.normal(0, 0.004) * (slot > 0)
                f = s[i] * (1 + b * dte / 365.0)
                close = np.round(f / TICK) * TICK
                settle = np.round(f * (1 + rng.normal(0, 0.0004)) / TICK) * TICK
                o = np.round(f * (1 + rng.normal(0, 0.004)) / TICK) * TICK
                hi = max(o, close) + TICK * np.ceil(abs(rng.normal(0, 0.004)) * f / TICK)
                lo = min(o, close) - TICK * np.ceil(abs(rng.normal(0, 0.004)) * f / TICK)
                if slot == 0:
                    w = 1.0 if cur_dte > 7 else 0.3 * cur_dte / 7
                elif slot == 1:
                    w = 0.5 if cur_dte > 7 else 1.1
                else:
                    w = 0.25 if slot == 2 else 0.12
                oi = np.round(BASE_OI[fut] * w * np.exp(rng.normal(0, 0.03)))
                vol = np.round(oi * 0.6 * np.exp(rng.normal(0, 0.2)))
                amount = np.round(vol * settle * mult / 1e4, 4)
                pc_, ps_ = prev.get(code, (np.nan, np.nan))
                rows.append((code, d, pc_, ps_, o, hi, lo, close, settle, vol, amount, oi))
                prev[code] = (close, settle)
                if code not in seen:
                    seen[code] = dict(ts_code=code, fut_code=fut, multiplier=mult, list_date=d, delist_date=e,
                                      underlying=under)
    daily = pd.DataFrame(rows, columns=["ts_code", "trade_date", "pre_close", "pre_settle", "open", "high", "low",
                                        "close", "settle", "vol", "amount", "oi"])
    for c in ("open", "high", "low", "close", "settle", "pre_close", "pre_settle"):
        daily[c] = daily[c].round(1)
    basic = pd.DataFrame(list(seen.values()))
    # contracts already trading at the first session were listed earlier, the session after the
    # expiry that made room for them: 2 months before a serial month, 8 before a quarter month
    first_day = days[0]
    for i, r in basic.iterrows():
        if r["list_date"] == first_day:
            y, m = 2000 + int(r["ts_code"][2:4]), int(r["ts_code"][4:6])
            back = pd.Timestamp(year=y, month=m, day=1) - pd.DateOffset(months=8 if m in (3, 6, 9, 12) else 2)
            listed = (third_friday(back.year, back.month) + pd.offsets.BDay(1)).normalize()
            basic.at[i, "list_date"] = min(listed, (first_day - pd.offsets.BDay(1)).normalize())
    return daily, basic

