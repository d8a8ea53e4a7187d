"""Crowding assets (group ``crowding``): thin wrappers over :mod:`sc_assets.analytics.crowding`.

``quant_holdings_estimate``, ``crowding_table`` and ``days_to_liquidate`` are daily (trading-day
partitions, single-run backfill) and one subsettable multi-asset (op ``crowding_tables``; issue
11): each chunk of a run reads ``marts.stock_daily_panel`` once, estimates the holdings on its
sessions x stocks grid and builds both bucket tables from them in memory. Reads: the panel with
a lookback of ``adv_window + 5`` sessions (the 20-day ADV; none when only the holdings are
materialized) and ``staging.stg_index_weight`` from up to 400 calendar days before the first key
(carried forward from the latest rebalance). A long single-run backfill is computed in chunks of
``CHUNK_SESSIONS`` sessions (each a vectorised pass with its own lookback), so memory stays
bounded on the full market. Run config goes under ``ops.crowding_tables`` (the holdings' sleeves
under its ``holdings`` key).
"""

# no `from __future__ import annotations`: Dagster resolves Config annotations at decoration time

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sc_assets.analytics import crowding as cr
from sc_assets.assets._metadata import range_metadata, table_metadata
from sc_assets.assets._upstream import INDEX_WEIGHT
from sc_assets.assets._upstream import STOCK_PANEL as PANEL
from sc_assets.partitions import (
    CalendarRangeError,
    daily_asset_args,
    month_chunks,
    previous_trading_day,
    to_key,
    trading_days_between,
)
from sc_assets.resources import Warehouse

LAYER = "crowding"
HOLDINGS = dg.AssetKey([LAYER, "quant_holdings_estimate"])
CROWDING = dg.AssetKey([LAYER, "crowding_table"])
DTL = dg.AssetKey([LAYER, "days_to_liquidate"])
KINDS = {"pandas", "numpy"}

H_DEFAULTS = cr.HoldingsParams()
C_DEFAULTS = cr.CrowdingParams()
PANEL_COLUMNS = [
    "trade_date", "ts_code", "close", "adj_close", "ret", "vol", "amount", "total_mv", "free_float_mv",
    "is_suspended", "limit_pct",
]
WEIGHT_LOOKBACK_DAYS = 400
SIGMA_WINDOW = 60
#: a long single-run backfill is computed in chunks of this many sessions (bounded memory; each
#: chunk is one vectorised pass with its own lookback)
CHUNK_SESSIONS = 120


def chunks(keys: list[str], size: int | None = None) -> list[list[str]]:
    """Chunks of at most ``size`` sessions (default ``CHUNK_SESSIONS``) ending at month ends."""
    return month_chunks(keys, size or CHUNK_SESSIONS)


def _run_meta(context: dg.AssetExecutionContext, last: pd.DataFrame, rows: int, keys: list[str],
              asset_key: dg.AssetKey | None = None, **kw) -> dict:
    """Run totals + the last chunk's schema/preview. Heavy entries (see ``range_metadata``) and the
    JSON ones (parameters, lists) go on the last partition's event only: Dagster copies the
    returned metadata into every partition's event of a multi-partition run (issue 11)."""
    meta = table_metadata(last, **kw)
    meta["dagster/row_count"] = int(rows)
    if keys:
        meta["date_range"] = f"{keys[0]} .. {keys[-1]}"
    return range_metadata(context, meta, asset_key=asset_key, json_once=True)


