"""Read one landing file into the canonical raw schema of ``feeds/schemas.py``.

Formats: CSV, CSV.gz, Parquet. Encodings (CSV): UTF-8, UTF-8 with BOM, GBK/GB18030 — detected
by trying ``utf-8-sig`` and then ``gb18030`` (a superset of GBK) on the first MiB, and again on
the whole file if a later byte proves the guess wrong. Headers are either the canonical
Tushare names or vendor (Wind/Choice-style, Chinese) headers from the ONE alias registry
``feeds/aliases.py``; unit factors in the registry are applied here, so the result is always
in raw Tushare units. Codes are normalised (``feeds/codes.py``), dates parsed to ``date32``
(``feeds/dates.py``).

Output: a ``pyarrow.Table`` with exactly the feed's canonical columns in registry order and
types (str -> string, date -> date32, float -> float64, int -> int64, bool -> bool) plus
``source_line`` (int64): the 1-based physical line of the row in a CSV with its header on
line 1 (row index + 2; assumes no blank lines or quoted newlines inside the data), or the
1-based row number in a Parquet file.

Anything that makes the file unreadable — bad encoding, truncated/corrupt file, wrong number
of fields, an unparseable date/number/boolean cell, unknown/ambiguous/missing headers — raises
:class:`LandingFileError` naming file, line and column and what was expected. Row-level
*content* problems (missing keys, bad prices, duplicates) are not errors here: they are
quarantined by ``feeds/validation.py``.

Speed: the canonical CSV header takes the fast path (pyarrow.csv with explicit column types,
no inference, one regex pass per code column, one ``strptime`` per date column): about 2 ms
for a 5,000-row daily file. Files above ``STREAM_BYTES`` are read in record batches
(``pyarrow.csv.open_csv`` / ``ParquetFile.iter_batches``) so the parse buffers stay bounded.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from sc_assets.feeds.aliases import IGNORED, accepted_headers, header_lookup, normalise_header
from sc_assets.feeds.codes import code_kind, normalise_codes
from sc_assets.feeds.dates import EXPECTED as DATE_EXPECTED
from sc_assets.feeds.dates import parse_dates
from sc_assets.feeds.errors import LandingFileError
from sc_assets.feeds.schemas import FEEDS, FeedSpec

SNIFF_BYTES = 1 << 20
STREAM_BYTES = 32 << 20  # files larger than this are parsed batch by batch
BLOCK_SIZE = 8 << 20
NULL_VALUES = ["", "#N/A", "#N/A N/A", "#NA", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null", "None", "--", "-"]
TRUE_VALUES = {"true", "t", "1", "1.0", "y", "yes", "是", "st", "*st"}
FALSE_VALUES = {"false", "f", "0", "0.0", "n", "no", "否"}
EXTENSIONS = (".csv.gz", ".csv", ".parquet")

ARROW_TYPES = {"str": pa.string(), "date": pa.date32(), "float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}
EXPECTED = {
    "float": "a number (e.g. 10.25)",
    "int": "an integer",
    "bool": "a boolean (true/false, 1/0, 是/否)",
    "date": DATE_EXPECTED,
}


def canonical_schema(feed: str) -> pa.Schema:
    """Arrow schema of a feed's canonical columns (reader output without ``source_line``)."""
    spec = FEEDS[feed]
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.dtype]) for c in spec.columns])


@dataclass(frozen=True)
class HeaderMap:
    """How a file's header maps to the feed: per position the canonical field (or None when
    the column is known-ignorable), and the unit factor per field."""

    fields: tuple[str | None, ...]
    headers: tuple[str, ...]
    factors: dict[str, float]

    def header_of(self, field: str) -> str:
        for f, h in zip(self.fields, self.headers, strict=True):
            if f == field:
                return h
        return field


