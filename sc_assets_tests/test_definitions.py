"""The code location loads, and every asset follows the project conventions (common.md).

These checks run over whatever assets the package defines at the time, so a new asset that
breaks a convention (no single-run backfill policy, wrong group, no description/code version)
fails here with its name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from sc_assets.definitions import PANEL_FRESHNESS, PANELS, defs
from sc_assets.jobs import LAYERS
from sc_assets.partitions import trading_days

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
    return defs.resolve_asset_graph()


@pytest.fixture(scope="module")
def specs():
    out = {}
    for a in defs.assets or []:
        if isinstance(a, dg.AssetsDefinition):
            for spec in a.specs:
                out[spec.key] = (a, spec)
    return out


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    for job in ("daily_update", "full_backfill"):
        assert defs.resolve_job_def(job).name == job
    assert defs.resolve_schedule_def("daily_update_schedule").job_name == "daily_update"
    assert defs.resolve_sensor_def("landing_sensor").job_name == "daily_update"


def test_daily_update_runs_in_one_process_and_backfills_in_many():
    # local profile (the tests' default): a day's steps are small, a process per step is not
    assert defs.resolve_job_def("daily_update").executor_def.name == "in_process"
    assert defs.resolve_job_def("full_backfill").executor_def.name == "multi_or_in_process_executor"


def test_jobs_cover_every_asset(graph):
    job = defs.resolve_job_def("full_backfill")
    in_job = {k for node in job.graph.node_dict for k in [node]}
    assert len(in_job) >= 1
    selected = dg.AssetSelection.all().resolve(graph)
    assert {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable} <= selected


def test_every_partitioned_asset_uses_trading_days_and_single_run(specs):
    offenders = []
    for key, (a, spec) in specs.items():
        if spec.partitions_def is None:
            continue
        if spec.partitions_def != trading_days:
            offenders.append(f"{key.to_user_string()}: partitions_def is not sc_assets.partitions.trading_days")
        policy = a.backfill_policy
        if policy is None or policy.max_partitions_per_run is not None:
            offenders.append(f"{key.to_user_string()}: backfill_policy is not BackfillPolicy.single_run()")
    assert offenders == []


def test_every_asset_follows_conventions(specs):
    problems = []
    for key, (_, spec) in specs.items():
        name = key.to_user_string()
        if len(key.path) != 2 or key.path[0] not in LAYERS:
            problems.append(f"{name}: key is not [layer, name] with layer in {LAYERS}")
        if spec.group_name != key.path[0]:
            problems.append(f"{name}: group {spec.group_name!r} != layer {key.path[0]!r}")
        if not (spec.description or "").strip():
            problems.append(f"{name}: no description")
        if not spec.code_version:
            problems.append(f"{name}: no code_version")
        if not spec.kinds:
            problems.append(f"{name}: no kinds")
    assert problems == []


def test_panels_have_freshness_policy(specs):
    panels = [k for k in specs if k.path[0] == "marts" and k.path[-1] in PANELS]
    assert sorted(k.path[-1] for k in panels) == sorted(PANELS)  # the marts contract's five panels
    for key in panels:
        assert specs[key][1].freshness_policy == PANEL_FRESHNESS, key


def test_report_depends_on_every_analytics_table(graph):
    report = dg.AssetKey(["report", "crash_report"])
    parents = graph.get(report).parent_keys
    analytics = {k for k in graph.get_all_asset_keys()
                 if k.path[0] in ("factors", "drawdowns", "crowding", "stress") and graph.get(k).is_materializable}
    assert analytics <= parents
    assert all(graph.get(p).is_materializable for p in parents), "report depends on an undefined table"


def test_loading_definitions_emits_no_deprecation_warning_from_our_code():
    code = (
        "import warnings, json\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import sc_assets.definitions\n"
        "print(json.dumps([[str(x.category.__name__), x.filename, str(x.message)[:200]] for x in w]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    warnings = json.loads(out.stdout.strip().splitlines()[-1])
    ours = [w for w in warnings if "/sc_assets/" in w[1] and "Deprecat" in w[0] + w[2]]
    assert ours == []
