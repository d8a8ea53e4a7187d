"""Size exposures, factor returns, size portfolios and drawdown-vs-size (METHODS §2–3).

Oracles: pandas/numpy per-day loops and statsmodels; properties with hypothesis; recovery of
factor returns planted by a small in-test market generator (:func:`make_panel`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sc_assets.analytics import size as sz
from sc_assets.partitions import trading_days_between

INDUSTRIES = ["银行", "电子", "医药生物", "机械设备", "计算机", "食品饮料"]


def make_panel(n_stocks: int = 250, start: str = "2023-10-09", end: str = "2023-12-29", seed: int = 0):
    """A marts.stock_daily_panel-shaped frame with planted factor returns.

    Returns of day t = country + industry + size_{t-1} f_size + nlsize_{t-1} f_nls + noise, with
    exposures of t-1 computed by the product's own ``size_exposures`` (so the truth is defined
    exactly as the estimator's exposures). Some stock-days are suspended (ret/caps null) or
    locked; a few stocks list inside the window. Returns (panel, truth) where truth has
    trade_date, size, nlsize (daily factor returns).
    """
    rng = np.random.default_rng(seed)
    days = trading_days_between(start, end)
    codes = np.array([f"{600000 + i:06d}.SH" for i in range(n_stocks)])
    industry = rng.choice(INDUSTRIES, n_stocks)
    cap = np.exp(rng.normal(22.8, 1.3, n_stocks))
    listed0 = rng.integers(70, 2000, n_stocks)
    late = rng.random(n_stocks) < 0.04
    listed0[late] = -rng.integers(1, 30, late.sum())  # list inside the window
    rows, truth = [], []
    prev_exp = None
    for i, day in enumerate(days):
        days_listed = listed0 + i
        alive = days_listed >= 1
        susp = (rng.random(n_stocks) < 0.02) & alive & (days_listed > 1)
        locked = (rng.random(n_stocks) < 0.02) & alive & ~susp
        ret = np.full(n_stocks, np.nan)
        if prev_exp is not None:
            f_c, f_s, f_n = rng.normal(0, 0.01), rng.normal(0, 0.004), rng.normal(0, 0.003)
            f_k = dict(zip(INDUSTRIES, rng.normal(0, 0.004, len(INDUSTRIES)), strict=True))
            e = prev_exp.set_index("ts_code").reindex(codes)
            r = f_c + np.array([f_k[k] for k in industry]) + rng.normal(0, 0.004, n_stocks)
            r += np.nan_to_num(e["size"].to_numpy()) * f_s + np.nan_to_num(e["nlsize"].to_numpy()) * f_n
            ret = np.where(alive & ~susp, r, np.nan)
            ret[(days_listed == 1)] = rng.normal(0.3, 0.1, (days_listed == 1).sum())  # IPO pop
            truth.append({"trade_date": day, "size": f_s, "nlsize": f_n})
            cap = cap * (1 + np.nan_to_num(ret))
        frame = pd.DataFrame(
            {
                "trade_date": day.date(),
                "ts_code": codes,
                "industry": industry,
                "days_listed": days_listed,
                "is_suspended": susp,
                "is_locked": locked,
                "ret": ret,
                "total_mv": np.where(susp, np.nan, cap),
            }
        )[alive]
        rows.append(frame)
        prev_exp = sz.size_exposures(frame)
    panel = pd.concat(rows, ignore_index=True)
    panel["industry"] = panel["industry"].astype("string")
    return panel, pd.DataFrame(truth)


@pytest.fixture(scope="module")
def market():
    return make_panel()


def prev_map(panel):
    days = sorted(pd.to_datetime(panel["trade_date"]).unique())
    return dict(zip(days[1:], days[:-1], strict=True))


@pytest.mark.parametrize("unit", ["s", "ms", "ns"])
def test_day_codes_same_for_sorted_shuffled_objects_and_nat(unit):
    """Day codes are the rank of the row's day among the distinct days, however the column comes
    (day-sorted datetime64 as the lake gives it, shuffled, Python dates, with a NaT -> -1)."""
    rng = np.random.default_rng(4)
    days = pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-05", "2024-02-01"]).as_unit(unit)
    col = pd.Series(days.repeat([3, 1, 5, 2]))
    codes, got = sz._day_codes(col)
    np.testing.assert_array_equal(codes, np.repeat(np.arange(4), [3, 1, 5, 2]))
    assert got.equals(days)
    perm = rng.permutation(len(col))
    for variant in (col.iloc[perm], pd.Series(col.dt.date.to_numpy()[perm], dtype=object), col.to_numpy()[perm]):
        c2, d2 = sz._day_codes(variant)
        np.testing.assert_array_equal(c2, codes[perm])
        assert (d2 == days).all()
    with_nat = pd.Series(np.r_[np.datetime64("NaT", unit), col.to_numpy()])
    c3, d3 = sz._day_codes(with_nat)
    np.testing.assert_array_equal(c3, np.r_[-1, codes])
    assert (d3 == days).all()


# ---- standardization and winsorization ----------------------------------------------------


def test_standardize_matches_per_day_numpy():
    rng = np.random.default_rng(1)
    codes = np.repeat(np.arange(4), [30, 50, 7, 90])
    cap = np.exp(rng.normal(22, 1.4, len(codes)))
    x = np.log(cap) + rng.normal(0, 0.1, len(codes))
    z = sz.standardize(x, cap, codes, 4)
    for g in range(4):
        m = codes == g
        ref = (x[m] - np.average(x[m], weights=cap[m])) / np.std(x[m])
        np.testing.assert_allclose(z[m], ref, atol=1e-12)
        assert np.average(z[m], weights=cap[m]) == pytest.approx(0, abs=1e-12)
        assert np.std(z[m]) == pytest.approx(1, abs=1e-12)


def test_weighted_residual_matches_statsmodels():
    rng = np.random.default_rng(2)
    codes = np.repeat(np.arange(3), [40, 60, 25])
    x = rng.normal(size=len(codes))
    y = x**3
    w = rng.uniform(0.5, 3, len(codes))
    u = sz.weighted_residual(y, x, w, codes, 3)
    for g in range(3):
        m = codes == g
        fit = sm.WLS(y[m], sm.add_constant(x[m]), weights=w[m]).fit()
        np.testing.assert_allclose(u[m], fit.resid, atol=1e-10)


caps = arrays(np.float64, st.integers(12, 80), elements=st.floats(1e8, 5e12, allow_nan=False))


@settings(max_examples=40, deadline=None)
@given(cap=caps, limit=st.floats(1.5, 3.5))
def test_winsorization_bounds(cap, limit):
    codes = np.zeros(len(cap), dtype=np.int64)
    x = np.log(cap)
    z1 = sz.standardize(x, cap, codes, 1)
    if not np.isfinite(z1).all():  # all caps equal: no spread, nothing to standardize
        return
    clipped = sz.winsorize(z1, limit)
    assert np.all(np.abs(clipped) <= limit)
    y = sz.winsorized_standardize(x, cap, codes, 1, limit)
    if not np.isfinite(y).all():
        return
    # the output is an increasing affine map of the clipped values: monotone in cap, the
    # clipped names tie at the ends, and the moments are Barra's
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(y[order]) >= -1e-9)
    top = z1 >= limit
    if top.any():
        assert np.ptp(y[top]) < 1e-9 and y[top][0] == pytest.approx(y.max())
    assert np.average(y, weights=cap) == pytest.approx(0, abs=1e-9)
    assert np.std(y) == pytest.approx(1, abs=1e-9)


def _one_day_panel(cap, industries, day="2024-01-05"):
    n = len(cap)
    return pd.DataFrame(
        {
            "trade_date": pd.Timestamp(day).date(),
            "ts_code": [f"{i:06d}.SZ" for i in range(n)],
            "industry": industries,
            "total_mv": cap,
            "days_listed": 100,
            "is_suspended": False,
        }
    )


@settings(max_examples=30, deadline=None)
@given(
    cap=arrays(np.float64, st.integers(15, 60), elements=st.floats(1e8, 5e12), unique=True),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_exposures_invariant_to_stock_order_and_cap_scale(cap, scale, seed):
    rng = np.random.default_rng(seed)
    p = _one_day_panel(cap, rng.choice(INDUSTRIES, len(cap)))
    base = sz.size_exposures(p).set_index("ts_code")
    if not np.isfinite(base[["size", "nlsize"]].to_numpy()).all():
        return
    perm = p.iloc[rng.permutation(len(p))]
    shuffled = sz.size_exposures(perm).set_index("ts_code").loc[base.index]
    np.testing.assert_allclose(shuffled[["size", "nlsize"]], base[["size", "nlsize"]], atol=1e-9)
    scaled = sz.size_exposures(p.assign(total_mv=p["total_mv"] * scale)).set_index("ts_code")
    np.testing.assert_allclose(scaled[["size", "nlsize"]], base[["size", "nlsize"]], atol=1e-8)


def test_exposures_per_day_universe_and_moments(market):
    panel, _ = market
    exp = sz.size_exposures(panel)
    uni = sz.estimation_universe(panel)
    assert len(exp) == uni.sum()
    assert (panel.loc[uni, "days_listed"] >= 60).all()
    assert exp.merge(panel[panel["is_suspended"]], on=["trade_date", "ts_code"]).empty
    for _, d in exp.groupby("trade_date"):
        for col in ("size", "nlsize"):
            assert np.average(d[col], weights=d["total_mv"]) == pytest.approx(0, abs=1e-10)
            assert d[col].std(ddof=0) == pytest.approx(1, abs=1e-10)
        # size is increasing in cap; nlsize: micro caps negative, the middle positive (N shape)
        d = d.sort_values("total_mv")
        assert np.all(np.diff(d["size"].to_numpy()) >= -1e-12)
        q = np.quantile(d["size"], [0.1, 0.5, 0.9])
        assert d.loc[d["size"] <= q[0], "nlsize"].mean() < 0
        assert d.loc[(d["size"] > q[0]) & (d["size"] < q[2]), "nlsize"].mean() > d.loc[d["size"] <= q[0], "nlsize"].mean()


# ---- factor returns -----------------------------------------------------------------------


def test_alignment_and_exclusions(market):
    panel, _ = market
    exp = sz.size_exposures(panel)
    al = sz.align_previous_exposures(panel[pd.to_datetime(panel["trade_date"]) > "2023-10-09"], exp, prev_map(panel))
    assert len(al) == (pd.to_datetime(panel["trade_date"]) > "2023-10-09").sum()
    # every excluded reason is true for its row; included rows have none of them
    inc = al[al["exclusion"].isna()]
    assert not inc["is_suspended"].any() and not inc["is_locked"].any()
    assert inc[["size", "nlsize", "ret", "industry_prev"]].notna().all().all()
    assert (al.loc[al["exclusion"] == "suspended", "is_suspended"]).all()
    assert (al.loc[al["exclusion"] == "locked", "is_locked"]).all()
    assert (al.loc[al["exclusion"] == "listing_day", "days_listed"] == 1).all()
    # exposures and caps come from t-1
    row = inc.iloc[5]
    src = exp[(pd.to_datetime(exp["trade_date"]) == row["prev_date"]) & (exp["ts_code"] == row["ts_code"])]
    assert src["size"].item() == row["size"] and src["total_mv"].item() == row["total_mv_prev"]


def test_factor_returns_recover_planted_size_and_nlsize(market):
    panel, truth = market
    exp = sz.size_exposures(panel)
    al = sz.align_previous_exposures(panel, exp, prev_map(panel))
    long, daily = sz.factor_returns(al)
    wide = long.pivot(index="trade_date", columns="factor", values="ret")
    t = truth.set_index("trade_date").reindex(wide.index)
    for f in ("size", "nlsize"):
        c = np.corrcoef(wide[f], t[f])[0, 1]
        assert c > 0.97, (f, c)
    # counts: every aligned row is either used or excluded for one reason
    excl = daily[[c for c in daily if c.startswith("n_excluded_")]].sum(axis=1)
    n_rows = al.groupby(pd.to_datetime(al["trade_date"])).size().reindex(daily["trade_date"]).to_numpy()
    np.testing.assert_array_equal(daily["n_stocks"] + excl, n_rows)
    assert daily.loc[daily["n_stocks"] > 0, "n_excluded_locked"].sum() > 0
    # industries net to zero with caps of t-1
    ind = long[long["factor_type"] == "industry"]
    one_day = ind[ind["trade_date"] == ind["trade_date"].iloc[-1]]
    d = al[(pd.to_datetime(al["trade_date"]) == one_day["trade_date"].iloc[0]) & al["exclusion"].isna()]
    s = d.groupby("industry_prev")["total_mv_prev"].sum() / d["total_mv_prev"].sum()
    assert abs((s.reindex(one_day["factor"]).to_numpy() * one_day["ret"].to_numpy()).sum()) < 1e-12
    # the first day has no t-1 exposures: no regression, all rows counted as such
    first = daily.iloc[0]
    assert first["n_stocks"] == 0 and first["n_excluded_no_exposure_t_minus_1"] > 0


# ---- size portfolios ----------------------------------------------------------------------------


def test_deciles_and_smb_match_loop_oracle(market):
    panel, _ = market
    exp = sz.size_exposures(panel)
    al = sz.align_previous_exposures(panel, exp, prev_map(panel))
    dec = sz.size_deciles(al)
    day = dec["trade_date"].iloc[-1]
    members = al[(pd.to_datetime(al["trade_date"]) == day) & al["size"].notna() & al["ret"].notna()]
    members = members.sort_values("total_mv_prev")
    chunks = np.array_split(np.arange(len(members)), 10)
    d = dec[dec["trade_date"] == day].set_index("decile")
    sizes = d["n_stocks"].to_numpy()
    assert sizes.sum() == len(members) and sizes.max() - sizes.min() <= 1
    start = 0
    for k in range(1, 11):
        m = members.iloc[start : start + sizes[k - 1]]
        start += sizes[k - 1]
        assert d.loc[k, "ret_ew"] == pytest.approx(m["ret"].mean(), abs=1e-14)
        assert d.loc[k, "ret_cw"] == pytest.approx(np.average(m["ret"], weights=m["total_mv_prev"]), abs=1e-14)
        if k < 10:
            assert d.loc[k, "cap_max"] < d.loc[k + 1, "cap_min"]
    assert len(chunks) == 10
    out = sz.smb(dec)
    row = out[out["trade_date"] == day].iloc[0]
    assert row["smb_ew"] == pytest.approx(d.loc[[1, 2, 3], "ret_ew"].mean() - d.loc[[8, 9, 10], "ret_ew"].mean())
    assert row["smb_cw"] == pytest.approx(d.loc[[1, 2, 3], "ret_cw"].mean() - d.loc[[8, 9, 10], "ret_cw"].mean())


def test_narrow_decile_alignment_equals_full_alignment(market):
    """The size portfolios' narrow join (panel: trade_date, ts_code, ret; exposures: trade_date,
    ts_code, total_mv, size) gives the full join's rows and values, and the same deciles."""
    panel, _ = market
    exp = sz.size_exposures(panel)
    prev = prev_map(panel)
    full = sz.align_previous_exposures(panel, exp, prev)
    narrow = sz.align_previous_caps(panel[["trade_date", "ts_code", "ret"]],
                                    exp[["trade_date", "ts_code", "total_mv", "size"]], prev)
    pd.testing.assert_frame_equal(narrow, full[narrow.columns.tolist()])
    pd.testing.assert_frame_equal(sz.size_deciles(narrow), sz.size_deciles(full))


