"""The lake on S3-compatible object storage (``cluster`` profile; ``docs/CLUSTER.md``).

:class:`~sc_assets.resources.warehouse.Warehouse` keeps the lake on the local disk unless
``lake_uri`` (or ``$SC_ASSETS_LAKE_URI``) is an ``s3://bucket/prefix`` URI. Then its paths
are :class:`S3Path` handles — a small pathlib-like object (``/``, ``name``, ``parent``,
``exists``, ``is_dir``, ``iterdir``, ``glob``, ``unlink``) — so the warehouse's methods and the
assets work unchanged. The layout is the one on disk (``<prefix>/<layer>/<asset>/YYYY-MM.parquet``
per month of a partitioned table, ``.../part.parquet`` for a table), which Spark, Trino and
DuckDB read as one Parquet dataset.

Settings (environment only, never written into metadata or logs):

``SC_ASSETS_LAKE_URI``       ``s3://bucket/prefix``
``SC_ASSETS_S3_ENDPOINT``    endpoint URL of an S3-compatible server (e.g. ``http://127.0.0.1:9000``);
                             empty means AWS itself (``AWS_ENDPOINT_URL`` is honoured too)
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_REGION`` (default ``us-east-1``)

Atomicity: a month object is built completely in memory and then sent with ONE
``PutObject``; S3 makes an object visible only when that request completes, so a writer
killed mid-way leaves the previous object (or none) — never half a partition — and a rerun
replaces it. There are no temp objects to clean. The PUT is conditional on the ETag the
writer merged its partitions into (:meth:`S3Lake.update_parquet`), so two runs writing
different days of one month never drop each other's rows.

Reads: DuckDB connections made by the warehouse get the bucket registered as an fsspec
filesystem (``ArrowFSWrapper`` over ``pyarrow.fs.S3FileSystem``), so the catalog views read
``s3://`` globs lazily without DuckDB's httpfs extension (which needs the internet to
install). :meth:`S3Lake.local_copies` serves :meth:`Warehouse.files` / ``read`` from a
read-through cache under ``<data_root>/.lake_cache`` keyed by the object's ETag, so every
existing caller that hands file names to pyarrow or DuckDB keeps working.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa

from sc_assets.resources.parquet_format import encode

LAKE_URI_ENV = "SC_ASSETS_LAKE_URI"
S3_ENDPOINT_ENV = "SC_ASSETS_S3_ENDPOINT"
ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
REGION_ENV = "AWS_REGION"
DEFAULT_REGION = "us-east-1"

#: A conditional PUT refused because the object changed (412), raced another one (409), or was
#: removed since it was read (If-Match on a missing key: 404): read it again and merge again.
_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"}
UPDATE_ATTEMPTS = 20
#: A cached copy of an object's older version is removed this long (s) after it was fetched: a daily
#: run replaces the current month's object, and another process may still be reading the older copy.
CACHE_GRACE_S = 600.0
#: (bucket, key, etag) -> footer schema metadata (an object version never changes)
_FOOTERS: dict[tuple[str, str, str], dict[bytes, bytes]] = {}


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken",
                     "ExpiredToken", "AuthorizationHeaderMalformed"}


class LakeStoreError(RuntimeError):
    """Object storage unreachable or misconfigured; the message names the service and setting."""


def is_s3_uri(uri: str | None) -> bool:
    return bool(uri) and str(uri).startswith("s3://")


@dataclass(frozen=True)
class S3Settings:
    """Where and how to reach the bucket. Secrets are read from the environment when used."""

    bucket: str
    prefix: str
    endpoint: str  # "" = AWS
    region: str

    @classmethod
    def from_uri(cls, uri: str) -> S3Settings:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise LakeStoreError(f"{LAKE_URI_ENV} must look like s3://bucket/prefix, got {uri!r}")
        endpoint = (os.environ.get(S3_ENDPOINT_ENV) or os.environ.get("AWS_ENDPOINT_URL_S3")
                    or os.environ.get("AWS_ENDPOINT_URL") or "")
        region = os.environ.get(REGION_ENV) or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        return cls(bucket=parsed.netloc, prefix=parsed.path.strip("/"), endpoint=endpoint.rstrip("/"), region=region)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def where(self) -> str:
        return f"{self.endpoint or 'AWS S3'} ({S3_ENDPOINT_ENV})"


def _credentials() -> tuple[str | None, str | None]:
    return os.environ.get(ACCESS_KEY_ENV), os.environ.get(SECRET_KEY_ENV)


_CLIENTS: dict[tuple, object] = {}
_CLIENTS_LOCK = threading.Lock()


def _cache_key(settings: S3Settings, kind: str) -> tuple:
    key_id, secret = _credentials()
    digest = hashlib.sha256((secret or "").encode()).hexdigest()[:12]  # identity only, never shown
    return (kind, settings.endpoint, settings.region, key_id, digest, os.getpid())


def _boto_client(settings: S3Settings):
    key = _cache_key(settings, "boto3")
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            import boto3
            from botocore.config import Config

            key_id, secret = _credentials()
            _CLIENTS[key] = boto3.client(
                "s3",
                endpoint_url=settings.endpoint or None,
                region_name=settings.region,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                config=Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"},
                              s3={"addressing_style": "path"}),
            )
        return _CLIENTS[key]


def _arrow_fs(settings: S3Settings):
    key = _cache_key(settings, "arrow")
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            from pyarrow import fs as pafs

            key_id, secret = _credentials()
            kwargs: dict = {"region": settings.region, "connect_timeout": 3, "request_timeout": 30}
            if key_id and secret:
                kwargs.update(access_key=key_id, secret_key=secret)
            if settings.endpoint:
                ep = urlparse(settings.endpoint)
                kwargs.update(endpoint_override=ep.netloc or ep.path, scheme=ep.scheme or "https",
                              force_virtual_addressing=False)
            _CLIENTS[key] = pafs.S3FileSystem(**kwargs)
        return _CLIENTS[key]


class S3Lake:
    """One bucket/prefix: listing, single-PUT Parquet writes, deletes, cached local copies."""

    def __init__(self, uri: str, cache_dir: Path):
        self.settings = S3Settings.from_uri(uri)
        self.cache_dir = Path(cache_dir)

    # ---- errors --------------------------------------------------------------------
    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Translate client errors into :class:`LakeStoreError` naming service and setting."""
        try:
            yield
        except LakeStoreError:
            raise
        except Exception as exc:  # botocore is imported lazily; classify by name
            raise self.translate(exc, what) from exc

    def translate(self, exc: BaseException, what: str) -> BaseException:
        name = type(exc).__name__
        s = self.settings
        if name in {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                    "ReadTimeoutError", "ConnectionError"} or "Connection refused" in str(exc):
            return LakeStoreError(
                f"S3 object storage unreachable at {s.where()} while trying to {what}: {name}. "
                f"Is the server running (make cluster-up) and {S3_ENDPOINT_ENV} right?")
        if name in {"NoCredentialsError", "PartialCredentialsError"}:
            return LakeStoreError(
                f"no credentials for S3 object storage at {s.where()}: set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}")
        code = ""
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
        if code in _CREDENTIAL_CODES:
            return LakeStoreError(
                f"S3 object storage at {s.where()} rejected the credentials ({ACCESS_KEY_ENV} / "
                f"{SECRET_KEY_ENV}) while trying to {what}: {code}")
        if code in {"NoSuchBucket", "404"} and what.startswith("reach bucket"):
            return LakeStoreError(
                f"bucket {s.bucket!r} does not exist on S3 object storage at {s.where()} "
                f"(setting {LAKE_URI_ENV}={s.uri})")
        if code == "NoSuchBucket":
            return LakeStoreError(
                f"bucket {s.bucket!r} does not exist on S3 object storage at {s.where()} "
                f"(setting {LAKE_URI_ENV}={s.uri})")
        return exc

    # ---- keys ------------------------------------------------------------------------
    @property
    def client(self):
        return _boto_client(self.settings)

    def root(self) -> S3Path:
        return S3Path(self, self.settings.prefix)

    def uri(self, key: str) -> str:
        return f"s3://{self.settings.bucket}/{key}"

    def check(self) -> None:
        """HEAD the bucket: raises :class:`LakeStoreError` if unreachable / rejected / missing."""
        with self.errors(f"reach bucket {self.settings.bucket!r}"):
            self.client.head_bucket(Bucket=self.settings.bucket)

    def create_bucket(self) -> None:
        with self.errors(f"create bucket {self.settings.bucket!r}"):
            try:
                self.client.head_bucket(Bucket=self.settings.bucket)
            except Exception as exc:
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if code not in {"404", "NoSuchBucket"}:
                    raise
                self.client.create_bucket(Bucket=self.settings.bucket)

    # ---- objects ---------------------------------------------------------------------
    def list(self, prefix: str) -> dict[str, tuple[str, int]]:
        """Objects under ``prefix`` (a folder key, no trailing slash): key -> (etag, size)."""
        out: dict[str, tuple[str, int]] = {}
        folder = prefix.rstrip("/") + "/" if prefix else ""
        with self.errors(f"list {self.uri(folder)}"):
            token = None
            while True:
                kw = {"Bucket": self.settings.bucket, "Prefix": folder}
                if token:
                    kw["ContinuationToken"] = token
                resp = self.client.list_objects_v2(**kw)
                for obj in resp.get("Contents", []):
                    out[obj["Key"]] = (obj["ETag"].strip('"'), int(obj["Size"]))
                if not resp.get("IsTruncated"):
                    break
                token = resp["NextContinuationToken"]
        return out

    def children(self, prefix: str) -> tuple[list[str], list[str]]:
        """Immediate (folders, objects) under ``prefix`` (delimiter listing)."""
        folder = prefix.rstrip("/") + "/" if prefix else ""
        dirs: list[str] = []
        files: list[str] = []
        with self.errors(f"list {self.uri(folder)}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=folder, Delimiter="/"):
                dirs += [p["Prefix"].rstrip("/") for p in page.get("CommonPrefixes", [])]
                files += [o["Key"] for o in page.get("Contents", [])]
        return dirs, files

    def head(self, key: str) -> tuple[str, int] | None:
        with self.errors(f"read {self.uri(key)}"):
            try:
                resp = self.client.head_object(Bucket=self.settings.bucket, Key=key)
            except Exception as exc:
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if code in {"404", "NoSuchKey", "NotFound"}:
                    return None
                raise
        return resp["ETag"].strip('"'), int(resp["ContentLength"])

    def put_parquet(self, table: pa.Table, key: str) -> None:
        """Serialise the whole file in memory, then ONE PutObject (atomic on S3)."""
        body = encode(table).to_pybytes()
        with self.errors(f"write {self.uri(key)}"):
            self.client.put_object(Bucket=self.settings.bucket, Key=key, Body=body)

    def update_parquet(self, key: str, build: Callable[[str | None], pa.Table], attempts: int = UPDATE_ATTEMPTS) -> None:
        """Replace ``key`` with ``build(local copy of its current object, or None)``, sent with one
        conditional ``PutObject`` (``If-Match`` the ETag read, ``If-None-Match: *`` for a new key):
        when another writer replaced the object in between (a run writing another day of the same
        month), S3 refuses the PUT and the update starts again from the new object, so neither
        writer's partitions are lost. Gives up after ``attempts`` refusals in a row."""
        for attempt in range(attempts):
            if attempt:  # jittered backoff: many runs writing days of one month at once
                time.sleep(random.uniform(0, 0.02 * 2 ** min(attempt, 6)))
            meta = self.head(key)
            current = self.local_copies([key], {key: meta})[0] if meta is not None else None
            body = encode(build(current)).to_pybytes()
            condition = {"IfMatch": meta[0]} if meta is not None else {"IfNoneMatch": "*"}
            try:
                with self.errors(f"write {self.uri(key)}"):
                    self.client.put_object(Bucket=self.settings.bucket, Key=key, Body=body, **condition)
                return
            except Exception as exc:  # botocore's ClientError, passed through by ``errors``
                if _error_code(exc) not in _CONFLICT_CODES:
                    raise
        raise LakeStoreError(f"could not write {self.uri(key)}: other writers replaced it {attempts} times in a row "
                             f"while this one was merging its partitions into it; rerun")

    def delete(self, key: str) -> None:
        with self.errors(f"delete {self.uri(key)}"):
            self.client.delete_object(Bucket=self.settings.bucket, Key=key)

    def local_copies(self, keys: list[str], known: dict[str, tuple[str, int]] | None = None) -> list[str]:
        """Local files with the content of ``keys`` (read-through cache keyed by ETag)."""
        known = known or {}
        out = []
        for key in keys:
            meta = known.get(key) or self.head(key)
            target = None
            for _ in range(UPDATE_ATTEMPTS):
                if meta is None:
                    raise FileNotFoundError(f"{self.uri(key)} does not exist")
                target = self._cached_copy(key, meta[0])
                if target is not None:
                    break
                meta = self.head(key)  # replaced since it was listed: fetch the new version
            if target is None:
                raise LakeStoreError(f"could not read {self.uri(key)}: replaced {UPDATE_ATTEMPTS} times while downloading")
            out.append(str(target))
        return out

    def _cached_copy(self, key: str, etag: str) -> Path | None:
        """The cached file of version ``etag`` of ``key``, downloaded if new (``If-Match`` that ETag,
        so the file holds exactly that version); None if the object is no longer that version."""
        folder = self.cache_dir / self.settings.bucket / key
        target = folder / f"{etag}.parquet"
        if target.exists():
            with contextlib.suppress(FileNotFoundError):
                os.utime(target)  # in use: the grace period below counts from now
            return target
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        try:
            try:
                with self.errors(f"read {self.uri(key)}"), open(tmp, "wb") as f:
                    body = self.client.get_object(Bucket=self.settings.bucket, Key=key, IfMatch=etag)["Body"]
                    shutil.copyfileobj(body, f, 1 << 20)
            except Exception as exc:
                if _error_code(exc) in _CONFLICT_CODES:
                    return None
                raise
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        cutoff = time.time() - CACHE_GRACE_S
        for old in folder.glob("*.parquet"):  # older versions of this object, once no reader can hold them
            with contextlib.suppress(FileNotFoundError):
                if old != target and old.stat().st_mtime < cutoff:
                    old.unlink()
        return target

    def footer_metadata(self, key: str, etag: str) -> dict[bytes, bytes]:
        """The schema metadata in the Parquet footer of version ``etag`` of ``key``, read with
        ranged GETs (not the whole object), cached per version."""
        hit = _FOOTERS.get((self.settings.bucket, key, etag))
        if hit is None:
            import pyarrow.parquet as pq

            with self.errors(f"read {self.uri(key)}"):
                hit = pq.read_schema(f"{self.settings.bucket}/{key}", filesystem=_arrow_fs(self.settings)).metadata or {}
            _FOOTERS[(self.settings.bucket, key, etag)] = hit
        return hit

    # ---- DuckDB ----------------------------------------------------------------------
    def register(self, con) -> None:
        """Let DuckDB connection ``con`` read ``s3://`` paths of this lake (fsspec over pyarrow)."""
        from fsspec.implementations.arrow import ArrowFSWrapper

        class _S3(ArrowFSWrapper):
            protocol = ("s3",)

        con.register_filesystem(_S3(_arrow_fs(self.settings)))


class S3Path:
    """A pathlib-like handle on a key of an :class:`S3Lake` (only what the warehouse needs)."""

    __slots__ = ("key", "store")

    def __init__(self, store: S3Lake, key: str):
        self.store = store
        self.key = key.strip("/")

    def __truediv__(self, other: str) -> S3Path:
        return S3Path(self.store, f"{self.key}/{other}" if self.key else str(other))

    def __str__(self) -> str:
        return self.store.uri(self.key)

    def __repr__(self) -> str:
        return f"S3Path({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, S3Path) and other.key == self.key and other.store is self.store

    def __hash__(self) -> int:
        return hash(self.key)

    def __lt__(self, other: S3Path) -> bool:
        return self.key < other.key

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> S3Path:
        return S3Path(self.store, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    def is_file(self) -> bool:
        return self.store.head(self.key) is not None

    def is_dir(self) -> bool:
        dirs, files = self.store.children(self.key)
        return bool(dirs or files)

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def iterdir(self) -> Iterator[S3Path]:
        dirs, files = self.store.children(self.key)
        for k in dirs + files:
            yield S3Path(self.store, k)

    def glob(self, pattern: str) -> Iterator[S3Path]:
        """Objects under this folder whose relative key matches ``pattern`` segment by segment."""
        parts = pattern.split("/")
        base = self.key + "/" if self.key else ""
        for key in sorted(self.store.list(self.key)):
            rel = key[len(base):].split("/")
            if len(rel) == len(parts) and all(fnmatch.fnmatchcase(r, p) for r, p in zip(rel, parts, strict=True)):
                yield S3Path(self.store, key)

    def rglob(self, pattern: str) -> Iterator[S3Path]:
        for key in sorted(self.store.list(self.key)):
            if fnmatch.fnmatchcase(key.rsplit("/", 1)[-1], pattern):
                yield S3Path(self.store, key)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Folders do not exist on S3: nothing to do."""

    def unlink(self, missing_ok: bool = False) -> None:
        if not missing_ok and not self.is_file():
            raise FileNotFoundError(str(self))
        self.store.delete(self.key)

    def write_parquet(self, table: pa.Table) -> None:
        self.store.put_parquet(table, self.key)


__all__ = ["LAKE_URI_ENV", "S3_ENDPOINT_ENV", "LakeStoreError", "S3Lake", "S3Path", "S3Settings", "is_s3_uri"]
