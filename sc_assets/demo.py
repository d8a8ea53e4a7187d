"""``sc-assets demo``: simulate the default market, materialize the whole chain, print the report.

1. Simulate the synthetic market (``sc_assets.simulator``, the ``simulate`` command with its
   defaults: 1,200 stocks, 2022-01-04 .. 2024-03-29) into ``<data_root>/landing`` — the same
   vendor files (CSV, GBK Chinese-header exports) a real feed drops.
2. Materialize EVERY asset (raw -> staging -> marts -> factors/drawdowns/crowding/stress ->
   report) in-process as ONE run of the ``full_backfill`` job over all simulated trading days
   (single-run backfill: each step gets the whole key range at once), with a progress bar.
3. Print where the report is and how to open the UI.

The run is recorded in the Dagster instance of ``$DAGSTER_HOME`` when it is set (``make demo``
sets it to ``./.dagster_home``), so ``make dev`` then shows the materializations, checks and
lineage; without ``DAGSTER_HOME`` an ephemeral instance is used.

Idempotent: the simulator is deterministic for a seed (byte-identical files) and every asset
replaces its partitions, so a second ``demo`` rebuilds the same lake and report.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import click

from sc_assets.deploy.profiles import apply_dagster_env_defaults
from sc_assets.settings import DATA_DIR_ENV, data_root

REPORT_NAME = "crash_report.html"


def _simulate(root: Path, stocks: int | None, start: str | None, end: str | None, seed: int | None) -> None:
    """Run the simulator's own ``simulate`` command (its options are its contract)."""
    from sc_assets.simulator.cli import simulate

    args = ["--out", str(root)]
    for flag, value in (("--stocks", stocks), ("--start", start), ("--end", end), ("--seed", seed)):
        if value is not None:
            args += [flag, str(value)]
    simulate.main(args=args, standalone_mode=False)


def landing_range(root: Path, feed: str = "stock_daily") -> tuple[str, str]:
    """First and last trading day with a landing file of ``feed`` (file names YYYYMMDD.<ext>)."""
    from sc_assets.partitions import sessions
    from sc_assets.sensors import FILE_RE

    days = sorted(
        m.group("day") for p in (root / "landing" / feed).glob("*") if (m := FILE_RE.match(p.name))
    )
    if not days:
        raise click.ClickException(f"no landing files in {root / 'landing' / feed}: nothing to materialize")
    s = sessions()
    first = s[s.searchsorted(f"{days[0][:4]}-{days[0][4:6]}-{days[0][6:]}")]
    last = s[s.searchsorted(f"{days[-1][:4]}-{days[-1][4:6]}-{days[-1][6:]}", side="right") - 1]
    return first.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")


def get_instance():
    """The DAGSTER_HOME instance when set (created if missing), else an ephemeral one."""
    from dagster import DagsterInstance

    home = os.environ.get("DAGSTER_HOME")
    if home:
        Path(home).mkdir(parents=True, exist_ok=True)
        return DagsterInstance.get()
    return DagsterInstance.ephemeral()


class _Progress(threading.Thread):
    """Polls the run's event log and advances a tqdm bar per finished step."""

    def __init__(self, instance, run_id: str, total: int):
        super().__init__(daemon=True)
        self.instance, self.run_id, self.total = instance, run_id, total
        self.stop = threading.Event()
        self.failed: list[str] = []

    def run(self) -> None:
        from dagster import DagsterEventType
        from tqdm import tqdm

        done: set[str] = set()
        kinds = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_START}
        with tqdm(total=self.total, unit="step", desc="materializing", dynamic_ncols=True) as bar:
            bar.set_postfix_str("planning (one materialization event per asset partition)", refresh=True)
            while True:
                finished = self.stop.is_set()
                try:
                    records = self.instance.all_logs(self.run_id, of_type=kinds)
                except Exception:  # run not created yet
                    records = []
                for rec in records:
                    if rec.dagster_event.event_type == DagsterEventType.STEP_START:
                        if rec.step_key not in done:
                            bar.set_postfix_str(f"running {rec.step_key.replace('__', '.')}", refresh=True)
                        continue
                    step = rec.step_key or "?"
                    if step in done:
                        continue
                    done.add(step)
                    if rec.dagster_event.event_type == DagsterEventType.STEP_FAILURE:
                        self.failed.append(step)
                    bar.set_postfix_str(step.replace("__", "."), refresh=False)
                    bar.update(1)
                if finished:
                    break
                time.sleep(1.0)