def map_header(feed: str, headers: list[str], path: str) -> HeaderMap:
    """Map a file's header to canonical fields, or raise a :class:`LandingFileError` for an
    unknown header, two headers for one field (ambiguous), or a missing required field.

    A header that mapped once maps the same way again (the registry is static): the mapping is
    memoised per (feed, header), since a backfill maps the same header for each of ~2,431 files
    (~0.25 ms each, issue 11). A failing header is mapped afresh so the error names ``path``."""
    try:
        return _map_header_memo(feed, tuple(headers))
    except LandingFileError:
        return _map_header(feed, headers, path)


@functools.lru_cache(maxsize=256)
def _map_header_memo(feed: str, headers: tuple[str, ...]) -> HeaderMap:
    return _map_header(feed, list(headers), "")


def _map_header(feed: str, headers: list[str], path: str) -> HeaderMap:
    spec = FEEDS[feed]
    lookup = header_lookup(feed)
    ignored = {normalise_header(h).lower() for h in IGNORED.get(feed, set())}
    fields: list[str | None] = []
    factors: dict[str, float] = {}
    seen: dict[str, str] = {}
    for raw in headers:
        h = normalise_header(raw)
        alias = lookup.get(h) or lookup.get(h.lower())
        if alias is None:
            if h.lower() in ignored:
                fields.append(None)
                continue
            raise LandingFileError(
                path, f"unknown column header for feed {feed}", line=1, column=raw,
                expected="one of: " + ", ".join(accepted_headers(feed)),
            )
        if alias.field in seen:
            raise LandingFileError(
                path,
                f"ambiguous header: columns {seen[alias.field]!r} and {raw!r} both map to field {alias.field!r}",
                line=1, column=raw,
                expected="exactly one of: " + ", ".join(accepted_headers(feed, alias.field)),
            )
        seen[alias.field] = raw
        fields.append(alias.field)
        factors[alias.field] = alias.factor
    missing = [c for c in spec.required if c not in seen]
    if missing:
        raise LandingFileError(
            path, f"missing required column(s) {missing} for feed {feed}", line=1,
            column=missing[0], expected="one of: " + ", ".join(accepted_headers(feed, missing[0])),
        )
    return HeaderMap(tuple(fields), tuple(headers), factors)


# ---------------------------------------------------------------------------------------
# CSV


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _detect_encoding(sample: bytes, complete: bool, path: str, first_line: int = 1) -> str:
    """'utf-8-sig' (UTF-8, BOM or not) or 'gb18030'; raise if neither decodes ``sample``."""
    if sample.isascii():
        return "utf-8-sig"
    errors = {}
    for enc in ("utf-8-sig", "gb18030"):
        try:
            codecs.getincrementaldecoder(enc)().decode(sample, final=complete)
            return enc
        except UnicodeDecodeError as exc:
            errors[enc] = exc
    exc = errors["utf-8-sig"]
    raise LandingFileError(
        path, "cannot decode the file as UTF-8 or GBK/GB18030",
        line=first_line - 1 + _line_of_offset(sample, exc.start),
        expected="a CSV in UTF-8, UTF-8 with BOM, or GBK",
    )


def _read_sample(path: Path, rel: str) -> tuple[bytes, bool]:
    try:
        with _open_bytes(path) as fh:
            size = SNIFF_BYTES if not path.name.endswith(".gz") else min(SNIFF_BYTES, 1 << 16)
            sample = fh.read(size)
            complete = len(sample) < size or not fh.read(1)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise LandingFileError(rel, f"corrupt or truncated gzip file ({exc})", line=_gzip_good_lines(path) + 1,
                               expected="a complete gzip stream") from exc
    if not sample or sample.isspace():
        raise LandingFileError(rel, "empty file", line=1, expected="a header line and data rows")
    return sample, complete


