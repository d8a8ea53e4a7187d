"""Micro-cap proxy derived from landed stock data vs an independent loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sc_assets import partitions
from sc_assets.feeds import read_landing_file
from sc_assets.pull.core import LandingWriter
from sc_assets.pull.microcap import BASE_LEVEL, MicrocapParams, derive_microcap

DAYS = list(partitions.trading_days_between("2024-02-05", "2024-02-08"))  # wave 2 week, 4 sessions


def _land(root, seed=7, n_stocks=12):
    rng = np.random.default_rng(seed)
    codes = [f"{600000 + i:06d}.SH" for i in range(n_stocks)]
    shares = rng.uniform(1e4, 5e5, n_stocks)  # 10,000 shares
    close = rng.uniform(3, 30, n_stocks)
    w = LandingWriter(root)
    sessions = [partitions.previous_trading_day(DAYS[0])] + DAYS
    truth = {}
    for k, day in enumerate(sessions):
        pre = close.copy()
        close = np.round(pre * (1 + rng.normal(-0.01, 0.04, n_stocks)), 2)
        traded = rng.random(n_stocks) > 0.1  # ~10% suspended
        bars = pd.DataFrame({"ts_code": codes, "trade_date": day, "open": pre, "high": np.maximum(pre, close),
                             "low": np.minimum(pre, close), "close": close, "pre_close": pre,
                             "vol": 1000.0, "amount": 500.0})[traded]
        close = np.where(traded, close, pre)
        w.write("stock_daily", day, bars)
        w.write("daily_basic", day, pd.DataFrame({
            "ts_code": codes, "trade_date": day, "close": close, "turnover_rate": 1.0, "turnover_rate_f": 1.0,
            "total_share": shares, "float_share": shares, "free_share": shares, "total_mv": close * shares,
            "circ_mv": close * shares}))
        st = np.zeros(n_stocks, dtype=bool)
        st[k % n_stocks] = True  # a different ST stock each day
        w.write("st_flags", day, pd.DataFrame({"ts_code": codes, "trade_date": day, "is_st": st}))
        truth[day] = (bars, close * shares, st)
    return codes, sessions, truth


def test_proxy_matches_an_independent_equal_weight_loop(data_dir):
    codes, sessions, truth = _land(data_dir)
    counts = derive_microcap(data_dir, DAYS, MicrocapParams(code="8841431.WI", n=4, min_listed_sessions=0))
    assert counts["written"] == len(DAYS)
    level = BASE_LEVEL
    for prev, day in zip(sessions[:-1], sessions[1:], strict=True):
        _, caps_prev, _ = truth[prev]
        bars, _, st = truth[day]
        order = [i for i in np.argsort(caps_prev, kind="stable") if not st[i]][:4]
        rets = []
        for i in order:
            row = bars[bars["ts_code"] == codes[i]]
            rets.append(0.0 if row.empty else float(row["close"].iloc[0] / row["pre_close"].iloc[0] - 1))
        expected_close = round(level * (1 + np.mean(rets)), 4)
        got = read_landing_file(data_dir / "landing" / "index_daily" / f"{day:%Y%m%d}.csv", "index_daily").to_pandas()
        got = got.set_index("ts_code").loc["8841431.WI"]
        assert got["pre_close"] == pytest.approx(level)
        assert got["close"] == pytest.approx(expected_close)
        level = expected_close
    # rerun: idempotent, existing index rows kept
    assert derive_microcap(data_dir, DAYS, MicrocapParams(n=4, min_listed_sessions=0))["unchanged"] == len(DAYS)


def test_proxy_keeps_vendor_index_rows_and_skips_days_without_inputs(data_dir):
    _land(data_dir)
    day = DAYS[1]
    LandingWriter(data_dir).write("index_daily", day, pd.DataFrame([{
        "ts_code": "000905.SH", "trade_date": day, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
        "pre_close": 1.0, "vol": 1.0, "amount": 1.0}]))
    derive_microcap(data_dir, [day], MicrocapParams(n=4, min_listed_sessions=0))
    got = read_landing_file(data_dir / "landing" / "index_daily" / f"{day:%Y%m%d}.csv", "index_daily").to_pandas()
    assert sorted(got["ts_code"]) == ["000905.SH", "8841431.WI"]
    later = partitions.next_trading_day(DAYS[-1])
    assert derive_microcap(data_dir, [later], MicrocapParams(n=4))["missing_inputs"] == 1
