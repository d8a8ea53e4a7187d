"""GX suites: each rule fails on a frame that breaks it and passes on the clean frame."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sc_assets.checks import GX_CHECK_NAME, gx_check_result, gx_check_spec
from sc_assets.checks.gx_suites import SUITES, register_table_suite, suite_names, validate
from sc_assets.feeds.schemas import FEEDS
from sc_assets_tests.sql.rawlake import build_raw_lake

D1, D2 = date(2024, 1, 2), date(2024, 1, 3)


def test_a_suite_for_every_raw_feed_staging_model_and_mart():
    names = set(suite_names())
    for feed in FEEDS:
        assert f"raw.{feed}" in names and f"staging.stg_{feed}" in names
    assert {"marts.stock_daily_panel", "marts.index_daily_panel", "marts.futures_basis_panel",
            "marts.etf_flow_panel", "marts.fund_nav_panel"} <= names


@pytest.fixture(scope="module")
def raw_frames(tmp_path_factory):
    from sc_assets.resources import Warehouse

    wh = Warehouse(data_dir=str(tmp_path_factory.mktemp("gxraw")))
    build_raw_lake(wh)
    return {feed: wh.read("raw", feed) for feed in FEEDS}


def test_raw_suites_pass_on_clean_raw_frames(raw_frames):
    for feed, df in raw_frames.items():
        ok, meta = validate(f"raw.{feed}", df)
        assert ok, (feed, meta["failed"])
        assert meta["evaluated"] > 3 and meta["rows"] == len(df)


def _set(df, col, value, row=0):
    out = df.copy()
    out.loc[out.index[row], col] = value
    return out


RAW_BREAKS = [
    ("stock_daily", lambda d: pd.concat([d, d.iloc[[0]]]), "expect_compound_columns_to_be_unique", "ts_code"),
    ("stock_daily", lambda d: _set(d, "close", None), "expect_column_values_to_not_be_null", "close"),
    ("stock_daily", lambda d: _set(d, "open", 0.0), "expect_column_values_to_be_between", "open"),
    ("stock_daily", lambda d: _set(d, "low", 1e6), "expect_column_pair_values_a_to_be_greater_than_b", "high"),
    ("stock_daily", lambda d: _set(d, "amount", -1.0), "expect_column_values_to_be_between", "amount"),
    ("stock_daily", lambda d: _set(d, "ts_code", None), "expect_column_values_to_not_be_null", "ts_code"),
    ("index_weight", lambda d: _set(d, "weight", 140.0), "expect_column_values_to_be_between", "weight"),
    ("index_weight", lambda d: _set(d, "weight", 50.0), "expect_column_values_to_be_between", "_weight_sum"),
    ("fut_basic", lambda d: _set(d, "fut_code", "XX"), "expect_column_values_to_be_in_set", "fut_code"),
    ("fut_basic", lambda d: _set(d, "delist_date", date(2000, 1, 1)),
     "expect_column_pair_values_a_to_be_greater_than_b", "delist_date"),
    ("fund_nav", lambda d: _set(d, "adj_nav", -1.0), "expect_column_values_to_be_between", "adj_nav"),
    ("fund_nav", lambda d: _set(d, "strategy", "momentum"), "expect_column_values_to_be_in_set", "strategy"),
    ("daily_basic", lambda d: _set(d, "total_mv", 0.0), "expect_column_values_to_be_between", "total_mv"),
    ("stock_basic", lambda d: d.drop(columns=["list_date"]), "expect_column_to_exist", "list_date"),
]


@pytest.mark.parametrize("feed, brk, expectation, column", RAW_BREAKS,
                         ids=[f"{f}-{e.split('_', 1)[1][:24]}-{c}" for f, _, e, c in RAW_BREAKS])
def test_raw_suite_catches(raw_frames, feed, brk, expectation, column):
    ok, meta = validate(feed, brk(raw_frames[feed]))
    assert not ok
    assert any(f["expectation"] == expectation and column in f["columns"] for f in meta["failed"]), meta["failed"]
    json.dumps(meta)  # metadata is JSON-serialisable


def test_raw_duplicates_from_two_landed_files_are_allowed_but_not_within_one(raw_frames):
    d = raw_frames["stock_daily"]
    other = d.iloc[[0]].assign(source_file="landing/stock_daily/20240102.parquet")
    assert validate("raw.stock_daily", pd.concat([d, other]))[0]
    assert not validate("raw.stock_daily", pd.concat([d, d.iloc[[0]]]))[0]


def panel(**overrides) -> pd.DataFrame:
    """A valid two-row stock_daily_panel frame (one trading, one suspended)."""
    base = dict(
        trade_date=[D1, D1], ts_code=["600000.SH", "600001.SH"], name=["A", "B"], industry=["Banks", "Steel"],
        board=["main", "main"], is_st=[False, False], list_date=[date(2000, 1, 4)] * 2, days_listed=[5000, 4000],
        is_suspended=[False, True], open=[10.0, None], high=[11.0, None], low=[9.9, None], close=[11.0, None],
        pre_close=[10.0, None], adj_factor=[1.0, 1.0], adj_close=[11.0, None], ret=[0.10, None],
        vol=[1e5, None], amount=[1.1e6, None], turnover=[0.01, None], turnover_f=[0.02, None],
        total_share=[1e9, 1e8], float_share=[8e8, 8e7], free_share=[5e8, 5e7], total_mv=[1.1e10, None],
        float_mv=[8.8e9, None], free_float_mv=[5.5e9, None], limit_pct=[0.10, 0.10], up_limit=[11.0, None],
        down_limit=[9.0, None], is_limit_up=[True, False], is_limit_down=[False, False], is_locked=[False, False],
        is_resumption=[False, False],
    )
    df = pd.DataFrame(base)
    for k, v in overrides.items():
        df.loc[0, k] = v
    return df


def test_stock_panel_suite_rules():
    assert validate("marts.stock_daily_panel", panel(), days=["2024-01-02"])[0]
    # +15% on a +-10% board is a break ...
    ok, meta = validate("marts.stock_daily_panel", panel(close=11.5, high=11.5, ret=0.15, up_limit=11.0))
    assert not ok and {"_ret_limit_excess", "_above_up_limit"} <= {c for f in meta["failed"] for c in f["columns"]}
    # ... except on a resumption or listing day (ret check) -- the limit-price check still applies
    ok, meta = validate("marts.stock_daily_panel", panel(ret=0.15, is_resumption=True))
    assert ok, meta["failed"]
    assert not validate("marts.stock_daily_panel", panel(close=12.0))[0]  # close > high and > up limit
    # one tick beyond the half-up limit price (float-rounded source) is tolerated, two are not
    assert validate("marts.stock_daily_panel", panel(close=11.01, high=11.01, up_limit=11.0, ret=0.1))[0]
    assert not validate("marts.stock_daily_panel", panel(close=11.02, high=11.02, up_limit=11.0, ret=0.1))[0]
    assert not validate("marts.stock_daily_panel", panel(board="nasdaq"))[0]
    assert validate("marts.stock_daily_panel", panel(days_listed=None, list_date=None, name=None))[0]
    assert not validate("marts.stock_daily_panel", panel(days_listed=0))[0]  # a bar before listing
    assert not validate("marts.stock_daily_panel", panel(total_mv=0.0))[0]
    susp = panel()
    susp.loc[1, "close"] = 3.0  # a suspended row with a price
    assert not validate("marts.stock_daily_panel", susp)[0]
    ok, meta = validate("marts.stock_daily_panel", panel(), days=["2024-01-02", "2024-01-03"])
    assert not ok and meta["failed"][0]["examples"] == ["2024-01-03"]  # a trading day without rows


def futures(**overrides) -> pd.DataFrame:
    df = pd.DataFrame(dict(
        trade_date=[D1, D1], ts_code=["IC2401.CFX", "IC2402.CFX"], fut_code=["IC", "IC"],
        underlying=["000905.SH"] * 2, close=[5250.0, 5200.0], settle=[5250.0, 5200.0], vol=[1.0, 2.0],
        oi=[10.0, 20.0], amount=[1e8, 2e8], expiry_date=[date(2024, 1, 19), date(2024, 2, 23)],
        days_to_expiry=[17, 52], spot_close=[5300.0] * 2, basis=[-50.0, -100.0], basis_ann=[-0.2, -0.13],
        basis_ann_settle=[-0.2, -0.13], is_main=[False, True]))
    for k, v in overrides.items():
        df.loc[0, k] = v
    return df


def test_futures_suite_rules():
    assert validate("marts.futures_basis_panel", futures())[0]
    assert not validate("marts.futures_basis_panel", futures(is_main=True))[0]  # two main contracts
    assert not validate("marts.futures_basis_panel", futures(expiry_date=date(2023, 12, 15)))[0]
    assert not validate("marts.futures_basis_panel", futures(days_to_expiry=0))[0]
    assert not validate("marts.futures_basis_panel", futures(close=9000.0))[0]  # 70% off spot
    assert validate("marts.futures_basis_panel", futures(close=4100.0))[0]  # -23%: a far contract in a crash
    # a large annualized basis a day before expiry is legitimate
    assert validate("marts.futures_basis_panel", futures(days_to_expiry=1, basis_ann=-7.3))[0]
    assert not validate("marts.futures_basis_panel", futures(spot_close=None, basis=None) .assign(spot_close=-1.0))[0]


def test_index_fund_and_etf_suites():
    ix = pd.DataFrame(dict(trade_date=[D1, D2], index_code=["000905.SH"] * 2, close=[5300.0, 5310.0],
                           pre_close=[5290.0, 5300.0], ret=[0.0019, 0.0019], amount=[1e10, 1e10]))
    assert validate("marts.index_daily_panel", ix, days=["2024-01-02", "2024-01-03"])[0]
    assert not validate("marts.index_daily_panel", ix.iloc[:1], days=["2024-01-02", "2024-01-03"])[0]
    assert not validate("marts.index_daily_panel", ix.assign(close=[5300.0, 0.0]))[0]
    fund = pd.DataFrame(dict(
        trade_date=[D1, D2], fund_id=["F1", "F1"], name=["x", "x"], strategy=["index_enhancement"] * 2,
        benchmark=["000905.SH"] * 2, manager=["M"] * 2, manager_aum_bucket=[">=10bn"] * 2, adj_nav=[1.0, 1.01],
        fund_ret=[np.nan, 0.01], bench_close=[5300.0, 5310.0], bench_ret=[np.nan, 0.0019], excess_ret=[np.nan, 0.008]))
    assert validate("marts.fund_nav_panel", fund)[0]
    assert not validate("marts.fund_nav_panel", fund.assign(adj_nav=[1.0, -1.0]))[0]
    assert not validate("marts.fund_nav_panel", fund.assign(benchmark=[None, None]))[0]  # enhancement w/o benchmark
    assert not validate("marts.fund_nav_panel", pd.concat([fund, fund.iloc[[0]]]))[0]
    etf = pd.DataFrame(dict(trade_date=[D1], ts_code=["510500.SH"], index_code=["000905.SH"], fd_share=[1e9],
                            close=[5.0], share_change=[np.nan], net_inflow=[np.nan]))
    assert validate("marts.etf_flow_panel", etf)[0]
    assert not validate("marts.etf_flow_panel", etf.assign(fd_share=[0.0]))[0]


def test_check_result_and_spec_are_blocking_errors():
    key = dg.AssetKey(["marts", "futures_basis_panel"])
    spec = gx_check_spec(key)
    assert spec.name == GX_CHECK_NAME and spec.blocking and spec.asset_key == key
    good = gx_check_result(key, None, futures())
    bad = gx_check_result(key, None, futures(is_main=True))
    assert good.passed and not bad.passed
    assert bad.severity == dg.AssetCheckSeverity.ERROR and bad.metadata["expectations_failed"].value == 1
    json.dumps(bad.metadata["failed_expectations"].value)


def test_register_table_suite_for_other_layers():
    register_table_suite("factors.test_only_returns", columns=["trade_date", "factor", "ret"],
                         key=["trade_date", "factor"], ranges={"ret": (-1, 1)}, in_sets={"factor": ["size", "nlsize"]})
    try:
        df = pd.DataFrame(dict(trade_date=[D1, D1], factor=["size", "nlsize"], ret=[0.01, -0.02]))
        assert gx_check_result(["factors", "test_only_returns"], None, df).passed
        assert not validate("factors.test_only_returns", df.assign(ret=[0.01, -2.0]))[0]
        assert not validate("factors.test_only_returns", df.assign(factor=["size", "size"]))[0]
    finally:
        SUITES.pop("factors.test_only_returns")


def test_definitions_import_does_not_import_great_expectations():
    code = ("import sys, warnings; warnings.simplefilter('ignore'); import sc_assets.definitions; "
            "print('great_expectations' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def _random_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Small values (duplicates, boundary ties at 0 and 1) and nulls in many dtypes."""
    miss = rng.random(n) < 0.2
    f = rng.integers(-1, 3, n).astype("float64")
    f[miss] = np.nan
    days = pd.Series(pd.to_datetime("2024-01-02") + pd.to_timedelta(rng.integers(0, 3, n), "D"))
    return pd.DataFrame({
        "f64": f, "f32": f.astype("float32"), "i64": rng.integers(-1, 3, n), "i32": rng.integers(0, 3, n).astype("int32"),
        "Int64": pd.array(np.where(miss, None, rng.integers(-1, 3, n)), dtype="Int64"),
        "Float64": pd.array(np.where(miss, None, f), dtype="Float64"),
        "b": rng.random(n) < 0.5,
        "s": pd.Series(np.where(rng.random(n) < 0.2, None, rng.choice(["a", "b", "c"], n)), dtype="str"),
        "d": days.dt.date.where(rng.random(n) > 0.2, None),
        "dt": days,
        "o": pd.Series([None] * n, dtype=object),  # an all-null column as read from a null-typed Parquet column
    })


