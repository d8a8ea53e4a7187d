"""Raw layer: one asset per feed of ``feeds/schemas.py``, read from the landing folder.

* Daily feeds: key ``["raw", feed]``, partitioned by SSE trading day, single-run backfills.
  Each run reads ``landing/<feed>/<YYYYMMDD>.<csv|csv.gz|parquet>`` for its partition keys,
  ``chunk_days`` days at a time (bounded memory on multi-year backfills), validates rows
  (``feeds/validation.py``), writes accepted rows to ``lake/raw/<feed>/`` (every requested day
  becomes a partition) and rejected rows to ``lake/quarantine/<feed>/`` (only days with
  quarantined rows are partitions; a stale one is emptied). Both are replaced on
  rerun: the run is idempotent. A day without a landing file gets an empty partition and a
  WARN check.
* Reference feeds (stock_basic, fut_basic): unpartitioned; all snapshot files merged, the
  latest file winning per key.

An unparseable landing file fails the run with a ``LandingFileError`` naming file, line and
column; the file stays in landing.

Checks (computed on the rows just written, never a rescan): ``rows_accounted_for`` (blocking:
landed = accepted + quarantined [+ superseded snapshot rows]), ``landing_file_present`` (WARN),
and the Great Expectations suite ``raw.<feed>`` (``sc_assets.checks``, blocking). WARN checks
over the run's partition range (a backfill sees the whole range, a daily run its day):

* ``no_conflicting_redeliveries`` (daily feeds): a key delivered by two files with different
  values (``20240122.csv`` and a re-delivered ``20240122.csv.gz``). Both rows stay in raw and
  staging keeps the latest landed file; the check names the keys, files and differing columns.
* ``expected_indices_present`` (index_daily): an expected index code absent on a day that had
  a landing file. Expected codes: ``IndexDailyConfig.expected_index_codes`` if set, else every
  code seen in the run's range.
* ``no_nav_gaps`` (fund_nav): a fund without a NAV in a week (``week_end_sessions``) between
  its first and last NAV in the run's range.
"""

import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from sc_assets.assets._metadata import range_metadata, table_metadata
from sc_assets.checks import GX_CHECK_NAME, gx_check_spec
from sc_assets.feeds.schemas import FEEDS, FeedSpec
from sc_assets.feeds.validation import conflicting_redeliveries, missing_index_codes, nav_gaps
from sc_assets.partitions import daily_asset_args, month_chunks, sessions, week_end_sessions
from sc_assets.resources.feed_source import LandingFeedSource, quarantine_schema, raw_schema
from sc_assets.resources.warehouse import Warehouse

LAYER = "raw"
CODE_VERSION = "1"
MAX_LISTED_FILES = 50
#: conflicting keys / gaps listed in check metadata (the counts are always complete)
MAX_SAMPLE = 20
#: run-level lists attached to the last partition's event only in a multi-partition run (with the
#: schema and preview, ``_metadata.range_metadata``); counts and totals go to every event
RANGE_ONCE_KEYS = ("source_files", "days_without_file", "quarantine_reasons", "expected_index_codes")


@dataclass(frozen=True)
class RawParams:
    """Defaults of the raw layer (shown in each materialization's ``parameters``).

    gx_max_rows: the GX suite validates every accepted row of a run up to this many rows;
        past it (multi-year backfills) only the first day of each further chunk is validated.
        The sample is collected chunk by chunk and validated in ONE GX call per run (a call
        costs ~0.5 s fixed plus ~5 s per million rows here, issue 11), so the sample is kept
        small: a daily run or a small feed is validated whole, a full-market 10-year backfill
        of a big feed sees ~200k rows. The row-level rules themselves (keys, prices, OHLC,
        calendar, duplicates) are enforced on every row by ``feeds/validation.py``;
        ``rows_validated`` in the check metadata says how many rows GX saw.
    """

    gx_max_rows: int = 250_000


PARAMS = RawParams()
#: Feeds that do not land a file every trading day, and which days they are expected on.
SPARSE_FEEDS = {
    "index_weight": "constituent weights land monthly: a day without a file is normal",
    "fund_nav": "NAVs land weekly, on the week's last trading day: only those days are expected",
}