def _header(sample: bytes, encoding: str, rel: str) -> tuple[list[str], str]:
    end = sample.find(b"\n")
    head = sample if end < 0 else sample[:end]
    first = head.decode(encoding, errors="replace").rstrip("\r")
    delimiter = "," if ("," in first or "\t" not in first) else "\t"
    headers = next(csv.reader([first], delimiter=delimiter))
    headers = [h.replace("\ufeff", "").strip() for h in headers]
    if not any(headers):
        raise LandingFileError(rel, "the first line is empty", line=1, expected="a header line")
    return headers, delimiter


def _reader_encoding(encoding: str) -> str:
    return "utf8" if encoding.startswith("utf-8") else encoding


def _read_csv_tables(path: Path, rel: str, spec: FeedSpec, hmap: HeaderMap, encoding: str,
                     delimiter: str, typed: bool, stream: bool) -> list[pa.Table]:
    names = [f if f is not None else f"__ignored_{i}" for i, f in enumerate(hmap.fields)]
    include = [f for f in hmap.fields if f is not None]
    types = {}
    for f in include:
        dtype = spec.column(f).dtype
        types[f] = pa.float64() if (typed and dtype == "float") else pa.int64() if (typed and dtype == "int") else pa.string()
    bad_rows: list = []

    def on_invalid(row):
        bad_rows.append(row)
        return "error"

    # a whole small file is one block: the serial reader costs ~2 ms per call with an 8 MiB block
    # (most of it buffer set-up) vs ~0.2 ms threaded with a block sized to the file (issue 11)
    block = BLOCK_SIZE if stream else min(BLOCK_SIZE, max(1 << 16, 2 * path.stat().st_size))
    read_opts = pcsv.ReadOptions(column_names=names, skip_rows=1, encoding=_reader_encoding(encoding),
                                 use_threads=not stream, block_size=block)
    parse_opts = pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid)
    conv_opts = pcsv.ConvertOptions(column_types=types, include_columns=include, null_values=NULL_VALUES,
                                    strings_can_be_null=True, quoted_strings_can_be_null=True)
    try:
        if not stream:
            return [pcsv.read_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=conv_opts)]
        out = []
        with pcsv.open_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=conv_opts) as rd:
            for batch in rd:
                out.append(pa.Table.from_batches([batch]))
        return out
    except pa.ArrowInvalid as exc:
        if bad_rows:
            row = bad_rows[0]
            line = row.number if row.number is not None else _find_bad_line(path, encoding, delimiter, len(names))
            raise LandingFileError(
                rel, f"wrong number of fields: expected {row.expected_columns}, got {row.actual_columns} "
                "(truncated or malformed line)", line=line, value=(row.text or "")[:80],
                expected=f"{row.expected_columns} comma-separated fields as in the header",
            ) from exc
        raise


def _gzip_good_lines(path: Path) -> int:
    """Complete lines that decompress before a gzip stream breaks off."""
    n = 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                n += d.decompress(chunk).count(b"\n")
    except zlib.error:
        pass
    return n


def _find_bad_line(path: Path, encoding: str, delimiter: str, n_fields: int) -> int | None:
    with _open_bytes(path) as fh:
        text = io.TextIOWrapper(fh, encoding=encoding, errors="replace", newline="")
        for i, row in enumerate(csv.reader(text, delimiter=delimiter), start=1):
            if row and len(row) != n_fields:
                return i
    return None


