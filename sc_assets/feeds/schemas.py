"""Canonical raw feed schemas: Tushare Pro field names and units (DESIGN.md §4, METHODS.md §1).

This registry is the single declaration of every raw feed: columns, dtypes, units, keys and
descriptions. Readers, the simulator, the pull adapters, the raw assets' TableSchema and
the raw-layer checks are all derived from it.

Raw units are the vendor's (Tushare Pro): ``vol`` in lots (100 shares), ``amount`` in 1,000 CNY,
``*_share`` in 10,000 shares, ``*_mv`` in 10,000 CNY, turnover in percent, futures ``amount``
in 10,000 CNY, ETF ``fd_share`` in 10,000 units. Staging models convert to CNY / shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # one of: str, date, float, int, bool
    description: str
    unit: str = ""
    nullable: bool = False


@dataclass(frozen=True)
class FeedSpec:
    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    date_column: str | None  # column holding the trading day; None for reference feeds
    partitioned: bool = True  # daily feeds are partitioned by trading day
    code_columns: tuple[str, ...] = field(default=("ts_code",))  # security codes to normalise
    price_columns: tuple[str, ...] = ()  # must be > 0

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if not c.nullable]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"feed {self.name} has no column {name!r}")


C = Column
TS_CODE = C("ts_code", "str", "security code, normalised to 600000.SH / 000001.SZ / 430047.BJ")
TRADE_DATE = C("trade_date", "date", "trading day (SSE calendar)")

FEEDS: dict[str, FeedSpec] = {}


def _add(spec: FeedSpec) -> None:
    FEEDS[spec.name] = spec


_add(FeedSpec(
    "stock_daily", "Daily unadjusted bars per A-share stock (Tushare `daily`).",
    (TS_CODE, TRADE_DATE,
     C("open", "float", "open price", "CNY"),
     C("high", "float", "high price", "CNY"),
     C("low", "float", "low price", "CNY"),
     C("close", "float", "close price", "CNY"),
     C("pre_close", "float", "previous close, ex-right reference price", "CNY"),
     C("vol", "float", "volume", "lots (100 shares)"),
     C("amount", "float", "traded amount", "1,000 CNY")),
    key=("ts_code", "trade_date"), date_column="trade_date",
    price_columns=("open", "high", "low", "close", "pre_close"),
))
_add(FeedSpec(
    "daily_basic", "Daily share counts, market caps and turnover (Tushare `daily_basic`).",
    (TS_CODE, TRADE_DATE,
     C("close", "float", "close price", "CNY"),
     C("turnover_rate", "float", "turnover on float shares", "percent", nullable=True),
     C("turnover_rate_f", "float", "turnover on free-float shares", "percent", nullable=True),
     C("total_share", "float", "total shares", "10,000 shares"),
     C("float_share", "float", "float (circulating) shares", "10,000 shares"),
     C("free_share", "float", "free-float shares", "10,000 shares"),
     C("total_mv", "float", "total market cap", "10,000 CNY"),
     C("circ_mv", "float", "float market cap", "10,000 CNY")),
    key=("ts_code", "trade_date"), date_column="trade_date", price_columns=("close",),
))
_add(FeedSpec(
    "adj_factor", "Cumulative price adjustment factor (Tushare `adj_factor`).",
    (TS_CODE, TRADE_DATE, C("adj_factor", "float", "cumulative adjustment factor (back-adjusted prices = close x adj)")),
    key=("ts_code", "trade_date"), date_column="trade_date", price_columns=("adj_factor",),
))
_add(FeedSpec(
    "stock_basic", "Reference data per stock (Tushare `stock_basic`): name, SW level-1 industry, board, listing.",
    (TS_CODE,
     C("name", "str", "short name"),
     C("industry", "str", "Shenwan (SW) level-1 industry"),
     C("market", "str", "board: main / chinext / star / bse"),
     C("list_date", "date", "listing date"),
     C("delist_date", "date", "delisting date (first day not listed)", nullable=True)),
    key=("ts_code",), date_column=None, partitioned=False,
))
_add(FeedSpec(
    "st_flags", "Special-treatment (ST/*ST) status per stock-day; drives the ±5% limit.",
    (TS_CODE, TRADE_DATE, C("is_st", "bool", "stock is ST or *ST on the day")),
    key=("ts_code", "trade_date"), date_column="trade_date",
))
_add(FeedSpec(
    "index_daily", "Daily index bars (Tushare `index_daily`): CSI300/500/1000/2000, micro-cap, ...",
    (TS_CODE, TRADE_DATE,
     C("open", "float", "open level", nullable=True),
     C("high", "float", "high level", nullable=True),
     C("low", "float", "low level", nullable=True),
     C("close", "float", "close level"),
     C("pre_close", "float", "previous close level"),
     C("vol", "float", "volume", "lots (100 shares)", nullable=True),
     C("amount", "float", "traded amount", "1,000 CNY", nullable=True)),
    key=("ts_code", "trade_date"), date_column="trade_date", price_columns=("close", "pre_close"),
))
_add(FeedSpec(
    "index_weight", "Index constituent weights (Tushare `index_weight`), usually monthly.",
    (C("index_code", "str", "index code, e.g. 000905.SH"),
     C("con_code", "str", "constituent stock code"),
     TRADE_DATE,
     C("weight", "float", "constituent weight", "percent")),
    key=("index_code", "con_code", "trade_date"), date_column="trade_date",
    code_columns=("index_code", "con_code"),
))
_add(FeedSpec(
    "fut_daily", "Daily bars of CFFEX stock-index futures (Tushare `fut_daily`): IF/IH/IC/IM.",
    (C("ts_code", "str", "contract code, e.g. IC2401.CFX"),
     TRADE_DATE,
     C("pre_close", "float", "previous close", nullable=True),
     C("pre_settle", "float", "previous settlement price", nullable=True),
     C("open", "float", "open", nullable=True),
     C("high", "float", "high", nullable=True),
     C("low", "float", "low", nullable=True),
     C("close", "float", "close"),
     C("settle", "float", "settlement price"),
     C("vol", "float", "volume", "contracts"),
     C("amount", "float", "traded amount", "10,000 CNY"),
     C("oi", "float", "open interest", "contracts")),
    key=("ts_code", "trade_date"), date_column="trade_date", price_columns=("close", "settle"),
))
_add(FeedSpec(
    "fut_basic", "Reference data per futures contract (Tushare `fut_basic`).",
    (C("ts_code", "str", "contract code, e.g. IC2401.CFX"),
     C("fut_code", "str", "product: IF / IH / IC / IM"),
     C("multiplier", "float", "contract multiplier", "CNY per index point"),
     C("list_date", "date", "first trading day"),
     C("delist_date", "date", "last trading day (expiry)"),
     C("underlying", "str", "underlying index code, e.g. 000905.SH")),
    key=("ts_code",), date_column=None, partitioned=False, code_columns=("ts_code", "underlying"),
))
_add(FeedSpec(
    "etf_share", "ETF shares outstanding and close (Tushare `fund_share` + `fund_daily`), with tracked index.",
    (TS_CODE, TRADE_DATE,
     C("fd_share", "float", "shares outstanding", "10,000 units"),
     C("close", "float", "ETF close price", "CNY"),
     C("index_code", "str", "tracked index code")),
    key=("ts_code", "trade_date"), date_column="trade_date", code_columns=("ts_code", "index_code"),
    price_columns=("close",),
))
_add(FeedSpec(
    "fund_nav", "Weekly adjusted NAVs of private quant products (user-supplied CSV; dated by the week's last trading day).",
    (C("fund_id", "str", "product id"),
     C("nav_date", "date", "NAV date (a trading day, normally the week's last)"),
     C("name", "str", "product name"),
     C("strategy", "str", "index_enhancement / market_neutral / other"),
     C("benchmark", "str", "tracked index code (index-enhancement), e.g. 000905.SH", nullable=True),
     C("manager", "str", "manager name"),
     C("manager_aum_bucket", "str", "manager AUM bucket: >=10bn / 5-10bn / <5bn"),
     C("adj_nav", "float", "adjusted (dividends reinvested) NAV")),
    key=("fund_id", "nav_date"), date_column="nav_date", code_columns=("benchmark",),
    price_columns=("adj_nav",),
))

DAILY_FEEDS = [name for name, spec in FEEDS.items() if spec.partitioned]
REFERENCE_FEEDS = [name for name, spec in FEEDS.items() if not spec.partitioned]
