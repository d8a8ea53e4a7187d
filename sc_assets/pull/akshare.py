"""AkShare adapter: free AkShare endpoints (Chinese column names, vendor units) -> canonical
landing files in Tushare Pro field names and units (``sc_assets/feeds/schemas.py``).

| feed | AkShare function(s) | conversion |
|---|---|---|
| stock_daily | ``stock_zh_a_hist`` (per stock, adjust="") | 成交量 lots as is; 成交额 CNY / 1,000; pre_close = 收盘 - 涨跌额 |
| adj_factor | ``stock_zh_a_hist`` (adjust="hfq") / raw | adj_factor = back-adjusted close / raw close |
| daily_basic | ``stock_zh_a_daily`` (Sina, per stock) + ``stock_individual_info_em`` | shares / 10,000; caps = close x shares / 10,000; turnover x 100 |
| stock_basic | ``stock_info_a_code_name`` + ``stock_individual_info_em`` (per stock) | board from code; 上市时间 -> list_date |
| st_flags | ``stock_info_a_code_name`` (current names) | is_st = current name contains "ST" |
| index_daily | ``index_zh_a_hist`` (per index) | as stock_daily |
| index_weight | ``index_stock_cons_weight_csindex`` (latest CSI snapshot) | 权重 percent as is |
| fut_daily | ``get_futures_daily`` (market="CFFEX") | turnover taken as 10,000 CNY (CFFEX report unit) |
| fut_basic | derived from ``get_futures_daily`` contracts | expiry = 3rd Friday rule; multiplier per product |
| etf_share | ``fund_etf_scale_sse`` (per day, SSE) + ``fund_scale_daily_szse`` (6-month windows, SZSE) + ``fund_etf_hist_em`` | 基金份额 units / 10,000 |

Limits (documented in docs/REAL_DATA.md): AkShare has no history of total/free-float share
counts (today's total share count is applied to past days; free float = float), no ST history
(today's names) and only the latest CSI weight snapshot.
"""

from __future__ import annotations

import importlib

import pandas as pd

from sc_assets import partitions
from sc_assets.pull.base import FUT_CODES, Adapter
from sc_assets.pull.core import (
    MissingExtraError,
    ShapeChangedError,
    board_of,
    normalize_code,
    require_fields,
    session_on_or_before,
    to_ts,
    ymd,
)
from sc_assets.pull.tushare import _concat

_EXCHANGE_NAMES = {"上海证券交易所": "SH", "深圳证券交易所": "SZ", "北京证券交易所": "BJ"}


class AkshareClient:
    """Real AkShare client: ``client("stock_zh_a_hist", symbol=..., ...)`` calls ``akshare.<name>``.

    ``akshare`` (``pip install 'sc_assets[akshare]'``) is imported on first use.
    """

    def __init__(self):
        self._ak = None

    def __call__(self, api_name: str, **params) -> pd.DataFrame:
        if self._ak is None:
            try:
                self._ak = importlib.import_module("akshare")
            except ImportError as exc:
                raise MissingExtraError("the akshare package is not installed: pip install 'sc_assets[akshare]'") from exc
        fn = getattr(self._ak, api_name, None)
        if fn is None:
            raise ShapeChangedError(f"akshare has no function {api_name!r} (renamed upstream?); installed "
                                    f"akshare {getattr(self._ak, '__version__', '?')}")
        return fn(**params)


def _market_prefix(ts_code: str) -> str:
    num, _, suf = ts_code.partition(".")
    return suf.lower() + num