def materialize_chain(start: str, end: str, instance=None, show_progress: bool = True, log_level: str = "WARNING"):
    """One in-process run of ``full_backfill`` over ``start..end``. Returns the execution result."""
    from sc_assets.definitions import defs
    from sc_assets.jobs import full_backfill, range_tags

    instance = instance or get_instance()
    job = defs.resolve_job_def(full_backfill.name)
    run_id = str(uuid.uuid4())
    progress = None
    if show_progress:
        progress = _Progress(instance, run_id, total=len(job.graph.node_dict))
        progress.start()
    try:
        result = job.execute_in_process(
            instance=instance, run_id=run_id, tags={**range_tags(start, end), "sc_assets/trigger": "demo"},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=False,
        )
    finally:
        if progress is not None:
            progress.stop.set()
            progress.join(timeout=10)
    return result


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help=f"Data root (default ${DATA_DIR_ENV} or ./data).")
@click.option("--stocks", type=int, default=None, help="Simulated stocks (simulator default 1,200).")
@click.option("--start", default=None, help="First simulated day YYYY-MM-DD (simulator default).")
@click.option("--end", default=None, help="Last simulated day YYYY-MM-DD (simulator default).")
@click.option("--seed", type=int, default=None, help="Simulator seed.")
@click.option("--skip-simulate", is_flag=True, help="Use the landing files already there.")
def demo(data_dir, stocks, start, end, seed, skip_simulate) -> None:
    """Simulate the default market, materialize the whole chain in one run, print the report path."""
    import warnings

    import dagster as dg

    # beta/preview notices about APIs we chose on purpose (backfill_policy, code references)
    # would bury the progress display; `dagster dev` still shows them in its log
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
    apply_dagster_env_defaults()  # one planned event per asset, batched partition events
    root = data_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    os.environ[DATA_DIR_ENV] = str(root)  # the Warehouse resource and the sensor read it
    t0 = time.perf_counter()
    if not skip_simulate:
        click.echo(f"[1/3] simulating the synthetic A-share market into {root / 'landing'} ...")
        _simulate(root, stocks, start, end, seed)
    t_sim = time.perf_counter() - t0
    first, last = landing_range(root)
    instance = get_instance()
    where = os.environ.get("DAGSTER_HOME") or "an ephemeral instance (set DAGSTER_HOME to keep it)"
    click.echo(f"[2/3] materializing the whole chain for {first} .. {last} in one run (recorded in {where}) ...")
    t1 = time.perf_counter()
    result = materialize_chain(first, last, instance=instance)
    t_run = time.perf_counter() - t1
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    n_mat = len(result.get_asset_materialization_events())
    click.echo(f"      run {result.run_id}: {'SUCCESS' if result.success else 'FAILED'}; "
               f"{n_mat} materializations; simulate {t_sim:.1f} s, materialize {t_run:.1f} s")
    report = root / "reports" / REPORT_NAME
    click.echo("[3/3] results")
    if report.exists():
        click.echo(f"      report:    {report}")
        click.echo(f"      summary:   {report.with_name('crash_report.md')}")
    else:
        click.echo(f"      report not written ({report} missing): see the failed steps below")
    click.echo(f"      warehouse: {root / 'warehouse.duckdb'}  (duckdb; e.g. SELECT * FROM marts.index_daily_panel)")
    click.echo("      UI:        make dev   -> http://127.0.0.1:3000  (asset graph, lineage, checks, runs)")
    if failed:
        raise click.ClickException(f"failed steps: {', '.join(sorted(set(failed)))}")


__all__ = ["demo", "get_instance", "landing_range", "materialize_chain"]
