"""Batched constrained WLS vs independent oracles: statsmodels WLS on X R and a KKT solve."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

from sc_assets.analytics.regression import constrained_wls, restriction_matrix

TOL = 1e-8


def random_days(seed: int, T: int = 6, K: int = 8, S: int = 2, n_range=(40, 250)):
    """Long arrays for T random days with varying N, some industries absent on some days."""
    rng = np.random.default_rng(seed)
    day, ind, x, r, cap = [], [], [], [], []
    for t in range(T):
        n = int(rng.integers(*n_range))
        k_avail = rng.choice(K, size=int(rng.integers(2, K + 1)), replace=False)
        day.append(np.full(n, t))
        ind.append(rng.choice(k_avail, size=n))
        x.append(rng.normal(size=(n, S)) * rng.uniform(0.5, 2.0, S))
        cap.append(np.exp(rng.normal(22.0, 1.5, n)))
        r.append(rng.standard_t(4, n) * 0.02)
    return (np.concatenate(day), np.concatenate(ind), np.vstack(x), np.concatenate(r), np.concatenate(cap), T, K)


def oracle_day(t, day, ind, x, r, cap, K):
    """statsmodels WLS on the restricted design + KKT solve for one day (industries present only)."""
    m = day == t
    ks = np.unique(ind[m])
    S = x.shape[1]
    D = np.column_stack([np.ones(m.sum())] + [(ind[m] == k).astype(float) for k in ks] + [x[m]])
    share = np.array([cap[m][ind[m] == k].sum() for k in ks]) / cap[m].sum()
    w = np.sqrt(cap[m])
    # eliminate the *smallest* industry here (the product eliminates the largest): the answer
    # must not depend on that choice
    R = restriction_matrix(share, S, eliminate=int(np.argmin(share)))
    fit = sm.WLS(r[m], D @ R, weights=w).fit()
    f = R @ fit.params
    se = np.sqrt(np.diag(R @ fit.cov_params() @ R.T))
    C = np.r_[0.0, share, np.zeros(S)][None, :]
    A = D.T @ (D * w[:, None])
    kkt = np.block([[A, C.T], [C, np.zeros((1, 1))]])
    f_kkt = np.linalg.solve(kkt, np.r_[D.T @ (w * r[m]), 0.0])[:-1]
    cols = [0] + [1 + k for k in ks] + [1 + K + s for s in range(S)]
    return cols, f, se, fit.tvalues, fit.rsquared, f_kkt, share, ks, fit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_statsmodels_and_kkt(seed):
    day, ind, x, r, cap, T, K = random_days(seed)
    res = constrained_wls(day, ind, x, r, np.sqrt(cap), cap, T, K, residuals=True)
    for t in range(T):
        cols, f, se, _, r2, f_kkt, share, ks, fit = oracle_day(t, day, ind, x, r, cap, K)
        np.testing.assert_allclose(res.factor_returns[t, cols], f, rtol=0, atol=TOL)
        np.testing.assert_allclose(res.factor_returns[t, cols], f_kkt, rtol=0, atol=TOL)
        np.testing.assert_allclose(res.std_errors[t, cols], se, rtol=1e-7, atol=TOL)
        np.testing.assert_allclose(res.t_stats[t, cols], f / se, rtol=1e-7, atol=1e-6)
        assert res.r2[t] == pytest.approx(r2, abs=TOL)
        assert res.n_obs[t] == (day == t).sum()
        assert res.dof[t] == fit.df_resid
        # absent industries are NaN, present ones satisfy the constraint
        absent = np.setdiff1d(np.arange(K), ks)
        assert np.isnan(res.factor_returns[t, 1 + absent]).all()
        assert abs(share @ res.factor_returns[t, 1 + ks]) < 1e-12
        # statsmodels' MSE uses the raw weights; ours sums to one per day — scale cancels in se
        np.testing.assert_allclose(res.residuals[day == t], fit.resid, atol=TOL)


def test_days_are_independent_and_rows_with_nan_drop():
    day, ind, x, r, cap, T, K = random_days(7)
    full = constrained_wls(day, ind, x, r, np.sqrt(cap), cap, T, K)
    # solving a single day alone gives the same answer as inside the batch
    t = 3
    m = day == t
    alone = constrained_wls(np.zeros(m.sum(), int), ind[m], x[m], r[m], np.sqrt(cap[m]), cap[m], 1, K)
    np.testing.assert_allclose(alone.factor_returns[0], full.factor_returns[t], atol=1e-12, equal_nan=True)
    # a NaN return / non-positive weight / negative industry drops exactly that row
    r2 = r.copy()
    r2[np.flatnonzero(m)[:3]] = np.nan
    ind2 = ind.copy()
    ind2[np.flatnonzero(m)[3]] = -1
    keep = np.ones(len(r), bool)
    keep[np.flatnonzero(m)[:4]] = False
    a = constrained_wls(day, ind2, x, r2, np.sqrt(cap), cap, T, K, residuals=True)
    b = constrained_wls(day[keep], ind[keep], x[keep], r[keep], np.sqrt(cap[keep]), cap[keep], T, K)
    np.testing.assert_allclose(a.factor_returns, b.factor_returns, atol=1e-12, equal_nan=True)
    assert a.n_obs[t] == m.sum() - 4
    assert np.isnan(a.residuals[np.flatnonzero(m)[:4]]).all()


def test_weight_scale_and_eliminated_industry_do_not_matter():
    day, ind, x, r, cap, T, K = random_days(11)
    base = constrained_wls(day, ind, x, r, np.sqrt(cap), cap, T, K)
    scaled = constrained_wls(day, ind, x, r, 1e3 * np.sqrt(cap), 7.0 * cap, T, K)
    np.testing.assert_allclose(scaled.factor_returns, base.factor_returns, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(scaled.std_errors, base.std_errors, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(scaled.r2, base.r2, atol=1e-12)


def test_too_few_stocks_gives_nan_not_garbage():
    rng = np.random.default_rng(3)
    K, S = 3, 2
    n0 = 4  # day 0: 4 stocks, 3 industries + 2 styles -> p = 5 >= N: not estimable
    n1 = 60
    day = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    ind = np.r_[np.arange(n0) % K, rng.integers(0, K, n1)]
    x = rng.normal(size=(n0 + n1, S))
    r = rng.normal(0, 0.02, n0 + n1)
    cap = np.exp(rng.normal(22, 1, n0 + n1))
    res = constrained_wls(day, ind, x, r, np.sqrt(cap), cap, 2, K)
    assert np.isnan(res.factor_returns[0]).all() and np.isnan(res.r2[0])
    assert np.isfinite(res.factor_returns[1]).all() and np.isfinite(res.t_stats[1]).all()


def test_recovers_planted_factor_returns():
    """With tiny noise the regression returns the planted (constraint-satisfying) factor returns."""
    rng = np.random.default_rng(5)
    T, N, K = 20, 300, 5
    day = np.repeat(np.arange(T), N)
    ind = rng.integers(0, K, T * N)
    x = rng.normal(size=(T * N, 2))
    cap = np.exp(rng.normal(22, 1.2, T * N))
    f_c = rng.normal(0, 0.01, T)
    f_s = rng.normal(0, 0.005, (T, 2))
    f_k = rng.normal(0, 0.005, (T, K))
    share = np.stack([np.bincount(ind[day == t], cap[day == t], K) for t in range(T)])
    share /= share.sum(axis=1, keepdims=True)
    f_k -= (share * f_k).sum(axis=1, keepdims=True)  # impose sum_k s_k f_k = 0
    r = f_c[day] + f_k[day, ind] + (x * f_s[day]).sum(axis=1) + rng.normal(0, 1e-7, T * N)
    res = constrained_wls(day, ind, x, r, np.sqrt(cap), cap, T, K)
    np.testing.assert_allclose(res.factor_returns[:, 0], f_c, atol=1e-7)
    np.testing.assert_allclose(res.factor_returns[:, 1 : 1 + K], f_k, atol=1e-7)
    np.testing.assert_allclose(res.factor_returns[:, 1 + K :], f_s, atol=1e-7)
    assert (res.r2 > 0.999).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-3, 1e3))
def test_invariant_to_stock_order_and_common_cap_scale(seed, scale):
    day, ind, x, r, cap, T, K = random_days(seed, T=3, n_range=(30, 80))
    base = constrained_wls(day, ind, x, r, np.sqrt(cap), cap, T, K, residuals=True)
    perm = np.random.default_rng(seed).permutation(len(r))
    shuffled = constrained_wls(day[perm], ind[perm], x[perm], r[perm], np.sqrt(cap[perm]), cap[perm], T, K,
                               residuals=True)
    np.testing.assert_allclose(shuffled.factor_returns, base.factor_returns, atol=1e-10, equal_nan=True)
    np.testing.assert_allclose(shuffled.residuals[np.argsort(perm)], base.residuals, atol=1e-10, equal_nan=True)
    c = cap * scale
    scaled = constrained_wls(day, ind, x, r, np.sqrt(c), c, T, K)
    np.testing.assert_allclose(scaled.factor_returns, base.factor_returns, atol=1e-10, equal_nan=True)
    np.testing.assert_allclose(scaled.t_stats, base.t_stats, rtol=1e-7, atol=1e-7, equal_nan=True)


def test_unsorted_rows_with_dropped_rows_and_style_columns_match_clean_sorted_input():
    """Rows in any order, some unusable, styles given as columns: same fit as the clean rows grouped
    by day (the solver drops and regroups rows itself); residuals come back in input row order."""
    day, ind, x, r, cap, T, K = random_days(13)
    assert constrained_wls(day, ind, x, r, np.sqrt(cap), cap, T, K).residuals is None
    rng = np.random.default_rng(13)
    bad = rng.choice(len(r), size=12, replace=False)
    day2, ind2, x2, r2, cap2 = day.copy(), ind.copy(), x.copy(), r.copy(), cap.copy()
    r2[bad[:3]] = np.nan
    x2[bad[3:5], 1] = np.inf
    cap2[bad[5:7]] = 0.0
    ind2[bad[7:9]] = -1
    ind2[bad[9]] = K
    day2[bad[10:]] = [-1, T]
    keep = np.ones(len(r), bool)
    keep[bad] = False
    ref = constrained_wls(day[keep], ind[keep], x[keep], r[keep], np.sqrt(cap[keep]), cap[keep], T, K,
                          residuals=True)
    perm = rng.permutation(len(r))
    got = constrained_wls(day2[perm], ind2[perm], [x2[perm, 0], x2[perm, 1]], r2[perm], np.sqrt(cap2[perm]),
                          cap2[perm], T, K, residuals=True)
    np.testing.assert_allclose(got.factor_returns, ref.factor_returns, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got.std_errors, ref.std_errors, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got.r2, ref.r2, atol=1e-12)
    np.testing.assert_array_equal(got.n_obs, ref.n_obs)
    resid = np.full(len(r), np.nan)
    resid[perm] = got.residuals
    assert np.isnan(resid[bad]).all()
    np.testing.assert_allclose(resid[keep], ref.residuals, atol=1e-12)


def test_styles_as_a_frame_match_the_array_and_a_wrong_row_count_is_an_error():
    """Any (n, S) array-like works as before (a DataFrame is not read as a list of columns), and
    style exposures with another number of rows than ``ret`` raise instead of broadcasting."""
    import pandas as pd

    day, ind, x, r, cap, T, K = random_days(21)
    ref = constrained_wls(day, ind, x, r, np.sqrt(cap), cap, T, K)
    frame = constrained_wls(day, ind, pd.DataFrame(x, columns=["size", "nlsize"]), r, np.sqrt(cap), cap, T, K)
    np.testing.assert_array_equal(frame.factor_returns, ref.factor_returns)
    for bad in (x[:1], x[:-1], [x[:-1, 0], x[:-1, 1]], x[:-1, 0]):
        with pytest.raises(ValueError, match="one value per row"):
            constrained_wls(day, ind, bad, r, np.sqrt(cap), cap, T, K)