class HoldingsConfig(dg.Config):
    """Overrides of :class:`sc_assets.analytics.crowding.HoldingsParams` (study defaults; see its docstring
    for which values are assumptions). ``scale_to_micro_hs`` > 0 (default 0.1607, the study's Table 2
    small-cap row, METHODS §7 calibration target) scales the sleeves each day to that holdings share
    of the micro-cap bucket, keeping their mix — so the estimate fits a market of any CNY size (the
    synthetic one too); 0 keeps constant CNY AUM (1 tn private + 274.5 bn public quant)."""

    private_quant_cny: float = H_DEFAULTS.private_quant_cny
    ie_share: float = H_DEFAULTS.ie_share
    public_quant_cny: float = H_DEFAULTS.public_quant_cny
    dma_leverage: float = H_DEFAULTS.dma_leverage
    dma_share_of_neutral: float = H_DEFAULTS.dma_share_of_neutral
    ie_csi500_share: float = H_DEFAULTS.ie_csi500_share
    hedge_csi500_share: float = H_DEFAULTS.hedge_csi500_share
    tau: float = H_DEFAULTS.tau
    beta: float = H_DEFAULTS.beta
    scale_to_micro_hs: float = 0.1607
    micro_fraction: float = H_DEFAULTS.micro_fraction

    def params(self) -> cr.HoldingsParams:
        return replace(
            H_DEFAULTS,
            private_quant_cny=self.private_quant_cny, ie_share=self.ie_share, public_quant_cny=self.public_quant_cny,
            dma_leverage=self.dma_leverage, dma_share_of_neutral=self.dma_share_of_neutral,
            ie_csi500_share=self.ie_csi500_share, hedge_csi500_share=self.hedge_csi500_share, tau=self.tau,
            beta=self.beta, scale_to_micro_hs=self.scale_to_micro_hs or None, micro_fraction=self.micro_fraction,
        )


class CrowdingConfig(dg.Config):
    """Run config of the ``crowding_tables`` step: overrides of
    :class:`sc_assets.analytics.crowding.CrowdingParams` (METHODS §8 defaults) for the bucket
    tables, and ``holdings`` (:class:`HoldingsConfig`) for ``quant_holdings_estimate``.

    ``user_lists``: bucket name -> list of ts_codes (e.g. a portfolio's names)."""

    annual_turnover: float = C_DEFAULTS.annual_turnover
    days_per_year: float = C_DEFAULTS.days_per_year
    rho: float = C_DEFAULTS.rho
    adv_window: int = C_DEFAULTS.adv_window
    index_codes: list[str] = list(C_DEFAULTS.index_codes)
    n_deciles: int = C_DEFAULTS.n_deciles
    micro_fraction: float = C_DEFAULTS.micro_fraction
    micro_n: int = 0
    participations: list[float] = list(C_DEFAULTS.participations)
    user_lists: dict[str, list[str]] = {}
    holdings: HoldingsConfig = HoldingsConfig()

    def params(self) -> cr.CrowdingParams:
        return replace(
            C_DEFAULTS,
            annual_turnover=self.annual_turnover, days_per_year=self.days_per_year, rho=self.rho,
            adv_window=self.adv_window, index_codes=tuple(self.index_codes), n_deciles=self.n_deciles,
            micro_fraction=self.micro_fraction, micro_n=self.micro_n or None,
            participations=tuple(self.participations),
            user_lists={k: tuple(v) for k, v in self.user_lists.items()},
        )


# ---- shared readers (also used by the stress assets) ---------------------------------------


def as_dates(df: pd.DataFrame, cols=("trade_date",)) -> pd.DataFrame:
    """Date columns as Python dates (written as Parquet DATE)."""
    out = df.copy()
    for c in cols:
        if c in out.columns:
            out[c] = pd.to_datetime(out[c]).dt.date
    return out


def lake_table(df: pd.DataFrame) -> pa.Table:
    """``df`` as the Arrow table to write: ``trade_date`` (datetime64) as a Parquet DATE column.

    The same file (types and pandas metadata) as writing :func:`as_dates` of ``df``, without a
    Python ``date`` object per row (issue 11: that conversion cost seconds per chunk)."""
    if not len(df):
        return pa.Table.from_pandas(as_dates(df), preserve_index=False)
    i = list(df.columns).index("trade_date")
    day = pd.to_datetime(df["trade_date"]).to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    table = pa.Table.from_pandas(df.drop(columns="trade_date"), preserve_index=False)
    table = table.add_column(i, "trade_date", pa.array(day, type=pa.date32()))
    meta = pa.Table.from_pandas(as_dates(df.iloc[:1]), preserve_index=False).schema.metadata
    return table.replace_schema_metadata(meta)