def _config_key(kind: str, kwargs: dict) -> str:
    """GX result config <-> Expect (GX returns results in its own order, defaults dropped)."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in kind).lstrip("_")
    def norm(v):  # GX stores numeric bounds as floats
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        return float(v) if isinstance(v, int | float | np.number) and not isinstance(v, bool) else v

    kw = {k: norm(v) for k, v in kwargs.items() if v is not None and k != "batch_id"}
    return json.dumps([snake, kw], sort_keys=True, default=str)


def _random_table(rng: np.random.Generator, n: int) -> pa.Table:
    """The same columns as Arrow types a DuckDB result has: NaN and null both in a double
    column, -0.0 beside 0.0, nullable int32 / bool / text / date32, a null-typed column."""
    miss = rng.random(n) < 0.2
    f = rng.choice([-1.0, -0.0, 0.0, 1.0, 2.0, np.nan], n)
    i = rng.integers(-1, 3, n)
    days = np.datetime64("2024-01-02") + rng.integers(0, 3, n).astype("timedelta64[D]")
    return pa.table({
        "f64": pa.array(f, mask=miss), "f32": pa.array(f.astype("float32")),
        "i64": pa.array(i), "i32": pa.array(i.astype("int32"), mask=miss),
        "Int64": pa.array(rng.integers(-1, 3, n), mask=miss), "Float64": pa.array(np.where(miss, np.nan, f)),
        "b": pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.2),
        "s": pa.array(rng.choice(["a", "b", "c"], n), mask=rng.random(n) < 0.2),
        "d": pa.array(days, pa.date32()).filter(pa.array(np.ones(n, bool))) if n else pa.array([], pa.date32()),
        "dt": pa.array(days.astype("datetime64[us]"), mask=miss),
        "o": pa.nulls(n),
    })


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_arrow_screen_agrees_with_great_expectations_on_random_frames(kind):
    """An expectation skipped by GX (screen says "passes") must pass in GX; and the screen
    answers exactly like GX wherever it does not defer on purpose (non-numeric ranges, rows
    whose compound key is all missing, min > max). ``pandas``: a pandas frame screened through
    :func:`screen_table`, GX on the frame; ``arrow``: an Arrow table (as the SQL models hand
    over) screened as is, GX on its ``to_pandas()``."""
    from sc_assets.checks.gx_suites import (
        _run_gx,
        between,
        ge,
        in_set,
        not_null,
        positive,
        screen_all,
        screen_table,
        unique,
    )

    rng = np.random.default_rng(11)
    cols = ["f64", "f32", "i64", "i32", "Int64", "Float64", "b", "s", "d", "dt"]
    numeric = ["f64", "f32", "i64", "i32", "Int64", "Float64", "o"]
    exps = (not_null(*cols) + [x for c in cols for x in unique([c])] + unique(["f64", "s"]) + unique(["d", "i64"])
            + unique(["f64", "i32", "b"])
            + [x for c in numeric for lo, hi in [(0, None), (None, 1), (0, 1), (2, 1)] for x in between(c, lo, hi)]
            + [x for c in numeric for x in positive(c)]
            + ge("f64", "i64") + ge("Int64", "f32") + ge("dt", "dt") + ge("d", "d") + ge("s", "s")
            + in_set("s", ["a", "b"]) + in_set("i64", [0, 1, 2]) + in_set("f64", [-1.0, 0.0, 1.0]) + in_set("b", [True]))
    agree = gx_fails = 0
    for trial in range(12):
        n = int(rng.integers(0, 9))
        if kind == "pandas":
            df = _random_frame(rng, n)
            table = screen_table(df)
        else:
            table = _random_table(rng, n)
            df = table.to_pandas()
        assert screen_all(exps, table) == [e.screen(table) for e in exps]  # grouped range screens
        results = _run_gx("test.screen_oracle", df, exps, "BOOLEAN_ONLY")
        by_config = {_config_key(r.expectation_config.type, r.expectation_config.kwargs): r for r in results}
        assert len(by_config) == len(exps)
        for e in exps:
            r = by_config[_config_key(e.gx_class, e.kwargs)]
            screened = e.screen(table)
            gx_fails += not r.success
            assert not (screened and not r.success), (trial, e, df)  # never skips a GX failure
            k = e.kwargs
            deferred = (k.get("min_value", 0) or 0) > (k.get("max_value", 9) if k.get("max_value") is not None else 9) \
                or (k.get("column_list") and df[k["column_list"]].isna().all(axis=1).any())
            if not deferred:
                assert screened == r.success, (trial, e, df)
                agree += 1
    assert agree > 12 * len(exps) // 2 and gx_fails > 50  # the comparison is not vacuous


def test_grouped_range_screens_answer_like_each_screen():
    """screen_all screens range checks of float64 columns with equal bounds together: the same
    verdict as each expectation's own screen, whether the group passes or one column fails
    (NaN, null, -0.0, all-null and int columns mixed in)."""
    from sc_assets.checks.gx_suites import at_most_zero, between, non_negative, positive, screen_all

    rng = np.random.default_rng(3)
    for _ in range(60):
        n = int(rng.integers(0, 8))
        cols = {}
        for j in range(5):
            v = rng.choice([0.5, 1.0, 2.0, np.nan], n) * (1 if rng.random() < 0.8 else rng.choice([-1.0, 0.0, -0.0]))
            cols[f"x{j}"] = pa.array(v, mask=rng.random(n) < 0.2)
        cols["null"] = pa.nulls(n, pa.float64())
        cols["i"] = pa.array(rng.integers(0, 3, n))
        t = pa.table(cols)
        names = list(cols)
        exps = (positive(*names) + non_negative(*names) + at_most_zero(*names)
                + [x for c in names for x in between(c, 0.5, 2.0) + between(c, 2, 1)])
        assert screen_all(exps, t) == [e.screen(t) for e in exps], t.to_pandas()


def test_distinct_rows_counts_like_pandas_duplicated():
    from sc_assets.checks.gx_suites import distinct_rows

    rng = np.random.default_rng(5)
    for _ in range(20):
        t = _random_table(rng, int(rng.integers(0, 40)))
        for cols in (["f64"], ["s", "d"], ["f64", "i32", "b", "s"], ["o", "i64"]):
            expected = int((~t.select(cols).to_pandas().duplicated()).sum())
            assert distinct_rows(t, cols) == expected, (cols, t.to_pandas())
        # sorted keys (the SQL models' output), with and without duplicate rows: the sorted shortcut
        keys = t.select(["i64", "d", "s"]).filter(pa.compute.is_valid(t.column("s")))
        for tab in (keys, keys.group_by(["i64", "d", "s"]).aggregate([])):
            tab = tab.sort_by([("i64", "ascending"), ("d", "ascending"), ("s", "ascending")])
            for cols in (["i64", "d", "s"], ["s", "d", "i64"], ["i64", "d"]):
                expected = int((~tab.select(cols).to_pandas().duplicated()).sum())
                assert distinct_rows(tab, cols) == expected, (cols, tab.to_pandas())


def test_strictly_increasing_is_sorted_and_duplicate_free():
    """Oracle: pandas is_monotonic_increasing on the row tuples and no duplicated row."""
    from sc_assets.checks.gx_suites import strictly_increasing

    rng = np.random.default_rng(8)
    for _ in range(40):
        n = int(rng.integers(0, 12))
        t = pa.table({"i": pa.array(rng.integers(0, 3, n)), "s": pa.array(rng.choice(["a", "b", "c"], n)),
                      "d": pa.array(np.datetime64("2024-01-02") + rng.integers(0, 3, n).astype("timedelta64[D]"),
                                    pa.date32())})
        if rng.random() < 0.7:
            t = t.sort_by([("d", "ascending"), ("s", "ascending"), ("i", "ascending")])
        for cols in (["d", "s"], ["d", "s", "i"], ["i"], ["s", "d"]):
            df = t.select(cols).to_pandas()
            tuples = pd.Series(list(df.itertuples(index=False, name=None)), dtype=object)
            expected = bool(tuples.is_monotonic_increasing and not tuples.duplicated().any())
            assert strictly_increasing(t, cols) == expected, (cols, df)
    with_null = pa.table({"i": pa.array([1, None, 3])})
    floats = pa.table({"f": pa.array([1.0, 2.0, 3.0])})
    assert not strictly_increasing(with_null, ["i"]) and not strictly_increasing(floats, ["f"])
    assert not strictly_increasing(floats, [])


def test_validate_takes_arrow_tables_like_pandas_frames():
    """The SQL models validate Arrow chunks: same verdicts and failures as the pandas frame."""
    clean = panel()
    for df in (clean, panel(close=11.5, high=11.5, ret=0.15, up_limit=11.0), panel(board="nasdaq")):
        t = pa.Table.from_pandas(df, preserve_index=False)
        ok_pd, meta_pd = validate("marts.stock_daily_panel", df, days=["2024-01-02"])
        ok_pa, meta_pa = validate("marts.stock_daily_panel", t, days=["2024-01-02"])
        assert ok_pd == ok_pa and meta_pd["failed"] == meta_pa["failed"] and meta_pd["evaluated"] == meta_pa["evaluated"]


def test_clean_frames_need_no_great_expectations_and_failures_are_reported_by_it():
    code = ("import sys, warnings; warnings.simplefilter('ignore'); import pandas as pd\n"
            "from sc_assets.checks.gx_suites import validate\n"
            "df = pd.DataFrame(dict(trade_date=['2024-01-02'] * 2, ts_code=['510500.SH', '510300.SH'],"
            " index_code=['000905.SH', '000300.SH'], fd_share=[1e9, 2e9], close=[5.0, 4.0],"
            " share_change=[0.0, 1.0], net_inflow=[0.0, 4.0]))\n"
            "print(validate('marts.etf_flow_panel', df)[0], 'great_expectations' in sys.modules)\n"
            "ok, meta = validate('marts.etf_flow_panel', df.assign(close=[5.0, -4.0]))\n"
            "print(ok, 'great_expectations' in sys.modules, meta['failed'][0]['unexpected_count'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-2:] == ["True False", "False True 1"]
