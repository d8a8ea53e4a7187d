"""The dbt-like SQL model runner: one Dagster asset per file in ``dbt_like_sql/`` (DESIGN.md §6).

A model is a single DuckDB ``SELECT`` in ``dbt_like_sql/<layer>/<name>.sql``; the asset key is
``[<layer>, <name>]`` and its group is the layer. The file starts with a header block::

    -- description: One line shown in the UI (continuation lines: "--   more text").
    -- materialized: partitioned        (or: table)
    -- unique_key: ts_code, trade_date
    -- lookback: 1                      (partitioned only: extra trading days of upstream rows)

Dependencies come from ``{{ ref('model') }}`` (another model, any layer) and
``{{ source('raw', 'feed') }}`` (a raw feed of ``sc_assets.feeds.schemas``); they are rendered
as the relations ``"<layer>"."<name>"``. ``{{ latest_landed('raw', 'feed') }}`` is the source's
rows of [$start, $end] with one row per ``unique_key`` (the model's header): the latest landed,
by (source_mtime_ns, source_file, source_line) descending. Only keys landed more than once are
ranked; the others pass through (a window over every row cost ~35% more SQL time at full
market, issue 11). A relation ``calendar`` (trade_date DATE, session_idx
INTEGER: SSE sessions from ``sc_assets.partitions.sessions()``) is always available so SQL can
count sessions.

Parameters are BOUND, never formatted into SQL text (a partition key or a value with quotes
and semicolons cannot change the statement). A model may use any of:

    $start, $end          DATE  first / last partition day of this run (partitioned models)
    $partition_days       DATE[] the run's partition days
    $lookback_start       DATE  first upstream day read (``lookback`` sessions before $start)

A partitioned model must return a ``trade_date`` column and only rows of the run's days.
Upstream partitioned tables are read from exactly the files of [$lookback_start, $end]
(``Warehouse.files``), unpartitioned ones whole. A single-run backfill is processed in chunks
of consecutive sessions sized to about ``chunk_rows`` output rows (the first chunk has
``chunk_sessions`` sessions; later ones use the rows per session seen so far), so memory is
bounded by rows, not by the range, and a small table runs in one chunk.

Load-time validation: an unknown ref/source, a dependency cycle, a bad header or a SQL syntax
error raises :class:`SqlModelError` naming the file and line, so ``dagster dev`` /
``Definitions`` loading fails loudly. Materialization metadata: rows, date range, TableSchema,
preview, the parameters used, and ``dagster/column_lineage`` from sqlglot.
"""


import contextlib
import graphlib
import hashlib
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from sc_assets.feeds.schemas import FEEDS
from sc_assets.feeds.validation import STAGING_ORDER
from sc_assets.partitions import (
    CalendarRangeError,
    daily_asset_args,
    first_session,
    month_cut,
    previous_trading_day,
    sessions,
)
from sc_assets.resources.warehouse import PARTITION_COLUMN, Warehouse

SQL_DIR_ENV = "SC_ASSETS_SQL_DIR"
DEFAULT_SQL_DIR = Path(__file__).resolve().parents[1] / "dbt_like_sql"
LAYERS = ("staging", "marts")
HEADER_KEYS = {"description", "materialized", "unique_key", "lookback"}
PARAMETERS = ("start", "end", "partition_days", "lookback_start")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_JINJA = re.compile(r"\{\{(.*?)\}\}", re.S)
_CALL = re.compile(
    r"""^\s*(ref|source|latest_landed)\s*\(\s*(['"])([A-Za-z0-9_]+)\2\s*(?:,\s*(['"])([A-Za-z0-9_]+)\4\s*)?\)\s*$"""
)
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class SqlModelError(ValueError):
    """A SQL model cannot be loaded: the message names the file and line."""


@dataclass(frozen=True)
class Dep:
    layer: str
    name: str
    kind: str  # "ref" | "source"
    line: int

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([self.layer, self.name])


