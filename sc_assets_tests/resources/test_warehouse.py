"""The Parquet lake: atomic, idempotent partition writes; catalog views; path safety."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sc_assets.resources.warehouse import Warehouse, atomic_write_parquet, file_days
from sc_assets.settings import UnsafePathError, data_root, inside_root


def _frame(days, codes=("600000.SH", "000001.SZ")):
    rows = [{"trade_date": pd.Timestamp(d).date(), "ts_code": c, "close": 10.0 + i} for i, d in enumerate(days) for c in codes]
    return pd.DataFrame(rows)


def _lake_snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_partitions_written_one_file_per_month_and_rerun_is_idempotent(warehouse: Warehouse):
    days = ["2023-12-29", "2024-01-02", "2024-01-03"]
    counts = warehouse.write_partitions("raw", "stock_daily", _frame(days), days)
    assert counts == {"2023-12-29": 2, "2024-01-02": 2, "2024-01-03": 2}
    assert sorted(p.name for p in warehouse.table_dir("raw", "stock_daily").iterdir()) == ["2023-12.parquet", "2024-01.parquet"]
    assert file_days(str(warehouse.month_path("raw", "stock_daily", "2024-01-03"))) == ("2024-01-02", "2024-01-03")
    first = _lake_snapshot(warehouse.lake)
    warehouse.write_partitions("raw", "stock_daily", _frame(days), days)
    assert _lake_snapshot(warehouse.lake) == first
    out = warehouse.read("raw", "stock_daily")
    assert len(out) == 6 and not out.duplicated(["trade_date", "ts_code"]).any()


def test_rewrite_replaces_only_the_requested_partition(warehouse: Warehouse):
    warehouse.write_partitions("raw", "x", _frame(["2024-01-02", "2024-01-03"]), ["2024-01-02", "2024-01-03"])
    warehouse.write_partitions("raw", "x", _frame(["2024-01-03"], codes=("600000.SH",)), ["2024-01-03"])
    out = warehouse.read("raw", "x")
    assert out.groupby("trade_date").size().to_dict() == {
        pd.Timestamp("2024-01-02").date(): 2, pd.Timestamp("2024-01-03").date(): 1}


def test_empty_day_gets_an_empty_partition_and_rows_outside_are_refused(warehouse: Warehouse):
    counts = warehouse.write_partitions("raw", "y", _frame(["2024-01-02"]), ["2024-01-02", "2024-01-03", "2024-02-01"])
    assert counts["2024-01-03"] == 0 and counts["2024-02-01"] == 0
    assert warehouse.partitions("raw", "y") == ["2024-01-02", "2024-01-03", "2024-02-01"]
    assert warehouse.days_present("raw", "y", ["2024-01-03", "2024-01-04", "2024-02-01"]) == ["2024-01-03", "2024-02-01"]
    full, empty = (pq.read_table(warehouse.month_path("raw", "y", d)) for d in ("2024-01-02", "2024-02-01"))
    assert empty.num_rows == 0 and empty.schema.remove_metadata().equals(full.schema.remove_metadata())
    assert len(warehouse.read("raw", "y", days=["2024-01-03"])) == 0
    with pytest.raises(ValueError, match="outside the requested partitions"):
        warehouse.write_partitions("raw", "y", _frame(["2024-01-04"]), ["2024-01-02"])


def test_read_by_range_and_days(warehouse: Warehouse):
    days = ["2023-12-29", "2024-01-02", "2024-01-03", "2024-01-04"]
    warehouse.write_partitions("marts", "p", _frame(days), days)
    assert len(warehouse.read("marts", "p", start="2024-01-03")) == 4
    assert len(warehouse.read("marts", "p", start="2023-12-29", end="2024-01-02")) == 4
    assert len(warehouse.read("marts", "p", days=["2024-01-02", "2024-01-05"])) == 2
    got = warehouse.read_days("marts", "p", ["2024-01-03"], ["ts_code", "close"])
    assert list(got.columns) == ["ts_code", "close"] and len(got) == 2
    assert warehouse.query("marts", "p", "SELECT count(*) AS n FROM files", start="2024-01-03", end="2024-01-31")["n"][0] == 4
    assert warehouse.query("marts", "p", "SELECT count(*) AS n FROM files")["n"][0] == 8
    warehouse.write_table("marts", "whole", pd.DataFrame({"a": [1, 2]}))  # no trade_date: read whole
    assert warehouse.read("marts", "whole", start="2024-01-03")["a"].tolist() == [1, 2]
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        warehouse.read("marts", "missing")


def test_catalog_views_answer_duckdb_queries(warehouse: Warehouse):
    days = ["2024-01-02", "2024-01-03"]
    warehouse.write_partitions("raw", "stock_daily", _frame(days), days)
    warehouse.write_table("factors", "summary", pd.DataFrame({"a": [1, 2, 3]}))
    names = warehouse.refresh_catalog()
    assert set(names) == {"raw.stock_daily", "analytics.summary"}
    con = duckdb.connect(str(warehouse.catalog_path), read_only=True)
    try:
        assert con.execute("select count(*) from raw.stock_daily").fetchone()[0] == 4
        assert con.execute("select sum(a) from analytics.summary").fetchone()[0] == 6
    finally:
        con.close()
    with warehouse.connect() as con:  # in-memory views need no lock on the catalog file
        assert con.execute('select count(*) from "raw"."stock_daily"').fetchone()[0] == 4


def test_connect_can_limit_views_to_the_tables_a_query_needs(warehouse: Warehouse):
    warehouse.write_partitions("raw", "stock_daily", _frame(["2024-01-02"]), ["2024-01-02"])
    warehouse.write_table("factors", "summary", pd.DataFrame({"a": [1, 2]}))
    with warehouse.connect(tables=[("factors", "summary"), ("marts", "not_there")]) as con:
        views = {tuple(r) for r in con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert views == {("factors", "summary")}
        assert con.execute('select sum(a) from "factors"."summary"').fetchone()[0] == 3


def test_kept_catalog_view_shows_new_partitions_columns_and_a_layout_change(warehouse: Warehouse):
    # refresh_catalog keeps a view over an unchanged glob (no re-bind): DuckDB re-binds views per
    # query, so later partitions and new columns must still show; a layout change re-creates it
    warehouse.write_partitions("raw", "stock_daily", _frame(["2024-01-02"]), ["2024-01-02"])
    warehouse.refresh_catalog([("raw", "stock_daily")])
    later = _frame(["2024-01-03"]).assign(vol=5.0)
    warehouse.write_partitions("raw", "stock_daily", later, ["2024-01-03"])
    assert warehouse.refresh_catalog([("raw", "stock_daily")]) == ["raw.stock_daily"]

    def query(sql):
        con = duckdb.connect(str(warehouse.catalog_path), read_only=True)
        try:
            return con.execute(sql).fetchone()
        finally:
            con.close()

    assert query("select count(*), sum(vol) from raw.stock_daily") == (4, 10.0)
    warehouse.write_table("factors", "summary", pd.DataFrame({"a": [1]}))
    warehouse.refresh_catalog([("factors", "summary")])
    for p in warehouse.table_dir("factors", "summary").iterdir():
        p.unlink()  # the table becomes partitioned: another glob
    warehouse.write_partitions("factors", "summary", _frame(["2024-01-02"]), ["2024-01-02"])
    warehouse.refresh_catalog([("factors", "summary")])
    assert query("select count(*) from analytics.summary") == (2,)


def test_crash_during_write_leaves_old_partition_and_no_visible_temp(warehouse: Warehouse, monkeypatch):
    days = ["2024-01-02"]
    warehouse.write_partitions("raw", "z", _frame(days), days)
    before = _lake_snapshot(warehouse.lake)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        warehouse.write_partitions("raw", "z", _frame(days, codes=("X",)), days)
    monkeypatch.undo()
    assert _lake_snapshot(warehouse.lake) == before
    assert not list(warehouse.lake.rglob(".tmp*"))
    assert len(warehouse.read("raw", "z")) == 2


def test_a_day_rewritten_alone_keeps_the_other_days_of_its_month(warehouse: Warehouse):
    """A daily run rewrites its month's file: the new rows replace only its own day, the other
    days keep their rows, and the file stays in day order."""
    days = ["2024-01-02", "2024-01-03", "2024-01-04"]
    warehouse.write_partitions("raw", "k", _frame(days), days)
    new = _frame(["2024-01-03"], codes=("X.SH", "Y.SZ", "Z.SZ")).assign(close=99.0)
    assert warehouse.write_partitions("raw", "k", new, ["2024-01-03"]) == {"2024-01-03": 3}
    t = pq.read_table(warehouse.month_path("raw", "k", "2024-01-03")).to_pandas()
    assert t["trade_date"].astype(str).tolist() == ["2024-01-02"] * 2 + ["2024-01-03"] * 3 + ["2024-01-04"] * 2
    assert t.loc[t["trade_date"].astype(str) == "2024-01-03", "ts_code"].tolist() == ["X.SH", "Y.SZ", "Z.SZ"]
    assert t.loc[t["trade_date"].astype(str) != "2024-01-03", "close"].tolist() == [10.0, 10.0, 12.0, 12.0]
    warehouse.write_partitions("raw", "k", _frame([]).reindex(columns=["trade_date", "ts_code", "close"]), ["2024-01-05"])
    assert warehouse.partitions("raw", "k") == days + ["2024-01-05"]
    # a day written with another date type (a timestamp) and a wider column: the kept days take its types
    later = _frame(["2024-01-08"]).assign(trade_date=pd.Timestamp("2024-01-08"), close=pd.array([7, 8], "Int64"))
    warehouse.write_partitions("raw", "k", later, ["2024-01-08"])
    t = warehouse.read("raw", "k")
    assert t["trade_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-01-02"] * 2 + ["2024-01-03"] * 3 + ["2024-01-04"] * 2 + ["2024-01-08"] * 2
    assert str(t["close"].dtype) == "Int64" and t["close"].tolist()[-2:] == [7, 8]
    # a day whose text column is all None (Arrow null type) next to days with text
    notes = _frame(["2024-01-09"]).assign(note=[None, None])
    warehouse.write_partitions("raw", "k", _frame(["2024-01-10"]).assign(note=["a", "b"]), ["2024-01-10"])
    warehouse.write_partitions("raw", "k", notes, ["2024-01-09"])
    t = warehouse.read("raw", "k", start="2024-01-09")
    assert t["note"].isna().tolist() == [True, True, False, False] and t["note"].tolist()[2:] == ["a", "b"]


def _write_day_to(root: str, asset: str, day: str) -> None:
    Warehouse(data_dir=root).write_partitions("raw", asset, _frame([day]), [day])


def test_concurrent_writers_of_one_month_keep_every_day(warehouse: Warehouse):
    """Processes writing different days of one month at once (parallel runs) take turns on the
    table's lock: no day is lost to another's read-modify-write."""
    import multiprocessing as mp

    days = [d.strftime("%Y-%m-%d") for d in pd.bdate_range("2024-01-02", "2024-01-31")]
    with mp.get_context("spawn").Pool(4) as pool:
        pool.starmap(_write_day_to, [(str(warehouse.root), "c", d) for d in days])
    assert warehouse.partitions("raw", "c") == days
    assert len(warehouse.read("raw", "c")) == 2 * len(days)


def test_failed_multi_day_write_on_the_writer_threads_raises_and_leaves_no_temp(warehouse: Warehouse, monkeypatch):
    """Several days are written on the writer threads: one file's failure is raised in the caller,
    the days already in the lake keep their old files and no temp file is left behind."""
    from sc_assets.resources import warehouse as wh

    days = ["2023-11-02", "2023-12-04", "2024-01-04", "2024-02-05", "2024-03-08"]
    warehouse.write_partitions("raw", "m", _frame(days), days)
    before = _lake_snapshot(warehouse.lake)
    real = os.replace
    calls: list[str] = []

    def fail_one(src, dst):
        calls.append(str(dst))
        if "2024-01.parquet" in str(dst):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(wh, "WRITE_THREADS", 3)
    monkeypatch.setattr(os, "replace", fail_one)
    with pytest.raises(OSError, match="disk full"):
        warehouse.write_partitions("raw", "m", _frame(days, codes=("X",)), days)
    monkeypatch.undo()
    assert any("2024-01.parquet" in c for c in calls)
    assert not list(warehouse.lake.rglob(".tmp*"))
    after = _lake_snapshot(warehouse.lake)
    assert after.keys() == before.keys()
    assert after[next(k for k in after if "2024-01" in k)] == before[next(k for k in before if "2024-01" in k)]
    assert len(warehouse.read("raw", "m", days=["2024-01-04"])) == 2


def test_partition_keys_are_normalised_and_nat_is_refused(warehouse: Warehouse):
    """write_partitions checks YYYY-MM-DD keys in one parse: other spellings are normalised as
    before, and "NaT" (which numpy parses) is refused instead of naming a partition."""
    from sc_assets.resources.warehouse import _days

    assert _days(["2024-01-03", "2024-01-02"]) == ["2024-01-03", "2024-01-02"]
    assert _days(["20240102", pd.Timestamp("2024-01-03")]) == ["2024-01-02", "2024-01-03"]
    assert _days([]) == []
    for bad in (["NaT"], ["2024-01-02", "NaT"], [""]):
        with pytest.raises(ValueError):
            _days(bad)
    frame = pd.DataFrame({"trade_date": [None], "x": [1.0]})
    with pytest.raises(ValueError):
        warehouse.write_partitions("raw", "nat", frame, ["NaT"])
    assert not (warehouse.lake / "raw" / "nat").exists() or not list((warehouse.lake / "raw" / "nat").rglob("*.parquet"))


def test_leftover_temp_files_are_invisible_to_readers(warehouse: Warehouse):
    days = ["2024-01-02"]
    warehouse.write_partitions("raw", "t", _frame(days), days)
    part_dir = warehouse.table_dir("raw", "t")
    (part_dir / ".tmp-deadbeef-2024-01.parquet").write_bytes(b"PAR1 half written")
    assert len(warehouse.read("raw", "t")) == 2
    with warehouse.connect() as con:
        assert con.execute('select count(*) from "raw"."t"').fetchone()[0] == 2
    assert warehouse.clean_temp_files() == 1


def test_atomic_write_replaces_in_place(tmp_path: Path):
    target = tmp_path / "a" / "part.parquet"
    atomic_write_parquet(pa.table({"x": [1]}), target)
    atomic_write_parquet(pa.table({"x": [2, 3]}), target)
    assert pd.read_parquet(target)["x"].tolist() == [2, 3]
    assert [p.name for p in target.parent.iterdir()] == ["part.parquet"]


def test_data_root_and_path_safety(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SC_ASSETS_DATA_DIR", str(tmp_path))
    assert data_root() == tmp_path.resolve()
    (tmp_path / "landing").mkdir()
    assert inside_root(tmp_path, "landing") == (tmp_path / "landing").resolve()
    with pytest.raises(UnsafePathError):
        inside_root(tmp_path, "landing/../../etc/passwd")
    outside = tmp_path.parent / "outside.csv"
    outside.write_text("x")
    (tmp_path / "landing" / "link.csv").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the data root"):
        inside_root(tmp_path, "landing/link.csv")


def test_stale_temp_files_of_killed_writers_are_removed_by_the_next_write(warehouse: Warehouse):
    days = ["2024-01-02"]
    warehouse.write_partitions("raw", "s", _frame(days), days)
    part_dir = warehouse.table_dir("raw", "s")
    stale = part_dir / ".tmp-0001-2024-01.parquet"
    fresh = part_dir / ".tmp-0002-2024-01.parquet"
    stale.write_bytes(b"killed writer")
    fresh.write_bytes(b"writer still working")
    old = stale.stat().st_mtime - 2 * 3600
    os.utime(stale, (old, old))
    warehouse.refresh_catalog([("raw", "s")])  # refreshing views never walks the lake
    assert stale.exists()
    warehouse.write_partitions("raw", "s", _frame(days), days)  # the rerun of that partition
    assert not stale.exists() and fresh.exists()
    assert len(warehouse.read("raw", "s")) == 2


def test_refresh_with_every_view_in_place_does_not_open_the_catalog(warehouse: Warehouse, monkeypatch):
    days = ["2024-01-02", "2024-01-03"]
    warehouse.write_partitions("raw", "v", _frame(days), days)
    warehouse.refresh_catalog([("raw", "v")])
    opened = []
    real = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: (opened.append(a), real(*a, **k))[1])
    warehouse.write_partitions("raw", "v", _frame(["2024-01-04"]), ["2024-01-04"])  # same glob: view in place
    assert warehouse.refresh_catalog([("raw", "v")]) == ["raw.v"]
    assert opened == []
    # another writer changes the catalog (here: drops our view): the next refresh opens it and mends it
    with real(str(warehouse.catalog_path)) as con:
        con.execute('DROP VIEW "raw"."v"')
    warehouse.refresh_catalog([("raw", "v")])
    assert len(opened) == 1
    with real(str(warehouse.catalog_path), read_only=True) as con:
        assert con.execute('select count(*) from "raw"."v"').fetchone()[0] == len(_frame(days)) // 2 * 3


def test_lake_files_dictionary_encode_text_columns_only(warehouse: Warehouse):
    days = ["2024-01-02"]
    warehouse.write_partitions("raw", "enc", _frame(days), days)
    meta = pq.ParquetFile(warehouse.month_path("raw", "enc", days[0])).metadata
    encodings = {meta.schema.column(i).name: meta.row_group(0).column(i).encodings for i in range(meta.num_columns)}
    assert any("DICTIONARY" in e or "RLE_DICTIONARY" in e for e in encodings["ts_code"])
    numeric = [c for c in encodings if c not in ("ts_code", "trade_date") and
               pd.api.types.is_numeric_dtype(_frame(days)[c])]
    assert numeric and all(not any("DICTIONARY" in x for x in encodings[c]) for c in numeric)
    assert meta.row_group(0).column(0).compression == "SNAPPY"


def test_files_of_a_window_are_its_month_files(warehouse: Warehouse):
    days = [d.strftime("%Y-%m-%d") for d in pd.bdate_range("2023-06-01", "2024-03-29")]
    warehouse.write_partitions("raw", "w", _frame(days), days)
    folder = warehouse.table_dir("raw", "w")
    (folder / ".tmp-1-2024-04.parquet").write_bytes(b"x")  # a write in progress is not a month file
    for lo, hi, months in [("2024-01-02", "2024-01-09", ["2024-01"]), ("2023-12-30", "2024-03-29", ["2023-12", "2024-01", "2024-02", "2024-03"]),
                           ("2024-03-29", "2024-03-29", ["2024-03"]), ("2024-04-01", "2024-04-30", [])]:
        assert warehouse.files("raw", "w", lo, hi) == [str(folder / f"{m}.parquet") for m in months], (lo, hi)
    assert len(warehouse.files("raw", "w")) == 10


@pytest.mark.parametrize("kind", ["date", "timestamp", "timestamp_tz", "string"])
def test_rows_in_any_order_and_any_date_type_land_in_their_day_in_input_order(warehouse: Warehouse, kind: str):
    """Partition split on day numbers: each file holds its day's rows in input order (an oracle per
    day with pandas), whatever the row order and the partition column's type."""
    days = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    rng = pd.Series(range(40)).sample(frac=1.0, random_state=7).to_numpy()
    df = pd.DataFrame({"trade_date": pd.to_datetime([days[i % 3] for i in rng]), "seq": rng,
                       "ts_code": [f"{i:06d}.SZ" for i in rng]})
    if kind == "date":
        table = pa.Table.from_pandas(df.assign(trade_date=df["trade_date"].dt.date), preserve_index=False)
    elif kind == "timestamp":  # a time of day is dropped: the row belongs to its date
        table = pa.Table.from_pandas(df.assign(trade_date=df["trade_date"] + pd.Timedelta(hours=15)),
                                     preserve_index=False)
    elif kind == "timestamp_tz":  # the local date of an aware timestamp (07:00 Shanghai = 23:00 UTC the day before)
        table = pa.Table.from_pandas(df.assign(trade_date=(df["trade_date"] + pd.Timedelta(hours=7))
                                               .dt.tz_localize("Asia/Shanghai")), preserve_index=False)
    else:
        table = pa.Table.from_pandas(df.assign(trade_date=df["trade_date"].dt.strftime("%Y-%m-%d")),
                                     preserve_index=False)
    counts = warehouse.write_partitions("raw", f"order_{kind}", table, days)
    want = df.groupby(df["trade_date"].dt.strftime("%Y-%m-%d"))["seq"].agg(list).to_dict()
    assert counts == {d: len(want.get(d, [])) for d in days}
    for d in days:
        got = warehouse.read_days("raw", f"order_{kind}", [d], ["seq"], arrow=True).column("seq").to_pylist()
        assert got == want.get(d, []), d