def lookback_keys(keys: list[str], n: int) -> list[str]:
    """The run's keys plus ``n`` sessions before the first one (fewer at the calendar start)."""
    first, last = min(keys), max(keys)
    start = first
    for k in range(n, 0, -1):
        try:
            start = to_key(previous_trading_day(first, k))
            break
        except CalendarRangeError:
            continue
    return [to_key(d) for d in trading_days_between(start, last)]


def read_panel(warehouse: Warehouse, days: list[str], columns=PANEL_COLUMNS) -> pd.DataFrame:
    """Stock panel rows of ``days`` (missing partitions are skipped), trade_date as datetime64."""
    try:
        table = warehouse.read_days("marts", "stock_daily_panel", days, columns, required=True, arrow=True)
    except FileNotFoundError:
        df = pd.DataFrame({c: pd.Series(dtype="float") for c in columns})
        df["trade_date"] = pd.to_datetime(df["trade_date"]).astype("datetime64[ns]")
        if "is_suspended" in df.columns:
            df["is_suspended"] = df["is_suspended"].astype(bool)
        return df
    # types set in Arrow (no Python date objects, no object-dtype booleans; issue 11)
    for c in (*_FLOAT_COLUMNS, "is_suspended", "trade_date"):
        if c in table.column_names:
            i = table.column_names.index(c)
            col = table.column(i)
            if c == "is_suspended":
                col = pc.fill_null(col.cast(pa.bool_()), False)
            elif c == "trade_date":
                col = col.cast(pa.timestamp("ns"))
            else:
                col = col.cast(pa.float64())
            table = table.set_column(i, c, col)
    return table.to_pandas()


_FLOAT_COLUMNS = ("close", "adj_close", "ret", "vol", "amount", "total_mv", "free_float_mv", "limit_pct")


def read_index_weights(warehouse: Warehouse, first: str, last: str) -> pd.DataFrame:
    """Index weight rows published from ``WEIGHT_LOOKBACK_DAYS`` before ``first`` up to ``last``."""
    start = (pd.Timestamp(first) - pd.Timedelta(days=WEIGHT_LOOKBACK_DAYS)).strftime("%Y-%m-%d")
    cols = ["index_code", "con_code", "trade_date", "weight"]
    files = warehouse.files("staging", "stg_index_weight", start, last)
    if not files:
        return pd.DataFrame({"index_code": pd.Series(dtype="str"), "con_code": pd.Series(dtype="str"),
                             "trade_date": pd.Series(dtype="datetime64[ns]"), "weight": pd.Series(dtype="float")})
    # as ``warehouse.read(start=, end=)``, with the types set in Arrow (no Python date objects; issue 11);
    # the month files also hold days outside the window: the one window rule drops them
    t = pq.ParquetDataset(files, partitioning=None).read(columns=cols)
    t = t.set_column(2, "trade_date", t.column(2).cast(pa.timestamp("ns"))).set_column(3, "weight", t.column(3).cast(pa.float64()))
    return weights_window(t.to_pandas(), first, last)


def weights_window(iw: pd.DataFrame, first: str, last: str) -> pd.DataFrame:
    """The rows of run-level index weights (:func:`read_index_weights` of the whole run) that
    :func:`read_index_weights` ``(first, last)`` returns: one read per run, not per chunk."""
    start = pd.Timestamp(first) - pd.Timedelta(days=WEIGHT_LOOKBACK_DAYS)
    d = iw["trade_date"]
    return iw[(d >= start) & (d <= pd.Timestamp(last))].reset_index(drop=True)


def read_holdings(warehouse: Warehouse, days: list[str]) -> pd.DataFrame:
    """quant_holdings_estimate rows of ``days``; a clear error if none is in the lake."""
    df = warehouse.read_days(LAYER, "quant_holdings_estimate", days, None, required=True)
    df["trade_date"] = df["trade_date"].astype("datetime64[ns]")
    return df


#: panel columns the crowding tables need (ADV from amount; buckets from total_mv/is_suspended)
CROWDING_COLUMNS = ["trade_date", "ts_code", "amount", "free_float_mv", "total_mv", "is_suspended"]


