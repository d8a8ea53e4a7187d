"""Bad-input corpus (issue 12): every mutation of a good landing file ends in a specific error
that names the file (and line/column), or in quarantined rows with a specific reason; never in
silently accepted bad rows. Accounting always holds: rows landed = accepted + quarantined."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pandas as pd
import pytest

from sc_assets.feeds.errors import LandingFileError
from sc_assets.feeds.schemas import FEEDS
from sc_assets.feeds.validation import REASON_PREFIXES
from sc_assets.resources.feed_source import LandingFeedSource
from sc_assets.settings import UnsafePathError, inside_root
from sc_assets_tests.reliability.corpus import (
    CASES,
    CHECK_CASES,
    Case,
    CheckCase,
    Err,
    Ok,
    Quar,
    good,
    good_bytes,
    good_day,
)


def _land(root: Path, case: Case) -> dict[Path, bytes]:
    d = root / "landing" / case.feed
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, (name, body) in enumerate(case.files().items()):
        p = d / name
        p.write_bytes(body)
        os.utime(p, ns=(1_700_000_000_000_000_000 + i, 1_700_000_000_000_000_000 + i))  # later file = later mtime
        out[p] = body
    return out


def _read(source: LandingFeedSource, case: Case):
    if FEEDS[case.feed].partitioned:
        return source.read(case.feed, [pd.Timestamp(case.read_day).strftime("%Y-%m-%d")])
    return source.read_snapshots(case.feed)


def _good_batch(tmp_path: Path, feed: str):
    root = tmp_path / "good"
    d = root / "landing" / feed
    d.mkdir(parents=True)
    (d / f"{good_day(feed)}.csv").write_bytes(good_bytes(feed))
    return _read(LandingFeedSource(data_dir=str(root)), Case("good", feed, dict, Ok(0)))


def test_corpus_is_large_and_covers_every_outcome() -> None:
    kinds = {type(c.expect) for c in CASES}
    assert len(CASES) >= 40 and kinds == {Err, Quar, Ok}
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("feed", sorted({c.feed for c in CASES}))
def test_good_files_are_clean(tmp_path: Path, feed: str) -> None:
    batch = _good_batch(tmp_path, feed)
    assert batch.landed == len(good(feed)) > 0 and len(batch.quarantined) == 0 and batch.accounted


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, data_dir: Path, tmp_path: Path) -> None:
    landed = _land(data_dir, case)
    source = LandingFeedSource(data_dir=str(data_dir))
    exp = case.expect
    if isinstance(exp, Err):
        with pytest.raises(LandingFileError) as info:
            _read(source, case)
        e = info.value
        assert e.path.startswith(f"landing/{case.feed}/") and e.path in str(e)
        assert exp.problem in e.problem, str(e)
        if exp.line is not None:
            assert e.line == exp.line, str(e)
        if exp.column is not None:
            assert e.column == exp.column, str(e)
        assert "left in landing" in str(e)
        for p, body in landed.items():  # unparseable files stay in landing, untouched
            assert p.read_bytes() == body
        return
    batch = _read(source, case)
    assert batch.accounted and batch.landed == len(batch.rows) + len(batch.quarantined) + batch.superseded
    if isinstance(exp, Quar):
        got = batch.quarantined["reason"].value_counts().to_dict()
        assert got == exp.reasons, got
        assert all(r.startswith(REASON_PREFIXES) for r in got)
        assert len(batch.rows) == batch.landed - sum(exp.reasons.values()) - batch.superseded
        # every quarantined row points back to its file and line
        assert batch.quarantined["source_file"].str.startswith(f"landing/{case.feed}/").all()
        assert (batch.quarantined["source_line"] >= 1).all()
    else:
        assert len(batch.quarantined) == 0 and len(batch.rows) == exp.rows
        if exp.same_as_good:
            want = _good_batch(tmp_path, case.feed).rows.drop(columns=["source_file", "source_mtime_ns", "source_line"])
            got = batch.rows.drop(columns=["source_file", "source_mtime_ns", "source_line"])
            pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)


def test_conflicting_files_for_one_day_are_both_kept_with_their_source(data_dir: Path) -> None:
    case = next(c for c in CASES if c.id == "conflicting_rows_across_two_files")
    _land(data_dir, case)
    batch = _read(LandingFeedSource(data_dir=str(data_dir)), case)
    first = batch.rows[batch.rows["ts_code"] == batch.rows["ts_code"].iloc[0]]
    assert first["close"].nunique() == 2 and first["source_file"].nunique() == 2
    # the later file (larger mtime) is the one staging keeps
    latest = first.sort_values("source_mtime_ns").iloc[-1]
    assert latest["source_file"].endswith(".csv.gz")


# ---- paths out of the data root ---------------------------------------------------------
def test_dotdot_paths_cannot_escape_the_root(data_dir: Path) -> None:
    for bad in ("../outside.csv", "landing/../../etc/passwd", "landing/stock_daily/../../../x.csv"):
        with pytest.raises(UnsafePathError):
            inside_root(data_dir, bad)
    assert inside_root(data_dir, "landing/stock_daily/../stock_daily/20240123.csv").is_relative_to(data_dir)


def test_symlinked_file_out_of_the_root_is_refused(data_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "20240123.csv"
    outside.parent.mkdir()
    outside.write_bytes(good_bytes("stock_daily"))
    d = data_dir / "landing" / "stock_daily"
    d.mkdir(parents=True)
    (d / "20240123.csv").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        LandingFeedSource(data_dir=str(data_dir)).read("stock_daily", ["2024-01-23"])


def test_symlinked_feed_folder_out_of_the_root_is_refused(data_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "20240123.csv").write_bytes(good_bytes("stock_daily"))
    (data_dir / "landing").mkdir()
    (data_dir / "landing" / "stock_daily").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError):
        LandingFeedSource(data_dir=str(data_dir)).read("stock_daily", ["2024-01-23"])


def test_unknown_feed_name_cannot_become_a_path(data_dir: Path) -> None:
    with pytest.raises(KeyError):
        LandingFeedSource(data_dir=str(data_dir)).landing_dir("../../etc")


def test_raw_assets_end_to_end_warn_on_header_only_and_missing_day_and_quarantine(data_dir: Path) -> None:
    """Through the real raw assets: a header-only file and a day without an index file are WARN
    checks (not silent), negative ETF shares land in quarantine.etf_share with their reason."""
    import warnings

    import dagster as dg

    from sc_assets.assets.raw import RAW_ASSETS
    from sc_assets.resources import Warehouse

    day = "20240122"
    land = data_dir / "landing"
    (land / "stock_daily").mkdir(parents=True)
    (land / "stock_daily" / f"{day}.csv").write_bytes(good_bytes("stock_daily").split(b"\n")[0] + b"\n")
    (land / "etf_share").mkdir()
    etf = good("etf_share")
    etf.loc[1, "fd_share"] = -5.0
    (land / "etf_share" / f"{day}.csv").write_bytes(etf.to_csv(index=False).encode())
    wh = Warehouse(data_dir=str(data_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize([RAW_ASSETS[f] for f in ("stock_daily", "index_daily", "etf_share")],
                             partition_key="2024-01-22",
                             resources={"warehouse": wh, "feed_source": LandingFeedSource(data_dir=str(data_dir))})
    checks = {(e.asset_key.path[-1], e.check_name): e for e in res.get_asset_check_evaluations()}
    present = checks[("stock_daily", "landing_file_present")]
    assert not present.passed and present.metadata["files_without_rows"].value == [f"landing/stock_daily/{day}.csv"]
    missing = checks[("index_daily", "landing_file_present")]
    assert not missing.passed and missing.metadata["days_without_file"].value == ["2024-01-22"]
    assert checks[("etf_share", "rows_accounted_for")].passed and checks[("etf_share", "landing_file_present")].passed
    q = wh.read("quarantine", "etf_share")
    assert q["reason"].tolist() == ["negative fd_share"] and q["source_line"].tolist() == [3]
    assert len(wh.read("raw", "etf_share")) == len(etf) - 1


# ---- cross-row / cross-file cases: the raw asset's WARN checks name them -----------------------
@pytest.mark.parametrize("case", CHECK_CASES, ids=[c.id for c in CHECK_CASES])
def test_cross_row_case_is_flagged_by_a_warn_check(case: CheckCase, data_dir: Path) -> None:
    """Each file reads cleanly on its own; the raw asset's WARN check says what is wrong (or,
    for the controls, passes), the run succeeds and every landed row is accepted or quarantined."""
    import warnings

    import dagster as dg

    from sc_assets.assets.raw import RAW_ASSETS
    from sc_assets.resources import Warehouse

    landed = _land(data_dir, Case(case.id, case.feed, case.files, Ok(0)))
    wh = Warehouse(data_dir=str(data_dir))
    run_config = {"ops": {f"raw__{case.feed}": {"config": case.config}}} if case.config else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize([RAW_ASSETS[case.feed]], run_config=run_config,
                             resources={"warehouse": wh, "feed_source": LandingFeedSource(data_dir=str(data_dir))},
                             tags={"dagster/asset_partition_range_start": case.start,
                                   "dagster/asset_partition_range_end": case.end})
    assert res.success
    checks = {e.check_name: e for e in res.get_asset_check_evaluations()}
    exp = case.expect
    got = checks[exp.check]
    assert got.severity == dg.AssetCheckSeverity.WARN
    assert got.passed is exp.passed, got.description
    assert exp.phrase in (got.description or ""), got.description
    for k, v in exp.metadata.items():
        assert getattr(got.metadata[k], "value", got.metadata[k]) == v, (k, got.metadata[k])
    # accounting still holds, and nothing was dropped: every landed row is in raw or quarantine
    acc = checks["rows_accounted_for"]
    assert acc.passed
    in_range = {p: b for p, b in landed.items()
                if case.start <= pd.Timestamp(p.name[:8]).strftime("%Y-%m-%d") <= case.end}
    rows_in_files = sum(len((gzip.decompress(b) if p.name.endswith(".gz") else b).decode().strip().splitlines()) - 1
                        for p, b in in_range.items())
    assert acc.metadata["rows_landed"].value == rows_in_files
    raw_rows = len(wh.read("raw", case.feed))
    q_rows = len(wh.read("quarantine", case.feed)) if wh.exists("quarantine", case.feed) else 0
    assert raw_rows + q_rows == rows_in_files == acc.metadata["rows_accepted"].value + acc.metadata["rows_quarantined"].value
    # only the check under test may warn (each case is one mutation)
    others = [n for n, e in checks.items() if not e.passed and n != exp.check]
    assert others == [], {n: checks[n].description for n in others}


def test_conflicting_redelivery_sample_names_files_and_winner(data_dir: Path) -> None:
    """The conflict check's sample names the key, both files, the differing columns and the file
    staging keeps; the kept file is the one with the later mtime, whatever its name."""
    import warnings

    import dagster as dg

    from sc_assets.assets.raw import RAW_ASSETS
    from sc_assets.resources import Warehouse

    case = next(c for c in CHECK_CASES if c.id == "conflicting_rows_across_two_files")
    landed = _land(data_dir, Case(case.id, case.feed, case.files, Ok(0)))
    gz, plain = sorted(landed, key=lambda p: p.name, reverse=True)  # .csv.gz, .csv
    os.utime(plain, ns=(1_800_000_000_000_000_000,) * 2)  # the plain CSV is now the later delivery
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = dg.materialize([RAW_ASSETS[case.feed]], partition_key=case.start,
                             resources={"warehouse": Warehouse(data_dir=str(data_dir)),
                                        "feed_source": LandingFeedSource(data_dir=str(data_dir))})
    check = next(e for e in res.get_asset_check_evaluations() if e.check_name == "no_conflicting_redeliveries")
    sample = check.metadata["sample"].value
    rel = [f"landing/{case.feed}/{p.name}" for p in (plain, gz)]
    assert sample == [{"key": f"{good('stock_daily')['ts_code'].iloc[0]} {case.start}", "files": sorted(rel),
                       "kept_file": rel[0], "columns_differing": ["close"]}]