class IndexDailyConfig(dg.Config):
    """Run config of ``raw.index_daily``."""

    expected_index_codes: list[str] = Field(
        default_factory=list,
        description="Index codes every index_daily file must contain (check expected_indices_present); "
        "empty = every code seen in the run's partition range")


def _expected_days(feed: str, days: Sequence[str]) -> list[str]:
    if feed == "index_weight":
        return []
    if feed == "fund_nav":
        ends = set(week_end_sessions().strftime("%Y-%m-%d"))
        return [d for d in days if d in ends]
    return list(days)


def _off_calendar(files: Sequence, start: str, end: str) -> list:
    """Of the listed landing files, those dated in [start, end] on a non-session day (weekend or
    holiday): no partition reads them (``LandingFeedSource.off_calendar_files`` on a listing)."""
    sess = set(sessions().strftime("%Y-%m-%d"))
    return [f for f in files if start <= f"{f.day:%Y-%m-%d}" <= end and f"{f.day:%Y-%m-%d}" not in sess]


def _descriptions(spec: FeedSpec) -> dict[str, str]:
    d = {c.name: c.description + (f" [{c.unit}]" if c.unit else "") for c in spec.columns}
    d.setdefault("trade_date", "trading day (partition); fund_nav: nav_date; snapshots: the file's day")
    d["source_file"] = "landing file the row came from, relative to the data root"
    d["source_line"] = "1-based line of the row in that file (header = line 1)"
    d["source_mtime_ns"] = "modification time of the landing file (ns since epoch); staging keeps the latest"
    return d


class _Totals:
    def __init__(self) -> None:
        self.landed = self.accepted = self.quarantined = self.superseded = 0
        self.reasons: Counter = Counter()
        self.files: list[str] = []
        self.missing: list[str] = []
        self.empty_files: list[str] = []  # files that landed a header but no rows
        self.min_day: pd.Timestamp | None = None
        self.max_day: pd.Timestamp | None = None
        self.preview: pd.DataFrame | None = None
        self.gx_ok = True
        self.gx_failed: list[dict] = []
        self.gx_rows = 0
        self.gx_seconds = 0.0
        self.gx_suite = ""

    def add(self, batch, rows: pa.Table) -> None:
        self.landed += batch.landed
        self.accepted += rows.num_rows
        self.quarantined += len(batch.quarantined)
        self.superseded += batch.superseded
        self.reasons.update(batch.reasons)
        self.files += [f.rel for f in batch.files]
        if rows.num_rows:
            mm = pc.min_max(rows["trade_date"])
            lo, hi = pd.Timestamp(mm["min"].as_py()), pd.Timestamp(mm["max"].as_py())
            self.min_day = lo if self.min_day is None else min(self.min_day, lo)
            self.max_day = hi if self.max_day is None else max(self.max_day, hi)
            if self.preview is None:
                self.preview = rows.slice(0, 10).to_pandas(date_as_object=False)

    def gx(self, suite: str, rows: pa.Table, days: Sequence[str] | None) -> None:
        from sc_assets.checks.gx_suites import validate

        ok, meta = validate(suite, rows, days=days)
        self.gx_ok &= bool(ok)
        self.gx_failed += meta.get("failed", [])
        self.gx_rows += int(meta.get("rows", 0))
        self.gx_seconds += float(meta.get("seconds", 0.0))
        self.gx_suite = meta.get("suite", suite)


