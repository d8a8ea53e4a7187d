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
weighted sum over (day) or (day, industry) cells: the rows are grouped by day (the lake's order
already; otherwise one stable sort), (day, industry) sums are ``np.bincount`` over cell codes and
day sums ``np.add.reduceat`` over the day segments; absent stocks simply contribute nothing. The constrained solution is computed from the bordered
(KKT) system ``[[A, c], [c', 0]]`` (same f, and its inverse's top-left block is
``R (R'AR)^-1 R'``): the industry block of ``A`` is diagonal, so it is eliminated in closed form and
only a (2 + S) x (2 + S) Schur complement per day is inverted, in one batched call. Industries
absent on a day get a unit pivot (zero return internally, NaN in the output). Days with too few
stocks (``N <= p``) return NaN.

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
    residuals: np.ndarray | None  # (n_rows,) u per input row, NaN for rows not used; None unless asked for


def _bincount(codes: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=size)[:size]


def _segment_sums(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each day segment ``bounds[t]:bounds[t+1]`` of day-sorted rows (0 if empty).

    ``np.add.reduceat`` reads the rows once in order; ``np.bincount`` over *sorted* day codes adds
    into the same bin row after row (a serial dependency) and was ~10x slower on 10M rows (issue 11).
    """
    out = np.zeros(len(bounds) - 1)
    nonempty = np.flatnonzero(bounds[1:] > bounds[:-1])
    if len(nonempty):
        out[nonempty] = np.add.reduceat(values, bounds[nonempty])
    return out


def _style_columns(styles, n_rows: int) -> list[np.ndarray]:
    """Style exposures as a list of contiguous float64 columns (no copy when already so): an
    (n, S) or (n,) array-like (ndarray, DataFrame), or a list / tuple of S columns."""
    if not isinstance(styles, (list, tuple)):
        styles = np.asarray(styles, dtype=float)
        if styles.ndim == 1:
            styles = styles[:, None]
        cols = [np.ascontiguousarray(styles[:, s]) for s in range(styles.shape[1])]
    else:
        cols = [np.ascontiguousarray(c, dtype=float) for c in styles]
    if any(c.shape != (n_rows,) for c in cols):
        raise ValueError("each style column must have one value per row")
    return cols


def _all_usable(day, industry, xs, ret, w, cap, T: int, K: int) -> bool:
    """Whether every row passes the row filter of :func:`constrained_wls`, from reductions only (a
    sum is finite only if every term is): an already filtered input pays no per-row mask (issue 11)."""
    if len(ret) == 0:
        return True
    return bool(
        day.min() >= 0 and day.max() < T and industry.min() >= 0 and industry.max() < K
        and np.isfinite(ret.sum()) and all(np.isfinite(x.sum()) for x in xs)
        and w.min() > 0 and np.isfinite(w.sum()) and cap.min() > 0 and np.isfinite(cap.sum())
    )


def constrained_wls(
    day: np.ndarray,
    industry: np.ndarray,
    styles,
    ret: np.ndarray,
    reg_weight: np.ndarray,
    constraint_cap: np.ndarray,
    n_days: int,
    n_industries: int,
    residuals: bool = False,
) -> RegressionResult:
    """Constrained WLS factor returns for all days in one vectorised pass.

    Parameters
    ----------
    day : int array (n,)
        Day code of each stock-day row, in ``[0, n_days)``. Rows in any order; rows grouped by
        day in increasing order (the lake's order) skip a sort.
    industry : int array (n,)
        Industry code in ``[0, n_industries)``; a negative code drops the row.
    styles : float array (n, S), or a sequence of S float arrays (n,)
        Style exposures (e.g. size, nlsize) known before the return (exposures of t-1).
    ret : float array (n,)
        Simple return of the stock on the day (fraction).
    reg_weight : float array (n,)
        Regression weight before normalisation, e.g. ``sqrt(cap)``; rows with weight <= 0 are dropped.
    constraint_cap : float array (n,)
        Cap (CNY) defining the industry shares ``s_k`` of the constraint.
    n_days, n_industries : int
        T and K.
    residuals : bool
        Also return the per-row residuals (``RegressionResult.residuals``; None otherwise: a
        per-row output array the factor returns do not need; issue 11).

    Rows with a NaN in ret, styles, weights or cap are dropped. Returns a :class:`RegressionResult`.
    """
    day = np.asarray(day, dtype=np.int64)
    industry = np.asarray(industry, dtype=np.int64)
    ret = np.asarray(ret, dtype=float)
    n_rows = len(ret)
    xs = _style_columns(styles, n_rows)
    w = np.asarray(reg_weight, dtype=float)
    cap = np.asarray(constraint_cap, dtype=float)
    S = len(xs)
    T, K = int(n_days), int(n_industries)
    P = 1 + K + S

    if T == 0 or K == 0:  # nothing to estimate (no days, or no stock with an industry)
        nan = np.full((T, P), np.nan)
        return RegressionResult(
            factor_returns=nan, std_errors=nan.copy(), t_stats=nan.copy(), r2=np.full(T, np.nan),
            n_obs=np.zeros(T, dtype=np.int64), dof=np.zeros(T, dtype=np.int64), sigma2=np.full(T, np.nan),
            industry_share=np.zeros((T, K)), residuals=np.full(n_rows, np.nan) if residuals else None,
        )
    d, k, r = day, industry, ret
    src = None  # input row of each used row, when rows were dropped or reordered
    if not _all_usable(day, industry, xs, ret, w, cap, T, K):
        ok = (industry >= 0) & (industry < K) & (day >= 0) & (day < T) & np.isfinite(ret)
        for x in xs:
            ok &= np.isfinite(x)
        ok &= np.isfinite(w) & (w > 0) & np.isfinite(cap) & (cap > 0)
        src = np.flatnonzero(ok)
        if len(src) > 1 and not (day[src[1:]] >= day[src[:-1]]).all():
            src = src[np.argsort(day[src], kind="stable")]  # group the rows by day
    elif len(d) > 1 and not (d[1:] >= d[:-1]).all():
        src = np.argsort(day, kind="stable")  # every row usable, not in day order
    if src is not None:
        d, k, r, w, cap = (a[src] for a in (day, industry, ret, w, cap))
        xs = [x[src] for x in xs]
    # rows are now grouped by day in increasing order: day t is the segment bounds[t]:bounds[t+1]
    bounds = np.searchsorted(d, np.arange(T + 1), side="left")
    n_obs = np.diff(bounds).astype(np.int64)
    n_used = len(d)
    dk = np.multiply(d, K)
    dk += k
    cells = T * K
    # per-row scratch, allocated once (a fresh ~80 MB array per product costs page faults):
    # rows 0..S-1 hold w * x_s, later the fit; the last row is a scratch for products
    work = np.empty((max(S, 1) + 1, n_used))
    buf = work[-1]

    # every block of the normal equations is a (day, industry) cell sum of raw weights w, or a day
    # sum; day sums of the industry-free blocks are row sums of the cell sums (each used row has an
    # industry). Normalising by the day's weight sum afterwards gives the v-weighted blocks (v = w / sum w).
    cap_dk = _bincount(dk, cap, cells).reshape(T, K)
    w_dk = _bincount(dk, w, cells).reshape(T, K)
    wsum = w_dk.sum(axis=1)
    inv_w = 1.0 / np.where(wsum > 0, wsum, 1.0)
    wr_dk = _bincount(dk, np.multiply(w, r, out=buf), cells).reshape(T, K)

    # industry cap shares for the constraint
    cap_d = cap_dk.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(cap_d > 0, cap_dk / cap_d, 0.0)
    present = w_dk > 0  # (T, K): stocks (all with w > 0) of the industry that day
    k_present = present.sum(axis=1)

    # ---- bordered (KKT) system [[A, c], [c', 0]] [f; lambda] = [b; 0], A = X'VX, b = X'Vr -----
    # Unknowns split into the industries (their block of A is diagonal: each stock has one
    # industry) and the m = 2 + S others z = (country, styles, lambda). Eliminating the diagonal
    # block leaves one m x m Schur complement per day, so the whole batch is O(T K m^2):
    #   D = diag(v_dk), E (K, m) couplings, F (m, m), S = F - E' D^-1 E
    #   z = S^-1 (b_z - E' D^-1 b_D),  f_D = D^-1 (b_D - E z)
    #   diag of the inverse (the covariance up to sigma^2): z: diag(S^-1); industries:
    #   1 / D_k + G_k S^-1 G_k' with G = D^-1 E.
    # The top-left P x P block of the bordered inverse is R (R'AR)^-1 R' for any restriction
    # matrix R spanning the constraint's null space, i.e. cov(f) / sigma^2 of the module docstring.
    m = 2 + S
    v_dk = w_dk * inv_w[:, None]
    v_d = v_dk.sum(axis=1)
    E = np.zeros((T, K, m))
    F = np.zeros((T, m, m))
    b_z = np.zeros((T, m))
    E[:, :, 0] = v_dk
    E[:, :, m - 1] = share  # constraint: sum_k s_k f_k = 0
    F[:, 0, 0] = v_d
    b_D = wr_dk * inv_w[:, None]
    b_z[:, 0] = b_D.sum(axis=1)
    wx = work[:S]
    for s in range(S):
        np.multiply(w, xs[s], out=wx[s])
    for s in range(S):
        blk = _bincount(dk, wx[s], cells).reshape(T, K) * inv_w[:, None]
        E[:, :, 1 + s] = blk
        F[:, 0, 1 + s] = F[:, 1 + s, 0] = blk.sum(axis=1)
        for s2 in range(s, S):
            F[:, 1 + s, 1 + s2] = F[:, 1 + s2, 1 + s] = _segment_sums(
                np.multiply(wx[s], xs[s2], out=buf), bounds) * inv_w
        b_z[:, 1 + s] = _segment_sums(np.multiply(wx[s], r, out=buf), bounds) * inv_w
    del wx

    # unit pivots for parameters that are not estimated: absent industries (their rows of E are
    # zero already), and every parameter of a day without a regression (identity system)
    p_free = k_present + S  # country + K_t industries + S styles - 1 constraint
    dof = n_obs - p_free
    good_day = (dof > 0) & (k_present > 0)
    D = np.where(present, v_dk, 1.0)
    D[~good_day] = 1.0
    E[~good_day] = 0.0
    F[~good_day] = np.eye(m)
    b_D = np.where(present & good_day[:, None], b_D, 0.0)
    b_z[~good_day] = 0.0

    G = E / D[:, :, None]
    Sinv = np.linalg.inv(F - np.einsum("tkm,tkn->tmn", E, G))
    z = np.einsum("tmn,tn->tm", Sinv, b_z - np.einsum("tkm,tk->tm", G, b_D))
    f = np.empty((T, P))
    f[:, 0] = z[:, 0]
    f[:, 1 + K :] = z[:, 1 : 1 + S]
    f[:, 1 : 1 + K] = (b_D - np.einsum("tkm,tm->tk", E, z)) / D
    diag = np.empty((T, P))
    diag[:, 0] = Sinv[:, 0, 0]
    diag[:, 1 + K :] = np.diagonal(Sinv, axis1=1, axis2=2)[:, 1 : 1 + S]
    diag[:, 1 : 1 + K] = 1.0 / D + np.einsum("tkm,tmn,tkn->tk", G, Sinv, G)
    # a day with one industry: the constraint pins its return to exactly 0 (no sampling error)
    alone = present & (k_present == 1)[:, None]
    f[:, 1 : 1 + K][alone] = 0.0
    diag[:, 1 : 1 + K][alone] = 0.0

    # residuals u = r - fitted, sigma^2, R^2: the (day, industry) part of the fit is one lookup in
    # a T x K table, a style part a lookup of the day's style return
    fitted = np.take((f[:, :1] + f[:, 1 : 1 + K]).ravel(), dk, out=work[0])  # w * x no longer needed
    for s in range(S):
        fitted += np.multiply(xs[s], np.take(f[:, 1 + K + s], d, out=buf), out=buf)
    u = np.subtract(r, fitted, out=fitted)
    ssr = _segment_sums(np.multiply(np.multiply(w, u, out=buf), u, out=buf), bounds) * inv_w
    rbar = b_z[:, 0] / np.where(v_d > 0, v_d, 1.0)
    dev = np.subtract(r, np.take(rbar, d, out=buf), out=buf)
    tss = _segment_sums(np.multiply(w, np.square(dev, out=dev), out=dev), bounds) * inv_w
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma2 = np.where(good_day, ssr / np.where(dof > 0, dof, 1), np.nan)
        r2 = np.where(good_day & (tss > 0), 1.0 - ssr / tss, np.nan)
    var_f = diag * sigma2[:, None]
    se = np.sqrt(np.clip(var_f, 0.0, None))

    estimated = np.ones((T, P), dtype=bool)
    estimated[:, 1 : 1 + K] = present
    estimated &= good_day[:, None]
    f = np.where(estimated, f, np.nan)
    se = np.where(estimated, se, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        tstat = f / se
    resid = None
    if residuals:
        u = np.where(good_day[d], u, np.nan)
        if src is None:
            resid = u
        else:
            resid = np.full(n_rows, np.nan)
            resid[src] = u
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
