"""The ground truth describes the data: factor returns/exposures recovered from landing prices,
limit-down carry-over and quant holdings consistent with the written feeds (small_market fixture)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sc_assets.feeds.readers import read_landing_file


def _landing(root, feed, start=None, end=None) -> pd.DataFrame:
    files = sorted((root / "landing" / feed).iterdir())
    if start:
        files = [f for f in files if start <= f.name[:8] <= end]
    return pd.concat([read_landing_file(f, feed).to_pandas() for f in files], ignore_index=True)


@pytest.fixture(scope="module")
def truth(small_market):
    gt = pd.read_parquet(small_market / "ground_truth" / "stock_days.parquet")
    gt["trade_date"] = pd.to_datetime(gt["trade_date"])
    return gt


def test_size_factor_returns_recovered_from_landing_prices(small_market, truth):
    """Per-day OLS of close/pre_close-1 (landing files, calm months) on industry dummies and the
    ground-truth size / nlsize exposures of the previous close recovers the true factor returns."""
    sd = _landing(small_market, "stock_daily", "20230701", "20231130")
    sd["trade_date"] = pd.to_datetime(sd["trade_date"])
    sd["ret"] = sd["close"] / sd["pre_close"] - 1
    ex = truth[["trade_date", "ts_code", "size_z", "nlsize_z"]].sort_values(["ts_code", "trade_date"])
    ex[["size_prev", "nls_prev"]] = ex.groupby("ts_code")[["size_z", "nlsize_z"]].shift()
    stocks = pd.read_parquet(small_market / "ground_truth" / "stocks.parquet")
    df = sd.merge(ex, on=["trade_date", "ts_code"]).merge(stocks[["ts_code", "industry"]], on="ts_code").dropna(
        subset=["size_prev", "nls_prev", "ret"])
    df = df[df["ret"].abs() < 0.09]  # drop limit moves (the return is censored there)
    fr = pd.read_parquet(small_market / "ground_truth" / "factor_returns.parquet")
    fr["trade_date"] = pd.to_datetime(fr["trade_date"])
    est = []
    for day, g in df.groupby("trade_date"):
        dummies = pd.get_dummies(g["industry"]).to_numpy(dtype=float)
        x = np.column_stack([dummies, g["size_prev"], g["nls_prev"]])
        coef = np.linalg.lstsq(x, g["ret"].to_numpy(), rcond=None)[0]
        est.append((day, coef[-2], coef[-1]))
    est = pd.DataFrame(est, columns=["trade_date", "size_hat", "nls_hat"]).merge(fr, on="trade_date")
    assert len(est) > 80
    assert np.corrcoef(est["size_hat"], est["size"])[0, 1] > 0.8
    slope = np.polyfit(est["size"], est["size_hat"], 1)[0]
    assert 0.7 < slope < 1.3
    assert np.corrcoef(est["nls_hat"], est["nlsize"])[0, 1] > 0.4


def test_limit_down_carry_over_matches_locked_bars(small_market, truth):
    """Days the ground truth marks locked are limit-down/up bars with high = low in the landing files;
    sales carried out of a locked day are the next day's orders."""
    sd = _landing(small_market, "stock_daily", "20240101", "20240229")
    sd["trade_date"] = pd.to_datetime(sd["trade_date"])
    t = truth[(truth["trade_date"] >= "2024-01-01") & (truth["trade_date"] <= "2024-02-29")]
    m = sd.merge(t, on=["trade_date", "ts_code"])
    locked = m[m["locked"]]
    assert len(locked) > 5
    assert (locked["high"] == locked["low"]).all() and (locked["close"] == locked["high"]).all()
    carried = t[(t["carry_shares"] > 0) & ~t["suspended"]].sort_values("trade_date")
    assert len(carried) > 0
    nxt = t.set_index(["ts_code", "trade_date"])["quant_sell_shares"]
    days = sorted(t["trade_date"].unique())
    following = {d: days[i + 1] for i, d in enumerate(days[:-1])}
    rows = carried[carried["trade_date"].isin(following)]
    orders_next = nxt.reindex(pd.MultiIndex.from_arrays([rows["ts_code"], rows["trade_date"].map(following)]))
    assert (orders_next.to_numpy() >= rows["carry_shares"].to_numpy() - 1).all()
    # nothing trades beyond the orders: |net filled| <= |net order|; carry <= quant orders
    net_sale = t["quant_sell_shares"] - t["etf_buy_shares"]
    assert (t["quant_filled_shares"] <= net_sale.clip(lower=0) + 1).all()
    assert (t["carry_shares"] <= t["quant_sell_shares"] + 1).all()


def test_impact_coefficient_and_params_written(small_market, truth):
    params = json.loads((small_market / "ground_truth" / "params.json").read_text())
    assert params["impact_y"] == pytest.approx(1.0) and params["n_stocks"] == 300
    # realised impact obeys the square-root law on unconstrained sale days:
    # log(1 + Y sigma sqrt(Q/(V depth))) magnitude, with Q the net order
    dma = pd.read_parquet(small_market / "ground_truth" / "dma.parquet")
    dma["trade_date"] = pd.to_datetime(dma["trade_date"])
    t = truth.merge(dma[["trade_date", "depth_factor"]], on="trade_date")
    q = t["quant_sell_shares"] - t["etf_buy_shares"]
    ok = (q > 0) & ~t["locked"] & ~t["suspended"] & (t["quant_filled_shares"] >= q - 1) & (t["carry_shares"] == 0)
    ok &= t["fundamental_ret"].abs() < 0.03
    s = t[ok]
    expected = -params["impact_y"] * s["sigma_d"] * np.sqrt((q[ok]) / (s["adv_shares"] * s["depth_factor"]))
    got = np.expm1(s["impact_ret"].astype(float) + np.log1p(s["fundamental_ret"].astype(float))) - s[
        "fundamental_ret"].astype(float)
    rel = (1 + s["fundamental_ret"].astype(float)) * (1 + expected) - 1 - s["fundamental_ret"].astype(float)
    # equal up to the 0.01 CNY price rounding
    assert len(s) > 100
    assert np.median(np.abs(got - rel)) < 0.003