def _read_csv(path: Path, rel: str, spec: FeedSpec) -> tuple[list[pa.Table], HeaderMap, int]:
    sample, complete = _read_sample(path, rel)
    nl = sample.find(b"\n")
    head, body = (sample, b"") if nl < 0 else (sample[: nl + 1], sample[nl + 1 :])
    headers, delimiter = _header(head, _detect_encoding(head, True, rel), rel)
    # The header row is skipped by the parser (names come from the mapping), so only the body's
    # encoding matters: an ASCII body of a GBK Chinese-header export is read without transcoding.
    encoding = _detect_encoding(body, complete, rel, first_line=2)
    hmap = map_header(spec.name, headers, rel)
    stream = path.stat().st_size > STREAM_BYTES
    attempts = [encoding] + (["gb18030"] if encoding != "gb18030" and not complete else [])
    last_exc: Exception | None = None
    for enc in attempts:
        try:
            try:
                return _read_csv_tables(path, rel, spec, hmap, enc, delimiter, True, stream), hmap, 2
            except pa.ArrowInvalid as exc:
                if "conversion error" not in str(exc).lower():
                    raise
                # an unparseable number: re-read as text to name the cell
                tables = _read_csv_tables(path, rel, spec, hmap, enc, delimiter, False, stream)
                return tables, hmap, 2
        except pa.ArrowInvalid as exc:
            last_exc = exc
            if "utf8" in str(exc).lower() or "utf-8" in str(exc).lower():
                continue  # a non-UTF-8 byte past the sniffed sample: retry as GB18030
            raise LandingFileError(rel, f"cannot parse the CSV ({exc})", expected="a well-formed CSV") from exc
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise LandingFileError(rel, f"corrupt or truncated gzip file ({exc})", line=_gzip_good_lines(path) + 1,
                                   expected="a complete gzip stream") from exc
        except UnicodeDecodeError as exc:
            raise LandingFileError(rel, f"cannot decode the file as {enc} ({exc.reason})",
                                   expected="a CSV in UTF-8, UTF-8 with BOM, or GBK") from exc
        except OSError as exc:  # pyarrow surfaces zlib/gzip errors as OSError
            line = _gzip_good_lines(path) + 1 if path.name.endswith(".gz") else None
            raise LandingFileError(rel, f"corrupt or truncated file ({exc})", line=line,
                                   expected="a complete gzip stream" if line else "a complete file") from exc
    raise LandingFileError(rel, f"cannot decode the file as UTF-8 or GBK/GB18030 ({last_exc})",
                           expected="a CSV in UTF-8, UTF-8 with BOM, or GBK")


# ---------------------------------------------------------------------------------------
# Parquet


def _read_parquet(path: Path, rel: str, spec: FeedSpec) -> tuple[list[pa.Table], HeaderMap, int]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LandingFileError(rel, f"not a readable Parquet file ({exc})", expected="a complete Parquet file") from exc
    headers = [n for n in pf.schema_arrow.names if not n.startswith("__index_level_")]
    hmap = map_header(spec.name, headers, rel)
    cols = [h for h, f in zip(hmap.headers, hmap.fields, strict=True) if f is not None]
    rename = {h: f for h, f in zip(hmap.headers, hmap.fields, strict=True) if f is not None}
    try:
        if path.stat().st_size > STREAM_BYTES:
            tables = [pa.Table.from_batches([b]) for b in pf.iter_batches(columns=cols, batch_size=1 << 20)]
        else:
            # one landing file is small: a serial read beats the thread pool (~0.3 vs ~2 ms per file
            # on the shared 2-core box, issue 11)
            tables = [pf.read(columns=cols, use_threads=False)]
    except (pa.ArrowInvalid, OSError) as exc:
        raise LandingFileError(rel, f"corrupt or truncated Parquet file ({exc})", expected="a complete Parquet file") from exc
    tables = [t.rename_columns([rename[c] for c in t.column_names]) for t in tables]
    return tables, hmap, 1


# ---------------------------------------------------------------------------------------
# canonicalisation (shared)


def _fail_cell(rel: str, hmap: HeaderMap, field: str, bad: np.ndarray, values, first_line: int, dtype: str):
    i = int(np.flatnonzero(bad)[0])
    v = values[i]
    raise LandingFileError(
        rel, f"unparseable {dtype} cell ({int(bad.sum())} bad cell(s) in this column)",
        line=first_line + i, column=hmap.header_of(field),
        value=None if v is None else str(v)[:80], expected=EXPECTED[dtype],
    )