def test_decile_ranks_break_cap_ties_in_row_order():
    """Equal caps of t-1 rank in row order (rank method 'first'), days interleaved in the input."""
    days = pd.to_datetime(["2024-01-03", "2024-01-02"] * 6)
    cap = np.array([5.0, 1.0, 5.0, 1.0, 5.0, 2.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0])
    al = pd.DataFrame({"trade_date": days, "ret": np.arange(12) / 100.0, "total_mv_prev": cap, "size": 0.0})
    dec = sz.size_deciles(al, n_deciles=6)
    for day, g in al.groupby("trade_date"):
        rank = g["total_mv_prev"].rank(method="first").to_numpy()
        want = g.assign(decile=np.ceil(rank * 6 / len(g)).astype(int)).groupby("decile")["ret"].mean()
        got = dec[dec["trade_date"] == day].set_index("decile")["ret_ew"]
        pd.testing.assert_series_equal(got, want, check_names=False, check_index_type=False)


def test_decile_ranks_with_many_ties_on_a_large_chunk_follow_row_order():
    """Thousands of tied caps (an unstable sort would scramble them): deciles still match rank 'first'."""
    rng = np.random.default_rng(8)
    n = 20_000
    days = pd.to_datetime(np.array(["2024-01-02", "2024-01-03", "2024-01-04"]))[rng.integers(0, 3, n)]
    cap = rng.choice(np.array([1.0, 2.0, 3.5, 7.0, 11.0]) * 1e9, n)
    al = pd.DataFrame({"trade_date": days, "ret": rng.normal(0, 0.02, n), "total_mv_prev": cap, "size": 0.0})
    dec = sz.size_deciles(al, n_deciles=10)
    for day, g in al.groupby("trade_date"):
        rank = g["total_mv_prev"].rank(method="first").to_numpy()
        want = g.assign(decile=np.ceil(rank * 10 / len(g)).astype(int)).groupby("decile")["ret"].mean()
        got = dec[dec["trade_date"] == day].set_index("decile")["ret_ew"]
        pd.testing.assert_series_equal(got, want, check_names=False, check_index_type=False, rtol=1e-12)


