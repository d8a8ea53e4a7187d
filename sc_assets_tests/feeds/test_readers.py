"""Readers: formats, encodings, Chinese headers, units, and clear errors on unreadable files."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sc_assets.feeds import readers
from sc_assets.feeds.aliases import ALIASES, export_headers
from sc_assets.feeds.errors import LandingFileError
from sc_assets.feeds.readers import canonical_schema, read_landing_file
from sc_assets.feeds.schemas import FEEDS
from sc_assets_tests.conftest import FIXTURES

LANDING = FIXTURES / "landing"


def _frame(path: Path, feed: str) -> pd.DataFrame:
    return read_landing_file(path, feed).to_pandas()


def test_every_fixture_file_reads_into_the_canonical_schema() -> None:
    files = sorted(p for p in LANDING.rglob("*") if p.is_file())
    assert {p.parent.name for p in files} == set(FEEDS)  # a fixture for every feed
    for p in files:
        t = read_landing_file(p, p.parent.name)
        schema = canonical_schema(p.parent.name)
        assert t.schema.names == schema.names + ["source_line"], p
        assert t.select(schema.names).schema.equals(schema), p
        assert t.num_rows > 0, p


def test_tushare_csv_values_and_lines() -> None:
    df = _frame(LANDING / "stock_daily" / "20240122.csv", "stock_daily")
    raw = pd.read_csv(LANDING / "stock_daily" / "20240122.csv", dtype={"trade_date": str})
    assert len(df) == len(raw) == 8
    assert df["trade_date"].tolist() == [dt.date(2024, 1, 22)] * 8
    np.testing.assert_allclose(df["amount"].to_numpy(), raw["amount"].to_numpy())
    assert df["source_line"].tolist() == list(range(2, 10))
    # source_line is the physical line of the row in the file (header = line 1)
    lines = (LANDING / "stock_daily" / "20240122.csv").read_text().splitlines()
    for code, line in zip(df["ts_code"], df["source_line"], strict=True):
        assert lines[line - 1].startswith(code)


def test_gbk_chinese_export_matches_canonical_units() -> None:
    """The GBK file states vol in shares (股) and amount in CNY (元); canonical is lots and 1,000 CNY."""
    path = LANDING / "stock_daily" / "20240124.csv"
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # really GBK
    vendor = pd.read_csv(path, encoding="gbk")
    df = _frame(path, "stock_daily")
    assert df["ts_code"].tolist() == ["600000.SH", "000001.SZ", "300750.SZ", "688981.SH", "430047.BJ"]
    np.testing.assert_allclose(df["vol"], vendor["成交量(股)"] / 100)
    np.testing.assert_allclose(df["amount"], vendor["成交额(元)"] / 1000)
    np.testing.assert_allclose(df["close"], vendor["收盘价(元)"])
    assert set(df["trade_date"]) == {dt.date(2024, 1, 24)}


def test_utf8_bom_chinese_export() -> None:
    path = LANDING / "daily_basic" / "20240122.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    vendor = pd.read_csv(path, encoding="utf-8-sig")
    df = _frame(path, "daily_basic")
    np.testing.assert_allclose(df["total_share"], vendor["总股本(股)"] / 1e4)  # 10,000 shares
    np.testing.assert_allclose(df["total_mv"], vendor["总市值(元)"] / 1e4)  # 10,000 CNY
    np.testing.assert_allclose(df["turnover_rate"], vendor["换手率(%)"])  # percent stays percent
    # consistency of the raw units: total_mv [10k CNY] = close [CNY] x total_share [10k shares]
    np.testing.assert_allclose(df["total_mv"], df["close"] * df["total_share"])


def test_gz_and_parquet_equal_their_csv_twins(tmp_path: Path) -> None:
    csv_df = _frame(LANDING / "stock_daily" / "20240122.csv", "stock_daily")
    gz = tmp_path / "20240122.csv.gz"
    gz.write_bytes(gzip.compress((LANDING / "stock_daily" / "20240122.csv").read_bytes()))
    pd.testing.assert_frame_equal(_frame(gz, "stock_daily"), csv_df)
    pq_path = tmp_path / "20240122.parquet"
    raw = pd.read_csv(LANDING / "stock_daily" / "20240122.csv", dtype={"trade_date": str})
    raw.to_parquet(pq_path, index=False)
    pq_df = _frame(pq_path, "stock_daily")
    assert pq_df["source_line"].tolist() == list(range(1, 9))  # Parquet: 1-based row number
    pd.testing.assert_frame_equal(pq_df.drop(columns="source_line"), csv_df.drop(columns="source_line"))
    # native timestamp dates in Parquet
    raw.assign(trade_date=pd.Timestamp("2024-01-22 15:00")).to_parquet(pq_path, index=False)
    assert set(_frame(pq_path, "stock_daily")["trade_date"]) == {dt.date(2024, 1, 22)}


def test_fixture_parquet_and_gz_files() -> None:
    assert pq.read_metadata(LANDING / "adj_factor" / "20240122.parquet").num_rows == 5
    df = _frame(LANDING / "stock_daily" / "20240123.csv.gz", "stock_daily")
    assert len(df) == 5 and set(df["trade_date"]) == {dt.date(2024, 1, 23)}


def test_gbk_bytes_after_an_ascii_sample_are_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A canonical (ASCII) header with GBK names far into the file: the retry reads it as GB18030."""
    monkeypatch.setattr(readers, "SNIFF_BYTES", 64)
    rows = [f"{600000 + i}.SH,Name{i},Bank,main,19991110," for i in range(20)] + ["600100.SH,浦发银行,银行,main,19991110,"]
    path = tmp_path / "20240124.csv"
    path.write_bytes(("ts_code,name,industry,market,list_date,delist_date\n" + "\n".join(rows) + "\n").encode("gbk"))
    df = _frame(path, "stock_basic")
    assert df["name"].iloc[-1] == "浦发银行" and df["industry"].iloc[-1] == "银行"


