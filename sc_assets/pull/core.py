"""Shared machinery of the pull adapters: errors, token-bucket rate limiter, retries with
exponential backoff, the atomic/resumable landing writer and the per-day run loop.

Nothing here imports tushare or akshare: the adapters talk to a *client*, any callable
``query(api_name, **params) -> pandas.DataFrame``. The real clients (``tushare.py``,
``akshare.py``) import the vendor SDK lazily; tests pass a fake client replaying recorded
responses. Clock and sleep are injectable, so tests never wait.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd

from sc_assets.feeds.schemas import FEEDS, FeedSpec
from sc_assets.settings import inside_root

LANDING_DATE_FORMAT = "%Y%m%d"  # dates inside landing files, as Tushare Pro returns them
"""Dates in landing files are written the way Tushare Pro returns them (``YYYYMMDD``)."""


# --------------------------------------------------------------------------------------------
# errors


class PullError(RuntimeError):
    """Base class of every error a pull reports to the user."""


class MissingTokenError(PullError):
    """No Tushare Pro token."""


class MissingExtraError(PullError):
    """The vendor SDK (optional extra) is not installed."""


class RateLimitRefused(PullError):
    """The vendor refused a call because the per-minute quota is used up."""


class ShapeChangedError(PullError):
    """A response lacks a field the adapter maps (renamed or removed upstream)."""


class VendorError(PullError):
    """The vendor answered with an error that retrying will not fix (permission, bad params)."""


class FundNavFormatError(PullError):
    """A user-supplied fund NAV CSV does not follow the documented format."""


# Tushare Pro: "抱歉，您每分钟最多访问该接口500次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
# and daily quotas: "抱歉，您每天最多访问该接口...". Both are quota refusals.
_RATE_LIMIT_PATTERNS = (
    re.compile(r"每分钟最多访问"),
    re.compile(r"每小时最多访问"),
    re.compile(r"最多访问该接口"),
    re.compile(r"rate.?limit", re.I),
    re.compile(r"too many requests", re.I),
)
_DAILY_QUOTA = re.compile(r"每天最多访问")
_PERMISSION_PATTERNS = (re.compile(r"没有接口访问权限"), re.compile(r"权限"), re.compile(r"token", re.I))


def is_rate_limit_message(message: str) -> bool:
    return any(p.search(message) for p in _RATE_LIMIT_PATTERNS)


def classify_vendor_message(api: str, message: str) -> PullError:
    """Map a vendor error message (Tushare ``code != 0``) to the error the user sees."""
    if _DAILY_QUOTA.search(message):
        return VendorError(
            f"{api}: the vendor's DAILY quota for this endpoint is used up ({message.strip()}); "
            "resume tomorrow — days already landed are kept and skipped"
        )
    if is_rate_limit_message(message):
        return RateLimitRefused(
            f"{api}: rate limit refused by the vendor ({message.strip()}); "
            "lower --calls-per-minute to your account's quota"
        )
    if any(p.search(message) for p in _PERMISSION_PATTERNS):
        return VendorError(f"{api}: refused by the vendor ({message.strip()}); check the token and its points")
    return VendorError(f"{api}: vendor error: {message.strip()}")


# --------------------------------------------------------------------------------------------
# client protocol, rate limiting, retries


class Client(Protocol):
    def __call__(self, api_name: str, **params) -> pd.DataFrame: ...


class TokenBucket:
    """Token bucket: at most ``calls_per_minute`` calls per rolling minute, bursts up to ``burst``.

    ``clock`` returns seconds (monotonic); ``sleep`` waits. Both injectable for tests.
    """

    def __init__(self, calls_per_minute: float, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if calls_per_minute <= 0:
            raise ValueError("calls_per_minute must be > 0")
        self.rate = calls_per_minute / 60.0  # tokens per second
        self.capacity = float(burst if burst is not None else max(1, min(int(calls_per_minute), 10)))
        self.tokens = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.last = clock()
        self.waited = 0.0

    def acquire(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            wait = (1.0 - self.tokens) / self.rate
            self.sleep(wait)
            self.waited += wait
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            # a clock that did not advance (fake sleep) still grants the token we waited for
            self.tokens = max(self.tokens, 1.0)
        self.tokens -= 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: wait ``base * factor**attempt`` (capped) before retry ``attempt+1``.

    Rate-limit refusals wait at least ``rate_limit_wait`` seconds (the vendor's window is a
    minute). Shape changes, missing tokens and permission errors are never retried.
    """

    retries: int = 4
    base_delay: float = 2.0
    factor: float = 2.0
    max_delay: float = 60.0
    rate_limit_wait: float = 30.0

    def delay(self, attempt: int, rate_limited: bool) -> float:
        d = min(self.max_delay, self.base_delay * self.factor ** attempt)
        return max(d, self.rate_limit_wait) if rate_limited else d