class AkshareAdapter(Adapter):
    source = "akshare"
    plans = {
        "stock_daily": "range",
        "adj_factor": "range",
        "daily_basic": "range",
        "index_daily": "range",
        "index_weight": "range",
        "fut_daily": "range",
        "etf_share": "range",
        "st_flags": "range",
        "stock_basic": "snapshot",
        "fut_basic": "snapshot",
    }
    land_any_date = {"index_weight"}  # only the latest snapshot exists: land it on its own date

    def q(self, api: str, required: list[str], **params) -> pd.DataFrame:
        df = self.call(api, **params)
        if df is None or (df.empty and not len(df.columns)):
            return pd.DataFrame(columns=required)
        require_fields(df, required, api=api, source="akshare")
        return df

    # ---------------------------------------------------------------- universe and reference

    def universe(self) -> pd.DataFrame:
        """ts_code, name of every current A-share (or of ``--codes``)."""
        def make():
            df = self.q("stock_info_a_code_name", ["code", "name"])
            df = pd.DataFrame({"ts_code": df["code"].map(normalize_code), "name": df["name"].astype("str")})
            if self.options.codes:
                keep = {normalize_code(c) for c in self.options.codes}
                df = df[df["ts_code"].isin(keep)]
            return df.reset_index(drop=True)
        return self.cached("universe", make)

    def info(self, ts_code: str) -> dict[str, object]:
        """stock_individual_info_em item/value pairs of one stock (cached)."""
        def make():
            df = self.q("stock_individual_info_em", ["item", "value"], symbol=ts_code.split(".")[0])
            d = dict(zip(df["item"], df["value"], strict=True))
            missing = [k for k in ("总股本", "行业", "上市时间") if k not in d]
            if missing:
                raise ShapeChangedError(f"akshare stock_individual_info_em: response shape changed: "
                                        f"missing item(s) {missing}; got {list(d)}")
            return d
        return self.cached(f"info:{ts_code}", make)

    def fetch_stock_basic_snapshot(self, days) -> pd.DataFrame:
        rows = []
        for ts_code, name in self.universe().itertuples(index=False):
            info = self.info(ts_code)
            rows.append({"ts_code": ts_code, "name": name, "industry": str(info["行业"]) or "unknown",
                         "market": board_of(ts_code), "list_date": info["上市时间"], "delist_date": None})
        return pd.DataFrame(rows, columns=["ts_code", "name", "industry", "market", "list_date", "delist_date"])

    def fetch_st_flags_range(self, days) -> pd.DataFrame:
        u = self.universe()
        st = u["name"].str.upper().str.contains("ST")
        return _concat([pd.DataFrame({"ts_code": u["ts_code"], "trade_date": pd.Timestamp(d), "is_st": st})
                        for d in days], ["ts_code", "trade_date", "is_st"])

    # ---------------------------------------------------------------- stocks (per stock over the span)

    def _hist(self, ts_code: str, days, adjust: str) -> pd.DataFrame:
        key = f"hist:{ts_code}:{adjust}:{ymd(days[0])}:{ymd(days[-1])}"
        cols = ["日期", "开盘", "收盘", "最高", "最低", "成交量", "成交额", "涨跌额"]
        return self.cached(key, lambda: self.q("stock_zh_a_hist", cols, symbol=ts_code.split(".")[0],
                                               period="daily", start_date=ymd(days[0]),
                                               end_date=ymd(days[-1]), adjust=adjust))

    def fetch_stock_daily_range(self, days) -> pd.DataFrame:
        frames = [bars_from_em(self._hist(c, days, ""), c) for c in self.universe()["ts_code"]]
        return _concat(frames, ["ts_code", "trade_date"])

    def fetch_adj_factor_range(self, days) -> pd.DataFrame:
        frames = []
        for c in self.universe()["ts_code"]:
            raw, hfq = self._hist(c, days, ""), self._hist(c, days, "hfq")
            if raw.empty or hfq.empty:
                continue
            m = pd.DataFrame({"trade_date": to_ts(raw["日期"]), "raw": pd.to_numeric(raw["收盘"])}).merge(
                pd.DataFrame({"trade_date": to_ts(hfq["日期"]), "adj": pd.to_numeric(hfq["收盘"])}), on="trade_date")
            frames.append(pd.DataFrame({"ts_code": c, "trade_date": m["trade_date"],
                                        "adj_factor": (m["adj"] / m["raw"]).round(6)}))
        return _concat(frames, ["ts_code", "trade_date", "adj_factor"])

    def fetch_daily_basic_range(self, days) -> pd.DataFrame:
        frames = []
        for c in self.universe()["ts_code"]:
            df = self.q("stock_zh_a_daily", ["date", "close", "outstanding_share", "turnover"],
                        symbol=_market_prefix(c), start_date=ymd(days[0]), end_date=ymd(days[-1]), adjust="")
            if df.empty:
                continue
            total_shares = float(self.info(c)["总股本"])  # shares, today's count (no history in AkShare)
            frames.append(daily_basic_from_sina(df, c, total_shares))
        return _concat(frames, ["ts_code", "trade_date"])

    # ---------------------------------------------------------------- indices

    def fetch_index_daily_range(self, days) -> pd.DataFrame:
        frames = []
        cols = ["日期", "开盘", "收盘", "最高", "最低", "成交量", "成交额", "涨跌额"]
        for code in self.options.indexes:
            df = self.q("index_zh_a_hist", cols, symbol=code.split(".")[0], period="daily",
                        start_date=ymd(days[0]), end_date=ymd(days[-1]))
            if df.empty:
                self.log(f"akshare index_daily: no rows for {code}")
                continue
            frames.append(bars_from_em(df, code))
        return _concat(frames, ["ts_code", "trade_date"])

    def fetch_index_weight_range(self, days) -> pd.DataFrame:
        frames = []
        for code in self.options.weight_indexes:
            df = self.q("index_stock_cons_weight_csindex", ["日期", "成分券代码", "权重"], symbol=code.split(".")[0])
            if df.empty:
                continue
            frames.append(weights_from_csindex(df, code))
        return _concat(frames, ["index_code", "con_code", "trade_date", "weight"])

    # ---------------------------------------------------------------- futures

    def _futures(self, days) -> pd.DataFrame:
        cols = ["symbol", "date", "open", "high", "low", "close", "volume", "open_interest", "turnover",
                "settle", "pre_settle", "variety"]
        key = f"fut:{ymd(days[0])}:{ymd(days[-1])}"
        return self.cached(key, lambda: self.q("get_futures_daily", cols, start_date=ymd(days[0]),
                                               end_date=ymd(days[-1]), market="CFFEX"))

    def fetch_fut_daily_range(self, days) -> pd.DataFrame:
        return futures_from_cffex(self._futures(days))

    def fetch_fut_basic_snapshot(self, days) -> pd.DataFrame:
        return fut_basic_from_contracts(futures_from_cffex(self._futures(days)))

    # ---------------------------------------------------------------- ETFs

    def fetch_etf_share_range(self, days) -> pd.DataFrame:
        etfs = {normalize_code(c): normalize_code(i) for c, i in self.options.etfs.items()}
        shares = []
        if any(c.endswith(".SH") for c in etfs):  # SSE: one call per day, all SSE ETFs
            for d in days:
                df = self.q("fund_etf_scale_sse", ["基金代码", "基金份额"], date=ymd(d))
                if not df.empty:
                    shares.append(etf_shares_from_exchange(df, d))
        if any(c.endswith(".SZ") for c in etfs):  # SZSE: one call per <= 6-month window, all SZSE ETFs
            for lo, hi in _windows(days, SZSE_WINDOW_DAYS):
                try:
                    df = self.q("fund_scale_daily_szse", ["日期", "基金代码", "基金份额"],
                                start_date=ymd(lo), end_date=ymd(hi), symbol="ETF")
                except ShapeChangedError as exc:
                    if "has no function" not in str(exc):
                        raise
                    self.log(f"akshare etf_share: {exc}; SZSE ETFs skipped (upgrade akshare)")
                    break
                if not df.empty:
                    shares.append(etf_shares_from_exchange(df, None))
        share = _concat(shares, ["ts_code", "trade_date", "fd_share"])
        share = share[share["ts_code"].isin(set(etfs))] if len(share) else share
        closes = []
        for code, index_code in etfs.items():
            h = self.q("fund_etf_hist_em", ["日期", "收盘"], symbol=code.split(".")[0], period="daily",
                       start_date=ymd(days[0]), end_date=ymd(days[-1]), adjust="")
            closes.append(pd.DataFrame({"ts_code": code, "trade_date": to_ts(h["日期"]),
                                        "close": pd.to_numeric(h["收盘"]), "index_code": index_code}))
        close = _concat(closes, ["ts_code", "trade_date", "close", "index_code"])
        if share.empty or close.empty:
            return pd.DataFrame(columns=["ts_code", "trade_date", "fd_share", "close", "index_code"])
        return close.merge(share, on=["ts_code", "trade_date"], how="inner")


