"""Drawdown analytics: oracle = empyrical-reloaded, brute-force pandas for dates, calendar
weeks from exchange-calendars, independent long-format rebuilds of the neutral index and
excess NAV."""

from __future__ import annotations

import empyrical
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sc_assets.analytics import drawdowns as dd
from sc_assets.partitions import trading_days_between


def _random_returns(seed: int, t: int = 400, s: int = 6, nan_frac: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    r = rng.standard_t(4, size=(t, s)) * 0.015 + 0.0002
    if nan_frac:
        r[rng.random((t, s)) < nan_frac] = np.nan
    return pd.DataFrame(r, index=pd.bdate_range("2019-01-02", periods=t), columns=[f"s{i}" for i in range(s)])


# ---------------------------------------------------------------- oracle: empyrical max_drawdown
@pytest.mark.parametrize("seed", range(5))
def test_max_drawdown_matches_empyrical(seed):
    rets = _random_returns(seed, nan_frac=0.05 if seed % 2 else 0.0)
    stats = dd.drawdown_stats(dd.levels_from_returns(rets))
    expected = empyrical.max_drawdown(rets)  # DataFrame -> Series per column, base 100 prepended
    np.testing.assert_allclose(stats["max_drawdown"].to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    # the plain array function agrees too
    np.testing.assert_allclose(dd.max_drawdown(dd.levels_from_returns(rets).to_numpy()), expected.to_numpy(),
                               atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(arrays(float, st.integers(1, 120), elements=st.floats(-0.2, 0.2)))
def test_max_drawdown_matches_empyrical_property(rets):
    lv = dd.levels_from_returns(pd.Series(rets))
    assert dd.max_drawdown(lv.to_numpy())[0] == pytest.approx(empyrical.max_drawdown(rets), abs=1e-12)


def test_first_day_loss_counts():
    lv = dd.levels_from_returns(pd.Series([-0.1, 0.05], index=pd.to_datetime(["2024-01-02", "2024-01-03"])))
    assert lv.iloc[0] == 1.0 and lv.index[0] == pd.Timestamp("2024-01-01")
    st_ = dd.drawdown_stats(lv.to_frame("a")).loc["a"]
    assert st_["max_drawdown"] == pytest.approx(-0.1)
    assert st_["peak_date"] == pd.Timestamp("2024-01-01") and st_["trough_date"] == pd.Timestamp("2024-01-02")


@settings(max_examples=60, deadline=None)
@given(arrays(float, st.integers(1, 200), elements=st.floats(0.01, 1e4)))
def test_drawdown_non_positive_and_zero_at_peaks(values):
    d = dd.drawdown_array(values)
    assert (d <= 1e-12).all()
    at_peak = values == np.maximum.accumulate(values)
    assert np.abs(d[at_peak]).max() < 1e-12


# ---------------------------------------------------------------- dates vs a brute-force loop
def _brute(series: pd.Series) -> dict:
    """Independent per-series reference: plain Python over the values."""
    idx = list(series.index)
    vals = series.to_numpy()
    best, best_i, worst, trough_i, peak_i = -np.inf, None, 0.0, None, None
    for i, v in enumerate(vals):
        if np.isnan(v):
            continue
        if v >= best:
            best, best_i = v, i
        d = v / best - 1
        if d < worst:
            worst, trough_i, peak_i = d, i, best_i
    rec_i = None
    if trough_i is not None:
        for i in range(trough_i + 1, len(vals)):
            if not np.isnan(vals[i]) and vals[i] >= vals[peak_i]:
                rec_i = i
                break
    return {
        "max_drawdown": worst,
        "peak_date": idx[peak_i] if peak_i is not None else pd.NaT,
        "trough_date": idx[trough_i] if trough_i is not None else pd.NaT,
        "recovery_date": idx[rec_i] if rec_i is not None else pd.NaT,
        "peak_to_trough": trough_i - peak_i if trough_i is not None else pd.NA,
        "trough_to_recovery": rec_i - trough_i if rec_i is not None else pd.NA,
    }


@pytest.mark.parametrize("seed", range(4))
def test_dates_and_durations_match_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    # short mean-reverting series so that recoveries happen, with NaN gaps and late starts
    t, s = 150, 40
    lv = np.exp(np.cumsum(rng.normal(0, 0.03, (t, s)), axis=0) * 0.5)
    lv[rng.random((t, s)) < 0.1] = np.nan
    lv[: rng.integers(0, 60), 3] = np.nan
    frame = pd.DataFrame(lv, index=pd.bdate_range("2023-01-02", periods=t))
    stats = dd.drawdown_stats(frame)
    recovered = 0
    for c in frame.columns:
        ref = _brute(frame[c])
        row = stats.loc[c]
        assert row["max_drawdown"] == pytest.approx(ref["max_drawdown"], abs=1e-14)
        for k in ("peak_date", "trough_date", "recovery_date"):
            assert (pd.isna(row[k]) and pd.isna(ref[k])) or row[k] == ref[k], (c, k)
        for k in ("peak_to_trough", "trough_to_recovery"):
            assert (pd.isna(row[k]) and pd.isna(ref[k])) or int(row[k]) == ref[k], (c, k)
        recovered += pd.notna(row["recovery_date"])
    assert recovered > 0  # the test exercises recoveries


def test_vectorised_equals_looped_benchmark_small():
    out = dd.benchmark_vs_loop(n_series=12, n_days=300, repeats=1)
    assert out["max_abs_diff_mdd"] < 1e-12 and out["max_abs_diff_corr"] < 1e-9 and out["same_dates"]


# ---------------------------------------------------------------- edge cases
def test_empty_frame():
    st_ = dd.drawdown_stats(pd.DataFrame(index=pd.DatetimeIndex([]), columns=["a"], dtype=float))
    assert list(st_.index) == ["a"] or st_.empty
    assert dd.drawdown_stats(pd.DataFrame()).empty
    assert np.isnan(dd.max_drawdown(np.empty((0, 2)))).all()


def test_one_point_and_all_nan():
    frame = pd.DataFrame({"one": [np.nan, 1.3, np.nan], "none": [np.nan] * 3},
                         index=pd.bdate_range("2024-01-02", periods=3))
    st_ = dd.drawdown_stats(frame)
    one, none = st_.loc["one"], st_.loc["none"]
    assert one["max_drawdown"] == 0 and one["n_obs"] == 1 and pd.isna(one["trough_date"])
    assert one["start_date"] == one["end_date"] == pd.Timestamp("2024-01-03")
    assert np.isnan(none["max_drawdown"]) and none["n_obs"] == 0 and pd.isna(none["start_date"])


def test_constant_and_monotone_series():
    frame = pd.DataFrame({"flat": [1.0] * 5, "up": [1, 2, 3, 4, 5.0]}, index=pd.bdate_range("2024-01-02", periods=5))
    st_ = dd.drawdown_stats(frame)
    for c in ("flat", "up"):
        assert st_.loc[c, "max_drawdown"] == 0 and pd.isna(st_.loc[c, "peak_date"])
        assert pd.isna(st_.loc[c, "peak_to_trough"]) and st_.loc[c, "current_drawdown"] == 0


def test_new_peak_on_last_day_is_the_recovery():
    frame = pd.DataFrame({"a": [1.0, 1.2, 0.9, 1.0, 1.25]}, index=pd.bdate_range("2024-01-02", periods=5))
    row = dd.drawdown_stats(frame).loc["a"]
    assert row["max_drawdown"] == pytest.approx(0.9 / 1.2 - 1)
    assert row["peak_date"] == frame.index[1] and row["trough_date"] == frame.index[2]
    assert row["recovery_date"] == frame.index[4] and row["trough_to_recovery"] == 2
    assert row["current_drawdown"] == 0


def test_nan_gap_is_not_filled_and_peak_carries():
    frame = pd.DataFrame({"a": [1.0, 1.1, np.nan, np.nan, 0.99, 1.2]}, index=pd.bdate_range("2024-01-02", periods=6))
    d = dd.drawdown_frame(frame)["a"]
    assert d.isna().tolist() == [False, False, True, True, False, False]
    assert d.iloc[4] == pytest.approx(0.99 / 1.1 - 1)
    row = dd.drawdown_stats(frame).loc["a"]
    assert row["peak_to_trough"] == 3  # grid rows, gap included (durations are calendar rows)


def test_series_starting_mid_window():
    idx = pd.bdate_range("2024-01-02", periods=8)
    frame = pd.DataFrame({"late": [np.nan] * 3 + [1.0, 0.8, 0.9, 1.1, 1.0]}, index=idx)
    row = dd.drawdown_stats(frame).loc["late"]
    assert row["start_date"] == idx[3] and row["n_obs"] == 5
    assert row["max_drawdown"] == pytest.approx(-0.2) and row["peak_date"] == idx[3]
    assert row["recovery_date"] == idx[6] and row["current_drawdown"] == pytest.approx(1.0 / 1.1 - 1)
    lv = dd.levels_from_returns(pd.DataFrame({"late": [np.nan, np.nan, -0.1, 0.2]}, index=idx[:4]))
    assert np.isnan(lv["late"].iloc[:2]).all() and lv["late"].iloc[2] == 1.0  # base right before
    assert lv["late"].iloc[3] == pytest.approx(0.9)


# ---------------------------------------------------------------- weeks (METHODS §1)
def test_week_labels_spring_festival_2024():
    labels = dd.week_labels(["2024-02-05", "2024-02-07", "2024-02-08", "2024-02-19", "2024-02-23",
                             "2024-04-03"])
    assert [d.strftime("%Y-%m-%d") for d in labels] == [
        "2024-02-08", "2024-02-08", "2024-02-08", "2024-02-23", "2024-02-23",
        "2024-04-03"]  # Qingming: Thu 04-04 and Fri 04-05 closed -> the week ends Wednesday
    grid = dd.week_grid("2024-01-29", "2024-02-29")
    assert pd.Timestamp("2024-02-08") in grid
    assert not ((grid > pd.Timestamp("2024-02-08")) & (grid < pd.Timestamp("2024-02-19"))).any()


def test_weekly_return_compounds_holiday_short_week():
    days = trading_days_between("2024-01-02", "2024-03-29")  # exchange-calendars sessions
    rng = np.random.default_rng(3)
    daily = pd.Series(rng.normal(0, 0.01, len(days)), index=days)
    close = pd.DataFrame({"idx": 100 * (1 + daily).cumprod()})
    wr = dd.weekly_returns(close)["idx"]
    sf_days = days[(days > pd.Timestamp("2024-02-02")) & (days <= pd.Timestamp("2024-02-08"))]
    assert len(sf_days) == 4
    assert wr.loc["2024-02-08"] == pytest.approx(np.prod(1 + daily[sf_days]) - 1, abs=1e-12)
    after = days[(days > pd.Timestamp("2024-02-08")) & (days <= pd.Timestamp("2024-02-23"))]
    assert wr.loc["2024-02-23"] == pytest.approx(np.prod(1 + daily[after]) - 1, abs=1e-12)
    # every week of the quarter compounds exactly the sessions it has
    total = np.prod(1 + wr.dropna()) - 1
    first_week_end = dd.week_labels([days[0]])[0]
    assert total == pytest.approx(close["idx"].iloc[-1] / close["idx"].loc[first_week_end] - 1, abs=1e-12)


def test_weekly_returns_missing_week_is_nan_not_spanned():
    days = trading_days_between("2024-03-04", "2024-03-29")
    close = pd.DataFrame({"a": np.linspace(1, 2, len(days))}, index=days)
    close = close.drop(days[(days >= pd.Timestamp("2024-03-11")) & (days <= pd.Timestamp("2024-03-15"))])
    wr = dd.weekly_returns(close)["a"]
    assert np.isnan(wr.loc["2024-03-15"]) and np.isnan(wr.loc["2024-03-22"])
    assert wr.notna().sum() == 1  # only 03-29 has both ends


# ---------------------------------------------------------------- neutral index (METHODS §4)
def _nav_long(seed: int, n: int = 12, weeks: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grid = dd.week_grid("2022-06-01", "2024-03-29")[-weeks:]
    rows = []
    for i in range(n):
        start = rng.integers(0, weeks // 2) if i % 3 == 0 else 0
        nav = np.cumprod(1 + rng.normal(0.001, 0.01, weeks))
        keep = np.arange(weeks) >= start
        keep &= rng.random(weeks) > 0.08  # missing weeks
        rows.append(pd.DataFrame({"fund_id": f"F{i:02d}", "trade_date": grid[keep], "adj_nav": nav[keep]}))
    return pd.concat(rows, ignore_index=True)


def test_neutral_index_matches_long_format_rebuild():
    long = _nav_long(5)
    wide = dd.weekly_panel(long, "fund_id", "trade_date", "adj_nav")
    idx = dd.neutral_index(wide)
    # independent: per fund, the previous *calendar* week's NAV; mean over funds with both ends
    grid = pd.DatetimeIndex(wide.index)
    prev_week = dict(zip(grid[1:], grid[:-1], strict=True))
    nav = long.set_index(["fund_id", "trade_date"])["adj_nav"]
    rets = {}
    for (fid, day), v in nav.items():
        p = prev_week.get(day)
        if p is not None and (fid, p) in nav.index:
            rets.setdefault(day, []).append(v / nav[(fid, p)] - 1)
    ref = pd.Series({d: np.mean(v) for d, v in rets.items()}).sort_index()
    got = idx["ret"].dropna()
    assert list(got.index) == list(ref.index)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=1e-14)
    assert idx["level"].iloc[0] == 1.0
    np.testing.assert_allclose(idx["level"].iloc[-1], np.prod(1 + ref.to_numpy()), rtol=1e-12)
    counts = pd.Series({d: len(v) for d, v in rets.items()}).sort_index()
    assert idx.loc[ref.index, "n_products"].tolist() == counts.tolist()


def test_worst_weeks_order_and_worst_since():
    grid = dd.week_grid("2024-01-01", "2024-03-31")
    r = pd.Series([np.nan, -0.02, 0.01, -0.05, -0.01, -0.054, 0.02, -0.03, 0.03], index=grid[:9])
    index = pd.DataFrame({"ret": r, "n_products": 3, "level": (1 + r.fillna(0)).cumprod()})
    index["drawdown"] = dd.drawdown_array(index["level"].to_numpy())
    ww = dd.worst_weeks(index, 3)
    assert ww["ret"].tolist() == [-0.054, -0.05, -0.03]
    assert ww["rank"].tolist() == [1, 2, 3]
    assert pd.isna(ww.loc[0, "worst_since"]) and pd.isna(ww.loc[1, "worst_since"])
    assert ww.loc[2, "worst_since"] == grid[5]
    assert (ww["week_start"].dt.day_of_week == 0).all()
    assert ww.loc[0, "trade_date"] == pd.Timestamp("2024-02-08")  # the Spring Festival week


# ---------------------------------------------------------------- excess NAV (METHODS §5)
def test_excess_nav_relative_and_arithmetic_match_definitions():
    long = _nav_long(7, n=6, weeks=40)
    nav = dd.weekly_panel(long, "fund_id", "trade_date", "adj_nav")
    rng = np.random.default_rng(1)
    b = pd.Series(np.cumprod(1 + rng.normal(0, 0.02, len(nav))), index=nav.index)
    bench = pd.DataFrame({c: b for c in nav.columns}).where(nav.notna())
    rel = dd.excess_nav(nav, bench, "relative")
    ari = dd.excess_nav(nav, bench, "arithmetic")
    for c in nav.columns:
        f = nav[c].dropna()
        bb = b.loc[f.index]
        np.testing.assert_allclose(rel[c].dropna(), (f / f.iloc[0]) / (bb / bb.iloc[0]), rtol=1e-13)
        e = (f.pct_change() - bb.pct_change()).fillna(0.0)  # consecutive observations
        np.testing.assert_allclose(ari[c].dropna(), 1 + e.cumsum(), rtol=1e-13)
        assert rel[c].isna().equals(nav[c].isna())
    with pytest.raises(ValueError):
        dd.excess_nav(nav, bench, "log")


def test_summary_and_table1_shape():
    per = pd.DataFrame({
        "fund_id": list("abcdefgh"),
        "manager": ["M1", "M1", "M2", "M2", "M3", "M3", "M4", "M4"],
        "benchmark": ["000905.SH", "000852.SH"] * 4,
        "manager_aum_bucket": [">=10bn"] * 4 + ["5-10bn"] * 2 + ["<5bn"] * 2,
        "max_drawdown": [-0.12, -0.10, -0.13, -0.09, -0.20, -0.06, -0.25, -0.11],
        "trough_date": pd.to_datetime(["2024-02-07"] * 8),
    })
    summ = dd.excess_drawdown_summary(per)
    row = summ[(summ["group"] == "benchmark") & (summ["benchmark"] == "000905.SH")].iloc[0]
    vals = per.loc[per["benchmark"] == "000905.SH", "max_drawdown"]
    assert row["median"] == pytest.approx(vals.median()) and row["n_products"] == 4
    assert row["q25"] == pytest.approx(np.percentile(vals, 25)) and row["worst"] == -0.25
    both = summ[summ["group"] == "benchmark_x_aum_bucket"]
    assert len(both) == 6 and set(summ["group"]) == {"benchmark", "aum_bucket", "benchmark_x_aum_bucket", "all"}
    assert row["median_trough_date"] == pd.Timestamp("2024-02-07")
    t1 = dd.table1_frame(per, ">=10bn")
    assert t1["manager"].tolist() == ["M1", "M2", "median"]
    assert t1.iloc[-1, 1] == pytest.approx(-12.5) and t1.iloc[-1, 2] == pytest.approx(-9.5)


# ---------------------------------------------------------------- index / cap-decile window table
def test_window_table_deciles_and_indices():
    rng = np.random.default_rng(11)
    days = trading_days_between("2023-12-29", "2024-02-07")
    base, window = days[0], days[1:]
    n = 200
    caps = pd.Series(np.exp(rng.uniform(20, 28, n)), index=[f"S{i:03d}" for i in range(n)])
    dec = dd.cap_deciles(caps, 10)
    assert dec[caps.idxmin()] == 1 and dec[caps.idxmax()] == 10 and (dec.value_counts() == 20).all()
    # returns: decile k loses k-dependent drift; a suspended stock-day (NaN) is excluded
    drift = -0.01 * (11 - dec) / 10
    rets = pd.DataFrame(drift.to_numpy()[None, :] + rng.normal(0, 0.002, (len(window), n)),
                        index=window, columns=caps.index)
    rets.iloc[3, 5] = np.nan
    idx_levels = pd.DataFrame({"A": np.linspace(100, 90, len(days))}, index=days)
    out = dd.window_table(idx_levels, rets, caps, 10, {"A": 25.0})
    deciles = out[out["kind"] == "cap_decile"].set_index("series")
    d1_ref = np.prod(1 + rets.loc[:, dec[dec == 1].index].mean(axis=1)) - 1
    assert deciles.loc["D1", "window_return"] == pytest.approx(d1_ref, rel=1e-12)
    assert deciles["window_return"].is_monotonic_increasing  # smaller caps fell more (by design)
    assert deciles.loc["D1", "median_log_cap"] == pytest.approx(np.log(caps[dec == 1]).median())
    a = out[out["series"] == "A"].iloc[0]
    assert a["window_return"] == pytest.approx(-0.1) and a["max_drawdown"] == pytest.approx(-0.1)
    assert a["median_log_cap"] == 25.0 and a["peak_date"] == base
