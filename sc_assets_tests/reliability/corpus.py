"""The bad-input corpus: each case is ONE mutation of a good landing file (issue 12).

Good files are generated in code from the committed hand-made fixtures
(``sc_assets_tests/fixtures/landing``): a fixture is read through the real reader into the
canonical raw schema and rendered back as a Tushare-header CSV, so every case starts from a
file that reads cleanly, and differs from it by exactly the mutation named in its id.

Each case says what must happen when the raw layer reads it:

* ``Err``   the read fails with a :class:`LandingFileError` naming the file and the
            problem (and line / column where given); the file stays in landing, untouched.
* ``Quar``  rows are quarantined with the given reason(s); accepted + quarantined = landed.
* ``Ok``    the file is valid (positive controls: BOM, vendor headers, code spellings).
* ``Unsafe`` the path is refused (``UnsafePathError``): it leads out of the data root.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sc_assets.feeds.readers import read_landing_file
from sc_assets.feeds.schemas import FEEDS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "landing"

#: feed -> (fixture file, day) of a clean fixture used as the good file
GOOD_SOURCES = {
    "stock_daily": ("stock_daily/20240123.csv.gz", "20240123"),
    "daily_basic": ("daily_basic/20240122.csv", "20240122"),
    "adj_factor": ("adj_factor/20240122.parquet", "20240122"),
    "st_flags": ("st_flags/20240122.csv", "20240122"),
    "index_daily": ("index_daily/20240122.csv", "20240122"),
    "index_weight": ("index_weight/20240122.csv", "20240122"),
    "fut_daily": ("fut_daily/20240122.csv", "20240122"),
    "etf_share": ("etf_share/20240122.csv", "20240122"),
    "fund_nav": ("fund_nav/20240126.csv", "20240126"),
    "stock_basic": ("stock_basic/20240124.csv", "20240124"),
    "fut_basic": ("fut_basic/20240124.csv", "20240124"),
}


@cache
def _good_frame(feed: str) -> pd.DataFrame:
    rel, _ = GOOD_SOURCES[feed]
    t = read_landing_file(FIXTURES / rel, feed).drop_columns(["source_line"])
    df = t.to_pandas()
    for c in FEEDS[feed].columns:
        if c.dtype == "date":
            df[c.name] = pd.to_datetime(df[c.name]).dt.strftime("%Y%m%d")
    return df


def good(feed: str) -> pd.DataFrame:
    """The good file of ``feed`` as a frame (canonical Tushare columns, dates as YYYYMMDD)."""
    return _good_frame(feed).copy()


def good_day(feed: str) -> str:
    return GOOD_SOURCES[feed][1]


def csv_bytes(df: pd.DataFrame, encoding: str = "utf-8") -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode(encoding)


def good_bytes(feed: str) -> bytes:
    return csv_bytes(good(feed))


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    return buf.getvalue()


# ---- expectations ----------------------------------------------------------------------
@dataclass(frozen=True)
class Err:
    problem: str  # a phrase of LandingFileError.problem
    line: int | None = None
    column: str | None = None


@dataclass(frozen=True)
class Quar:
    reasons: dict[str, int]  # reason -> rows quarantined with it


@dataclass(frozen=True)
class Ok:
    rows: int
    same_as_good: bool = True  # accepted rows equal the good file's rows


@dataclass(frozen=True)
class Unsafe:
    pass


@dataclass(frozen=True)
class Case:
    id: str
    feed: str
    files: Callable[[], dict[str, bytes]]  # file name -> bytes, in landing/<feed>/
    expect: Err | Quar | Ok | Unsafe
    note: str = ""
    day: str = field(default="")

    @property
    def read_day(self) -> str:
        return self.day or good_day(self.feed)


def one(feed: str, mutate: Callable[[pd.DataFrame], pd.DataFrame] | None = None, ext: str = "csv",
        encoding: str = "utf-8") -> Callable[[], dict[str, bytes]]:
    """A single file of ``feed`` on its good day, with ``mutate`` applied to the good frame."""

    def make() -> dict[str, bytes]:
        df = good(feed)
        if mutate is not None:
            df = mutate(df)
        if ext == "parquet":
            return {f"{good_day(feed)}.parquet": parquet_bytes(df)}
        body = csv_bytes(df, encoding)
        if ext == "csv.gz":
            return {f"{good_day(feed)}.csv.gz": gzip.compress(body, mtime=0)}
        return {f"{good_day(feed)}.csv": body}

    return make


def raw(feed: str, transform: Callable[[bytes], bytes], ext: str = "csv",
        base: Callable[[], bytes] | None = None) -> Callable[[], dict[str, bytes]]:
    """A single file whose BYTES are ``transform(good bytes)``."""

    def make() -> dict[str, bytes]:
        body = (base or (lambda: good_bytes(feed)))()
        return {f"{good_day(feed)}.{ext}": transform(body)}

    return make


def setv(row: int, col: str, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def f(df: pd.DataFrame) -> pd.DataFrame:
        df = df.astype({col: object})
        df.loc[df.index[row], col] = value
        return df

    return f


def scale(row: int | None, factor: float, *cols: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def f(df: pd.DataFrame) -> pd.DataFrame:
        for c in cols:
            if row is None:
                df[c] = df[c] * factor
            else:
                df.loc[df.index[row], c] = df.loc[df.index[row], c] * factor
        return df

    return f


def rename(old: str, new: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df.rename(columns={old: new})


def _replace_line(body: bytes, line: int, new: bytes) -> bytes:
    lines = body.split(b"\n")
    lines[line - 1] = new
    return b"\n".join(lines)


def _truncate_mid_last_row(body: bytes) -> bytes:
    last = body.rstrip(b"\n").rfind(b"\n") + 1
    return body[: last + 14]  # the last row cut after its first fields (no newline)


def _truncate_in_last_field(body: bytes) -> bytes:
    body = body.rstrip(b"\n")
    return body[: body.rfind(b",") + 3]  # the writer died inside the last number: no newline, digits lost


def _two_files_conflicting() -> dict[str, bytes]:
    d = good("stock_daily")
    later = d.copy()
    later.loc[later.index[0], "close"] = later.loc[later.index[0], "close"] * 1.01
    later.loc[later.index[0], "high"] = max(later.loc[later.index[0], "high"], later.loc[later.index[0], "close"])
    day = good_day("stock_daily")
    return {f"{day}.csv": csv_bytes(d), f"{day}.csv.gz": gzip.compress(csv_bytes(later), mtime=0)}


def _vendor_codes(df: pd.DataFrame) -> pd.DataFrame:
    spell = {"600000.SH": "sh600000", "000001.SZ": "000001", "300750.SZ": "300750.XSHE",
             "688981.SH": "688981.XSHG", "430047.BJ": "BJ430047"}
    df["ts_code"] = df["ts_code"].map(spell)
    return df


def _chinese_headers(df: pd.DataFrame) -> pd.DataFrame:
    # Wind-style headers in raw units (vol in lots, amount in 1,000 CNY)
    return df.rename(columns={"ts_code": "代码", "trade_date": "日期", "open": "开盘价(元)", "high": "最高价(元)",
                              "low": "最低价(元)", "close": "收盘价(元)", "pre_close": "前收盘价(元)"})


def _suspended_with_trades(df: pd.DataFrame) -> pd.DataFrame:
    i = df.index[1]  # a suspended stock: no volume, price flat ... but an amount was traded
    df.loc[i, "vol"] = 0.0
    for c in ("open", "high", "low"):
        df.loc[i, c] = df.loc[i, "close"]
    return df


def _shares_and_caps_in_units(df: pd.DataFrame) -> pd.DataFrame:
    # shares in 股 and caps in 元 under the Tushare headers (10,000 shares / 10,000 CNY):
    # consistent with each other, 10,000x too large
    for c in ("total_share", "float_share", "free_share", "total_mv", "circ_mv"):
        df[c] = df[c] * 1e4
    return df


def _past_expiry(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[df.index[0], "ts_code"] = "IC2312.CFX"  # expired Dec 2023, trading on 2024-01-22
    return df


def _dup_row(df: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df, df.iloc[[2]]], ignore_index=True)


def _conflicting_dup(df: pd.DataFrame) -> pd.DataFrame:
    extra = df.iloc[[2]].copy()
    extra["vol"] = extra["vol"] + 1
    extra["amount"] = extra["amount"] * (extra["vol"] / (extra["vol"] - 1))
    return pd.concat([df, extra], ignore_index=True)


def _symlink_marker() -> dict[str, bytes]:
    return {}  # the test builds the symlink itself


SD = "stock_daily"
CASES: list[Case] = [
    # --- structure / headers -----------------------------------------------------------
    Case("missing_column", SD, one(SD, lambda d: d.drop(columns=["close"])),
         Err("missing required column", line=1, column="close")),
    Case("extra_unknown_column", SD, one(SD, lambda d: d.assign(foo=1)), Err("unknown column header", 1, "foo")),
    Case("unknown_chinese_header", SD, one(SD, rename("close", "收市价格(万元)")),
         Err("unknown column header", 1, "收市价格(万元)")),
    Case("ambiguous_header", SD, one(SD, lambda d: d.assign(**{"收盘价(元)": d["close"]})),
         Err("ambiguous header", 1, "收盘价(元)")),
    Case("semicolon_delimiter", SD, raw(SD, lambda b: b.replace(b",", b";")), Err("unknown column header", 1)),
    Case("chinese_headers_gbk_ok", SD, one(SD, _chinese_headers, encoding="gbk"), Ok(5)),
    Case("utf8_bom_ok", SD, raw(SD, lambda b: b"\xef\xbb\xbf" + b), Ok(5)),
    Case("utf16_encoding", SD, raw(SD, lambda b: b.decode().encode("utf-16")), Err("cannot decode")),
    Case("invalid_byte_in_cell", SD, raw(SD, lambda b: _replace_line(b, 3, b"\xff\xfe00001.SZ" + b.split(b"\n")[2][9:])),
         Err("cannot decode", line=3)),
    Case("chinese_headers_utf8_bom_ok", SD, one(SD, _chinese_headers, encoding="utf-8-sig"), Ok(5)),
    # --- truncation / emptiness ----------------------------------------------------------
    Case("truncated_mid_row", SD, raw(SD, _truncate_mid_last_row), Err("wrong number of fields", line=6)),
    Case("truncated_in_last_field", SD, raw(SD, _truncate_in_last_field),
         Quar({"amount inconsistent with vol x price": 1}), note="field count intact: caught by the VWAP rule"),
    Case("truncated_gzip", SD, raw(SD, lambda b: gzip.compress(b * 50, mtime=0)[:200], ext="csv.gz"),
         Err("truncated gzip")),
    Case("empty_file", SD, raw(SD, lambda b: b""), Err("empty file", line=1)),
    Case("whitespace_only_file", SD, raw(SD, lambda b: b"\n\n  \n"), Err("empty file", line=1)),
    Case("header_only", SD, raw(SD, lambda b: b.split(b"\n")[0] + b"\n"), Ok(0, same_as_good=False),
         note="0 rows landed: the raw asset WARNs (landing_file_present, files_without_rows)"),
    Case("partial_parquet", "adj_factor",
         raw("adj_factor", lambda b: b[: len(b) // 2], ext="parquet", base=lambda: parquet_bytes(good("adj_factor"))),
         Err("Parquet")),
    Case("parquet_text_in_number_column", "adj_factor", one("adj_factor", lambda d: setv(1, "adj_factor", "n/a!")(d.astype({"adj_factor": str})), ext="parquet"),
         Err("unparseable float", line=2, column="adj_factor")),
    # --- cells ---------------------------------------------------------------------------
    Case("unparseable_number", SD, one(SD, setv(2, "low", "12,34x")), Err("unparseable float", 4, "low")),
    Case("unparseable_date", SD, one(SD, setv(1, "trade_date", "20240230")), Err("unparseable date", 3, "trade_date")),
    Case("unparseable_bool", "st_flags", one("st_flags", setv(0, "is_st", "maybe")), Err("unparseable bool", 2, "is_st")),
    # --- keys / codes / dates ------------------------------------------------------------
    Case("null_key_code", SD, one(SD, setv(0, "ts_code", "")), Quar({"missing key ts_code": 1})),
    Case("null_key_date", SD, one(SD, setv(4, "trade_date", "")), Quar({"missing key trade_date": 1})),
    Case("mixed_code_formats_ok", SD, one(SD, _vendor_codes), Ok(5)),
    Case("invalid_code", SD, one(SD, setv(3, "ts_code", "ABCDEF")), Quar({"invalid code ts_code": 1})),
    Case("non_trading_day_row", SD, one(SD, setv(1, "trade_date", "20240121")), Quar({"date not a trading day": 1})),
    Case("row_from_another_day", SD, one(SD, setv(1, "trade_date", "20240122")), Quar({"date is not the file's day": 1})),
    Case("future_date_row", SD, one(SD, setv(1, "trade_date", "20991231")), Quar({"date in the future": 1})),
    Case("duplicate_row", SD, one(SD, _dup_row), Quar({"duplicate row": 1})),
    Case("conflicting_duplicate_key", SD, one(SD, _conflicting_dup), Quar({"conflicting duplicate key": 2})),
    Case("conflicting_rows_across_two_files", SD, _two_files_conflicting, Ok(10, same_as_good=False),
         note="both kept in raw with source_file; staging keeps the later file (sql tests); "
              "the raw asset WARNs (no_conflicting_redeliveries, CHECK_CASES)"),
    # --- prices --------------------------------------------------------------------------
    Case("negative_price", SD, one(SD, setv(0, "close", -6.4)), Quar({"non-positive close": 1})),
    Case("zero_open", SD, one(SD, setv(2, "open", 0)), Quar({"non-positive open": 1})),
    Case("high_below_low", SD, one(SD, lambda d: setv(1, "high", d["low"].iloc[1] - 0.5)(d)), Quar({"high < low": 1})),
    Case("close_above_high", SD, one(SD, lambda d: setv(3, "close", d["high"].iloc[3] + 1)(d)),
         Quar({"close outside [low, high]": 1})),
    Case("suspended_with_trades", SD, one(SD, _suspended_with_trades), Quar({"vol and amount disagree": 1})),
    # --- units ---------------------------------------------------------------------------
    Case("amount_in_cny_not_thousands", SD, one(SD, scale(2, 1000.0, "amount")),
         Quar({"amount inconsistent with vol x price": 1})),
    Case("vol_in_shares_not_lots", SD, one(SD, scale(None, 100.0, "vol")),
         Quar({"amount inconsistent with vol x price": 5})),
    Case("total_mv_in_cny_not_10k", "daily_basic", one("daily_basic", scale(None, 1e4, "total_mv")),
         Quar({"total_mv inconsistent with close x total_share": 5})),
    Case("market_cap_jump_10000x", "daily_basic", one("daily_basic", scale(3, 1e4, "total_mv", "circ_mv")),
         Quar({"total_mv inconsistent with close x total_share": 1})),
    Case("shares_and_caps_in_units", "daily_basic", one("daily_basic", _shares_and_caps_in_units),
         Quar({"total_share out of range": 5})),
    # --- other feeds ---------------------------------------------------------------------
    Case("negative_etf_shares", "etf_share", one("etf_share", setv(1, "fd_share", -1200000.0)),
         Quar({"negative fd_share": 1})),
    Case("etf_unknown_index_code", "etf_share", one("etf_share", setv(0, "index_code", "沪深300")),
         Quar({"invalid code index_code": 1})),
    Case("future_past_expiry", "fut_daily", one("fut_daily", _past_expiry), Quar({"contract past its expiry month": 1})),
    Case("future_zero_settle", "fut_daily", one("fut_daily", setv(1, "settle", 0.0)), Quar({"non-positive settle": 1})),
    Case("index_zero_close", "index_daily", one("index_daily", setv(1, "close", 0.0)), Quar({"non-positive close": 1})),
    Case("negative_nav", "fund_nav", one("fund_nav", setv(0, "adj_nav", -1.1)), Quar({"non-positive adj_nav": 1})),
    Case("nav_missing_name", "fund_nav", one("fund_nav", setv(1, "name", "")), Quar({"missing required value name": 1})),
    Case("snapshot_missing_industry", "stock_basic", one("stock_basic", setv(2, "industry", "")),
         Quar({"missing required value industry": 1})),
    Case("index_weight_null_constituent", "index_weight", one("index_weight", setv(0, "con_code", "")),
         Quar({"missing key con_code": 1})),
]


# ---- cross-row / cross-file cases: WARN checks of the raw assets ------------------------------
# A row-level reader cannot see these (each file is fine on its own): the raw asset's WARN check
# must name what is wrong, while accounting (landed = accepted + quarantined) still holds.
@dataclass(frozen=True)
class Warn:
    check: str  # check name on raw.<feed>
    passed: bool
    phrase: str  # must appear in the check's description
    metadata: dict = field(default_factory=dict)  # metadata key -> expected value


@dataclass(frozen=True)
class CheckCase:
    id: str
    feed: str
    files: Callable[[], dict[str, bytes]]
    start: str  # partition range of the run (YYYY-MM-DD)
    end: str
    expect: Warn
    config: dict = field(default_factory=dict)  # run config of the raw asset


def on_day(feed: str, day: str, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` re-dated to ``day`` (YYYYMMDD) in the feed's date column."""
    return df.assign(**{FEEDS[feed].date_column: day})