@dataclass(frozen=True)
class SqlModel:
    """One parsed ``.sql`` file."""

    name: str
    layer: str
    path: Path
    text: str  # the file as written
    sql: str  # refs/sources rendered as "<layer>"."<name>"
    description: str
    materialized: str  # "partitioned" | "table"
    unique_key: tuple[str, ...]
    lookback: int
    deps: tuple[Dep, ...]
    params: tuple[str, ...] = field(default=())

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([self.layer, self.name])

    @property
    def partitioned(self) -> bool:
        return self.materialized == "partitioned"

    @property
    def code_version(self) -> str:
        """Content hash of the SQL file: changes exactly when the model's logic changes."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]

    def where(self, line: int | None = None) -> str:
        return f"{self.path}:{line}" if line else str(self.path)


# ---------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------
def _parse_header(path: Path, text: str) -> tuple[dict[str, str], int]:
    header: dict[str, str] = {}
    last = None
    n = 0
    for i, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            if header:
                break
            continue
        if not s.startswith("--"):
            break
        n = i
        body = s[2:].strip()
        m = re.match(r"^([a-z_]+)\s*:\s*(.*)$", body)
        if m and m.group(1) in HEADER_KEYS:
            last = m.group(1)
            header[last] = m.group(2).strip()
        elif m and line.startswith("-- ") and not line.startswith("--   ") and m.group(1) not in HEADER_KEYS:
            raise SqlModelError(
                f"{path}:{i}: unknown header key {m.group(1)!r} (known: {', '.join(sorted(HEADER_KEYS))})"
            )
        elif last == "description" and body:
            header["description"] += " " + body
    return header, n


def _latest_landed(relation: str, key: Sequence[str]) -> str:
    """The ``latest_landed()`` subquery over ``relation`` for the key columns ``key`` (header names
    checked by :func:`parse_model`)."""
    cols = ", ".join(f'"{c}"' for c in key)
    on = " AND ".join(f'f."{c}" IS NOT DISTINCT FROM r."{c}"' for c in key)
    latest = ", ".join(f"{c} DESC" for c in STAGING_ORDER)  # the order raw's redelivery check reports as kept
    return (
        f"(WITH feed AS (SELECT * FROM {relation} WHERE trade_date BETWEEN $start AND $end), "
        f"redelivered AS (SELECT {cols} FROM feed GROUP BY {cols} HAVING count(*) > 1) "
        f"SELECT f.* FROM feed f ANTI JOIN redelivered r ON {on} "
        f"UNION ALL (SELECT f.* FROM feed f SEMI JOIN redelivered r ON {on} "
        f"QUALIFY row_number() OVER (PARTITION BY {cols} "
        f"ORDER BY {latest}) = 1))"
    )


def parse_model(path: Path, layer: str) -> SqlModel:
    """Parse one file (header, refs, sources); references are resolved by :func:`load_models`."""
    name = path.stem
    if not _NAME.match(name) or not _NAME.match(layer):
        raise SqlModelError(f"{path}:1: model and folder names must match [a-z][a-z0-9_]* (got {layer}/{name})")
    text = path.read_text(encoding="utf-8")
    header, _ = _parse_header(path, text)
    materialized = header.get("materialized", "")
    if materialized not in ("partitioned", "table"):
        raise SqlModelError(f"{path}:1: header needs '-- materialized: partitioned' or '-- materialized: table'")
    description = header.get("description", "").strip()
    if not description:
        raise SqlModelError(f"{path}:1: header needs '-- description: ...'")
    unique_key = tuple(c.strip() for c in header.get("unique_key", "").split(",") if c.strip())
    try:
        lookback = int(header.get("lookback", "0"))
    except ValueError as exc:
        raise SqlModelError(f"{path}:1: lookback must be an integer number of trading days") from exc
    if lookback < 0 or (lookback and materialized != "partitioned"):
        raise SqlModelError(f"{path}:1: lookback must be >= 0 and only on partitioned models")

    deps: list[Dep] = []

    def render(m: re.Match) -> str:
        line = text.count("\n", 0, m.start()) + 1
        call = _CALL.match(m.group(1))
        if not call:
            raise SqlModelError(
                f"{path}:{line}: cannot read {{{{{m.group(1)}}}}}: use {{{{ ref('model') }}}}, "
                "{{ source('raw', 'feed') }} or {{ latest_landed('raw', 'feed') }}"
            )
        fn, a, b = call.group(1), call.group(3), call.group(5)
        if fn == "ref":
            if b is not None:
                raise SqlModelError(f"{path}:{line}: ref() takes one model name")
            deps.append(Dep("?", a, "ref", line))
            return f"{{{{ref:{a}}}}}"
        if b is None:
            raise SqlModelError(f"{path}:{line}: {fn}() takes a layer and a table: {fn}('raw', 'feed')")
        if a == "raw" and b not in FEEDS:
            raise SqlModelError(f"{path}:{line}: unknown raw feed {b!r} (known: {', '.join(sorted(FEEDS))})")
        deps.append(Dep(a, b, "source", line))
        if fn == "latest_landed":
            if not unique_key or materialized != "partitioned":
                raise SqlModelError(f"{path}:{line}: latest_landed() needs a partitioned model with a unique_key")
            if bad := [c for c in unique_key if not _NAME.match(c)]:
                raise SqlModelError(f"{path}:{line}: latest_landed() needs unique_key column names "
                                    f"matching [a-z][a-z0-9_]* (got {bad})")
            return _latest_landed(f'"{a}"."{b}"', unique_key)
        return f'"{a}"."{b}"'

    sql = _JINJA.sub(render, text)
    params = tuple(sorted(set(_PARAM.findall(_strip_comments_and_strings(sql)))))
    unknown = [p for p in params if p not in PARAMETERS]
    if unknown:
        line = _line_of(text, "$" + unknown[0])
        raise SqlModelError(f"{path}:{line}: unknown parameter ${unknown[0]} (known: ${', $'.join(PARAMETERS)})")
    if materialized == "table" and params:
        raise SqlModelError(f"{path}:{_line_of(text, '$' + params[0])}: table models take no partition parameters")
    return SqlModel(name, layer, path, text, sql, description, materialized, unique_key, lookback,
                    tuple(deps), params)


def _line_of(text: str, needle: str) -> int:
    i = text.find(needle)
    return text.count("\n", 0, i) + 1 if i >= 0 else 1


def _strip_comments_and_strings(sql: str) -> str:
    """Blank out string literals and -- comments (keeps line structure) to find $parameters.

    One left-to-right pass: whichever starts first wins, so an apostrophe inside a comment does
    not open a "string" that swallows the $parameters up to the next quote."""
    return re.sub(r"'(?:[^']|'')*'|--[^\n]*",
                  lambda m: " " * len(m.group(0)) if m.group(0).startswith("'") else "", sql)


def _check_syntax(model: SqlModel, sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        msg = str(exc)
        m = re.search(r"LINE (\d+):", msg)
        line = int(m.group(1)) if m else 1
        first = msg.splitlines()[0]
        raise SqlModelError(f"{model.where(line)}: SQL syntax error: {first}") from exc
    if len(statements) != 1:
        raise SqlModelError(f"{model.where()}: a model is exactly one SELECT statement (found {len(statements)})")


def load_models(sql_dir: str | os.PathLike | None = None) -> dict[str, SqlModel]:
    """Discover and validate every model under ``sql_dir`` (default: ``$SC_ASSETS_SQL_DIR`` or
    the repository's ``dbt_like_sql/``). Returns models by name in dependency order."""
    root = Path(sql_dir or os.environ.get(SQL_DIR_ENV) or DEFAULT_SQL_DIR)
    if not root.is_dir():
        return {}
    parsed: dict[str, SqlModel] = {}
    for path in sorted(root.glob("*/**/*.sql")):
        layer = path.relative_to(root).parts[0]
        model = parse_model(path, layer)
        if model.name in parsed:
            raise SqlModelError(f"{path}:1: model name {model.name!r} also defined in {parsed[model.name].path}")
        parsed[model.name] = model
    # resolve refs: layer of the referenced model, render the relation
    models: dict[str, SqlModel] = {}
    for model in parsed.values():
        deps = []
        sql = model.sql
        for d in model.deps:
            if d.kind == "ref":
                if d.name not in parsed:
                    raise SqlModelError(
                        f"{model.where(d.line)}: ref('{d.name}') names no model in {root} "
                        f"(known: {', '.join(sorted(parsed))})"
                    )
                target = parsed[d.name]
                d = Dep(target.layer, d.name, "ref", d.line)
                sql = sql.replace(f"{{{{ref:{d.name}}}}}", f'"{target.layer}"."{d.name}"')
            if d.layer == model.layer and d.name == model.name:
                raise SqlModelError(f"{model.where(d.line)}: model refers to itself")
            deps.append(d)
        models[model.name] = SqlModel(
            model.name, model.layer, model.path, model.text, sql, model.description, model.materialized,
            model.unique_key, model.lookback, tuple(deps), model.params,
        )
        _check_syntax(models[model.name], sql)
    graph = {m.name: {d.name for d in m.deps if d.kind == "ref"} for m in models.values()}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = list(exc.args[1])  # each node is a dependency of the next one
        where = models[cycle[-1]].where()
        for upstream, model in zip(cycle, cycle[1:], strict=False):
            ref = next((d for d in models[model].deps if d.kind == "ref" and d.name == upstream), None)
            if ref is not None:
                where = models[model].where(ref.line)
                break
        chain = ", ".join(f"{m} refs {u}" for u, m in zip(cycle, cycle[1:], strict=False))
        raise SqlModelError(f"{where}: dependency cycle: {chain}") from exc
    return {name: models[name] for name in order}


# ---------------------------------------------------------------------------------------
# execution
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def calendar_table() -> pa.Table:
    s = sessions()
    return pa.table({
        "trade_date": pa.array(s.date, pa.date32()),
        "session_idx": pa.array(range(len(s)), pa.int32()),
    })


def _validate_days(days: Sequence[str]) -> list[str]:
    """The partition keys sorted, each checked to be a real ``YYYY-MM-DD`` date (one numpy parse for
    all of them: a ``pd.Timestamp`` per key was ~20 us, 50 ms per 10-year run; issue 11)."""
    days = list(days)  # read once: a generator or set of keys works as before
    for d in days:
        if not isinstance(d, str) or not _DAY.match(d):
            raise ValueError(f"partition key {d!r} is not a YYYY-MM-DD trading day")
    try:
        np.array(days, dtype="datetime64[D]")  # raises on 2024-13-45
    except ValueError:
        for d in days:
            pd.Timestamp(d)  # name the key
        raise
    return sorted(days)


def _upstream_partitioned(dep: Dep, models: dict[str, SqlModel]) -> bool:
    if dep.kind == "ref":
        return models[dep.name].partitioned
    spec = FEEDS.get(dep.name) if dep.layer == "raw" else None
    return bool(spec and spec.partitioned)


def _upstream_files(warehouse: Warehouse, dep: Dep, window: tuple[str, str] | None) -> tuple[list[str], bool]:
    """(files to read, whether to read no rows). With a ``window`` (a partitioned upstream read by
    a partitioned model) the month files of the window (:func:`connect_model` keeps the window's
    rows); with none in the window, one file is read for its schema only."""
    if not warehouse.exists(dep.layer, dep.name):
        raise FileNotFoundError(
            f"{dep.layer}.{dep.name} has no data in the lake ({warehouse.table_dir(dep.layer, dep.name)}): "
            "materialize it first"
        )
    if window is not None:
        files = warehouse.files(dep.layer, dep.name, window[0], window[1])
        if files:
            return files, False
        return warehouse.files(dep.layer, dep.name)[:1], True
    return warehouse.files(dep.layer, dep.name), False


def _one_schema(files: Sequence[str]) -> bool:
    """Whether every file has the same Arrow schema (column names, types, order; metadata aside).

    Such a set is read with ``union_by_name=False``: DuckDB then binds from the first footer
    instead of reading every footer at each of the ~4 binds of a model run (issue 11). Files that
    differ (a column added to a feed or a model) are read by name, so no column is dropped or
    cast. (Each month file's schema metadata carries its own day list, so the footers' serialised
    schemas never match byte for byte: the schemas are compared.)"""
    import pyarrow.parquet as pq

    if len(files) <= 1:
        return True
    first = pq.read_schema(files[0])
    return all(pq.read_schema(f).equals(first) for f in files[1:])


_database_lock = threading.Lock()
_catalogs = itertools.count()
_databases: dict[int, duckdb.DuckDBPyConnection] = {}


def _database() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB database per process: creating one costs ~11 ms, a cursor with an
    attached in-memory catalog ~0.5 ms (issue 11: ~17 models per daily update).

    Keyed by process id: a forked child (multiprocess executor, tests) must not use the database
    it inherited — DuckDB is not fork-safe and its worker threads did not survive the fork (a
    query there hangs) — so it opens its own and never touches the parent's."""
    pid = os.getpid()
    db = _databases.get(pid)
    if db is None:
        db = _databases[pid] = duckdb.connect(":memory:")
    return db


def _reset_lock_in_child() -> None:
    global _database_lock
    _database_lock = threading.Lock()  # a lock held by another thread at fork time stays held


os.register_at_fork(after_in_child=_reset_lock_in_child)


@contextlib.contextmanager
def connect_model(
    model: SqlModel, warehouse: Warehouse, models: dict[str, SqlModel], window: tuple[str, str] | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with the model's upstream relations and ``calendar`` (a context manager).

    The connection is a cursor of the process's database (:func:`_database`) whose default
    catalog is a fresh in-memory one, so the ``"<layer>"."<name>"`` views of concurrent or
    successive models never meet; the catalog is detached on exit."""
    with _database_lock:
        con = _database().cursor()
    catalog = f"model_{next(_catalogs)}"
    con.execute(f"ATTACH ':memory:' AS \"{catalog}\"")
    try:
        con.execute(f'USE "{catalog}"')
        con.register("calendar", calendar_table())
        for i, dep in enumerate({(d.layer, d.name): d for d in model.deps}.values()):
            dep_window = window if window is not None and _upstream_partitioned(dep, models) else None
            files, empty = _upstream_files(warehouse, dep, dep_window)
            rel = con.read_parquet(files, union_by_name=not _one_schema(files), hive_partitioning=False)
            if empty:
                rel = rel.limit(0)
            elif dep_window is not None:  # month files: the window's days
                rel = rel.filter(f"CAST({PARTITION_COLUMN} AS DATE) BETWEEN DATE '{window[0]}' AND DATE '{window[1]}'")
            alias = f"__upstream_{i}"
            con.register(alias, rel)
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{dep.layer}"')  # names validated by _NAME / FEEDS
            con.execute(f'CREATE VIEW "{dep.layer}"."{dep.name}" AS SELECT * FROM "{alias}"')
        yield con
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute("USE memory")
            con.execute(f'DETACH "{catalog}"')
        con.close()


def run_model(
    model: SqlModel,
    warehouse: Warehouse,
    days: Sequence[str] | None = None,
    models: dict[str, SqlModel] | None = None,
    upstream_schemas: dict[tuple[str, str], dict[str, str]] | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """Execute ``model`` for partition ``days`` (partitioned) or whole (table).

    Returns the result as Arrow (DuckDB types kept: DATE stays DATE) and the parameters bound.
    If ``upstream_schemas`` is a dict, it is filled with each upstream relation's columns and
    types ((layer, name) -> {column: type}), for column lineage.
    """
    models = models if models is not None else {model.name: model}
    params: dict[str, Any] = {}
    window = None
    if model.partitioned:
        if not days:
            raise ValueError(f"{model.key.to_user_string()} is partitioned: give partition days")
        days = _validate_days(days)
        try:
            lookback_start = (
                previous_trading_day(days[0], model.lookback).strftime("%Y-%m-%d") if model.lookback else days[0]
            )
        except CalendarRangeError:  # the first sessions of the calendar have less history
            lookback_start = first_session().strftime("%Y-%m-%d")
        window = (lookback_start, days[-1])
        values = {
            "start": pd.Timestamp(days[0]).date(),
            "end": pd.Timestamp(days[-1]).date(),
            "partition_days": np.array(days, dtype="datetime64[D]").tolist(),  # datetime.date each
            "lookback_start": pd.Timestamp(lookback_start).date(),
        }
        params = {p: values[p] for p in model.params}
    try:
        with connect_model(model, warehouse, models, window) as con:
            table = con.sql(model.sql, params=params).to_arrow_table()
            if upstream_schemas is not None:
                for d in {(d.layer, d.name): d for d in model.deps}.values():
                    rows = con.execute(f'DESCRIBE "{d.layer}"."{d.name}"').fetchall()
                    upstream_schemas[(d.layer, d.name)] = {r[0]: str(r[1]) for r in rows}
    except duckdb.Error as exc:
        raise RuntimeError(f"{model.path}: {exc}") from exc
    used = {k: (str(v) if not isinstance(v, list) else f"{len(v)} days") for k, v in params.items()}
    return table, used


# ---------------------------------------------------------------------------------------
# column lineage (sqlglot)
# ---------------------------------------------------------------------------------------
def column_lineage(
    model: SqlModel, upstream_schemas: dict[tuple[str, str], dict[str, str]], columns: Sequence[str]
) -> dict[str, list[tuple[tuple[str, str], str]]]:
    """Output column -> [((layer, table), column), ...] from the parsed SQL (best effort).

    Columns derived only from literals or the calendar have no upstream dependency.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.lineage import lineage

    schema: dict[str, dict[str, dict[str, str]]] = {}
    for (layer, name), cols in upstream_schemas.items():
        schema.setdefault(layer, {})[name] = cols
    schema.setdefault("main", {})["calendar"] = {"trade_date": "DATE", "session_idx": "INT"}
    expr = sqlglot.parse_one(model.sql, dialect="duckdb")

    def qualify_calendar(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and node.name == "calendar" and not node.args.get("db"):
            node.set("db", exp.to_identifier("main"))
        return node

    expr = expr.transform(qualify_calendar)
    nodes = lineage(None, expr, schema=schema, dialect="duckdb")
    out: dict[str, list[tuple[tuple[str, str], str]]] = {}
    for col in columns:
        node = nodes.get(col) if isinstance(nodes, dict) else None
        if node is None:
            continue
        found = set()
        for n in node.walk():
            if n.downstream or not isinstance(n.source, exp.Table):
                continue
            db, tbl = n.source.args.get("db"), n.source.name
            db = db.name if db is not None else ""
            if (db, tbl) in upstream_schemas:
                found.add(((db, tbl), n.name.split(".")[-1]))
        out[col] = sorted(found)
    return out


@lru_cache(maxsize=64)
def _cached_lineage(model: SqlModel, schema_items: tuple, columns: tuple) -> dict:
    schemas = {k: dict(v) for k, v in schema_items}
    return column_lineage(model, schemas, columns)


def lineage_metadata(
    model: SqlModel,
    upstream_schemas: dict[tuple[str, str], dict[str, str]],
    columns: Sequence[str],
    cache_dir: Path | None = None,
) -> dg.TableColumnLineage:
    """Dagster column lineage of ``model``. Parsing costs up to ~1 s per model (sqlglot), so the
    result is cached in memory and, if ``cache_dir`` is given, on disk keyed by a hash of the
    SQL, the upstream schemas and the output columns (a step process starts cold)."""
    items = tuple(sorted((k, tuple(v.items())) for k, v in upstream_schemas.items()))
    mapping = None
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(json.dumps([model.sql, items, list(columns)], default=str).encode()).hexdigest()
        path = Path(cache_dir) / f"{model.layer}.{model.name}.{digest[:24]}.json"
        with contextlib.suppress(OSError, ValueError):
            mapping = {c: [((d[0][0], d[0][1]), d[1]) for d in deps] for c, deps in json.loads(path.read_text()).items()}
    if mapping is None:
        mapping = _cached_lineage(model, items, tuple(columns))
        if path is not None:
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                tmp.write_text(json.dumps(mapping))
                os.replace(tmp, path)
    return dg.TableColumnLineage(
        deps_by_column={
            col: [dg.TableColumnDep(asset_key=dg.AssetKey(list(src)), column_name=c) for src, c in deps]
            for col, deps in mapping.items()
            if deps
        }
    )


# ---------------------------------------------------------------------------------------
# Dagster assets
# ---------------------------------------------------------------------------------------
class SqlModelConfig(dg.Config):
    """Run options for SQL model assets."""

    chunk_sessions: int = 250
    """Sessions in the first chunk of a backfill (its rows per session size the next chunks)."""
    chunk_rows: int = 500_000
    """Target output rows per chunk: bounds memory (SQL result, checks) on any range (issue 11).
    Two chunks are in memory at most (one being written while the next is queried); checks read
    the Arrow result without a pandas copy. Each chunk adds ~0.1 CPU-s fixed (binding, SQL setup)."""


def contiguous_chunks(days: Sequence[str], size: int) -> list[list[str]]:
    """Split partition keys into runs of consecutive sessions of at most ``size`` days, so each
    SQL run's [$start, $end] covers exactly its days (a run may get non-adjacent keys)."""
    idx = sessions().get_indexer(pd.DatetimeIndex(sorted(days)))
    if (idx < 0).any():
        bad = [d for d, i in zip(sorted(days), idx, strict=True) if i < 0]
        raise ValueError(f"not SSE trading days: {bad[:5]}")
    out: list[list[str]] = []
    prev = -2
    for d, i in zip(sorted(days), idx, strict=True):
        if out and i == prev + 1 and len(out[-1]) < max(1, size):
            out[-1].append(d)
        else:
            out.append([d])
        prev = i
    return out


class UniqueKeyCheck:
    """The ``unique_key`` check over the chunks of a run, on Arrow (no pandas copy).

    Chunks of a partitioned model are disjoint in ``trade_date``, so a key containing
    ``trade_date`` is checked chunk by chunk; any other key (or ``across_chunks=True``) keeps
    only the key columns of every chunk and is checked across all of them at the end.
    ``duplicate_rows`` = rows - distinct keys (as ``DataFrame.duplicated().sum()``), counted
    on dictionary codes (:func:`sc_assets.checks.gx_suites.distinct_rows`; issue 11).
    """

    def __init__(self, key: Sequence[str], across_chunks: bool):
        self.key = list(key)
        self.across = across_chunks
        self.kept: list[pa.Table] = []
        self.rows = self.dupes = self.nulls = 0
        self.failing: list[str] = []

    def add(self, table: pa.Table, span: str) -> None:
        import pyarrow.compute as pc

        if not self.key or not table.num_rows:
            return
        self.rows += table.num_rows
        missing = [k for k in self.key if k not in table.column_names]
        if missing:
            self.dupes += table.num_rows
            self.failing.append(f"{span}: no column(s) {', '.join(missing)}")
            return
        keys = table.select(self.key)
        nulls = keys.column(0).is_null()
        for c in keys.columns[1:]:
            nulls = pc.or_(nulls, c.is_null())
        n_null = int(pc.sum(nulls).as_py() or 0)
        self.nulls += n_null
        if self.across:
            self.kept.append(keys)
            dupes = 0
        else:
            dupes = keys.num_rows - self._distinct(keys)
            self.dupes += dupes
        if (n_null or dupes) and len(self.failing) < 5:
            self.failing.append(span)

    def _distinct(self, keys: pa.Table) -> int:
        from sc_assets.checks.gx_suites import distinct_rows

        n = distinct_rows(keys, self.key)  # None: a key type it does not encode (e.g. a list)
        return n if n is not None else keys.group_by(self.key).aggregate([]).num_rows

    def result(self, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
        if self.kept:
            keys = pa.concat_tables(self.kept)
            self.kept.clear()
            dupes = keys.num_rows - self._distinct(keys)
            self.dupes += dupes
        return dg.AssetCheckResult(
            asset_key=asset_key, check_name="unique_key_is_unique", passed=self.dupes == 0 and self.nulls == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"duplicate_rows": self.dupes, "rows_with_null_key": self.nulls, "rows": self.rows,
                      "checked_across_chunks": self.across,
                      "failing_chunks": dg.MetadataValue.json(self.failing)},
        )


_COLUMN_COMMENT = re.compile(r"(?:\bAS\s+([a-z_][a-z0-9_]*)|^\s*([a-z_][a-z0-9_]*))\s*,?\s*--\s*(.+?)\s*$", re.I)


def column_descriptions(model: SqlModel) -> dict[str, str]:
    """Column docs for the TableSchema: the raw feed's registry text for staging columns of the
    same name, overridden by an inline comment in the SQL (``... AS vol,  -- lots -> shares``)."""
    out: dict[str, str] = {}
    for d in model.deps:
        spec = FEEDS.get(d.name) if d.kind == "source" and d.layer == "raw" else None
        if spec:
            for c in spec.columns:
                out[c.name] = c.description
    for line in model.text.splitlines():
        m = _COLUMN_COMMENT.search(line)
        if m:
            out[m.group(1) or m.group(2)] = m.group(3)
    return out


def build_sql_asset(model: SqlModel, models: dict[str, SqlModel]) -> dg.AssetsDefinition:
    """One Dagster asset for ``model`` with its GX suite (if any) and unique-key checks."""
    from sc_assets.checks import gx_check_spec
    from sc_assets.checks.gx_suites import SUITES

    key = model.key
    suite = f"{model.layer}.{model.name}" if f"{model.layer}.{model.name}" in SUITES else None
    check_specs = []
    if suite:
        check_specs.append(gx_check_spec(key))
    if model.unique_key:
        check_specs.append(dg.AssetCheckSpec(
            "unique_key_is_unique", asset=key, blocking=True,
            description=f"({', '.join(model.unique_key)}) is unique and not null in the rows just written",
        ))

    @dg.asset(
        key=key,
        group_name=model.layer,
        description=model.description,
        deps=[d.key for d in model.deps],
        kinds={"duckdb", "sql"},
        code_version=model.code_version,
        **(daily_asset_args() if model.partitioned else {}),
        check_specs=check_specs or None,
        metadata={
            "sql_file": str(model.path.relative_to(model.path.parents[2])) if len(model.path.parents) > 2 else str(model.path),
            "materialized": model.materialized,
            "unique_key": ", ".join(model.unique_key),
            "lookback_sessions": model.lookback,
            "sql": dg.MetadataValue.md(f"```sql\n{model.text}\n```"),
            "dagster/code_references": dg.CodeReferencesMetadataValue(
                code_references=[dg.LocalFileCodeReference(file_path=str(model.path), line_number=1)]
            ),
        },
    )
    def _asset(context: dg.AssetExecutionContext, config: SqlModelConfig, warehouse: Warehouse):
        import pyarrow.compute as pc

        from sc_assets.assets._metadata import PREVIEW_ROWS, range_metadata, table_metadata
        from sc_assets.checks import GxChunkedCheck

        days = list(context.partition_keys) if model.partitioned else None
        pending = contiguous_chunks(days, len(days)) if days else [None]  # runs of consecutive sessions
        size = max(1, config.chunk_sessions)
        n_chunks, n_days = 0, 0
        gx = GxChunkedCheck(key, suite) if suite else None
        uniq = UniqueKeyCheck(model.unique_key, across_chunks=not (model.partitioned and "trade_date" in model.unique_key))
        params: dict[str, Any] = {}
        schemas: dict[tuple[str, str], dict[str, str]] = {}
        rows, lo, hi = 0, None, None
        seconds = {"sql": 0.0, "write": 0.0, "gx": 0.0, "checks": 0.0}
        schema, preview = None, None
        # One chunk at a time (issue 11): SQL -> Arrow -> lake, checks on the chunk, then released;
        # only running totals, the key columns of a key without trade_date, and a preview survive.
        # A chunk's write (Parquet encode + fsync waits) runs on a writer thread while the main
        # thread checks it and runs the next chunk's SQL; at most one write is pending (two chunks
        # in memory). A failed write raises here; every partition file is written atomically.
        def write(table: pa.Table, chunk: list[str] | None) -> None:
            t = time.perf_counter()
            if model.partitioned:
                warehouse.write_partitions(model.layer, model.name, table, days=chunk)
            else:
                warehouse.write_table(model.layer, model.name, table)
            seconds["write"] += time.perf_counter() - t

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{model.name}-write") as writer:
            writing = None
            while pending:
                chunk = pending.pop(0)
                if chunk is not None and len(chunk) > size:
                    n = month_cut(chunk, size)  # end at a month's end: the lake's file unit
                    chunk, rest = chunk[:n], chunk[n:]
                    pending.insert(0, rest)
                n_chunks += 1
                t = time.perf_counter()
                table, params = run_model(model, warehouse, chunk, models, upstream_schemas=None if schemas else schemas)
                seconds["sql"] += time.perf_counter() - t
                if writing is not None:
                    writing.result()
                writing = writer.submit(write, table, chunk)
                rows += table.num_rows
                if chunk:  # size the next chunk to ~chunk_rows rows
                    n_days += len(chunk)
                    size = max(1, int(config.chunk_rows * n_days / rows)) if rows else len(days)
                span = f"{chunk[0]} .. {chunk[-1]}" if chunk else "table"
                t = time.perf_counter()
                uniq.add(table, span)
                last_rows = table
                if "trade_date" in table.column_names and table.num_rows:
                    mm = pc.min_max(table.column("trade_date"))
                    lo = mm["min"].as_py() if lo is None else min(lo, mm["min"].as_py())
                    hi = mm["max"].as_py() if hi is None else max(hi, mm["max"].as_py())
                    last_rows = table.filter(pc.equal(table.column("trade_date"), mm["max"]))
                schema, preview = table.schema, last_rows.slice(0, PREVIEW_ROWS).to_pandas()
                seconds["checks"] += time.perf_counter() - t
                t = time.perf_counter()
                if gx is not None:  # screened on Arrow; only a suspect expectation converts its columns for GX
                    gx.add(table, days=chunk)
                del table, last_rows
                seconds["gx"] += time.perf_counter() - t
            if writing is not None:
                writing.result()
        t = time.perf_counter()
        warehouse.refresh_catalog([(model.layer, model.name)])
        seconds["catalog"] = time.perf_counter() - t

        t = time.perf_counter()
        check_results = [gx.result()] if gx is not None else []
        if model.unique_key:
            check_results.append(uniq.result(key))
        seconds["checks"] += time.perf_counter() - t
        if days:
            params = dict(params, start=days[0], end=days[-1], partition_days=f"{len(days)} days")
        meta = table_metadata(
            preview, descriptions=column_descriptions(model), rows=rows, schema=schema,
            dates=(lo, hi) if lo is not None else None,
            parameters={**params, "chunk_sessions": config.chunk_sessions, "chunk_rows": config.chunk_rows,
                        "lookback_sessions": model.lookback},
        )
        meta["chunks"] = n_chunks
        meta["sql_seconds"] = round(seconds["sql"], 3)
        meta["write_seconds"] = round(seconds["write"], 3)
        meta["gx_seconds"] = round(seconds["gx"], 3)
        try:
            meta["dagster/column_lineage"] = lineage_metadata(
                model, schemas, list(schema.names), cache_dir=warehouse.root / ".cache" / "lineage")
        except Exception as exc:  # lineage is documentation: never fail the data on it
            context.log.warning(f"column lineage for {model.name} not computed: {exc}")
        context.log.info(
            f"{key.to_user_string()}: {rows} rows for {len(days) if days else 'all'} day(s) in {n_chunks} "
            f"chunk(s); SQL {seconds['sql']:.2f}s, write {seconds['write']:.2f}s, GX {seconds['gx']:.2f}s, "
            f"key check {seconds['checks']:.2f}s, catalog {seconds['catalog']:.2f}s"
        )
        # a range run: schema, preview and lineage on the last partition's event only
        return dg.MaterializeResult(metadata=range_metadata(context, meta), check_results=check_results)

    return _asset


def build_sql_assets(sql_dir: str | os.PathLike | None = None) -> list[dg.AssetsDefinition]:
    """Every model under ``sql_dir`` as a Dagster asset (in dependency order)."""
    models = load_models(sql_dir)
    return [build_sql_asset(m, models) for m in models.values()]


__all__ = [
    "SqlModel",
    "SqlModelConfig",
    "SqlModelError",
    "build_sql_asset",
    "build_sql_assets",
    "column_lineage",
    "load_models",
    "parse_model",
    "run_model",
]
