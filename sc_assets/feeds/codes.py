"""Security-code normalisation, vectorised on Arrow arrays.

Canonical forms (Tushare Pro):

* stocks / ETFs: ``600000.SH``, ``000001.SZ``, ``430047.BJ``
* indices: keep their suffix (``000905.SH``, ``399006.SZ``, ``932000.CSI``, ``8841431.WI``)
* CFFEX futures: ``IC2401.CFX``

Accepted vendor spellings (case-insensitive, surrounding blanks ignored):

=====================================  ==============================
input                                   canonical
=====================================  ==============================
``600000.SH``, ``600000.sh``            ``600000.SH``
``SH600000``, ``sh600000``, ``SH.600000``  ``600000.SH``
``600000.XSHG`` / ``000001.XSHE``       ``600000.SH`` / ``000001.SZ``
``430047.BJSE`` / ``430047.BSE``        ``430047.BJ``
``600000`` (stock column)               by exchange prefix rules below
``IC2401``, ``IC2401.CFE``, ``IC2401.CCFX``  ``IC2401.CFX``
=====================================  ==============================

Exchange prefix rules for a bare stock/ETF code (zero-padded to 6 digits): ``4x``, ``8x``,
``92x`` -> ``.BJ`` (Beijing SE: 43/83/87/92xxxx); ``5x``, ``6x``, ``9x`` -> ``.SH`` (SSE
A/B shares, SSE funds 51/56/58xxxx); ``0x``, ``1x``, ``2x``, ``3x`` -> ``.SZ`` (SZSE main,
ChiNext, B shares, SZSE funds 15/16xxxx).

A bare 6-digit *index* code is ambiguous with a stock code (000001 is both the SSE Composite
and Ping An Bank), so stock prefix rules are never applied to index columns. Index columns
use the Tushare index conventions instead: ``000xxx`` -> ``.SH`` (SSE/CSI indices),
``399xxx`` -> ``.SZ``, ``93xxxx`` -> ``.CSI``, 7-digit ``88xxxxx`` -> ``.WI``; any other bare
index code is left unchanged (and then fails the index-code pattern in validation).

Which columns are which kind is declared once in :data:`CODE_KINDS`.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

STOCK = "stock"
INDEX = "index"
FUTURE = "future"

# (feed, column) -> kind. Columns of a feed's ``code_columns`` not listed here are stocks.
CODE_KINDS: dict[tuple[str, str], str] = {
    ("index_daily", "ts_code"): INDEX,
    ("index_weight", "index_code"): INDEX,
    ("index_weight", "con_code"): STOCK,
    ("fut_daily", "ts_code"): FUTURE,
    ("fut_basic", "ts_code"): FUTURE,
    ("fut_basic", "underlying"): INDEX,
    ("etf_share", "ts_code"): STOCK,  # ETFs follow the stock exchange-prefix rules (510300 -> SH)
    ("etf_share", "index_code"): INDEX,
    ("fund_nav", "benchmark"): INDEX,
}

# Final patterns a normalised code must match (rows that don't are quarantined "invalid code").
VALID_PATTERNS = {
    STOCK: r"^\d{6}\.(SH|SZ|BJ)$",
    INDEX: r"^[0-9A-Z]{4,12}\.[A-Z]{2,4}$",
    FUTURE: r"^[A-Z]{1,2}\d{3,4}\.CFX$",
}


def code_kind(feed: str, column: str) -> str:
    return CODE_KINDS.get((feed, column), STOCK)


def _where(mask: pa.ChunkedArray | pa.Array, a, b):
    return pc.if_else(pc.fill_null(mask, False), a, b)


def _exchange_suffix(s):
    """'.BJ' / '.SH' / '.SZ' for bare 6-digit codes by their leading digits (cheap prefix tests)."""
    bj = pc.or_(pc.or_(pc.starts_with(s, "4"), pc.starts_with(s, "8")), pc.starts_with(s, "92"))
    sh = pc.or_(pc.or_(pc.starts_with(s, "5"), pc.starts_with(s, "6")), pc.starts_with(s, "9"))
    return _where(bj, pa.scalar(".BJ"), _where(sh, pa.scalar(".SH"), pa.scalar(".SZ")))


def _normalise_stock(s):
    if pc.all(pc.fill_null(pc.match_substring_regex(s, r"^\d{6}$"), True)).as_py():  # all bare: one pass
        return pc.binary_join_element_wise(s, _exchange_suffix(s), "")
    s = pc.replace_substring_regex(s, r"^(\d{1,6})\.XSHG$", r"\1.SH")
    s = pc.replace_substring_regex(s, r"^(\d{1,6})\.XSHE$", r"\1.SZ")
    s = pc.replace_substring_regex(s, r"^(\d{1,6})\.(BJSE|BSE)$", r"\1.BJ")
    s = pc.replace_substring_regex(s, r"^(SH|SZ|BJ)[.]?(\d{6})$", r"\2.\1")
    # zero-pad a numeric code that lost its leading zeros (Excel), with or without suffix
    s = _pad(s)
    bare = pc.match_substring_regex(s, r"^\d{6}$")
    if not pc.any(pc.fill_null(bare, False)).as_py():
        return s
    return _where(bare, pc.binary_join_element_wise(s, _exchange_suffix(s), ""), s)


def _pad(s):
    """Zero-pad 1-5 digit codes (with an optional suffix) to 6 digits."""
    short = pc.match_substring_regex(s, r"^\d{1,5}(\.[A-Z]+)?$")
    if not pc.any(pc.fill_null(short, False)).as_py():
        return s
    digits = pc.replace_substring_regex(s, r"^(\d+).*$", r"\1")
    rest = pc.replace_substring_regex(s, r"^\d+", "")
    padded = pc.binary_join_element_wise(pc.utf8_lpad(digits, 6, "0"), rest, "")
    return _where(short, padded, s)


def _normalise_index(s):
    s = pc.replace_substring_regex(s, r"^(\w+)\.XSHG$", r"\1.SH")
    s = pc.replace_substring_regex(s, r"^(\w+)\.XSHE$", r"\1.SZ")
    s = pc.replace_substring_regex(s, r"^(SH|SZ)[.]?(\d{6})$", r"\2.\1")
    s = pc.replace_substring_regex(s, r"^(000\d{3})$", r"\1.SH")
    s = pc.replace_substring_regex(s, r"^(399\d{3})$", r"\1.SZ")
    s = pc.replace_substring_regex(s, r"^(93\d{4})$", r"\1.CSI")
    s = pc.replace_substring_regex(s, r"^(88\d{5})$", r"\1.WI")
    return s


def _normalise_future(s):
    return pc.replace_substring_regex(s, r"^([A-Z]{1,2}\d{3,4})(\.(CFX|CFE|CCFX))?$", r"\1.CFX")


_NORMALISERS = {STOCK: _normalise_stock, INDEX: _normalise_index, FUTURE: _normalise_future}
_FAST = {STOCK: r"^\d{6}\.(SH|SZ|BJ)$", INDEX: r"^[0-9A-Z]+\.(SH|SZ|CSI|WI|CNI)$", FUTURE: r"^[A-Z]{1,2}\d{3,4}\.CFX$"}


def normalise_codes(values: pa.Array | pa.ChunkedArray, kind: str = STOCK) -> pa.Array | pa.ChunkedArray:
    """Normalise an Arrow string array of security codes of ``kind`` (stock/index/future).

    Nulls stay null. Already-canonical input is returned as is (one regex pass: the fast path).
    """
    if kind not in _NORMALISERS:
        raise ValueError(f"unknown code kind {kind!r}; expected one of {sorted(_NORMALISERS)}")
    s = values if pa.types.is_string(values.type) or pa.types.is_large_string(values.type) else pc.cast(values, pa.string())
    if len(s) == 0 or pc.all(pc.fill_null(pc.match_substring_regex(s, _FAST[kind]), True)).as_py():
        return s
    s = pc.ascii_upper(pc.utf8_trim_whitespace(s))
    return _NORMALISERS[kind](s)


def normalise_code(code: str, kind: str = STOCK) -> str:
    """Scalar convenience wrapper of :func:`normalise_codes` (e.g. ``"sh600000"`` -> ``"600000.SH"``)."""
    return normalise_codes(pa.array([code], pa.string()), kind)[0].as_py()


def valid_code_mask(values: pa.Array | pa.ChunkedArray, kind: str) -> pa.Array | pa.ChunkedArray:
    """True where a (normalised) code matches the canonical pattern of ``kind``; null stays null."""
    return pc.match_substring_regex(values, VALID_PATTERNS[kind])
