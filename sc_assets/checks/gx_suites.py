"""Great Expectations 1.x suites for every raw feed, staging model and mart (DESIGN.md §7).

Public API (other layers call these; GX is imported lazily on the first call so that
``dagster dev`` and ``import sc_assets.definitions`` stay fast)::

    ok, meta = validate("marts.stock_daily_panel", df, days=context.partition_keys)

Suite names are ``"<layer>.<table>"``: ``raw.<feed>`` (bare ``<feed>`` is accepted too) and
``staging.stg_<feed>`` for each feed in :mod:`sc_assets.feeds.schemas`, plus
``marts.stock_daily_panel``, ``marts.index_daily_panel``, ``marts.futures_basis_panel``,
``marts.etf_flow_panel`` and ``marts.fund_nav_panel``. :func:`suite_names` lists them.

How a suite is declared: a *prepare* step computes derived helper columns (names start with
``_``, e.g. ``_ret_limit_excess`` = |ret| - limit - tolerance) that are added to the frame,
then a list of GX expectations (:class:`Expect`) runs on it (PUDL's idea, STYLE.md §4: raw suites are derived
from the feed registry so the schema, the docs and the checks cannot drift).

Validate the frame just written (pandas or Arrow), never a rescan of the table. Each
expectation is first screened on Arrow (:class:`Expect`: the semantics of GX's pandas engine,
computed with Arrow/numpy kernels, no pandas copy of the frame); GX runs only the expectations
that may fail, on pandas, and reports them (counts, examples, exceptions). GX's fixed cost is
~3-7 ms per expectation per call (its validation graph; ~0.1-0.25 s per suite) plus a ~3.5 s
import, so a clean frame imports no GX; a 560k-row stock-panel chunk screens in ~0.1 s instead
of ~1.5 s through pandas (issue 11).

Conventions: a raw frame may hold the same key from several landed files (staging keeps the
latest), so raw key uniqueness is on ``key + source_file`` when ``source_file`` is present.
GX column-map expectations ignore nulls; null-ness is checked separately where required.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sc_assets.feeds.schemas import FEEDS, FeedSpec


@dataclass(frozen=True)
class CheckParams:
    """Tolerances used by the suites (shown in check metadata).

    limit_tolerance: |ret| may exceed the board limit by this much plus one tick
        (0.01 CNY / pre_close) of limit-price rounding (METHODS.md §1: limit price rounded to 0.01).
    price_tolerance: CNY slack for close vs. the limit prices: one tick (0.01) plus float noise.
        Limit prices follow the exchange's half-up rounding (175.95 x 0.9 = 158.355 -> 158.36); a
        source that rounds in binary floating point closes one tick beyond it (158.35), which is
        a rounding convention, not bad data (seen in the simulator, 6 of 616k stock-days).
    weight_sum_tolerance: index weights of one index and date sum to 1 (100%) within this.
    max_basis_rel: bound on |futures close / spot - 1|; far quarterly contracts in a crash reach
        -24% in the simulator (-36% annualized over 242 days), so 50%.
    fund_ret_min: a weekly fund return below this is an error (NAV data break).
    """

    limit_tolerance: float = 0.001
    price_tolerance: float = 0.010001
    max_basis_rel: float = 0.5
    weight_sum_tolerance: float = 0.02
    fund_ret_min: float = -0.5
    max_examples: int = 5


PARAMS = CheckParams()
BOARDS = ("main", "chinext", "star", "bse")
FUT_CODES = ("IF", "IH", "IC", "IM")
STRATEGIES = ("index_enhancement", "market_neutral", "other")
AUM_BUCKETS = (">=10bn", "5-10bn", "<5bn")


#: A frame to validate: pandas (other layers' assets) or Arrow (the SQL models' chunks).
Frame = pd.DataFrame | pa.Table


@dataclass(frozen=True)
class Suite:
    name: str
    columns: tuple[str, ...]  # must exist
    build: Callable[[Sequence[str]], list]  # column names (after prepare) -> list[Expect]
    prepare: Callable[[Frame], dict[str, np.ndarray]] = field(default=lambda df: {})  # helper columns
    description: str = ""


# ---------------------------------------------------------------------------------------
# GX plumbing (lazy, one ephemeral context per process)
# ---------------------------------------------------------------------------------------
_lock = threading.Lock()
_batch_defs: dict[str, Any] = {}


@lru_cache(maxsize=1)
def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    cfg = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    ctx = gx.get_context(mode="ephemeral", project_config=cfg)
    return gx, gxe, ctx


def _batch_definition(name: str):
    with _lock:
        if name not in _batch_defs:
            _, _, ctx = _gx()
            ds = ctx.data_sources.add_pandas(f"ds_{len(_batch_defs)}_{name}")
            _batch_defs[name] = ds.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
        return _batch_defs[name]


# ---------------------------------------------------------------------------------------
# expectations: declared as (GX class, kwargs); screened on Arrow, failures reported by GX
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    """One Great Expectations expectation: its GX class name and keyword arguments.

    :meth:`screen` evaluates the expectation on an Arrow table (:func:`screen_table`) with the
    semantics of GX's pandas engine (GX 1.x ``_pandas`` metric implementations on the frame's
    pandas form: nulls and NaN are missing, numpy comparison rules) and answers True only when
    it certainly passes; anything else -- a failing row, a type GX compares element by element,
    a column the screen cannot read, an exception -- is False and GX itself decides
    (:func:`validate`). Verdicts are checked against GX on random frames in the tests.
    """

    gx_class: str
    kwargs: dict = field(hash=False)

    @property
    def columns(self) -> list[str]:
        return _kwargs_columns(self.kwargs)

    def to_gx(self):
        return getattr(_gx()[1], self.gx_class)(**self.kwargs)

    def screen(self, table: pa.Table) -> bool:
        try:
            return bool(_SCREENS[self.gx_class](table, **self.kwargs))
        except Exception:  # GX decides (and reports the exception, if it raises too)
            return False


def _kwargs_columns(kwargs: dict) -> list[str]:
    """The columns an expectation's keyword arguments name (ours, or GX's ``expectation_config.kwargs``)."""
    return list(kwargs.get("column_list")
                or [c for c in (kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")) if c])


def screen_table(df: pd.DataFrame, columns: set[str] | None = None) -> pa.Table:
    """The Arrow form of a pandas frame that the screens read: one column per convertible
    column (only ``columns`` if given: the ones the expectations read). Left out (so their expectations go to GX): non-string or duplicated column names,
    columns Arrow cannot convert, categoricals, and object columns that Arrow reads as anything
    but text, dates, booleans or all-null (GX compares objects element by element)."""
    names, arrays = [], []
    for name in df.columns:
        if not isinstance(name, str) or name in names or (columns is not None and name not in columns):
            continue
        s = df[name]
        if not isinstance(s, pd.Series) or isinstance(s.dtype, pd.CategoricalDtype):
            continue
        try:
            a = pa.Array.from_pandas(s)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            continue
        t = a.type
        if s.dtype == object and not (pa.types.is_null(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
                                      or pa.types.is_date(t) or pa.types.is_boolean(t)):
            continue
        if pa.types.is_dictionary(t) or pa.types.is_nested(t):
            continue
        names.append(name)
        arrays.append(a)
    return pa.table(arrays, names=names) if names else pa.table({})


def _is_num(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _missing(c: pa.ChunkedArray) -> pa.ChunkedArray:
    """Null or NaN (pandas ``isna`` of the column's pandas form)."""
    return pc.is_null(c, nan_is_null=True)


def _present(c: pa.ChunkedArray) -> pa.ChunkedArray:
    """The values pandas counts as present (not null, not NaN); floats with -0.0 as 0.0 (pandas
    hashes them as equal)."""
    c = c.drop_null()
    if pa.types.is_floating(c.type):
        c = pc.add(c.filter(pc.invert(pc.is_nan(c))), pa.scalar(0.0, c.type))
    return c


def _numpy(c: pa.ChunkedArray) -> np.ndarray:
    """numpy values as pandas holds them (an integer column with nulls becomes float64 + NaN)."""
    if pa.types.is_integer(c.type) and c.null_count:
        c = c.cast(pa.float64())
    return c.to_numpy()


#: Types whose equality the screens decide (unique, compound unique); others go to GX.
def _hashable(t: pa.DataType) -> bool:
    return (_is_num(t) or pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_date(t) or pa.types.is_timestamp(t) or pa.types.is_null(t))


def strictly_increasing(table: pa.Table, columns: Sequence[str]) -> bool:
    """Whether each row's ``columns`` tuple is lexicographically greater than the previous row's
    (so no two rows are equal). Decided only for null-free integer, date, timestamp and text
    columns (floats have NaN and -0.0); False otherwise, or when the rows are not in that order."""
    n = table.num_rows
    if not columns:
        return False
    lt = eq = None  # row i < row i + 1 on the columns so far / equal on the columns so far
    for name in columns:
        c = table.column(name)
        t = c.type
        if c.null_count or not (pa.types.is_integer(t) or any(f(t) for f in _ORDERED)):
            return False
        if n < 2:
            continue
        a, b = c.slice(0, n - 1), c.slice(1)
        if lt is None and not pc.all(pc.less_equal(a, b)).as_py():
            return False  # the leading column is not sorted: give up after one pass
        less, equal = pc.less(a, b), pc.equal(a, b)
        lt, eq = (less, equal) if lt is None else (pc.or_(lt, pc.and_(eq, less)), pc.and_(eq, equal))
    return lt is None or bool(pc.all(lt).as_py())


def distinct_rows(table: pa.Table, columns: Sequence[str]) -> int | None:
    """Number of distinct rows of ``columns`` (null equals null, NaN equals null, -0.0 equals
    0.0: pandas ``duplicated`` semantics), or None for a column type it does not decide.

    Each column is dictionary-encoded and the codes are combined into one int64 per row, so a
    560k-row (ts_code, trade_date) key costs ~40 ms instead of ~0.3 s for an Arrow group-by of
    the string and date columns (issue 11). A table already sorted strictly by the columns (in
    the order given or reversed: the SQL models' ``ORDER BY trade_date, ts_code``) has only
    distinct rows, which :func:`strictly_increasing` proves in ~5 ms for 500k rows."""
    if not table.num_rows:
        return 0
    cols = list(columns)
    if strictly_increasing(table, cols) or (len(cols) > 1 and strictly_increasing(table, cols[::-1])):
        return table.num_rows
    key = np.zeros(table.num_rows, dtype=np.int64)
    span = 1
    for name in columns:
        c = table.column(name)
        if not _hashable(c.type):
            return None
        if pa.types.is_null(c.type):
            continue  # one value (null) for every row
        if pa.types.is_floating(c.type):  # NaN and null alike, -0.0 as 0.0
            c = pc.if_else(pc.is_nan(c), pa.scalar(None, c.type), pc.add(c, pa.scalar(0.0, c.type)))
        enc = pc.dictionary_encode(c.combine_chunks(), null_encoding="encode")
        k = len(enc.dictionary)
        if span * k >= 2**62:
            return None
        key = key * k + enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        span *= max(k, 1)
    if span <= 4 * len(key) + 2**20:  # dense codes (a day x stock key): count occupied slots
        return int(np.count_nonzero(np.bincount(key, minlength=span)))
    return int(pc.count_distinct(pa.array(key)).as_py())


def _screen_not_null(t: pa.Table, column: str) -> bool:
    return not pc.any(_missing(t.column(column))).as_py()


def _screen_unique(t: pa.Table, column: str) -> bool:
    c = t.column(column)
    if not _hashable(c.type):
        return False
    v = _present(c)
    return len(v) == 0 or pc.count_distinct(v).as_py() == len(v)


def _screen_compound_unique(t: pa.Table, column_list: list[str]) -> bool:
    cols = list(column_list)
    if not t.num_rows:
        return True
    all_missing = _missing(t.column(cols[0]))
    for c in cols[1:]:
        all_missing = pc.and_(all_missing, _missing(t.column(c)))
    if pc.any(all_missing).as_py():  # GX's ignore_row_if default decides such rows
        return False
    n = distinct_rows(t, cols)
    return n is not None and n == t.num_rows


def _screen_between(t: pa.Table, column: str, min_value=None, max_value=None,
                    strict_min: bool = False, strict_max: bool = False) -> bool:
    if min_value is None and max_value is None or (
            min_value is not None and max_value is not None and min_value > max_value):
        return False  # GX raises
    c = t.column(column)
    if len(c) == c.null_count:
        return True  # nothing to compare (e.g. an all-null column): passes in GX
    if not _is_num(c.type):
        return False  # strings, dates, booleans, decimals: GX's element-wise rules apply
    mm = pc.min_max(c)  # skips nulls and NaN (NaN only if all values are NaN)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if lo is None or lo != lo:
        return True  # all missing
    # compare in the dtype pandas holds (float32 stays float32: numpy's rules for a Python bound;
    # an integer column with nulls is float64); min/max commute with that monotone conversion
    dtype = np.float64 if pa.types.is_integer(c.type) and c.null_count else c.type.to_pandas_dtype()
    lo, hi = np.array([lo, hi], dtype=dtype)
    ok = True
    if min_value is not None:
        ok &= bool((min_value < lo) if strict_min else (min_value <= lo))
    if max_value is not None:
        ok &= bool((hi < max_value) if strict_max else (hi <= max_value))
    return ok


_ORDERED = (pa.types.is_date, pa.types.is_timestamp, pa.types.is_string, pa.types.is_large_string)


def _screen_a_greater_than_b(t: pa.Table, column_A: str, column_B: str, or_equal: bool = False,
                             ignore_row_if: str = "both_values_are_missing") -> bool:
    if ignore_row_if != "either_value_is_missing":
        return False
    a, b = t.column(column_A), t.column(column_B)
    keep = pc.invert(pc.or_(_missing(a), _missing(b)))
    if not pc.any(keep).as_py():
        return True  # no row with both values: nothing to compare
    if _is_num(a.type) and _is_num(b.type):
        k = keep.to_numpy(zero_copy_only=False)
        x, y = _numpy(a)[k], _numpy(b)[k]
        return bool(np.all(x >= y if or_equal else x > y))
    if a.type == b.type and any(f(a.type) for f in _ORDERED):
        a, b = a.filter(keep), b.filter(keep)
        cmp = pc.greater_equal(a, b) if or_equal else pc.greater(a, b)
        return bool(pc.all(cmp).as_py() is not False)
    return False


def _screen_in_set(t: pa.Table, column: str, value_set: list) -> bool:
    c = t.column(column)
    v = _present(c)
    if not len(v):
        return True
    vs = pa.array(list(value_set))
    if (pa.types.is_string(c.type) or pa.types.is_large_string(c.type)) and (
            pa.types.is_string(vs.type) or pa.types.is_large_string(vs.type)):
        vs = vs.cast(c.type)
    elif pa.types.is_boolean(c.type) and pa.types.is_boolean(vs.type):
        pass
    elif pa.types.is_integer(c.type) and pa.types.is_integer(vs.type):
        v, vs = v.cast(pa.int64()), vs.cast(pa.int64())
    elif pa.types.is_floating(c.type) and _is_num(vs.type):
        v, vs = v.cast(pa.float64()), pc.add(vs.cast(pa.float64()), 0.0)
    else:
        return False  # mixed types: GX's element-wise rules apply
    return bool(pc.all(pc.is_in(v, value_set=vs)).as_py())


_SCREENS: dict[str, Callable[..., bool]] = {
    "ExpectColumnValuesToNotBeNull": _screen_not_null,
    "ExpectColumnValuesToBeUnique": _screen_unique,
    "ExpectCompoundColumnsToBeUnique": _screen_compound_unique,
    "ExpectColumnValuesToBeBetween": _screen_between,
    "ExpectColumnPairValuesAToBeGreaterThanB": _screen_a_greater_than_b,
    "ExpectColumnValuesToBeInSet": _screen_in_set,
}


_RANGE_KWARGS = {"column", "min_value", "max_value", "strict_min", "strict_max"}


def screen_all(expectations: Sequence[Expect], table: pa.Table) -> list[bool]:
    """:meth:`Expect.screen` of each expectation, in order. Range checks with the same bounds on
    float64 columns are screened together first: one min/max over the chunks of all those
    columns (zero-copy) passes iff each column passes; a failing group falls back to the
    per-column screens. The CPU work is the same; the stock panel's 25 range checks become 4
    Arrow calls instead of 25. Each call releases the GIL and re-taking it can wait up to the
    5 ms switch interval while another thread runs Python (the SQL runner's writer thread
    during a backfill), so fewer calls mean fewer such waits (issue 11)."""
    verdicts: list[bool | None] = [None] * len(expectations)
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(expectations):
        k = e.kwargs
        if e.gx_class != "ExpectColumnValuesToBeBetween" or not set(k) <= _RANGE_KWARGS:
            continue
        if table.schema.get_field_index(k.get("column")) < 0 or table.schema.field(k["column"]).type != pa.float64():
            continue  # absent, duplicated or not float64: screened alone
        bounds = (k.get("min_value"), k.get("max_value"), bool(k.get("strict_min", False)),
                  bool(k.get("strict_max", False)))
        if all(b is None or isinstance(b, bool | int | float) for b in bounds[:2]):
            groups.setdefault(bounds, []).append(i)
    for (lo, hi, strict_lo, strict_hi), idx in groups.items():
        if len(idx) < 2:
            continue
        chunks = [ch for i in idx for ch in table.column(expectations[i].kwargs["column"]).chunks]
        merged = pa.table({"x": pa.chunked_array(chunks, type=pa.float64())})
        try:
            ok = _screen_between(merged, "x", lo, hi, strict_lo, strict_hi)
        except Exception:
            ok = False
        if ok:
            for i in idx:
                verdicts[i] = True
    return [v if v is not None else e.screen(table) for v, e in zip(verdicts, expectations, strict=True)]


def not_null(*cols: str) -> list[Expect]:
    return [Expect("ExpectColumnValuesToNotBeNull", {"column": c}) for c in cols]


def unique(cols: Sequence[str]) -> list[Expect]:
    cols = list(cols)
    if len(cols) == 1:
        return [Expect("ExpectColumnValuesToBeUnique", {"column": cols[0]})]
    return [Expect("ExpectCompoundColumnsToBeUnique", {"column_list": cols})]


def positive(*cols: str) -> list[Expect]:
    return [Expect("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0, "strict_min": True}) for c in cols]


def non_negative(*cols: str) -> list[Expect]:
    return [Expect("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0}) for c in cols]


def between(col: str, lo: float | None, hi: float | None) -> list[Expect]:
    return [Expect("ExpectColumnValuesToBeBetween", {"column": col, "min_value": lo, "max_value": hi})]


def at_most_zero(*cols: str) -> list[Expect]:
    return [Expect("ExpectColumnValuesToBeBetween", {"column": c, "max_value": 0}) for c in cols]


def ge(a: str, b: str) -> list[Expect]:
    """a >= b on rows where both are present."""
    return [Expect("ExpectColumnPairValuesAToBeGreaterThanB",
                   {"column_A": a, "column_B": b, "or_equal": True, "ignore_row_if": "either_value_is_missing"})]


def in_set(col: str, values: Iterable) -> list[Expect]:
    return [Expect("ExpectColumnValuesToBeInSet", {"column": col, "value_set": list(values)})]


def ohlc(columns: Sequence[str]) -> list:
    """high >= open/close/low >= ... for the OHLC columns the frame has."""
    have = [c for c in ("open", "high", "low", "close") if c in columns]
    out = []
    if "high" in have:
        out += [x for c in have if c != "high" for x in ge("high", c)]
    if "low" in have:
        out += [x for c in have if c not in ("high", "low") for x in ge(c, "low")]
    return out


# ---------------------------------------------------------------------------------------
# raw and staging suites, derived from the feed registry
# ---------------------------------------------------------------------------------------
_RAW_UNIT_RANGES = {  # raw units: weight in percent, turnover in percent
    ("index_weight", "weight"): (0.0, 100.0),
}
_STG_UNIT_RANGES = {  # canonical units: fractions
    ("index_weight", "weight"): (0.0, 1.0),
}
_NON_NEGATIVE = ("vol", "amount", "oi", "turnover_rate", "turnover_rate_f", "turnover", "turnover_f",
                 "total_share", "float_share", "free_share", "fd_share")
_POSITIVE_CAPS = ("total_mv", "circ_mv", "float_mv")


#: staging renames of raw columns (dbt_like_sql/staging/*.sql)
STAGING_RENAMES: dict[str, dict[str, str]] = {
    "daily_basic": {"turnover_rate": "turnover", "turnover_rate_f": "turnover_f"},
    "fut_basic": {"delist_date": "expiry_date"},
}


def _feed_suite(spec: FeedSpec, staging: bool) -> Suite:
    layer = "staging" if staging else "raw"
    table = f"stg_{spec.name}" if staging else spec.name
    ranges = _STG_UNIT_RANGES if staging else _RAW_UNIT_RANGES
    ren = STAGING_RENAMES.get(spec.name, {}) if staging else {}

    def r(c: str) -> str:
        return ren.get(c, c)

    spec_key = [r(c) for c in spec.key]
    required = [r(c) for c in spec.required]
    prices = [r(c) for c in spec.price_columns]
    ohlc_feed = spec.name in ("stock_daily", "index_daily", "fut_daily")

    def build(columns: Sequence[str]) -> list:
        key = list(spec_key)
        if not staging and "source_file" in columns:
            key = key + ["source_file"]
        out = not_null(*spec_key) + unique(key) + not_null(*[c for c in required if c in columns])
        out += positive(*[c for c in prices if c in columns])
        out += ohlc(columns) if ohlc_feed else []
        out += non_negative(*[c for c in _NON_NEGATIVE if c in columns])
        out += positive(*[c for c in _POSITIVE_CAPS if c in columns])
        for (feed, col), (lo, hi) in ranges.items():
            if feed == spec.name and col in columns:
                out += between(col, lo, hi)
        if staging and spec.name == "stock_basic":
            out += not_null("board") + in_set("board", BOARDS)
        if spec.name == "fut_basic" and "fut_code" in columns:
            out += in_set("fut_code", FUT_CODES)
        if spec.name == "fut_basic":
            out += ge(r("delist_date"), "list_date")
        if spec.name == "fund_nav" and "strategy" in columns:
            out += in_set("strategy", STRATEGIES)
        if "_weight_sum" in columns:
            scale = 1.0 if staging else 100.0
            tol = PARAMS.weight_sum_tolerance * scale
            out += between("_weight_sum", scale - tol, scale + tol)
        return out

    def prepare(df: Frame) -> dict[str, np.ndarray]:
        if spec.name != "index_weight" or not len(df):
            return {}
        sub = _pandas(df, ["index_code", "trade_date", "weight"])
        return {"_weight_sum": sub.groupby(["index_code", "trade_date"])["weight"].transform("sum")
                .astype("float64").to_numpy()}

    cols = tuple(r(c) for c in spec.column_names) + (("board",) if staging and spec.name == "stock_basic" else ())
    return Suite(f"{layer}.{table}", cols, build, prepare,
                 description=f"{layer} {spec.name}: key ({', '.join(spec_key)}) unique and not null, "
                 "required columns not null, prices > 0" + (", OHLC consistent" if ohlc_feed else "")
                 + (", weights sum to 1 (100%) per index and date" if spec.name == "index_weight" else ""))


# ---------------------------------------------------------------------------------------
# mart suites
# ---------------------------------------------------------------------------------------
STOCK_PANEL_COLUMNS = (
    "trade_date", "ts_code", "name", "industry", "board", "is_st", "list_date", "days_listed",
    "is_suspended", "open", "high", "low", "close", "pre_close", "adj_factor", "adj_close", "ret",
    "vol", "amount", "turnover", "turnover_f", "total_share", "float_share", "free_share",
    "total_mv", "float_mv", "free_float_mv", "limit_pct", "up_limit", "down_limit",
    "is_limit_up", "is_limit_down", "is_locked",
)
INDEX_PANEL_COLUMNS = ("trade_date", "index_code", "close", "pre_close", "ret", "amount")
FUTURES_PANEL_COLUMNS = (
    "trade_date", "ts_code", "fut_code", "underlying", "close", "settle", "vol", "oi", "amount",
    "expiry_date", "days_to_expiry", "spot_close", "basis", "basis_ann", "basis_ann_settle", "is_main",
)
ETF_PANEL_COLUMNS = ("trade_date", "ts_code", "index_code", "fd_share", "close", "share_change", "net_inflow")
FUND_PANEL_COLUMNS = (
    "trade_date", "fund_id", "name", "strategy", "benchmark", "manager", "manager_aum_bucket",
    "adj_nav", "fund_ret", "bench_close", "bench_ret", "excess_ret",
)


def _names(df: Frame) -> list[str]:
    return list(df.column_names) if isinstance(df, pa.Table) else list(df.columns)


def _pandas(df: Frame, columns: Sequence[str]) -> pd.DataFrame:
    """Those columns as pandas (a narrow conversion of an Arrow table)."""
    return df.select(list(columns)).to_pandas() if isinstance(df, pa.Table) else df[list(columns)]


def _num(df: Frame, col: str) -> np.ndarray:
    """float64 values of a column, missing and non-numbers as NaN (``pd.to_numeric(errors="coerce")``)."""
    if isinstance(df, pa.Table):
        c = df.column(col)
        if _is_num(c.type):
            return c.cast(pa.float64()).to_numpy()
        s = c.to_pandas()
    else:
        s = df[col]
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _bool(df: Frame, col: str) -> np.ndarray:
    """bool values of a column, missing as False."""
    if isinstance(df, pa.Table):
        c = df.column(col)
        if pa.types.is_boolean(c.type):
            return c.fill_null(False).to_numpy()
        s = c.to_pandas()
    else:
        s = df[col]
    return s.astype("boolean").fillna(False).to_numpy(dtype=bool)


def _prepare_stock_panel(df: Frame) -> dict[str, np.ndarray]:
    p = PARAMS
    ret, lim, pre = _num(df, "ret"), _num(df, "limit_pct"), _num(df, "pre_close")
    # listing days have no limit (limit_pct null) or an asymmetric one; resumption days are exempt
    exempt = _num(df, "days_listed") <= 1
    if "is_resumption" in _names(df):
        exempt |= _bool(df, "is_resumption")
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.abs(ret) - lim - p.limit_tolerance - 0.01 / pre
    excess[exempt] = np.nan
    close = _num(df, "close")
    susp = _bool(df, "is_suspended")
    return {
        "_ret_limit_excess": excess,
        "_above_up_limit": close - _num(df, "up_limit") - p.price_tolerance,
        "_below_down_limit": _num(df, "down_limit") - close - p.price_tolerance,
        "_close_missing_when_trading": np.where(~susp & np.isnan(close), 1.0, 0.0),
        "_suspended_with_price": np.where(susp & ~np.isnan(close), 1.0, 0.0),
        "_close_minus_high": close - _num(df, "high") - 1e-9,
        "_low_minus_close": _num(df, "low") - close - 1e-9,
    }


def _stock_panel_build(columns: Sequence[str]) -> list:
    return (
        # days_listed may be null for a stock with bars but no reference row (delisted names missing
        # from a listed-only snapshot): kept, not blocked
        not_null("trade_date", "ts_code", "board", "is_suspended", "is_st")
        + unique(["trade_date", "ts_code"])
        + in_set("board", BOARDS)
        + positive("open", "high", "low", "close", "pre_close", "adj_factor", "adj_close",
                   "total_mv", "float_mv", "free_float_mv", "total_share")
        + non_negative("vol", "amount", "turnover", "turnover_f", "float_share", "free_share")
        + between("days_listed", 1, None)
        + at_most_zero("_close_minus_high", "_low_minus_close", "_ret_limit_excess",
                       "_above_up_limit", "_below_down_limit", "_close_missing_when_trading",
                       "_suspended_with_price")
        + ge("up_limit", "down_limit")
    )


def _index_panel_build(columns: Sequence[str]) -> list:
    return (
        not_null("trade_date", "index_code", "close")
        + unique(["trade_date", "index_code"])
        + positive("close", "pre_close")
        + non_negative("amount")
        + between("ret", -0.5, 1.0)
    )


def _prepare_futures(df: Frame) -> dict[str, np.ndarray]:
    if len(df):
        sub = _pandas(df, ["trade_date", "fut_code"]).assign(_main=_bool(df, "is_main").astype("int64"))
        # main contracts per product-day: a vectorised group sum (a Python lambda per group cost
        # ~5 s over a 10-year futures panel, issue 11)
        n_main = sub.groupby(["trade_date", "fut_code"])["_main"].transform("sum").astype("float64").to_numpy()
    else:
        n_main = np.array([], dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        basis_rel = _num(df, "close") / _num(df, "spot_close") - 1
    return {"_main_per_product": n_main, "_basis_rel": basis_rel}


def _futures_build(columns: Sequence[str]) -> list:
    return (
        not_null("trade_date", "ts_code", "fut_code", "underlying", "close", "expiry_date",
                 "days_to_expiry", "is_main")
        + unique(["trade_date", "ts_code"])
        + in_set("fut_code", FUT_CODES)
        + positive("close", "settle", "spot_close")
        + non_negative("vol", "oi", "amount")
        + between("days_to_expiry", 1, None)
        + ge("expiry_date", "trade_date")
        + between("_main_per_product", 1, 1)
        # relative basis |F/S - 1|, not the annualized basis (legitimately large near expiry)
        + between("_basis_rel", -PARAMS.max_basis_rel, PARAMS.max_basis_rel)
    )


def _etf_build(columns: Sequence[str]) -> list:
    return (
        not_null("trade_date", "ts_code", "index_code", "fd_share", "close")
        + unique(["trade_date", "ts_code"])
        + positive("fd_share", "close")
    )


def _prepare_fund(df: Frame) -> dict[str, np.ndarray]:
    sub = _pandas(df, ["strategy", "benchmark"])
    ie = (sub["strategy"].astype("str") == "index_enhancement").to_numpy()
    missing_bench = sub["benchmark"].isna().to_numpy()
    return {"_enhancement_without_benchmark": np.where(ie & missing_bench, 1.0, 0.0)}


def _fund_build(columns: Sequence[str]) -> list:
    return (
        not_null("trade_date", "fund_id", "strategy", "adj_nav")
        + unique(["fund_id", "trade_date"])
        + positive("adj_nav")
        + in_set("strategy", STRATEGIES)
        + in_set("manager_aum_bucket", AUM_BUCKETS)
        + between("fund_ret", PARAMS.fund_ret_min, None)
        + at_most_zero("_enhancement_without_benchmark")
    )


SUITES: dict[str, Suite] = {}
for _spec in FEEDS.values():
    SUITES[f"raw.{_spec.name}"] = _feed_suite(_spec, staging=False)
    SUITES[f"staging.stg_{_spec.name}"] = _feed_suite(_spec, staging=True)
SUITES["marts.stock_daily_panel"] = Suite(
    "marts.stock_daily_panel", STOCK_PANEL_COLUMNS, _stock_panel_build, _prepare_stock_panel,
    "keys, board set, prices/caps > 0, close within [low, high], |ret| within board limit + tolerance "
    "except listing/resumption days, close within limit prices, suspended rows have no price")
SUITES["marts.index_daily_panel"] = Suite(
    "marts.index_daily_panel", INDEX_PANEL_COLUMNS, _index_panel_build,
    description="keys, close > 0, every requested trading day has index rows")
SUITES["marts.futures_basis_panel"] = Suite(
    "marts.futures_basis_panel", FUTURES_PANEL_COLUMNS, _futures_build, _prepare_futures,
    "keys, expiry on/after trade date, days_to_expiry >= 1, one main contract per product-day, spot > 0, "
    "|close / spot - 1| <= 50%")
SUITES["marts.etf_flow_panel"] = Suite(
    "marts.etf_flow_panel", ETF_PANEL_COLUMNS, _etf_build,
    description="keys, shares and close > 0")
SUITES["marts.fund_nav_panel"] = Suite(
    "marts.fund_nav_panel", FUND_PANEL_COLUMNS, _fund_build, _prepare_fund,
    "keys, NAV > 0, strategy/bucket sets, weekly return > -50%, enhancement funds have a benchmark")

# suites whose `days=` argument must each have rows (calendar completeness)
_DAY_COMPLETE = {"marts.index_daily_panel", "marts.stock_daily_panel"}


_expect_not_null, _expect_positive, _expect_non_negative = not_null, positive, non_negative


def register_table_suite(
    name: str,
    *,
    columns: Sequence[str],
    key: Sequence[str] = (),
    not_null: Sequence[str] = (),
    positive: Sequence[str] = (),
    non_negative: Sequence[str] = (),
    ranges: dict[str, tuple[float | None, float | None]] | None = None,
    in_sets: dict[str, Sequence] | None = None,
    description: str = "",
) -> Suite:
    """Declare a suite for any other layer's table (factors, drawdowns, crowding, stress, ...).

    ``name`` is ``"<layer>.<table>"`` (the asset key joined by dots, so ``gx_check_result(key,
    None, df)`` finds it). Key columns are unique together and not null; ``ranges`` map a
    column to inclusive (min, max) bounds (None = open). Re-registering a name replaces it.
    """
    ranges = dict(ranges or {})
    in_sets = {k: list(v) for k, v in (in_sets or {}).items()}
    key, nn, pos, nonneg = list(key), list(not_null), list(positive), list(non_negative)

    def build(columns: Sequence[str]) -> list:
        out = _expect_not_null(*key, *[c for c in nn if c not in key])
        out += unique(key) if key else []
        out += _expect_positive(*pos) + _expect_non_negative(*nonneg)
        for col, (lo, hi) in ranges.items():
            out += between(col, lo, hi)
        for col, values in in_sets.items():
            out += in_set(col, values)
        return out

    suite = Suite(name, tuple(columns), build, description=description or f"{name}: key, nulls, ranges")
    SUITES[name] = suite
    return suite


def suite_names() -> list[str]:
    return sorted(SUITES)


def resolve(suite_name: str) -> Suite:
    if suite_name in SUITES:
        return SUITES[suite_name]
    if f"raw.{suite_name}" in SUITES:
        return SUITES[f"raw.{suite_name}"]
    raise KeyError(f"unknown GX suite {suite_name!r}; known: {', '.join(suite_names())}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float | int | str | bool) or v is None:
        return v
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def _gx_order(expectations: list[Expect]) -> list[Expect]:
    """The order GX evaluates and reports a suite in (``Validator.process_expectations_for_
    validation``: grouped by ``column``, groups in order of first appearance), so failures are
    listed as when GX ran the whole suite."""
    groups: dict[str | None, list[Expect]] = {}
    for e in expectations:
        col = e.kwargs.get("column")
        groups.setdefault(col if isinstance(col, str) else None, []).append(e)
    return [e for g in groups.values() for e in g]


def _run_gx(suite_name: str, frame: Frame, expectations: list[Expect], result_format: Any) -> list:
    """GX results of ``expectations`` on the pandas form of ``frame`` narrowed to the columns they
    read (GX copies what it is given; an Arrow table converts only those), in the order given.
    Imports GX on the first call in the process."""
    gx, _, _ = _gx()
    read = {c for e in expectations for c in e.columns}
    if isinstance(frame, pa.Table):
        frame = frame.select([c for c in frame.column_names if c in read]).to_pandas()
    else:
        frame = frame[[c for c in frame.columns if c in read]]
    batch = _batch_definition(suite_name).get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=suite_name, expectations=[e.to_gx() for e in expectations])
    return batch.validate(suite, result_format=result_format).results


def _with_helpers(df: Frame, helpers: dict[str, np.ndarray]) -> Frame:
    """The frame with the prepare step's helper columns (replacing same-named columns)."""
    if not helpers:
        return df
    if isinstance(df, pa.Table):
        for name, values in helpers.items():
            col = pa.array(values, from_pandas=True)  # NaN -> null: missing, as in pandas
            i = df.schema.get_field_index(name)
            df = df.set_column(i, name, col) if i >= 0 else df.append_column(name, col)
        return df
    return df.assign(**helpers)


def _unique_days(df: Frame) -> set[str]:
    if not len(df):
        return set()
    values = pc.unique(df.column("trade_date")).to_pylist() if isinstance(df, pa.Table) else pd.unique(df["trade_date"])
    return set(pd.to_datetime(values).strftime("%Y-%m-%d"))


def validate(suite_name: str, df: Frame, *, days: Sequence[str] | None = None) -> tuple[bool, dict]:
    """Run the GX suite ``suite_name`` on ``df`` (pandas or Arrow; one call for the whole frame).

    ``days``: the partition keys the frame is meant to cover; for suites with a calendar
    rule (index and stock panels) each of them must have rows.

    Every expectation is screened on Arrow first (:meth:`Expect.screen`; a pandas frame is
    converted once by :func:`screen_table`); only those not certainly passing go to GX, which
    decides pass/fail on the pandas form of the frame (an Arrow table's ``to_pandas()`` of the
    columns read) and reports counts and examples. A clean frame therefore costs no GX call
    (GX's fixed cost is ~3-7 ms per expectation per call, ~0.1-0.25 s for a suite, plus its
    ~3.5 s import in a cold process), and a failure is reported exactly as GX reports it.

    Returns ``(passed, metadata)``; metadata is JSON-serialisable: suite, rows, expectations
    evaluated, failed expectations (type, column(s), unexpected count, examples), seconds.
    """
    t0 = time.perf_counter()
    suite = resolve(suite_name)
    names = _names(df)
    missing = [c for c in suite.columns if c not in names]
    failed: list[dict] = []
    if missing:
        failed.append({"expectation": "expect_column_to_exist", "columns": missing,
                       "unexpected_count": len(missing)})
        return False, {"suite": suite.name, "rows": int(len(df)), "evaluated": 0, "failed": failed,
                       "seconds": round(time.perf_counter() - t0, 3)}
    frame = _with_helpers(df, suite.prepare(df))
    expectations = suite.build(_names(frame))
    # empty day check without GX: cheap and exact
    if days is not None and suite.name in _DAY_COMPLETE:
        empty = sorted(set(days) - _unique_days(df))
        if empty:
            failed.append({"expectation": "every_trading_day_has_rows", "columns": ["trade_date"],
                           "unexpected_count": len(empty), "examples": empty[:PARAMS.max_examples]})
    if isinstance(frame, pa.Table):
        table = frame
    else:
        table = screen_table(frame, columns={c for e in expectations for c in e.columns})
    ordered = _gx_order(expectations)
    suspects = [e for e, ok in zip(ordered, screen_all(ordered, table), strict=True) if not ok]
    if suspects:  # GX decides these and reports counts and examples of the failing ones
        results = _run_gx(suite.name, frame, suspects,
                          {"result_format": "SUMMARY", "partial_unexpected_count": PARAMS.max_examples})
        for r in results:
            if r.success:
                continue
            res = r.result or {}
            entry = {"expectation": r.expectation_config.type, "columns": _kwargs_columns(r.expectation_config.kwargs),
                     "unexpected_count": res.get("unexpected_count"),
                     "examples": _jsonable((res.get("partial_unexpected_list") or [])[: PARAMS.max_examples])}
            if r.exception_info and r.exception_info.get("raised_exception"):
                entry["exception"] = str(r.exception_info.get("exception_message"))[:300]
            failed.append(entry)
    meta = {"suite": suite.name, "rows": int(len(df)), "evaluated": len(expectations) + (days is not None),
            "failed": failed, "seconds": round(time.perf_counter() - t0, 3)}
    return not failed, meta


__all__ = ["PARAMS", "SUITES", "CheckParams", "distinct_rows", "register_table_suite", "resolve", "screen_all",
           "screen_table", "strictly_increasing", "suite_names", "validate"]

register_table_suite(
    "marts.etf_flow_by_index",
    columns=("trade_date", "index_code", "n_etfs", "n_etfs_with_flow", "etf_aum", "net_inflow"),
    key=("trade_date", "index_code"),
    not_null=("n_etfs", "etf_aum", "net_inflow"),
    positive=("etf_aum",),
    ranges={"n_etfs": (1, None)},
    description="keys, ETF assets > 0, at least one ETF per index-day",
)