SZSE_WINDOW_DAYS = 180  # fund_scale_daily_szse answers at most 6 months per call


def _windows(days, span: int) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    out, lo = [], pd.Timestamp(days[0])
    last = pd.Timestamp(days[-1])
    while lo <= last:
        hi = min(last, lo + pd.Timedelta(days=span - 1))
        out.append((lo, hi))
        lo = hi + pd.Timedelta(days=1)
    return out


# -------------------------------------------------------------------- pure mappings (unit-tested)


def bars_from_em(df: pd.DataFrame, ts_code: str) -> pd.DataFrame:
    """Eastmoney daily bars (stock_zh_a_hist / index_zh_a_hist) -> Tushare ``daily`` fields.

    成交量 is in lots (手) already; 成交额 is CNY -> 1,000 CNY; pre_close = 收盘 - 涨跌额
    (the exchange's reference price, rounded to 0.01 for stocks, 0.001 for index levels kept).
    """
    if df.empty:
        return pd.DataFrame()
    close = pd.to_numeric(df["收盘"])
    change = pd.to_numeric(df["涨跌额"])
    return pd.DataFrame({
        "ts_code": ts_code,
        "trade_date": to_ts(df["日期"]),
        "open": pd.to_numeric(df["开盘"]),
        "high": pd.to_numeric(df["最高"]),
        "low": pd.to_numeric(df["最低"]),
        "close": close,
        "pre_close": (close - change).round(4),
        "vol": pd.to_numeric(df["成交量"]),
        "amount": pd.to_numeric(df["成交额"]) / 1000.0,
    })


