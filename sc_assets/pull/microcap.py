"""A micro-cap index proxy derived from landed stock data (neither Tushare nor AkShare serves one).

The study's micro-cap series is Wind's 8841431.WI (METHODS.md §1: the 400 smallest stocks,
equal weight, frequent rebalance), a licensed Wind product. This module rebuilds the same
construction from the landing files the pull just wrote and adds it to
``landing/index_daily/<YYYYMMDD>.csv`` so the downstream tables that use the micro-cap
index have a real-data input. It is a proxy, not Wind's series: levels start at
``BASE_LEVEL`` on the first derived day and only their returns are meaningful.

Rule on trading day t (same as the simulator's micro-cap, ``simulator/market.py``):
constituents = the ``n`` stocks with the smallest total market cap at the close of the
previous session t-1 (``daily_basic.total_mv``), excluding ST stocks on t (``st_flags``,
when landed) and stocks listed fewer than ``min_listed_sessions`` sessions before t
(``stock_basic.list_date``, when landed); daily rebalanced, equal weight; index return =
mean of ``close/pre_close - 1`` over the constituents (a suspended constituent counts 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sc_assets import partitions
from sc_assets.feeds import read_landing_file
from sc_assets.pull.core import LandingWriter, ymd

BASE_LEVEL = 1000.0


@dataclass(frozen=True)
class MicrocapParams:
    code: str = "8841431.WI"  # the code the downstream defaults use for the micro-cap index
    n: int = 400  # constituents (Wind micro-cap: 400 smallest; METHODS.md §1)
    min_listed_sessions: int = 20  # skip new listings (their first days have no or wide limits)


def _landed(root: Path, feed: str, day) -> pd.DataFrame | None:
    landing = Path(root) / "landing" / feed
    for ext in (".csv", ".csv.gz", ".parquet"):
        p = landing / f"{ymd(day)}{ext}"
        if p.exists():
            return read_landing_file(p, feed).to_pandas().drop(columns="source_line")
    return None


def _latest_snapshot(root: Path, feed: str) -> pd.DataFrame | None:
    files = sorted((Path(root) / "landing" / feed).glob("*.csv"))
    return read_landing_file(files[-1], feed).to_pandas() if files else None


def microcap_return(bars: pd.DataFrame, caps_prev: pd.DataFrame, n: int,
                    exclude: set[str] | frozenset[str] = frozenset()) -> tuple[float, int, float, float]:
    """(equal-weight return, constituents, vol lots, amount 1,000 CNY) for one day."""
    cand = caps_prev[~caps_prev["ts_code"].isin(exclude) & caps_prev["total_mv"].notna()]
    members = cand.nsmallest(n, "total_mv", keep="first")["ts_code"]
    b = bars.set_index("ts_code").reindex(members)
    r = (b["close"] / b["pre_close"] - 1).fillna(0.0)  # suspended: no bar -> 0
    return float(r.mean()) if len(r) else float("nan"), int(len(members)), float(b["vol"].sum()), float(b["amount"].sum())


def derive_microcap(root: Path, days, params: MicrocapParams | None = None,
                    log=lambda m: None) -> dict[str, int]:
    """Add the proxy's row to ``landing/index_daily/<day>.csv`` for each of ``days`` with inputs."""
    p = params or MicrocapParams()
    root = Path(root)
    writer = LandingWriter(root)
    basic = _latest_snapshot(root, "stock_basic")
    counts = {"written": 0, "unchanged": 0, "missing_inputs": 0}
    for day in days:
        day = pd.Timestamp(day)
        prev = partitions.previous_trading_day(day)
        bars, caps = _landed(root, "stock_daily", day), _landed(root, "daily_basic", prev)
        if bars is None or caps is None:
            counts["missing_inputs"] += 1
            log(f"microcap {day.date()}: needs stock_daily {day.date()} and daily_basic {prev.date()}; skipped")
            continue
        exclude: set[str] = set()
        st = _landed(root, "st_flags", day)
        if st is not None:
            exclude |= set(st.loc[st["is_st"].astype(bool), "ts_code"])
        if basic is not None and p.min_listed_sessions > 0:
            try:
                cutoff = partitions.previous_trading_day(day, p.min_listed_sessions)
            except partitions.CalendarRangeError:
                cutoff = partitions.first_session()
            young = pd.to_datetime(basic["list_date"]) > cutoff
            exclude |= set(basic.loc[young, "ts_code"])
        ret, members, vol, amount = microcap_return(bars, caps, p.n, exclude)
        existing = _landed(root, "index_daily", day)
        prior = _landed(root, "index_daily", prev)
        pre = BASE_LEVEL
        if prior is not None and (prior["ts_code"] == p.code).any():
            pre = float(prior.loc[prior["ts_code"] == p.code, "close"].iloc[0])
        row = pd.DataFrame([{"ts_code": p.code, "trade_date": day, "open": np.nan, "high": np.nan, "low": np.nan,
                             "close": round(pre * (1 + ret), 4), "pre_close": pre, "vol": vol, "amount": amount}])
        frame = row if existing is None else pd.concat(
            [existing[existing["ts_code"] != p.code], row], ignore_index=True)
        counts[writer.write("index_daily", day, frame)] += 1
        log(f"microcap {day.date()}: {members} constituents, return {ret:+.4%}")
    return counts
