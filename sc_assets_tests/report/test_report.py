"""The crash report renders every section from tables shaped like the analytics outputs, and
degrades to notes (never an exception) when tables or columns are missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sc_assets.partitions import trading_days_between, week_end_sessions
from sc_assets.report import ReportParams, build_report

DAYS = trading_days_between("2023-07-03", "2024-03-29")


def _tables() -> dict[tuple[str, str], pd.DataFrame]:
    rng = np.random.default_rng(0)
    t = {}
    crash = (DAYS >= "2024-01-02") & (DAYS <= "2024-02-07")
    idx = []
    for code, beta in (("000300.SH", 0.2), ("000905.SH", 0.6), ("000852.SH", 0.9), ("932000.CSI", 1.3)):
        r = rng.normal(0, 0.01, len(DAYS)) - np.where(crash, 0.006 * beta, 0)
        idx.append(pd.DataFrame({"trade_date": DAYS, "index_code": code, "close": 1000 * np.cumprod(1 + r),
                                 "ret": r, "amount": 1e10}))
    t["marts", "index_daily_panel"] = pd.concat(idx, ignore_index=True)
    fut = []
    for code in ("IC", "IM"):
        b = -0.05 + rng.normal(0, 0.02, len(DAYS))
        b[DAYS == "2024-01-22"] = -0.35 if code == "IM" else -0.25
        fut.append(pd.DataFrame({"trade_date": DAYS, "ts_code": f"{code}2403.CFX", "fut_code": code,
                                 "basis_ann": b, "is_main": True}))
    t["marts", "futures_basis_panel"] = pd.concat(fut, ignore_index=True)
    t["marts", "etf_flow_panel"] = pd.DataFrame({
        "trade_date": np.repeat(DAYS, 2), "ts_code": np.tile(["510500.SH", "512100.SH"], len(DAYS)),
        "index_code": np.tile(["000905.SH", "000852.SH"], len(DAYS)),
        "net_inflow": rng.normal(0, 1e8, 2 * len(DAYS))})
    t["factors", "factor_returns"] = pd.DataFrame({"trade_date": DAYS, "size": rng.normal(0, 0.005, len(DAYS)),
                                                   "nlsize": rng.normal(0, 0.004, len(DAYS))})
    t["factors", "drawdown_vs_size"] = pd.DataFrame({"decile": range(1, 11),
                                                     "median_ret": np.linspace(-0.4, -0.08, 10),
                                                     "cap_weighted_ret": np.linspace(-0.38, -0.05, 10)})
    weeks = week_end_sessions(DAYS)
    wr = rng.normal(0.001, 0.006, len(weeks))
    wr[weeks == pd.Timestamp("2024-02-08")] = -0.054
    t["drawdowns", "neutral_index"] = pd.DataFrame({"trade_date": weeks, "index": np.cumprod(1 + wr)})
    t["drawdowns", "neutral_index_worst_weeks"] = pd.DataFrame({"week_end": weeks, "weekly_ret": wr}).nsmallest(5, "weekly_ret")
    t["drawdowns", "excess_drawdown_table"] = pd.DataFrame({
        "fund_id": [f"F{i}" for i in range(20)], "benchmark": ["000905.SH"] * 10 + ["000852.SH"] * 10,
        "manager_aum_bucket": [">=10bn", "5-10bn"] * 10, "max_drawdown": -rng.uniform(0.06, 0.25, 20)})
    t["drawdowns", "excess_correlation"] = pd.DataFrame({
        "trade_date": np.repeat(weeks, 3), "fund_id": np.tile(["F1", "F2", "F3"], len(weeks)),
        "corr_26w": rng.uniform(0.7, 0.95, 3 * len(weeks)), "corr_52w": rng.uniform(0.7, 0.95, 3 * len(weeks))})
    t["crowding", "crowding_table"] = pd.DataFrame({
        "trade_date": pd.Timestamp("2024-01-02"), "bucket": ["micro_cap", "000905.SH", "000852.SH"],
        "ff_cap": [1.283e12, 5.75e12, 5.59e12], "holdings": [2.06e11, 1.99e11, 1.5e11],
        "hs": [0.1607, 0.0346, 0.0268], "ts": [0.4116, 0.2108, 0.1146], "rs": [0.332, 0.17, 0.0925]})
    t["stress", "basis_stress_events"] = pd.DataFrame({"fut_code": ["IM"], "start": [pd.Timestamp("2024-01-22")],
                                                       "end": [pd.Timestamp("2024-01-22")], "depth": [-0.35],
                                                       "duration": [1]})
    t["stress", "stress_summary"] = pd.DataFrame({
        "item": ["redemption impact micro_cap", "redemption impact 000852.SH", "scenario impact micro_cap",
                 "scenario impact 000852.SH", "calibrated Y (wave 1)"],
        "value": [-0.062, -0.051, -0.113, -0.103, 0.8],
        "unit": ["cumulative return (FF-weighted)"] * 4 + ["coefficient"],
        "section": ["redemption", "redemption", "fire_sale", "fire_sale", "fire_sale"]})
    return t


def test_all_sections_render_from_complete_inputs(tmp_path):
    tables = _tables()
    res = build_report(lambda layer, name: tables.get((layer, name)), tmp_path, ReportParams())
    missing = {s.key: s.note for s in res.sections if not s.ok}
    assert missing == {}
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == len(res.sections) == 9
    for p in tmp_path.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5_000
    page = res.html_path.read_text()
    for png in pngs:
        assert f"src='{png}'" in page
    by_key = {s.key: s for s in res.sections}
    # the facts are computed from the inputs, not copied: worst neutral week and the IM basis minimum
    assert by_key["neutral_index"].facts["worst week"].startswith("2024-02-08: -5.40%")
    assert by_key["basis"].facts["IM min annualized basis"] == "-35.00% on 2024-01-22"
    # Table 2 rendered as percentages of the fractions given
    crowd = by_key["crowding"].table
    assert list(crowd["holdings share"]) == ["16.07%", "3.46%", "2.68%"]
    # Table 1 medians per benchmark equal the pandas median of the inputs
    per = tables["drawdowns", "excess_drawdown_table"]
    med = per.groupby("benchmark")["max_drawdown"].median()
    tab = by_key["excess_drawdowns"].table
    for bench, value in med.items():
        assert f"{100 * value:.2f}%" in set(tab.loc[tab["benchmark"] == bench, "median excess MDD"])
    assert "Table 1" in res.markdown and "16.07%" in res.markdown
    stress = by_key["stress_summary"].facts
    assert stress["scenario impact micro_cap"] == "-11.30%" and stress["calibrated Y (wave 1)"] == "0.8 (coefficient)"


def test_missing_tables_degrade_to_notes(tmp_path):
    tables = _tables()
    keep = {("marts", "index_daily_panel")}
    res = build_report(lambda layer, name: tables.get((layer, name)) if (layer, name) in keep else None,
                       tmp_path, ReportParams())
    ok = [s.key for s in res.sections if s.ok]
    assert ok == ["relative_nav"]  # computed from the index panel alone
    assert all("missing" in (s.note or "") for s in res.sections if not s.ok)
    assert [p.name for p in tmp_path.glob("*.png")] == ["relative_nav.png"]
    page = res.html_path.read_text()
    assert page.count("Not available:") == len(res.sections) - 1


def test_renamed_column_and_broken_loader_degrade(tmp_path):
    tables = _tables()
    tables["crowding", "crowding_table"] = tables["crowding", "crowding_table"].rename(columns={"hs": "weird"})

    def loader(layer, name):
        if layer == "stress":
            raise OSError("disk on fire")
        return tables.get((layer, name))

    res = build_report(loader, tmp_path, ReportParams())
    notes = {s.key: s.note for s in res.sections}
    assert "weird" in notes["crowding"] and "hs" in notes["crowding"]
    assert notes["stress_summary"] is not None
    assert notes["basis"] is None  # the events overlay is optional
    assert notes["relative_nav"] is None


@pytest.mark.parametrize("empty", [pd.DataFrame(), None])
def test_empty_everything(tmp_path, empty):
    res = build_report(lambda layer, name: empty, tmp_path, ReportParams())
    assert not any(s.ok for s in res.sections)
    assert res.html_path.exists() and res.markdown_path.exists()


@pytest.mark.parametrize("first", ["2023-12-01", "2024-01-15"])
def test_crowding_reads_only_the_table2_partition(tmp_path, first):
    """The asset reads one crowding_table partition (partitions_needed); Table 2 is the same as
    drawn from the whole multi-day table — including when every day is after window_start."""
    from sc_assets.report.build import Section, _crowding, _Tables, partitions_needed

    tables = _tables()
    one = tables["crowding", "crowding_table"]
    days = [d.strftime("%Y-%m-%d") for d in trading_days_between(first, "2024-02-08")]
    whole = pd.concat([one.assign(trade_date=pd.Timestamp(d), hs=one["hs"] * (1 + i / 100))
                       for i, d in enumerate(days)], ignore_index=True)
    full = {**tables, ("crowding", "crowding_table"): whole}
    need = partitions_needed("crowding", "crowding_table", days, ReportParams())
    assert need == [max([d for d in days if d <= "2024-01-02"], default=days[0])]
    part = {**tables, ("crowding", "crowding_table"): whole[whole["trade_date"].isin(pd.to_datetime(need))]}
    a, b = (Section("crowding", "t", []), Section("crowding", "t", []))
    _crowding(_Tables(lambda la, n: full.get((la, n))), ReportParams(), tmp_path, a)
    _crowding(_Tables(lambda la, n: part.get((la, n))), ReportParams(), tmp_path, b)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.facts == b.facts and a.facts["as of"] == pd.Timestamp(need[0]).strftime("%Y-%m-%d")
    assert partitions_needed("drawdowns", "excess_correlation", days, ReportParams()) is None
    assert partitions_needed("factors", "factor_returns", days, ReportParams()) == days  # all after history_start


def test_unchanged_figures_are_reused_and_changed_ones_redrawn(tmp_path, monkeypatch):
    """A rebuild renders only the figures whose inputs changed; the others keep their PNG (Agg
    draws identical bytes from identical inputs, so the report is the same as a full redraw)."""
    import matplotlib.figure

    drawn = []
    real = matplotlib.figure.Figure.savefig

    def spy(self, fname, *a, **k):
        drawn.append(Path(fname).stem)
        return real(self, fname, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    tables = _tables()
    load = lambda layer, name: tables.get((layer, name))  # noqa: E731
    first = build_report(load, tmp_path, ReportParams(), generated="x")
    assert len(drawn) == 9
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}

    drawn.clear()
    again = build_report(load, tmp_path, ReportParams(), generated="x")
    assert drawn == []
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.png")} == before
    assert again.html_path.read_text() == first.html_path.read_text() and again.markdown == first.markdown

    # one more day of futures: only the basis figure is redrawn, and it differs
    fut = tables["marts", "futures_basis_panel"]
    extra = fut[fut["trade_date"] == fut["trade_date"].max()].assign(trade_date=pd.Timestamp("2024-04-01"),
                                                                      basis_ann=-0.5)
    tables["marts", "futures_basis_panel"] = pd.concat([fut, extra], ignore_index=True)
    drawn.clear()
    build_report(load, tmp_path, ReportParams(), generated="x")
    assert drawn == ["basis"]
    assert (tmp_path / "basis.png").read_bytes() != before["basis.png"]

    # other parameters redraw every figure; a PNG removed by hand is drawn again
    drawn.clear()
    build_report(load, tmp_path, ReportParams(window_end="2024-02-09"), generated="x")
    assert len(drawn) == 9
    (tmp_path / "crowding.png").unlink()
    drawn.clear()
    build_report(load, tmp_path, ReportParams(window_end="2024-02-09"), generated="x")
    assert drawn == ["crowding"]

    # a section that loses its input loses its figure
    del tables["crowding", "crowding_table"]
    build_report(load, tmp_path, ReportParams(window_end="2024-02-09"), generated="x")
    assert not (tmp_path / "crowding.png").exists() and len(list(tmp_path.glob("*.png"))) == 8


def test_reused_figures_equal_a_fresh_build(tmp_path):
    """The PNGs left in place by a rebuild are byte-identical to the ones a fresh folder gets."""
    tables = _tables()
    load = lambda layer, name: tables.get((layer, name))  # noqa: E731
    build_report(load, tmp_path / "a", ReportParams(), generated="x")
    build_report(load, tmp_path / "a", ReportParams(), generated="x")
    build_report(load, tmp_path / "b", ReportParams(), generated="x")
    a = {p.name: p.read_bytes() for p in (tmp_path / "a").glob("*.png")}
    b = {p.name: p.read_bytes() for p in (tmp_path / "b").glob("*.png")}
    assert a == b and len(a) == 9
