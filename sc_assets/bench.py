"""``sc-assets bench``: the full-market benchmark of issue 11 (``make bench``).

One command, one temporary data root, in this order:

1. **simulate** ``--stocks`` stocks over ``--start .. --end`` (Parquet landing format for the big
   daily feeds by default, ``--format csv`` for the vendor CSV path) in a forked child process,
   so its memory never counts against the chain; the simulator's own wall time is the measure.
2. **I/O floor** (child process): DuckDB reads every landed file once (Parquet natively, UTF-8
   CSV natively with the feed's column types, vendor GBK CSV transcoded in memory) and writes
   each feed once to Parquet (the lake's codec). The chain must stay within 10x of it.
3. **drawdown/correlation baseline** (child process):
   :func:`sc_assets.analytics.drawdowns.benchmark_vs_loop` — vectorised tables vs per-series
   empyrical/pandas loops on ``--dd-series`` series x all sessions (at least one year).
4. **chain**: the last session's daily landing files are held back (moved aside); every asset
   (``AssetSelection.all()``: whatever groups exist; ``--layers`` for a subset via
   ``AssetSelection.groups``) is materialized as ONE in-process run of the ``full_backfill``
   job over all other sessions (single-run backfill policy: each step receives the whole key
   range). Per-stage times are the summed step durations (STEP_START -> STEP_SUCCESS/FAILURE in
   the run's event log) of the steps whose assets belong to each layer group; ``overhead`` is
   the rest of the run's wall time. Partial stage times are written every 30 s.
   **Peak RSS**: a sampling thread (every 100 ms) reads this process' RSS (and the simulator
   child's); the chain's peak is also the kernel's high-water mark (``ru_maxrss``): everything
   heavy before it ran in children, so the bench process' high-water mark is the chain's.
5. **daily incremental update**: the held-back session lands; the ``daily_update`` job runs for
   that partition (every partitioned asset for the day, then every unpartitioned asset
   refreshed), in-process (warm imports: a scheduled run adds the code location's start-up).
6. **orchestration floor** (diagnostic, child process): a no-op single-run partitioned asset over
   the same range: Dagster records one materialization event per partition even in a single
   run; ms per partition x partitions x partitioned steps of the chain = the chain's share
   no asset code can remove.
7. **factor-returns baseline**: a per-day statsmodels WLS loop (restricted design ``X R``, the
   loop a user would write) on ``--wls-days`` evenly spaced sessions, scaled to all sessions,
   against the product's batched :func:`sc_assets.analytics.size.factor_returns` on all
   sessions, on the chain's own inputs (marts panel + size exposures of t-1), with the
   agreement of the two.

Writes ``<out>/results.json`` (default ``bench/results.json``) and a copy under the data root
(``<root>/bench/results.json``), and prints the table (measure, value, target, pass). Targets:
issue 11 ("2 cores, 24 GiB"). The data root is deleted at the end unless ``--keep`` (or
``--data-dir`` names a folder to reuse for inspection).

Profiling: ``--profile`` wraps the chain run in cProfile and writes ``<out>/chain.prof`` plus the
top functions by cumulative and own time to ``<out>/chain_profile.txt`` (profiling slows the run;
do not compare its timings with an unprofiled run).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click

from sc_assets.deploy.profiles import DAGSTER_ENV_DEFAULTS, apply_dagster_env_defaults, local_instance
from sc_assets.settings import DATA_DIR_ENV

GIB = 1024.0**3
LAYERS = ("raw", "staging", "marts", "factors", "drawdowns", "crowding", "stress", "report")


@dataclass(frozen=True)
class Target:
    """A target of issue 11: ``value <op> bound`` passes."""

    measure: str
    op: str  # "<=" or ">="
    bound: float
    unit: str
    label: str

    def passes(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.bound if self.op == "<=" else value >= self.bound

    @property
    def text(self) -> str:
        return f"{self.op} {self.bound:g} {self.unit}".strip()


#: Issue 11 targets (2 cores, 24 GiB). Every one of these is a measure in results.json.
TARGETS = (
    Target("chain_s", "<=", 120, "s", "whole chain, single-run backfill"),
    Target("chain_over_io_floor", "<=", 10, "x", "whole chain / I/O floor"),
    Target("peak_rss_gib", "<=", 4, "GiB", "peak RSS (chain + daily update)"),
    Target("incremental_s", "<=", 10, "s", "daily incremental update"),
    Target("factor_returns_speedup", ">=", 30, "x", "factor returns vs per-day statsmodels loop"),
    Target("drawdown_corr_speedup", ">=", 10, "x", "drawdown/correlation tables vs per-series loops"),
    Target("simulate_s", "<=", 60, "s", "simulator"),
)

#: Every measure results.json carries (targets first, then context). Stage times are added as
#: ``stage_<layer>_s`` for each layer in :data:`LAYERS` (0 when a layer has no asset yet).
MEASURES = tuple(t.measure for t in TARGETS) + (
    "io_floor_s",
    "chain_overhead_s",
    "wls_loop_s_scaled",
    "wls_batched_s",
    "drawdown_loop_s",
    "drawdown_vectorised_s",
    "simulate_peak_rss_gib",
    "incremental_peak_rss_gib",
    "baselines_peak_rss_gib",
    "orchestration_floor_s",
) + tuple(f"stage_{layer}_s" for layer in LAYERS)


# ---- memory sampling ------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Samples the RSS of this process (+ its children while ``children`` is set) every ``interval`` s.

    Listing children scans /proc (costly on a busy machine), so it is only done while a child
    is expected (the simulator); the chain runs in this process."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True, name="rss-sampler")
        import psutil

        self.proc = psutil.Process(os.getpid())
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.children = False
        self._halt = threading.Event()

    def rss(self) -> int:
        import psutil

        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True) if self.children else ():
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.time(), self.rss()))
            except Exception:  # a child vanished between listing and reading
                pass
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def peak(self, t0: float, t1: float) -> int:
        vals = [r for t, r in list(self.samples) if t0 <= t <= t1]
        return max(vals) if vals else 0


def _ru_maxrss_bytes() -> int:
    """Kernel high-water mark of this process' RSS (Linux: KiB; macOS: bytes)."""
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return v if sys.platform == "darwin" else v * 1024


