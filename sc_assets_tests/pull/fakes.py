"""Fake vendor clients replaying hand-made recorded responses (no network).

``tushare_recorded.json``: Tushare Pro HTTP envelopes ``{"code", "msg", "data": {"fields", "items"}}``
keyed by ``api_name`` and the request params that select them; ``akshare_recorded.json``:
AkShare DataFrames (Chinese column names) as ``columns`` + ``rows``. A request is answered
by the recorded entry of the same endpoint whose params are all present in the request
(the most specific wins); paging params are ignored; an unrecorded request is an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

FIXTURES = Path(__file__).parent / "fixtures"
_PAGING = {"limit", "offset", "fields"}


def _match(entries: list[dict], api: str, params: dict, key: str) -> dict:
    candidates = [e for e in entries if e[key] == api
                  and all(str(params.get(k)) == str(v) for k, v in e["params"].items())]
    if not candidates:
        raise KeyError(f"no recorded response for {api} {params}")
    return max(candidates, key=lambda e: len(e["params"]))


class RecordedTushareTransport:
    """``transport(payload) -> response`` for :class:`TushareClient`; logs every payload."""

    def __init__(self, path: Path = FIXTURES / "tushare_recorded.json"):
        self.entries = json.loads(path.read_text(encoding="utf-8"))
        self.payloads: list[dict] = []
        self.overrides: dict[str, list] = {}  # api -> queue of responses/exceptions served first

    def __call__(self, payload: dict) -> dict:
        self.payloads.append(payload)
        api = payload["api_name"]
        queue = self.overrides.get(api)
        if queue:
            item = queue.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        params = {k: v for k, v in payload["params"].items() if k not in _PAGING}
        entry = _match(self.entries, api, params, "api_name")
        resp = json.loads(json.dumps(entry["response"]))
        # honour the requested date span like the real endpoint does
        start, end = params.get("start_date"), params.get("end_date")
        if start or end:
            fields = resp["data"]["fields"]
            if "trade_date" in fields:
                i = fields.index("trade_date")
                resp["data"]["items"] = [r for r in resp["data"]["items"]
                                         if (not start or r[i] >= start) and (not end or r[i] <= end)]
        return resp

    def calls(self, api: str) -> int:
        return sum(p["api_name"] == api for p in self.payloads)


class RecordedAkshare:
    """``client(api_name, **params) -> DataFrame`` replaying AkShare frames."""

    def __init__(self, path: Path = FIXTURES / "akshare_recorded.json"):
        self.entries = json.loads(path.read_text(encoding="utf-8"))
        self.requests: list[tuple[str, dict]] = []

    def __call__(self, api_name: str, **params) -> pd.DataFrame:
        self.requests.append((api_name, params))
        entry = _match(self.entries, api_name, params, "api")
        return pd.DataFrame(entry["rows"], columns=entry["columns"])