# errors retrying cannot fix (ValueError is retried: truncated JSON bodies raise JSONDecodeError)
_NEVER_RETRY = (ShapeChangedError, MissingTokenError, MissingExtraError, VendorError, FundNavFormatError,
                TypeError, KeyError)


class Caller:
    """Rate-limited, retrying front of a client: ``caller(api, **params) -> DataFrame``."""

    def __init__(self, client: Client, *, calls_per_minute: float = 200, policy: RetryPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 log: Callable[[str], None] | None = None):
        self.client = client
        self.bucket = TokenBucket(calls_per_minute, clock=clock, sleep=sleep)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.log = log or (lambda msg: None)
        self.calls = 0
        self.retried = 0
        self.backoff_waits: list[float] = []

    def __call__(self, api: str, **params) -> pd.DataFrame:
        attempt = 0
        while True:
            self.bucket.acquire()
            self.calls += 1
            try:
                out = self.client(api, **params)
            except _NEVER_RETRY:
                raise
            except RateLimitRefused as exc:
                if attempt >= self.policy.retries:
                    raise RateLimitRefused(f"{exc} (still refused after {attempt + 1} attempts)") from exc
                wait = self.policy.delay(attempt, rate_limited=True)
            except Exception as exc:  # network errors, timeouts, vendor hiccups
                if is_rate_limit_message(str(exc)):
                    err: Exception = classify_vendor_message(api, str(exc))
                    rate_limited = True
                else:
                    err, rate_limited = exc, False
                if attempt >= self.policy.retries:
                    if isinstance(err, PullError):
                        raise err.__class__(f"{err} (still failing after {attempt + 1} attempts)") from exc
                    raise PullError(f"{api} {params}: failed after {attempt + 1} attempts: {exc!r}") from exc
                wait = self.policy.delay(attempt, rate_limited=rate_limited)
            else:
                if out is None:
                    return pd.DataFrame()
                return out
            self.log(f"{api}: attempt {attempt + 1} failed; retrying in {wait:.1f}s")
            self.backoff_waits.append(wait)
            self.retried += 1
            self.sleep(wait)
            attempt += 1


# --------------------------------------------------------------------------------------------
# response-shape checks and helpers


def require_fields(frame: pd.DataFrame, fields: Iterable[str], *, api: str, source: str) -> None:
    """Raise :class:`ShapeChangedError` naming every mapped field the response lacks."""
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise ShapeChangedError(
            f"{source} {api}: response shape changed: missing field(s) {missing}; "
            f"got columns {list(frame.columns)}. The adapter maps these fields (sc_assets/pull/); "
            "update the mapping for the renamed field or pin the SDK version that still returns it"
        )


def ymd(day) -> str:
    return pd.Timestamp(day).strftime("%Y%m%d")


def to_ts(values: pd.Series) -> pd.Series:
    """Parse vendor dates (YYYYMMDD strings/ints, ISO strings, date objects) to Timestamps."""
    s = pd.Series(values)
    as_str = s.astype("str").str.strip().str.replace(r"\.0$", "", regex=True)
    compact = as_str.str.fullmatch(r"\d{8}")
    out = pd.to_datetime(as_str.where(compact), format="%Y%m%d", errors="coerce")
    rest = ~compact.fillna(False) & s.notna() & ~as_str.isin(["", "None", "nan", "NaT", "<NA>"])
    if rest.any():
        out = out.where(~rest, pd.to_datetime(as_str.where(rest), errors="coerce"))
    return out


_SUFFIX = {"SH": "SH", "SS": "SH", "SSE": "SH", "SZ": "SZ", "SZSE": "SZ", "BJ": "BJ", "BSE": "BJ"}


def exchange_of(code6: str) -> str:
    """Exchange suffix of a 6-digit A-share / fund code from its prefix."""
    if code6.startswith(("60", "68", "90", "5", "11")):
        return "SH"
    if code6.startswith(("00", "30", "20", "15", "16", "12")):
        return "SZ"
    if code6.startswith(("4", "8", "92")):
        return "BJ"
    raise ValueError(f"cannot tell the exchange of code {code6!r}")


def normalize_code(code) -> str:
    """Normalise a security code to ``600000.SH`` / ``000001.SZ`` / ``430047.BJ``.

    Accepts ``600000``, ``sh600000``, ``SH600000``, ``600000.SH``, ``600000.XSHG``, ints.
    Index and other codes with a suffix (``932000.CSI``, ``8841431.WI``) keep their suffix.
    """
    s = str(code).strip().upper()
    if re.fullmatch(r"\d+\.0", s):
        s = s[:-2]
    m = re.fullmatch(r"(SH|SZ|BJ)\.?(\d{6})", s)
    if m:
        return f"{m.group(2)}.{m.group(1)}"
    m = re.fullmatch(r"(\d+)\.([A-Z]+)", s)
    if m:
        num, suf = m.groups()
        suf = {"XSHG": "SH", "XSHE": "SZ", "XBEI": "BJ"}.get(suf, _SUFFIX.get(suf, suf))
        return f"{num.zfill(6) if suf in ('SH', 'SZ', 'BJ') else num}.{suf}"
    if re.fullmatch(r"\d{1,6}", s):
        s = s.zfill(6)
        return f"{s}.{exchange_of(s)}"
    raise ValueError(f"unrecognised security code {code!r}")