# ---- 1. simulate -----------------------------------------------------------------------------


def _simulate_child(root: str, params, queue) -> None:
    from sc_assets.simulator import simulate

    try:
        res = simulate(root, params, progress=False)
        queue.put({"ok": True, "seconds": res.seconds, "days": res.days, "stocks": res.stocks, "files": res.files,
                   "ru_maxrss": _ru_maxrss_bytes()})
    except BaseException as exc:  # report, never hang the parent
        queue.put({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def simulate_market(root: Path, stocks: int, start: str, end: str, seed: int | None, fmt: str) -> dict:
    """Run the simulator in a forked child (its memory is released when it exits). Returns its result."""
    from sc_assets.simulator import SimulationParams

    params = SimulationParams().replace(n_stocks=stocks, start=start, end=end, output_format=fmt)
    if seed is not None:
        params = params.replace(seed=seed)
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    queue = ctx.Queue()
    t0 = time.perf_counter()
    proc = ctx.Process(target=_simulate_child, args=(str(root), params, queue))
    proc.start()
    out = queue.get()
    proc.join()
    out["wall_s"] = time.perf_counter() - t0
    if not out.get("ok"):
        raise click.ClickException(f"simulation failed: {out.get('error')}")
    return out


def hold_back_day(root: Path, day: str) -> tuple[Path, list[tuple[Path, Path]]]:
    """Move the daily feeds' landing files of ``day`` (YYYY-MM-DD) aside. Returns (folder, moves)."""
    from sc_assets.feeds.schemas import DAILY_FEEDS

    ymd = day.replace("-", "")
    side = root / ".bench_holdback"
    moves = []
    for feed in DAILY_FEEDS:
        for p in sorted((root / "landing" / feed).glob(f"{ymd}.*")):
            dst = side / feed / p.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dst)
            moves.append((p, dst))
    return side, moves


def land_held_back(moves: list[tuple[Path, Path]]) -> None:
    for orig, held in moves:
        os.replace(held, orig)


# ---- 2. the chain and its steps -------------------------------------------------------------


def _layer_of(keys: set[tuple[str, ...]], step_key: str) -> str:
    layers = sorted({k[0] for k in keys if k})
    if layers:
        return layers[0] if len(layers) == 1 else "+".join(layers)
    head = step_key.split("__", 1)[0]
    return head if head in LAYERS else "other"


def _step_assets(run) -> dict[str, set[tuple[str, ...]]]:
    """Step key -> asset keys it materializes in ``run`` (from the definitions and the run's selection)."""
    from sc_assets.definitions import defs

    selected = (run.asset_selection or None) if run is not None else None  # empty: the whole job
    out: dict[str, set[tuple[str, ...]]] = {}
    for ad in defs.resolve_asset_graph().assets_defs:
        if ad.is_executable:
            keys = ad.keys if selected is None else ad.keys & selected
            out.setdefault(ad.node_def.name, set()).update(tuple(k.path) for k in keys)
    return out


def step_times(instance, run_id: str) -> list[dict]:
    """Per step of a run: start/end (epoch s), seconds, status, asset keys and layer.

    Reads only the run's step events (a few per step): the progress thread calls it every 30 s
    while the chain runs, and deserialising all of a full backfill's ~73k events took 12 s of the
    chain's own process by the end (issue 11). The assets of a step come from the definitions."""
    from dagster import DagsterEventType

    kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE,
             DagsterEventType.STEP_SKIPPED}
    assets = _step_assets(instance.get_run_by_id(run_id))
    steps: dict[str, dict] = {}
    for rec in instance.all_logs(run_id, of_type=kinds):
        ev = rec.dagster_event  # a step event: of_type filters on the event type
        if rec.step_key is None:
            continue
        s = steps.setdefault(rec.step_key, {"step": rec.step_key, "start": None, "end": None, "status": None,
                                            "assets": assets.get(rec.step_key, set())})
        if ev.event_type == DagsterEventType.STEP_START:
            s["start"] = rec.timestamp
        elif ev.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            s["end"] = rec.timestamp
            s["status"] = "success" if ev.event_type == DagsterEventType.STEP_SUCCESS else "failure"
        elif ev.event_type == DagsterEventType.STEP_SKIPPED:
            s["status"] = "skipped"
    out = []
    for s in steps.values():
        seconds = (s["end"] - s["start"]) if s["start"] and s["end"] else 0.0
        out.append({"step": s["step"], "layer": _layer_of(s["assets"], s["step"]), "status": s["status"],
                    "start": s["start"], "end": s["end"], "seconds": round(seconds, 3),
                    "assets": sorted("/".join(a) for a in s["assets"])})
    return sorted(out, key=lambda s: s["start"] or 0.0)