def stock_state(
    warehouse: Warehouse, keys: list[str], cparams: cr.CrowdingParams, sigma: bool = False,
    columns: list[str] = PANEL_COLUMNS,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per stock-day inputs of the stress layer for ``keys``.

    Returns (stock, buckets, index_weights): stock = panel rows of the keys (``columns``) +
    holdings (CNY) and by sleeve (hold_<sleeve>) + adv_cny [+ adv_shares if ``vol`` is among the
    columns] (``adv_window`` sessions, inclusive) [+ sigma_d, 60 sessions, if ``sigma``]; buckets =
    :func:`assign_buckets` rows; index_weights: :func:`read_index_weights` for ``keys``. ADV and
    sigma are rolling windows on sessions x stocks arrays (:func:`sc_assets.analytics.crowding.wide_rolling`); the holdings
    are joined on integer (day, stock) keys.
    """
    n_back = max(cparams.adv_window, SIGMA_WINDOW if sigma else 0) + 5
    panel = read_panel(warehouse, lookback_keys(keys, n_back), columns)
    stats = cr.liquidity_stats(cparams.adv_window, min(cparams.adv_min_periods, cparams.adv_window),
                               SIGMA_WINDOW if sigma else None, 20, shares="vol" in columns)
    _, _, liq, di, si = cr.wide_rolling(panel, stats)
    day_set = pd.to_datetime(pd.Index(keys)).astype("datetime64[ns]")
    today = panel["trade_date"].isin(day_set).to_numpy()
    stock = panel[today].reset_index(drop=True)
    del panel
    hold = read_holdings(warehouse, keys)
    hold_cols = ["holdings"] + [c for c in hold.columns if c.startswith("hold_")]
    pos = cr.row_positions(hold, stock, "crowding.quant_holdings_estimate")
    hit = pos >= 0
    for c in hold_cols:
        stock[c] = np.where(hit, hold[c].to_numpy(dtype=float, na_value=np.nan)[np.where(hit, pos, 0)], np.nan)
    stock["holdings"] = stock["holdings"].fillna(0.0)
    for name, a in liq.items():
        stock[name] = a[di[today], si[today]]
    iw = read_index_weights(warehouse, min(keys), max(keys))
    buckets = cr.assign_buckets(stock, iw, cparams)
    return stock, buckets, iw


# ---- the crowding_tables step: quant_holdings_estimate, crowding_table, days_to_liquidate ----------

HOLDINGS_DESCRIPTION = """Estimated quant holdings per stock-day (CNY) by strategy sleeve, from benchmark weights plus a small-cap tilt.

METHODS §7: sleeve AUM (study: ~1 tn CNY private quant stock holdings, 71 % index
enhancement, DMA at 4x, public quant 274.5 bn) x sleeve weight ``(1-τ) w_b + τ u`` with
``w_b`` the index weights carried forward from the latest rebalance (reads
``staging.stg_index_weight`` from 400 calendar days before the first key) and ``u`` ∝
free-float cap^β over non-constituents. Columns: trade_date, ts_code, free_float_mv,
hold_<sleeve> (CNY), holdings (CNY), holdings_share (of free float), source. Assumptions are
listed in the ``parameters`` metadata. Computed with crowding_table and days_to_liquidate in one
pass (op ``crowding_tables``; run config of the sleeves under ``holdings``).
"""

CROWDING_DESCRIPTION = """Table 2 per day, per bucket and per stock: free-float cap, quant holdings, HS, TS, RS and 20-day ADV.

METHODS §8: HS = Q/FF, TS = Q·(A/D)/ADV (A = 30x, D = 242), RS = ρ·Q/ADV (ρ = 10 %/day) — the
constants that reproduce the study's Table 2. Buckets: index membership (CSI300/500/1000/2000,
weights carried forward), total-cap deciles (D01 smallest), micro-cap (smallest 20 % of traded
stocks, like the study's "Wind small-cap 1000"), user lists, the whole market; ``level`` =
'bucket' or 'stock'. Reads ``adv_window + 5`` sessions of marts.stock_daily_panel before the
first key (ADV lookback). Computed with quant_holdings_estimate and days_to_liquidate in one pass
(op ``crowding_tables``).
"""

DTL_DESCRIPTION = """Days to liquidate quant holdings at 10 % / 20 % of ADV, per stock and bucket, with the share of holdings needing >1/3/5 days.

METHODS §8 / ESMA (2020): DTL = Q / (p·ADV); bucket DTL = holdings-weighted mean. Same buckets
and ADV lookback as ``crowding_table``. Columns: trade_date, bucket_type, bucket, participation,
n_stocks, holdings (CNY with an ADV), holdings_no_adv, dtl_days, share_gt_1d/3d/5d. Computed with
quant_holdings_estimate and crowding_table in one pass (op ``crowding_tables``).
"""

SLEEVES_CHECK = dg.AssetCheckSpec(
    "sleeves_sum_to_aum", asset=HOLDINGS, blocking=True,
    description="each sleeve's holdings sum to its AUM every day (CNY AUM mode), or the micro-cap bucket holds the "
                "target share of its free float (scaled mode)")
#: the check's tolerance (relative error of a sleeve's day sum, or of the micro-cap holdings share)
CHECK_TOLERANCE = 1e-6


def _arrow_floats(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).cast(pa.float64()).to_numpy()


class _ChunkInputs:
    """Per stock-day inputs of one chunk on a sessions x stocks grid of the chunk's panel rows.

    ``grid``: the keys' sessions x every stock with a panel row in the read window (keys plus
    ``lookback`` sessions); ``ff``: free-float cap (CNY) on it; ``mv`` / ``susp``: total cap and
    suspension flag per panel row of the keys (grid input order); ``adv``: rolling mean of
    ``amount`` over the read window (None without lookback). Read and computed in Arrow / numpy,
    no pandas frame of the panel (issue 11)."""

    def __init__(self, warehouse: Warehouse, keys: list[str], params: cr.CrowdingParams, lookback: int):
        try:
            t = warehouse.read_days("marts", "stock_daily_panel", lookback_keys(keys, lookback) if lookback and keys else keys,
                                    CROWDING_COLUMNS if lookback else [c for c in CROWDING_COLUMNS if c != "amount"],
                                    required=True, arrow=True)  # amount: for the ADV only
        except FileNotFoundError:
            t = pa.table({"trade_date": pa.array([], pa.date32()), "ts_code": pa.array([], pa.string()),
                          **{c: pa.array([], pa.float64()) for c in ("amount", "free_float_mv", "total_mv")},
                          "is_suspended": pa.array([], pa.bool_())})
        day = t.column("trade_date").cast(pa.date32()).cast(pa.int32()).to_numpy().astype(np.int64)
        full = cr.StockGrid(day, t.column("ts_code"), "marts.stock_daily_panel")
        self.adv = None
        if lookback:
            self.adv = cr.rolling_stat(full.wide(_arrow_floats(t, "amount")), params.adv_window,
                                       min(params.adv_min_periods, params.adv_window))
        key_days = pd.to_datetime(pd.Index(keys)).to_numpy(dtype="datetime64[D]").astype(np.int64)
        in_keys = np.isin(full.days, key_days)
        self.grid, rows = full.select_days(in_keys)
        if self.adv is not None:
            self.adv = self.adv[in_keys]
        self.ff = self.grid.wide(_arrow_floats(t, "free_float_mv")[rows])
        self.mv = _arrow_floats(t, "total_mv")[rows]
        self.susp = pc.fill_null(t.column("is_suspended").cast(pa.bool_()), False).to_numpy()[rows]


def _holdings_chunk(inp: _ChunkInputs, iw: pd.DataFrame, params: cr.HoldingsParams):
    """Holdings of one chunk (:func:`sc_assets.analytics.crowding.holdings_on_grid`) on the grid of
    the stocks with a row on the keys' sessions (the grid a read of the keys alone gives, so the
    day sums run over the same cells). Returns (frame to write, holdings on ``inp.grid`` (NaN
    where no row), worst check error)."""
    g = inp.grid
    cols = g.present.any(axis=0)
    hg = g.select_codes(cols)
    ff = inp.ff[:, cols]
    mv = traded = None
    if params.scale_to_micro_hs is not None:
        mv = hg.wide(inp.mv)
        traded = hg.wide(cr._traded_values(inp.mv, inp.susp), False, bool)
    hold, total, micro = cr.holdings_on_grid(hg, ff, iw, params, mv, traded)
    out = cr.holdings_frame(hg, ff, hold, total)
    q = np.full(g.shape, np.nan)
    q[:, cols] = np.where(hg.present, total, np.nan)

    # day sums straight on the grid (cells without a row hold 0 and are never micro-cap)
    worst = 0.0
    has_row = hg.present.any(axis=1)  # sessions with a row
    if has_row.any() and params.scale_to_micro_hs is None:
        for s in params.sleeves():
            worst = max(worst, float(np.abs(hold[s.name].sum(axis=1)[has_row] / s.gross_cny - 1).max()))
    elif has_row.any():  # scaled mode: the micro-cap bucket holds exactly the target share of its free float
        qm = np.where(micro, np.nan_to_num(total), 0.0).sum(axis=1)
        ffm = np.where(micro, np.nan_to_num(ff), 0.0).sum(axis=1)
        has = micro.any(axis=1)
        hs = qm[has] / ffm[has]
        worst = float(np.abs(hs / params.scale_to_micro_hs - 1).max()) if len(hs) else 0.0
    return out, q, worst


def _lake_holdings(warehouse: Warehouse, grid: cr.StockGrid, keys: list[str]) -> np.ndarray:
    """``crowding.quant_holdings_estimate`` of ``keys`` on ``grid`` (CNY; NaN where no row)."""
    h = warehouse.read_days(LAYER, "quant_holdings_estimate", keys, ["trade_date", "ts_code", "holdings"],
                            required=True, arrow=True)
    d, s = grid.locate(h.column("trade_date").cast(pa.date32()).cast(pa.int32()).to_numpy().astype(np.int64),
                       h.column("ts_code"))
    hit = (d >= 0) & (s >= 0)
    q = np.full(grid.shape, np.nan)
    q[d[hit], s[hit]] = _arrow_floats(h, "holdings")[hit]
    return q


class _LakeWriter:
    """Writes the step's tables on one background thread, so a chunk's Parquet encoding and
    fsyncs overlap the next chunk's reads and compute (issue 11: the writes were ~40 % of the
    step's wall time, with a core idle while the main thread computed). At most the previous
    chunk's writes are pending (two chunks' tables in memory); a failed write raises in the step.
    ``seconds``: writer-thread seconds per asset; ``wait``: main-thread seconds spent waiting."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crowding-write")
        self.previous: list = []
        self.current: list = []
        self.seconds: dict[dg.AssetKey, float] = {}
        self.wait = 0.0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        try:
            if exc_type is None:
                self._wait(self.previous + self.current)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, key: dg.AssetKey, table: pa.Table, days: list[str]) -> None:
        self.current.append(self.pool.submit(self._write, key, table, days))

    def end_chunk(self) -> None:
        """Waits for the previous chunk's writes; this chunk's go on while the next one is computed."""
        self._wait(self.previous)
        self.previous, self.current = self.current, []

    def _write(self, key: dg.AssetKey, table: pa.Table, days: list[str]) -> None:
        t = time.perf_counter()
        self.warehouse.write_partitions(LAYER, key.path[-1], table, days=days)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t

    def _wait(self, futures: list) -> None:
        t = time.perf_counter()
        for f in futures:
            f.result()
        self.wait += time.perf_counter() - t