# ---- drawdown vs size ---------------------------------------------------------------------------


def test_window_returns_and_linear_fall_in_log_cap():
    rng = np.random.default_rng(9)
    days = trading_days_between("2023-12-27", "2024-02-07")
    n = 400
    cap0 = np.exp(rng.normal(22.5, 1.3, n))
    slope_true = 0.05  # window return = 0.05 * (lncap - mean) - 0.2 + noise: small caps fall more
    target = slope_true * (np.log(cap0) - np.log(cap0).mean()) - 0.2 + rng.normal(0, 0.01, n)
    n_win = (days > "2023-12-29").sum()
    daily = (1 + target) ** (1 / n_win) - 1
    frames = []
    for day in days:
        in_win = day > pd.Timestamp("2023-12-29")
        ret = np.where(in_win, daily, rng.normal(0, 0.02, n))
        susp = np.zeros(n, bool)
        if day == pd.Timestamp("2024-01-15"):
            susp[:5] = True  # suspended one day: the next day's return would span it; here we drop it
        frames.append(pd.DataFrame({"trade_date": day, "ts_code": np.arange(n).astype(str),
                                    "ret": np.where(susp, np.nan, ret), "total_mv": cap0,
                                    "days_listed": 200}))
    panel = pd.concat(frames, ignore_index=True)
    w = sz.window_returns(panel, "2023-12-29", "2024-02-07")
    assert len(w) == n
    np.testing.assert_allclose(w["window_ret"].to_numpy()[5:], target[5:], rtol=1e-10)
    assert (w["n_days"].iloc[:5] == n_win - 1).all()
    idx = pd.DataFrame({"trade_date": [pd.Timestamp("2023-12-29"), pd.Timestamp("2024-02-07")] * 2,
                        "index_code": ["000300.SH"] * 2 + ["932000.CSI"] * 2, "close": [100.0, 95.0, 50.0, 35.0]})
    iw = sz.index_window_returns(idx, "2023-12-29", "2024-02-07")
    tab = sz.drawdown_vs_size(w, iw)
    dec = tab[tab["section"] == "decile"]
    assert list(dec["group"]) == [str(i) for i in range(1, 11)]
    assert np.all(np.diff(dec["median_ret"].to_numpy()) > 0)  # smaller deciles fell more
    assert dec["n_stocks"].sum() == n
    ix = tab[tab["section"] == "index"].set_index("group")["index_ret"]
    assert ix["000300.SH"] == pytest.approx(-0.05) and ix["932000.CSI"] == pytest.approx(-0.30)
    reg = tab[tab["section"] == "regression"].set_index("group")
    x, y, wt = w["lncap"], w["window_ret"], np.sqrt(w["cap_base"])
    for name, weights in (("wls", wt), ("ols", np.ones(n))):
        fit = sm.WLS(y, sm.add_constant(x), weights=weights).fit()
        assert reg.loc[name, "slope"] == pytest.approx(fit.params["lncap"], rel=1e-9)
        assert reg.loc[name, "slope_se"] == pytest.approx(fit.bse["lncap"], rel=1e-9)
        assert reg.loc[name, "r2"] == pytest.approx(fit.rsquared, rel=1e-9)
    assert reg.loc["ols", "slope"] == pytest.approx(slope_true, abs=0.005)


def test_empty_and_unestimable_inputs_give_empty_or_nan_not_errors():
    cols = ["trade_date", "ts_code", "industry", "total_mv", "days_listed", "is_suspended", "is_locked", "ret"]
    empty = pd.DataFrame(columns=cols)
    al = sz.align_previous_exposures(empty, sz.size_exposures(empty), {})
    long, daily = sz.factor_returns(al)
    assert long.empty and daily.empty
    assert sz.smb(sz.size_deciles(al)).empty
    # a first day: rows but no exposures of t-1 -> counted, no regression
    day = pd.DataFrame({"trade_date": [pd.Timestamp("2024-01-03").date()] * 3, "ts_code": list("abc"),
                        "industry": ["x", "y", "x"], "total_mv": [1e9, 2e9, 3e9], "days_listed": 100,
                        "is_suspended": False, "is_locked": False, "ret": 0.01})
    al = sz.align_previous_exposures(day, sz.size_exposures(day.iloc[:0]),
                                     {pd.Timestamp("2024-01-03"): pd.Timestamp("2024-01-02")})
    long, daily = sz.factor_returns(al)
    assert long.empty
    assert daily["n_stocks"].tolist() == [0] and daily["n_excluded_no_exposure_t_minus_1"].tolist() == [3]
