"""Row-level validation: each rule, duplicates, and the accounting invariant (with an oracle)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sc_assets.feeds.schemas import FEEDS
from sc_assets.feeds.validation import quarantine_frame, row_reasons
from sc_assets.partitions import sessions

SPEC = FEEDS["stock_daily"]
DAY = pd.Timestamp("2024-01-22")
FILE = "landing/stock_daily/20240122.csv"


def _bars(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({
        "ts_code": [f"60000{i}.SH" for i in range(n)], "trade_date": [DAY] * n,
        "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "pre_close": 10.0, "vol": 100.0, "amount": 100.0,
        "source_file": FILE, "source_line": np.arange(2, n + 2), "source_mtime_ns": 1,
    })


def _reasons(df: pd.DataFrame, file_day=DAY) -> list:
    return list(row_reasons(df, SPEC, pd.Series([file_day] * len(df))))


def test_clean_rows_pass() -> None:
    assert _reasons(_bars()) == [None] * 4


def test_each_rule() -> None:
    df = _bars(9)
    df.loc[0, "ts_code"] = None
    df.loc[1, "close"] = np.nan
    df.loc[2, "open"] = 0.0
    df.loc[3, ["high", "low"]] = [8.0, 9.0]
    df.loc[4, "close"] = 12.0
    df.loc[5, "trade_date"] = pd.Timestamp("2024-02-10")  # Spring Festival: no session
    df.loc[6, "trade_date"] = pd.Timestamp("2024-01-23")  # a session, but not the file's day
    df.loc[7, "ts_code"] = "60000X.SH"
    assert _reasons(df) == [
        "missing key ts_code", "missing required value close", "non-positive open", "high < low",
        "close outside [low, high]", "date not a trading day", "date is not the file's day",
        "invalid code ts_code", None,
    ]


def test_nullable_columns_may_be_missing() -> None:
    df = _bars(2).assign(open=np.nan, high=np.nan, low=np.nan)
    assert list(row_reasons(df, FEEDS["index_daily"], pd.Series([DAY] * 2))) == [None, None]


def test_identical_duplicates_keep_one_conflicting_quarantine_all() -> None:
    df = _bars(3)
    df = pd.concat([df, df.iloc[[0, 0]], df.iloc[[1]].assign(close=10.2)], ignore_index=True)
    assert _reasons(df) == [None, "conflicting duplicate key", None, "duplicate row", "duplicate row",
                            "conflicting duplicate key"]


def test_cross_file_duplicates_are_not_errors() -> None:
    df = pd.concat([_bars(2), _bars(2).assign(source_file="landing/stock_daily/20240122.csv.gz", close=10.1)],
                   ignore_index=True)
    assert _reasons(df) == [None] * 4


def test_quarantine_frame_keeps_original_values_as_strings() -> None:
    df = _bars(2)
    df.loc[1, "close"] = np.nan
    reasons = row_reasons(df, SPEC, pd.Series([DAY] * 2))
    q = quarantine_frame(df, reasons, SPEC, pd.Series([DAY] * 2))
    assert len(q) == 1
    row = q.iloc[0]
    assert row["reason"] == "missing required value close" and row["source_line"] == 3
    assert row["row_trade_date"] == "2024-01-22" and row["open"] == "10.0" and row["close"] is None
    assert row["trade_date"] == DAY and row["source_file"] == FILE


FAULTS = ["none", "nokey", "noclose", "zero", "hl", "outside", "holiday", "otherday", "dup", "conflict"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(FAULTS), min_size=1, max_size=25))
def test_accounting_invariant_and_accepted_rows_are_clean(faults: list[str]) -> None:
    """landed = accepted + quarantined, and every accepted row satisfies every rule (a row-by-row oracle)."""
    rows = []
    for i, f in enumerate(faults):
        r = {"ts_code": f"{600000 + i}.SH", "trade_date": DAY, "open": 10.0, "high": 11.0, "low": 9.0,
             "close": 10.5, "pre_close": 10.0, "vol": 1.0, "amount": 1.0}
        if f == "nokey":
            r["ts_code"] = None
        elif f == "noclose":
            r["close"] = np.nan
        elif f == "zero":
            r["pre_close"] = -1.0
        elif f == "hl":
            r["high"], r["low"] = 8.0, 9.0
        elif f == "outside":
            r["close"] = 8.5
        elif f == "holiday":
            r["trade_date"] = pd.Timestamp("2024-02-12")
        elif f == "otherday":
            r["trade_date"] = pd.Timestamp("2024-01-19")
        rows.append(r)
        if f == "dup":
            rows.append(dict(r))
        if f == "conflict":
            rows.append(dict(r, close=10.4))
    df = pd.DataFrame(rows).assign(source_file=FILE, source_line=lambda d: np.arange(2, len(d) + 2),
                                   source_mtime_ns=1)
    reasons = row_reasons(df, SPEC, pd.Series([DAY] * len(df)))
    accepted = df[pd.isna(reasons)]
    q = quarantine_frame(df, reasons, SPEC, pd.Series([DAY] * len(df)))
    assert len(accepted) + len(q) == len(df)
    sess = set(sessions())
    seen = set()
    for r in accepted.itertuples():
        assert r.ts_code is not None and not np.isnan(r.close)
        assert min(r.open, r.high, r.low, r.close, r.pre_close) > 0
        assert r.low <= r.close <= r.high
        assert r.trade_date in sess and r.trade_date == DAY
        assert r.ts_code not in seen
        seen.add(r.ts_code)
    # what the oracle expects to survive: clean rows, one of each identical pair, no conflicting key
    assert len(accepted) == sum(f in ("none", "dup") for f in faults)


def test_arrow_rows_nan_is_missing_and_same_reasons_as_pandas() -> None:
    """The feed source validates Arrow tables: a NaN float (Parquet can carry NaN, not null) is a missing
    value as in pandas, and the reasons equal those of the same rows given as a pandas frame."""
    df = _bars(6)
    df.loc[1, "close"] = np.nan
    df.loc[2, "ts_code"] = "sh600000"  # not normalised: invalid
    df.loc[3, "vol"] = 0.0  # vol 0 with amount > 0
    df = pd.concat([df, df.iloc[[4]]], ignore_index=True)
    table = pa.Table.from_pandas(df, preserve_index=False).set_column(
        1, "trade_date", pa.array(df["trade_date"].dt.date, pa.date32()))
    table = table.set_column(table.schema.get_field_index("close"), "close",
                             pa.array(df["close"].to_numpy(), pa.float64(), from_pandas=False))  # NaN stays NaN
    assert table["close"].null_count == 0
    days = np.array([np.datetime64(DAY.date(), "D")] * len(df))
    got = list(row_reasons(table, SPEC, days))
    assert got == [None, "missing required value close", "invalid code ts_code", "vol and amount disagree",
                   None, None, "duplicate row"]
    assert got == _reasons(df)
    q = quarantine_frame(table, np.array(got, dtype=object), SPEC, days)
    assert list(q["source_line"]) == [3, 4, 5, 6] and pd.isna(q.loc[0, "close"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.integers(0, 3)), min_size=0, max_size=30),
       st.booleans())
def test_duplicates_and_last_per_key_match_pandas(keys: list[tuple], hashed: bool) -> None:
    """Duplicate-key groups and the last row per key equal pandas' duplicated / drop_duplicates (nulls
    are equal keys), on both ways of combining key codes (dense lookup table and hashing)."""
    from sc_assets.feeds import validation

    df = pd.DataFrame({"k": pd.array([k for k, _ in keys], dtype="str"), "j": [j for _, j in keys]})
    table = pa.Table.from_pandas(df, preserve_index=False)
    old = validation._DENSE_LIMIT
    validation._DENSE_LIMIT = 0 if hashed else old
    try:
        ids = validation._group_ids(table, ["k", "j"])
        last = validation.last_per_key(table, ["k", "j"])
    finally:
        validation._DENSE_LIMIT = old
    assert list(last) == list(df.drop_duplicates(["k", "j"], keep="last").index)
    if len(df):
        assert list(np.bincount(ids)[ids] > 1) == list(df.duplicated(["k", "j"], keep=False))
