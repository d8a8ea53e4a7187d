"""The landing-folder sensor: new or changed files -> runs for exactly their partitions.

It scans ``<data_root>/landing/<feed>/<YYYYMMDD>.<csv|csv.gz|parquet>`` (DESIGN.md §4) and
compares each file with what its cursor remembers:

* a file whose (mtime, size) is unchanged is not read again;
* a file whose (mtime, size) changed is hashed (SHA-256 of the bytes); if the hash is the one
  remembered — the same file dropped again, a ``touch`` — nothing happens;
* a new file or a changed hash is a change.

Changes of daily feeds are grouped by trading day (file name ``YYYYMMDD`` -> partition key
``YYYY-MM-DD``) and each day becomes one ``RunRequest`` of ``daily_update`` for that
partition, selecting the changed raw assets and everything downstream of them. Its run key is
built from feed + file name + content hash of every file in the group, so Dagster also never
launches the same request twice. When more than ``SensorSettings.max_day_runs`` days changed
in one tick (a vendor back-fill, ``sc-assets simulate``), they become ONE single-run backfill
over the range first..last day (tags ``dagster/asset_partition_range_start/_end``) instead
of hundreds of runs.

Reference snapshots (``stock_basic``, ``fut_basic``; the latest file wins) are not
partitioned: a changed snapshot requests its raw asset and the unpartitioned assets
downstream of it, or, when daily files changed in the same tick, is added to those runs.

Files still being written (modified less than ``min_age_s`` ago), names that are not
``YYYYMMDD.<ext>``, hidden files, days that are not SSE sessions, and paths that resolve
outside the data root (a symlink out) are skipped with a log line. A file dated after the
last existing partition (a future day) is skipped without being remembered, so it becomes a
change once its partition exists (a request for an unknown partition would fail the tick).

The cursor is JSON ``{"v": 1, "files": {"<feed>/<name>": [mtime_ns, size, sha16]}}``
compressed with zlib + base64 (about 20 bytes per file), so a 10-year landing folder of
~25,000 files stays a few hundred KB.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from sc_assets.feeds.schemas import FEEDS
from sc_assets.jobs import daily_update, range_tags
from sc_assets.partitions import CalendarRangeError, is_trading_day, trading_days
from sc_assets.settings import UnsafePathError, data_root, inside_root

FILE_RE = re.compile(r"^(?P<day>\d{8})\.(?P<ext>csv|csv\.gz|parquet)$")
HASH_CHARS = 16


@dataclass(frozen=True)
class SensorSettings:
    """Defaults of the landing sensor.

    min_age_s: a file modified more recently than this is assumed to be still being written.
    max_day_runs: at most this many per-day runs per tick; more changed days -> one range run.
    interval_s: seconds between evaluations (the daemon's minimum interval).
    """

    min_age_s: float = 2.0
    max_day_runs: int = 5
    interval_s: int = 30


SETTINGS = SensorSettings()


@dataclass(frozen=True)
class LandingChange:
    feed: str
    name: str  # file name, e.g. 20240122.csv
    day: str | None  # partition key for daily feeds, None for reference snapshots
    sha: str

    @property
    def token(self) -> str:
        return f"{self.feed}/{self.name}@{self.sha}"


def file_sha(path: Path, chunk: int = 1 << 20) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:HASH_CHARS]


def encode_cursor(files: dict[str, list]) -> str:
    raw = json.dumps({"v": 1, "files": files}, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def decode_cursor(cursor: str | None) -> dict[str, list]:
    if not cursor:
        return {}
    try:
        return json.loads(zlib.decompress(base64.b64decode(cursor)))["files"]
    except Exception:  # an unreadable cursor means "seen nothing": rescan everything once
        return {}


def scan_landing(
    root: Path, seen: dict[str, list], now: float | None = None, min_age_s: float = SETTINGS.min_age_s,
    log=None,
) -> tuple[list[LandingChange], dict[str, list]]:
    """Compare the landing folder with ``seen`` (cursor state). Returns (changes, new state).

    Files that disappeared are dropped from the state (a re-landed file is then new again).
    """
    now = time.time() if now is None else now
    landing = root / "landing"
    changes: list[LandingChange] = []
    state: dict[str, list] = {}
    if not landing.is_dir():
        return changes, state
    last_key = trading_days.get_last_partition_key()
    for feed_dir in sorted(p for p in landing.iterdir() if p.is_dir() and not p.name.startswith(".")):
        feed = feed_dir.name
        spec = FEEDS.get(feed)
        if spec is None:
            _log(log, f"landing/{feed}: not a known feed ({', '.join(FEEDS)}), ignored")
            continue
        for path in sorted(feed_dir.iterdir()):
            m = FILE_RE.match(path.name)
            if m is None or path.name.startswith("."):
                continue
            rel = f"{feed}/{path.name}"
            try:
                resolved = inside_root(root, path)
            except UnsafePathError as exc:
                _log(log, f"landing/{rel}: {exc}; ignored")
                continue
            if not resolved.is_file():
                continue
            st = resolved.stat()
            if now - st.st_mtime < min_age_s:
                if rel in seen:
                    state[rel] = seen[rel]
                continue  # still being written: look again next tick
            day = None
            if spec.partitioned:
                d = m.group("day")
                day = f"{d[:4]}-{d[4:6]}-{d[6:]}"
                try:
                    ok = is_trading_day(day)
                except CalendarRangeError:
                    ok = False
                if not ok:
                    _log(log, f"landing/{rel}: {day} is not an SSE trading day; ignored")
                    continue
                if last_key is None or day > last_key:
                    _log(log, f"landing/{rel}: {day} is after the last partition ({last_key}); looked at again later")
                    continue
            old = seen.get(rel)
            if old is not None and old[0] == st.st_mtime_ns and old[1] == st.st_size:
                state[rel] = old
                continue
            sha = file_sha(resolved)
            state[rel] = [st.st_mtime_ns, st.st_size, sha]
            if old is not None and old[2] == sha:
                continue  # the same bytes dropped again
            changes.append(LandingChange(feed=feed, name=path.name, day=day, sha=sha))
    return changes, state


def _log(log, msg: str) -> None:
    if log is not None:
        log.info(msg)


def _digest(tokens: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(tokens)).encode()).hexdigest()[:HASH_CHARS]


def _run_key(tokens: list[str], prefix: str) -> str:
    """feed/file@hash of every file; long groups are summarised by a digest of all of them."""
    tokens = sorted(tokens)
    if len(tokens) <= 3:
        return f"{prefix}:" + ";".join(tokens)
    return f"{prefix}:{len(tokens)} files:{_digest(tokens)}"


def plan_run_requests(
    changes: list[LandingChange], asset_graph, max_day_runs: int = SETTINGS.max_day_runs
) -> tuple[list[dg.RunRequest], list[str]]:
    """Turn landing changes into run requests (see the module docstring). Returns (requests, notes)."""
    notes: list[str] = []
    known = set(asset_graph.get_all_asset_keys())

    def raw_key(feed: str) -> dg.AssetKey | None:
        key = dg.AssetKey(["raw", feed])
        if key not in known:
            notes.append(f"no asset {key.to_user_string()} in the code location: {feed} files ignored")
            return None
        return key

    def downstream(keys: set[dg.AssetKey]) -> list[dg.AssetKey]:
        return sorted(dg.AssetSelection.assets(*keys).downstream().resolve(asset_graph), key=str)

    daily = [c for c in changes if c.day is not None]
    refs = [c for c in changes if c.day is None]
    ref_keys = {k for k in (raw_key(c.feed) for c in refs) if k is not None}
    ref_tokens = [c.token for c in refs if dg.AssetKey(["raw", c.feed]) in ref_keys]

    by_day: dict[str, list[LandingChange]] = {}
    for c in daily:
        if raw_key(c.feed) is not None:
            by_day.setdefault(c.day, []).append(c)

    requests: list[dg.RunRequest] = []
    if by_day and len(by_day) <= max_day_runs:
        for day in sorted(by_day):
            group = by_day[day]
            keys = {dg.AssetKey(["raw", c.feed]) for c in group} | ref_keys
            tokens = [c.token for c in group] + ref_tokens
            requests.append(dg.RunRequest(
                run_key=_run_key(tokens, day),
                partition_key=day,
                asset_selection=downstream(keys),
                tags={"sc_assets/trigger": "landing_sensor", "sc_assets/landing_files": str(len(tokens))},
            ))
    elif by_day:
        days = sorted(by_day)
        group = [c for d in days for c in by_day[d]]
        keys = {dg.AssetKey(["raw", c.feed]) for c in group} | ref_keys
        tokens = [c.token for c in group] + ref_tokens
        requests.append(dg.RunRequest(
            run_key=_run_key(tokens, f"{days[0]}..{days[-1]}"),
            asset_selection=downstream(keys),
            tags={**range_tags(days[0], days[-1]), "sc_assets/trigger": "landing_sensor",
                  "sc_assets/landing_files": str(len(tokens)), "sc_assets/changed_days": str(len(days))},
        ))
        notes.append(f"{len(days)} changed days > {max_day_runs}: one single-run backfill {days[0]}..{days[-1]}")
    elif ref_keys:
        unpartitioned = [k for k in downstream(ref_keys) if asset_graph.get(k).partitions_def is None]
        requests.append(dg.RunRequest(
            run_key=_run_key(ref_tokens, "reference"),
            asset_selection=unpartitioned,
            tags={"sc_assets/trigger": "landing_sensor", "sc_assets/landing_files": str(len(ref_tokens))},
        ))
    return requests, notes


def _asset_graph(context: dg.SensorEvaluationContext):
    repo = context.repository_def
    if repo is None:  # unit tests without a repository: use the code location's own definitions
        from sc_assets.definitions import defs

        return defs.resolve_asset_graph()
    return repo.asset_graph


@dg.sensor(
    name="landing_sensor",
    job=daily_update,
    minimum_interval_seconds=SETTINGS.interval_s,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New or changed files in <data_root>/landing -> daily_update runs for exactly their "
    "partitions (run key = feed + file + content hash; an identical re-drop does nothing).",
)
def landing_sensor(context: dg.SensorEvaluationContext):
    """Watch the landing folder; request runs for the partitions of new or changed files."""
    root = data_root()
    seen = decode_cursor(context.cursor)
    changes, state = scan_landing(root, seen, log=context.log)
    if not changes:
        context.update_cursor(encode_cursor(state))
        return dg.SkipReason(f"no new or changed files in {root / 'landing'} ({len(state)} known)")
    requests, notes = plan_run_requests(changes, _asset_graph(context))
    for note in notes:
        context.log.info(note)
    context.update_cursor(encode_cursor(state))
    if not requests:
        return dg.SkipReason("; ".join(notes) or "changes matched no asset")
    return requests


SENSORS = [landing_sensor]

__all__ = [
    "SENSORS", "SETTINGS", "LandingChange", "SensorSettings", "decode_cursor", "encode_cursor",
    "file_sha", "landing_sensor", "plan_run_requests", "scan_landing",
]
