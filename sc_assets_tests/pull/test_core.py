"""Rate limiter, retries/backoff, error classification, code normalisation, atomic writer."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from sc_assets.pull import core
from sc_assets.pull.core import (
    Caller,
    LandingWriter,
    PullError,
    RateLimitRefused,
    RetryPolicy,
    ShapeChangedError,
    TokenBucket,
    VendorError,
    normalize_code,
)

TUSHARE_MINUTE_REFUSAL = "抱歉，您每分钟最多访问该接口500次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_token_bucket_spaces_calls_at_the_configured_rate():
    fc = FakeClock()
    bucket = TokenBucket(calls_per_minute=30, burst=2, clock=fc.clock, sleep=fc.sleep)
    for _ in range(12):
        bucket.acquire()
    # 2 burst tokens, then one token every 2 s: 10 waits, 20 s in all
    assert len(fc.sleeps) == 10
    assert sum(fc.sleeps) == pytest.approx(20.0)
    assert fc.now - 1000.0 == pytest.approx(20.0)


def test_token_bucket_refills_while_idle():
    fc = FakeClock()
    bucket = TokenBucket(calls_per_minute=60, burst=3, clock=fc.clock, sleep=fc.sleep)
    for _ in range(3):
        bucket.acquire()
    fc.now += 10.0  # idle for 10 s: the bucket is full again (capped at 3)
    for _ in range(3):
        bucket.acquire()
    assert fc.sleeps == []
    bucket.acquire()
    assert fc.sleeps == [pytest.approx(1.0)]


def test_network_errors_are_retried_with_exponential_backoff():
    fc = FakeClock()
    attempts = []

    def flaky(api, **params):
        attempts.append(api)
        if len(attempts) <= 3:
            raise ConnectionError("connection reset by peer")
        return pd.DataFrame({"x": [1]})

    caller = Caller(flaky, calls_per_minute=6000, policy=RetryPolicy(retries=4, base_delay=2, factor=3, max_delay=100),
                    clock=fc.clock, sleep=fc.sleep)
    out = caller("daily", trade_date="20240122")
    assert out["x"].tolist() == [1]
    assert caller.backoff_waits == [2, 6, 18]
    assert caller.retried == 3 and caller.calls == 4


def test_retries_give_up_with_the_cause():
    fc = FakeClock()

    def down(api, **params):
        raise TimeoutError("read timed out")

    caller = Caller(down, calls_per_minute=6000, policy=RetryPolicy(retries=2, base_delay=1), clock=fc.clock, sleep=fc.sleep)
    with pytest.raises(PullError, match=r"daily .*failed after 3 attempts.*read timed out"):
        caller("daily", trade_date="20240122")
    assert caller.backoff_waits == [1, 2]


def test_rate_limit_refusal_waits_at_least_the_window_then_succeeds():
    fc = FakeClock()
    answers = [Exception(TUSHARE_MINUTE_REFUSAL), Exception(TUSHARE_MINUTE_REFUSAL), pd.DataFrame({"x": [1]})]

    def client(api, **params):
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    caller = Caller(client, calls_per_minute=6000, policy=RetryPolicy(retries=3, base_delay=2, rate_limit_wait=30),
                    clock=fc.clock, sleep=fc.sleep)
    assert len(caller("daily")) == 1
    assert caller.backoff_waits == [30, 30]


def test_persistent_rate_limit_refusal_is_a_clear_error():
    fc = FakeClock()

    def client(api, **params):
        raise RateLimitRefused(f"{api}: rate limit refused by the vendor ({TUSHARE_MINUTE_REFUSAL})")

    caller = Caller(client, calls_per_minute=6000, policy=RetryPolicy(retries=2, base_delay=2, rate_limit_wait=30,
                                                                       max_delay=60), clock=fc.clock, sleep=fc.sleep)
    with pytest.raises(RateLimitRefused, match="每分钟最多访问该接口500次") as err:
        caller("daily_basic")
    assert "after 3 attempts" in str(err.value)
    assert caller.backoff_waits == [30, 30]


def test_shape_change_and_permission_errors_are_not_retried():
    fc = FakeClock()
    for exc in (ShapeChangedError("missing field vol"), VendorError("没有接口访问权限")):
        calls = []

        def client(api, _exc=exc, _calls=calls, **params):
            _calls.append(api)
            raise _exc

        caller = Caller(client, calls_per_minute=6000, clock=fc.clock, sleep=fc.sleep)
        with pytest.raises(type(exc)):
            caller("daily")
        assert len(calls) == 1


@pytest.mark.parametrize("message, kind", [
    (TUSHARE_MINUTE_REFUSAL, RateLimitRefused),
    ("抱歉，您每天最多访问该接口20000次", VendorError),
    ("抱歉，您没有接口访问权限，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。", VendorError),
    ("参数错误: trade_date", VendorError),
])
def test_vendor_messages_are_classified(message, kind):
    err = core.classify_vendor_message("daily", message)
    assert type(err) is kind
    assert message in str(err)


@pytest.mark.parametrize("raw, expected", [
    ("600000", "600000.SH"), ("sh600000", "600000.SH"), ("SZ000001", "000001.SZ"), (1, "000001.SZ"),
    ("000001.XSHE", "000001.SZ"), ("600000.XSHG", "600000.SH"), ("688981", "688981.SH"),
    ("300750.sz", "300750.SZ"), ("830799", "830799.BJ"), ("430047", "430047.BJ"), ("920002", "920002.BJ"),
    ("bj830799", "830799.BJ"), ("932000.CSI", "932000.CSI"), ("8841431.WI", "8841431.WI"),
    ("510500", "510500.SH"), ("159845", "159845.SZ"), (300750.0, "300750.SZ"),
])
def test_normalize_code(raw, expected):
    assert normalize_code(raw) == expected


def test_normalize_code_agrees_with_the_feed_readers():
    from sc_assets.feeds.codes import normalise_code as reader_normalise

    for raw in ("600000", "sh600000", "000001.XSHE", "300750", "830799", "688981"):
        assert normalize_code(raw) == reader_normalise(raw)


def _frame(close=10.0):
    return pd.DataFrame({"ts_code": ["600000.SH", "000001.SZ"], "trade_date": ["20240122", "20240122"],
                         "adj_factor": [close, 2.0]})


def test_writer_is_atomic_and_leaves_no_temp_file_on_failure(data_dir, monkeypatch):
    w = LandingWriter(data_dir)
    assert w.write("adj_factor", "2024-01-22", _frame()) == "written"
    target = data_dir / "landing" / "adj_factor" / "20240122.csv"
    before = target.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(core.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        w.write("adj_factor", "2024-01-22", _frame(close=11.0))
    assert target.read_bytes() == before  # old content intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["20240122.csv"]  # no temp debris


def test_writer_skips_unchanged_content(data_dir):
    w = LandingWriter(data_dir)
    w.write("adj_factor", "2024-01-22", _frame())
    target = data_dir / "landing" / "adj_factor" / "20240122.csv"
    os.utime(target, ns=(1, 1))
    # same rows in another order: same canonical bytes -> not rewritten
    assert w.write("adj_factor", "2024-01-22", _frame().iloc[::-1]) == "unchanged"
    assert target.stat().st_mtime_ns == 1
    assert w.write("adj_factor", "2024-01-22", _frame(close=12.0)) == "written"
    assert target.stat().st_mtime_ns != 1


def test_writer_refuses_frames_missing_required_values(data_dir):
    bad = _frame()
    bad.loc[0, "adj_factor"] = None
    with pytest.raises(ShapeChangedError, match="adj_factor.adj_factor is required"):
        LandingWriter(data_dir).write("adj_factor", "2024-01-22", bad)
    dup = pd.concat([_frame(), _frame()])
    with pytest.raises(PullError, match="duplicate key"):
        LandingWriter(data_dir).write("adj_factor", "2024-01-22", dup)


def test_writer_stays_inside_the_data_root(data_dir):
    from sc_assets.settings import UnsafePathError

    with pytest.raises(UnsafePathError):
        LandingWriter(data_dir).path("../../etc", "2024-01-22")
