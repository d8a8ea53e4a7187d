"""Run the simulation and write the landing folder plus the ground truth.

Landing (DESIGN §4, canonical raw names and Tushare units, see ``sc_assets.feeds.schemas``)::

    <root>/landing/<feed>/<YYYYMMDD>.csv        Tushare-style UTF-8 CSV (dates YYYYMMDD)
    <root>/landing/<feed>/<YYYYMMDD>.csv        on every ``gbk_every``-th session (and a few extra
                                                stock_daily/daily_basic days): Wind/Choice-style GBK
                                                export with Chinese headers, vendor units, YYYY-MM-DD
    <root>/landing/<feed>/<YYYYMMDD>.parquet    with ``output_format="parquet"``: stock_daily,
                                                daily_basic, adj_factor, st_flags
    stock_basic/, fut_basic/                    one snapshot dated the last simulated session
    index_weight/                               first session of each month, weights in percent
    fund_nav/                                   one file per week end (``week_end_sessions``)

Ground truth (``<root>/ground_truth/``, Parquet; money in CNY, returns as fractions):

- ``landing_manifest.json``: the landing files of this run (a re-run removes files of the previous run that
  it does not rewrite, so changing the dates never leaves stale days behind).
- ``params.json``: the :class:`SimulationParams` used (incl. ``impact_y``, the Y of the square-root law).
- ``factor_returns.parquet``: trade_date, market, size, nlsize, ind_<SW L1 name> (31 columns): the
  factor returns that generated day t's returns (scripted episode parts included). The stock return is
  ``beta*market + ind + size_z(t-1)*size + nlsize_z(t-1)*nlsize + idio`` plus flow impact.
- ``stock_days.parquet``: one row per listed stock-day: trade_date, ts_code, lncap (ln total cap at
  the close), size_z / nlsize_z (METHODS §2 exposures from the close of trade_date, i.e. they explain
  the NEXT day's return), eligible (listed >= 60 sessions with a close: the standardisation set),
  sigma_d (true daily vol used in the impact law), adv_shares (baseline daily volume V, shares),
  quant_shares / quant_cny (aggregate quant holdings at the close incl. unfilled sales),
  quant_sell_shares (quant sale orders incl. the carried ones), etf_buy_shares (ETF orders, signed:
  creations +, redemptions -), quant_filled_shares (shares the net sale ``quant_sell - etf_buy`` actually
  sold that day, >= 0, capped by the limit; 0 on net-buy days), carry_shares (unfilled quant sales
  carried to the next day), impact_ret (realised log impact of the flows),
  fundamental_ret (factor + idiosyncratic return before flows), limit_pct, locked, suspended.
- ``stocks.parquet``: static per stock: ts_code, name, industry, board, list_date, delist_date, beta,
  idio_vol, quant_pref.
- ``quant_books.parquet``: trade_date, strategy (IE/MN/DMA), benchmark, part (bench/off), value_cny,
  sold_cny, ret; ``dma.parquet``: trade_date, gross_cny, equity_cny, sell_frac_next, stress (basis-shock
  profile in [0, 1]), depth_factor (V multiplier of the impact law that day).
- ``funds.parquet``: fund_id, manager, strategy, benchmark, hedge_index, tau (off-benchmark share),
  alpha_ann, aum_rel, inception_date; ``fund_holdings.parquet``: date, fund_id, ts_code, weight (of the
  fund's long book, sums to 1), value_cny (fund AUM share of the books) on the first session of each of
  the last months (``holdings_months``).
- ``etf_flows.parquet``: trade_date, ts_code, index_code, net_inflow_cny (creations at the previous
  close), fd_share_units.
- ``basis.parquet``: trade_date, fut_code, basis_ann (process value), shock (scripted component),
  main_contract, main_basis_ann (from the written close and spot).
- ``indices.parquet``: trade_date, index_code, level, n_members.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from sc_assets.partitions import trading_days_between, week_end_sessions
from sc_assets.simulator.derivatives import PRODUCTS, basis_process, futures_tables
from sc_assets.simulator.funds import fund_daily_returns, make_funds, sleeve_tau, weekly_navs
from sc_assets.simulator.market import BOOKS, ETFS, SW_L1, Engine
from sc_assets.simulator.params import SimulationParams
from sc_assets.simulator.universe import BOARDS, make_universe
from sc_assets.simulator.writers import LandingWriter

HOLDINGS_MONTHS = 7
VENDOR_FEEDS = ("stock_daily", "daily_basic", "adj_factor", "index_daily")
BIG_FEEDS = ("stock_daily", "daily_basic", "adj_factor", "st_flags")


@dataclass
class SimulationResult:
    root: Path
    days: int
    stocks: int
    files: int
    seconds: float


def _ymd(d: pd.Timestamp) -> str:
    return d.strftime("%Y%m%d")


def _str_col(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


def simulate(root: str | Path, params: SimulationParams | None = None, progress: bool = False) -> SimulationResult:
    """Simulate the market described by ``params`` into ``root`` (landing/ and ground_truth/)."""
    t0 = time.perf_counter()
    p = params or SimulationParams()
    root = Path(root)
    days = trading_days_between(p.start, p.end)
    if len(days) < 5:
        raise ValueError(f"need at least 5 sessions between {p.start} and {p.end}")
    rng = np.random.default_rng(p.seed)
    u = make_universe(p, rng, days)
    basis, shock, stress = basis_process(days, p, rng)
    funds = make_funds(p, rng, days)
    eng = Engine(p, u, days, rng, stress)
    eng.sleeve_tau = sleeve_tau(funds, p)
    gt = root / "ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    manifest = gt / "landing_manifest.json"
    previous = set(json.loads(manifest.read_text())) if manifest.exists() else set()
    writer = LandingWriter(root)
    codes = pa.array(u.code.astype(str))
    t_n = len(days)
    vendor_days = set(range(p.gbk_every // 2, t_n, p.gbk_every)) if p.gbk_every else set()
    extra = set(rng.choice(t_n, size=min(p.extra_gbk_days, t_n), replace=False).tolist()) - vendor_days
    truth_writer = None
    truth_batches: list[pa.Table] = []
    holding_days = sorted(eng.month_first)[-HOLDINGS_MONTHS:]
    holdings: list[pa.Table] = []
    etf_rec = []
    big_fmt = "parquet" if p.output_format == "parquet" else "csv"

    def flush_truth():
        nonlocal truth_writer, truth_batches
        if not truth_batches:
            return
        tab = pa.concat_tables(truth_batches)
        if truth_writer is None:
            truth_writer = pq.ParquetWriter(gt / "stock_days.parquet", tab.schema, compression="snappy",
                                            use_dictionary=["ts_code", "trade_date"],
                                            write_statistics=["trade_date", "ts_code"])
        truth_writer.write_table(tab)
        truth_batches = []

    for t in tqdm(range(t_n), desc="simulate", unit="day", disable=not progress):
        d = days[t]
        ymd = _ymd(d)
        out = eng.step(t)
        tr, li = out.trading, out.listed
        n_tr, n_li = len(tr), len(li)
        fmt_v = "gbk" if t in vendor_days else None
        date_tr = _str_col(ymd, n_tr)
        bars = pa.table({"ts_code": codes.take(pa.array(tr)), "trade_date": date_tr,
                         **{k: pa.array(v) for k, v in out.bars.items()}})
        basic = pa.table({"ts_code": bars.column("ts_code"), "trade_date": date_tr,
                          **{k: pa.array(v) for k, v in out.basic.items()}})
        li_codes = codes.take(pa.array(li))
        date_li = _str_col(ymd, n_li)
        adj = pa.table({"ts_code": li_codes, "trade_date": date_li, "adj_factor": pa.array(out.adj)})
        stf = pa.table({"ts_code": li_codes, "trade_date": date_li, "is_st": pa.array(out.st.astype(np.int8))})
        for feed, tab in (("stock_daily", bars), ("daily_basic", basic), ("adj_factor", adj), ("st_flags", stf)):
            if fmt_v and feed in VENDOR_FEEDS:
                writer.write(feed, ymd, tab, "gbk")
            elif feed in ("stock_daily", "daily_basic") and t in extra:
                writer.write(feed, ymd, tab, "gbk")
            elif big_fmt == "parquet":
                i = tab.column_names.index("trade_date")
                writer.write(feed, ymd, tab.set_column(i, "trade_date", pa.array(np.full(len(tab), d.date()),
                                                                                    pa.date32())), "parquet")
            else:
                writer.write(feed, ymd, tab)
        writer.write("index_daily", ymd, _rows_table(out.index_rows, ymd, INDEX_COLS), fmt_v or "csv")
        writer.write("etf_share", ymd, _rows_table(out.etf_rows, ymd, ETF_COLS))
        for j, row in enumerate(out.etf_rows):
            etf_rec.append((d, row[0], row[3], eng.etf_flow_cny[t, j], row[1] * 1e4))
        if t in eng.month_first:
            iw = eng.index_weight_rows(t)
            n_w = sum(len(pos) for _c, pos, _w in iw)
            writer.write("index_weight", ymd, pa.table({
                "index_code": pa.array(np.concatenate([np.full(len(pos), c, dtype=object) for c, pos, _w in iw])),
                "con_code": codes.take(pa.array(np.concatenate([pos for _c, pos, _w in iw]))),
                "trade_date": _str_col(ymd, n_w), "weight": pa.array(np.concatenate([w for _c, _p, w in iw]))}))
        if t in holding_days:
            holdings.append(_fund_holdings(eng, funds, codes, d))
        tt = {"trade_date": pa.array(np.full(n_li, d.date()), pa.date32()), "ts_code": li_codes}
        for k, v in out.truth.items():
            arr = np.asarray(v)
            tt[k] = pa.array(arr.astype(np.float32) if arr.dtype.kind == "f" and k not in ("lncap", "quant_cny") else arr)
        truth_batches.append(pa.table(tt))
        if len(truth_batches) >= 60:
            flush_truth()
    flush_truth()
    if truth_writer is not None:
        truth_writer.close()

    # reference snapshots, futures, funds (after the loop: they do not feed back into prices)
    last = _ymd(days[-1])
    delist = pd.Series(pd.DatetimeIndex(days.append(pd.DatetimeIndex([days[-1] + pd.Timedelta(days=1)]))[
        np.minimum(u.delist_idx, t_n)]))
    delist[u.delist_idx >= t_n] = pd.NaT
    listed_by_end = u.list_idx < t_n
    names = np.where(eng.st_until > t_n - 1, np.char.add("ST", u.name.astype(str)), u.name.astype(str))
    sb = pd.DataFrame({"ts_code": u.code.astype(str), "name": names,
                       "industry": np.asarray(SW_L1)[u.industry], "market": np.asarray(BOARDS)[u.board],
                       "list_date": pd.DatetimeIndex(u.list_date).strftime("%Y%m%d"),
                       "delist_date": delist.dt.strftime("%Y%m%d")})[listed_by_end]
    writer.write("stock_basic", last, pa.Table.from_pandas(sb, preserve_index=False))
    spot = {code: eng.index_levels[code] for code in eng.index_levels}
    fut_rng = np.random.default_rng([p.seed, 7])
    fut, fb = futures_tables(days, spot, basis, p, fut_rng)
    fut["trade_date"] = pd.DatetimeIndex(fut["trade_date"]).strftime("%Y%m%d")
    _write_by_date(writer, "fut_daily", fut, "trade_date")
    fb_out = fb.copy()
    for c in ("list_date", "delist_date"):
        fb_out[c] = pd.DatetimeIndex(fb_out[c]).strftime("%Y%m%d")
    writer.write("fut_basic", last, pa.Table.from_pandas(fb_out, preserve_index=False))
    main = _main_basis(fut, fb, days, spot)
    main_basis = {"000905.SH": main.get("IC", np.full(t_n, dict(p.basis_mean)["IC"])),
                  "000852.SH": main.get("IM", np.full(t_n, dict(p.basis_mean)["IM"]))}
    main_basis = {k: np.where(np.isfinite(v), v, dict(p.basis_mean)["IC" if k == "000905.SH" else "IM"])
                  for k, v in main_basis.items()}
    fund_rng = np.random.default_rng([p.seed, 11])
    daily = fund_daily_returns(funds, days, eng.book_ret, BOOKS, eng.index_levels, main_basis, p, fund_rng)
    we = week_end_sessions(days)
    navs = weekly_navs(funds, days, daily, p, fund_rng, we)
    navs["nav_date"] = pd.DatetimeIndex(navs["nav_date"]).strftime("%Y%m%d")
    _write_by_date(writer, "fund_nav", navs, "nav_date")
    writer.close()
    # a re-simulation with other settings removes the landing files of the previous run it did not rewrite
    # (only files listed in the previous manifest: a user's own landing files are never touched)
    written = {str(p_.relative_to(root)) for p_ in writer.paths}
    for rel in sorted(previous - written):
        (root / rel).unlink(missing_ok=True)
    manifest.write_text(json.dumps(sorted(written)))

    # ground truth tables
    (gt / "params.json").write_text(p.to_json())
    fr = pd.DataFrame(eng.factors, columns=["market", "size", "nlsize"] + [f"ind_{x}" for x in SW_L1])
    fr.insert(0, "trade_date", days.date)
    fr.to_parquet(gt / "factor_returns.parquet", index=False)
    pd.DataFrame({"ts_code": u.code.astype(str), "name": u.name.astype(str),
                  "industry": np.asarray(SW_L1)[u.industry], "board": np.asarray(BOARDS)[u.board],
                  "list_date": pd.DatetimeIndex(u.list_date).date, "delist_date": delist.dt.date,
                  "beta": u.beta, "idio_vol": u.idio_vol, "quant_pref": u.quant_pref}
                 ).to_parquet(gt / "stocks.parquet", index=False)
    qb = []
    for k, (s, b, part) in enumerate(BOOKS):
        qb.append(pd.DataFrame({"trade_date": days.date, "strategy": s, "benchmark": b, "part": part,
                                "value_cny": eng.book_val[:, k], "sold_cny": eng.book_sold[:, k],
                                "ret": eng.book_ret[:, k]}))
    pd.concat(qb).to_parquet(gt / "quant_books.parquet", index=False)
    pd.DataFrame({"trade_date": days.date, "gross_cny": eng.dma_path[:, 0], "equity_cny": eng.dma_path[:, 1],
                  "sell_frac_next": eng.dma_path[:, 2], "stress": stress,
                  "depth_factor": 1.0 - p.liquidity_dryup * stress}).to_parquet(gt / "dma.parquet", index=False)
    fo = funds.copy()
    fo["inception_date"] = days[fo["inception_idx"].to_numpy()].date
    fo.drop(columns=["inception_idx"]).to_parquet(gt / "funds.parquet", index=False)
    if holdings:
        pq.write_table(pa.concat_tables(holdings), gt / "fund_holdings.parquet", compression="snappy")
    pd.DataFrame(etf_rec, columns=["trade_date", "ts_code", "index_code", "net_inflow_cny", "fd_share_units"]
                 ).assign(trade_date=lambda x: pd.DatetimeIndex(x["trade_date"]).date).to_parquet(
        gt / "etf_flows.parquet", index=False)
    bas = []
    for fut_code in PRODUCTS:
        mb = main.get(fut_code, np.full(t_n, np.nan))
        bas.append(pd.DataFrame({"trade_date": days.date, "fut_code": fut_code, "basis_ann": basis[fut_code],
                                 "shock": shock[fut_code], "main_contract": main.get(fut_code + "_code", None),
                                 "main_basis_ann": mb}))
    pd.concat(bas).to_parquet(gt / "basis.parquet", index=False)
    pd.concat([pd.DataFrame({"trade_date": days.date, "index_code": code, "level": eng.index_levels[code],
                             "n_members": eng.index_members_n[code]}) for code in eng.index_levels]
              ).to_parquet(gt / "indices.parquet", index=False)
    (gt / "summary.json").write_text(json.dumps({
        "sessions": t_n, "stocks": u.n, "first": str(days[0].date()), "last": str(days[-1].date()),
        "landing_files": writer.files, "impact_y": p.impact_y, "funds": len(funds),
        "etfs": [e[0] for e in ETFS]}, indent=2))
    return SimulationResult(root=root, days=t_n, stocks=u.n, files=writer.files, seconds=time.perf_counter() - t0)


INDEX_COLS = ["ts_code", "open", "high", "low", "close", "pre_close", "vol", "amount"]
ETF_COLS = ["ts_code", "fd_share", "close", "index_code"]


def _rows_table(rows: list[tuple], ymd: str, cols: list[str]) -> pa.Table:
    data = {c: pa.array([x if isinstance(x, str) else float(x) for x in v])
            for c, v in zip(cols, zip(*rows, strict=True), strict=True)}
    data["trade_date"] = _str_col(ymd, len(rows))
    return pa.table(data)


def _write_by_date(writer: LandingWriter, feed: str, df: pd.DataFrame, date_col: str) -> None:
    """One file per value of ``date_col`` (YYYYMMDD strings), slicing one sorted Arrow table."""
    df = df.sort_values(date_col, kind="stable").reset_index(drop=True)
    tab = pa.Table.from_pandas(df, preserve_index=False)
    keys = df[date_col].to_numpy()
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        writer.write(feed, str(keys[a]), tab.slice(a, b - a))


def _main_basis(fut: pd.DataFrame, fb: pd.DataFrame, days: pd.DatetimeIndex, spot: dict) -> dict:
    """Main-contract (largest oi, ties nearer expiry) annualised basis per product from the written rows."""
    f = fut.merge(fb[["ts_code", "fut_code", "delist_date", "underlying"]], on="ts_code")
    f["day"] = pd.to_datetime(f["trade_date"], format="%Y%m%d")
    f = f.sort_values(["fut_code", "day", "oi", "delist_date"], ascending=[True, True, False, True])
    m = f.groupby(["fut_code", "day"], sort=False).head(1)
    out = {}
    pos = days.get_indexer(m["day"])
    for fut_code, g in m.assign(pos=pos).groupby("fut_code"):
        s = np.asarray([spot[g["underlying"].iloc[0]][i] for i in g["pos"]])
        dte = np.maximum((g["delist_date"] - g["day"]).dt.days.to_numpy(), 1)
        b = np.full(len(days), np.nan)
        b[g["pos"].to_numpy()] = (g["close"].to_numpy() / s - 1) * 365.0 / dte
        codes = np.full(len(days), None, dtype=object)
        codes[g["pos"].to_numpy()] = g["ts_code"].to_numpy()
        out[fut_code] = b
        out[fut_code + "_code"] = codes
    return out


def _fund_holdings(eng: Engine, funds: pd.DataFrame, codes: pa.Array, d: pd.Timestamp) -> pa.Table:
    """Per-fund long-book weights and value on ``d``: (1 - tau) bench book + tau off book of its strategy."""
    price = np.where(np.isfinite(eng.last_close), eng.last_close, 0.0)
    col = {bk: k for k, bk in enumerate(BOOKS)}
    out = []
    aum_tot = {}
    for (strat, b), g in funds.groupby(["strategy", "hedge_index"]):
        aum_tot[(strat, b)] = g["aum_rel"].sum()
    for f in funds.itertuples():
        strat = "IE" if f.strategy == "index_enhancement" else "MN"
        vb = eng.books[col[(strat, f.hedge_index, "bench")]] * price
        vo = eng.books[col[(strat, f.hedge_index, "off")]] * price
        if vb.sum() <= 0 or vo.sum() <= 0:
            continue
        w = (1 - f.tau) * vb / vb.sum() + f.tau * vo / vo.sum()
        nz = np.flatnonzero(w > 0)
        share = f.aum_rel / aum_tot[(f.strategy, f.hedge_index)]
        out.append((f.fund_id, nz, w[nz], w[nz] * (vb.sum() + vo.sum()) * share))
    if not out:
        return pa.table({"date": pa.array([], pa.date32())})
    n_rows = sum(len(nz) for _f, nz, _w, _v in out)
    return pa.table({
        "date": pa.array(np.full(n_rows, d.date()), pa.date32()),
        "fund_id": pa.array(np.concatenate([np.full(len(nz), fid, dtype=object) for fid, nz, _w, _v in out])),
        "ts_code": codes.take(pa.array(np.concatenate([nz for _f, nz, _w, _v in out]))),
        "weight": pa.array(np.concatenate([w for _f, _n, w, _v in out])),
        "value_cny": pa.array(np.concatenate([v for _f, _n, _w, v in out]))})