def test_rows_without_a_day_are_refused(warehouse: Warehouse):
    table = pa.table({"trade_date": pa.array([pd.Timestamp("2024-01-02").date(), None], pa.date32()), "x": [1, 2]})
    with pytest.raises(ValueError, match="outside the requested partitions: \\['NaT'\\]"):
        warehouse.write_partitions("raw", "nulls", table, ["2024-01-02"])
    assert not warehouse.exists("raw", "nulls")


def test_a_lake_of_day_folders_is_refused_until_migrated_into_month_files(warehouse: Warehouse):
    """A table in the per-day layout (before month files) is refused with the command to run; the
    migration moves every day (an empty one too) into month files, keeps rows and order, and a
    second run finds nothing to do."""
    from click.testing import CliRunner

    from sc_assets.cli import main
    from sc_assets.resources.warehouse import LegacyLayoutError

    days = ["2023-12-29", "2024-01-02", "2024-01-03"]
    table_dir = warehouse.table_dir("raw", "old")
    for i, day in enumerate(days):
        folder = table_dir / f"trade_date={day}"
        folder.mkdir(parents=True)
        rows = _frame([day]) if i != 1 else _frame([day]).iloc[0:0]
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), folder / "part.parquet")
    (table_dir / "trade_date=2024-01-04").mkdir()  # a killed writer's folder without its file
    with pytest.raises(LegacyLayoutError, match="sc-assets migrate-lake"):
        warehouse.read("raw", "old")
    with pytest.raises(LegacyLayoutError):  # a write beside them would later be overwritten by the migration
        warehouse.write_partitions("raw", "old", _frame(["2024-01-05"]), ["2024-01-05"])
    assert not list(table_dir.glob("*.parquet"))
    out = CliRunner().invoke(main, ["migrate-lake", "--data-dir", str(warehouse.root)])
    assert out.exit_code == 0, out.output
    assert "raw.old: 3 partition(s) moved" in out.output
    assert sorted(p.name for p in table_dir.iterdir()) == ["2023-12.parquet", "2024-01.parquet"]
    assert warehouse.partitions("raw", "old") == days
    got = warehouse.read("raw", "old")
    pd.testing.assert_frame_equal(got, pd.concat([_frame([days[0]]), _frame([days[2]])], ignore_index=True))
    again = CliRunner().invoke(main, ["migrate-lake", "--data-dir", str(warehouse.root)])
    assert again.exit_code == 0 and "nothing to move" in again.output


def test_a_child_forked_while_a_table_is_locked_does_not_keep_the_lock(warehouse: Warehouse):
    """A process forked while a writer thread holds a table's lock writes that table once the
    parent's writer is done (the child does not inherit the lock and wait on itself)."""
    import multiprocessing as mp
    import threading

    from sc_assets.resources import warehouse as wh

    entered, release = threading.Event(), threading.Event()

    def hold():
        with wh._table_lock(warehouse.table_dir("raw", "f")):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    waiter = threading.Thread(target=_write_day_to, args=(str(warehouse.root), "f", "2024-01-03"))
    waiter.start()  # waits for the lock when the fork happens
    time.sleep(0.2)
    child = mp.get_context("fork").Process(target=_write_day_to, args=(str(warehouse.root), "f", "2024-01-02"))
    child.start()
    release.set()
    holder.join()
    waiter.join(timeout=30)
    child.join(timeout=60)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0
    assert warehouse.partitions("raw", "f") == ["2024-01-02", "2024-01-03"]
