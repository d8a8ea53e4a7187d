"""Tushare Pro adapter against recorded Pro API envelopes (fields/items JSON), no network."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sc_assets.feeds import read_landing_file
from sc_assets.pull.base import PullOptions
from sc_assets.pull.core import Caller, MissingTokenError, RateLimitRefused, RetryPolicy, ShapeChangedError
from sc_assets.pull.tushare import TushareAdapter, TushareClient, frame_from_pro_response
from sc_assets_tests.pull.fakes import FIXTURES, RecordedTushareTransport

DAYS = [pd.Timestamp("2024-01-22"), pd.Timestamp("2024-01-23")]
ALL = list(TushareAdapter.plans)
REFUSAL = {"code": 40203, "msg": "抱歉，您每分钟最多访问该接口500次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。",
           "data": None}


class NoSleep:
    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, s):
        self.waits.append(s)


def make(transport=None, **opts):
    transport = transport or RecordedTushareTransport()
    sleep = NoSleep()
    caller = Caller(TushareClient(token="test-token", transport=transport), calls_per_minute=1e6,
                    policy=RetryPolicy(retries=3, base_delay=1, rate_limit_wait=30), sleep=sleep)
    options = PullOptions(indexes=("000905.SH", "932000.CSI"), weight_indexes=("000905.SH",),
                          etfs={"510500.SH": "000905.SH"}, **opts)
    return TushareAdapter(caller, options), transport, sleep


def recorded(api, **params):
    for e in json.loads((FIXTURES / "tushare_recorded.json").read_text(encoding="utf-8")):
        if e["api_name"] == api and e["params"] == params:
            d = e["response"]["data"]
            return pd.DataFrame(d["items"], columns=d["fields"])
    raise KeyError(api)


def read(root, feed, day):
    return read_landing_file(root / "landing" / feed / f"{day}.csv", feed).to_pandas()


def test_full_pull_lands_every_feed_readable_by_the_landing_readers(data_dir):
    adapter, transport, _ = make()
    report = adapter.pull(ALL, DAYS, data_dir, progress=False)
    for feed in ("stock_daily", "daily_basic", "adj_factor", "fut_daily", "index_daily", "etf_share", "st_flags"):
        assert report[feed]["written"] == 2, (feed, report[feed])
        for day in ("20240122", "20240123"):
            t = read(data_dir, feed, day)
            assert len(t) > 0
            assert (pd.to_datetime(t["trade_date"]) == pd.Timestamp(day)).all()
    for feed in ("stock_basic", "fut_basic"):
        assert report[feed]["written"] == 1
        assert len(read(data_dir, feed, "20240123")) > 0
    # per-day endpoints: one call per trading day, never on weekends
    assert transport.calls("daily") == 2
    assert {p["params"]["trade_date"] for p in transport.payloads if p["api_name"] == "daily"} == {"20240122", "20240123"}


def test_stock_daily_keeps_tushare_units_and_fields(data_dir):
    adapter, _, _ = make()
    adapter.pull(["stock_daily", "daily_basic"], DAYS, data_dir, progress=False)
    got = read(data_dir, "stock_daily", "20240122").set_index("ts_code")
    raw = recorded("daily", trade_date="20240122").set_index("ts_code")
    assert sorted(got.index) == sorted(raw.index)
    for col in ("open", "high", "low", "close", "pre_close", "vol", "amount"):  # lots and 1,000 CNY, untouched
        assert got[col].to_dict() == pytest.approx(raw[col].astype(float).to_dict())
    assert "pct_chg" not in got.columns
    basic = read(data_dir, "daily_basic", "20240122").set_index("ts_code")
    raw_b = recorded("daily_basic", trade_date="20240122").set_index("ts_code")
    # an empty free_share (new float data missing) falls back to the float share count
    assert pd.isna(raw_b.loc["000506.SZ", "free_share"])
    assert basic.loc["000506.SZ", "free_share"] == raw_b.loc["000506.SZ", "float_share"]
    assert basic.loc["600000.SH", "total_mv"] == pytest.approx(raw_b.loc["600000.SH", "total_mv"])


def test_futures_keep_only_dated_index_contracts(data_dir):
    adapter, _, _ = make()
    adapter.pull(["fut_daily", "fut_basic"], DAYS, data_dir, progress=False)
    fut = read(data_dir, "fut_daily", "20240122")
    assert sorted(fut["ts_code"]) == ["IC2402.CFX", "IC2403.CFX", "IF2402.CFX", "IH2402.CFX", "IM2402.CFX"]
    raw = recorded("fut_daily", trade_date="20240122", exchange="CFFEX").set_index("ts_code")
    assert fut.set_index("ts_code").loc["IC2402.CFX", "amount"] == raw.loc["IC2402.CFX", "amount"]  # 10,000 CNY
    basic = read(data_dir, "fut_basic", "20240123").set_index("ts_code")
    assert "TS2403.CFX" not in basic.index
    assert basic.loc["IC2402.CFX", "underlying"] == "000905.SH"
    assert basic.loc["IM2402.CFX", "underlying"] == "000852.SH"
    assert basic.loc["IH2402.CFX", "multiplier"] == 300.0  # missing multiplier filled from the contract spec
    assert str(basic.loc["IC2402.CFX", "delist_date"]) == "2024-02-19"  # 3rd Friday in the Spring Festival closure


def test_index_weight_lands_the_snapshot_in_force(data_dir):
    adapter, transport, _ = make()
    adapter.pull(["index_weight"], DAYS, data_dir, progress=False)
    p = next(p for p in transport.payloads if p["api_name"] == "index_weight")
    assert p["params"]["start_date"] <= "20231213"  # looked back for the last monthly snapshot
    w = read(data_dir, "index_weight", "20240122")
    # the 2023-12-29 snapshot (not the older 2023-11-30 one) is in force on 2024-01-22, in percent
    assert dict(zip(w["con_code"], w["weight"], strict=True)) == {"000506.SZ": 0.0312, "300750.SZ": 0.4512,
                                                                   "600000.SH": 0.3001}
    assert not (data_dir / "landing" / "index_weight" / "20240123.csv").exists()


def test_stock_basic_uses_sw_level1_and_code_boards(data_dir):
    adapter, _, _ = make()
    adapter.pull(["stock_basic"], DAYS, data_dir, progress=False)
    b = read(data_dir, "stock_basic", "20240123").set_index("ts_code")
    assert b.loc["600000.SH", "industry"] == "银行"
    assert b.loc["300750.SZ", "industry"] == "电力设备"  # SW2021 L1, not Tushare's 电气设备
    assert b.loc["000506.SZ", "industry"] == "房地产"  # SW from a former (is_new=N) membership
    assert b.loc["000022.SZ", "industry"] == "港口"  # no SW membership: Tushare industry kept
    assert b["market"].to_dict() == {"000001.SZ": "main", "000022.SZ": "main", "000506.SZ": "main",
                                     "300750.SZ": "chinext", "600000.SH": "main"}
    assert str(b.loc["000022.SZ", "delist_date"]) == "2018-12-26"  # delisted stocks kept (no survivorship bias)


def test_sw_industries_fall_back_when_not_permitted(data_dir):
    transport = RecordedTushareTransport()
    transport.overrides["index_classify"] = [{"code": 40203, "msg": "抱歉，您没有接口访问权限", "data": None}]
    adapter, _, _ = make(transport)
    adapter.pull(["stock_basic"], DAYS, data_dir, progress=False)
    b = read(data_dir, "stock_basic", "20240123").set_index("ts_code")
    assert b.loc["300750.SZ", "industry"] == "电气设备"
    assert b.loc["000506.SZ", "industry"] == "unknown"


def test_st_flags_follow_the_name_in_force_each_day(data_dir):
    adapter, _, _ = make()
    adapter.pull(["st_flags"], DAYS, data_dir, progress=False)
    d1 = read(data_dir, "st_flags", "20240122").set_index("ts_code")["is_st"]
    d2 = read(data_dir, "st_flags", "20240123").set_index("ts_code")["is_st"]
    assert not d1["000506.SZ"] and d2["000506.SZ"]  # renamed *ST中润 from 2024-01-23
    assert not d1["600000.SH"] and not d2["600000.SH"]
    assert "000022.SZ" not in d1.index  # delisted in 2018: not in the cross-section


def test_etf_share_merges_shares_close_and_tracked_index(data_dir):
    adapter, _, _ = make()
    adapter.pull(["etf_share"], DAYS, data_dir, progress=False)
    e = read(data_dir, "etf_share", "20240123").iloc[0]
    assert (e["ts_code"], e["index_code"]) == ("510500.SH", "000905.SH")
    assert e["fd_share"] == 2210345.0 and e["close"] == 4.98  # 10,000 units, CNY


def test_index_daily_one_call_per_index_over_the_span(data_dir):
    adapter, transport, _ = make()
    adapter.pull(["index_daily"], DAYS, data_dir, progress=False)
    assert transport.calls("index_daily") == 2
    csi2000 = read(data_dir, "index_daily", "20240122").set_index("ts_code").loc["932000.CSI"]
    assert csi2000["close"] == 2075.66 and csi2000["pre_close"] == 2218.4


def test_resume_skips_landed_days_and_refresh_does_not_rewrite_unchanged(data_dir):
    adapter, transport, _ = make()
    adapter.pull(["stock_daily", "index_daily"], DAYS[:1], data_dir, progress=False)
    f1 = data_dir / "landing" / "stock_daily" / "20240122.csv"
    mtime = f1.stat().st_mtime_ns
    adapter2, transport2, _ = make()
    report = adapter2.pull(["stock_daily", "index_daily"], DAYS, data_dir, progress=False)
    assert report["stock_daily"] == {"written": 1, "unchanged": 0, "empty": 0, "skipped": 1}
    assert [p["params"]["trade_date"] for p in transport2.payloads if p["api_name"] == "daily"] == ["20240123"]
    idx = [p["params"] for p in transport2.payloads if p["api_name"] == "index_daily"]
    assert all(p["start_date"] == p["end_date"] == "20240123" for p in idx)  # only the missing span
    adapter3, transport3, _ = make(refresh=True)
    report = adapter3.pull(["stock_daily"], DAYS, data_dir, progress=False)
    assert report["stock_daily"]["unchanged"] == 2 and report["stock_daily"]["written"] == 0
    assert f1.stat().st_mtime_ns == mtime
    adapter4, transport4, _ = make()
    assert adapter4.pull(["stock_daily"], DAYS, data_dir, progress=False)["stock_daily"]["skipped"] == 2
    assert transport4.payloads == []


def test_rate_limit_refusal_is_retried_then_succeeds(data_dir):
    transport = RecordedTushareTransport()
    transport.overrides["daily"] = [REFUSAL, REFUSAL]
    adapter, _, sleep = make(transport)
    adapter.pull(["stock_daily"], DAYS[:1], data_dir, progress=False)
    assert transport.calls("daily") == 3
    assert sleep.waits == [30, 30]
    assert (data_dir / "landing" / "stock_daily" / "20240122.csv").exists()


def test_persistent_rate_limit_refusal_names_the_quota(data_dir):
    transport = RecordedTushareTransport()
    transport.overrides["daily"] = [REFUSAL] * 10
    adapter, _, _ = make(transport)
    with pytest.raises(RateLimitRefused, match=r"daily: rate limit refused.*每分钟最多访问该接口500次.*--calls-per-minute"):
        adapter.pull(["stock_daily"], DAYS[:1], data_dir, progress=False)
    assert not (data_dir / "landing" / "stock_daily").exists()


def test_changed_response_shape_names_the_missing_field(data_dir):
    transport = RecordedTushareTransport()
    resp = json.loads((FIXTURES / "tushare_recorded.json").read_text(encoding="utf-8"))[0]["response"]
    resp["data"]["fields"] = ["volume" if f == "vol" else f for f in resp["data"]["fields"]]  # vol renamed
    transport.overrides["daily"] = [resp]
    adapter, _, _ = make(transport)
    with pytest.raises(ShapeChangedError, match=r"tushare daily: response shape changed: missing field\(s\) \['vol'\]"):
        adapter.pull(["stock_daily"], DAYS[:1], data_dir, progress=False)
    assert transport.calls("daily") == 1  # not retried


def test_envelope_without_items_is_a_shape_error():
    with pytest.raises(ShapeChangedError, match="'items'"):
        frame_from_pro_response("daily", {"code": 0, "msg": "", "data": {"fields": ["ts_code"]}})


def test_missing_token_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TUSHARE_TOKEN", raising=False)
    with pytest.raises(MissingTokenError, match="TUSHARE_TOKEN"):
        TushareClient()
    monkeypatch.setenv("TUSHARE_TOKEN", "abc")
    assert TushareClient().token == "abc"


def test_landed_files_pass_the_raw_layer_validation(data_dir):
    """Every row the Tushare adapter lands is accepted by the raw layer (reader + row validation)."""
    from sc_assets.resources.feed_source import LandingFeedSource

    adapter, _, _ = make()
    adapter.pull(ALL, DAYS, data_dir, progress=False)
    source = LandingFeedSource(data_dir=str(data_dir))
    for feed, plan in TushareAdapter.plans.items():
        batch = source.read_snapshots(feed) if plan == "snapshot" else source.read(feed, ["2024-01-22", "2024-01-23"])
        assert batch.landed > 0, feed
        assert len(batch.quarantined) == 0, (feed, batch.reasons)
        assert len(batch.rows) == batch.landed, feed


def test_paging_follows_offsets_and_stops_when_an_endpoint_ignores_them(data_dir):
    rows = recorded("daily", trade_date="20240122")

    def paged_client(api, limit=None, offset=0, **params):
        return rows.iloc[offset: offset + limit]

    def ignoring_client(api, limit=None, offset=0, **params):
        return rows.iloc[:limit]

    for client, calls in ((paged_client, 3), (ignoring_client, 2)):
        seen = []

        def counting(api, _c=client, _seen=seen, **params):
            _seen.append(params.get("offset"))
            return _c(api, **params)

        adapter = TushareAdapter(Caller(counting, calls_per_minute=1e6, sleep=lambda s: None))
        out = adapter.paged("daily", ["ts_code"], limit=2, trade_date="20240122")
        assert len(seen) == calls
        assert len(out) == (len(rows) if client is paged_client else 2)
