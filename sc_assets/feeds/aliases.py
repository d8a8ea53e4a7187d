"""One alias registry: vendor column headers -> canonical raw field and unit factor.

Wind/Choice-style exports use Chinese headers that usually state their unit, e.g.
``成交额(元)`` (amount in CNY) or ``成交量(股)`` (volume in shares). Each alias maps a header to
(canonical Tushare field, factor) where ``canonical_value = vendor_value * factor``; the
canonical unit is the raw feed's (see ``schemas.py``): e.g. 成交额(元) -> amount in
1,000 CNY has factor 1/1000.

The first alias listed for a field is the one the simulator writes in its Chinese-header
exports (see :func:`export_headers`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Alias:
    header: str
    field: str
    factor: float = 1.0


def _a(header: str, field: str, factor: float = 1.0) -> Alias:
    return Alias(header, field, factor)


_CODE = [_a("代码", "ts_code"), _a("证券代码", "ts_code"), _a("股票代码", "ts_code")]
_DATE = [_a("日期", "trade_date"), _a("交易日期", "trade_date")]
_PRICES = [
    _a("开盘价(元)", "open"), _a("开盘价", "open"),
    _a("最高价(元)", "high"), _a("最高价", "high"),
    _a("最低价(元)", "low"), _a("最低价", "low"),
    _a("收盘价(元)", "close"), _a("收盘价", "close"),
    _a("前收盘价(元)", "pre_close"), _a("前收盘价", "pre_close"),
]
_VOLUME = [
    _a("成交量(股)", "vol", 0.01), _a("成交量(手)", "vol"),
    _a("成交额(元)", "amount", 0.001), _a("成交额(千元)", "amount"), _a("成交额(万元)", "amount", 10.0),
]

ALIASES: dict[str, list[Alias]] = {
    "stock_daily": _CODE + _DATE + _PRICES + _VOLUME,
    "index_daily": _CODE + _DATE + _PRICES + _VOLUME,
    "daily_basic": _CODE + _DATE + [
        _a("收盘价(元)", "close"), _a("收盘价", "close"),
        _a("换手率(%)", "turnover_rate"), _a("换手率", "turnover_rate"),
        _a("换手率(自由流通)(%)", "turnover_rate_f"), _a("自由流通换手率(%)", "turnover_rate_f"),
        _a("总股本(股)", "total_share", 1e-4), _a("总股本(万股)", "total_share"),
        _a("流通股本(股)", "float_share", 1e-4), _a("流通A股(股)", "float_share", 1e-4),
        _a("流通股本(万股)", "float_share"),
        _a("自由流通股本(股)", "free_share", 1e-4), _a("自由流通股本(万股)", "free_share"),
        _a("总市值(元)", "total_mv", 1e-4), _a("总市值(万元)", "total_mv"),
        _a("流通市值(元)", "circ_mv", 1e-4), _a("流通市值(万元)", "circ_mv"),
    ],
    "adj_factor": _CODE + _DATE + [_a("复权因子", "adj_factor")],
    "stock_basic": _CODE + [
        _a("名称", "name"), _a("证券简称", "name"), _a("股票简称", "name"),
        _a("申万一级行业", "industry"), _a("所属申万一级行业", "industry"), _a("行业", "industry"),
        _a("板块", "market"), _a("上市板", "market"), _a("市场", "market"),
        _a("上市日期", "list_date"),
        _a("退市日期", "delist_date"),
    ],
    "st_flags": _CODE + _DATE + [_a("是否ST", "is_st"), _a("ST标记", "is_st")],
    "index_weight": [
        _a("指数代码", "index_code"),
        _a("成分股代码", "con_code"), _a("成分代码", "con_code"), _a("证券代码", "con_code"),
        _a("日期", "trade_date"), _a("交易日期", "trade_date"),
        _a("权重(%)", "weight"), _a("权重", "weight"),
    ],
    "fut_daily": [_a("合约代码", "ts_code"), _a("代码", "ts_code")] + _DATE + [
        _a("前收盘价", "pre_close"),
        _a("前结算价", "pre_settle"),
        _a("开盘价", "open"),
        _a("最高价", "high"),
        _a("最低价", "low"),
        _a("收盘价", "close"),
        _a("结算价", "settle"),
        _a("成交量(手)", "vol"), _a("成交量", "vol"),
        _a("成交额(万元)", "amount"), _a("成交额(元)", "amount", 1e-4),
        _a("持仓量(手)", "oi"), _a("持仓量", "oi"),
    ],
    "fut_basic": [
        _a("合约代码", "ts_code"), _a("代码", "ts_code"),
        _a("品种代码", "fut_code"), _a("品种", "fut_code"),
        _a("合约乘数", "multiplier"),
        _a("上市日期", "list_date"),
        _a("最后交易日", "delist_date"), _a("到期日", "delist_date"),
        _a("标的指数", "underlying"), _a("标的指数代码", "underlying"),
    ],
    "etf_share": [_a("基金代码", "ts_code"), _a("代码", "ts_code")] + _DATE + [
        _a("基金份额(万份)", "fd_share"), _a("基金份额(份)", "fd_share", 1e-4),
        _a("收盘价(元)", "close"), _a("收盘价", "close"),
        _a("跟踪指数代码", "index_code"), _a("跟踪指数", "index_code"),
    ],
    "fund_nav": [
        _a("产品代码", "fund_id"), _a("基金代码", "fund_id"),
        _a("净值日期", "nav_date"), _a("日期", "nav_date"),
        _a("产品名称", "name"), _a("基金名称", "name"),
        _a("策略类型", "strategy"), _a("策略", "strategy"),
        _a("业绩基准", "benchmark"), _a("基准指数", "benchmark"),
        _a("管理人", "manager"), _a("基金管理人", "manager"),
        _a("管理人规模", "manager_aum_bucket"),
        _a("复权净值", "adj_nav"), _a("复权单位净值", "adj_nav"),
    ],
}

# Vendor columns we know and deliberately drop (derived fields): not an "unknown header" error.
IGNORED: dict[str, set[str]] = {
    "stock_daily": {"change", "pct_chg", "涨跌额", "涨跌幅(%)", "涨跌幅"},
    "index_daily": {"change", "pct_chg", "涨跌额", "涨跌幅(%)", "涨跌幅"},
    "daily_basic": {"turnover_rate_f_pct", "volume_ratio", "pe", "pe_ttm", "pb", "ps", "ps_ttm",
                    "dv_ratio", "dv_ttm", "量比", "市盈率", "市净率"},
    "fut_daily": {"change1", "change2"},
    "stock_basic": {"symbol", "area", "fullname", "enname", "cnspell", "exchange", "curr_type",
                    "list_status", "is_hs", "act_name", "act_ent_type"},
    "fut_basic": {"symbol", "exchange", "name", "trade_unit", "quote_unit", "quote_unit_desc",
                  "d_mode_desc", "last_ddate", "trade_time_desc"},
}


def normalise_header(header: str) -> str:
    """Header as compared against the registry: BOM and blanks stripped, full-width brackets
    and percent sign folded to ASCII (``成交额（元）`` == ``成交额(元)``)."""
    h = str(header).replace("\ufeff", "").strip()
    h = h.translate(str.maketrans({"（": "(", "）": ")", "％": "%", " ": "", "\u3000": ""}))
    return h


def header_lookup(feed: str) -> dict[str, Alias]:
    """normalised header -> Alias for ``feed``: the canonical field names (factor 1) plus the
    Chinese aliases. Canonical names are matched case-insensitively."""
    from sc_assets.feeds.schemas import FEEDS

    out: dict[str, Alias] = {}
    for name in FEEDS[feed].column_names:
        out[name.lower()] = Alias(name, name, 1.0)
    for alias in ALIASES.get(feed, []):
        out.setdefault(normalise_header(alias.header), alias)
    return out


def accepted_headers(feed: str, field: str | None = None) -> list[str]:
    """Headers accepted for ``feed`` (or for one of its fields): canonical names first."""
    from sc_assets.feeds.schemas import FEEDS

    names = [n for n in FEEDS[feed].column_names if field is None or n == field]
    return names + [a.header for a in ALIASES.get(feed, []) if field is None or a.field == field]


def export_headers(feed: str) -> dict[str, tuple[str, float]]:
    """canonical field -> (first Chinese header, factor) for writing a vendor-style export.

    A writer divides the canonical value by ``factor`` to get the vendor unit.
    """
    out: dict[str, tuple[str, float]] = {}
    for alias in ALIASES.get(feed, []):
        out.setdefault(alias.field, (alias.header, alias.factor))
    return out
