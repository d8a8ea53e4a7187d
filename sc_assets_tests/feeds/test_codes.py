"""Security-code normalisation (table-driven) and date parsing."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sc_assets.feeds.codes import INDEX, STOCK, code_kind, normalise_code, normalise_codes, valid_code_mask
from sc_assets.feeds.dates import parse_dates

STOCK_CASES = [
    ("600000.SH", "600000.SH"),
    ("600000", "600000.SH"),
    ("SH600000", "600000.SH"),
    ("sh600000", "600000.SH"),
    (" 600000.sh ", "600000.SH"),
    ("600000.XSHG", "600000.SH"),
    ("000001.XSHE", "000001.SZ"),
    ("000001", "000001.SZ"),
    ("1", "000001.SZ"),  # Excel dropped the leading zeros
    ("SZ300750", "300750.SZ"),
    ("300750", "300750.SZ"),
    ("688981", "688981.SH"),
    ("430047", "430047.BJ"),
    ("830799", "830799.BJ"),
    ("872925", "872925.BJ"),
    ("920001", "920001.BJ"),
    ("430047.BJSE", "430047.BJ"),
    ("bj430047", "430047.BJ"),
    ("510300", "510300.SH"),  # SSE ETF
    ("159915", "159915.SZ"),  # SZSE ETF
    ("900901", "900901.SH"),  # SSE B share
    ("200002", "200002.SZ"),  # SZSE B share
]
INDEX_CASES = [
    ("000905.SH", "000905.SH"),
    ("932000.CSI", "932000.CSI"),
    ("8841431.WI", "8841431.WI"),
    ("000905.XSHG", "000905.SH"),
    ("sh000905", "000905.SH"),
    ("000001", "000001.SH"),  # bare index code: the SSE Composite, never Ping An Bank (.SZ)
    ("399006", "399006.SZ"),
    ("932000", "932000.CSI"),
    ("8841431", "8841431.WI"),
]
FUTURE_CASES = [
    ("IC2401", "IC2401.CFX"),
    ("IC2401.CFE", "IC2401.CFX"),
    ("IC2401.CFX", "IC2401.CFX"),
    ("ic2401.cfx", "IC2401.CFX"),
    ("IM2402.CCFX", "IM2402.CFX"),
]


@pytest.mark.parametrize(("raw", "expected"), STOCK_CASES)
def test_stock_codes(raw: str, expected: str) -> None:
    assert normalise_code(raw, "stock") == expected


@pytest.mark.parametrize(("raw", "expected"), INDEX_CASES)
def test_index_codes(raw: str, expected: str) -> None:
    assert normalise_code(raw, "index") == expected


@pytest.mark.parametrize(("raw", "expected"), FUTURE_CASES)
def test_future_codes(raw: str, expected: str) -> None:
    assert normalise_code(raw, "future") == expected


def test_vectorised_mixed_column_keeps_nulls_and_order() -> None:
    raw = [c for c, _ in STOCK_CASES] + [None]
    out = normalise_codes(pa.array(raw, pa.string()), STOCK).to_pylist()
    assert out == [e for _, e in STOCK_CASES] + [None]


def test_code_kinds_per_feed_column() -> None:
    assert code_kind("index_daily", "ts_code") == INDEX
    assert code_kind("index_weight", "con_code") == STOCK
    assert code_kind("fut_daily", "ts_code") == "future"
    assert code_kind("stock_daily", "ts_code") == STOCK


def test_invalid_codes_fail_the_pattern() -> None:
    out = normalise_codes(pa.array(["60000X", "600000", "IC2401"], pa.string()), STOCK)
    assert valid_code_mask(out, STOCK).to_pylist() == [False, True, False]


DATE_CASES = [
    ("20240122", dt.date(2024, 1, 22)),
    ("2024-01-22", dt.date(2024, 1, 22)),
    ("2024/01/22", dt.date(2024, 1, 22)),
    ("2024/1/2", dt.date(2024, 1, 2)),
    ("2024-01-22 00:00:00", dt.date(2024, 1, 22)),
    ("2024-01-22T15:00:00", dt.date(2024, 1, 22)),
    ("2024.01.05", dt.date(2024, 1, 5)),
]


@pytest.mark.parametrize(("raw", "expected"), DATE_CASES)
def test_date_cells(raw: str, expected: dt.date) -> None:
    out, bad = parse_dates(pa.array([raw]))
    assert out.to_pylist() == [expected] and bad.to_pylist() == [False]


def test_bad_and_missing_date_cells() -> None:
    out, bad = parse_dates(pa.array(["20241345", "abc", "", None, "20240230"]))
    assert out.to_pylist() == [None] * 5
    assert bad.to_pylist() == [True, True, False, False, True]


def test_native_and_integer_dates() -> None:
    ts = pa.array([dt.datetime(2024, 1, 22, 20, 0)], pa.timestamp("ns", tz="UTC"))  # 04:00 next day in Shanghai
    assert parse_dates(ts)[0].to_pylist() == [dt.date(2024, 1, 23)]
    assert parse_dates(pa.array([20240122, None]))[0].to_pylist() == [dt.date(2024, 1, 22), None]
    assert parse_dates(pa.array([dt.date(2024, 1, 22)]))[0].to_pylist() == [dt.date(2024, 1, 22)]
