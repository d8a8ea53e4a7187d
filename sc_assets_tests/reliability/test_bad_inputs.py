"""Bad-input corpus (issue 12): every mutation of a good landing file ends in a specific error
that names the file (and line/column), or in quarantined rows with a specific reason; never in
silently accepted bad rows. Accounting always holds: rows landed = accepted + quarantined."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from sc_assets.feeds.errors import LandingFileError
from sc_assets.feeds.schemas import FEEDS
from sc_assets.feeds.validation import REASON_PREFIXES
from sc_assets.resources.feed_source import LandingFeedSource
from sc_assets.settings import UnsafePathError, inside_root
from sc_assets_tests.reliability.corpus import CASES, Case, Err, Ok, Quar, good, good_bytes, good_day


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