def _to_float(col: pa.ChunkedArray, rel: str, hmap: HeaderMap, field: str, first_line: int) -> pa.ChunkedArray:
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type):
        return pc.cast(col, pa.float64())
    text = pc.cast(col, pa.string()) if not pa.types.is_string(col.type) else col
    s = pd.Series(text.to_numpy(zero_copy_only=False), dtype=object)
    stripped = s.str.strip().str.replace(",", "", regex=False)
    stripped = stripped.where(~stripped.isin(NULL_VALUES), None)
    num = pd.to_numeric(stripped, errors="coerce")
    bad = (num.isna() & stripped.notna()).to_numpy()
    if bad.any():
        _fail_cell(rel, hmap, field, bad, s.to_numpy(), first_line, "float")
    return pa.chunked_array([pa.array(num.to_numpy(dtype="float64"), pa.float64(), from_pandas=True)])


def _to_bool(col: pa.ChunkedArray, rel: str, hmap: HeaderMap, field: str, first_line: int) -> pa.ChunkedArray:
    if pa.types.is_boolean(col.type):
        return col
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        col = pc.cast(col, pa.string())
    low = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(col, pa.string())))
    true = pc.is_in(low, value_set=pa.array(sorted(TRUE_VALUES)))
    false = pc.is_in(low, value_set=pa.array(sorted(FALSE_VALUES)))
    bad = pc.and_(pc.is_valid(low), pc.invert(pc.or_(true, false)))
    bad_np = bad.to_numpy(zero_copy_only=False)
    if bad_np.any():
        _fail_cell(rel, hmap, field, bad_np, col.to_pylist(), first_line, "bool")
    return pc.if_else(pc.is_null(low), pa.scalar(None, pa.bool_()), true)


def canonicalise(table: pa.Table, spec: FeedSpec, hmap: HeaderMap, rel: str, first_line: int) -> pa.Table:
    """Cast, scale, parse and normalise a table whose columns carry canonical names."""
    n = table.num_rows
    arrays = []
    for c in spec.columns:
        if c.name not in table.column_names:
            # only nullable columns can be absent (map_header checked required ones)
            arrays.append(pa.nulls(n, ARROW_TYPES[c.dtype]))
            continue
        col = table[c.name]
        if c.dtype == "float":
            col = _to_float(col, rel, hmap, c.name, first_line)
            factor = hmap.factors.get(c.name, 1.0)
            if factor != 1.0:
                col = pc.multiply(col, pa.scalar(factor))
        elif c.dtype == "int":
            col = pc.cast(_to_float(col, rel, hmap, c.name, first_line), pa.int64())
        elif c.dtype == "date":
            col, bad = parse_dates(col)
            bad_np = bad.to_numpy(zero_copy_only=False) if bad.null_count == 0 else pc.fill_null(bad, False).to_numpy(zero_copy_only=False)
            if bad_np.any():
                _fail_cell(rel, hmap, c.name, bad_np, table[c.name].to_pylist(), first_line, "date")
        elif c.dtype == "bool":
            col = _to_bool(col, rel, hmap, c.name, first_line)
        else:
            col = pc.cast(col, pa.string()) if not pa.types.is_string(col.type) else col
            if c.name in spec.code_columns:
                col = normalise_codes(col, code_kind(spec.name, c.name))
            elif pa.types.is_string(col.type):
                col = pc.utf8_trim_whitespace(col)
        arrays.append(col)
    arrays.append(pa.array(np.arange(first_line, first_line + n, dtype=np.int64)))
    names = spec.column_names + ["source_line"]
    return pa.Table.from_arrays(arrays, names=names)


