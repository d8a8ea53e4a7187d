"""Benchmark: a 250-trading-day backfill on ``cluster`` vs ``local`` multiprocess (issue 14).

:func:`bench_cluster` simulates a small market over ``days`` sessions, then runs the same
``full_backfill`` selection twice, each as its own process (``python -m
sc_assets.deploy.cluster backfill``) exactly as a user would:

* ``local``: ``SC_ASSETS_PROFILE=local``, a fresh SQLite ``DAGSTER_HOME``
  (``dagster.local.yaml``), Dagster's multiprocess executor, the lake on disk;
* ``cluster``: a local cluster started for the purpose (PostgreSQL, Redis, moto S3, Celery
  workers; :class:`~sc_assets.deploy.cluster.Cluster`) unless ``cluster_dir`` names one that
  is already up.

It returns wall times (process and run), the ratio cluster/local, and the overhead per step
``(cluster run time - local run time) / steps``, plus the mean step duration on each side
(from the instance's step stats). ``sc-assets bench`` can call it; ``make bench-cluster``
prints its JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sc_assets.deploy.cluster import PROJECT_DIR, RUN_LAYERS_DEFAULT, Cluster


def _sessions(start: str, days: int) -> tuple[str, str]:
    from sc_assets.partitions import sessions

    s = sessions()
    i = s.searchsorted(start)
    return s[i].strftime("%Y-%m-%d"), s[i + days - 1].strftime("%Y-%m-%d")


def _run(env: dict[str, str], start: str, end: str, layers: list[str], timeout: float) -> tuple[str, float]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "sc_assets.deploy.cluster", "backfill", "--start", start, "--end", end,
         "--select", ",".join(layers)],
        env=env, cwd=str(PROJECT_DIR), capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"backfill failed ({env.get('SC_ASSETS_PROFILE')}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    m = re.search(r"run ([0-9a-f-]{36}): SUCCESS", out.stdout)
    if not m:
        raise RuntimeError(f"no run id in the backfill output: {out.stdout[-1000:]}")
    return m.group(1), wall


def _stats(env: dict[str, str], run_id: str) -> dict:
    import dagster as dg

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        rs = instance.get_run_stats(run_id)
        steps = instance.get_run_step_stats(run_id)
        durations = [s.end_time - s.start_time for s in steps if s.end_time and s.start_time]
        out = {"run_s": round(rs.end_time - rs.start_time, 2), "steps": len(steps),
               "mean_step_s": round(sum(durations) / max(len(durations), 1), 3)}
        instance.dispose()
        return out
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bench_cluster(days: int = 250, stocks: int = 80, start: str = "2023-01-03",
                  layers: list[str] | None = None, workers: int = 2, cluster_dir: str | None = None,
                  timeout: float = 3600) -> dict:
    """Time a ``days``-session backfill on the cluster profile vs local multiprocess.

    Returns ``{"days", "stocks", "layers", "local": {...}, "cluster": {...}, "ratio",
    "overhead_per_step_s"}`` where ``ratio`` = cluster run time / local run time.
    """
    from sc_assets.simulator import SimulationParams, simulate

    layers = list(layers or RUN_LAYERS_DEFAULT)
    first, last = _sessions(start, days)
    work = Path(tempfile.mkdtemp(prefix="sc_assets_bench_cluster_"))
    os.chmod(work, 0o755)
    own_cluster = cluster_dir is None
    cluster = Cluster.load(Path(cluster_dir)) if cluster_dir else Cluster(work / "cluster")
    try:
        data_local, data_cluster = work / "local", work / "cluster_data"
        simulate(data_local, SimulationParams(n_stocks=stocks, start=first, end=last))
        shutil.copytree(data_local / "landing", data_cluster / "landing")
        # local multiprocess
        home = work / "local_home"
        home.mkdir()
        shutil.copyfile(Path(__file__).with_name("dagster.local.yaml"), home / "dagster.yaml")
        env_local = {k: v for k, v in os.environ.items() if not k.startswith(("SC_ASSETS_", "AWS_"))}
        env_local.update(SC_ASSETS_PROFILE="local", DAGSTER_HOME=str(home), SC_ASSETS_DATA_DIR=str(data_local))
        run_local, wall_local = _run(env_local, first, last, layers, timeout)
        # cluster
        if own_cluster:
            cluster.dir.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            cluster.up(workers=workers, data_dir=data_cluster)
            up_s = time.perf_counter() - t0
        else:
            up_s = 0.0
        env_cluster = {**cluster.process_env(), "SC_ASSETS_DATA_DIR": str(data_cluster)}
        run_cluster, wall_cluster = _run(env_cluster, first, last, layers, timeout)
        local = {**_stats(env_local, run_local), "process_s": round(wall_local, 2)}
        remote = {**_stats(env_cluster, run_cluster), "process_s": round(wall_cluster, 2),
                  "cluster_up_s": round(up_s, 2), "workers": workers, "versions": cluster.versions}
        steps = max(local["steps"], 1)
        return {
            "days": days, "first": first, "last": last, "stocks": stocks, "layers": layers,
            "local": local, "cluster": remote,
            "ratio": round(remote["run_s"] / local["run_s"], 2) if local["run_s"] else None,
            "overhead_per_step_s": round((remote["run_s"] - local["run_s"]) / steps, 3),
            "step_overhead_mean_s": round(remote["mean_step_s"] - local["mean_step_s"], 3),
        }
    finally:
        if own_cluster:
            cluster.down()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=250)
    ap.add_argument("--stocks", type=int, default=80)
    ap.add_argument("--layers", default=",".join(RUN_LAYERS_DEFAULT))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cluster-dir", default=None, help="use a cluster that is already up")
    a = ap.parse_args()
    res = bench_cluster(days=a.days, stocks=a.stocks, layers=a.layers.split(","), workers=a.workers,
                        cluster_dir=a.cluster_dir)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
