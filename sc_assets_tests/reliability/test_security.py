"""Security (issue 12): the UI binds to 127.0.0.1 by default; no SQL is built by formatting
outside values (partition keys, codes, file names, paths with quotes and ``;``); landing paths
cannot escape the data root (see also test_bad_inputs.py)."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.errors import DagsterUnknownPartitionError

from sc_assets.partitions import trading_days
from sc_assets.resources import LandingFeedSource, Warehouse
from sc_assets.sensors import scan_landing
from sc_assets_tests.reliability.corpus import good

REPO = Path(__file__).resolve().parents[2]
EVIL = "2024-01-23'; DROP VIEW raw.stock_daily; --"
EVIL_CODE = "600000.SH'; DROP TABLE T; --"  # upper case: codes are normalised (upper-cased)


# ---- the webserver binds to loopback ----------------------------------------------------
def test_dev_commands_bind_loopback_and_nothing_binds_all_interfaces() -> None:
    from dagster_webserver.cli import DEFAULT_WEBSERVER_HOST

    assert DEFAULT_WEBSERVER_HOST == "127.0.0.1"  # `dagster dev` without -h is loopback too
    makefile = (REPO / "Makefile").read_text()
    launches = [ln for ln in makefile.splitlines() if re.search(r"dagster(-webserver| dev)\b", ln)
                and not ln.lstrip().startswith("#")]
    assert launches, "Makefile has no dagster dev target"
    for ln in launches:
        assert re.search(r"(-h|--host)\s+127\.0\.0\.1\b", ln), ln
    # (docs may mention 0.0.0.0 only to warn against it)
    texts = [REPO / "Makefile", REPO / "workspace.yaml", *REPO.glob("sc_assets/**/*.py"),
             *REPO.glob("sc_assets/**/*.yaml"), *REPO.glob("scripts/*")]
    for p in texts:
        if p.is_file():
            assert "0.0.0.0" not in p.read_text(errors="replace"), p
    readme = REPO / "README.md"
    if readme.exists():
        assert "127.0.0.1" in readme.read_text()


# ---- no SQL built from outside values ---------------------------------------------------
def _fstring_sql_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("execute", "sql"):
            if node.args:
                yield node.args[0]


def _literal_names(tree: ast.AST) -> set[str]:
    """Names assigned from ``_sql_string(...)`` (already a quoted SQL literal) in the module."""
    out = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", "") == "_sql_string"):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def _unsafe_parts(arg: ast.expr, literal_names: set[str] = frozenset()) -> list[str]:
    """Interpolations in a SQL string that are neither quoted identifiers (``"{name}"``) nor
    ``_sql_string(...)`` literals; ``%`` / ``.format`` formatting is always reported."""
    if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mod):
        return [ast.unparse(arg)]
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format":
        return [ast.unparse(arg)]
    if not isinstance(arg, ast.JoinedStr):
        return []
    bad = []
    vals = arg.values
    for i, v in enumerate(vals):
        if not isinstance(v, ast.FormattedValue):
            continue
        if isinstance(v.value, ast.Call) and getattr(v.value.func, "id", "") in ("_sql_string",):
            continue
        if isinstance(v.value, ast.Name) and v.value.id in literal_names:
            continue
        before = vals[i - 1].value if i > 0 and isinstance(vals[i - 1], ast.Constant) else ""
        after = vals[i + 1].value if i + 1 < len(vals) and isinstance(vals[i + 1], ast.Constant) else ""
        if str(before).endswith('"') and str(after).startswith('"'):
            continue  # a quoted identifier built from our own names
        bad.append(ast.unparse(v.value))
    return bad


#: reviewed exceptions: (file, expression) -> why it is safe
REVIEWED = {
    ("sc_assets/bench.py", "sql"): "SQL text written in the same module (constants), not outside values",
}


def test_the_sql_scan_flags_formatting_and_passes_literals_and_identifiers() -> None:
    src = (
        "q = _sql_string(p)\n"
        "con.execute(f\"SELECT * FROM t WHERE d = '{day}'\")\n"
        "con.execute(\"SELECT * FROM t WHERE c = '%s'\" % code)\n"
        "con.sql(\"DELETE FROM t WHERE k = {}\".format(key))\n"
        "con.execute(f'CREATE VIEW \"{layer}\".\"{asset}\" AS SELECT * FROM read_parquet({q})')\n"
        "con.execute(f'SELECT * FROM read_parquet({_sql_string(path)})')\n"
    )
    tree = ast.parse(src)
    found = [_unsafe_parts(a, _literal_names(tree)) for a in _fstring_sql_calls(tree)]
    assert sorted(len(f) for f in found) == [0, 0, 1, 1, 1] and ["day"] in found


def test_sql_text_never_interpolates_values() -> None:
    found = []
    for p in sorted((REPO / "sc_assets").rglob("*.py")):
        rel = p.relative_to(REPO).as_posix()
        tree = ast.parse(p.read_text())
        for arg in _fstring_sql_calls(tree):
            for expr in _unsafe_parts(arg, _literal_names(tree)):
                if (rel, expr) not in REVIEWED:
                    found.append(f"{rel}: {expr}")
    assert found == [], "SQL built by formatting (bind parameters instead): " + "; ".join(found)


def test_partition_key_with_quotes_and_semicolon_is_refused(data_dir: Path) -> None:
    from sc_assets.assets.raw import RAW_ASSETS

    assert not trading_days.has_partition_key(EVIL)
    wh = Warehouse(data_dir=str(data_dir))
    with pytest.raises(ValueError, match="DROP VIEW"):  # not a date: refused before any path or SQL
        wh.write_partitions("raw", "x", pd.DataFrame({"trade_date": []}), days=[EVIL])
    assert not (data_dir / "lake").exists() or not any((data_dir / "lake").rglob("*DROP*"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DagsterUnknownPartitionError):
            dg.materialize([RAW_ASSETS["stock_daily"]], partition_key=EVIL,
                           resources={"warehouse": wh, "feed_source": LandingFeedSource(data_dir=str(data_dir))})


def test_code_with_quotes_and_semicolon_is_data_not_sql(data_dir: Path) -> None:
    from sc_assets.assets.raw import RAW_ASSETS

    df = good("stock_daily")
    df.loc[0, "ts_code"] = EVIL_CODE
    d = data_dir / "landing" / "stock_daily"
    d.mkdir(parents=True)
    df.to_csv(d / "20240123.csv", index=False)
    wh = Warehouse(data_dir=str(data_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize([RAW_ASSETS["stock_daily"]], partition_key="2024-01-23",
                             resources={"warehouse": wh, "feed_source": LandingFeedSource(data_dir=str(data_dir))})
    assert res.success
    with wh.connect() as con:
        q = con.execute("SELECT ts_code, reason FROM quarantine.stock_daily").fetchall()
        n = con.execute("SELECT count(*) FROM raw.stock_daily").fetchone()[0]
    assert q == [(EVIL_CODE, "invalid code ts_code")] and n == len(df) - 1
    import duckdb

    with duckdb.connect(str(wh.catalog_path), read_only=True) as cat:
        assert cat.execute("SELECT count(*) FROM raw.stock_daily").fetchone()[0] == len(df) - 1


def test_file_name_with_quotes_and_semicolon_is_never_read(data_dir: Path) -> None:
    d = data_dir / "landing" / "stock_daily"
    d.mkdir(parents=True)
    body = good("stock_daily").to_csv(index=False).encode()
    for name in ("20240123'; DROP VIEW raw.stock_daily; --.csv", "20240123.csv;rm -rf", '20240123".csv'):
        (d / name).write_bytes(body)
    src = LandingFeedSource(data_dir=str(data_dir))
    assert src.list_files("stock_daily") == []
    assert src.read("stock_daily", ["2024-01-23"]).landed == 0
    changes, _ = scan_landing(data_dir, {}, now=1e12)
    assert changes == []


def test_data_root_with_quotes_and_semicolon_in_its_path(tmp_path: Path) -> None:
    root = tmp_path / "we'ird; DROP TABLE t; --\"x"
    wh = Warehouse(data_dir=str(root))
    df = pd.DataFrame({"trade_date": pd.to_datetime(["2024-01-22", "2024-01-23"]).date, "v": [1.0, 2.0]})
    wh.write_partitions("raw", "probe", df, days=["2024-01-22", "2024-01-23"])
    assert wh.refresh_catalog([("raw", "probe")]) == ["raw.probe"]
    with wh.connect() as con:
        assert con.execute("SELECT sum(v) FROM raw.probe").fetchone()[0] == 3.0