def read_landing_file(path: str | Path, feed: str, display_name: str | None = None) -> pa.Table:
    """Read ``path`` (CSV, CSV.gz or Parquet) as ``feed`` into the canonical raw schema.

    ``display_name`` is how the file is named in errors (default: the path).
    Raises :class:`LandingFileError` for anything that makes the file unreadable.
    """
    if feed not in FEEDS:
        raise KeyError(f"unknown feed {feed!r}; known feeds: {sorted(FEEDS)}")
    spec = FEEDS[feed]
    path = Path(path)
    rel = display_name or str(path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        tables, hmap, first = _read_parquet(path, rel, spec)
    elif name.endswith(".csv") or name.endswith(".csv.gz"):
        tables, hmap, first = _read_csv(path, rel, spec)
    else:
        raise LandingFileError(rel, "unsupported file type", expected="a .csv, .csv.gz or .parquet file")
    out = []
    line = first
    for t in tables:
        out.append(canonicalise(t, spec, hmap, rel, line))
        line += t.num_rows
    if not out:
        return _empty(spec)
    return pa.concat_tables(out) if len(out) > 1 else out[0]


def read_landing_files(paths: Sequence[str | Path], feed: str,
                       display_names: Sequence[str] | None = None) -> tuple[pa.Table, list[int]]:
    """Read several landing files of ``feed`` into ONE canonical table (rows in file order) and
    the row count of each file.

    The result equals :func:`read_landing_file` file by file, concatenated (same values, same
    ``source_line``), with less work per file (issue 11): consecutive CSV files with the same
    header line (a vendor's GBK header too) and an ASCII or UTF-8 body are parsed as one buffer
    (their bodies joined), consecutive Parquet files with the same header and schema are
    concatenated, and each such group is canonicalised once. Anything unusual — gzip, a GBK
    body, quoted CSV, large files, a header that changes — is read file by file; and when a group fails anywhere
    (parse error, bad cell, or row counts that do not add up, e.g. blank lines) it is re-read
    file by file, so a :class:`LandingFileError` names the file, line and column exactly as
    :func:`read_landing_file` does.
    """
    if feed not in FEEDS:
        raise KeyError(f"unknown feed {feed!r}; known feeds: {sorted(FEEDS)}")
    spec = FEEDS[feed]
    paths = [Path(p) for p in paths]
    names = list(display_names) if display_names is not None else [str(p) for p in paths]
    pieces: list[pa.Table] = []
    counts: list[int] = []
    group: list[tuple[Path, str, object]] = []  # (path, rel, CSV body bytes | raw Parquet table)
    group_key: tuple | None = None
    group_meta: tuple | None = None  # CSV: (header bytes, hmap, delimiter); Parquet: (hmap,)

    def per_file(items) -> None:
        for path, rel, _ in items:
            t = read_landing_file(path, feed, display_name=rel)
            pieces.append(t)
            counts.append(t.num_rows)

    def flush() -> None:
        nonlocal group, group_key, group_meta
        items, key, meta = group, group_key, group_meta
        group, group_key, group_meta = [], None, None
        if not items:
            return
        if len(items) == 1:
            per_file(items)
            return
        try:
            table, n = _read_group(spec, key, meta, items)
        except (LandingFileError, pa.ArrowException, ValueError, UnicodeDecodeError):
            per_file(items)  # raises the exact per-file error (or reads a file the group could not)
            return
        pieces.append(table)
        counts.extend(n)

    for path, rel in zip(paths, names, strict=True):
        item = _group_item(path, rel, spec)
        if item is None:
            flush()
            per_file([(path, rel, None)])
            continue
        key, meta, payload = item
        if key != group_key:
            flush()
            group_key, group_meta = key, meta
        group.append((path, rel, payload))
    flush()
    if not pieces:
        return _empty(spec), []
    return (pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]), counts


