"""A tiny hand-made raw lake (raw units, source columns) for SQL-model tests.

Days: 2023-12-29 (lookback day), 2024-01-02, 2024-01-03. Stocks cover every board and rule:

=============  ========  ===========================================================
ts_code        board     what it exercises
=============  ========  ===========================================================
600000.SH      main      plain +-10%; limit-up and locked (high = low = up limit) on 01-03
000001.SZ      main      ST (+-5%) on 01-02/01-03; limit-down close on 01-03
300750.SZ      chinext   +-20%
688001.SH      star      listed 2024-01-02: no limit in the first five sessions
430047.BJ      bse       +-30%
600001.SH      main      suspended 01-02 (no bar), resumes 01-03 (is_resumption)
601000.SH      main      old listing (2010): days_listed counted from before the calendar
=============  ========  ===========================================================

Duplicates: stock_daily 2024-01-02 has 600000.SH in two files; the later-mtime file
(``landing/stock_daily/20240102.csv.gz``) must win in staging.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from sc_assets.resources import Warehouse

D0, D1, D2 = date(2023, 12, 29), date(2024, 1, 2), date(2024, 1, 3)
DAYS = ["2023-12-29", "2024-01-02", "2024-01-03"]


def _src(df: pd.DataFrame, feed: str, day: date, mtime: int = 1_700_000_000_000_000_000) -> pd.DataFrame:
    out = df.copy()
    out["source_file"] = f"landing/{feed}/{day:%Y%m%d}.csv"
    out["source_line"] = range(2, len(out) + 2)
    out["source_mtime_ns"] = mtime
    return out


STOCKS = pd.DataFrame({
    "ts_code": ["600000.SH", "000001.SZ", "300750.SZ", "688001.SH", "430047.BJ", "600001.SH", "601000.SH"],
    "name": ["PuFa", "*ST PingAn", "CATL", "NewStar", "BJ Co", "Suspendo", "Oldie"],
    "industry": ["Banks", "Banks", "Power Equipment", "Electronics", "Machinery", "Steel", "Transport"],
    "market": ["main", "主板", "创业板", "star", "北交所", "main", "CDR"],
    "list_date": [date(1999, 11, 10), date(1991, 4, 3), date(2018, 6, 11), D1, date(2020, 7, 27),
                  date(2005, 1, 1), date(2010, 3, 1)],
    "delist_date": [None] * 7,
})

# (ts_code, day) -> (pre_close, open, high, low, close)
BARS = {
    ("600000.SH", D0): (10.00, 10.0, 10.2, 9.9, 10.05),
    ("600000.SH", D1): (10.05, 10.1, 10.5, 10.0, 10.40),
    ("600000.SH", D2): (10.40, 11.44, 11.44, 11.44, 11.44),     # locked limit-up: 10.40 x 1.1
    ("000001.SZ", D0): (5.00, 5.0, 5.1, 4.9, 5.00),
    ("000001.SZ", D1): (5.00, 5.0, 5.25, 4.9, 5.25),            # ST +5% = 5.25 -> limit-up (not locked)
    ("000001.SZ", D2): (5.25, 5.1, 5.2, 4.99, 4.99),           # 5.25 x 0.95 = 4.9875 -> 4.99 limit-down
    ("300750.SZ", D0): (150.0, 150.0, 152.0, 149.0, 151.0),
    ("300750.SZ", D1): (151.0, 152.0, 181.2, 151.0, 181.2),    # +20% = 181.2 limit-up
    ("300750.SZ", D2): (181.2, 180.0, 185.0, 170.0, 175.0),
    ("688001.SH", D1): (20.0, 40.0, 60.0, 35.0, 50.0),         # listing day +150%: no limit
    ("688001.SH", D2): (50.0, 48.0, 55.0, 30.0, 31.0),         # day 2: -38%, still no limit
    ("430047.BJ", D0): (8.0, 8.0, 8.1, 7.9, 8.0),
    ("430047.BJ", D1): (8.0, 8.0, 10.4, 8.0, 10.4),            # +30% = 10.4 limit-up
    ("430047.BJ", D2): (10.4, 10.0, 10.5, 9.0, 9.5),
    ("600001.SH", D0): (3.0, 3.0, 3.1, 2.9, 3.0),
    ("600001.SH", D2): (3.0, 3.1, 3.3, 3.05, 3.3),             # resumption after a 1-day suspension: +10%
    ("601000.SH", D0): (7.0, 7.0, 7.1, 6.9, 7.0),
    ("601000.SH", D1): (7.0, 7.0, 7.1, 6.9, 7.05),
    ("601000.SH", D2): (7.05, 7.0, 7.1, 6.9, 7.0),
}
SHARES = {"600000.SH": 2.9e10, "000001.SZ": 1.9e10, "300750.SZ": 4.4e9, "688001.SH": 1.0e8,
          "430047.BJ": 5.0e7, "600001.SH": 3.0e8, "601000.SH": 1.0e9}

INDICES = {"000300.SH": 3400.0, "000905.SH": 5300.0, "000852.SH": 5700.0, "932000.CSI": 2400.0,
           "000016.SH": 2300.0}


def stock_daily(day: date) -> pd.DataFrame:
    rows = [
        {"ts_code": c, "trade_date": d, "open": o, "high": h, "low": lo, "close": cl, "pre_close": pc,
         "vol": 1_000.0, "amount": 1_000.0 * cl / 10}  # 1,000 lots; amount in 1,000 CNY
        for (c, d), (pc, o, h, lo, cl) in BARS.items() if d == day
    ]
    return pd.DataFrame(rows)


def daily_basic(day: date) -> pd.DataFrame:
    bars = stock_daily(day)
    return pd.DataFrame({
        "ts_code": bars["ts_code"], "trade_date": bars["trade_date"], "close": bars["close"],
        "turnover_rate": 1.5, "turnover_rate_f": 3.0,
        "total_share": bars["ts_code"].map(SHARES) / 1e4,
        "float_share": bars["ts_code"].map(SHARES) / 1e4 * 0.8,
        "free_share": bars["ts_code"].map(SHARES) / 1e4 * 0.5,
        "total_mv": bars["close"] * bars["ts_code"].map(SHARES) / 1e4,
        "circ_mv": bars["close"] * bars["ts_code"].map(SHARES) / 1e4 * 0.8,
    })


def build_raw_lake(wh: Warehouse) -> None:
    """Write every raw feed for DAYS into ``wh`` (raw units, with source columns)."""
    for i, day in enumerate((D0, D1, D2)):
        key = DAYS[i]
        sd = _src(stock_daily(day), "stock_daily", day)
        if day == D1:  # a re-delivered file for the same day, landed later, with a corrected close
            again = sd[sd.ts_code == "600000.SH"].copy()
            sd.loc[sd.ts_code == "600000.SH", "close"] = 10.30  # stale value: must lose
            again["source_file"] = "landing/stock_daily/20240102.csv.gz"
            again["source_mtime_ns"] = sd["source_mtime_ns"].iloc[0] + 10**9
            sd = pd.concat([sd, again], ignore_index=True)
        wh.write_partitions("raw", "stock_daily", sd, days=[key])
        wh.write_partitions("raw", "daily_basic", _src(daily_basic(day), "daily_basic", day), days=[key])
        bars = stock_daily(day)
        adj = pd.DataFrame({"ts_code": bars.ts_code, "trade_date": day, "adj_factor": 1.0})
        adj.loc[adj.ts_code == "601000.SH", "adj_factor"] = 2.5
        wh.write_partitions("raw", "adj_factor", _src(adj, "adj_factor", day), days=[key])
        st = pd.DataFrame({"ts_code": ["000001.SZ"], "trade_date": [day], "is_st": [day != D0]})
        wh.write_partitions("raw", "st_flags", _src(st, "st_flags", day), days=[key])
        idx = pd.DataFrame([
            {"ts_code": c, "trade_date": day, "open": v, "high": v * 1.01 + i, "low": v * 0.99,
             "close": v + i, "pre_close": v + i - 1, "vol": 1e6, "amount": 1e7}
            for c, v in INDICES.items()
        ])
        wh.write_partitions("raw", "index_daily", _src(idx, "index_daily", day), days=[key])
        iw = pd.DataFrame({"index_code": "000905.SH", "con_code": ["600000.SH", "000001.SZ"],
                           "trade_date": day, "weight": [60.0, 40.0]})
        wh.write_partitions("raw", "index_weight", _src(iw, "index_weight", day), days=[key])
        fut = pd.DataFrame([
            {"ts_code": code, "trade_date": day, "pre_close": None, "pre_settle": None, "open": None,
             "high": None, "low": None, "close": px, "settle": px, "vol": 100.0, "amount": 5e4, "oi": oi}
            for code, px, oi in [("IC2401.CFX", 5250.0 + i, 9000.0), ("IC2402.CFX", 5200.0 + i, 12000.0),
                                 ("IM2401.CFX", 5600.0 + i, 8000.0), ("IM2403.CFX", 5500.0, 8000.0)]
        ])
        wh.write_partitions("raw", "fut_daily", _src(fut, "fut_daily", day), days=[key])
        etf = pd.DataFrame({"ts_code": ["510500.SH", "512100.SH"], "trade_date": day,
                            "fd_share": [100_000.0 + 1_000 * i, 50_000.0 - 500 * i],
                            "close": [5.0 + 0.1 * i, 2.0], "index_code": ["000905.SH", "000852.SH"]})
        wh.write_partitions("raw", "etf_share", _src(etf, "etf_share", day), days=[key])
        nav_rows = [] if day == D1 else [
            {"fund_id": f, "nav_date": day, "trade_date": day, "name": f"Fund {f}", "strategy": s,
             "benchmark": b, "manager": "M1", "manager_aum_bucket": ">=10bn", "adj_nav": nav + 0.01 * i}
            for f, s, b, nav in [("F1", "index_enhancement", "000905.SH", 1.20),
                                 ("F2", "market_neutral", None, 1.05)]
        ]
        nav = pd.DataFrame(nav_rows, columns=["fund_id", "nav_date", "trade_date", "name", "strategy",
                                              "benchmark", "manager", "manager_aum_bucket", "adj_nav"])
        wh.write_partitions("raw", "fund_nav", _src(nav, "fund_nav", day), days=[key])
    wh.write_table("raw", "stock_basic", _src(STOCKS, "stock_basic", D2))
    fb = pd.DataFrame({
        "ts_code": ["IC2401.CFX", "IC2402.CFX", "IM2401.CFX"],   # IM2403 deliberately missing
        "fut_code": ["IC", "IC", "IM"], "multiplier": [200.0, 200.0, 200.0],
        "list_date": [date(2023, 5, 22), date(2023, 12, 18), date(2023, 5, 22)],
        "delist_date": [date(2024, 1, 19), date(2024, 2, 23), date(2024, 1, 19)],
        "underlying": ["000905.SH", "000905.SH", "000852.SH"],
    })
    wh.write_table("raw", "fut_basic", _src(fb, "fut_basic", D2))
