"""End to end: ``dagster dev`` on 127.0.0.1 with a temporary DAGSTER_HOME and data root.

One server (webserver + daemon + code server) is shared by the tests of this module:

1. GraphQL reports the lineage raw -> staging -> marts -> analytics -> report;
2. a run of ``full_backfill`` over a range of three trading days (hand-made landing files)
   launched through GraphQL (``launchRun`` with the partition-range tags) materializes every
   day of every selected partitioned asset in ONE run, succeeds, and writes the lake;
3. headless Chromium opens the asset graph, the page lists our groups and assets, and
   screenshots are saved under ``test-artifacts/`` (and ``docs/ui-asset-graph.png``);
4. the server listens on 127.0.0.1 only, and stopping it leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import psutil
import pytest

from sc_assets_tests.e2e.browser import Browser, find_chromium
from sc_assets_tests.e2e.harness import REPO, DagsterDev

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

FIXTURE_LANDING = REPO / "sc_assets_tests" / "fixtures" / "landing"
ARTIFACTS = REPO / "test-artifacts"
DAYS = ["2024-01-22", "2024-01-23", "2024-01-24"]
TARGET = ["marts", "stock_daily_panel"]
LAYERS = ("raw", "staging", "marts", "factors", "drawdowns", "crowding", "stress", "report")
#: The run's steps execute inside its run worker (which has imported the code location once)
#: instead of one fresh interpreter per step (~5 s of imports each on a 2-core machine).
FAST_EXECUTOR = {"execution": {"config": {"in_process": {}}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    data = base / "data"
    shutil.copytree(FIXTURE_LANDING, data / "landing")
    repo = Path(os.environ.get("SC_ASSETS_E2E_REPO", REPO))
    dev = DagsterDev(home=base / "dagster_home", data_dir=data, log_path=base / "dagster_dev.log", repo=repo)
    t0 = time.monotonic()
    dev.start(timeout_s=150)
    dev.startup_s = time.monotonic() - t0
    dev.graphql("mutation { setNuxSeen }")  # no first-visit community dialog over the screenshots
    yield dev
    dev.stop()
    if os.environ.get("CI"):
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(base / "dagster_dev.log", ARTIFACTS / "dagster_dev.log")


def _asset_nodes(server) -> dict[str, dict]:
    data = server.graphql("""{ assetNodes { assetKey { path } groupName isPartitioned
        dependencyKeys { path } } }""")
    return {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}


def _edges(nodes) -> set[tuple[str, str]]:
    return {("/".join(d["path"]), key) for key, n in nodes.items() for d in n["dependencyKeys"]}


def test_graphql_reports_lineage_through_every_layer(server):
    nodes = _asset_nodes(server)
    edges = _edges(nodes)
    assert {n["groupName"] for n in nodes.values()} <= set(LAYERS)
    for key, n in nodes.items():
        assert key.split("/")[0] == n["groupName"], key
    # the concrete chain of the stock panel
    for edge in [("raw/stock_daily", "staging/stg_stock_daily"),
                 ("staging/stg_stock_daily", "marts/stock_daily_panel")]:
        assert edge in edges
    # every layer is fed by the one before it
    layer_edges = {(a.split("/")[0], b.split("/")[0]) for a, b in edges}
    assert ("raw", "staging") in layer_edges and ("staging", "marts") in layer_edges
    analytics = {"factors", "drawdowns", "crowding", "stress"}
    present = {n["groupName"] for n in nodes.values()} & analytics
    assert present, "no analytics layer defined"
    for layer in present:
        assert ("marts", layer) in layer_edges or any((a, layer) in layer_edges for a in analytics), layer
    if "report/crash_report" in nodes:
        assert {a for a, b in layer_edges if b == "report"} & analytics


def test_partitioned_run_through_graphql_covers_the_range_in_one_run(server):
    nodes = _asset_nodes(server)
    target = "/".join(TARGET)
    # the upstream closure of the stock panel, from GraphQL's own lineage
    selection, todo = set(), [target]
    while todo:
        key = todo.pop()
        if key in selection:
            continue
        selection.add(key)
        todo += ["/".join(d["path"]) for d in nodes[key]["dependencyKeys"]]
    assert {"raw/stock_daily", "staging/stg_stock_daily", "staging/stg_stock_basic"} <= selection
    location = server.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")[
        "workspaceOrError"]["locationEntries"][0]["name"]
    t_launch = time.monotonic()
    res = server.graphql(
        """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
            ... on LaunchRunSuccess { run { runId } } ... on PythonError { message stack }
            ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }""",
        {"p": {
            "selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                         "jobName": "full_backfill",
                         "assetSelection": [{"path": k.split("/")} for k in sorted(selection)]},
            "runConfigData": FAST_EXECUTOR,
            "executionMetadata": {"tags": [
                {"key": "dagster/asset_partition_range_start", "value": DAYS[0]},
                {"key": "dagster/asset_partition_range_end", "value": DAYS[-1]}]},
        }},
    )["launchRun"]
    assert res["__typename"] == "LaunchRunSuccess", res
    run_id = res["run"]["runId"]

    query = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status startTime endTime
        stepStats { stepKey status } assetMaterializations { assetKey { path } partition } } } }"""
    deadline = time.monotonic() + 180
    while True:
        run = server.graphql(query, {"id": run_id})["runOrError"]
        if run["status"] in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        assert time.monotonic() < deadline, f"run still {run['status']} after 180 s\n{server.tail()}"
        time.sleep(1)
    failed = [s["stepKey"] for s in run["stepStats"] if s["status"] != "SUCCESS"]
    assert run["status"] == "SUCCESS", (failed, server.tail())
    print(f"run {run_id[:8]}: {len(run['stepStats'])} steps, launch->success "
          f"{time.monotonic() - t_launch:.1f} s (run {run['endTime'] - run['startTime']:.1f} s)")
    # one run materialized every day of the range for each partitioned asset (single-run backfill)
    mats = {}
    for m in run["assetMaterializations"]:
        mats.setdefault("/".join(m["assetKey"]["path"]), set()).add(m["partition"])
    assert mats[target] == set(DAYS)
    assert mats["raw/stock_daily"] == set(DAYS)
    assert mats["staging/stg_stock_basic"] == {None}  # the unpartitioned reference table, once

    stats = server.graphql("""query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) {
        ... on AssetNode { partitionStats { numMaterialized } } } }""",
                           {"k": {"path": TARGET}})["assetNodeOrError"]["partitionStats"]
    assert stats["numMaterialized"] == len(DAYS)
    from sc_assets.resources import Warehouse

    assert Warehouse(data_dir=str(server.data_dir)).days_present("marts", "stock_daily_panel", list(DAYS)) == list(DAYS)


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (scripts/ensure_chromium.sh)")
def test_browser_shows_the_asset_graph(server, tmp_path):
    nodes = _asset_nodes(server)
    groups = sorted({n["groupName"] for n in nodes.values()})
    ARTIFACTS.mkdir(exist_ok=True)
    with Browser(tmp_path / "profile-graph", width=2000, height=1250) as b:
        b.goto(f"{server.url}/asset-groups")
        text = b.wait_for_text(["Global asset lineage", *groups])
        time.sleep(1.5)  # let the graph layout settle before the picture
        shot = b.screenshot(ARTIFACTS / "ui-asset-graph.png")
        assert all(g in text for g in groups)
        b.key("e", alt=True)  # the UI's "expand all groups" shortcut: asset boxes replace group boxes
        names = {k.split("/")[-1] for k in nodes}
        deadline = time.monotonic() + 30
        while True:
            shown = {n for n in names if f"\n{n}\n" in f"\n{b.text()}\n"}
            if len(shown) >= 10 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(shown) >= 10, f"expanded graph shows only {sorted(shown)}"
        b.wheel(1200, 600, 120, times=2, ctrl=True)  # zoom out a little to show more of the chain
        time.sleep(1.0)
        b.screenshot(ARTIFACTS / "ui-asset-graph-expanded.png")
    with Browser(tmp_path / "profile-catalog", width=1600, height=6000) as b:
        b.goto(f"{server.url}/assets")
        sample = [k.split("/")[-1] for k in ("raw/stock_daily", "staging/stg_stock_daily",
                                             "marts/stock_daily_panel") if k in nodes]
        text = b.wait_for_text(sample)
        b.screenshot(ARTIFACTS / "ui-asset-catalog.png")
    listed = [k for k in nodes if k.split("/")[-1] in text]
    assert len(listed) >= 0.8 * len(nodes), f"catalog lists {len(listed)} of {len(nodes)} assets"
    assert shot.stat().st_size > 20_000
    docs = REPO / "docs" / "ui-asset-graph.png"
    if os.environ.get("SC_ASSETS_UPDATE_DOCS_SCREENSHOT"):
        docs.parent.mkdir(exist_ok=True)
        shutil.copy(shot, docs)


def test_server_listens_on_loopback_only(server):
    addrs = server.listening_addresses()
    assert (("127.0.0.1", server.port)) in addrs
    assert all(ip in ("127.0.0.1", "::1") or ip.startswith("127.") for ip, _ in addrs), addrs
    makefile = (REPO / "Makefile").read_text()
    dev_line = next(line for line in makefile.splitlines() if "dagster dev" in line)
    assert "-h 127.0.0.1" in dev_line


def test_stop_leaves_no_process(server):
    pids = {p.pid for p in server.processes()}
    assert len(pids) >= 3  # dagster dev, webserver, daemon (+ code server)
    leftovers = server.stop()
    assert leftovers == []
    time.sleep(0.5)
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
