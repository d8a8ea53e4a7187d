"""AkShare adapter against recorded DataFrames with Chinese columns: mapping and unit conversion."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sc_assets import partitions
from sc_assets.feeds import read_landing_file
from sc_assets.pull.akshare import AkshareAdapter, AkshareClient, cffex_expiry
from sc_assets.pull.base import PullOptions
from sc_assets.pull.core import Caller, MissingExtraError, ShapeChangedError
from sc_assets_tests.pull.fakes import FIXTURES, RecordedAkshare

DAYS = [pd.Timestamp("2024-01-22"), pd.Timestamp("2024-01-23")]


def make(client=None, **opts):
    client = client or RecordedAkshare()
    caller = Caller(client, calls_per_minute=1e6, sleep=lambda s: None)
    options = PullOptions(indexes=("000905.SH", "932000.CSI"), weight_indexes=("000905.SH",),
                          etfs={"510500.SH": "000905.SH", "159845.SZ": "000852.SH"}, **opts)
    return AkshareAdapter(caller, options), client


def recorded(api, **params) -> pd.DataFrame:
    for e in json.loads((FIXTURES / "akshare_recorded.json").read_text(encoding="utf-8")):
        if e["api"] == api and e["params"] == params:
            return pd.DataFrame(e["rows"], columns=e["columns"])
    raise KeyError(api)


def read(root, feed, day):
    return read_landing_file(root / "landing" / feed / f"{day}.csv", feed).to_pandas()


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    """One full pull shared by the read-only tests of this module (its own data root)."""
    root = tmp_path_factory.mktemp("akshare") / "data"
    adapter, client = make()
    report = adapter.pull(list(AkshareAdapter.plans), DAYS, root, progress=False)
    return root, report, client


def test_every_feed_parses_through_the_landing_readers(landed):
    root, report, _ = landed
    for feed, counts in report.items():
        assert counts["written"] >= 1, (feed, counts)
    for path in sorted((root / "landing").glob("*/*.csv")):
        t = read_landing_file(path, path.parent.name)
        assert t.num_rows > 0, path


def test_stock_bars_convert_amount_to_thousand_cny_and_derive_pre_close(landed):
    root, _, _ = landed
    raw = recorded("stock_zh_a_hist", symbol="600000", adjust="").set_index("日期")
    for day, iso in (("20240122", "2024-01-22"), ("20240123", "2024-01-23")):
        got = read(root, "stock_daily", day).set_index("ts_code").loc["600000.SH"]
        r = raw.loc[iso]
        assert got["amount"] * 1000 == pytest.approx(r["成交额"])  # CNY -> 1,000 CNY
        assert got["vol"] == r["成交量"]  # lots already
        assert got["pre_close"] == pytest.approx(r["收盘"] - r["涨跌额"])
        assert (got["open"], got["high"], got["low"], got["close"]) == (r["开盘"], r["最高"], r["最低"], r["收盘"])
    # day-over-day consistency of the derived reference price
    d1 = read(root, "stock_daily", "20240122").set_index("ts_code")
    d2 = read(root, "stock_daily", "20240123").set_index("ts_code")
    assert d2.loc["600000.SH", "pre_close"] == pytest.approx(d1.loc["600000.SH", "close"])
    # a Beijing stock gets its .BJ suffix
    assert "830799.BJ" in d1.index


def test_adj_factor_is_back_adjusted_over_raw_close(landed):
    root, _, _ = landed
    raw = recorded("stock_zh_a_hist", symbol="000506", adjust="").set_index("日期")["收盘"]
    hfq = recorded("stock_zh_a_hist", symbol="000506", adjust="hfq").set_index("日期")["收盘"]
    got = read(root, "adj_factor", "20240123").set_index("ts_code").loc["000506.SZ", "adj_factor"]
    assert got == pytest.approx(hfq["2024-01-23"] / raw["2024-01-23"], rel=1e-6)
    # adjusted returns from the factor equal the back-adjusted price returns
    d1 = read(root, "adj_factor", "20240122").set_index("ts_code").loc["000506.SZ", "adj_factor"]
    r_adj = (raw["2024-01-23"] * got) / (raw["2024-01-22"] * d1) - 1
    assert r_adj == pytest.approx(hfq["2024-01-23"] / hfq["2024-01-22"] - 1, abs=1e-5)


def test_daily_basic_units_are_ten_thousand_shares_and_cny(landed):
    root, _, _ = landed
    sina = recorded("stock_zh_a_daily", symbol="sh600000").set_index("date").loc["2024-01-22"]
    info = recorded("stock_individual_info_em", symbol="600000").set_index("item")["value"]
    got = read(root, "daily_basic", "20240122").set_index("ts_code").loc["600000.SH"]
    assert got["float_share"] * 1e4 == pytest.approx(sina["outstanding_share"])
    assert got["total_share"] * 1e4 == pytest.approx(info["总股本"])
    assert got["total_mv"] * 1e4 == pytest.approx(sina["close"] * info["总股本"])
    assert got["circ_mv"] * 1e4 == pytest.approx(sina["close"] * sina["outstanding_share"])
    assert got["turnover_rate"] == pytest.approx(sina["turnover"] * 100)  # fraction -> percent
    assert pd.isna(got["turnover_rate_f"]) and got["free_share"] == got["float_share"]


def test_reference_data_boards_listing_and_current_st(landed):
    root, _, _ = landed
    b = read(root, "stock_basic", "20240123").set_index("ts_code")
    assert b.loc["830799.BJ", "market"] == "bse" and b.loc["600000.SH", "market"] == "main"
    assert str(b.loc["600000.SH", "list_date"]) == "1999-11-10"
    st = read(root, "st_flags", "20240122").set_index("ts_code")["is_st"]
    assert st.to_dict() == {"000506.SZ": True, "600000.SH": False, "830799.BJ": False}


def test_index_bars_and_csi_weights(landed):
    root, _, _ = landed
    idx = read(root, "index_daily", "20240122").set_index("ts_code")
    raw = recorded("index_zh_a_hist", symbol="932000").set_index("日期").loc["2024-01-22"]
    assert idx.loc["932000.CSI", "amount"] * 1000 == pytest.approx(raw["成交额"])
    assert idx.loc["932000.CSI", "pre_close"] == pytest.approx(raw["收盘"] - raw["涨跌额"])
    # the latest CSI snapshot (2024-01-31) lands on its own date, outside the pulled span
    w = read(root, "index_weight", "20240131")
    assert dict(zip(w["con_code"], w["weight"], strict=True)) == {"000506.SZ": 0.031, "600006.SH": 0.101,
                                                                   "300001.SZ": 0.221}


def test_futures_mapping_and_derived_contract_reference(landed):
    root, _, _ = landed
    fut = read(root, "fut_daily", "20240123").set_index("ts_code")
    assert sorted(fut.index) == ["IC2402.CFX", "IM2403.CFX"]  # treasury futures dropped
    assert fut.loc["IC2402.CFX", "oi"] == 118000 and fut.loc["IC2402.CFX", "settle"] == 4866.0
    fb = read(root, "fut_basic", "20240123").set_index("ts_code")
    assert fb.loc["IM2403.CFX", "underlying"] == "000852.SH" and fb.loc["IM2403.CFX", "multiplier"] == 200
    assert str(fb.loc["IC2402.CFX", "delist_date"]) == "2024-02-19"  # 3rd Friday 02-16 was a holiday
    assert str(fb.loc["IM2403.CFX", "delist_date"]) == "2024-03-15"


def test_cffex_expiry_is_third_friday_or_next_session():
    for contract in ("IC2401", "IF2310", "IM2405", "IH2402", "IC2410"):
        exp = cffex_expiry(contract)
        assert partitions.is_trading_day(exp)
        year, month = 2000 + int(contract[2:4]), int(contract[4:6])
        fridays = pd.date_range(f"{year}-{month:02d}-01", periods=31, freq="D")
        fridays = fridays[(fridays.day_of_week == 4) & (fridays.month == month)]
        third = fridays[2]
        assert exp == (third if partitions.is_trading_day(third) else partitions.next_trading_day(third))
    assert cffex_expiry("IC2410") == pd.Timestamp("2024-10-18")


def test_etf_shares_in_ten_thousand_units_from_both_exchanges(landed):
    root, _, client = landed
    e = read(root, "etf_share", "20240122").set_index("ts_code")
    assert sorted(e.index) == ["159845.SZ", "510500.SH"]  # 510300/159915 are not in the requested map
    assert e.loc["510500.SH", "fd_share"] * 1e4 == pytest.approx(21500120000.0)  # units -> 10,000 units
    assert e.loc["159845.SZ", "fd_share"] * 1e4 == pytest.approx(9012345000.0)
    assert e.loc["510500.SH", "close"] == 4.90 and e.loc["510500.SH", "index_code"] == "000905.SH"
    assert e.loc["159845.SZ", "index_code"] == "000852.SH"
    assert sum(a == "fund_scale_daily_szse" for a, _ in client.requests) == 1  # one window covers 2 days


def test_szse_windows_cover_the_span_in_six_month_chunks():
    from sc_assets.pull.akshare import SZSE_WINDOW_DAYS, _windows

    days = list(partitions.trading_days_between("2023-01-03", "2024-03-29"))
    w = _windows(days, SZSE_WINDOW_DAYS)
    assert w[0][0] == days[0] and w[-1][1] == days[-1]
    assert all((hi - lo).days < SZSE_WINDOW_DAYS for lo, hi in w)
    assert all(b[0] - a[1] == pd.Timedelta(days=1) for a, b in zip(w, w[1:], strict=False))


def test_changed_chinese_column_names_the_field(data_dir):
    class Renamed(RecordedAkshare):
        def __call__(self, api_name, **params):
            df = super().__call__(api_name, **params)
            return df.rename(columns={"成交额": "成交金额"}) if api_name == "stock_zh_a_hist" else df

    adapter, _ = make(Renamed(), codes=["600000"])
    with pytest.raises(ShapeChangedError, match=r"akshare stock_zh_a_hist: response shape changed: missing field\(s\) \['成交额'\]"):
        adapter.pull(["stock_daily"], DAYS, data_dir, progress=False)


def test_codes_restrict_the_per_stock_loop(data_dir):
    adapter, client = make(codes=["600000.SH"])
    adapter.pull(["stock_daily"], DAYS, data_dir, progress=False)
    assert {p["symbol"] for a, p in client.requests if a == "stock_zh_a_hist"} == {"600000"}


def test_missing_akshare_extra_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_akshare(name, *args, **kwargs):
        if name == "akshare":
            raise ImportError("No module named 'akshare'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_akshare)
    monkeypatch.setattr("importlib.import_module", lambda name: no_akshare(name))
    with pytest.raises(MissingExtraError, match=r"pip install 'sc_assets\[akshare\]'"):
        AkshareClient()("stock_zh_a_hist", symbol="600000")


def test_landed_files_pass_the_raw_layer_validation(landed):
    from sc_assets.resources.feed_source import LandingFeedSource

    root, _, _ = landed
    source = LandingFeedSource(data_dir=str(root))
    for feed, plan in AkshareAdapter.plans.items():
        if plan == "snapshot":
            batch = source.read_snapshots(feed)
        else:
            days = sorted(p.stem for p in (root / "landing" / feed).glob("*.csv"))
            batch = source.read(feed, [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in days])
        assert batch.landed > 0, feed
        assert len(batch.quarantined) == 0, (feed, batch.reasons)
