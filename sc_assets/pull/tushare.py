"""Tushare Pro adapter: Tushare Pro endpoints -> canonical landing files.

The canonical raw schemas *are* Tushare Pro's field names and units (``sc_assets/feeds/schemas.py``),
so the mapping is mostly selection, code normalisation and filtering. Endpoint per feed:

| feed | endpoint(s) | call pattern |
|---|---|---|
| stock_daily | ``daily`` | one call per trading day (whole market) |
| daily_basic | ``daily_basic`` | one call per trading day |
| adj_factor | ``adj_factor`` | one call per trading day |
| fut_daily | ``fut_daily`` (exchange=CFFEX) | one call per trading day, IF/IH/IC/IM contracts kept |
| index_daily | ``index_daily`` | one call per index over the missing span |
| index_weight | ``index_weight`` | one call per index over the span (+40 days back) |
| etf_share | ``fund_share`` + ``fund_daily`` | two calls per ETF over the span |
| st_flags | ``namechange`` (+ ``stock_basic``) | names in force each day containing "ST" |
| stock_basic | ``stock_basic`` (L/D/P), ``index_classify`` + ``index_member_all`` (SW2021 L1) | snapshot |
| fut_basic | ``fut_basic`` (exchange=CFFEX, fut_type=1) | snapshot |

Response format (Tushare Pro HTTP API): ``{"code": 0, "msg": "", "data": {"fields": [...],
"items": [[...], ...]}}``; ``code != 0`` carries the refusal text, e.g. the per-minute quota
message ``抱歉，您每分钟最多访问该接口500次...`` (rate limit, retried with backoff).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import pandas as pd

from sc_assets.pull.base import FUT_CODES, WEIGHT_LOOKBACK_DAYS, Adapter
from sc_assets.pull.core import (
    MissingExtraError,
    MissingTokenError,
    PullError,
    ShapeChangedError,
    VendorError,
    board_of,
    classify_vendor_message,
    normalize_code,
    require_fields,
    session_on_or_before,
    to_ts,
    ymd,
)

TOKEN_ENV = "TUSHARE_TOKEN"
PAGE_LIMIT = 5000  # rows per page for endpoints capped at 5,000-6,000 rows per call
_FUT_CONTRACT = re.compile(r"^(IF|IH|IC|IM)\d{4}\.CFX$")


def frame_from_pro_response(api_name: str, response: dict) -> pd.DataFrame:
    """Tushare Pro JSON (``code``/``msg``/``data.fields``/``data.items``) -> DataFrame.

    ``code != 0`` raises the classified vendor error (rate limit, permission, other).
    """
    if not isinstance(response, dict) or "code" not in response:
        raise ShapeChangedError(f"tushare {api_name}: response is not a Tushare Pro envelope (no 'code')")
    if response["code"] != 0:
        raise classify_vendor_message(api_name, str(response.get("msg", "")))
    data = response.get("data") or {}
    for key in ("fields", "items"):
        if key not in data:
            raise ShapeChangedError(f"tushare {api_name}: response shape changed: 'data' has no {key!r}")
    return pd.DataFrame(data["items"], columns=data["fields"])


class TushareClient:
    """Real Tushare Pro client: ``client(api_name, **params) -> DataFrame``.

    The token comes from ``$TUSHARE_TOKEN`` (or ``token=``). Without ``transport`` it uses the
    ``tushare`` SDK (``pip install 'sc_assets[tushare]'``), imported on first use; a
    ``transport(payload) -> response dict`` replaces the HTTP round trip (tests, proxies).
    """

    def __init__(self, token: str | None = None, transport: Callable[[dict], dict] | None = None):
        self.token = token or os.environ.get(TOKEN_ENV, "").strip()
        if not self.token:
            raise MissingTokenError(
                f"no Tushare Pro token: set {TOKEN_ENV} (export {TOKEN_ENV}=<your token>, from "
                "https://tushare.pro/user/token) or use --source akshare"
            )
        self.transport = transport
        self._pro = None

    def _sdk(self):
        if self._pro is None:
            try:
                import tushare  # noqa: PLC0415 - optional extra, imported lazily
            except ImportError as exc:
                raise MissingExtraError(
                    "the tushare package is not installed: pip install 'sc_assets[tushare]'"
                ) from exc
            self._pro = tushare.pro_api(self.token)
        return self._pro

    def __call__(self, api_name: str, **params) -> pd.DataFrame:
        fields = params.pop("fields", "")
        if self.transport is not None:
            payload = {"api_name": api_name, "token": self.token, "params": params, "fields": fields}
            return frame_from_pro_response(api_name, self.transport(payload))
        try:
            return self._sdk().query(api_name, fields=fields, **params)
        except Exception as exc:  # the SDK raises a bare Exception(msg) when code != 0
            if type(exc) is Exception:
                raise classify_vendor_message(api_name, str(exc)) from exc
            raise


class TushareAdapter(Adapter):
    source = "tushare"
    plans = {
        "stock_daily": "per_day",
        "daily_basic": "per_day",
        "adj_factor": "per_day",
        "fut_daily": "per_day",
        "index_daily": "range",
        "index_weight": "range",
        "etf_share": "range",
        "st_flags": "range",
        "stock_basic": "snapshot",
        "fut_basic": "snapshot",
    }

    # ---------------------------------------------------------------- helpers

    def q(self, api: str, required: list[str], **params) -> pd.DataFrame:
        df = self.call(api, **params)
        if df.empty and not len(df.columns):
            return pd.DataFrame(columns=required)
        require_fields(df, required, api=api, source="tushare")
        return df

    def paged(self, api: str, required: list[str], limit: int = PAGE_LIMIT, **params) -> pd.DataFrame:
        pages, offset, rows = [], 0, 0
        for _ in range(200):
            page = self.q(api, required, limit=limit, offset=offset, **params)
            pages.append(page)
            out = pd.concat(pages, ignore_index=True).drop_duplicates()
            if len(page) < limit or len(out) == rows:  # last page, or an endpoint that ignores offset
                return out
            rows, offset = len(out), offset + limit
        raise PullError(f"tushare {api}: more than 200 pages of {limit} rows")

    def _codes(self, df: pd.DataFrame, col: str = "ts_code") -> pd.DataFrame:
        df = df.copy()
        df[col] = df[col].map(normalize_code)
        if self.options.codes:
            keep = {normalize_code(c) for c in self.options.codes}
            df = df[df[col].isin(keep)]
        return df

    # ---------------------------------------------------------------- per-day feeds

    def fetch_stock_daily_day(self, day) -> pd.DataFrame:
        cols = ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount"]
        df = self.paged("daily", cols, trade_date=ymd(day))
        return self._codes(df[cols])

    def fetch_daily_basic_day(self, day) -> pd.DataFrame:
        cols = ["ts_code", "trade_date", "close", "turnover_rate", "turnover_rate_f", "total_share",
                "float_share", "free_share", "total_mv", "circ_mv"]
        df = self.paged("daily_basic", cols, trade_date=ymd(day), fields=",".join(cols))[cols].copy()
        # free_share is occasionally empty for new listings: the float is then the free float
        df["free_share"] = df["free_share"].fillna(df["float_share"])
        return self._codes(df)

    def fetch_adj_factor_day(self, day) -> pd.DataFrame:
        cols = ["ts_code", "trade_date", "adj_factor"]
        return self._codes(self.paged("adj_factor", cols, trade_date=ymd(day))[cols])

    def fetch_fut_daily_day(self, day) -> pd.DataFrame:
        cols = ["ts_code", "trade_date", "pre_close", "pre_settle", "open", "high", "low", "close",
                "settle", "vol", "amount", "oi"]
        df = self.q("fut_daily", cols, trade_date=ymd(day), exchange="CFFEX", fields=",".join(cols))[cols]
        # keep dated IF/IH/IC/IM contracts; drop continuous series (IC.CFX, ICL.CFX, ...)
        return df[df["ts_code"].astype("str").str.match(_FUT_CONTRACT)].reset_index(drop=True)

    # ---------------------------------------------------------------- range feeds

    def fetch_index_daily_range(self, days) -> pd.DataFrame:
        cols = ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount"]
        frames = []
        for code in self.options.indexes:
            df = self.q("index_daily", cols, ts_code=code, start_date=ymd(days[0]), end_date=ymd(days[-1]))
            if df.empty:
                self.log(f"tushare index_daily: no rows for {code} (not served / not launched yet)")
            frames.append(df[cols])
        return _concat(frames, cols)

    def fetch_index_weight_range(self, days) -> pd.DataFrame:
        cols = ["index_code", "con_code", "trade_date", "weight"]
        start = pd.Timestamp(days[0]) - pd.Timedelta(days=WEIGHT_LOOKBACK_DAYS)
        frames = []
        for code in self.options.weight_indexes:
            df = self.q("index_weight", cols, index_code=code, start_date=ymd(start), end_date=ymd(days[-1]))
            frames.append(df[cols])
        df = _concat(frames, cols)
        if df.empty:
            return df
        df["con_code"] = df["con_code"].map(normalize_code)
        # a snapshot dated on a non-trading day is in force from the last session before it
        dates = to_ts(df["trade_date"]).map(session_on_or_before)
        df["trade_date"] = dates
        # the snapshot in force on the first requested day lands on that day
        first = pd.Timestamp(days[0])
        before = df[dates < first]
        if not before.empty and not (dates == first).any():
            last = before[before["trade_date"] == before.groupby("index_code")["trade_date"].transform("max")]
            last = last.assign(trade_date=first)
            df = pd.concat([df[dates >= first], last], ignore_index=True)
        return df.drop_duplicates(["index_code", "con_code", "trade_date"], keep="last")

    def fetch_etf_share_range(self, days) -> pd.DataFrame:
        frames = []
        for code, index_code in self.options.etfs.items():
            params = dict(ts_code=code, start_date=ymd(days[0]), end_date=ymd(days[-1]))
            share = self.q("fund_share", ["ts_code", "trade_date", "fd_share"], **params)
            bars = self.q("fund_daily", ["ts_code", "trade_date", "close"], **params)
            if share.empty or bars.empty:
                self.log(f"tushare etf_share: no rows for {code}")
                continue
            share = share.assign(trade_date=to_ts(share["trade_date"]))[["trade_date", "fd_share"]]
            bars = bars.assign(trade_date=to_ts(bars["trade_date"]))[["trade_date", "close"]]
            df = bars.merge(share, on="trade_date", how="inner")
            df["ts_code"] = normalize_code(code)
            df["index_code"] = normalize_code(index_code)
            frames.append(df)
        return _concat(frames, ["ts_code", "trade_date", "fd_share", "close", "index_code"])

    def fetch_st_flags_range(self, days) -> pd.DataFrame:
        basic = self._stock_basic()
        names = self.paged("namechange", ["ts_code", "name", "start_date", "end_date"],
                           fields="ts_code,name,start_date,end_date")
        names = names.assign(ts_code=names["ts_code"].map(normalize_code),
                             start=to_ts(names["start_date"]), end=to_ts(names["end_date"]))
        return st_flags_from_names(basic, names, days, codes=self.options.codes)

    # ---------------------------------------------------------------- snapshots

    def _stock_basic(self) -> pd.DataFrame:
        return self.cached("stock_basic", self._fetch_stock_basic)

    def _fetch_stock_basic(self) -> pd.DataFrame:
        cols = ["ts_code", "name", "industry", "market", "list_date", "delist_date"]
        frames = [self.q("stock_basic", cols, list_status=s, fields=",".join(cols))[cols] for s in ("L", "D", "P")]
        df = _concat(frames, cols).drop_duplicates("ts_code", keep="first")
        df["ts_code"] = df["ts_code"].map(normalize_code)
        sw = self._sw_level1()
        if sw is not None:
            df["industry"] = df["ts_code"].map(sw).fillna(df["industry"])
        df["industry"] = df["industry"].fillna("unknown")
        df["market"] = df["ts_code"].map(board_of)
        return df.reset_index(drop=True)

    def _sw_level1(self) -> dict[str, str] | None:
        """ts_code -> Shenwan 2021 level-1 industry name, or None when the account lacks access."""
        try:
            classes = self.q("index_classify", ["index_code", "industry_name"], level="L1", src="SW2021")
            members = []
            for l1 in classes["index_code"]:
                for is_new in ("Y", "N"):
                    members.append(self.q("index_member_all", ["l1_name", "ts_code"], l1_code=l1, is_new=is_new))
        except VendorError as exc:
            self.log(f"tushare: SW level-1 industries unavailable ({exc}); using stock_basic.industry")
            return None
        m = _concat(members, ["l1_name", "ts_code"])
        if m.empty:
            return None
        m["ts_code"] = m["ts_code"].map(normalize_code)
        return dict(zip(m["ts_code"], m["l1_name"], strict=True))

    def fetch_stock_basic_snapshot(self, days) -> pd.DataFrame:
        return self._codes(self._stock_basic())

    def fetch_fut_basic_snapshot(self, days) -> pd.DataFrame:
        cols = ["ts_code", "fut_code", "multiplier", "list_date", "delist_date"]
        df = self.q("fut_basic", cols, exchange="CFFEX", fut_type="1", fields="ts_code,symbol," + ",".join(cols[1:]))
        df = df[df["fut_code"].isin(FUT_CODES) & df["ts_code"].astype("str").str.match(_FUT_CONTRACT)].copy()
        df["multiplier"] = pd.to_numeric(df["multiplier"], errors="coerce").fillna(
            df["fut_code"].map({k: v[1] for k, v in FUT_CODES.items()}))
        df["underlying"] = df["fut_code"].map({k: v[0] for k, v in FUT_CODES.items()})
        return df[cols + ["underlying"]].reset_index(drop=True)


def st_flags_from_names(basic: pd.DataFrame, names: pd.DataFrame, days, codes=None) -> pd.DataFrame:
    """One row per listed stock per day: ``is_st`` = the name in force that day contains "ST".

    ``basic``: ts_code, name, list_date, delist_date (the current name is the fallback);
    ``names``: ts_code, name, start, end (Timestamps; end null = still in force).
    A stock is listed on ``d`` when list_date <= d < delist_date.
    """
    basic = basic.assign(list_ts=to_ts(basic["list_date"]), delist_ts=to_ts(basic["delist_date"]))
    if codes:
        keep = {normalize_code(c) for c in codes}
        basic = basic[basic["ts_code"].isin(keep)]
    names = names.sort_values("start")
    out = []
    for day in days:
        d = pd.Timestamp(day)
        listed = basic[(basic["list_ts"] <= d) & (basic["delist_ts"].isna() | (basic["delist_ts"] > d))]
        live = names[(names["start"] <= d) & (names["end"].isna() | (names["end"] >= d))]
        in_force = live.groupby("ts_code")["name"].last()
        name = listed["ts_code"].map(in_force).fillna(listed["name"])
        out.append(pd.DataFrame({"ts_code": listed["ts_code"].to_numpy(), "trade_date": d,
                                 "is_st": name.astype("str").str.upper().str.contains("ST").to_numpy()}))
    return _concat(out, ["ts_code", "trade_date", "is_st"])


def _concat(frames: list[pd.DataFrame], cols: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)