class _CrossRow:
    """What the cross-row WARN checks need, accumulated chunk by chunk (small frames only)."""

    def __init__(self, spec: FeedSpec) -> None:
        self.spec = spec
        self.conflicts = 0
        self.sample: list[dict] = []
        self.keys: list[pd.DataFrame] = []  # index_daily: (trade_date, ts_code); fund_nav: (fund_id, trade_date)
        self.days_with_file: list[str] = []

    def add(self, batch) -> None:
        # A key holds its date and an accepted row's date is its file's day ("date is not the
        # file's day" quarantines the rest): only a day landed by two or more files can conflict.
        days = [f.day for f in batch.files]
        redelivered = len(set(days)) < len(days) or self.spec.date_column not in self.spec.key
        c = conflicting_redeliveries(batch.rows, self.spec) if redelivered else pd.DataFrame()  # pandas: rare
        self.conflicts += len(c)
        for r in c.head(max(0, MAX_SAMPLE - len(self.sample))).to_dict("records"):
            k = " ".join(f"{pd.Timestamp(r[col]):%Y-%m-%d}" if col in (self.spec.date_column, "trade_date")
                         else str(r[col]) for col in self.spec.key)
            self.sample.append({"key": k, "files": list(r["files"]), "kept_file": r["kept_file"],
                                "columns_differing": list(r["columns_differing"])})
        have = {f"{f.day:%Y-%m-%d}" for f in batch.files}
        self.days_with_file += [d for d in batch.days if d in have]
        if self.spec.name == "index_daily":
            self.keys.append(_pandas(batch.table, ["trade_date", "ts_code"]).drop_duplicates())
        elif self.spec.name == "fund_nav":
            self.keys.append(_pandas(batch.table, ["fund_id", "trade_date"]).drop_duplicates())

    def frame(self) -> pd.DataFrame:
        return pd.concat(self.keys, ignore_index=True) if self.keys else pd.DataFrame()


def _cross_row_results(key: dg.AssetKey, x: _CrossRow, expected_codes: Sequence[str]) -> list[dg.AssetCheckResult]:
    warn = dg.AssetCheckSeverity.WARN
    feed = x.spec.name
    if x.conflicts:
        e = x.sample[0]
        desc = (f"{x.conflicts} key(s) delivered by two or more landing files with different values; staging keeps "
                f"the latest landed file. E.g. {e['key']} in {', '.join(e['files'])} "
                f"({', '.join(e['columns_differing'])} differ; kept {e['kept_file']})")
    else:
        desc = "no key was delivered by two landing files with different values"
    out = [dg.AssetCheckResult(
        asset_key=key, check_name="no_conflicting_redeliveries", passed=x.conflicts == 0, severity=warn,
        description=desc,
        metadata={"conflicting_keys": x.conflicts, "key": list(x.spec.key),
                  "sample": dg.MetadataValue.json(x.sample),
                  "sample_table": dg.MetadataValue.md(pd.DataFrame(x.sample).assign(
                      files=lambda d: d["files"].map(", ".join),
                      columns_differing=lambda d: d["columns_differing"].map(", ".join)).to_markdown(index=False)
                      if x.sample else "none"),
                  "rule": "both rows stay in raw (source_file, source_mtime_ns); staging keeps the row of the latest "
                          "landed file (source_mtime_ns, then file name): a re-delivery supersedes"},
    )]
    if feed == "index_daily":
        present = x.frame()
        configured = list(expected_codes)
        expected = sorted(configured) if configured else sorted(set(present["ts_code"].astype(str))) if len(present) else []
        missing = missing_index_codes(present, x.days_with_file, expected)
        n_pairs = sum(len(v) for v in missing.values())
        listing = "; ".join(f"{d}: {', '.join(c)}" for d, c in list(missing.items())[:5])
        out.append(dg.AssetCheckResult(
            asset_key=key, check_name="expected_indices_present", passed=not missing, severity=warn,
            description=(f"{len(missing)} day(s) missing {n_pairs} expected index row(s): {listing}"
                         + (" ..." if len(missing) > 5 else "")) if missing
            else f"every day with a landing file has all {len(expected)} expected index codes",
            metadata={"expected_codes": dg.MetadataValue.json(expected),
                      "expected_codes_source": "configured (expected_index_codes)" if configured
                      else "every index code seen in the run's partition range",
                      "days_checked": len(x.days_with_file), "days_missing_codes": len(missing),
                      "missing": dg.MetadataValue.json(dict(list(missing.items())[:200])),
                      "note": "days without any landing file are reported by landing_file_present; "
                              "a quarantined row does not count as present"},
        ))
    elif feed == "fund_nav":
        gaps = nav_gaps(x.frame()) if x.keys else nav_gaps(pd.DataFrame())
        by_fund = {f: g["missing_week_end"].tolist() for f, g in gaps.groupby("fund_id", sort=True)}
        listing = "; ".join(f"{f}: {', '.join(w)}" for f, w in list(by_fund.items())[:5])
        out.append(dg.AssetCheckResult(
            asset_key=key, check_name="no_nav_gaps", passed=gaps.empty, severity=warn,
            description=(f"{len(by_fund)} fund(s) without a NAV in {len(gaps)} week(s) between their first and last "
                         f"NAV: {listing}" + (" ..." if len(by_fund) > 5 else "")) if len(gaps)
            else "every fund has a NAV in every week between its first and last NAV",
            metadata={"funds_with_gaps": len(by_fund), "missing_weeks": len(gaps),
                      "gaps": dg.MetadataValue.json(dict(list(by_fund.items())[:200])),
                      "scope": "NAVs in the run's partition range (a backfill sees the whole range); weeks are "
                               "Monday-Sunday, named by their last session (partitions.week_end_sessions)"},
        ))
    return out