def daily_basic_from_sina(df: pd.DataFrame, ts_code: str, total_shares: float) -> pd.DataFrame:
    """Sina ``stock_zh_a_daily`` (outstanding_share in shares, turnover a fraction) -> ``daily_basic``.

    total_share is today's count applied to every day (AkShare has no history of it);
    free_share = float_share and turnover_rate_f is left empty (no free-float data).
    """
    close = pd.to_numeric(df["close"])
    float_sh = pd.to_numeric(df["outstanding_share"])
    return pd.DataFrame({
        "ts_code": ts_code,
        "trade_date": to_ts(df["date"]),
        "close": close,
        "turnover_rate": pd.to_numeric(df["turnover"]) * 100.0,
        "turnover_rate_f": float("nan"),
        "total_share": total_shares / 1e4,
        "float_share": float_sh / 1e4,
        "free_share": float_sh / 1e4,
        "total_mv": close * total_shares / 1e4,
        "circ_mv": close * float_sh / 1e4,
    })


def etf_shares_from_exchange(df: pd.DataFrame, day) -> pd.DataFrame:
    """SSE ``fund_etf_scale_sse`` / SZSE ``fund_scale_daily_szse`` rows (基金份额 in units) -> fd_share
    in 10,000 units. SSE rows are dated by the requested day, SZSE rows by their 日期."""
    dates = pd.Series(pd.Timestamp(day), index=df.index) if day is not None else to_ts(df["日期"])
    return pd.DataFrame({"ts_code": df["基金代码"].map(normalize_code), "trade_date": dates,
                         "fd_share": pd.to_numeric(df["基金份额"], errors="coerce") / 1e4})


def weights_from_csindex(df: pd.DataFrame, index_code: str) -> pd.DataFrame:
    """CSI constituent weights (权重 in percent) -> ``index_weight``; dated on the session on/before 日期."""
    if "交易所" in df.columns:
        suffix = df["交易所"].map(_EXCHANGE_NAMES)
        con = [normalize_code(f"{str(c).zfill(6)}.{s}") if isinstance(s, str) else normalize_code(c)
               for c, s in zip(df["成分券代码"], suffix, strict=True)]
    else:
        con = df["成分券代码"].map(normalize_code)
    return pd.DataFrame({
        "index_code": index_code,
        "con_code": con,
        "trade_date": to_ts(df["日期"]).map(session_on_or_before),
        "weight": pd.to_numeric(df["权重"]),
    })


def futures_from_cffex(df: pd.DataFrame) -> pd.DataFrame:
    """CFFEX daily report rows -> ``fut_daily`` (IF/IH/IC/IM only; turnover in 10,000 CNY as reported)."""
    if df.empty:
        return pd.DataFrame(columns=["ts_code", "trade_date"])
    df = df[df["variety"].astype("str").str.upper().isin(FUT_CODES)]
    return pd.DataFrame({
        "ts_code": df["symbol"].astype("str").str.upper() + ".CFX",
        "trade_date": to_ts(df["date"]),
        "pre_close": float("nan"),
        "pre_settle": pd.to_numeric(df["pre_settle"], errors="coerce"),
        "open": pd.to_numeric(df["open"], errors="coerce"),
        "high": pd.to_numeric(df["high"], errors="coerce"),
        "low": pd.to_numeric(df["low"], errors="coerce"),
        "close": pd.to_numeric(df["close"], errors="coerce"),
        "settle": pd.to_numeric(df["settle"], errors="coerce"),
        "vol": pd.to_numeric(df["volume"], errors="coerce"),
        "amount": pd.to_numeric(df["turnover"], errors="coerce"),
        "oi": pd.to_numeric(df["open_interest"], errors="coerce"),
    }).reset_index(drop=True)


def cffex_expiry(contract: str) -> pd.Timestamp:
    """Last trading day of a CFFEX index future (METHODS.md §1): the third Friday of the
    contract month, moved to the next session if that Friday is not one."""
    yymm = contract.split(".")[0][2:6]
    first = pd.Timestamp(f"20{yymm[:2]}-{yymm[2:]}-01")
    friday = first + pd.Timedelta(days=(4 - first.weekday()) % 7 + 14)
    if partitions.is_trading_day(friday):
        return friday
    return partitions.next_trading_day(friday)


def fut_basic_from_contracts(fut: pd.DataFrame) -> pd.DataFrame:
    """fut_basic rows for the contracts seen in ``fut_daily`` (list_date = first day seen)."""
    if fut.empty:
        return pd.DataFrame()
    first = fut.assign(d=to_ts(fut["trade_date"])).groupby("ts_code")["d"].min()
    codes = first.index.to_series()
    product = codes.str[:2]
    return pd.DataFrame({
        "ts_code": codes.to_numpy(),
        "fut_code": product.to_numpy(),
        "multiplier": product.map({k: v[1] for k, v in FUT_CODES.items()}).to_numpy(),
        "list_date": first.to_numpy(),
        "delist_date": [cffex_expiry(c) for c in codes],
        "underlying": product.map({k: v[0] for k, v in FUT_CODES.items()}).to_numpy(),
    })
