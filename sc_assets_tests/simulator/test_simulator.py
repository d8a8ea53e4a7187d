"""Simulator unit tests: determinism, calendar, file formats (through the project's feed readers)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from sc_assets.feeds.aliases import export_headers
from sc_assets.feeds.readers import read_landing_file
from sc_assets.feeds.schemas import FEEDS
from sc_assets.simulator import SimulationParams, simulate
from sc_assets.simulator.derivatives import active_contracts, expiry, expiry_table
from sc_assets.simulator.market import barra_size

# a tiny market around the 2024 Spring Festival: 60 stocks, 2024-01-02 .. 2024-02-29
TINY = SimulationParams(n_stocks=60, start="2024-01-02", end="2024-02-29", seed=7, gbk_every=10, extra_gbk_days=2)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    simulate(root, TINY)
    return root


def _read_all(root: Path, feed: str) -> pd.DataFrame:
    files = sorted((root / "landing" / feed).iterdir())
    return pd.concat([read_landing_file(f, feed).to_pandas() for f in files], ignore_index=True)


def test_same_seed_identical_bytes_different_seed_differs(tiny, tmp_path):
    again = tmp_path / "again"
    simulate(again, TINY)
    a, b = _digest(tiny), _digest(again)
    assert a == b and len(a) > 200
    other = tmp_path / "other"
    simulate(other, TINY.replace(seed=8))
    c = _digest(other)
    differ = [k for k in a if k.startswith("landing/stock_daily") and a[k] != c.get(k)]
    assert len(differ) == len([k for k in a if k.startswith("landing/stock_daily")])


def test_calendar_is_the_sse_sessions(tiny):
    xshg = xcals.get_calendar("XSHG")
    sessions = xshg.sessions_in_range("2024-01-02", "2024-02-29").strftime("%Y%m%d").tolist()
    for feed in ("stock_daily", "daily_basic", "adj_factor", "st_flags", "index_daily", "fut_daily", "etf_share"):
        days = sorted(p.name.split(".")[0] for p in (tiny / "landing" / feed).iterdir())
        assert days == sessions, feed
    assert not any("20240209" <= d <= "20240218" for d in sessions)  # Spring Festival
    # fund NAVs on each Monday-Sunday week's last session (2024-02-08 for the festival week)
    navs = sorted(p.name.split(".")[0] for p in (tiny / "landing" / "fund_nav").iterdir())
    s = pd.DatetimeIndex(xshg.sessions_in_range("2024-01-02", "2024-02-29"))
    week_last = pd.Series(s, index=s).groupby(s.to_period("W-SUN")).max()
    assert navs == [d.strftime("%Y%m%d") for d in week_last]
    assert "20240208" in navs
    # index_weight on the first session of each month
    assert sorted(p.name.split(".")[0] for p in (tiny / "landing" / "index_weight").iterdir()) == ["20240102",
                                                                                               "20240201"]


def test_every_landing_file_parses_and_gbk_exports_use_vendor_headers(tiny):
    gbk_files = 0
    for feed in FEEDS:
        for f in sorted((tiny / "landing" / feed).iterdir()):
            raw = f.read_bytes()
            try:
                raw.decode("utf-8")
                is_gbk = False
            except UnicodeDecodeError:
                is_gbk = True
            if is_gbk:
                gbk_files += 1
                header = raw.split(b"\n", 1)[0].decode("gbk").split(",")
                assert header == [export_headers(feed)[c][0] for c in FEEDS[feed].column_names]
            table = read_landing_file(f, feed)
            assert table.num_rows > 0
            assert set(FEEDS[feed].column_names) <= set(table.column_names)
    # every 10th session for 4 vendor feeds (+2 extra stock_daily/daily_basic days)
    assert gbk_files >= 4 * 3


def test_units_are_tushare_raw_on_both_formats(tiny):
    sd = _read_all(tiny, "stock_daily")
    # amount [1,000 CNY] * 1000 / (vol [lots] * 100) is a price inside [low, high]
    vwap = sd["amount"] * 1000 / (sd["vol"] * 100)
    assert ((vwap >= sd["low"] - 0.011) & (vwap <= sd["high"] + 0.011)).all()
    db = _read_all(tiny, "daily_basic")
    # total_mv [10,000 CNY] = close * total_share [10,000 shares]
    np.testing.assert_allclose(db["total_mv"], db["close"] * db["total_share"], rtol=1e-6)
    assert db["turnover_rate"].between(0, 100).all() and (db["free_share"] <= db["float_share"]).all()
    assert (db["turnover_rate_f"] >= db["turnover_rate"]).all()
    ir = _read_all(tiny, "index_weight")
    sums = ir.groupby(["index_code", "trade_date"])["weight"].sum()
    np.testing.assert_allclose(sums, 100.0, atol=1e-3)  # percent


def test_prices_respect_limits_and_pre_close_chain(tiny):
    sd = _read_all(tiny, "stock_daily").sort_values(["ts_code", "trade_date"])
    basic = _read_all(tiny, "stock_basic").set_index("ts_code")
    st = _read_all(tiny, "st_flags").set_index(["ts_code", "trade_date"])["is_st"]
    sd = sd.join(basic[["market", "list_date"]], on="ts_code")
    sd["is_st"] = st.reindex(pd.MultiIndex.from_frame(sd[["ts_code", "trade_date"]])).to_numpy()
    lim = np.select([sd["market"] == "bse", sd["market"].isin(["chinext", "star"]), sd["is_st"]],
                    [0.30, 0.20, 0.05], 0.10)
    seasoned = pd.to_datetime(sd["trade_date"]) > pd.to_datetime(sd["list_date"]) + pd.Timedelta(days=14)
    up = np.floor(sd["pre_close"] * (1 + lim) * 100 + 0.5) / 100
    dn = np.floor(sd["pre_close"] * (1 - lim) * 100 + 0.5) / 100
    ok = (sd["close"] <= up + 1e-9) & (sd["close"] >= dn - 1e-9) & (sd["high"] <= up + 1e-9)
    assert ok[seasoned].all()
    assert ((sd["low"] <= sd[["open", "close"]].min(axis=1)) & (sd["high"] >= sd[["open", "close"]].max(axis=1))).all()
    # the crash produced locked limit-down days (high = low = down limit)
    locked = seasoned & (sd["high"] == sd["low"]) & (sd["close"] == dn)
    assert locked.sum() > 0
    # pre_close = previous close, except on ex-right days, where adj_factor changes
    adj = _read_all(tiny, "adj_factor").set_index(["ts_code", "trade_date"])["adj_factor"]
    sd["adj"] = adj.reindex(pd.MultiIndex.from_frame(sd[["ts_code", "trade_date"]])).to_numpy()
    prev_close = sd.groupby("ts_code")["close"].shift()
    prev_adj = sd.groupby("ts_code")["adj"].shift()
    same = prev_close.notna() & (sd["adj"] == prev_adj)
    np.testing.assert_allclose(sd.loc[same, "pre_close"], prev_close[same])
    ex = prev_close.notna() & (sd["adj"] != prev_adj)
    np.testing.assert_allclose(sd.loc[ex, "adj"] / prev_adj[ex], prev_close[ex] / sd.loc[ex, "pre_close"], rtol=1e-5)


def test_parquet_format_carries_the_same_canonical_values(tiny, tmp_path):
    pq_root = tmp_path / "pq"
    simulate(pq_root, TINY.replace(output_format="parquet"))
    for feed in ("stock_daily", "daily_basic", "adj_factor", "st_flags"):
        exts = {p.suffix for p in (pq_root / "landing" / feed).iterdir()}
        assert ".parquet" in exts
        a = _read_all(tiny, feed).drop(columns=["source_line"], errors="ignore")
        b = _read_all(pq_root, feed).drop(columns=["source_line"], errors="ignore")
        cols = FEEDS[feed].column_names
        pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


def test_futures_calendar_third_friday_and_four_contracts(tiny):
    xshg = xcals.get_calendar("XSHG")
    for y, m in [(2024, 1), (2024, 2), (2023, 12), (2022, 10)]:
        fri = pd.date_range(f"{y}-{m:02d}-01", periods=1, freq="WOM-3FRI")[0]
        assert expiry(y, m) == xshg.date_to_session(fri, direction="next").tz_localize(None)
    # 2024-02-16 (third Friday) is in the Spring Festival: the contract expires on the next session
    assert expiry(2024, 2) == pd.Timestamp("2024-02-19")
    exp = expiry_table(pd.Timestamp("2024-01-02"), pd.Timestamp("2024-02-29"))
    assert active_contracts(pd.Timestamp("2024-01-19"), exp) == [(2024, 1), (2024, 2), (2024, 3), (2024, 6)]
    assert active_contracts(pd.Timestamp("2024-01-22"), exp) == [(2024, 2), (2024, 3), (2024, 6), (2024, 9)]
    fut = _read_all(tiny, "fut_daily")
    per_day = fut.assign(p=fut["ts_code"].str[:2]).groupby(["trade_date", "p"]).size()
    assert (per_day == 4).all()
    basic = _read_all(tiny, "fut_basic").set_index("ts_code")
    assert (pd.to_datetime(fut["trade_date"]) <= pd.to_datetime(basic.loc[fut["ts_code"], "delist_date"]).to_numpy()).all()
    assert basic.loc["IM2402.CFX", "underlying"] == "000852.SH" and basic.loc["IC2402.CFX", "multiplier"] == 200


def test_barra_size_matches_methods_definition():
    rng = np.random.default_rng(0)
    cap = np.exp(rng.normal(23, 1.2, 500))
    elig = np.ones(500, dtype=bool)
    z, nl = barra_size(cap, elig)
    w = cap / cap.sum()
    assert abs((w * z).sum()) < 1e-12 and abs(z.std() - 1) < 1e-12  # cap-weighted mean 0, unit std
    assert abs((w * nl).sum()) < 1e-12 and abs(nl.std() - 1) < 1e-12
    # NLSIZE is the residual of size^3 on size under sqrt(cap) weights: (near) zero weighted
    # correlation with size (only the +-3 clip and the re-standardisation perturb it)
    sw = np.sqrt(cap)

    def wcorr(a, b):
        a, b = a - np.average(a, weights=sw), b - np.average(b, weights=sw)
        return np.average(a * b, weights=sw) / np.sqrt(np.average(a * a, weights=sw) * np.average(b * b, weights=sw))

    assert abs(wcorr(z, nl)) < 0.1
    assert abs(wcorr(z, z**3)) > 0.7  # while the raw cube is strongly size-correlated


def test_resimulating_removes_own_stale_files_only(tmp_path):
    p = SimulationParams(n_stocks=30, start="2024-01-02", end="2024-01-12", seed=3)
    simulate(tmp_path, p)
    user_file = tmp_path / "landing" / "stock_daily" / "20231229.csv"
    user_file.write_text("ts_code,trade_date\n")
    assert (tmp_path / "landing" / "stock_daily" / "20240112.csv").exists()
    simulate(tmp_path, p.replace(end="2024-01-09"))
    days = sorted(f.name for f in (tmp_path / "landing" / "stock_daily").iterdir())
    assert days == ["20231229.csv", "20240102.csv", "20240103.csv", "20240104.csv", "20240105.csv",
                    "20240108.csv", "20240109.csv"]
    assert user_file.exists()