def _check_results(key: dg.AssetKey, feed: str, t: _Totals, expected_missing: list[str],
                   snapshot: bool, off_calendar: Sequence[str] = ()) -> list[dg.AssetCheckResult]:
    empty = list(t.empty_files)
    accounted = t.landed == t.accepted + t.quarantined + t.superseded
    gx_md = "All expectations passed." if not t.gx_failed else pd.DataFrame(
        [{"expectation": f.get("expectation"), "columns": ", ".join(map(str, f.get("columns", []))),
          "unexpected": f.get("unexpected_count"), "examples": str(f.get("examples", ""))[:120]}
         for f in t.gx_failed]).to_markdown(index=False)
    if snapshot:
        present_desc = "no snapshot file in landing" if not t.files else f"{len(t.files)} snapshot file(s)"
        present_ok = bool(t.files)
    else:
        present_ok = not expected_missing and not off_calendar and not empty
        present_desc = (f"{len(expected_missing)} partition(s) without a landing file: an empty partition was written"
                        if expected_missing else "every expected partition had a landing file")
        if off_calendar:
            present_desc += f"; {len(off_calendar)} file(s) dated on non-trading days were not read"
        if empty:
            present_desc += f"; {len(empty)} file(s) had a header but no rows"
    return [
        dg.AssetCheckResult(
            asset_key=key, check_name="rows_accounted_for", passed=accounted,
            metadata={"rows_landed": t.landed, "rows_accepted": t.accepted, "rows_quarantined": t.quarantined,
                      "rows_superseded": t.superseded},
            description="rows landed = rows accepted + rows quarantined"
            + (" + rows superseded by a later snapshot" if snapshot else ""),
        ),
        dg.AssetCheckResult(
            asset_key=key, check_name="landing_file_present", passed=present_ok,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"summary": present_desc, "days_without_file": dg.MetadataValue.json(expected_missing[:200]),
                      "files_on_non_trading_days": dg.MetadataValue.json(list(off_calendar)[:200]),
                      "files_without_rows": dg.MetadataValue.json(empty[:200]),
                      "note": SPARSE_FEEDS.get(feed, "")},
        ),
        dg.AssetCheckResult(
            asset_key=key, check_name=GX_CHECK_NAME, passed=t.gx_ok, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"suite": t.gx_suite or f"raw.{feed}", "rows_validated": t.gx_rows,
                      "expectations_failed": len(t.gx_failed), "gx_seconds": round(t.gx_seconds, 3),
                      "failures": dg.MetadataValue.md(gx_md),
                      "failed_expectations": dg.MetadataValue.json(t.gx_failed[:50])},
        ),
    ]