def _quiet_run_config() -> dict:
    return {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def selected_keys(layers: tuple[str, ...] | None) -> list | None:
    """Asset keys of the layer groups ``layers`` (None: the job's whole selection)."""
    if not layers or set(LAYERS) <= set(layers):
        return None
    import dagster as dg

    from sc_assets.definitions import defs

    return sorted(dg.AssetSelection.groups(*layers).resolve(defs.resolve_asset_graph()))


def run_job(job_name: str, instance, tags: dict | None = None, partition_key: str | None = None,
            profile_to: Path | None = None, asset_keys: list | None = None, run_id: str | None = None) -> dict:
    """Execute a job of the code location in-process (optionally a subset of its assets).

    Returns wall time, success, per-step times, failed steps and their last error line."""
    from sc_assets.definitions import defs

    job = defs.resolve_job_def(job_name)
    run_id = run_id or str(uuid.uuid4())
    prof = None
    if profile_to is not None:
        import cProfile

        prof = cProfile.Profile()
    t0w, t0 = time.time(), time.perf_counter()
    if prof:
        prof.enable()
    try:
        result = job.execute_in_process(instance=instance, run_id=run_id, tags=tags, partition_key=partition_key,
                                        run_config=_quiet_run_config(), raise_on_error=False,
                                        asset_selection=asset_keys)
    finally:
        if prof:
            prof.disable()
    wall = time.perf_counter() - t0
    t1w = time.time()
    if prof:
        _write_profile(prof, profile_to)
    steps = step_times(instance, run_id)
    failed = sorted({s["step"] for s in steps if s["status"] == "failure"})
    errors = {}
    for ev in result.all_events:
        if ev.is_step_failure and ev.step_key:
            err = getattr(ev.event_specific_data, "error", None)
            errors[ev.step_key] = (err.message.strip().splitlines() or ["?"])[-1][:300] if err else "?"
    return {"run_id": run_id, "success": bool(result.success), "wall_s": wall, "t0": t0w, "t1": t1w,
            "steps": steps, "failed_steps": failed, "errors": errors,
            "materializations": len(result.get_asset_materialization_events())}


class _ProgressWriter(threading.Thread):
    """Every ``every`` seconds, hands the running chain's step times to ``callback`` (partial results)."""

    def __init__(self, instance, run_id: str, callback, every: float = 30.0):
        super().__init__(daemon=True, name="bench-progress")
        self.instance, self.run_id, self.callback, self.every = instance, run_id, callback, every
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every):
            try:
                self.callback(step_times(self.instance, self.run_id))
            except Exception:  # the run may not exist yet; progress is best effort
                pass

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def _child_main(fn, args, kwargs, queue) -> None:
    try:
        queue.put({"ok": True, "value": fn(*args, **kwargs)})
    except BaseException as exc:  # report, never hang the parent
        queue.put({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def in_child(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a forked child process (its memory is released when it exits)."""
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_main, args=(fn, args, kwargs, queue))
    proc.start()
    out = queue.get()
    proc.join()
    if not out["ok"]:
        raise click.ClickException(f"{getattr(fn, '__name__', fn)} failed: {out['error']}")
    return out["value"]


def _partitioned_assets() -> set[str]:
    from sc_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    return {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None}


def orchestration_floor(first: str, last: str) -> dict:
    """Dagster's own per-partition cost: a no-op single-run partitioned asset (trading days, minimal
    metadata) materialized over ``first..last`` vs over one day, on a fresh local-profile instance
    (the chain's storage) in a temporary folder.

    A single-run backfill still records one ASSET_MATERIALIZATION per partition (plus its
    metadata); this is the part of each partitioned step that no asset code can remove.
    """
    import dagster as dg

    from sc_assets.jobs import range_tags
    from sc_assets.partitions import trading_days, trading_days_between

    @dg.asset(partitions_def=trading_days, backfill_policy=dg.BackfillPolicy.single_run())
    def bench_noop(context):  # no annotations: this module uses postponed (string) annotations
        return dg.MaterializeResult(metadata={"rows": 0})

    def timed(a: str, b: str) -> float:
        with tempfile.TemporaryDirectory() as home, local_instance(home) as instance:
            t0 = time.perf_counter()
            dg.materialize([bench_noop], instance=instance, tags=range_tags(a, b), run_config=_quiet_run_config())
            return time.perf_counter() - t0

    n = len(trading_days_between(first, last))
    timed(first, first)  # warm-up
    t1 = timed(first, first)
    tn = timed(first, last)
    per = (tn - t1) / max(n - 1, 1)
    return {"partitions": n, "one_partition_s": round(t1, 3), "all_partitions_s": round(tn, 3),
            "per_partition_ms": round(per * 1e3, 3)}


def _write_profile(prof, path: Path) -> None:
    import io
    import pstats

    path.parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(path))
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf).strip_dirs()
    st.sort_stats("cumulative").print_stats(60)
    st.sort_stats("tottime").print_stats(40)
    path.with_name(path.stem + "_profile.txt").write_text(buf.getvalue())


def stage_table(steps: list[dict], sampler: RssSampler | None) -> dict[str, dict]:
    """Seconds, steps and peak sampled RSS per layer (a step spanning layers counts under its label)."""
    out: dict[str, dict] = {layer: {"seconds": 0.0, "steps": 0, "peak_rss_gib": 0.0} for layer in LAYERS}
    for s in steps:
        st = out.setdefault(s["layer"], {"seconds": 0.0, "steps": 0, "peak_rss_gib": 0.0})
        st["seconds"] += s["seconds"]
        st["steps"] += 1
        if sampler is not None and s["start"] and s["end"]:
            st["peak_rss_gib"] = max(st["peak_rss_gib"], sampler.peak(s["start"], s["end"]) / GIB)
    for st in out.values():
        st["seconds"] = round(st["seconds"], 3)
        st["peak_rss_gib"] = round(st["peak_rss_gib"], 3)
    return out


# ---- 4. I/O floor ---------------------------------------------------------------------------


def _duck_types(feed: str) -> dict[str, str]:
    from sc_assets.feeds.schemas import FEEDS

    return {c.name: ("DOUBLE" if c.dtype == "float" else "VARCHAR") for c in FEEDS[feed].columns}


def _ascii_header(path: Path) -> bool:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        return fh.readline().isascii()


def io_floor(root: Path, work: Path) -> dict:
    """DuckDB reads every landed file once and writes each feed once to Parquet (the lake's codec).

    Parquet and UTF-8 (ASCII-header) CSV files are read by DuckDB directly (CSV with the feed's
    column types from ``feeds/schemas.py``: floats as DOUBLE, the rest as VARCHAR); vendor
    exports (non-ASCII headers, GBK) are transcoded in memory and read through Arrow. No
    validation, no unit conversion: the least any ingestion must do.
    """
    import duckdb
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from sc_assets.resources.parquet_format import COMPRESSION
    from sc_assets.resources.warehouse import _sql_string

    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    con = duckdb.connect(":memory:")
    rows = 0
    nbytes_in = 0
    files = 0
    per_feed = {}
    try:
        for feed_dir in sorted(p for p in (root / "landing").iterdir() if p.is_dir()):
            feed = feed_dir.name
            paths = sorted(p for p in feed_dir.iterdir() if p.is_file() and not p.name.startswith("."))
            if not paths:
                continue
            files += len(paths)
            nbytes_in += sum(p.stat().st_size for p in paths)
            pq_files = [p for p in paths if p.suffix == ".parquet"]
            csv_files = [p for p in paths if p.suffix != ".parquet"]
            native = [p for p in csv_files if _ascii_header(p)]
            vendor = [p for p in csv_files if p not in set(native)]
            n_feed = 0
            parts = []
            if pq_files:
                parts.append(("parquet", "SELECT * FROM read_parquet([" + ",".join(_sql_string(str(p)) for p in pq_files)
                              + "], union_by_name=true)"))
            if native:
                try:
                    types = _duck_types(feed)
                except KeyError:
                    types = {}
                types_sql = "{" + ",".join(f"{_sql_string(k)}: {_sql_string(v)}" for k, v in types.items()) + "}"
                parts.append(("csv", "SELECT * FROM read_csv([" + ",".join(_sql_string(str(p)) for p in native)
                              + f"], header=true, union_by_name=true, types={types_sql})"))
            if vendor:
                tables = []
                for p in vendor:
                    raw = p.read_bytes()
                    if p.name.endswith(".gz"):
                        import gzip

                        raw = gzip.decompress(raw)
                    tables.append(pcsv.read_csv(pa.py_buffer(raw.decode("gbk").encode("utf-8"))))
                vendor_tab = pa.concat_tables(tables, promote_options="permissive")  # noqa: F841 (DuckDB scans it)
                parts.append(("vendor", "SELECT * FROM vendor_tab"))
            for kind, sql in parts:
                target = work / f"{feed}.{kind}.parquet"
                con.execute(f"COPY ({sql}) TO {_sql_string(str(target))} (FORMAT parquet, COMPRESSION {_sql_string(COMPRESSION)})")
                n = con.execute(f"SELECT count(*) FROM read_parquet({_sql_string(str(target))})").fetchone()[0]
                n_feed += int(n)
            rows += n_feed
            per_feed[feed] = {"files": len(paths), "rows": n_feed, "vendor_files": len(vendor)}
    finally:
        con.close()
    seconds = time.perf_counter() - t0
    nbytes_out = sum(p.stat().st_size for p in work.glob("*.parquet"))
    return {"seconds": seconds, "rows": rows, "files": files, "bytes_in": nbytes_in, "bytes_out": nbytes_out,
            "per_feed": per_feed}


# ---- 6a. factor returns baseline --------------------------------------------------------------


def _statsmodels_day(g, industries: list[str]):
    """One day's constrained WLS the way a user would write it: dummies, restriction, sm.WLS."""
    import numpy as np
    import statsmodels.api as sm

    from sc_assets.analytics.regression import restriction_matrix

    g = g[g["exclusion"].isna()]
    ind = g["industry_prev"].to_numpy()
    ks = [k for k in industries if (ind == k).any()]
    cap = g["total_mv_prev"].to_numpy(dtype=float)
    dummies = np.column_stack([(ind == k).astype(float) for k in ks])
    X = np.column_stack([np.ones(len(g)), dummies, g[["size", "nlsize"]].to_numpy(dtype=float)])
    share = np.array([cap[ind == k].sum() for k in ks]) / cap.sum()
    R = restriction_matrix(share, 2)
    fit = sm.WLS(g["ret"].to_numpy(dtype=float), X @ R, weights=np.sqrt(cap)).fit()
    f = R @ fit.params
    se = np.sqrt(np.diag(R @ fit.cov_params() @ R.T))
    names = ["country", *ks, "size", "nlsize"]
    return dict(zip(names, f, strict=True)), dict(zip(names, se, strict=True)), fit.rsquared


def wls_baseline(root: Path, sample_days: int, end: str | None = None) -> dict:
    """Per-day statsmodels WLS on ``sample_days`` evenly spaced sessions (scaled to all) vs the batched solve.

    Both get the chain's own regression inputs: ``marts.stock_daily_panel`` joined to the lake's
    ``factors.size_exposures`` of t-1 (:func:`sc_assets.analytics.size.align_previous_exposures`,
    not timed). Timed: :func:`sc_assets.analytics.size.factor_returns` on all sessions (the
    product's batched solve including its output frames; best of two calls) vs the loop over the
    sample (after one untimed warm-up day).
    """
    import numpy as np
    import pandas as pd

    from sc_assets.analytics import size as sz
    from sc_assets.partitions import previous_trading_day, to_key
    from sc_assets.resources import Warehouse

    wh = Warehouse(data_dir=str(root))
    cols = ["trade_date", "ts_code", "ret", "is_suspended", "is_locked", "days_listed"]
    panel = wh.read("marts", "stock_daily_panel", columns=cols, end=end)
    exp = wh.read("factors", "size_exposures", columns=["trade_date", "ts_code", "industry", "total_mv", "size",
                                                        "nlsize"], end=end)
    days = sorted(pd.to_datetime(panel["trade_date"]).unique())
    prev = {}
    for d in days:
        try:
            prev[to_key(d)] = to_key(previous_trading_day(d))
        except Exception:
            continue
    aligned = sz.align_previous_exposures(panel, exp, prev)
    del panel, exp
    industries = sorted(aligned.loc[aligned["exclusion"].isna(), "industry_prev"].dropna().unique().tolist())

    t_batched = float("inf")
    for _ in range(2):  # best of two: the first call also pays for first-touch allocations of ~10M-row arrays
        t0 = time.perf_counter()
        long, _daily = sz.factor_returns(aligned, industries)
        t_batched = min(t_batched, time.perf_counter() - t0)

    by_day = aligned.groupby("trade_date", sort=True).indices
    usable = [d for d, ix in by_day.items() if aligned["exclusion"].iloc[ix].isna().sum() > len(industries) + 5]
    pick = np.unique(np.linspace(0, len(usable) - 1, num=min(sample_days, len(usable))).round().astype(int))
    sample = [usable[i] for i in pick]
    frames = {d: aligned.iloc[by_day[d]] for d in sample}  # the day's rows, as a user's groupby would give
    if sample:  # warm-up (imports, first-call caches), not timed
        _statsmodels_day(frames[sample[0]], industries)
    t0 = time.perf_counter()
    loop = {d: _statsmodels_day(frames[d], industries) for d in sample}
    t_loop = time.perf_counter() - t0
    t_loop_scaled = t_loop / max(len(sample), 1) * len(days)

    err = 0.0
    lk = long.assign(trade_date=pd.to_datetime(long["trade_date"])).set_index(["trade_date", "factor"])["ret"]
    for d, (f, _se, _r2) in loop.items():
        for name, val in f.items():
            err = max(err, abs(float(lk.get((pd.Timestamp(d), name), np.nan)) - float(val)))
    return {"n_days": len(days), "n_rows": int(len(aligned)), "sample_days": len(sample), "loop_s_sample": t_loop,
            "loop_s_scaled": t_loop_scaled, "batched_s": t_batched,
            "speedup": t_loop_scaled / t_batched if t_batched > 0 else None, "max_abs_diff_factor_ret": err}


# ---- orchestration of the whole bench ---------------------------------------------------------


def _fmt(value, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.1f}x"
    if unit == "GiB":
        return f"{value:.2f} GiB"
    if unit == "s":
        return f"{value:.1f} s"
    return f"{value:g}"


def results_table(results: dict) -> str:
    from tabulate import tabulate

    m = results["measures"]
    rows = []
    for t in TARGETS:
        v = m.get(t.measure)
        ok = t.passes(v)
        rows.append([t.label, _fmt(v, t.unit), t.text, {True: "PASS", False: "MISS", None: "n/a"}[ok]])
    for layer in LAYERS:
        rows.append([f"  stage {layer}", _fmt(m.get(f"stage_{layer}_s"), "s"), "", ""])
    rows.append(["  orchestration overhead", _fmt(m.get("chain_overhead_s"), "s"), "", ""])
    rows.append(["I/O floor (DuckDB landing -> Parquet)", _fmt(m.get("io_floor_s"), "s"), "", ""])
    rows.append(["Dagster per-partition events in the chain (no-op floor)", _fmt(m.get("orchestration_floor_s"), "s"),
                 "", ""])
    rows.append(["per-day statsmodels WLS (scaled)", _fmt(m.get("wls_loop_s_scaled"), "s"), "", ""])
    rows.append(["batched factor_returns", _fmt(m.get("wls_batched_s"), "s"), "", ""])
    rows.append(["per-series drawdown/corr loop", _fmt(m.get("drawdown_loop_s"), "s"), "", ""])
    rows.append(["vectorised drawdown/corr tables", _fmt(m.get("drawdown_vectorised_s"), "s"), "", ""])
    return tabulate(rows, headers=["measure", "value", "target", "pass"], tablefmt="github")


def run_bench(stocks: int, start: str, end: str, root: Path, out_dir: Path, fmt: str = "parquet",
              seed: int | None = None, wls_days: int = 40, dd_series: int = 500, dd_repeats: int = 2,
              profile: bool = False, layers: tuple[str, ...] | None = None, echo=click.echo) -> dict:
    """Run every measure of the benchmark; returns the results dict (also written as JSON).

    ``layers``: restrict the chain and the daily update to these layer groups (default: every
    asset of the jobs); measures of layers not run are 0 / None."""
    import warnings

    import dagster as dg

    from sc_assets.analytics.drawdowns import benchmark_vs_loop
    from sc_assets.demo import landing_range
    from sc_assets.jobs import daily_update, full_backfill, range_tags
    from sc_assets.partitions import previous_trading_day, to_key

    root.mkdir(parents=True, exist_ok=True)
    os.environ[DATA_DIR_ENV] = str(root)  # the Warehouse resource and feed source read it
    apply_dagster_env_defaults()  # as `sc-assets demo` and the Makefile
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
    keys = selected_keys(layers)
    sampler = RssSampler()
    sampler.start()
    load0 = os.getloadavg()
    results: dict = {
        "params": {"stocks": stocks, "start": start, "end": end, "format": fmt, "seed": seed, "wls_days": wls_days,
                   "dd_series": dd_series, "data_root": str(root), "profile": profile,
                   "layers": list(layers) if layers else list(LAYERS), "assets": len(keys) if keys else "all",
                   **{name: os.environ.get(name) for name in DAGSTER_ENV_DEFAULTS}},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_start": load0},
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    m: dict = {}

    def finish(complete: bool) -> None:
        results["machine"]["loadavg_end"] = os.getloadavg()
        results["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results["complete"] = complete
        results["measures"] = {k: m.get(k) for k in MEASURES}
        results["targets"] = [{"measure": t.measure, "label": t.label, "target": t.text, "value": m.get(t.measure),
                               "pass": t.passes(m.get(t.measure))} for t in TARGETS]
        results["all_pass"] = all(t["pass"] for t in results["targets"])
        write_results(results, out_dir, root)

    try:
        # 1. simulate (child process)
        echo(f"[1/7] simulating {stocks} stocks {start} .. {end} ({fmt}) into {root} ...")
        ts = time.time()
        sampler.children = True
        try:
            sim = simulate_market(root, stocks, start, end, seed, fmt)
        finally:
            sampler.children = False
        m["simulate_s"] = round(sim["seconds"], 3)
        m["simulate_peak_rss_gib"] = round(max(sim.get("ru_maxrss", 0), sampler.peak(ts, time.time())) / GIB, 3)
        results["simulate"] = sim
        echo(f"      {sim['stocks']} stocks x {sim['days']} sessions, {sim['files']} files in {sim['seconds']:.1f} s")
        first, last = landing_range(root)
        before_last = to_key(previous_trading_day(last))

        # 2. I/O floor over every landed file (child process: its memory is not the chain's)
        echo("[2/7] I/O floor: DuckDB reads every landed file, writes each feed once to Parquet ...")
        floor = in_child(io_floor, root, root / ".bench_floor")
        shutil.rmtree(root / ".bench_floor", ignore_errors=True)
        m["io_floor_s"] = round(floor["seconds"], 3)
        results["io_floor"] = floor
        echo(f"      {floor['rows']:,} rows from {floor['files']} files in {floor['seconds']:.1f} s")

        # 3. drawdown/correlation baseline on a synthetic panel (child process)
        n_sessions = max(int(sim["days"]), 260)  # >= one year: the 52-week correlation window needs 40 weeks
        echo(f"[3/7] baseline: per-series empyrical/pandas loop vs vectorised tables ({dd_series} x {n_sessions}) ...")
        dd = in_child(benchmark_vs_loop, n_series=dd_series, n_days=n_sessions, repeats=dd_repeats)
        m["drawdown_corr_speedup"] = round(dd["speedup"], 2)
        m["drawdown_loop_s"] = round(dd["loop_s"], 3)
        m["drawdown_vectorised_s"] = round(dd["vectorised_s"], 3)
        results["drawdown_baseline"] = dd
        echo(f"      loop {dd['loop_s']:.2f} s, vectorised {dd['vectorised_s']:.3f} s: {dd['speedup']:.1f}x")
        finish(False)

        # 4. chain (this process), progress written every 30 s
        _side, moves = hold_back_day(root, last)
        results["range"] = {"backfill": [first, before_last], "incremental": last, "held_back_files": len(moves)}
        instance = local_instance(root / ".dagster_home")  # the storage `make demo` / `make dev` use
        echo(f"[4/7] whole chain as one single-run backfill {first} .. {before_last} ...")
        run_id = str(uuid.uuid4())
        progress = _ProgressWriter(instance, run_id, lambda steps: (results.__setitem__(
            "chain_progress", {"steps": steps, "stages": stage_table(steps, sampler)}), finish(False)))
        progress.start()
        try:
            chain = run_job(full_backfill.name, instance,
                            tags={**range_tags(first, before_last), "sc_assets/trigger": "bench"},
                            profile_to=(out_dir / "chain.prof") if profile else None, asset_keys=keys, run_id=run_id)
        finally:
            progress.stop()
        results.pop("chain_progress", None)
        chain_rss_kernel = _ru_maxrss_bytes()
        stages = stage_table(chain["steps"], sampler)
        m["chain_s"] = round(chain["wall_s"], 3)
        m["chain_over_io_floor"] = round(chain["wall_s"] / floor["seconds"], 3) if floor["seconds"] > 0 else None
        m["chain_overhead_s"] = round(chain["wall_s"] - sum(s["seconds"] for s in chain["steps"]), 3)
        for layer in LAYERS:
            m[f"stage_{layer}_s"] = stages[layer]["seconds"]
        chain_peak = max(chain_rss_kernel, sampler.peak(chain["t0"], chain["t1"]))
        results["chain"] = {**{k: chain[k] for k in ("run_id", "success", "wall_s", "failed_steps", "errors",
                                                       "materializations")},
                            "peak_rss_gib": round(chain_peak / GIB, 3), "stages": stages, "steps": chain["steps"]}
        echo(f"      {'SUCCESS' if chain['success'] else 'FAILED'} in {chain['wall_s']:.1f} s, "
             f"{chain['materializations']} materializations, peak RSS {chain_peak / GIB:.2f} GiB")
        for step, err in chain["errors"].items():
            echo(f"      failed: {step}: {err}")
        finish(False)

        # 5. incremental update
        echo(f"[5/7] daily incremental update: {last} lands, daily_update for that partition ...")
        land_held_back(moves)
        inc = run_job(daily_update.name, instance, tags={"sc_assets/trigger": "bench"}, partition_key=last,
                      asset_keys=keys)
        inc_peak = sampler.peak(inc["t0"], inc["t1"])
        m["incremental_s"] = round(inc["wall_s"], 3)
        m["incremental_peak_rss_gib"] = round(inc_peak / GIB, 3)
        m["peak_rss_gib"] = round(max(_ru_maxrss_bytes(), chain_peak, inc_peak) / GIB, 3)
        results["incremental"] = {**{k: inc[k] for k in ("run_id", "success", "wall_s", "failed_steps", "errors",
                                                         "materializations")},
                                  "stages": stage_table(inc["steps"], None), "steps": inc["steps"]}
        echo(f"      {'SUCCESS' if inc['success'] else 'FAILED'} in {inc['wall_s']:.1f} s")
        for step, err in inc["errors"].items():
            echo(f"      failed: {step}: {err}")
        finish(False)

        # 6. orchestration floor: Dagster's own cost of one partitioned no-op asset over the range
        echo("[6/7] orchestration floor: a no-op single-run partitioned asset over the same range ...")
        orch = in_child(orchestration_floor, first, before_last)
        partitioned = _partitioned_assets()
        n_part = sum(1 for st in chain["steps"] if any(a in partitioned for a in st["assets"]))
        orch["partitioned_steps_in_chain"] = n_part
        orch["extrapolated_chain_s"] = round(orch["per_partition_ms"] * orch["partitions"] * n_part / 1e3, 1)
        m["orchestration_floor_s"] = orch["extrapolated_chain_s"]
        results["orchestration_floor"] = orch
        echo(f"      {orch['per_partition_ms']:.1f} ms per partition event; x {orch['partitions']} partitions x "
             f"{n_part} partitioned steps = {orch['extrapolated_chain_s']:.0f} s of the chain")

        # 7. factor-returns baseline on the chain's own inputs
        tb = time.time()
        echo(f"[7/7] baseline: per-day statsmodels WLS on {wls_days} sessions vs batched factor returns ...")
        try:
            wls = wls_baseline(root, wls_days, end=before_last)
            m["factor_returns_speedup"] = round(wls["speedup"], 2) if wls["speedup"] else None
            m["wls_loop_s_scaled"] = round(wls["loop_s_scaled"], 3)
            m["wls_batched_s"] = round(wls["batched_s"], 3)
            results["wls_baseline"] = wls
            echo(f"      loop {wls['loop_s_sample']:.2f} s / {wls['sample_days']} days -> {wls['loop_s_scaled']:.1f} s "
                 f"for {wls['n_days']}; batched {wls['batched_s']:.2f} s; max |diff| {wls['max_abs_diff_factor_ret']:.1e}")
        except (FileNotFoundError, KeyError, ValueError) as exc:
            results["wls_baseline"] = {"error": f"{type(exc).__name__}: {exc}"}
            m.update(factor_returns_speedup=None, wls_loop_s_scaled=None, wls_batched_s=None)
            echo(f"      skipped: {exc}")
        m["baselines_peak_rss_gib"] = round(sampler.peak(tb, time.time()) / GIB, 3)
    finally:
        sampler.stop()
    finish(True)
    return results


def write_results(results: dict, out_dir: Path, root: Path) -> list[Path]:
    text = json.dumps(results, indent=2, default=str)
    paths = []
    for d in (out_dir, root / "bench"):
        d.mkdir(parents=True, exist_ok=True)
        (d / "results.json").write_text(text)
        paths.append(d / "results.json")
    return paths


@click.command("bench")
@click.option("--stocks", type=int, default=5000, show_default=True, help="Simulated stocks (full market ~5,000).")
@click.option("--start", default="2015-01-05", show_default=True, help="First simulated session.")
@click.option("--end", default="2024-12-31", show_default=True, help="Last simulated session (held back for the "
              "daily-update measure).")
@click.option("--seed", type=int, default=None, help="Simulator seed (default: the simulator's).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True,
              help="Landing format of the big daily feeds (vendor GBK days stay CSV either way).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="bench", show_default=True,
              help="Folder for results.json (and chain.prof with --profile).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data root to use (default: a new temporary folder, deleted at the end unless --keep).")
@click.option("--keep", is_flag=True, help="Keep the data root (landing, lake, results) for inspection.")
@click.option("--wls-days", type=int, default=40, show_default=True,
              help="Sessions in the per-day statsmodels loop sample (scaled to all sessions).")
@click.option("--dd-series", type=int, default=500, show_default=True,
              help="Series in the drawdown/correlation loop baseline.")
@click.option("--profile", is_flag=True, help="cProfile the chain run (slower; writes chain.prof + top functions).")
@click.option("--layers", default=",".join(LAYERS), show_default=True,
              help="Comma-separated layer groups to run (a subset is for smoke tests and profiling).")
@click.option("--cluster-days", type=int, default=0, show_default=True,
              help="Also time a backfill of this many sessions on the cluster profile (PostgreSQL, Celery, S3 "
                   "started locally) vs local multiprocess; `make bench` uses 250. 0 skips it.")
def bench(stocks, start, end, seed, fmt, out_dir, data_dir, keep, wls_days, dd_series, profile, layers,
          cluster_days) -> None:
    """Full-market benchmark: simulate, time the whole chain as one backfill, I/O floor, baselines, daily update."""
    out = Path(out_dir).resolve()
    chosen = tuple(x.strip() for x in layers.split(",") if x.strip())
    unknown = sorted(set(chosen) - set(LAYERS))
    if unknown:
        raise click.BadParameter(f"unknown layer(s) {unknown}; layers are {', '.join(LAYERS)}", param_hint="--layers")
    if data_dir:
        root = Path(data_dir).expanduser().resolve()
        if root.exists() and any(root.iterdir()):
            raise click.ClickException(f"--data-dir {root} is not empty: the bench needs a fresh data root")
        keep = True
    else:
        root = Path(tempfile.mkdtemp(prefix="sc_assets_bench_")) / "data"
    try:
        results = run_bench(stocks, start, end, root, out, fmt=fmt, seed=seed, wls_days=wls_days,
                            dd_series=dd_series, profile=profile, layers=chosen)
    finally:
        if not keep:
            shutil.rmtree(root.parent if not data_dir else root, ignore_errors=True)
    if cluster_days:
        from sc_assets.deploy.bench_cluster import bench_cluster

        click.echo(f"[cluster] {cluster_days}-session backfill: cluster (Celery + PostgreSQL + S3) vs local multiprocess ...")
        results["cluster_vs_local"] = bench_cluster(days=cluster_days)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    click.echo("")
    click.echo(results_table(results))
    if cluster_days:
        c = results["cluster_vs_local"]
        click.echo(f"cluster vs local, {c['days']} sessions: local run {c['local']['run_s']} s, cluster run "
                   f"{c['cluster']['run_s']} s, ratio {c['ratio']}, overhead per step {c['overhead_per_step_s']} s")
    click.echo(f"\nresults: {out / 'results.json'}" + (f" (and {root / 'bench' / 'results.json'})" if keep else ""))
    if not results["chain"]["success"]:
        raise click.ClickException(f"the chain run failed: {', '.join(results['chain']['failed_steps'])}")


__all__ = ["MEASURES", "TARGETS", "bench", "io_floor", "run_bench", "step_times", "wls_baseline"]
