"""The adapter base class and the run loop shared by the Tushare and AkShare adapters.

An adapter declares, per canonical feed, how it is fetched:

- ``per_day``: one vendor call (or a few) per trading day: ``fetch_<feed>_day(day) -> frame``;
- ``range``: one call per instrument over the span of the missing days:
  ``fetch_<feed>_range(days) -> frame`` holding many days, split into one file per day;
- ``snapshot``: reference data (stock_basic, fut_basic): ``fetch_<feed>_snapshot(days)``,
  landed as ``landing/<feed>/<last day>.csv`` (the latest file wins downstream).

Resume: a day whose landing file already exists is not fetched again (unless ``refresh``);
a refetched day whose content is unchanged is not rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from sc_assets.feeds.schemas import FEEDS
from sc_assets.pull.core import Caller, LandingWriter, PullError, to_ts

# Defaults (issue 10). Index codes follow the marts contract; 8841431.WI is Wind's micro-cap
# index, which neither Tushare nor AkShare serves (see docs/REAL_DATA.md).
DEFAULT_INDEXES: tuple[str, ...] = ("000300.SH", "000905.SH", "000852.SH", "932000.CSI", "000016.SH")
WEIGHT_INDEXES: tuple[str, ...] = ("000300.SH", "000905.SH", "000852.SH", "932000.CSI")
FUT_CODES: dict[str, tuple[str, float]] = {
    # product -> (underlying index, multiplier CNY/point); METHODS.md §1 (CFFEX contract specs)
    "IF": ("000300.SH", 300.0),
    "IH": ("000016.SH", 300.0),
    "IC": ("000905.SH", 200.0),
    "IM": ("000852.SH", 200.0),
}
# Large index ETFs and the index each tracks (fund prospectuses). Configurable with --etf.
DEFAULT_ETFS: dict[str, str] = {
    "510300.SH": "000300.SH",  # 华泰柏瑞沪深300ETF
    "510310.SH": "000300.SH",  # 易方达沪深300ETF
    "510330.SH": "000300.SH",  # 华夏沪深300ETF
    "159919.SZ": "000300.SH",  # 嘉实沪深300ETF
    "510500.SH": "000905.SH",  # 南方中证500ETF
    "512500.SH": "000905.SH",  # 华夏中证500ETF
    "159922.SZ": "000905.SH",  # 嘉实中证500ETF
    "512100.SH": "000852.SH",  # 南方中证1000ETF
    "159845.SZ": "000852.SH",  # 华夏中证1000ETF
    "560010.SH": "000852.SH",  # 广发中证1000ETF
    "563300.SH": "932000.CSI",  # 华泰柏瑞中证2000ETF
}
WEIGHT_LOOKBACK_DAYS = 40  # index_weight is monthly: fetch back far enough for the snapshot in force at start


@dataclass
class PullOptions:
    indexes: Sequence[str] = DEFAULT_INDEXES
    weight_indexes: Sequence[str] = WEIGHT_INDEXES
    etfs: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ETFS))
    codes: Sequence[str] | None = None  # restrict the stock universe (AkShare loops per stock)
    refresh: bool = False


class Adapter:
    """Base class: subclasses set ``source``, ``plans`` and implement the fetch methods."""

    source = "?"
    plans: dict[str, str] = {}
    land_any_date: set[str] = set()

    def __init__(self, caller: Caller, options: PullOptions | None = None,
                 log: Callable[[str], None] | None = None):
        self.call = caller
        self.options = options or PullOptions()
        self.log = log or (lambda msg: None)
        self._cache: dict[str, object] = {}

    def cached(self, key: str, make: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # ----------------------------------------------------------------------------------------

    def pull(self, feeds: Sequence[str], days: Sequence[pd.Timestamp], root: Path,
             progress: bool = True) -> dict[str, dict[str, int]]:
        """Fetch ``feeds`` for trading ``days`` into ``<root>/landing``; returns counts per feed."""
        unknown = [f for f in feeds if f not in self.plans]
        if unknown:
            raise PullError(f"{self.source}: feed(s) {unknown} not supported; choose from {sorted(self.plans)}")
        if not len(days):
            raise PullError("no trading days in the requested range")
        writer = LandingWriter(Path(root))
        days = [pd.Timestamp(d) for d in days]
        report: dict[str, dict[str, int]] = {}
        tasks: list[tuple[str, object]] = []
        for feed in feeds:
            plan = self.plans[feed]
            todo = days if self.options.refresh else [d for d in days if not writer.exists(feed, d)]
            report[feed] = {"written": 0, "unchanged": 0, "empty": 0, "skipped": len(days) - len(todo)}
            if plan == "per_day":
                tasks += [(feed, d) for d in todo]
            elif plan == "range":
                if todo:
                    tasks.append((feed, todo))
            elif plan == "snapshot":
                last = days[-1]
                if self.options.refresh or not writer.exists(feed, last):
                    tasks.append((feed, days))
                else:
                    report[feed]["skipped"] = 1
            else:  # pragma: no cover - declaration error
                raise PullError(f"unknown plan {plan!r} for {feed}")
        bar = tqdm(tasks, desc=f"pull {self.source}", unit="task", disable=not progress)
        for feed, unit in bar:
            bar.set_postfix_str(feed)
            plan = self.plans[feed]
            if plan == "per_day":
                frame = getattr(self, f"fetch_{feed}_day")(unit)
                counts = writer.write_days(feed, frame, [unit])
            elif plan == "range":
                frame = getattr(self, f"fetch_{feed}_range")(unit)
                targets = unit
                if feed in self.land_any_date and len(frame):
                    # a vendor serving only its latest snapshot: land it on its own date
                    targets = sorted(set(unit) | set(to_ts(frame[FEEDS[feed].date_column]).dropna()))
                counts = writer.write_days(feed, frame, targets)
            else:
                frame = getattr(self, f"fetch_{feed}_snapshot")(unit)
                if frame.empty:
                    raise PullError(f"{self.source} {feed}: the vendor returned no rows")
                counts = {writer.write(feed, unit[-1], frame): 1}
            for k, v in counts.items():
                report[feed][k] = report[feed].get(k, 0) + v
        return report
