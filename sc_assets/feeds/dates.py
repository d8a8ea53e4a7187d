"""Date-cell parsing, vectorised on Arrow arrays.

Accepted cells: ``YYYYMMDD`` (Tushare), ``YYYY-MM-DD`` / ``YYYY/MM/DD`` / ``YYYY.MM.DD``
(optionally followed by a time, e.g. ``2024-01-22 00:00:00`` or ``2024-01-22T15:00:00``),
single-digit month/day in the separated forms (``2024/1/2``), and native Arrow dates or
timestamps (Parquet), and integers like ``20240122``. The time of day is dropped: the
result is a calendar date (``date32``).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

EXPECTED = "a date as YYYYMMDD, YYYY-MM-DD or a datetime"


def parse_dates(values: pa.Array | pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Parse ``values`` to ``date32``.

    Returns ``(dates, bad)`` where ``bad`` is True for non-empty cells that are not a valid
    date (e.g. ``20241345``, ``abc``); nulls and blank cells give null dates, not ``bad``.
    """
    arr = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    t = arr.type
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        if pa.types.is_timestamp(t) and t.tz is not None:  # the calendar date in Shanghai
            arr = pc.local_timestamp(pc.cast(arr, pa.timestamp(t.unit, tz="Asia/Shanghai")))
        out = pc.cast(pc.floor_temporal(arr, unit="day") if pa.types.is_timestamp(t) else arr, pa.date32())
        return out, pc.and_(pc.is_valid(out), pc.is_null(out))  # native dates are never bad
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        arr = pc.cast(pc.cast(arr, pa.int64()), pa.string())
    elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        arr = pc.cast(arr, pa.string())

    # parse each distinct cell once (a daily file holds one or a few dates)
    flat = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    enc = pc.dictionary_encode(flat)
    out_u, bad_u = _parse_strings(enc.dictionary)
    out = pc.take(out_u, enc.indices)
    bad = pc.fill_null(pc.take(bad_u, enc.indices), False)
    return pa.chunked_array([out]), pa.chunked_array([bad])


def _parse_strings(arr: pa.Array) -> tuple[pa.Array, pa.Array]:
    s = pc.utf8_trim_whitespace(arr)
    blank = pc.or_kleene(pc.is_null(s), pc.equal(s, ""))
    # fast path: all cells are YYYYMMDD
    eight = pc.match_substring_regex(s, r"^\d{8}$")
    if pc.all(pc.or_kleene(blank, eight)).as_py():
        fmt, text = "%Y%m%d", s
    else:
        # separated forms -> zero-padded YYYY-MM-DD, then one strptime
        iso = pc.replace_substring_regex(s, r"^(\d{4})[-/.](\d)(?:[^\d]|$)(.*)$", r"\1-0\2-\3")
        iso = pc.replace_substring_regex(iso, r"^(\d{4})-(\d{2})-(\d)(?:[^\d].*)?$", r"\1-\2-0\3")
        iso = pc.replace_substring_regex(iso, r"^(\d{4})[-/.](\d{2})[-/.](\d{2})(?:[ T].*)?$", r"\1-\2-\3")
        iso = pc.replace_substring_regex(iso, r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3")
        fmt, text = "%Y-%m-%d", iso
    ts = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
    # strptime rolls impossible days over (20240230 -> 2024-03-01): require a round trip
    same = pc.equal(pc.strftime(ts, format=fmt), text)
    ts = pc.if_else(pc.fill_null(same, False), ts, pa.scalar(None, ts.type))
    out = pc.cast(ts, pa.date32())
    bad = pc.and_(pc.invert(pc.fill_null(blank, True)), pc.is_null(out))
    return out, bad
