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
}


def export_headers(feed: str) -> dict[str, tuple[str, float]]:
    """canonical field -> (first Chinese header, factor) for writing a vendor-style export.

    A writer divides the canonical value by ``factor`` to get the vendor unit.
    """
    out: dict[str, tuple[str, float]] = {}
    for alias in ALIASES.get(feed, []):
        out.setdefault(alias.field, (alias.header, alias.factor))
    return out