def _metadata(spec: FeedSpec, t: _Totals, source: LandingFeedSource, seconds: float, **extra) -> dict:
    empty = raw_schema(spec.name).empty_table().to_pandas(date_as_object=False)
    meta = table_metadata(t.preview if t.preview is not None else empty, descriptions=_descriptions(spec))
    meta["dagster/row_count"] = t.accepted
    if t.min_day is not None:
        meta["date_range"] = f"{t.min_day:%Y-%m-%d} .. {t.max_day:%Y-%m-%d}"
    else:
        meta.pop("date_range", None)
    meta.update({
        "rows_landed": t.landed,
        "rows_accepted": t.accepted,
        "rows_quarantined": t.quarantined,
        "quarantine_reasons": dg.MetadataValue.json(dict(sorted(t.reasons.items()))),
        "source_file_count": len(t.files),
        "source_files": dg.MetadataValue.json(t.files[:MAX_LISTED_FILES]
                                              + ([f"... {len(t.files) - MAX_LISTED_FILES} more"]
                                                 if len(t.files) > MAX_LISTED_FILES else [])),
        "landing_pattern": f"landing/{spec.name}/<YYYYMMDD>.<csv|csv.gz|parquet>",
        "quarantine_table": f"quarantine.{spec.name}",
        "seconds": round(seconds, 3),
        "parameters": dg.MetadataValue.json({**asdict(PARAMS), "chunk_days": source.chunk_days, "feed": spec.name,
                                             "key": list(spec.key), "date_column": spec.date_column}),
    })
    for k, v in extra.items():
        meta[k] = dg.MetadataValue.json(v) if isinstance(v, dict | list) else v
    return meta


def _write_quarantine(warehouse: Warehouse, feed: str, q: pd.DataFrame, days: Sequence[str]) -> None:
    """Replace the quarantine partitions of ``days``: a file for each day with quarantined rows and
    none for days that never had any, so reruns are idempotent without writing thousands of empty
    files. A day whose earlier file is stale gets an empty file by atomic replace, never an unlink:
    a concurrent run of the same day must always find the table's files (an unlink between its
    existence check and its catalog view made DuckDB fail with "no files found"). One empty
    partition keeps the table (and view) defined."""
    have = set(pd.to_datetime(q["trade_date"]).dt.strftime("%Y-%m-%d")) if len(q) else set()
    if have:
        warehouse.write_partitions("quarantine", feed, q, days=sorted(have), schema=quarantine_schema(feed))
    stale = [d for d in warehouse.days_present("quarantine", feed, list(days)) if d not in have]
    if stale:
        warehouse.write_partitions("quarantine", feed, q.iloc[0:0], days=stale, schema=quarantine_schema(feed))
    if not warehouse.exists("quarantine", feed):
        warehouse.write_partitions("quarantine", feed, q.iloc[0:0], days=[days[0]], schema=quarantine_schema(feed))