def test_streaming_path_equals_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 3000
    df = pd.DataFrame({"ts_code": [f"{i:06d}" for i in range(n)], "trade_date": "20240122",
                       "adj_factor": np.linspace(1, 2, n)})
    path = tmp_path / "20240122.csv"
    df.to_csv(path, index=False)
    whole = read_landing_file(path, "adj_factor")
    monkeypatch.setattr(readers, "STREAM_BYTES", 0)
    monkeypatch.setattr(readers, "BLOCK_SIZE", 4096)  # many small batches
    streamed = read_landing_file(path, "adj_factor")
    assert streamed.equals(whole)
    assert streamed["source_line"].to_pylist() == list(range(2, n + 2))


def test_fullwidth_brackets_and_ignored_vendor_columns(tmp_path: Path) -> None:
    path = tmp_path / "20240122.csv"
    path.write_text("代码,日期,收盘价（元）,前收盘价(元),pct_chg\n600000,20240122,6.6,6.5,1.5\n", encoding="utf-8")
    df = _frame(path, "index_daily")
    assert df["close"].tolist() == [6.6] and df["open"].isna().all()  # nullable columns may be absent


def test_first_alias_per_field_is_the_export_header() -> None:
    for feed in ALIASES:
        eh = export_headers(feed)
        assert set(eh) == set(FEEDS[feed].column_names), feed
        for field, (header, _) in eh.items():
            assert header == next(a.header for a in ALIASES[feed] if a.field == field)


def test_export_headers_round_trip(tmp_path: Path) -> None:
    """What the simulator writes with export_headers (values / factor) reads back to canonical values."""
    for p in sorted(LANDING.glob("*/*.csv")):
        feed = p.parent.name
        canonical = read_landing_file(p, feed).to_pandas()
        eh = export_headers(feed)
        vendor = canonical.drop(columns="source_line").copy()
        for field, (_, factor) in eh.items():
            if FEEDS[feed].column(field).dtype == "float":
                vendor[field] = vendor[field] / factor
        vendor = vendor.rename(columns={f: h for f, (h, _) in eh.items()})
        out = tmp_path / p.name
        vendor.to_csv(out, index=False, encoding="gbk")
        back = read_landing_file(out, feed).to_pandas()
        pd.testing.assert_frame_equal(back, canonical, check_exact=False, rtol=1e-12)


# ---- errors name file, line, column and what was expected ------------------------------