#: the key column a cross-row case drops rows by, per feed
_DROP_KEY = {"index_daily": "ts_code", "fund_nav": "fund_id"}
INDEX_DAYS = ("20240122", "20240123")
NAV_WEEKS = ("20240119", "20240126", "20240202")


def _feed_days(feed: str, days: tuple[str, ...], drop: dict[str, str] | None = None) -> Callable[[], dict[str, bytes]]:
    """``feed`` files (the good sample) for ``days`` (YYYYMMDD), dropping ``{day: key}`` rows, where
    the key is the feed's instrument column (index code / fund id)."""

    def make() -> dict[str, bytes]:
        out = {}
        for day in days:
            d = on_day(feed, day, good(feed))
            if drop and day in drop:
                d = d[d[_DROP_KEY[feed]] != drop[day]]
            out[f"{day}.csv"] = csv_bytes(d)
        return out

    return make


def _identical_redelivery() -> dict[str, bytes]:
    day = good_day(SD)
    body = csv_bytes(good(SD))
    return {f"{day}.csv": body, f"{day}.csv.gz": gzip.compress(body, mtime=0)}


_D = pd.Timestamp(good_day(SD)).strftime("%Y-%m-%d")
_FIRST = good(SD)["ts_code"].iloc[0]
CHECK_CASES: list[CheckCase] = [
    CheckCase("conflicting_rows_across_two_files", SD, _two_files_conflicting, _D, _D,
              Warn("no_conflicting_redeliveries", False,
                   f"1 key(s) delivered by two or more landing files with different values; staging keeps the latest "
                   f"landed file. E.g. {_FIRST} {_D} in landing/{SD}/{good_day(SD)}.csv, "
                   f"landing/{SD}/{good_day(SD)}.csv.gz (close differ; kept landing/{SD}/{good_day(SD)}.csv.gz)",
                   {"conflicting_keys": 1})),
    CheckCase("identical_redelivery_ok", SD, _identical_redelivery, _D, _D,
              Warn("no_conflicting_redeliveries", True, "no key was delivered by two landing files",
                   {"conflicting_keys": 0})),
    CheckCase("index_missing_a_day", "index_daily", _feed_days("index_daily", INDEX_DAYS, {"20240123": "000852.SH"}), "2024-01-22", "2024-01-23",
              Warn("expected_indices_present", False, "1 day(s) missing 1 expected index row(s): 2024-01-23: 000852.SH",
                   {"missing": {"2024-01-23": ["000852.SH"]}, "days_checked": 2,
                    "expected_codes_source": "every index code seen in the run's partition range"})),
    CheckCase("index_missing_configured_code", "index_daily", _feed_days("index_daily", INDEX_DAYS), "2024-01-22", "2024-01-22",
              Warn("expected_indices_present", False, "2024-01-22: 000016.SH",
                   {"missing": {"2024-01-22": ["000016.SH"]},
                    "expected_codes_source": "configured (expected_index_codes)"}),
              config={"expected_index_codes": ["000016.SH", "000300.SH", "000852.SH", "000905.SH"]}),
    CheckCase("index_all_present_ok", "index_daily", _feed_days("index_daily", INDEX_DAYS), "2024-01-22", "2024-01-23",
              Warn("expected_indices_present", True, "all 5 expected index codes", {"missing": {}})),
    CheckCase("nav_gap", "fund_nav", _feed_days("fund_nav", NAV_WEEKS, {"20240126": "F002"}), "2024-01-19", "2024-02-02",
              Warn("no_nav_gaps", False,
                   "1 fund(s) without a NAV in 1 week(s) between their first and last NAV: F002: 2024-01-26",
                   {"gaps": {"F002": ["2024-01-26"]}, "funds_with_gaps": 1})),
    # the Spring Festival week 2024-02-12..16 has no session: not a week a NAV is owed for
    CheckCase("nav_across_spring_festival_ok", "fund_nav", _feed_days("fund_nav", ("20240208", "20240223")),
              "2024-02-08", "2024-02-23",
              Warn("no_nav_gaps", True, "every fund has a NAV in every week", {"gaps": {}, "missing_weeks": 0})),
    CheckCase("nav_gap_before_spring_festival", "fund_nav",
              _feed_days("fund_nav", ("20240126", "20240202", "20240208", "20240223"), {"20240202": "F001"}),
              "2024-01-26", "2024-02-23",
              Warn("no_nav_gaps", False, "F001: 2024-02-02", {"gaps": {"F001": ["2024-02-02"]}, "missing_weeks": 1})),
    CheckCase("nav_ends_early_ok", "fund_nav", _feed_days("fund_nav", NAV_WEEKS, {"20240202": "F002"}), "2024-01-19", "2024-02-02",
              Warn("no_nav_gaps", True, "every fund has a NAV in every week", {"gaps": {}})),
]