@dg.multi_asset(
    name="crowding_tables",
    specs=[
        dg.AssetSpec(HOLDINGS, description=HOLDINGS_DESCRIPTION, group_name=LAYER, deps=[PANEL, INDEX_WEIGHT],
                     kinds=KINDS, code_version="1", skippable=True),
        dg.AssetSpec(CROWDING, description=CROWDING_DESCRIPTION, group_name=LAYER, deps=[HOLDINGS, PANEL, INDEX_WEIGHT],
                     kinds=KINDS, code_version="1", skippable=True),
        dg.AssetSpec(DTL, description=DTL_DESCRIPTION, group_name=LAYER, deps=[HOLDINGS, PANEL, INDEX_WEIGHT],
                     kinds=KINDS, code_version="1", skippable=True),
    ],
    check_specs=[SLEEVES_CHECK],
    can_subset=True,
    **daily_asset_args(),
)
def crowding_tables(context: dg.AssetExecutionContext, config: CrowdingConfig, warehouse: Warehouse):
    """``crowding.quant_holdings_estimate`` (METHODS §7), ``crowding.crowding_table`` and
    ``crowding.days_to_liquidate`` (METHODS §8) in one pass.

    Per chunk of ``CHUNK_SESSIONS`` sessions the panel (with the ADV lookback) and the index
    weights are read once; the holdings are estimated on the chunk's sessions x stocks grid and
    the bucket tables are built from that grid in memory (issue 11: three assets each reading and
    joining the same inputs, and the tables re-reading the holdings, cost twice the reads and
    two Dagster steps). Any subset can be materialized (subsetting); each asset keeps its key,
    description, checks and metadata; the tables without the holdings read them from the lake.
    A failed blocking holdings check stops the tables (not built from the failing chunk on, no
    materialization), as the check blocked the tables' step when the holdings were a step of
    their own. The lake writes run on a background thread (:class:`_LakeWriter`).

    Timings in each asset's metadata (seconds): ``inputs_seconds`` (the step's reads and shared
    grid inputs: panel, ADV, weights, buckets), ``compute_seconds`` (the asset's own tables and
    Arrow conversion), ``write_seconds`` (its Parquet writes, on the writer thread) and
    ``write_wait_seconds`` (main-thread waits for the writer).
    """
    params = config.params()
    hparams = config.holdings.params()
    keys = sorted(context.partition_keys)
    sel = context.selected_asset_keys
    want_h = HOLDINGS in sel
    tables = [k for k in (CROWDING, DTL) if k in sel]
    check = SLEEVES_CHECK.key in context.selected_asset_check_keys
    rows = {k: 0 for k in ((HOLDINGS,) if want_h else ()) + tuple(tables)}
    last: dict[dg.AssetKey, tuple[pd.DataFrame, pa.Schema]] = {}
    worst_all, no_w, blocked = 0.0, [], False
    iw_run = read_index_weights(warehouse, keys[0], keys[-1]) if keys else None
    sec = {"inputs": 0.0, **{k: 0.0 for k in rows}}
    with _LakeWriter(warehouse) as writer:
        for part in chunks(keys):
            t = time.perf_counter()
            inp = _ChunkInputs(warehouse, part, params, params.adv_window + 5 if tables and not blocked else 0)
            iw = weights_window(iw_run, part[0], part[-1]) if part else read_index_weights(warehouse, "2015-01-05", "2015-01-05")
            sec["inputs"] += time.perf_counter() - t
            q = None
            if want_h:
                t = time.perf_counter()
                out, q, worst = _holdings_chunk(inp, iw, hparams)
                table = lake_table(out)
                writer.submit(HOLDINGS, table, part)
                rows[HOLDINGS] += len(out)
                worst_all = max(worst_all, worst)
                first_reb = iw["trade_date"].min() if len(iw) else None  # a day has weights from the first rebalance on
                no_w += [d for d in part if first_reb is None or pd.Timestamp(d) < first_reb]
                last[HOLDINGS] = (out[out["trade_date"] == out["trade_date"].max()] if len(out) else out, table.schema)
                del out, table
                sec[HOLDINGS] += time.perf_counter() - t
                if check and worst_all >= CHECK_TOLERANCE and tables and not blocked:
                    blocked = True
                    context.log.warning(f"sleeves_sum_to_aum failed (max relative error {worst_all:.3g}): "
                                        "crowding_table and days_to_liquidate are not built")
            if tables and not blocked:
                t = time.perf_counter()
                grid = inp.grid
                q = _lake_holdings(warehouse, grid, part) if q is None else q
                q = np.where(grid.present & np.isnan(q), 0.0, q)  # a stock-day without an estimate holds 0
                buckets = cr.bucket_masks(grid, inp.mv, inp.susp, iw, params)
                sec["inputs"] += time.perf_counter() - t  # shared by both tables
                for k in tables:
                    t = time.perf_counter()
                    if k == CROWDING:
                        out = cr.crowding_table_grid(grid, buckets, inp.ff, q, inp.adv, params)
                        level = (out["bucket_type"] == "stock").to_numpy(dtype=np.int32)
                        out.insert(1, "level", cr._labels(level, pa.array(["bucket", "stock"])))
                    else:
                        out = cr.days_to_liquidate_grid(grid, buckets, q, inp.adv, params.participations,
                                                        params.dtl_thresholds)
                    table = lake_table(out)
                    writer.submit(k, table, part)
                    rows[k] += len(out)
                    last[k] = (out[out["trade_date"] == out["trade_date"].max()] if len(out) else out, table.schema)
                    del out, table
                    sec[k] += time.perf_counter() - t
                del buckets
            del inp, q
            writer.end_chunk()
    timing = {k: {"inputs_seconds": round(sec["inputs"], 3), "compute_seconds": round(sec[k], 3),
                  "write_seconds": round(writer.seconds.get(k, 0.0), 3), "write_wait_seconds": round(writer.wait, 3)}
              for k in rows}
    warehouse.refresh_catalog([(LAYER, k.path[-1]) for k in rows])
    if want_h:
        day_rows, schema = last[HOLDINGS]
        yield dg.MaterializeResult(
            asset_key=HOLDINGS,
            metadata=_run_meta(
                context, as_dates(day_rows), rows[HOLDINGS], keys, asset_key=HOLDINGS, schema=schema,
                parameters=hparams.as_metadata(),
                n_days=len(keys),
                total_holdings_bn_cny_last_day=float(day_rows["holdings"].sum() / 1e9) if len(day_rows) else 0.0,
                days_without_index_weights=no_w[:20],
                n_days_without_index_weights=len(no_w),
                **timing[HOLDINGS],
            ),
            check_results=[dg.AssetCheckResult(
                asset_key=HOLDINGS, check_name="sleeves_sum_to_aum", passed=bool(worst_all < CHECK_TOLERANCE),
                metadata={"max_rel_error": worst_all, "mode": "cny" if hparams.scale_to_micro_hs is None else "scaled"},
            )] if check else [],
        )
    if blocked:
        return
    for k in tables:
        day_rows, schema = last[k]
        if k == CROWDING:
            yield dg.MaterializeResult(asset_key=k, metadata=_crowding_meta(context, day_rows, schema, rows[k], keys, params,
                                                                            **timing[k]))
        else:
            prev = as_dates(day_rows[day_rows["bucket_type"] != "stock"] if len(day_rows) else day_rows)
            yield dg.MaterializeResult(asset_key=k, metadata=_run_meta(
                context, prev, rows[k], keys, asset_key=k, schema=schema,
                preview=prev[prev["bucket_type"].isin(["micro", "index", "all"])] if len(prev) else prev,
                parameters=params.as_metadata(), n_days=len(keys), **timing[k]))


