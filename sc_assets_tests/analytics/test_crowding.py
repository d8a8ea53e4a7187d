"""Crowding analytics: Table 2 from its inputs, holdings allocation, buckets, days to liquidate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sc_assets.analytics.crowding import (
    CrowdingParams,
    HoldingsParams,
    adv_and_sigma,
    assign_buckets,
    carry_forward_weights,
    crowding_ratios,
    crowding_table,
    days_to_liquidate,
    estimate_quant_holdings,
)

# The study's Table 2 (Cinda 2024-02-24), amounts in 100 m CNY; ADVs derived in METHODS.md §8.
TABLE2 = [
    # bucket, FF, Q, ADV, HS %, TS %, RS %
    ("Wind small-cap 1000", 12_829.92, 2_061.42, 620.9, 16.07, 41.16, 33.20),
    ("CSI500", 57_507.87, 1_990.69, 1_170.8, 3.46, 21.08, 17.00),
    ("CSI1000", 55_919.08, 1_500.00, 1_622.2, 2.68, 11.46, 9.25),
]


def test_table2_reproduced_to_a_hundredth_of_a_point():
    ff = np.array([r[1] for r in TABLE2]) * 1e8  # CNY
    q = np.array([r[2] for r in TABLE2]) * 1e8
    adv = np.array([r[3] for r in TABLE2]) * 1e8
    p = CrowdingParams()
    got = crowding_ratios(ff, q, adv, p.annual_turnover, p.days_per_year, p.rho)
    for i, row in enumerate(TABLE2):
        printed = [round(100 * got[k][i], 2) for k in ("holdings_share", "turnover_share", "redemption_share")]
        assert printed == pytest.approx(list(row[4:]), abs=1e-9), row[0]


def test_table2_through_the_bucket_table():
    """The same figures come out of crowding_table when the rows are built from stocks."""
    day = pd.Timestamp("2024-01-19")
    rows, buckets = [], []
    rng = np.random.default_rng(0)
    for name, ff, q, adv, *_ in TABLE2:
        k = 7
        split = rng.dirichlet(np.ones(k))
        for i in range(k):
            code = f"{name[:4]}{i}"
            rows.append((day, code, ff * 1e8 * split[i], q * 1e8 * split[(i + 2) % k], adv * 1e8 * split[(i + 4) % k]))
            buckets.append((day, code, "user", name))
    stock = pd.DataFrame(rows, columns=["trade_date", "ts_code", "free_float_mv", "holdings", "adv_cny"])
    b = pd.DataFrame(buckets, columns=["trade_date", "ts_code", "bucket_type", "bucket"])
    t = crowding_table(stock, b).set_index("bucket")
    for name, *_, hs, ts, rs in TABLE2:
        r = t.loc[name]
        assert round(100 * r["holdings_share"], 2) == pytest.approx(hs)
        assert round(100 * r["turnover_share"], 2) == pytest.approx(ts)
        assert round(100 * r["redemption_share"], 2) == pytest.approx(rs)


def test_table2_fails_with_wrong_turnover_assumption():
    ff, q, adv = 12_829.92, 2_061.42, 620.9
    got = crowding_ratios(ff, q, adv, annual_turnover=25.0)
    assert round(100 * float(got["turnover_share"]), 2) != 41.16


# ---------------------------------------------------------------------------------------------
# a tiny market
# ---------------------------------------------------------------------------------------------


def _market(n=40, days=("2024-01-02", "2024-01-03", "2024-01-04")):
    rng = np.random.default_rng(1)
    codes = [f"{600000 + i}.SH" for i in range(n)]
    total = np.exp(rng.uniform(np.log(2e9), np.log(5e11), n))
    rows = []
    for d in days:
        for c, t in zip(codes, total, strict=True):
            rows.append((pd.Timestamp(d), c, t, 0.6 * t, False))
    u = pd.DataFrame(rows, columns=["trade_date", "ts_code", "total_mv", "free_float_mv", "is_suspended"])
    order = np.argsort(-total)
    c500 = [codes[i] for i in order[5:15]]
    c1000 = [codes[i] for i in order[15:30]]
    iw = pd.concat(
        [
            pd.DataFrame({"index_code": "000905.SH", "con_code": c500, "trade_date": pd.Timestamp("2023-12-29"), "weight": 0.1}),
            pd.DataFrame({"index_code": "000852.SH", "con_code": c1000, "trade_date": pd.Timestamp("2023-12-29"), "weight": 1 / 15}),
            pd.DataFrame({"index_code": "000300.SH", "con_code": [codes[i] for i in order[:5]], "trade_date": pd.Timestamp("2024-01-03"), "weight": 0.2}),
        ]
    )
    return u, iw, codes, order


def test_weights_carried_forward_from_latest_rebalance():
    _, iw, *_ = _market()
    cw = carry_forward_weights(iw, pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]))
    # CSI300 first published 01-03: no rows on 01-02
    assert set(cw.loc[cw["index_code"] == "000300.SH", "trade_date"].dt.strftime("%m-%d")) == {"01-03", "01-04"}
    assert (cw.loc[cw["index_code"] == "000905.SH", "rebalance_date"] == pd.Timestamp("2023-12-29")).all()
    assert cw.groupby(["trade_date", "index_code"]).size().loc[(pd.Timestamp("2024-01-04"), "000852.SH")] == 15


def test_holdings_conserve_sleeve_aum_and_tilt_small():
    u, iw, codes, order = _market()
    p = HoldingsParams()
    h = estimate_quant_holdings(u, iw, p)
    for _d, g in h.groupby("trade_date"):
        for s in p.sleeves():
            assert g[f"hold_{s.name}"].sum() == pytest.approx(s.gross_cny, rel=1e-9)
        assert g["holdings"].sum() == pytest.approx(sum(s.gross_cny for s in p.sleeves()), rel=1e-9)
    g = h[h["trade_date"] == pd.Timestamp("2024-01-04")].set_index("ts_code")
    # among non-constituents of both indices (the top-5 and the bottom 10), the share of free
    # float held falls with cap (u ∝ FF^β => HS ∝ FF^(β-1))
    small = [codes[i] for i in order[30:]]
    hs = g.loc[small, "holdings_share"]
    ff = g.loc[small, "free_float_mv"]
    assert np.corrcoef(np.log(ff), np.log(hs))[0, 1] == pytest.approx(-1.0, abs=1e-9)
    # the CSI500 IE sleeve keeps 1 - τ on its benchmark constituents
    c500 = iw.loc[iw["index_code"] == "000905.SH", "con_code"]
    assert g.loc[c500, "hold_ie_csi500"].sum() == pytest.approx((1 - p.tau) * p.sleeves()[0].gross_cny, rel=1e-9)


def test_product_holdings_replace_the_estimate():
    u, iw, codes, _ = _market()
    ph = pd.DataFrame({"trade_date": [pd.Timestamp("2024-01-03")], "ts_code": [codes[0]], "holdings": [1.23e9]})
    h = estimate_quant_holdings(u, iw, HoldingsParams(), product_holdings=ph)
    r = h[(h["trade_date"] == pd.Timestamp("2024-01-03")) & (h["ts_code"] == codes[0])].iloc[0]
    assert r["holdings"] == pytest.approx(1.23e9) and r["source"] == "product_feed"
    assert sum(r[c] for c in h.columns if c.startswith("hold_")) == pytest.approx(1.23e9)


def test_buckets_deciles_micro_and_user_lists():
    u, iw, codes, order = _market()
    p = CrowdingParams(micro_n=8, user_lists={"mine": (codes[3], codes[4])})
    b = assign_buckets(u, iw, p)
    d = b[b["trade_date"] == pd.Timestamp("2024-01-04")]
    micro = set(d.loc[d["bucket_type"] == "micro", "ts_code"])
    assert micro == {codes[i] for i in order[-8:]}
    dec = d[d["bucket_type"] == "cap_decile"].set_index("ts_code")["bucket"]
    assert dec.value_counts().to_dict() == {f"D{i:02d}": 4 for i in range(1, 11)}
    assert dec[codes[order[-1]]] == "D01" and dec[codes[order[0]]] == "D10"
    assert set(d.loc[d["bucket_type"] == "user", "ts_code"]) == {codes[3], codes[4]}
    assert len(d[(d["bucket_type"] == "index") & (d["bucket"] == "000300.SH")]) == 5
    assert len(b[(b["trade_date"] == pd.Timestamp("2024-01-02")) & (b["bucket"] == "000300.SH")]) == 0


def test_adv_and_sigma_against_pandas_per_stock():
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2024-01-01", periods=30)
    rows = []
    for c in ("A", "B"):
        for i, d in enumerate(days):
            susp = c == "B" and i in (10, 11)
            rows.append((d, c, np.nan if susp else rng.uniform(1e7, 2e7), np.nan if susp else rng.uniform(1e5, 2e5), np.nan if susp else rng.normal(0, 0.02)))
    p = pd.DataFrame(rows, columns=["trade_date", "ts_code", "amount", "vol", "ret"])
    out = adv_and_sigma(p, adv_window=20, adv_min_periods=5, sigma_window=20, sigma_min_periods=10)
    b = p[p["ts_code"] == "B"].set_index("trade_date")
    last = out[(out["ts_code"] == "B")].set_index("trade_date").iloc[-1]
    exp_adv = b["amount"].iloc[-20:].mean()  # skips the two suspended days
    assert last["adv_cny"] == pytest.approx(exp_adv)
    assert last["sigma_d"] == pytest.approx(b["ret"].iloc[-20:].std(ddof=1))


def test_days_to_liquidate_weighted_mean_and_shares():
    day = pd.Timestamp("2024-01-05")
    stock = pd.DataFrame(
        {"trade_date": day, "ts_code": ["a", "b", "c", "d"], "holdings": [10.0, 30.0, 60.0, 5.0], "adv_cny": [100.0, 50.0, 40.0, np.nan]}
    )
    b = stock[["trade_date", "ts_code"]].assign(bucket_type="user", bucket="x")
    out = days_to_liquidate(stock, b, participations=(0.1,), thresholds=(1, 3, 5))
    r = out[out["bucket"] == "x"].iloc[0]
    dtl = np.array([10 / 10, 30 / 5, 60 / 4])  # 1, 6, 15 days
    w = np.array([10, 30, 60.0])
    assert r["dtl_days"] == pytest.approx((w * dtl).sum() / w.sum())
    assert r["share_gt_1d"] == pytest.approx(0.9)  # exactly 1 day is not "more than 1"
    assert r["share_gt_5d"] == pytest.approx(0.9)
    assert r["holdings_no_adv"] == pytest.approx(5.0)
    s = out[(out["bucket_type"] == "stock") & (out["bucket"] == "c")].iloc[0]
    assert s["dtl_days"] == pytest.approx(15.0)


def test_scale_to_micro_holdings_share():
    u, iw, codes, order = _market()
    p = HoldingsParams(scale_to_micro_hs=0.1607, micro_fraction=0.25)
    h = estimate_quant_holdings(u, iw, p)
    b = assign_buckets(u, iw, CrowdingParams(micro_fraction=0.25))
    micro = b[b["bucket_type"] == "micro"].merge(h, on=["trade_date", "ts_code"])
    per_day = micro.groupby("trade_date")[["holdings", "free_float_mv"]].sum()
    assert (per_day["holdings"] / per_day["free_float_mv"]).to_numpy() == pytest.approx(0.1607, rel=1e-9)
    assert micro.groupby("trade_date").size().iloc[0] == 10


# ---------------------------------------------------------------------------------------------
# the integer-keyed paths (issue 11) against plain pandas merges / groupbys
# ---------------------------------------------------------------------------------------------


def _random_state(seed=5, n=60, days=("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05")):
    rng = np.random.default_rng(seed)
    u, iw, codes, _ = _market(n=n, days=days)
    u = u.sample(frac=1, random_state=seed).reset_index(drop=True)  # lake order is not sorted
    u["holdings"] = rng.uniform(0, 5e8, len(u))
    u["adv_cny"] = np.where(rng.random(len(u)) < 0.1, np.nan, rng.uniform(1e6, 1e9, len(u)))
    u.loc[rng.random(len(u)) < 0.05, "free_float_mv"] = np.nan
    return u, iw, codes


def test_row_positions_is_a_left_join_and_rejects_duplicate_keys():
    from sc_assets.analytics.crowding import row_positions

    t = pd.DataFrame({"trade_date": pd.to_datetime(["2024-01-02", "2024-01-02", "2024-01-03"]), "ts_code": ["a", "b", "a"]})
    r = pd.DataFrame({"trade_date": pd.to_datetime(["2024-01-03", "2024-01-04", "2024-01-02", "2024-01-02"]),
                      "ts_code": ["a", "a", "zz", "b"]})
    assert row_positions(t, r).tolist() == [2, -1, -1, 1]
    with pytest.raises(ValueError, match="duplicate"):
        row_positions(pd.concat([t, t.iloc[[2]]], ignore_index=True), r, "panel")


def test_crowding_table_and_dtl_match_a_groupby_oracle():
    u, iw, codes = _random_state()
    p = CrowdingParams(micro_n=9, user_lists={"mine": tuple(codes[:7])})
    b = assign_buckets(u, iw, p)
    got = crowding_table(u, b, p)
    m = b.merge(u, on=["trade_date", "ts_code"])
    exp = m.groupby(["trade_date", "bucket_type", "bucket"]).agg(
        n_stocks=("ts_code", "size"), free_float_mv=("free_float_mv", "sum"), holdings=("holdings", "sum"),
        adv_cny=("adv_cny", "sum"))
    g = got[got["bucket_type"] != "stock"].set_index(["trade_date", "bucket_type", "bucket"]).loc[exp.index]
    assert (g["n_stocks"] == exp["n_stocks"]).all()
    for c in ("free_float_mv", "holdings", "adv_cny"):
        assert g[c].to_numpy() == pytest.approx(exp[c].to_numpy(), rel=1e-12)
    assert len(got) == len(exp) + len(u)
    s = got[got["bucket_type"] == "stock"].set_index(["trade_date", "bucket"])
    uu = u.set_index(["trade_date", "ts_code"]).loc[s.index]
    assert s["holdings_share"].to_numpy() == pytest.approx((uu["holdings"] / uu["free_float_mv"]).to_numpy(), rel=1e-12, nan_ok=True)
    # sorted by day, bucket type order, bucket
    o = got["bucket_type"].map({"micro": 0, "index": 1, "cap_decile": 2, "user": 3, "all": 4, "stock": 5})
    key = pd.DataFrame({"d": got["trade_date"], "o": o, "b": got["bucket"]})
    assert key.equals(key.sort_values(["d", "o", "b"], kind="stable").reset_index(drop=True))

    dtl = days_to_liquidate(u, b, participations=(0.1, 0.25))
    for part in (0.1, 0.25):
        ok = u["adv_cny"].notna()
        v = u[ok].assign(dtl=lambda x, q=part: x["holdings"] / (q * x["adv_cny"]))
        mm = b.merge(v, on=["trade_date", "ts_code"])
        mm["qd"] = mm["holdings"] * mm["dtl"]
        mm["gt3"] = np.where(mm["dtl"] > 3, mm["holdings"], 0.0)
        e = mm.groupby(["trade_date", "bucket_type", "bucket"])[["holdings", "qd", "gt3"]].sum()
        d = dtl[(dtl["participation"] == part) & (dtl["bucket_type"] != "stock")].set_index(
            ["trade_date", "bucket_type", "bucket"]).loc[e.index]
        assert d["dtl_days"].to_numpy() == pytest.approx((e["qd"] / e["holdings"]).to_numpy(), rel=1e-12)
        assert d["share_gt_3d"].to_numpy() == pytest.approx((e["gt3"] / e["holdings"]).to_numpy(), rel=1e-12)


def test_tables_reject_a_repeated_stock_day():
    u, iw, _ = _random_state()
    b = assign_buckets(u, iw)
    dup = pd.concat([u, u.iloc[[len(u) - 1]]], ignore_index=True)  # the last row twice
    with pytest.raises(ValueError, match="duplicate"):
        crowding_table(dup, b)
    with pytest.raises(ValueError, match="duplicate"):
        days_to_liquidate(dup, b)


def test_adv_and_sigma_on_a_ragged_panel_equal_per_stock_rolling():
    """Stocks listed mid-window and missing rows: windows count panel sessions, as pandas rolling
    over the sessions x stocks pivot does (oracle: one stock at a time on the full session index)."""
    rng = np.random.default_rng(8)
    days = pd.bdate_range("2024-01-01", periods=40)
    rows = [(d, c, rng.uniform(1e7, 2e7), rng.uniform(1e5, 2e5), rng.normal(0, 0.02))
            for c, first in (("A", 0), ("B", 12), ("C", 3)) for i, d in enumerate(days) if i >= first and not (c == "C" and i % 7 == 0)]
    p = pd.DataFrame(rows, columns=["trade_date", "ts_code", "amount", "vol", "ret"]).sample(frac=1, random_state=2)
    out = adv_and_sigma(p, adv_window=10, adv_min_periods=4, sigma_window=15, sigma_min_periods=6).set_index(["trade_date", "ts_code"])
    for c in ("A", "B", "C"):
        s = p[p["ts_code"] == c].set_index("trade_date").reindex(days)
        exp_adv = s["amount"].rolling(10, min_periods=4).mean().dropna()
        assert out.loc[[(d, c) for d in exp_adv.index], "adv_cny"].to_numpy() == pytest.approx(exp_adv.to_numpy(), rel=1e-12)
        exp_sig = s["ret"].rolling(15, min_periods=6).std().dropna()
        assert out.loc[[(d, c) for d in exp_sig.index], "sigma_d"].to_numpy() == pytest.approx(exp_sig.to_numpy(), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# the sessions x stocks grid (issue 11) against the long-format rules and pandas
# ---------------------------------------------------------------------------------------------


def test_rank_by_day_equals_pandas_first_rank_with_ties():
    """Per-day stable sorts: ties keep row order, like pandas rank(method="first"), in any row order."""
    from sc_assets.analytics.crowding import _rank_by_day

    rng = np.random.default_rng(4)
    for _ in range(50):
        n = int(rng.integers(0, 80))
        df = pd.DataFrame({"d": rng.integers(0, 6, n), "v": rng.integers(0, 5, n).astype(float), "ok": rng.random(n) > 0.3})
        rank, count = _rank_by_day(df["d"].to_numpy(), df["v"].to_numpy(), df["ok"].to_numpy())
        exp = df[df["ok"]].groupby("d")["v"].rank(method="first").reindex(df.index).fillna(0).astype(int)
        assert rank.tolist() == exp.tolist()
        assert count.tolist() == df.groupby("d")["ok"].transform("sum").tolist()


def test_grid_buckets_and_tables_equal_the_long_format_path():
    """bucket_masks on a shuffled universe with tied caps = assign_buckets' rows, and the grid tables
    built from it = crowding_table / days_to_liquidate of the long rows (what the asset relies on)."""
    from sc_assets.analytics.crowding import (
        StockGrid,
        bucket_masks,
        crowding_table_grid,
        days_to_liquidate_grid,
    )

    u, iw, codes = _random_state(seed=9, n=50)
    u.loc[u.index[:12], "total_mv"] = u["total_mv"].iloc[12]  # tied caps across decile / micro edges
    u.loc[u.index[20:23], "is_suspended"] = True
    p = CrowdingParams(micro_n=9, user_lists={"mine": tuple(codes[:7]), "also": tuple(codes[5:9])})
    g = StockGrid(u["trade_date"], u["ts_code"], "universe")
    b = bucket_masks(g, u["total_mv"].to_numpy(), u["is_suspended"].to_numpy(), iw, p)
    long = assign_buckets(u, iw, p)
    got = {(t, lab): b.mask(t, lab) for t, lab in zip(b.types, b.labels, strict=True)}
    exp = {}
    for (t, lab), rows in long.groupby(["bucket_type", "bucket"]):
        m = np.zeros(g.shape, dtype=bool)
        d, s = g.locate(rows["trade_date"], rows["ts_code"])
        m[d, s] = True
        exp[(t, lab)] = m
    assert got.keys() == exp.keys()
    for k in got:
        assert (got[k] == exp[k]).all(), k
    val = {c: g.wide(u[c].to_numpy(dtype=float)) for c in ("free_float_mv", "holdings", "adv_cny")}
    pd.testing.assert_frame_equal(crowding_table_grid(g, b, val["free_float_mv"], val["holdings"], val["adv_cny"], p),
                                  crowding_table(u, long, p), rtol=1e-12)
    pd.testing.assert_frame_equal(days_to_liquidate_grid(g, b, val["holdings"], val["adv_cny"]),
                                  days_to_liquidate(u, long), rtol=1e-12)


def test_in_force_weights_reject_a_stock_listed_twice():
    from sc_assets.analytics.crowding import StockGrid, bucket_masks

    u, iw, _, _ = _market()
    g = StockGrid(u["trade_date"], u["ts_code"])
    dup = pd.concat([iw, iw.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate"):
        bucket_masks(g, u["total_mv"].to_numpy(), None, dup)