def _group_item(path: Path, rel: str, spec: FeedSpec):
    """(group key, group meta, payload) of a file the grouped path can take, else None."""
    name = path.name.lower()
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size > STREAM_BYTES:
        return None
    if name.endswith(".csv"):
        data = path.read_bytes()
        nl = data.find(b"\n")
        if nl < 0 or b'"' in data:
            return None
        head, body = data[: nl + 1], data[nl + 1 :]
        if not body.isascii():
            try:  # a UTF-8 body joins the group; a GBK one is read file by file
                body.decode("utf-8")
            except UnicodeDecodeError:
                return None
        if body and not body.endswith(b"\n"):
            body += b"\n"
        try:
            # the header may be a vendor's Chinese one in GBK: it only selects the mapping
            # (the parser skips it), so such files group like canonical ones (issue 11)
            headers, delimiter = _header(head, _detect_encoding(head, True, rel), rel)
            hmap = map_header(spec.name, headers, rel)
        except LandingFileError:
            return None
        return ("csv", head.rstrip(b"\r\n")), (hmap, delimiter), body
    if name.endswith(".parquet"):
        try:
            # the whole (small) file in one read, parsed from memory: ~0.1 ms less per file than
            # Arrow's footer/column-chunk reads through its filesystem layer (issue 11)
            pf = pq.ParquetFile(pa.BufferReader(path.read_bytes()))
            headers = [n for n in pf.schema_arrow.names if not n.startswith("__index_level_")]
            hmap = map_header(spec.name, headers, rel)
        except (LandingFileError, pa.ArrowException, OSError):
            return None
        cols = [h for h, f in zip(hmap.headers, hmap.fields, strict=True) if f is not None]
        try:
            t = pf.read(columns=cols, use_threads=False)
        except (pa.ArrowException, OSError):
            return None
        t = t.rename_columns([hmap.fields[hmap.headers.index(c)] for c in t.column_names])
        return ("parquet", tuple(headers), t.schema), (hmap, None), t
    return None


def _read_group(spec: FeedSpec, key: tuple, meta: tuple, items: list) -> tuple[pa.Table, list[int]]:
    """One canonical table for a group of files sharing header (and schema); raises on anything."""
    hmap, delimiter = meta
    rel = items[0][1]
    if key[0] == "csv":
        counts = [body.count(b"\n") for _, _, body in items]
        buf = b"".join(body for _, _, body in items)
        names = [f if f is not None else f"__ignored_{i}" for i, f in enumerate(hmap.fields)]
        include = [f for f in hmap.fields if f is not None]
        types = {f: {"float": pa.float64(), "int": pa.int64()}.get(spec.column(f).dtype, pa.string()) for f in include}
        raw = pcsv.read_csv(
            pa.BufferReader(buf),
            read_options=pcsv.ReadOptions(column_names=names, encoding="utf8", use_threads=True,
                                          block_size=min(BLOCK_SIZE, max(1 << 16, len(buf) + 1))),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(column_types=types, include_columns=include, null_values=NULL_VALUES,
                                                strings_can_be_null=True, quoted_strings_can_be_null=True))
        first = 2
    else:
        counts = [t.num_rows for _, _, t in items]
        # one contiguous chunk per column: canonicalisation and validation then run on plain
        # arrays (zero-copy numpy views) instead of one chunk per file (issue 11)
        raw = pa.concat_tables([t for _, _, t in items]).combine_chunks()
        first = 1
    if raw.num_rows != sum(counts):
        raise ValueError("row counts do not add up (blank lines?)")
    table = canonicalise(raw, spec, hmap, rel, first)
    lines = np.concatenate([np.arange(first, first + n, dtype=np.int64) for n in counts])
    i = table.schema.get_field_index("source_line")
    return table.set_column(i, "source_line", pa.array(lines)), counts


def _empty(spec: FeedSpec) -> pa.Table:
    schema = canonical_schema(spec.name).append(pa.field("source_line", pa.int64()))
    return schema.empty_table()


__all__ = ["EXTENSIONS", "HeaderMap", "LandingFileError", "canonical_schema", "map_header", "read_landing_file",
           "read_landing_files"]