def _crowding_meta(context, day_rows: pd.DataFrame, schema: pa.Schema, rows: int, keys: list[str], params, **extra) -> dict:
    """crowding_table metadata: totals, schema and the last day's Table 2 preview (100m CNY, percent)."""
    last = day_rows[day_rows["level"] == "bucket"] if len(day_rows) else day_rows
    preview = last[last["bucket_type"].isin(["micro", "index", "all"])][
        ["trade_date", "bucket", "n_stocks", "free_float_mv", "holdings", "adv_cny", "holdings_share", "turnover_share",
         "redemption_share"]] if len(last) else last
    if len(preview):
        preview = as_dates(preview).assign(
            free_float_mv=preview["free_float_mv"] / 1e8, holdings=preview["holdings"] / 1e8, adv_cny=preview["adv_cny"] / 1e8,
            holdings_share=100 * preview["holdings_share"], turnover_share=100 * preview["turnover_share"],
            redemption_share=100 * preview["redemption_share"],
        )
    return _run_meta(
        context, as_dates(last), rows, keys, asset_key=CROWDING, schema=schema, preview=preview,
        parameters=params.as_metadata(), n_days=len(keys),
        preview_units="preview: amounts in 100m CNY, shares in percent (last day)",
        adv_lookback_sessions=params.adv_window + 5,
        **extra,
    )
