"""Staging and marts models on the hand-made raw lake: units, de-duplication, limits, basis, flows, NAVs."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest

from sc_assets_tests.sql.rawlake import BARS, SHARES, STOCKS


def _read(wh, layer, name):
    df = wh.read(layer, name)
    if "trade_date" in df.columns:
        df["trade_date"] = pd.to_datetime(df["trade_date"]).dt.strftime("%Y-%m-%d")
    return df


def test_staging_units_are_canonical(built):
    wh, _ = built
    raw = wh.read("raw", "daily_basic", days=["2024-01-02"]).set_index("ts_code")
    stg = _read(wh, "staging", "stg_daily_basic").query("trade_date == '2024-01-02'").set_index("ts_code")
    assert np.allclose(stg.total_share, raw.total_share.loc[stg.index] * 1e4)
    assert np.allclose(stg.total_share, stg.index.map(SHARES).astype(float))
    assert np.allclose(stg.total_mv, raw.total_mv.loc[stg.index] * 1e4)
    assert np.allclose(stg.turnover, 0.015) and np.allclose(stg.turnover_f, 0.03)
    sd = _read(wh, "staging", "stg_stock_daily").set_index(["ts_code", "trade_date"])
    row = sd.loc[("601000.SH", "2024-01-02")]
    assert row.vol == 100_000 and row.amount == pytest.approx(1_000 * 7.05 / 10 * 1_000)
    iw = _read(wh, "staging", "stg_index_weight")
    assert np.allclose(iw.groupby(["index_code", "trade_date"]).weight.sum(), 1.0)
    etf = _read(wh, "staging", "stg_etf_share").set_index(["ts_code", "trade_date"])
    assert etf.loc[("510500.SH", "2023-12-29"), "fd_share"] == 1e9
    fut = _read(wh, "staging", "stg_fut_daily")
    assert np.allclose(fut.amount, 5e8)
    fb = _read(wh, "staging", "stg_fut_basic").set_index("ts_code")
    assert fb.loc["IC2401.CFX", "expiry_date"] == date(2024, 1, 19)


def test_staging_keeps_the_row_of_the_latest_landed_file(built):
    wh, _ = built
    raw = wh.read("raw", "stock_daily", days=["2024-01-02"])
    assert (raw.ts_code == "600000.SH").sum() == 2  # both files are in raw
    stg = _read(wh, "staging", "stg_stock_daily")
    row = stg[(stg.ts_code == "600000.SH") & (stg.trade_date == "2024-01-02")]
    assert len(row) == 1
    assert row.close.item() == 10.40 and row.source_file.item().endswith("20240102.csv.gz")
    assert not stg.duplicated(["ts_code", "trade_date"]).any()


def test_board_from_market_field_or_code_pattern(built):
    wh, _ = built
    sb = _read(wh, "staging", "stg_stock_basic").set_index("ts_code")
    assert sb.board.to_dict() == {
        "600000.SH": "main", "000001.SZ": "main", "300750.SZ": "chinext", "688001.SH": "star",
        "430047.BJ": "bse", "600001.SH": "main", "601000.SH": "main",  # 601000: market 'CDR' -> code rule
    }


# --- price limits: an independent implementation of METHODS.md §1 -----------------------------
def _limits(board, is_st, days_listed, list_date, trade_date):
    """(up, down) fractions or None (no limit)."""
    reg = (board == "chinext" and list_date >= date(2020, 8, 24)) or board in ("star", "bse") or (
        board == "main" and list_date >= date(2023, 4, 10))
    if days_listed <= 5 and reg:
        return None
    if days_listed == 1 and board in ("main", "chinext"):
        return 0.44, 0.36
    if is_st and (board == "main" or (board == "chinext" and trade_date < date(2020, 8, 24))):
        return 0.05, 0.05
    pct = {"main": 0.10, "star": 0.20, "bse": 0.30,
           "chinext": 0.20 if trade_date >= date(2020, 8, 24) else 0.10}[board]
    return pct, pct


def _round2(x: float) -> float:
    return float(Decimal(str(x)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def test_limit_prices_and_flags_match_an_independent_oracle(built):
    wh, _ = built
    p = _read(wh, "marts", "stock_daily_panel")
    checked = 0
    for r in p.itertuples():
        td = date.fromisoformat(r.trade_date)
        lim = _limits(r.board, r.is_st, r.days_listed, r.list_date, td)
        if lim is None:
            assert pd.isna(r.limit_pct) and pd.isna(r.up_limit) and not r.is_limit_up
            continue
        assert r.limit_pct == pytest.approx(lim[0])
        if r.is_suspended:
            assert pd.isna(r.up_limit) and pd.isna(r.close) and not (r.is_limit_up or r.is_locked)
            continue
        up = _round2(float(Decimal(str(r.pre_close)) * (1 + Decimal(str(lim[0])))))
        down = _round2(float(Decimal(str(r.pre_close)) * (1 - Decimal(str(lim[1])))))
        assert (r.up_limit, r.down_limit) == (up, down), r
        assert r.is_limit_up == (r.close >= up - 0.005)
        assert r.is_limit_down == (r.close <= down + 0.005)
        assert r.is_locked == (r.high == r.low and (abs(r.high - up) < 0.005 or abs(r.low - down) < 0.005))
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    "ts_code, day, expected",
    [
        ("600000.SH", "2024-01-03", dict(limit_pct=0.10, up_limit=11.44, is_limit_up=True, is_locked=True)),
        ("600000.SH", "2024-01-02", dict(limit_pct=0.10, up_limit=11.06, down_limit=9.05, is_limit_up=False)),
        ("000001.SZ", "2024-01-02", dict(is_st=True, limit_pct=0.05, up_limit=5.25, is_limit_up=True, is_locked=False)),
        ("000001.SZ", "2024-01-03", dict(is_st=True, down_limit=4.99, is_limit_down=True)),
        ("000001.SZ", "2023-12-29", dict(is_st=False, limit_pct=0.10)),
        ("300750.SZ", "2024-01-02", dict(board="chinext", limit_pct=0.20, up_limit=181.2, is_limit_up=True)),
        ("688001.SH", "2024-01-02", dict(board="star", days_listed=1, limit_pct=None, is_limit_up=False)),
        ("688001.SH", "2024-01-03", dict(days_listed=2, limit_pct=None, ret=-0.38)),
        ("430047.BJ", "2024-01-02", dict(board="bse", limit_pct=0.30, up_limit=10.4, is_limit_up=True)),
        ("600001.SH", "2024-01-02", dict(is_suspended=True, close=None, ret=None, total_mv=None, vol=None)),
        ("600001.SH", "2024-01-03", dict(is_suspended=False, is_resumption=True, ret=0.10, is_limit_up=True)),
        ("601000.SH", "2024-01-02", dict(adj_close=7.05 * 2.5, board="main", is_resumption=False)),
    ],
)
def test_panel_rows_table_driven(built, ts_code, day, expected):
    wh, _ = built
    p = _read(wh, "marts", "stock_daily_panel").set_index(["ts_code", "trade_date"])
    row = p.loc[(ts_code, day)]
    for col, want in expected.items():
        got = row[col]
        if want is None:
            assert pd.isna(got), col
        elif isinstance(want, float):
            assert got == pytest.approx(want), col
        else:
            assert got == want, col


def test_panel_universe_caps_and_returns(built):
    wh, _ = built
    p = _read(wh, "marts", "stock_daily_panel")
    # one row per listed stock-day: 688001 only from its listing day
    assert len(p) == len(BARS) + 1  # + the suspended 600001.SH day
    assert not p.duplicated(["ts_code", "trade_date"]).any()
    assert p[p.ts_code == "688001.SH"].trade_date.min() == "2024-01-02"
    live = p[~p.is_suspended]
    shares = live.ts_code.map(SHARES)
    assert np.allclose(live.total_mv, live.close * shares)
    assert np.allclose(live.float_mv, live.close * shares * 0.8)
    assert np.allclose(live.free_float_mv, live.close * shares * 0.5)
    assert np.allclose(live.ret, live.close / live.pre_close - 1)
    names = dict(zip(STOCKS.ts_code, STOCKS.name, strict=True))
    assert (p.name == p.ts_code.map(names)).all()
    assert (p[p.ts_code == "688001.SH"].days_listed.tolist() == [1, 2])


def test_index_panel(built):
    wh, _ = built
    ix = _read(wh, "marts", "index_daily_panel")
    assert ix.groupby("trade_date").size().eq(5).all()
    assert np.allclose(ix.ret, ix.close / ix.pre_close - 1)
    assert np.allclose(ix.amount, 1e10)


def test_futures_basis_panel(built):
    wh, _ = built
    f = _read(wh, "marts", "futures_basis_panel").set_index(["ts_code", "trade_date"])
    ix = _read(wh, "marts", "index_daily_panel").set_index(["index_code", "trade_date"]).close
    r = f.loc[("IM2401.CFX", "2024-01-02")]
    days = (date(2024, 1, 19) - date(2024, 1, 2)).days
    spot = ix.loc[("000852.SH", "2024-01-02")]
    assert r.days_to_expiry == days and r.spot_close == spot
    assert r.basis == pytest.approx(5601.0 - spot)
    assert r.basis_ann == pytest.approx((5601.0 / spot - 1) * 365 / days)
    # expiry from the contract code when fut_basic lacks it: third Friday of March 2024
    assert f.loc[("IM2403.CFX", "2024-01-02"), "expiry_date"] == date(2024, 3, 15)
    # main contract: largest oi (IC2402); IM tie on oi -> nearer expiry (IM2401)
    main = f[f.is_main].reset_index().groupby("trade_date").ts_code.apply(sorted).tolist()
    assert main == [["IC2402.CFX", "IM2401.CFX"]] * 3
    assert (f.expiry_date >= pd.to_datetime(f.index.get_level_values(1)).date).all()


def test_etf_flow_panel(built):
    wh, _ = built
    e = _read(wh, "marts", "etf_flow_panel").set_index(["ts_code", "trade_date"])
    assert pd.isna(e.loc[("510500.SH", "2023-12-29"), "share_change"])  # first row of the ETF
    r = e.loc[("510500.SH", "2024-01-02")]
    assert r.share_change == 1e7 and r.net_inflow == pytest.approx(1e7 * 5.1)
    assert e.loc[("512100.SH", "2024-01-03"), "net_inflow"] == pytest.approx(-5e6 * 2.0)


def test_fund_nav_panel(built):
    wh, _ = built
    n = _read(wh, "marts", "fund_nav_panel").set_index(["fund_id", "trade_date"])
    r = n.loc[("F1", "2024-01-03")]
    assert r.fund_ret == pytest.approx(1.22 / 1.20 - 1)
    assert r.bench_close == 5302.0 and r.bench_ret == pytest.approx(5302.0 / 5300.0 - 1)
    assert r.excess_ret == pytest.approx(r.fund_ret - r.bench_ret)
    neutral = n.loc[("F2", "2024-01-03")]
    assert pd.isna(neutral.bench_ret) and neutral.fund_ret == pytest.approx(1.07 / 1.05 - 1)


def test_etf_flow_by_index_sums_the_panel(built):
    wh, _ = built
    e = _read(wh, "marts", "etf_flow_panel")
    by = _read(wh, "marts", "etf_flow_by_index").set_index(["index_code", "trade_date"])
    oracle = e.groupby(["index_code", "trade_date"]).net_inflow.sum(min_count=0)
    assert np.allclose(by.net_inflow.loc[oracle.index], oracle.fillna(0))
    assert by.loc[("000905.SH", "2024-01-02"), "etf_aum"] == pytest.approx(1.01e9 * 5.1)
    assert by.loc[("000905.SH", "2023-12-29"), "n_etfs_with_flow"] == 0