def _write(tmp_path: Path, text: str | bytes, name: str = "20240122.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


HEADER = "ts_code,trade_date,open,high,low,close,pre_close,vol,amount\n"
GOOD = "600000.SH,20240122,6.6,6.8,6.3,6.6,6.5,100,66\n"


@pytest.mark.parametrize(
    ("body", "line", "column", "words"),
    [
        (HEADER + GOOD + "000001.SZ,20240122,9.1,9.3,abc,9.1,9.0,100,91\n", 3, "low", "number"),
        (HEADER + GOOD + GOOD + "000001.SZ,20240230,9.1,9.3,9.0,9.1,9.0,100,91\n", 4, "trade_date", "YYYYMMDD"),
        (HEADER + GOOD + "000001.SZ,20240122,9.1,9.3\n", 3, None, "fields"),
        (HEADER.replace("close,pre", "收盘,pre") + GOOD, 1, "收盘", "收盘价(元)"),
        (HEADER.replace("open", "开盘价(元)").replace("high", "开盘价") + GOOD, 1, "开盘价", "ambiguous"),
        (HEADER.replace(",amount", "") + GOOD.rsplit(",", 1)[0] + "\n", 1, "amount", "amount"),
    ],
    ids=["bad-number", "impossible-date", "truncated-line", "unknown-header", "ambiguous-header", "missing-column"],
)
def test_unparseable_files_name_file_line_column(tmp_path, body, line, column, words) -> None:
    path = _write(tmp_path, body)
    before = path.read_bytes()
    with pytest.raises(LandingFileError) as err:
        read_landing_file(path, "stock_daily", display_name="landing/stock_daily/20240122.csv")
    e = err.value
    msg = str(e)
    assert e.path == "landing/stock_daily/20240122.csv" and e.path in msg
    assert e.line == line and f"line {line}" in msg
    if column:
        assert e.column == column and repr(column) in msg
    assert words in msg
    assert path.read_bytes() == before  # the file stays in landing untouched


def test_truncated_gzip_names_the_line(tmp_path: Path) -> None:
    body = (HEADER + GOOD * 2000).encode()
    blob = gzip.compress(body)
    path = _write(tmp_path, blob[: len(blob) // 2], "20240122.csv.gz")
    with pytest.raises(LandingFileError, match="truncated gzip") as err:
        read_landing_file(path, "stock_daily")
    assert err.value.line is not None and 1 < err.value.line < 2001


def test_undecodable_bytes_and_empty_files(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER.encode() + GOOD.encode() + b"\xff\xfe\xfa,20240122,1,1,1,1,1,1,1\n")
    with pytest.raises(LandingFileError, match="UTF-8 or GBK") as err:
        read_landing_file(path, "stock_daily")
    assert err.value.line == 3
    with pytest.raises(LandingFileError, match="empty file"):
        read_landing_file(_write(tmp_path, b"", "20240123.csv"), "stock_daily")
    with pytest.raises(LandingFileError, match="Parquet"):
        read_landing_file(_write(tmp_path, b"PAR1garbage", "20240124.parquet"), "stock_daily")


# ---- several files at once (read_landing_files: grouped reads, issue 11) ----------------------

def _per_file(paths: list[Path], feed: str) -> tuple[pd.DataFrame, list[int]]:
    tables = [read_landing_file(p, feed) for p in paths]
    return pd.concat([t.to_pandas() for t in tables], ignore_index=True), [t.num_rows for t in tables]


def test_many_files_equal_file_by_file_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Grouped CSV bodies and Parquet files, mixed with files that take the per-file path (a
    Chinese GBK export, a gzip, a non-canonical code, a header-only file, a CRLF file, a file
    without a final newline): same values and source_line as reading each file alone."""
    rows = [f"{c},2024012{d},6.6,6.8,6.3,6.6,6.5,{100 * d},{66 * d}\n" for d in (2, 3) for c in ("600000.SH", "000001.SZ")]
    paths = [
        _write(tmp_path, HEADER + "".join(rows[:2]), "a.csv"),
        _write(tmp_path, HEADER + rows[2].replace("600000.SH", "sh600000"), "b.csv"),  # normalised code
        _write(tmp_path, HEADER, "c.csv"),  # header only
        _write(tmp_path, (HEADER + rows[3]).replace("\n", "\r\n"), "d.csv"),
        _write(tmp_path, HEADER + rows[0].rstrip("\n"), "e.csv"),  # no final newline
        LANDING / "stock_daily" / "20240124.csv",  # GBK Chinese export
        LANDING / "stock_daily" / "20240123.csv.gz",
        _write(tmp_path, HEADER + "".join(rows), "f.csv"),
    ]
    for i in (0, 1):
        pq.write_table(read_landing_file(paths[i], "stock_daily").drop_columns(["source_line"]),
                       tmp_path / f"p{i}.parquet")
    paths += [tmp_path / "p0.parquet", tmp_path / "p1.parquet"]
    alone: list[str] = []
    per_file = readers.read_landing_file
    monkeypatch.setattr(readers, "read_landing_file", lambda p, *a, **k: alone.append(Path(p).name) or per_file(p, *a, **k))
    table, counts = readers.read_landing_files(paths, "stock_daily")
    monkeypatch.undo()
    # a.csv..e.csv and the two Parquet files were read as groups
    assert alone == ["20240124.csv", "20240123.csv.gz", "f.csv"]
    want, want_counts = _per_file(paths, "stock_daily")
    assert counts == want_counts and sum(counts) == table.num_rows
    pd.testing.assert_frame_equal(table.to_pandas(), want)
    assert table.schema.names == canonical_schema("stock_daily").names + ["source_line"]


def test_vendor_gbk_header_files_read_as_one_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports with a Chinese GBK header and an ASCII body (vendor units) group like canonical files;
    a UTF-8 body with Chinese text too: same values, units and source_line as file by file."""
    gbk = (LANDING / "stock_daily" / "20240124.csv").read_bytes()
    head, body = gbk.split(b"\n", 1)
    paths = [_write(tmp_path, gbk, "g1.csv"),
             _write(tmp_path, head + b"\n" + body.replace(b"2024-01-24", b"2024-01-25"), "g2.csv")]
    nav = LANDING / "fund_nav" / "20240119.csv"
    navs = [nav, _write(tmp_path, nav.read_bytes(), "n2.csv")]
    alone: list[str] = []
    per_file = readers.read_landing_file
    monkeypatch.setattr(readers, "read_landing_file", lambda p, *a, **k: alone.append(Path(p).name) or per_file(p, *a, **k))
    table, counts = readers.read_landing_files(paths, "stock_daily")
    nav_table, nav_counts = readers.read_landing_files(navs, "fund_nav")
    monkeypatch.undo()
    assert alone == []
    want, want_counts = _per_file(paths, "stock_daily")
    assert counts == want_counts
    pd.testing.assert_frame_equal(table.to_pandas(), want)
    want, want_counts = _per_file(navs, "fund_nav")
    assert nav_counts == want_counts
    pd.testing.assert_frame_equal(nav_table.to_pandas(), want)


def test_many_files_blank_line_falls_back_to_per_file_lines(tmp_path: Path) -> None:
    a = _write(tmp_path, HEADER + GOOD + "\n" + GOOD.replace("600000.SH", "000001.SZ"), "a.csv")
    b = _write(tmp_path, HEADER + GOOD, "b.csv")
    table, counts = readers.read_landing_files([a, b], "stock_daily")
    want, want_counts = _per_file([a, b], "stock_daily")
    assert counts == want_counts
    pd.testing.assert_frame_equal(table.to_pandas(), want)


@pytest.mark.parametrize("bad", ["000001.SZ,20240122,9.1,9.3,abc,9.1,9.0,100,91\n",
                                 "000001.SZ,20240230,9.1,9.3,9.0,9.1,9.0,100,91\n", "000001.SZ,20240122,9.1,9.3\n"],
                         ids=["bad-number", "impossible-date", "truncated-line"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_many_files_error_names_the_bad_file_and_line(tmp_path: Path, bad: str, fmt: str) -> None:
    """A bad cell in the third of four files: the error names that file and its own line,
    exactly as reading it alone does."""
    paths = [_write(tmp_path, HEADER + GOOD * 2, f"{i}.csv") for i in range(4)]
    paths[2] = _write(tmp_path, HEADER + GOOD + bad, "2.csv")
    names = [f"landing/stock_daily/2024012{i}.{fmt}" for i in range(4)]
    if fmt == "parquet":
        if "9.3\n" in bad:
            pytest.skip("a truncated line cannot exist in a Parquet file")
        for i, p in enumerate(paths):
            df = pd.read_csv(p, dtype=str)
            paths[i] = tmp_path / f"{i}.parquet"
            df.to_parquet(paths[i], index=False)
    with pytest.raises(LandingFileError) as alone:
        read_landing_file(paths[2], "stock_daily", display_name=names[2])
    with pytest.raises(LandingFileError) as many:
        readers.read_landing_files(paths, "stock_daily", names)
    assert str(many.value) == str(alone.value) and many.value.path == names[2]
    assert (many.value.line, many.value.column) == (alone.value.line, alone.value.column)


def test_header_mapping_is_reused_and_errors_name_each_file() -> None:
    """The memoised header map equals a fresh one; a bad header is reported with the path of the
    file at hand every time (errors are never memoised)."""
    headers = ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount"]
    first = readers.map_header("stock_daily", headers, "a.csv")
    assert readers.map_header("stock_daily", list(headers), "b.csv") == first == readers._map_header(
        "stock_daily", headers, "c.csv")
    for name in ("x.csv", "y.csv"):
        with pytest.raises(LandingFileError, match=name):
            readers.map_header("stock_daily", headers[:-1] + ["bogus"], name)
