"""Batched constrained cross-sectional WLS: Barra-style factor returns for many days at once.

METHODS.md §3. For each day t, stocks n with exposures X (country, K industry dummies, S style
exposures) explain returns r::

    r_n = f_c + sum_k X_nk f_k + sum_s X_ns f_s + u_n
    weights     v_n = w_n / sum_n w_n             (w_n = sqrt(cap_n) by convention; any w > 0)
    constraint  sum_k s_k f_k = 0,  s_k = cap share of industry k among the day's stocks

Solved with a restriction matrix R: the day's *eliminated* industry e (the one with the largest
cap share, for numerical stability; the choice does not change the solution) gets
``f_e = -sum_{k != e} (s_k / s_e) f_k``, so ``f = R g`` and
``g = (R' X'VX R)^-1 R' X'V r``.  ``sigma^2 = sum v u^2 / (N - p)`` with ``p = K_t + S`` free
parameters (K_t industries present that day), ``cov(g) = sigma^2 (R' X'VX R)^-1``,
``cov(f) = R cov(g) R'`` — identical to statsmodels' WLS on the restricted design ``X R``
(the weight scale cancels). The weighted R^2 is ``1 - sum v u^2 / sum v (r - rbar_v)^2``
(``rbar_v`` the v-weighted mean), statsmodels' ``rsquared`` for a model with a constant.

Implementation (no per-day loop): the inputs are *long* arrays, one entry per stock-day, with an
integer day code and an integer industry code. Every block of the normal equations is a
weighted sum over (day) or (day, industry) cells, built with ``np.bincount``; absent stocks
simply contribute nothing (weight 0). The (T, P, P) systems are then solved in one batched
``np.linalg.solve``. Industries absent on a day have zero rows/columns; they get a unit pivot
(so the batch stays non-singular), a zero return internally and NaN in the output. Days with
too few stocks (``N <= p``) return NaN.

References: Menchero, Orr, Wang (2011) *USE4 Methodology Notes* §2 (constrained regression,
sqrt-cap weights); *Barra China Equity Model (CNE5)* (2012).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RegressionResult:
    """Output of :func:`constrained_wls` for T days and P = 1 + K + S factors.

    Factor order: ``[country, industry_0 .. industry_{K-1}, style_0 .. style_{S-1}]``.
    Returns are daily simple returns (fractions); NaN where a factor (industry absent) or a
    whole day (too few stocks) is not estimated.
    """

    factor_returns: np.ndarray  # (T, P)
    std_errors: np.ndarray  # (T, P)
    t_stats: np.ndarray  # (T, P)
    r2: np.ndarray  # (T,) v-weighted R^2
    n_obs: np.ndarray  # (T,) stocks used
    dof: np.ndarray  # (T,) N - p
    sigma2: np.ndarray  # (T,) residual variance sum v u^2 / (N - p) with v summing to 1
    industry_share: np.ndarray  # (T, K) cap share s_k used in the constraint
    residuals: np.ndarray  # (n_rows,) u per input row; NaN for rows not used


def _bincount(codes: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=size)[:size]


def constrained_wls(
    day: np.ndarray,
    industry: np.ndarray,
    styles: np.ndarray,
    ret: np.ndarray,
    reg_weight: np.ndarray,
    constraint_cap: np.ndarray,
    n_days: int,
    n_industries: int,
) -> RegressionResult:
    """Constrained WLS factor returns for all days in one vectorised pass.

    Parameters
    ----------
    day : int array (n,)
        Day code of each stock-day row, in ``[0, n_days)``.
    industry : int array (n,)
        Industry code in ``[0, n_industries)``; a negative code drops the row.
    styles : float array (n, S)
        Style exposures (e.g. size, nlsize) known before the return (exposures of t-1).
    ret : float array (n,)
        Simple return of the stock on the day (fraction).
    reg_weight : float array (n,)
        Regression weight before normalisation, e.g. ``sqrt(cap)``; rows with weight <= 0 are dropped.
    constraint_cap : float array (n,)
        Cap (CNY) defining the industry shares ``s_k`` of the constraint.
    n_days, n_industries : int
        T and K.

    Rows with a NaN in ret, styles, weights or cap are dropped. Returns a :class:`RegressionResult`.
    """
    day = np.asarray(day, dtype=np.int64)
    industry = np.asarray(industry, dtype=np.int64)
    styles = np.asarray(styles, dtype=float)
    if styles.ndim == 1:
        styles = styles[:, None]
    ret = np.asarray(ret, dtype=float)
    w = np.asarray(reg_weight, dtype=float)
    cap = np.asarray(constraint_cap, dtype=float)
    n_rows, S = styles.shape
    T, K = int(n_days), int(n_industries)
    P = 1 + K + S

    if T == 0 or K == 0:  # nothing to estimate (no days, or no stock with an industry)
        nan = np.full((T, P), np.nan)
        return RegressionResult(
            factor_returns=nan, std_errors=nan.copy(), t_stats=nan.copy(), r2=np.full(T, np.nan),
            n_obs=np.zeros(T, dtype=np.int64), dof=np.zeros(T, dtype=np.int64), sigma2=np.full(T, np.nan),
            industry_share=np.zeros((T, K)), residuals=np.full(n_rows, np.nan),
        )
    ok = (
        (industry >= 0)
        & (industry < K)
        & (day >= 0)
        & (day < T)
        & np.isfinite(ret)
        & np.isfinite(styles).all(axis=1)
        & np.isfinite(w)
        & (w > 0)
        & np.isfinite(cap)
        & (cap > 0)
    )
    idx = np.flatnonzero(ok)
    d, k, x, r, cap_ok = day[idx], industry[idx], styles[idx], ret[idx], cap[idx]
    dk = d * K + k

    # normalised regression weights v (sum to 1 per day)
    wsum = _bincount(d, w[idx], T)
    v = w[idx] / wsum[d]
    n_obs = _bincount(d, np.ones(len(idx)), T).astype(np.int64)

    # industry cap shares for the constraint
    cap_dk = _bincount(dk, cap_ok, T * K).reshape(T, K)
    cap_d = cap_dk.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(cap_d > 0, cap_dk / cap_d, 0.0)
    present = share > 0  # (T, K)
    k_present = present.sum(axis=1)

    # ---- normal equations A = X'VX, b = X'Vr, blockwise via bincount -----------------------
    A = np.zeros((T, P, P))
    b = np.zeros((T, P))
    ind = slice(1, 1 + K)
    v_d = _bincount(d, v, T)
    v_dk = _bincount(dk, v, T * K).reshape(T, K)
    A[:, 0, 0] = v_d
    A[:, 0, ind] = v_dk
    A[:, ind, 0] = v_dk
    ii = np.arange(1, 1 + K)
    A[:, ii, ii] = v_dk
    vr = v * r
    b[:, 0] = _bincount(d, vr, T)
    b[:, ind] = _bincount(dk, vr, T * K).reshape(T, K)
    for s in range(S):
        vx = v * x[:, s]
        c_s = 1 + K + s
        A[:, 0, c_s] = A[:, c_s, 0] = _bincount(d, vx, T)
        blk = _bincount(dk, vx, T * K).reshape(T, K)
        A[:, ind, c_s] = blk
        A[:, c_s, ind] = blk
        for s2 in range(s, S):
            A[:, c_s, 1 + K + s2] = A[:, 1 + K + s2, c_s] = _bincount(d, vx * x[:, s2], T)
        b[:, c_s] = _bincount(d, vx * r, T)

    # ---- restriction matrix R (T, P, P): identity, with the eliminated industry's row -----------
    e = np.argmax(share, axis=1)  # eliminated industry per day (largest share)
    R = np.broadcast_to(np.eye(P), (T, P, P)).copy()
    s_e = share[np.arange(T), e]
    with np.errstate(invalid="ignore", divide="ignore"):
        row = np.where(s_e[:, None] > 0, -share / np.where(s_e > 0, s_e, 1.0)[:, None], 0.0)
    row[np.arange(T), e] = 0.0
    R[np.arange(T), 1 + e, ind] = row  # f_e = -sum_{k!=e} s_k/s_e f_k ; column 1+e becomes zero

    Rt = R.transpose(0, 2, 1)
    M = Rt @ A @ R
    c = (Rt @ b[:, :, None])[:, :, 0]

    # unit pivots for parameters that are not free: the eliminated industry, absent industries
    fixed = np.zeros((T, P), dtype=bool)
    fixed[:, ind] = ~present
    fixed[np.arange(T), 1 + e] = True
    p_free = k_present + S  # country + K_t industries + S styles - 1 constraint
    dof = n_obs - p_free
    good_day = (dof > 0) & (k_present > 0)
    fixed[~good_day, :] = True
    M[fixed] = 0.0
    M.transpose(0, 2, 1)[fixed] = 0.0
    tt, pp = np.nonzero(fixed)
    M[tt, pp, pp] = 1.0
    c[fixed] = 0.0

    # one batched solve for g and (R'X'VXR)^-1
    rhs = np.concatenate([c[:, :, None], np.broadcast_to(np.eye(P), (T, P, P))], axis=2)
    sol = np.linalg.solve(M, rhs)
    g = sol[:, :, 0]
    Minv = sol[:, :, 1:]
    Minv[fixed] = 0.0
    Minv.transpose(0, 2, 1)[fixed] = 0.0
    f = (R @ g[:, :, None])[:, :, 0]

    # residuals, sigma^2, R^2
    fitted = f[d, 0] + f[d, 1 + k] + np.einsum("ns,ns->n", x, f[d, 1 + K :])
    u = r - fitted
    ssr = _bincount(d, v * u * u, T)
    rbar = b[:, 0] / np.where(v_d > 0, v_d, 1.0)
    tss = _bincount(d, v * (r - rbar[d]) ** 2, T)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma2 = np.where(good_day, ssr / np.where(dof > 0, dof, 1), np.nan)
        r2 = np.where(good_day & (tss > 0), 1.0 - ssr / tss, np.nan)
    cov_f = (R @ Minv @ Rt) * sigma2[:, None, None]
    se = np.sqrt(np.clip(np.diagonal(cov_f, axis1=1, axis2=2), 0.0, None))

    estimated = np.ones((T, P), dtype=bool)
    estimated[:, ind] = present
    estimated &= good_day[:, None]
    f = np.where(estimated, f, np.nan)
    se = np.where(estimated, se, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        tstat = f / se
    resid = np.full(n_rows, np.nan)
    resid[idx] = np.where(good_day[d], u, np.nan)
    return RegressionResult(
        factor_returns=f,
        std_errors=se,
        t_stats=tstat,
        r2=r2,
        n_obs=n_obs,
        dof=dof,
        sigma2=sigma2,
        industry_share=share,
        residuals=resid,
    )


def restriction_matrix(share: np.ndarray, n_styles: int, eliminate: int | None = None) -> np.ndarray:
    """The (1+K+S) x (K+S) restriction matrix R of one day, for reference and tests.

    ``share`` (K,) are industry cap shares (all > 0); industry ``eliminate`` (default: largest
    share) is expressed through the others so that ``sum_k share_k f_k = 0`` for any ``g``.
    """
    share = np.asarray(share, dtype=float)
    K = len(share)
    e = int(np.argmax(share)) if eliminate is None else int(eliminate)
    P = 1 + K + n_styles
    R = np.eye(P)
    R[1 + e, 1 : 1 + K] = -share / share[e]
    R[1 + e, 1 + e] = 0.0
    return np.delete(R, 1 + e, axis=1)


__all__ = ["RegressionResult", "constrained_wls", "restriction_matrix"]