def _pandas(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    return table.select(columns).to_pandas(date_as_object=False)


def _write_chunk(warehouse: Warehouse, feed: str, batch, chunk: Sequence[str]) -> None:
    """Replace the raw and quarantine partitions of one chunk of days (raw rows written from
    Arrow as read: no pandas round trip, issue 11)."""
    warehouse.write_partitions(LAYER, feed, batch.table, days=chunk, schema=raw_schema(feed))
    _write_quarantine(warehouse, feed, batch.quarantined, chunk)


def _account(t: _Totals, x: _CrossRow, batch, chunk: Sequence[str], gx_rows: list, gx_n: int) -> int:
    """Add one chunk to the run's totals and cross-row state; append its GX sample to ``gx_rows``
    (the whole chunk while the run's sample stays within ``gx_max_rows``, else the chunk's first
    day). Returns the rows added to the sample."""
    rows = batch.table
    t.add(batch, rows)
    x.add(batch)
    t.missing += batch.days_without_file
    with_rows = set(pc.unique(rows["source_file"]).to_pylist()) | set(batch.quarantined["source_file"].unique())
    t.empty_files += [f.rel for f in batch.files if f.rel not in with_rows]
    if gx_n + rows.num_rows <= PARAMS.gx_max_rows:
        sample = rows
    else:  # budget spent: validate the first day of this chunk only
        sample = rows.filter(pc.equal(rows["trade_date"], pa.scalar(pd.Timestamp(chunk[0]).date(), pa.date32())))
    gx_rows.append(sample)
    return sample.num_rows


def _check_specs(key: dg.AssetKey, snapshot: bool) -> list[dg.AssetCheckSpec]:
    feed = key.path[-1]
    extra = [] if snapshot else [dg.AssetCheckSpec(
        "no_conflicting_redeliveries", asset=key,
        description="WARN when a key is delivered by two landing files with different values (staging keeps the "
                    "latest landed file); names the keys, files and differing columns.")]
    if feed == "index_daily":
        extra.append(dg.AssetCheckSpec(
            "expected_indices_present", asset=key,
            description="WARN when an expected index code (configured, else seen in the run's range) has no row on a "
                        "day that had a landing file; lists the days and codes."))
    if feed == "fund_nav":
        extra.append(dg.AssetCheckSpec(
            "no_nav_gaps", asset=key,
            description="WARN when a fund has no NAV in a week between its first and last NAV in the run's range; "
                        "names the funds and the missing week-end sessions."))
    return extra + [
        dg.AssetCheckSpec(
            "rows_accounted_for", asset=key, blocking=True,
            description="Every landed row is either accepted into raw or quarantined with a reason"
            + (" (or superseded by a later snapshot)" if snapshot else "") + ".",
        ),
        dg.AssetCheckSpec(
            "landing_file_present", asset=key,
            description="WARN when a partition had no landing file (an empty partition is written)"
            if not snapshot else "WARN when no snapshot file exists in landing",
        ),
        gx_check_spec(key),
    ]


def _daily_asset(feed: str) -> dg.AssetsDefinition:
    spec = FEEDS[feed]
    key = dg.AssetKey([LAYER, feed])
    _raw = _daily_body(feed)

    asset = dg.asset(
        key=key,
        group_name=LAYER,
        description=f"Raw `{feed}` rows from landing files, validated (bad rows quarantined). {spec.description}",
        **daily_asset_args(),
        kinds={"parquet", "pandas"},
        code_version=CODE_VERSION,
        check_specs=_check_specs(key, snapshot=False),
        metadata={"landing_pattern": f"landing/{feed}/<YYYYMMDD>.<csv|csv.gz|parquet>", "key": list(spec.key)},
    )
    if feed == "index_daily":
        @asset
        def _raw_index(context: dg.AssetExecutionContext, config: IndexDailyConfig, warehouse: Warehouse,
                       feed_source: LandingFeedSource):
            return _raw(context, warehouse, feed_source, list(config.expected_index_codes))

        return _raw_index

    @asset
    def _raw_feed(context: dg.AssetExecutionContext, warehouse: Warehouse, feed_source: LandingFeedSource):
        return _raw(context, warehouse, feed_source, [])

    return _raw_feed


def _daily_body(feed: str):
    """The compute of ``raw.<feed>`` (daily feeds); ``expected_codes`` only matters for index_daily."""
    spec = FEEDS[feed]
    key = dg.AssetKey([LAYER, feed])

    def _raw(context: dg.AssetExecutionContext, warehouse: Warehouse, feed_source: LandingFeedSource,
             expected_codes: Sequence[str]):
        t0 = time.perf_counter()
        days = list(context.partition_keys)
        t = _Totals()
        x = _CrossRow(spec)
        step = max(1, int(feed_source.chunk_days))
        # one listing of the landing folder for the whole run (not one per chunk)
        listed = feed_source.list_files(feed) if days else []
        by_day: dict[str, list] = {}
        for f in listed:
            by_day.setdefault(f"{f.day:%Y-%m-%d}", []).append(f)
        gx_rows: list[pa.Table] = []  # GX runs once per run, on this sample (see RawParams)
        gx_n = 0
        # chunk i is written (fsync-bound) on a writer thread while chunk i+1 is read and validated;
        # at most one write is pending. A LandingFileError stops the run after the pending write
        # finished: every partition written is complete (atomic), the failing chunk's are untouched.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"raw-{feed}-write") as writer:
            pending = None
            for chunk in month_chunks(days, step) if days else []:  # chunks end at month ends (lake files)
                batch = feed_source.read(feed, chunk, files=[f for d in chunk for f in by_day.get(d, [])])
                if pending is not None:
                    pending.result()
                pending = writer.submit(_write_chunk, warehouse, feed, batch, chunk)
                gx_n += _account(t, x, batch, chunk, gx_rows, gx_n)
            if pending is not None:
                pending.result()

        if gx_rows:
            t.gx(f"raw.{feed}", pa.concat_tables(gx_rows), None)
        warehouse.refresh_catalog([(LAYER, feed), ("quarantine", feed)])
        expected_missing = [d for d in _expected_days(feed, days) if d in set(t.missing)]
        # files dated on a weekend/holiday inside the run's range: no partition reads them
        off = [f.rel for f in _off_calendar(listed, days[0], days[-1])] if days else []
        if off:
            context.log.warning(f"raw.{feed}: landing files dated on non-trading days are not read: {off[:5]}")
        if t.quarantined:
            context.log.warning(f"raw.{feed}: {t.quarantined} row(s) quarantined: {dict(t.reasons)}")
        if t.empty_files:
            context.log.warning(f"raw.{feed}: landing files with a header but no rows: {t.empty_files[:5]}")
        if expected_missing:
            context.log.warning(f"raw.{feed}: no landing file for {len(expected_missing)} partition(s), "
                                f"e.g. {expected_missing[:5]}; empty partitions written")
        cross = _cross_row_results(key, x, expected_codes)
        for r in cross:
            if not r.passed:
                context.log.warning(f"raw.{feed}: {r.check_name}: {r.description}")
        extra = {"expected_index_codes": list(expected_codes)} if feed == "index_daily" else {}
        meta = _metadata(spec, t, feed_source, time.perf_counter() - t0,
                         partitions=len(days), days_without_file=t.missing[:200],
                         conflicting_redeliveries=x.conflicts, **extra)
        # a backfill records one event per partition, each with a copy of the returned metadata: the
        # run-level lists, schema and preview go to the last partition's event only (issue 11)
        meta = range_metadata(context, meta, once=RANGE_ONCE_KEYS)
        return dg.MaterializeResult(
            metadata=meta, check_results=_check_results(key, feed, t, expected_missing, False, off) + cross)

    return _raw


def _snapshot_asset(feed: str) -> dg.AssetsDefinition:
    spec = FEEDS[feed]
    key = dg.AssetKey([LAYER, feed])

    @dg.asset(
        key=key,
        group_name=LAYER,
        description=f"Raw `{feed}` reference snapshot: all landing snapshots merged, the latest file winning "
        f"per key. {spec.description}",
        kinds={"parquet", "pandas"},
        code_version=CODE_VERSION,
        check_specs=_check_specs(key, snapshot=True),
        metadata={"landing_pattern": f"landing/{feed}/<YYYYMMDD>.csv", "key": list(spec.key)},
    )
    def _raw(context: dg.AssetExecutionContext, warehouse: Warehouse, feed_source: LandingFeedSource):
        t0 = time.perf_counter()
        batch = feed_source.read_snapshots(feed)
        warehouse.write_table(LAYER, feed, batch.table, schema=raw_schema(feed))
        if batch.days:
            warehouse.write_partitions("quarantine", feed, batch.quarantined, days=batch.days,
                                       schema=quarantine_schema(feed))
        t = _Totals()
        t.add(batch, batch.table)
        t.gx(f"raw.{feed}", batch.table, None)
        warehouse.refresh_catalog([(LAYER, feed)] + ([("quarantine", feed)] if batch.days else []))
        if not batch.files:
            context.log.warning(f"raw.{feed}: no snapshot file in landing/{feed}/; wrote an empty table")
        if t.quarantined:
            context.log.warning(f"raw.{feed}: {t.quarantined} row(s) quarantined: {dict(t.reasons)}")
        meta = _metadata(spec, t, feed_source, time.perf_counter() - t0, rows_superseded=t.superseded,
                         latest_snapshot=batch.files[-1].rel if batch.files else "")
        return dg.MaterializeResult(metadata=meta, check_results=_check_results(key, feed, t, [], True))

    return _raw


RAW_ASSETS: dict[str, dg.AssetsDefinition] = {
    feed: (_daily_asset(feed) if spec.partitioned else _snapshot_asset(feed)) for feed, spec in FEEDS.items()
}
# module-level names so load_assets_from_package_module finds them
globals().update({f"raw_{feed}": a for feed, a in RAW_ASSETS.items()})

__all__ = ["RAW_ASSETS", "SPARSE_FEEDS"]