def board_of(ts_code: str) -> str:
    """Board from the code pattern (METHODS.md §1): main / chinext / star / bse."""
    num, _, suf = ts_code.partition(".")
    if suf == "BJ":
        return "bse"
    if num.startswith(("688", "689")):
        return "star"
    if num.startswith(("300", "301")):
        return "chinext"
    return "main"


def session_on_or_before(day: pd.Timestamp) -> pd.Timestamp:
    from sc_assets import partitions

    s = partitions.sessions()
    i = s.searchsorted(pd.Timestamp(day).normalize(), side="right") - 1
    if i < 0:
        raise partitions.CalendarRangeError(f"{day} is before the first session")
    return s[i]


# --------------------------------------------------------------------------------------------
# landing writer


def _format(spec: FeedSpec, df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for col in spec.columns:
        v = df[col.name] if col.name in df.columns else pd.Series(pd.NA, index=df.index)
        if col.dtype == "date":
            out[col.name] = to_ts(v).dt.strftime(LANDING_DATE_FORMAT)
        elif col.dtype == "float":
            out[col.name] = pd.to_numeric(v, errors="coerce").astype("float64")
        elif col.dtype == "int":
            out[col.name] = pd.to_numeric(v, errors="coerce").astype("Int64")
        elif col.dtype == "bool":
            out[col.name] = v.astype("boolean")
        else:
            out[col.name] = v.astype("str").where(v.notna())
    return out


def check_frame(spec: FeedSpec, df: pd.DataFrame, *, where: str) -> None:
    """Canonical columns present, required ones not null, key unique — before anything is written."""
    missing = [c for c in spec.column_names if c not in df.columns]
    if missing:
        raise ShapeChangedError(f"{where}: mapped frame for {spec.name} lacks column(s) {missing}")
    for c in spec.required:
        nulls = int(df[c].isna().sum())
        if nulls:
            raise ShapeChangedError(
                f"{where}: {spec.name}.{c} is required but {nulls} row(s) are empty after mapping; "
                "the vendor field it comes from is missing or renamed"
            )
    dup = df.duplicated(list(spec.key)).sum()
    if dup:
        raise PullError(f"{where}: {spec.name} has {int(dup)} duplicate key row(s) on {list(spec.key)}")


def csv_bytes(spec: FeedSpec, df: pd.DataFrame) -> bytes:
    """Deterministic CSV (schema column order, sorted by key, UTF-8, full float precision)."""
    frame = _format(spec, df).sort_values(list(spec.key), kind="mergesort").reset_index(drop=True)
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


@dataclass
class LandingWriter:
    """Writes ``<root>/landing/<feed>/<YYYYMMDD>.csv`` atomically (temp file + ``os.replace``).

    A file whose bytes are unchanged is not rewritten (its mtime stays, so the landing sensor's
    file-hash run key does not fire again).
    """

    root: Path
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)

    def path(self, feed: str, day) -> Path:
        return inside_root(self.root, Path("landing") / feed / f"{ymd(day)}.csv")

    def exists(self, feed: str, day) -> bool:
        landing = Path(self.root) / "landing" / feed
        stem = ymd(day)
        return any((landing / f"{stem}{ext}").exists() for ext in (".csv", ".csv.gz", ".parquet"))

    def write(self, feed: str, day, df: pd.DataFrame) -> str:
        spec = FEEDS[feed]
        check_frame(spec, df, where=f"{feed} {ymd(day)}")
        data = csv_bytes(spec, df)
        target = self.path(feed, day)
        if target.exists() and _digest(target.read_bytes()) == _digest(data):
            self.unchanged.append(target)
            return "unchanged"
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.written.append(target)
        return "written"

    def write_days(self, feed: str, df: pd.DataFrame, days: Sequence[pd.Timestamp]) -> dict[str, int]:
        """Split a multi-day frame by its date column and write one file per requested day.

        Days with no rows are not written (the vendor had nothing: e.g. a stock feed on a
        day before the index's launch); they are counted as ``empty``.
        """
        spec = FEEDS[feed]
        counts = {"written": 0, "unchanged": 0, "empty": 0}
        dates = to_ts(df[spec.date_column]) if len(df) else pd.Series(dtype="datetime64[ns]")
        for day in days:
            part = df[(dates == pd.Timestamp(day)).to_numpy()] if len(df) else df
            if part.empty:
                counts["empty"] += 1
                continue
            counts[self.write(feed, day, part)] += 1
        return counts


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
