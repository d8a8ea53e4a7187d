"""Rolling excess correlations: oracle = pandas ``Series.rolling(w, min_periods).corr``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sc_assets.analytics import correlations as cr


def _pandas_corr(x: np.ndarray, y: np.ndarray, w: int, m: int) -> np.ndarray:
    return pd.Series(x).rolling(w, min_periods=m).corr(pd.Series(y)).to_numpy()


def _panel(seed: int, t: int = 260, s: int = 40):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.02, t)
    y = 0.7 * x[:, None] + rng.normal(0, 0.01, (t, s))
    x[[5, 6, 100]] = np.nan
    # products that start mid-window, gaps, one that stops early (general path), others complete
    y[: 30, 1] = np.nan
    y[: 130, 2] = np.nan
    y[rng.random(t) < 0.1, 3] = np.nan
    y[200:, 4] = np.nan
    return x, y


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("window,min_periods", [(26, 20), (52, 40), (5, 5), (10, 3)])
def test_rolling_corr_matches_pandas(seed, window, min_periods):
    x, y = _panel(seed)
    got = cr.rolling_corr(x, y, window, min_periods)
    for j in range(y.shape[1]):
        ref = _pandas_corr(x, y[:, j], window, min_periods)
        np.testing.assert_array_equal(np.isnan(got[:, j]), np.isnan(ref), err_msg=f"col {j}")
        np.testing.assert_allclose(got[:, j], ref, atol=1e-10, equal_nan=True)


def test_multi_windows_equal_single_and_block_sizes_agree():
    x, y = _panel(9, s=37)
    multi = cr.rolling_corr_multi(x, y, ((26, 20), (52, 40)), block=7)
    np.testing.assert_allclose(multi[0], cr.rolling_corr(x, y, 26, 20), atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(multi[1], cr.rolling_corr(x, y, 52, 40), atol=1e-12, equal_nan=True)


def test_two_dimensional_x_general_path():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 3))
    y = x + rng.normal(size=(120, 3))
    x[:10, 0] = np.nan
    got = cr.rolling_corr(x, y, 26, 20)
    for j in range(3):
        np.testing.assert_allclose(got[:, j], _pandas_corr(x[:, j], y[:, j], 26, 20), atol=1e-10, equal_nan=True)


def test_level_like_inputs_are_well_conditioned():
    rng = np.random.default_rng(2)
    x = 1000 + np.cumsum(rng.normal(size=500))
    y = 0.5 * x + rng.normal(size=500) + 5000
    np.testing.assert_allclose(cr.rolling_corr(x, y, 52, 40)[:, 0], _pandas_corr(x, y, 52, 40), atol=1e-8,
                               equal_nan=True)


def test_edge_cases():
    assert cr.rolling_corr(np.array([]), np.empty((0, 2)), 26, 20).shape == (0, 2)
    one = cr.rolling_corr(np.array([0.1]), np.array([0.2]), 26, 1)
    assert np.isnan(one).all()  # one observation: no variance
    flat = cr.rolling_corr(np.r_[np.full(30, 0.01), np.linspace(0, 1, 10)], np.linspace(0, 1, 40), 10, 5)
    assert np.isnan(flat[5:29, 0]).all()  # a constant window has no correlation
    assert np.isfinite(flat[-1, 0])
    with pytest.raises(ValueError):
        cr.rolling_corr(np.ones(5), np.ones(5), 10, 11)
    with pytest.raises(ValueError):
        cr.rolling_corr(np.ones(5), np.ones(5), 0)


def test_excess_correlations_long_table_and_median():
    rng = np.random.default_rng(8)
    weeks = pd.date_range("2022-01-07", periods=120, freq="W-FRI")
    small = pd.DataFrame({"000905.SH": rng.normal(0, 0.02, 120), "000852.SH": rng.normal(0, 0.02, 120)},
                         index=weeks)
    bench = pd.Series({"A": "000905.SH", "B": "000905.SH", "C": "000852.SH", "D": "000300.SH"})
    ex = pd.DataFrame({f: 0.9 * small.get(b, pd.Series(0.0, index=weeks)) + rng.normal(0, 0.008, 120)
                       for f, b in bench.items()}, index=weeks)
    ex.loc[weeks[:50], "C"] = np.nan  # starts mid-sample
    long = cr.excess_correlations(ex, small, bench, ((26, 20), (52, 40)))
    assert set(long.columns) >= {"trade_date", "fund_id", "benchmark", "corr_26w", "corr_52w"}
    for f in ("A", "C"):
        got = long[long["fund_id"] == f].set_index("trade_date")["corr_26w"].reindex(weeks)
        ref = small[bench[f]].rolling(26, min_periods=20).corr(ex[f])
        np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=1e-10, equal_nan=True)
    assert long.loc[long["fund_id"] == "D", "corr_26w"].isna().all()  # no small-cap excess for 000300
    assert long.loc[long["fund_id"] == "C", "trade_date"].min() == weeks[50]
    # constructed with 0.9 loading: correlations are high, as in the study (> 85%)
    assert long.loc[long["fund_id"].isin(["A", "B", "C"]), "corr_52w"].median() > 0.85

    med = cr.cross_product_median(long)
    day = weeks[-1]
    row = med[(med["trade_date"] == day) & (med["benchmark"] == "all")].iloc[0]
    vals = long.loc[long["trade_date"] == day, "corr_26w"].dropna()
    assert row["median_corr_26w"] == pytest.approx(vals.median()) and row["n_products_26w"] == len(vals) == 3
    per = med[(med["trade_date"] == day) & (med["benchmark"] == "000905.SH")].iloc[0]
    assert per["n_products_26w"] == 2


def test_excess_correlations_empty():
    out = cr.excess_correlations(pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=str))
    assert out.empty and "corr_26w" in out.columns
    assert cr.cross_product_median(out).empty
