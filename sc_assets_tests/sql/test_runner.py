"""The dbt-like runner: discovery, load-time errors, bound parameters, lookback, metadata."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from sc_assets.feeds.schemas import FEEDS
from sc_assets.sql_models import SqlModelError, build_sql_assets, load_models, run_model
from sc_assets_tests.sql.conftest import range_tags
from sc_assets_tests.sql.rawlake import DAYS, build_raw_lake

MARTS = ["stock_daily_panel", "index_daily_panel", "futures_basis_panel", "etf_flow_panel", "fund_nav_panel"]


def test_repository_models_one_staging_model_per_feed_and_marts():
    models = load_models()
    staging = {m.name for m in models.values() if m.layer == "staging"}
    assert staging == {f"stg_{feed}" for feed in FEEDS}
    assert {m.name for m in models.values() if m.layer == "marts"} >= set(MARTS)
    order = list(models)
    for m in models.values():  # dependency order
        for d in m.deps:
            if d.kind == "ref":
                assert order.index(d.name) < order.index(m.name)
            else:
                assert d.layer == "raw" and d.name in FEEDS
    for feed, spec in FEEDS.items():  # partitioned exactly like the raw feed
        assert models[f"stg_{feed}"].partitioned == spec.partitioned
    assert models["fund_nav_panel"].materialized == "table"
    assert models["etf_flow_panel"].lookback > 0


def test_assets_have_keys_groups_deps_checks_and_policy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assets = {a.key: a for a in build_sql_assets()}
    panel = assets[dg.AssetKey(["marts", "stock_daily_panel"])]
    assert panel.group_names_by_key[panel.key] == "marts"
    assert dg.AssetKey(["staging", "stg_stock_daily"]) in panel.dependency_keys
    assert panel.backfill_policy == dg.BackfillPolicy.single_run()
    assert {c.name for c in panel.check_specs} == {"gx_suite_passes", "unique_key_is_unique"}
    assert all(c.blocking for c in panel.check_specs)
    stg = assets[dg.AssetKey(["staging", "stg_stock_daily"])]
    assert stg.dependency_keys == {dg.AssetKey(["raw", "stock_daily"])}
    assert assets[dg.AssetKey(["marts", "fund_nav_panel"])].partitions_def is None


def _write(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip())
    return tmp_path


HEADER = "-- description: test model\n-- materialized: table\n"


@pytest.mark.parametrize(
    "files, where, message",
    [
        ({"staging/a.sql": HEADER + "SELECT 1 AS x\nFROM {{ ref('nope') }}\n"}, "a.sql:4", "ref('nope')"),
        ({"staging/a.sql": HEADER + "\nSELECT x FROM {{ ref('b') }}\n",
          "staging/b.sql": HEADER + "\n\nSELECT x FROM {{ ref('a') }}\n"}, ".sql:", "cycle"),
        ({"staging/a.sql": HEADER + "\nSELECT x FROM {{ ref('b') }}\n",
          "staging/b.sql": HEADER + "\n\nSELECT x FROM {{ ref('c') }}\n",
          "staging/c.sql": HEADER + "SELECT x FROM {{ ref('a') }}\n"}, ".sql:", "cycle"),
        ({"staging/a.sql": HEADER + "SELECT 1 AS x,\n  2 AS y\n  FORM t WHERE\n"}, "a.sql:5", "syntax"),
        ({"staging/a.sql": HEADER + "SELECT 1 FROM {{ source('raw', 'no_such_feed') }}\n"}, "a.sql:3", "no_such_feed"),
        ({"staging/a.sql": HEADER + "SELECT 1 FROM {{ evil() }}\n"}, "a.sql:3", "cannot read"),
        ({"staging/a.sql": "-- description: x\n-- materialized: partitioned\nSELECT $oops AS x\n"}, "a.sql:3", "$oops"),
        ({"staging/a.sql": "-- description: x\nSELECT 1\n"}, "a.sql:1", "materialized"),
        ({"staging/a.sql": HEADER + "SELECT 1 FROM {{ latest_landed('raw', 'stock_daily') }}\n"}, "a.sql:3",
         "latest_landed() needs a partitioned model with a unique_key"),
    ],
    ids=["bad_ref", "cycle", "cycle3", "syntax", "bad_source", "bad_template", "bad_param", "no_header",
         "latest_landed_without_key"],
)
def test_load_errors_name_file_and_line(tmp_path, files, where, message):
    root = _write(tmp_path, files)
    with pytest.raises(SqlModelError) as err:
        load_models(root)
    assert where in str(err.value) and message in str(err.value)


def test_parameters_after_an_apostrophe_in_a_comment_are_found(tmp_path):
    # a lone apostrophe in a -- comment must not pair with a later quote and hide $start/$end
    root = _write(tmp_path, {"staging/a.sql": "-- description: the model's test\n-- materialized: partitioned\n"
                             "-- unique_key: trade_date\n"
                             "SELECT d AS trade_date FROM (SELECT $start AS d UNION ALL SELECT $end) -- end's\n"
                             "WHERE d <> 'x'\n"})
    assert load_models(root)["a"].params == ("end", "start")


def test_bad_model_fails_definitions_build(tmp_path):
    root = _write(tmp_path, {"marts/x.sql": HEADER + "SELECT * FROM {{ ref('missing_model') }}\n"})
    with pytest.raises(SqlModelError, match=r"x\.sql:3"):
        build_sql_assets(root)


@pytest.fixture
def lake(warehouse):
    build_raw_lake(warehouse)
    return warehouse


@pytest.mark.parametrize("key", [
    "2024-01-02'; DROP TABLE raw.stock_daily; --",
    "2024-01-02' OR '1'='1",
    "2024-01-02\"; SELECT 1; --",
])
def test_partition_key_with_quotes_and_semicolons_cannot_change_sql(lake, key):
    models = load_models()
    model = models["stg_stock_daily"]
    with pytest.raises(ValueError, match="not a YYYY-MM-DD"):
        run_model(model, lake, [key], models)
    # the SQL text never contains a day: the day is bound as a parameter
    table, used = run_model(model, lake, ["2024-01-02"], models)
    assert "2024-01-02" not in model.sql and used["start"] == "2024-01-02"
    assert set(pd.to_datetime(table.column("trade_date").to_pandas()).dt.strftime("%Y-%m-%d")) == {"2024-01-02"}
    assert lake.read("raw", "stock_daily", days=["2024-01-02"]).shape[0] > 0  # nothing dropped


def test_partition_keys_are_checked_and_sorted_whatever_iterable_holds_them():
    from sc_assets.sql_models import _validate_days

    keys = ["2024-01-03", "2024-01-02"]
    for given in (keys, tuple(keys), set(keys), iter(keys)):
        assert _validate_days(given) == ["2024-01-02", "2024-01-03"]
    assert _validate_days([]) == []
    with pytest.raises(ValueError):
        _validate_days(["2024-01-02", "2024-13-45"])
    with pytest.raises(ValueError, match="not a YYYY-MM-DD"):
        _validate_days(iter(["2024-01-02", "20240103"]))


def test_values_with_quotes_and_semicolons_pass_through_unchanged(warehouse):
    build_raw_lake(warehouse)
    evil = "Evil'); DROP TABLE staging.stg_stock_basic; --\"x"
    basic = warehouse.read("raw", "stock_basic")
    basic.loc[basic.ts_code == "600000.SH", "name"] = evil
    warehouse.write_table("raw", "stock_basic", basic)
    models = load_models()
    table, _ = run_model(models["stg_stock_basic"], warehouse, None, models)
    df = table.to_pandas()
    assert df.loc[df.ts_code == "600000.SH", "name"].item() == evil
    assert len(df) == len(basic)


def test_upstream_files_with_different_schemas_are_read_by_name(tmp_path, warehouse):
    """Uniform upstream files are bound from one footer; files whose schemas differ (a column
    added later, a type widened, columns reordered) are read by name: nothing dropped or cast."""
    import pyarrow as pa

    from sc_assets.sql_models import _one_schema

    days = ["2023-11-30", "2023-12-29", "2024-01-02"]  # three months: three lake files
    d1, d2, d3 = (pd.Timestamp(d).date() for d in days)
    warehouse.write_partitions("staging", "up", pa.table({"trade_date": [d1], "k": ["a"], "x": pa.array([1], pa.int32())}),
                               days=[days[0]])
    warehouse.write_partitions("staging", "up", pa.table({"trade_date": [d2], "k": ["b"], "x": pa.array([2], pa.int32())}),
                               days=[days[1]])
    files = warehouse.files("staging", "up")
    assert _one_schema(files)
    warehouse.write_partitions("staging", "up", pa.table({"x": [2.5], "k": ["c"], "trade_date": [d3], "y": ["new"]}),
                               days=[days[2]])
    assert not _one_schema(warehouse.files("staging", "up"))
    sql_dir = _write(tmp_path / "sql", {
        "staging/up.sql": """
            -- description: upstream
            -- materialized: partitioned
            SELECT DATE '2024-01-02' AS trade_date WHERE false
        """,
        "marts/down.sql": """
            -- description: reads every upstream column
            -- materialized: partitioned
            SELECT * FROM {{ ref('up') }} WHERE trade_date BETWEEN $start AND $end
        """,
    })
    models = load_models(sql_dir)
    out = run_model(models["down"], warehouse, days, models)[0].to_pandas().sort_values("k")
    assert out.k.tolist() == ["a", "b", "c"] and out.x.tolist() == [1.0, 2.0, 2.5]
    assert out.y.isna().tolist() == [True, True, False]
    same = run_model(models["down"], warehouse, days[:2], models)[0]
    assert same.column_names == ["trade_date", "k", "x"] and same.schema.field("x").type == pa.int32()


def test_schema_check_compares_schemas_not_their_metadata(tmp_path):
    """_one_schema's verdict is ``pq.read_schema(f).equals(first)`` for every file: row groups,
    statistics, a footer without the serialised Arrow schema and schema metadata (pandas index
    ranges, a month file's day list) do not count; a column added or retyped does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sc_assets.resources.parquet_format import encode
    from sc_assets.sql_models import _one_schema

    def put(name: str, table: pa.Table, **kw) -> str:
        path = tmp_path / f"{name}.parquet"
        if kw:
            pq.write_table(table, path, **kw)
        else:
            path.write_bytes(encode(table).to_pybytes())
        return str(path)

    base = pa.table({"trade_date": pa.array([pd.Timestamp(DAYS[0]).date()]), "k": ["a"], "x": [1.5]})
    a = put("a", base)
    b = put("b", base.slice(0, 0))  # other row groups and statistics, same schema
    assert _one_schema([a, b])
    no_entry = put("c", base, store_schema=False)
    assert _one_schema([a, no_entry]) == pq.read_schema(no_entry).equals(pq.read_schema(a))
    meta = put("d", base.replace_schema_metadata({"pandas": '{"index_columns": [{"start": 7}]}'}))
    assert _one_schema([a, meta])  # metadata is not the schema
    assert not _one_schema([a, b, put("e", base.append_column("y", pa.array(["new"])))])
    assert not _one_schema([a, put("f", base.set_column(2, "x", pa.array([1], pa.int64())))])


def test_models_share_one_database_but_never_each_others_views(lake):
    """Concurrent runs of one model for different days (same view names, other files) each see
    only their own upstream; every run's catalog is detached afterwards, also on failure."""
    from concurrent.futures import ThreadPoolExecutor

    from sc_assets.sql_models import _database

    models = load_models()
    model = models["stg_stock_daily"]
    jobs = [DAYS[1], DAYS[2]] * 6
    with ThreadPoolExecutor(4) as pool:
        tables = list(pool.map(lambda d: run_model(model, lake, [d], models)[0], jobs))
    for d, t in zip(jobs, tables, strict=True):
        assert set(pd.to_datetime(t.column("trade_date").to_pandas()).dt.strftime("%Y-%m-%d")) == {d}
    with pytest.raises(FileNotFoundError):  # upstream never materialized
        run_model(models["stock_daily_panel"], lake, [DAYS[1]], models)
    names = {r[0] for r in _database().execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    assert not [n for n in names if n.startswith("model_")], names


def test_lookback_makes_per_day_runs_equal_a_range_run(lake):
    """Running day by day (as the daily job does) equals one backfill run: lookback rows are read."""
    models = load_models()
    for name in ["stg_stock_daily", "stg_adj_factor", "stg_daily_basic", "stg_st_flags", "stg_stock_basic",
                 "stg_etf_share"]:
        m = models[name]
        table, _ = run_model(m, lake, DAYS if m.partitioned else None, models)
        if m.partitioned:
            lake.write_partitions(m.layer, m.name, table.to_pandas(), days=DAYS, schema=table.schema)
        else:
            lake.write_table(m.layer, m.name, table.to_pandas(), schema=table.schema)
    for name in ["stock_daily_panel", "etf_flow_panel"]:
        whole = run_model(models[name], lake, DAYS[1:], models)[0].to_pandas()
        per_day = pd.concat([run_model(models[name], lake, [d], models)[0].to_pandas() for d in DAYS[1:]])
        key = ["trade_date", "ts_code"]
        pd.testing.assert_frame_equal(whole.sort_values(key).reset_index(drop=True),
                                      per_day.sort_values(key).reset_index(drop=True))
    panel = run_model(models["stock_daily_panel"], lake, ["2024-01-03"], models)[0].to_pandas()
    assert panel.loc[panel.ts_code == "600001.SH", "is_resumption"].item()  # needs the 01-02 row


def test_run_succeeds_with_lineage_schema_and_parameters(built):
    wh, res = built
    assert res.success
    evals = res.get_asset_check_evaluations()
    assert evals and all(e.passed for e in evals)
    mats = {m.asset_key.path[-1]: m.materialization.metadata for m in res.get_asset_materialization_events()}
    assert set(MARTS) <= set(mats)
    md = mats["stock_daily_panel"]
    schema_cols = [c.name for c in md["dagster/column_schema"].value.columns]
    assert schema_cols[:5] == ["trade_date", "ts_code", "name", "industry", "board"]
    lineage = md["dagster/column_lineage"].value.deps_by_column
    deps = {(d.asset_key.path[-1], d.column_name) for d in lineage["ret"]}
    assert {("stg_stock_daily", "close"), ("stg_stock_daily", "pre_close")} <= deps
    assert {(d.asset_key.path[-1], d.column_name) for d in lineage["adj_close"]} >= {
        ("stg_adj_factor", "adj_factor"), ("stg_stock_daily", "close")}
    assert ("stg_daily_basic", "total_share") in {(d.asset_key.path[-1], d.column_name) for d in lineage["total_mv"]}
    fut = mats["futures_basis_panel"]["dagster/column_lineage"].value.deps_by_column
    assert ("index_daily_panel", "close") in {(d.asset_key.path[-1], d.column_name) for d in fut["spot_close"]}
    stg = mats["stg_index_weight"]["dagster/column_lineage"].value.deps_by_column
    assert [(d.asset_key.path, d.column_name) for d in stg["weight"]] == [(["raw", "index_weight"], "weight")]
    params = md["parameters"].value
    assert params["start"] == DAYS[0] and params["end"] == DAYS[-1] and params["lookback_sessions"] == 1
    assert md["dagster/row_count"].value > 0 and "preview" in md
    # catalog views were refreshed
    import duckdb

    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        n = con.execute("SELECT count(*) FROM marts.stock_daily_panel").fetchone()[0]
    assert n == len(wh.read("marts", "stock_daily_panel"))


def test_trade_date_is_a_date_column_in_the_lake(built):
    import pyarrow.parquet as pq

    wh, _ = built
    for layer, name in [("staging", "stg_stock_daily"), ("marts", "stock_daily_panel"), ("marts", "fund_nav_panel")]:
        schema = pq.read_schema(wh.files(layer, name)[0])
        assert str(schema.field("trade_date").type) == "date32[day]"


def test_failing_blocking_check_stops_downstream(warehouse):
    """A GX failure on staging (high < close) blocks the panel in the same run."""
    from sc_assets.assets.sql import sql_model_assets

    build_raw_lake(warehouse)
    bad = warehouse.read("raw", "stock_daily", days=["2024-01-02"])
    bad.loc[bad.ts_code == "601000.SH", "high"] = 1.0  # below low and close
    warehouse.write_partitions("raw", "stock_daily", bad, days=["2024-01-02"])
    wanted = {"stg_stock_daily", "stg_adj_factor", "stg_daily_basic", "stg_st_flags", "stg_stock_basic",
              "stock_daily_panel"}
    subset = [a for a in sql_model_assets if a.key.path[-1] in wanted]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize(subset, resources={"warehouse": warehouse}, raise_on_error=False,
                             tags=range_tags(DAYS[0], DAYS[-1]))
    assert not res.success
    failed = [e for e in res.get_asset_check_evaluations() if not e.passed]
    assert [(e.asset_key.path[-1], e.check_name) for e in failed] == [("stg_stock_daily", "gx_suite_passes")]
    meta = failed[0].metadata["failed_expectations"].value
    assert any(f["columns"][0] == "high" for f in meta)
    done = {m.asset_key.path[-1] for m in res.get_asset_materialization_events()}
    assert "stock_daily_panel" not in done and "stg_adj_factor" in done
    assert not warehouse.exists("marts", "stock_daily_panel")


def test_chunked_backfill_equals_one_pass_and_schema_has_descriptions(built, warehouse):
    """chunk_sessions=1 runs the SQL once per day inside one run; the lake is the same."""
    from sc_assets.assets.sql import sql_model_assets

    build_raw_lake(warehouse)
    subset = [a for a in sql_model_assets if a.key.path[-1] in ("stg_etf_share", "etf_flow_panel")]
    config = {"ops": {a.op.name: {"config": {"chunk_sessions": 1, "chunk_rows": 1}} for a in subset}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize(subset, resources={"warehouse": warehouse}, run_config=config,
                             tags=range_tags(DAYS[0], DAYS[-1]))
    assert res.success
    want = built[0].read("marts", "etf_flow_panel").sort_values(["trade_date", "ts_code"], ignore_index=True)
    got = warehouse.read("marts", "etf_flow_panel").sort_values(["trade_date", "ts_code"], ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
    events = [m for m in res.get_asset_materialization_events() if m.asset_key.path[-1] == "stg_etf_share"]
    assert [e.partition for e in events] == DAYS
    md = events[-1]  # the latest event carries the schema (range_metadata)
    cols = {c.name: c.description for c in md.materialization.metadata["dagster/column_schema"].value.columns}
    assert "units" in cols["fd_share"] and cols["ts_code"].startswith("security code")
    assert all(e.materialization.metadata["parameters"].value["chunk_sessions"] == 1 for e in events)
    assert md.materialization.metadata["chunks"].value == len(DAYS)


def test_a_failed_chunk_write_fails_the_run_and_earlier_chunks_stay_written(warehouse, monkeypatch):
    """Chunk writes run on a writer thread beside the next chunk's SQL: a write error still fails
    the materialization, and the chunks written before it are complete in the lake."""
    from sc_assets.assets.sql import sql_model_assets
    from sc_assets.resources.warehouse import Warehouse

    build_raw_lake(warehouse)
    asset = next(a for a in sql_model_assets if a.key.path[-1] == "stg_etf_share")
    real = Warehouse.write_partitions
    calls = []

    def flaky(self, layer, name, df, days, schema=None):
        calls.append(list(days))
        if len(calls) == 3:
            raise OSError("disk full")
        return real(self, layer, name, df, days=days, schema=schema)

    monkeypatch.setattr(Warehouse, "write_partitions", flaky)
    config = {"ops": {asset.op.name: {"config": {"chunk_sessions": 1, "chunk_rows": 1}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize([asset], resources={"warehouse": warehouse}, run_config=config,
                             tags=range_tags(DAYS[0], DAYS[-1]), raise_on_error=False)
    assert not res.success
    assert "disk full" in str(res.get_step_failure_events()[0].event_specific_data.error.to_string())
    assert len(calls) == 3  # no chunk written after the failing one
    written = set(pd.to_datetime(warehouse.read("staging", "stg_etf_share").trade_date).dt.strftime("%Y-%m-%d"))
    assert written == {d for c in calls[:2] for d in c} and len(written) == 2


def test_contiguous_chunks_split_gaps_and_size():
    from sc_assets.sql_models import contiguous_chunks

    days = ["2024-01-02", "2024-01-03", "2024-01-05", "2024-02-08", "2024-02-19", "2024-02-20"]
    # 01-04 missing -> a gap; 02-08 -> 02-19 are adjacent sessions (Spring Festival)
    assert contiguous_chunks(days, 2) == [["2024-01-02", "2024-01-03"], ["2024-01-05"],
                                          ["2024-02-08", "2024-02-19"], ["2024-02-20"]]
    assert contiguous_chunks(days[::-1], 250) == [days[:2], days[2:3], days[3:]]
    with pytest.raises(ValueError, match="not SSE trading days"):
        contiguous_chunks(["2024-02-12"], 5)


def test_column_lineage_is_cached_on_disk(tmp_path, monkeypatch):
    import sc_assets.sql_models as sm

    model = load_models()["stg_adj_factor"]
    schemas = {("raw", "adj_factor"): {"ts_code": "VARCHAR", "trade_date": "DATE", "adj_factor": "DOUBLE",
                                       "source_file": "VARCHAR", "source_line": "BIGINT", "source_mtime_ns": "BIGINT"}}
    cols = ["ts_code", "trade_date", "adj_factor", "source_file"]
    first = sm.lineage_metadata(model, schemas, cols, cache_dir=tmp_path)
    assert [(d.asset_key.path, d.column_name) for d in first.deps_by_column["adj_factor"]] == [
        (["raw", "adj_factor"], "adj_factor")]
    assert len(list(tmp_path.glob("staging.stg_adj_factor.*.json"))) == 1

    def boom(*a, **k):
        raise AssertionError("parsed again")

    monkeypatch.setattr(sm, "_cached_lineage", boom)
    assert sm.lineage_metadata(model, schemas, cols, cache_dir=tmp_path) == first
    with pytest.raises(AssertionError, match="parsed again"):  # a new schema is a new key
        sm.lineage_metadata(model, {("raw", "adj_factor"): {**schemas[("raw", "adj_factor")], "x": "INT"}},
                            cols, cache_dir=tmp_path)


def _meta_bytes(event) -> int:
    from dagster._serdes import serialize_value

    return len(serialize_value(event.materialization.metadata))


def test_range_run_metadata_is_small_per_partition_and_latest_event_is_rich(built):
    """Dagster copies MaterializeResult metadata into every partition's event of a range run:
    those copies stay small; schema, preview and lineage are on the last partition's event."""
    _, res = built
    events: dict[str, list] = {}
    for e in res.get_asset_materialization_events():
        events.setdefault(e.asset_key.path[-1], []).append(e)
    for name, evs in events.items():
        rich = evs[-1].materialization.metadata
        assert {"dagster/column_schema", "preview", "dagster/row_count"} <= set(rich), name
        if len(evs) == 1:  # unpartitioned table models
            continue
        assert [e.partition for e in evs] == DAYS
        assert "dagster/column_lineage" in rich, name
        for e in evs[:-1]:
            md = e.materialization.metadata
            assert not {"dagster/column_schema", "preview", "dagster/column_lineage"} & set(md), name
            assert md["partitions"].value == len(DAYS) and md["dagster/row_count"].value > 0
            assert _meta_bytes(e) < 4096, (name, _meta_bytes(e))
    assert _meta_bytes(events["stock_daily_panel"][-1]) > 4096  # the rich one really is the big one


def test_single_partition_run_has_schema_preview_and_lineage(built, warehouse):
    from sc_assets.assets.sql import sql_model_assets

    build_raw_lake(warehouse)
    subset = [a for a in sql_model_assets if a.key.path[-1] in ("stg_index_daily", "index_daily_panel")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize(subset, resources={"warehouse": warehouse}, partition_key=DAYS[-1])
    assert res.success
    for e in res.get_asset_materialization_events():
        md = e.materialization.metadata
        assert e.partition == DAYS[-1] and "partitions" not in md
        assert {"dagster/column_schema", "preview", "dagster/column_lineage"} <= set(md)
        assert "trade_date" in md["preview"].value and DAYS[-1] in md["preview"].value
    lineage = [e for e in res.get_asset_materialization_events() if e.asset_key.path[-1] == "index_daily_panel"][0]
    deps = lineage.materialization.metadata["dagster/column_lineage"].value.deps_by_column
    assert ("stg_index_daily", "close") in {(d.asset_key.path[-1], d.column_name) for d in deps["close"]}


def test_gx_violation_in_the_last_chunk_fails_the_check(warehouse):
    """chunk_sessions=1: each day is validated on its own; a bad row on the last day is caught."""
    from sc_assets.assets.sql import sql_model_assets

    build_raw_lake(warehouse)
    bad = warehouse.read("raw", "stock_daily", days=[DAYS[-1]])
    bad.loc[bad.ts_code == "601000.SH", "high"] = 1.0  # below low and close
    warehouse.write_partitions("raw", "stock_daily", bad, days=[DAYS[-1]])
    subset = [a for a in sql_model_assets if a.key.path[-1] == "stg_stock_daily"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize(subset, resources={"warehouse": warehouse}, raise_on_error=False,
                             run_config={"ops": {subset[0].op.name: {"config": {"chunk_sessions": 1, "chunk_rows": 1}}}},
                             tags=range_tags(DAYS[0], DAYS[-1]))
    assert not res.success
    (gx,) = [e for e in res.get_asset_check_evaluations() if e.check_name == "gx_suite_passes"]
    assert not gx.passed
    md = gx.metadata
    assert md["chunks_validated"].value == len(DAYS) and md["chunks_failed"].value == 1
    assert md["failing_chunks"].value == [f"{DAYS[-1]} .. {DAYS[-1]}"]
    assert md["rows_validated"].value == len(warehouse.read("staging", "stg_stock_daily"))
    assert any(f["columns"][0] == "high" and f["unexpected_count"] >= 1 for f in md["failed_expectations"].value)
    (uk,) = [e for e in res.get_asset_check_evaluations() if e.check_name == "unique_key_is_unique"]
    assert uk.passed


DUPLICATE_MODELS = {
    # a duplicated (ts_code, trade_date) on the run's last day only
    "staging/dup_last_day.sql": """
        -- description: every stock bar, plus one copy of a bar on the last day of the run
        -- materialized: partitioned
        -- unique_key: ts_code, trade_date
        (SELECT DISTINCT ts_code, trade_date FROM {{ source('raw', 'stock_daily') }}
         WHERE trade_date BETWEEN $start AND $end)
        UNION ALL
        (SELECT DISTINCT ts_code, trade_date FROM {{ source('raw', 'stock_daily') }}
         WHERE trade_date = $end AND $end = DATE '2024-01-03' AND ts_code = '600000.SH')
    """,
    # one row per day for the same stock: unique within a day, duplicated across days
    "staging/first_bar.sql": """
        -- description: 600000.SH on each day, keyed by ts_code alone
        -- materialized: partitioned
        -- unique_key: ts_code
        SELECT DISTINCT ts_code, trade_date FROM {{ source('raw', 'stock_daily') }}
        WHERE trade_date BETWEEN $start AND $end AND ts_code = '600000.SH'
    """,
}


@pytest.mark.parametrize("chunk_sessions, chunk_rows, chunks", [(1, 1, 3), (1, 10**6, 2), (250, 10**6, 1)])
def test_unique_key_duplicates_found_in_last_chunk_and_across_chunks(tmp_path, lake, chunk_sessions, chunk_rows,
                                                                     chunks):
    """Per-day chunks, then a first chunk of one day whose rows size the rest (one more chunk), then one."""
    assets = build_sql_assets(_write(tmp_path / "sql", DUPLICATE_MODELS))
    config = {"ops": {a.op.name: {"config": {"chunk_sessions": chunk_sessions, "chunk_rows": chunk_rows}}
                      for a in assets}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize(assets, resources={"warehouse": lake}, raise_on_error=False, run_config=config,
                             tags=range_tags(DAYS[0], DAYS[-1]))
    evals = {e.asset_key.path[-1]: e for e in res.get_asset_check_evaluations()}
    last = evals["dup_last_day"]
    assert not last.passed and last.metadata["duplicate_rows"].value == 1
    assert last.metadata["checked_across_chunks"].value is False
    first_of_last_chunk = {3: DAYS[2], 2: DAYS[1], 1: DAYS[0]}[chunks]
    assert last.metadata["failing_chunks"].value == [f"{first_of_last_chunk} .. {DAYS[-1]}"]
    mats = {e.asset_key.path[-1]: e for e in res.get_asset_materialization_events()}
    assert mats["dup_last_day"].materialization.metadata["chunks"].value == chunks
    across = evals["first_bar"]
    n_days = len(lake.read("raw", "stock_daily").query("ts_code == '600000.SH'").trade_date.unique())
    assert n_days == len(DAYS)
    assert not across.passed and across.metadata["duplicate_rows"].value == n_days - 1
    assert across.metadata["checked_across_chunks"].value is True


def test_stock_panel_day_file_is_the_same_from_a_backfill_and_a_one_day_run(built, warehouse):
    """The panel is written in (trade_date, ts_code) order, so a day's file does not depend on the
    chunk it was computed in: downstream sums over its rows (factor exposures) then give the same
    bits after a backfill and after the daily update."""

    from sc_assets.assets.sql import sql_model_assets

    build_raw_lake(warehouse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = [a for a in sql_model_assets if a.key.path[-1] in ("stg_stock_basic", "stg_fut_basic")]
        assert dg.materialize(ref, resources={"warehouse": warehouse}).success
        for day in (DAYS[-2], DAYS[-1]):  # the daily path: one partition per run (lookback from the lake)
            res = dg.materialize(sql_model_assets, resources={"warehouse": warehouse}, partition_key=day,
                                 selection=[a.key for a in sql_model_assets if a.partitions_def is not None])
            assert res.success
    day = DAYS[-1]
    got = warehouse.read_days("marts", "stock_daily_panel", [day], None, arrow=True)
    want = built[0].read_days("marts", "stock_daily_panel", [day], None, arrow=True)
    assert got.num_rows > 1
    assert got.equals(want)
    keys = got.select(["trade_date", "ts_code"]).to_pandas()
    assert keys.equals(keys.sort_values(["trade_date", "ts_code"], ignore_index=True))
