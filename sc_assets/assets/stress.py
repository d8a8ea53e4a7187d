"""Stress assets (group ``stress``): thin wrappers over :mod:`sc_assets.analytics.stress` and
:mod:`sc_assets.analytics.fire_sale`.

All are unpartitioned tables rebuilt from a window of the lake (declared in each description):
``basis_stress_events`` reads the whole futures basis panel; ``redemption_stress`` the as-of day
(latest quant_holdings_estimate day unless configured) with 65 sessions of panel lookback (60-day
volatility, 20-day ADV); ``fire_sale_simulation`` the wave-1 and wave-2 windows and the as-of
day, each with the same lookback; ``stress_summary`` the other stress tables and the latest
crowding_table day.

Speed (issue 11): the futures panel's rows are kept per lake file in a cache under
``<root>/.cache/stress`` (only new or rewritten month files are read); the stress state of a day
is built once per process (redemption_stress and the fire-sale scenario of the daily update);
the fire-sale windows are reused by fingerprint. Stocks and panels are sorted by key before
use, so the tables do not depend on the row order of the lake files.
"""

# no `from __future__ import annotations`: Dagster resolves Config annotations at decoration time

import hashlib
import json
import os
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sc_assets.analytics import crowding as cr
from sc_assets.analytics import fire_sale as fs
from sc_assets.analytics import stress as st
from sc_assets.assets._metadata import table_metadata
from sc_assets.assets._upstream import FUTURES_BASIS as BASIS
from sc_assets.assets._upstream import INDEX_PANEL
from sc_assets.assets.crowding import (
    C_DEFAULTS,
    CROWDING,
    HOLDINGS,
    INDEX_WEIGHT,
    PANEL,
    SIGMA_WINDOW,
    WEIGHT_LOOKBACK_DAYS,
    HoldingsConfig,
    as_dates,
    lookback_keys,
    read_panel,
    stock_state,
)
from sc_assets.partitions import (
    CalendarRangeError,
    previous_trading_day,
    to_key,
    trading_days_between,
)
from sc_assets.resources import Warehouse
from sc_assets.resources.warehouse import atomic_write_parquet, file_days

LAYER = "stress"
EVENTS = dg.AssetKey([LAYER, "basis_stress_events"])
REDEMPTION = dg.AssetKey([LAYER, "redemption_stress"])
REDEMPTION_STOCKS = dg.AssetKey([LAYER, "redemption_stress_by_stock"])
FIRE_SALE = dg.AssetKey([LAYER, "fire_sale_simulation"])
FIRE_STOCKS = dg.AssetKey([LAYER, "fire_sale_stock_path"])
FIRE_FUNDS = dg.AssetKey([LAYER, "fire_sale_fund_path"])
FIRE_CAL = dg.AssetKey([LAYER, "fire_sale_calibration"])
SUMMARY = dg.AssetKey([LAYER, "stress_summary"])
KINDS = {"pandas", "numpy"}
R_DEFAULTS = st.RedemptionParams()
F_DEFAULTS = fs.FireSaleParams()
SUMMARY_BUCKETS = ("micro", "index", "all")


def _latest_holdings_day(warehouse: Warehouse, as_of: str) -> str:
    days = warehouse.partitions("crowding", "quant_holdings_estimate")
    if not days:
        raise FileNotFoundError("crowding.quant_holdings_estimate has no partitions in the lake — materialize it first")
    if as_of:
        cand = [d for d in days if d <= as_of]
        if not cand:
            raise ValueError(f"no quant_holdings_estimate partition on or before {as_of}")
        return cand[-1]
    return days[-1]


def _stress_stocks(warehouse: Warehouse, day: str, cparams: cr.CrowdingParams):
    """Stocks of ``day`` with close, holdings (by sleeve), ADV, σ and limit.

    Stocks without a close that day (suspended) are left out of the stress: they cannot trade.
    Stocks are sorted by ts_code and bucket rows by (bucket_type, bucket, ts_code): the stress
    sums over stocks in this order, so its results and row order do not depend on the row
    order of the lake files (which a re-materialized partition may change).
    """
    key = _state_key(warehouse, day, cparams)
    if _STATE_MEMO and _STATE_MEMO[0][0] == key:
        stock, buckets, iw = _STATE_MEMO[0][1]
    else:
        stock, buckets, iw = stock_state(warehouse, [day], cparams, sigma=True)
        stock = stock[stock["close"].notna() & (stock["close"] > 0)]
        stock = stock.sort_values("ts_code", kind="stable").reset_index(drop=True)
        buckets = buckets.sort_values(["bucket_type", "bucket", "ts_code"], kind="stable").reset_index(drop=True)
        _STATE_MEMO[:] = [(key, (stock, buckets, iw))]
    return stock.copy(deep=False), buckets.copy(deep=False), iw.copy(deep=False)


#: the last stress state built in this process, as [(key, (stock, buckets, index weights))]. The
#: daily update builds the state of the latest holdings day twice in one process (redemption_stress
#: and the fire-sale scenario): the second is served from here (issue 11). The key is
#: :func:`_state_key`, so a file rewritten in between makes it a miss.
_STATE_MEMO: list = []


def _stock_state_ranges(day: str, cparams: cr.CrowdingParams, back: int | None = None,
                        panel_end: str | None = None) -> list[tuple[str, str, str, str]]:
    """(layer, asset, first day, last day) of the lake ranges ``stock_state([day], sigma=True)``
    reads: the stock panel partitions of its lookback (``back`` sessions, default its ADV/sigma
    window; up to ``panel_end``, default ``day``), the day's holdings partition, and the
    index-weight partitions of the carry-forward lookback."""
    lo = lookback_keys([day], back or max(cparams.adv_window, SIGMA_WINDOW) + 5)[0]
    w_lo = (pd.Timestamp(day) - pd.Timedelta(days=WEIGHT_LOOKBACK_DAYS)).strftime("%Y-%m-%d")
    return [("marts", "stock_daily_panel", lo, panel_end or day), ("crowding", "quant_holdings_estimate", day, day),
            ("staging", "stg_index_weight", w_lo, day)]


def _state_key(warehouse: Warehouse, day: str, cparams: cr.CrowdingParams) -> tuple:
    """Lake root, day, crowding parameters and the identity (:func:`_file_id`) of every lake file
    ``stock_state([day], sigma=True)`` reads (:func:`_stock_state_ranges`). A write replaces a
    file (temp file + rename), which changes its inode and times."""
    ids = [_file_id(path) for layer, asset, a, b in _stock_state_ranges(day, cparams)
           for path in warehouse.files(layer, asset, a, b)]
    return str(warehouse.lake), day, repr(cparams), tuple(ids)


#: columns of marts.futures_basis_panel kept in the basis row cache (a superset of what the events read)
BASIS_CACHE_COLUMNS = ["trade_date", "ts_code", "fut_code", "is_main", "basis_ann", "basis_ann_settle"]


def _file_id(path: str) -> str:
    st = os.stat(path)
    return f"{path}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def _read_files(warehouse: Warehouse, files: list[str], columns: list[str]) -> pa.Table:
    """``columns`` of ``files`` plus their file names, in one DuckDB scan (file order, then row order)."""
    sel = ", ".join(f'"{c}"' for c in columns)
    sql = f"SELECT {sel}, filename FROM read_parquet($files, filename=true)"
    return warehouse.query("marts", "futures_basis_panel", sql, arrow=True, files=files).replace_schema_metadata(None)


def _read_basis_panel(warehouse: Warehouse, columns: list[str]) -> pd.DataFrame:
    """Every row of ``columns`` of marts.futures_basis_panel: the rows and order of ``warehouse.read``.

    The rows of each lake (month) file are kept in ``<root>/.cache/stress/futures_basis_rows.parquet``
    under the file's identity (path, inode, size, mtime, ctime; a lake write replaces a file, so a
    rewritten month has a new identity): a run reads only the files that are new or changed since
    the cache was written — the daily update its month's file of ~120 (issue 11). Rows of
    files no longer in the lake are dropped; a cache that cannot be read is rebuilt."""
    files = warehouse.files("marts", "futures_basis_panel")
    if not files:
        raise FileNotFoundError("marts.futures_basis_panel has no data in the lake — materialize it first")
    if not set(columns) <= set(BASIS_CACHE_COLUMNS):
        return _read_files(warehouse, files, columns).drop_columns(["filename"]).to_pandas()
    ids = [_file_id(f) for f in files]
    where = {i: k for k, i in enumerate(ids)}
    cache = warehouse.root / ".cache" / "stress" / "futures_basis_rows.parquet"
    parts, covered = [], []
    try:  # cached rows carry _file: the position of their file's identity in the cache's file_ids
        old = pq.read_table(cache)
        covered = json.loads(old.schema.metadata[b"file_ids"])
        pos = np.array([where.get(i, -1) for i in covered] + [-1], dtype=np.int64)[old.column("_file").to_numpy()]
        old = old.set_column(old.column_names.index("_file"), "_file", pa.array(pos))
        parts.append(old.filter(pa.array(pos >= 0)).replace_schema_metadata(None))
    except (OSError, ValueError, KeyError, TypeError, IndexError, pa.ArrowException):
        parts, covered = [], []
    known = set(covered)
    todo = [k for k, i in enumerate(ids) if i not in known]
    if todo:
        new = _read_files(warehouse, [files[k] for k in todo], BASIS_CACHE_COLUMNS)
        fno = pc.index_in(new.column("filename"), value_set=pa.array([files[k] for k in todo], pa.string())).to_numpy()
        parts.append(new.drop_columns(["filename"]).append_column("_file", pa.array(np.asarray(todo, dtype=np.int64)[fno])))
    try:
        table = pa.concat_tables(parts)
    except pa.ArrowInvalid:  # the cache holds another schema: rebuild it from the lake
        todo = list(range(len(files)))
        new = _read_files(warehouse, files, BASIS_CACHE_COLUMNS)
        fno = pc.index_in(new.column("filename"), value_set=pa.array(files, pa.string())).to_numpy()
        table = new.drop_columns(["filename"]).append_column("_file", pa.array(fno.astype(np.int64)))
    # file order, then each file's row order
    table = table.take(pa.array(np.argsort(table.column("_file").to_numpy(), kind="stable")))
    if todo or covered != ids:
        atomic_write_parquet(table.replace_schema_metadata({"file_ids": json.dumps(ids)}), cache)
    return table.select(columns).to_pandas()


# ---- basis_stress_events ---------------------------------------------------------------------


class BasisEventsConfig(dg.Config):
    """Threshold (fraction of annualized discount, METHODS §9 default 30 %), products, and whether to
    use the settlement-price basis (basis_ann_settle) instead of the close."""

    threshold: float = 0.30
    products: list[str] = ["IC", "IM"]
    use_settle: bool = False


@dg.asset(key=EVENTS, group_name=LAYER, deps=[BASIS], kinds=KINDS, code_version="1")
def basis_stress_events(
    context: dg.AssetExecutionContext, config: BasisEventsConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Basis stress events: runs of days when the main IC/IM contract's annualized basis is below -threshold (default 30 %).

    Reads the whole marts.futures_basis_panel. Per product and for 'IC|IM' (either one beyond the
    threshold): start, end, duration_days (sessions), depth (min annualized basis), depth_date,
    depth_contract, mean_basis. The study: wave 1 on 2024-01-22 (METHODS §9).
    """
    col = "basis_ann_settle" if config.use_settle else "basis_ann"
    panel = _read_basis_panel(warehouse, ["trade_date", "ts_code", "fut_code", "is_main", col])
    ev = st.basis_stress_events(panel, config.threshold, tuple(config.products), column=col)
    out = as_dates(ev, ("start", "end", "depth_date"))
    warehouse.write_table(LAYER, "basis_stress_events", out)
    warehouse.refresh_catalog([(LAYER, "basis_stress_events")])
    return dg.MaterializeResult(
        metadata=table_metadata(
            out, date_column="start", parameters={"threshold": config.threshold, "products": list(config.products), "column": col},
            n_events=int(len(out)), panel_days=int(pd.to_datetime(panel["trade_date"]).nunique()),
        )
    )


# ---- redemption_stress -------------------------------------------------------------------------


class RedemptionConfig(dg.Config):
    """Redemption stress (METHODS §9): ``redeem_per_day`` of AUM per day for ``n_days`` (10 %/day for 5
    days), impact coefficient ``y``, ``drain_days`` extra days selling carried-over orders; ``as_of``
    (YYYY-MM-DD, default: the latest quant_holdings_estimate day)."""

    redeem_per_day: float = R_DEFAULTS.redeem_per_day
    n_days: int = R_DEFAULTS.n_days
    y: float = R_DEFAULTS.y
    drain_days: int = R_DEFAULTS.drain_days
    as_of: str = ""
    micro_fraction: float = C_DEFAULTS.micro_fraction

    def params(self) -> st.RedemptionParams:
        return st.RedemptionParams(self.redeem_per_day, self.n_days, self.y, self.drain_days)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(REDEMPTION, group_name=LAYER, deps=[HOLDINGS, PANEL, INDEX_WEIGHT], kinds=KINDS, code_version="1",
                     description="Redemption stress per bucket: x %/day of AUM for n days -> forced sales, square-root "
                                 "impact capped at limit-down, carry-over; cumulative impact, locks, unfilled sales."),
        dg.AssetSpec(REDEMPTION_STOCKS, group_name=LAYER, deps=[HOLDINGS, PANEL, INDEX_WEIGHT], kinds=KINDS,
                     code_version="1",
                     description="Redemption stress per stock and day: orders, fills, carry-over, share of ADV, impact, price."),
    ],
)
def redemption_stress(context: dg.AssetExecutionContext, config: RedemptionConfig, warehouse: Warehouse):
    """Redemption stress as of one day (default: the latest quant holdings day).

    Every sleeve sells ``redeem_per_day`` of its holdings per day for ``n_days`` (so each stock gets
    an order of x·holdings), square-root impact ``-Y σ sqrt(Q/V)`` (σ: 60-session vol, V: 20-session
    ADV in shares), capped at limit-down with ``Q_fill = V (limit/(Yσ))²`` and the rest carried over
    (METHODS §9). Reads the as-of day's holdings and 65 sessions of marts.stock_daily_panel.
    """
    params = config.params()
    day = _latest_holdings_day(warehouse, config.as_of)
    cparams = cr.CrowdingParams(micro_fraction=config.micro_fraction)
    stocks, buckets, _ = _stress_stocks(warehouse, day, cparams)
    per = st.redemption_stress(stocks, params)
    summ = st.redemption_bucket_summary(per, stocks, buckets, params.n_days)
    summ.insert(0, "as_of", pd.Timestamp(day).date())
    per.insert(0, "as_of", pd.Timestamp(day).date())
    summ = summ.sort_values(["bucket_type", "bucket"]).reset_index(drop=True)
    warehouse.write_table(LAYER, "redemption_stress", summ)
    warehouse.write_table(LAYER, "redemption_stress_by_stock", per)
    warehouse.refresh_catalog([(LAYER, "redemption_stress"), (LAYER, "redemption_stress_by_stock")])
    meta = {"parameters": params.as_metadata(), "as_of": day}
    yield dg.MaterializeResult(
        asset_key=REDEMPTION,
        metadata=table_metadata(summ, date_column="as_of",
                                preview=summ[summ["bucket_type"].isin(SUMMARY_BUCKETS)], **meta),
    )
    yield dg.MaterializeResult(
        asset_key=REDEMPTION_STOCKS,
        metadata=table_metadata(per, date_column="as_of", **meta,
                                n_locked_stock_days=int(per["locked_limit_down"].sum())),
    )


# ---- fire_sale_simulation ----------------------------------------------------------------------


class FireSaleConfig(dg.Config):
    """Fire-sale simulation (METHODS §9). Calibration windows (wave 1 in-sample, wave 2 out-of-sample;
    study dates), the stress scenario of the as-of day (index move, basis move, redemption share of
    equity on day 1), defaults for Y and κ when a window has no data, and the holdings parameters
    of the sleeves (same as quant_holdings_estimate's, set under ops.crowding_tables.config.holdings:
    use the same values there)."""

    wave1_start: str = "2024-01-15"
    wave1_end: str = "2024-01-23"
    wave2_start: str = "2024-02-05"
    wave2_end: str = "2024-02-07"
    market_index: str = "000300.SH"
    y_default: float = F_DEFAULTS.y
    kappa_default: float = F_DEFAULTS.kappa
    y_grid: list[float] = [round(0.1 * i, 2) for i in range(1, 31)]
    kappa_grid: list[float] = [0.0, 1.0, 3.0]
    eta_default: float = F_DEFAULTS.eta
    sales_from_volume: bool = True
    size_control: bool = True
    volume_lookback: int = 60
    hedge_ratio: float = F_DEFAULTS.hedge_ratio
    roll_horizon_days: float = F_DEFAULTS.roll_horizon_days
    n_days: int = F_DEFAULTS.n_days
    scenario_as_of: str = ""
    scenario_market_move: float = -0.05
    scenario_basis_move: float = -0.20
    scenario_basis_halflife: float = 4.0
    scenario_redemption: float = 0.0
    holdings: HoldingsConfig = HoldingsConfig()
    micro_fraction: float = C_DEFAULTS.micro_fraction


def _fs_state(warehouse: Warehouse, day: str, sleeves, cparams):
    stocks, buckets, iw = _stress_stocks(warehouse, day, cparams)
    cw = cr.carry_forward_weights(iw, [pd.Timestamp(day)])
    hold = stocks[["ts_code"] + [c for c in stocks.columns if c.startswith("hold_")]]
    inputs = fs.build_inputs(stocks, hold, sleeves, cw)
    return inputs, stocks, buckets


def _weights(stocks: pd.DataFrame, buckets: pd.DataFrame, types=("cap_decile", "micro", "index", "all")) -> pd.DataFrame:
    b = buckets[buckets["bucket_type"].isin(types)][["ts_code", "bucket_type", "bucket"]]
    w = b.merge(stocks[["ts_code", "free_float_mv"]], on="ts_code", how="inner")
    w["weight"] = w["free_float_mv"].fillna(0.0)
    return w


def _day_before(day: str) -> str | None:
    try:
        return to_key(previous_trading_day(day))
    except CalendarRangeError:
        return None


def _bucket_size(stocks: pd.DataFrame, w: pd.DataFrame) -> pd.Series:
    """Bucket -> free-float-weighted mean of the standardized ln total cap of its members."""
    lc = np.log(stocks.set_index("ts_code")["total_mv"].where(lambda x: x > 0))
    z = (lc - lc.mean()) / lc.std()
    m = w.assign(z=w["ts_code"].map(z)).dropna(subset=["z"])
    return (m["z"] * m["weight"]).groupby(m["bucket"]).sum() / m.groupby("bucket")["weight"].sum()


#: part of every window fingerprint: bump it when the window runs of this module (or what they
#: call in the crowding assets) change what they compute, so stored windows are not reused across it
WINDOW_CODE_VERSION = "3"
WINDOW_RUNS = ("wave1_fit", "wave2_oos")
SHOCK_LOOKBACK = 10  # sessions of index/basis panel before a window hashed with it (first-day basis change)
_CAL_FLOATS = ("y", "kappa", "eta", "rmse", "rmse_raw", "error_curvature", "observed_sales_bn_cny",
               "obs_cross_bucket_std", "sold_bn_cny")


def _window_days(warehouse: Warehouse, start: str, end: str) -> tuple[str, list[str]] | None:
    """(base day, window sessions), or None if the base day's holdings or a window session's panel is not in the lake."""
    base = _day_before(start)
    win_days = [to_key(d) for d in trading_days_between(start, end)]
    # the days' month files only (their footers' day lists; issue 11)
    if base is None or not win_days or not warehouse.days_present("crowding", "quant_holdings_estimate", [base]):
        return None
    if len(warehouse.days_present("marts", "stock_daily_panel", win_days)) < len(win_days):
        return None
    return base, win_days


def _window_fingerprint(warehouse: Warehouse, name: str, start: str, end: str, base: str, win_days: list[str],
                        config, hparams, cparams: cr.CrowdingParams, params: fs.FireSaleParams,
                        digests: dict[str, bytes] | None = None) -> str:
    """SHA-256 of everything a window run depends on, from the lake rows it reads and the settings —
    checked without building the window's state.

    Rows (:func:`_rows_digest`; a month file's days outside a range do not count): the stock
    panel partitions of the base day's and the window's lookbacks, the base day's
    holdings partition, the index-weight partitions of the carry-forward lookback (stock_state), the
    index and futures-basis partitions of the window and ``SHOCK_LOOKBACK`` sessions before it (the
    first day's basis change). Settings: window, calibration grids and switches, holdings, crowding
    and fire-sale parameters (for wave 2: Y, κ, η of wave 1), :data:`WINDOW_CODE_VERSION` and
    :data:`fs.CALIBRATION_CODE_VERSION`. A partition that appears, disappears or changes in those
    ranges changes the fingerprint; days after the window (the daily update's new day) do not.
    ``digests``: SHA-256 of the month files already hashed in this run (the windows' lookbacks
    overlap: each whole file is read once)."""
    back = max(cparams.adv_window, SIGMA_WINDOW, config.volume_lookback + 1) + 5
    shock_lo = lookback_keys(win_days, SHOCK_LOOKBACK)[0]
    h = hashlib.sha256()
    settings = {
        "run": name, "start": start, "end": end, "base": base, "days": win_days,
        "code": [WINDOW_CODE_VERSION, fs.CALIBRATION_CODE_VERSION],
        "config": {k: getattr(config, k) for k in ("market_index", "y_grid", "kappa_grid", "sales_from_volume",
                                                   "size_control", "volume_lookback")},
        "holdings": hparams.as_metadata(), "crowding": repr(cparams), "params": params.as_metadata(),
    }
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for layer, asset, a, b in (*_stock_state_ranges(base, cparams, back, panel_end=end),
                               ("marts", "index_daily_panel", shock_lo, end), ("marts", "futures_basis_panel", shock_lo, end)):
        h.update(f"|{layer}/{asset}/{a}..{b}:".encode() + _rows_digest(warehouse, layer, asset, a, b, digests))
    return h.hexdigest()


def _rows_digest(warehouse: Warehouse, layer: str, asset: str, first: str, last: str,
                 digests: dict[str, bytes] | None = None) -> bytes:
    """SHA-256 of ``layer/asset``'s partitions in [first, last]: per month file, its day list in the
    range, then its bytes when all its days are in the range (cached in ``digests`` by path), else
    the Arrow IPC stream of its rows in the range (schema metadata dropped), so days after
    ``last`` in the same month do not count."""
    h = hashlib.sha256()
    for path in warehouse.files(layer, asset, first, last):
        held = file_days(path)
        days = [d for d in held if first <= d <= last]
        h.update(f"|{','.join(days)}:".encode())
        if len(days) == len(held):
            digest = digests.get(path) if digests is not None else None
            if digest is None:
                with open(path, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").digest()
                if digests is not None:
                    digests[path] = digest
            h.update(digest)
        elif days:
            table = warehouse.file_rows(path, first, last).combine_chunks().replace_schema_metadata(None)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            h.update(hashlib.sha256(sink.getvalue()).digest())
    return h.digest()


def _stored_windows(warehouse: Warehouse) -> dict[str, dict]:
    """input_hash -> the stored calibration row of a window run of the previous materialization."""
    if not warehouse.exists(LAYER, "fire_sale_calibration"):
        return {}
    try:
        prev = warehouse.read(LAYER, "fire_sale_calibration")
    except (FileNotFoundError, OSError):
        return {}
    if "input_hash" not in prev.columns:
        return {}
    prev = prev[prev["input_hash"].notna() & prev["run"].isin(WINDOW_RUNS)]
    return {str(r["input_hash"]): r for r in prev.to_dict("records")}


def _stored_frames(warehouse: Warehouse, cache: dict, run: str) -> list[pd.DataFrame] | None:
    """The stored (paths, stock path, fund path) rows of ``run``; None if a table lacks them.

    Only the window runs' rows are converted to pandas (the stored scenario rows are replaced;
    issue 11)."""
    if not cache:
        for n in ("fire_sale_simulation", "fire_sale_stock_path", "fire_sale_fund_path"):
            cache[n] = None
            if warehouse.exists(LAYER, n):
                t = pq.ParquetDataset(warehouse.files(LAYER, n), partitioning=None).read()
                if "run" in t.column_names:
                    t = t.filter(pc.is_in(t.column("run"), value_set=pa.array(WINDOW_RUNS, t.schema.field("run").type)))
                cache[n] = t.to_pandas()
    frames = []
    for t in cache.values():
        if t is None or "run" not in t.columns or not (t["run"] == run).any():
            return None
        frames.append(t[t["run"] == run].reset_index(drop=True))
    return frames


def _stored_cal_row(row: dict, reused: bool) -> dict:
    """A stored calibration row with the Python types of a computed one."""
    out = dict(row)
    for c in ("window_start", "window_end", "as_of"):
        out[c] = pd.Timestamp(row[c]).date()
    for c in _CAL_FLOATS:
        out[c] = float(row[c]) if row[c] is not None and not pd.isna(row[c]) else np.nan
    out["y_identified"] = None if row["y_identified"] is None or pd.isna(row["y_identified"]) else bool(row["y_identified"])
    out["n_days"], out["days_simulated"] = int(row["n_days"]), int(row["days_simulated"])
    out["run"], out["status"], out["input_hash"] = str(row["run"]), str(row["status"]), str(row["input_hash"])
    out["calibration_reused"] = reused
    return out


def _window_run(warehouse, name, start, end, base, win_days, sleeves, cparams, config, params, shock_panels, calibrate):
    """Calibrate (or evaluate) the fire sale on one window (its base day and sessions from :func:`_window_days`).

    ``shock_panels(lo, end)`` returns the (index, futures basis) panels of the observed shock from
    ``lo`` to ``end``, ``lo`` = ``SHOCK_LOOKBACK`` sessions before the window (the range its
    fingerprint hashes). Panel rows are sorted by key before use: sums over them (forced sales,
    the basis mean) do not depend on the files' row order."""
    inputs, stocks, buckets = _fs_state(warehouse, base, sleeves, cparams)
    w_all = _weights(stocks, buckets)
    w_fit = w_all[w_all["bucket_type"] == "cap_decile"]
    size = _bucket_size(stocks, w_fit) if config.size_control else None
    obs_panel = read_panel(warehouse, lookback_keys(win_days, config.volume_lookback + 1),
                           ["trade_date", "ts_code", "adj_close", "vol", "ret", "close"])
    obs_panel = obs_panel.sort_values(["trade_date", "ts_code"], kind="stable").reset_index(drop=True)
    index_panel, basis_panel = shock_panels(lookback_keys(win_days, SHOCK_LOOKBACK)[0], end)
    shock = fs.shock_from_observed(index_panel, basis_panel, start, end, market_index=config.market_index)
    obs_cum = fs.observed_cum_returns(obs_panel, start, end)
    obs_fit = fs.observed_bucket_paths(None, w_fit, cum=obs_cum)
    ev = fs.excess_volume_sales(obs_panel, start, end, lookback=config.volume_lookback)
    obs_sales = float(ev["excess_cny"].sum())
    if calibrate:
        cal = fs.calibrate(inputs, shock, obs_fit[["day", "bucket", "cum_ret"]], w_fit, params,
                           y_grid=tuple(config.y_grid), kappa_grid=tuple(config.kappa_grid),
                           observed_sales_cny=max(obs_sales, 0.0) if config.sales_from_volume else None,
                           bucket_size=size)
        y, kappa, eta, rmse = cal.y, cal.kappa, cal.eta, cal.rmse
        identified, curvature = cal.identified, cal.curvature
        if not identified:  # keep the prior Y; κ and η still come from the fit at that Y
            y = params.y
            eta = fs.fit_eta(inputs, shock, replace(params, kappa=kappa, n_days=len(win_days)), max(obs_sales, 0.0)) \
                if config.sales_from_volume else params.eta
            rmse = None
    else:
        y, kappa, eta = params.y, params.kappa, params.eta
        rmse = None
        identified, curvature = None, np.nan
    prm = replace(params, y=y, kappa=kappa, eta=eta, n_days=max(params.n_days, len(win_days)))
    res = fs.simulate(inputs, shock, prm)
    frames = []
    for btype, g in w_all.groupby("bucket_type"):
        sim = fs.extend_path(fs.bucket_paths(res.stock_path, g), len(win_days))
        obs = fs.observed_bucket_paths(None, g, cum=obs_cum)
        m = sim.rename(columns={"cum_ret": "sim_cum_ret"}).merge(
            obs.rename(columns={"cum_ret": "obs_cum_ret"}), on=["day", "bucket"], how="outer")
        m["bucket_type"] = btype
        frames.append(m)
    paths = pd.concat(frames, ignore_index=True)
    sim_fit = fs.extend_path(fs.bucket_paths(res.stock_path, w_fit), len(win_days))
    if rmse is None:
        rmse = fs.path_error_controlled(sim_fit, obs_fit, size)
    obs_last = obs_fit[obs_fit["day"] == obs_fit["day"].max()]
    return {
        "name": name, "start": start, "end": end, "as_of": base, "y": y, "kappa": kappa, "eta": eta, "rmse": rmse,
        "rmse_raw": fs.path_error(sim_fit, obs_fit), "observed_sales_cny": obs_sales,
        "identified": identified, "curvature": curvature,
        "obs_spread": float(obs_last["cum_ret"].std()) if len(obs_last) else np.nan,
        "paths": paths, "result": res, "n_days": len(win_days),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(FIRE_SALE, group_name=LAYER, deps=[HOLDINGS, PANEL, INDEX_WEIGHT, INDEX_PANEL, BASIS], kinds=KINDS,
                     code_version="1",
                     description="Fire-sale simulation per bucket and day (wave-1 fit, wave-2 out-of-sample, stress "
                                 "scenario): simulated vs observed cumulative returns."),
        dg.AssetSpec(FIRE_STOCKS, group_name=LAYER, deps=[HOLDINGS, PANEL], kinds=KINDS, code_version="1",
                     description="Fire-sale simulation per stock and day: price path, impact, orders, fills, unfilled sales."),
        dg.AssetSpec(FIRE_FUNDS, group_name=LAYER, deps=[HOLDINGS, PANEL], kinds=KINDS, code_version="1",
                     description="Fire-sale simulation per fund (quant sleeve) and day: P&L, outflows, sales, equity, leverage."),
        dg.AssetSpec(FIRE_CAL, group_name=LAYER, deps=[HOLDINGS, PANEL, INDEX_PANEL, BASIS], kinds=KINDS, code_version="1",
                     description="Fire-sale calibration: Y and κ fitted on wave 1, RMSE in-sample and out-of-sample on wave 2."),
    ],
)
def fire_sale_simulation(context: dg.AssetExecutionContext, config: FireSaleConfig, warehouse: Warehouse):
    """Multi-round stock-level fire sale (METHODS §9): shock -> fund losses -> flow-performance redemptions -> deleverage to target leverage -> pro-rata sales -> square-root impact capped by limits -> mark to market -> next round.

    Y and κ are calibrated on wave 1 (default 2024-01-15 .. 01-23: minimise the RMSE of simulated vs
    observed cumulative cap-decile returns, free-float weighted; the exogenous shock is the
    observed CSI300 daily return and the daily change of the main IC/IM annualized basis), then
    evaluated out of sample on wave 2 (2024-02-05 .. 02-07). The scenario run applies the
    configured shock to the latest holdings day. Inputs only from the lake (marts + holdings
    estimate); each window reads its base day and 65 sessions of panel lookback. A window whose
    fingerprint (the bytes of the lake files it reads, its settings and code versions; see
    ``_window_fingerprint``) equals a stored run's keeps that run's rows: the daily update, whose
    new day is outside both windows, then only builds and simulates the scenario.
    """
    hparams = config.holdings.params()
    sleeves = hparams.sleeves()
    cparams = cr.CrowdingParams(micro_fraction=config.micro_fraction)
    params = fs.FireSaleParams(y=config.y_default, kappa=config.kappa_default, eta=config.eta_default, hedge_ratio=config.hedge_ratio,
                               roll_horizon_days=config.roll_horizon_days, n_days=config.n_days)

    def shock_panels(lo: str, hi: str):  # read only when a window is computed (not on the daily update's reuse)
        cols = ["trade_date", "index_code", "ret"]
        try:
            index = warehouse.read("marts", "index_daily_panel", start=lo, end=hi, columns=cols)
        except FileNotFoundError:
            if not warehouse.exists("marts", "index_daily_panel"):
                raise
            index = pd.DataFrame({c: pd.Series(dtype="float" if c == "ret" else "object") for c in cols})
        index = index.sort_values(["trade_date", "index_code"], kind="stable").reset_index(drop=True)
        try:
            basis = warehouse.read("marts", "futures_basis_panel", start=lo, end=hi,
                                   columns=["trade_date", "fut_code", "ts_code", "is_main", "basis_ann"])
        except FileNotFoundError:
            return index, None
        return index, basis.sort_values(["trade_date", "fut_code", "ts_code"], kind="stable").reset_index(drop=True)

    stored, stored_tables, digests = _stored_windows(warehouse), {}, {}
    runs, status, w1_reused = [], {}, False
    for name, start, end in (("wave1_fit", config.wave1_start, config.wave1_end),
                             ("wave2_oos", config.wave2_start, config.wave2_end)):
        calibrate = name == "wave1_fit"
        win = _window_days(warehouse, start, end)
        if win is None:
            status[name] = ("skipped: window or its base day not in the lake; defaults used" if calibrate else
                            "skipped: window or its base day not in the lake")
            continue
        input_hash = _window_fingerprint(warehouse, name, start, end, *win, config, hparams, cparams, params, digests)
        row = stored.get(input_hash)
        frames = _stored_frames(warehouse, stored_tables, name) if row is not None and row["run"] == name else None
        if frames is not None:  # same inputs and settings as the stored run: its rows are this run's result
            r = {"name": name, "stored": True, "cal": _stored_cal_row(row, reused=calibrate), "frames": frames}
            y, kappa, eta, identified = r["cal"]["y"], r["cal"]["kappa"], r["cal"]["eta"], r["cal"]["y_identified"]
            w1_reused = w1_reused or calibrate
        else:
            r = _window_run(warehouse, name, start, end, *win, sleeves, cparams, config, params, shock_panels, calibrate)
            r["input_hash"] = input_hash
            y, kappa, eta, identified = r["y"], r["kappa"], r["eta"], r["identified"]
        runs.append(r)
        if calibrate:
            params = replace(params, y=y, kappa=kappa, eta=eta)
            status[name] = ("calibrated" if identified else
                            f"Y not identified on wave 1 (best on the grid edge or flat error curve); prior Y={params.y} "
                            "kept, kappa and eta fitted")
        else:
            status[name] = "evaluated"

    # stress scenario as of the latest (or configured) day
    day = _latest_holdings_day(warehouse, config.scenario_as_of)
    inputs, stocks, buckets = _fs_state(warehouse, day, sleeves, cparams)
    # the basis jumps on day 1 and reverts with the configured half-life
    level = [config.scenario_basis_move * 0.5 ** (d / config.scenario_basis_halflife) for d in range(config.n_days)]
    basis_path = tuple(np.diff(np.r_[0.0, level]))
    shock = fs.Shock(market=(config.scenario_market_move,), basis=basis_path,
                     redemption={"*": config.scenario_redemption} if config.scenario_redemption else {})
    res = fs.simulate(inputs, shock, params)
    w_all = _weights(stocks, buckets)
    frames = []
    for btype, g in w_all.groupby("bucket_type"):
        sim = fs.bucket_paths(res.stock_path, g).rename(columns={"cum_ret": "sim_cum_ret"})
        sim["bucket_type"] = btype
        frames.append(sim)
    runs.append({"name": "scenario", "start": day, "end": day, "as_of": day, "y": params.y, "kappa": params.kappa,
                 "eta": params.eta, "rmse": np.nan, "rmse_raw": np.nan, "observed_sales_cny": np.nan,
                 "identified": None, "curvature": np.nan, "obs_spread": np.nan, "paths": pd.concat(frames, ignore_index=True), "result": res,
                 "n_days": res.days, "input_hash": None})
    status["scenario"] = "simulated"

    paths, stock_paths, fund_paths, cal_rows = [], [], [], []
    for r in runs:
        if r.get("stored"):
            for acc, f in zip((paths, stock_paths, fund_paths), r["frames"], strict=True):
                acc.append(f)
            cal_rows.append(r["cal"])
            continue
        p = r["paths"].copy()
        p.insert(0, "run", r["name"])
        if "trade_date" not in p.columns:
            p["trade_date"] = pd.NaT
        paths.append(p)
        sp = r["result"].stock_path.copy()
        sp.insert(0, "run", r["name"])
        stock_paths.append(sp)
        fp = r["result"].fund_path.copy()
        fp.insert(0, "run", r["name"])
        fund_paths.append(fp)
        cal_rows.append({
            "run": r["name"], "window_start": pd.Timestamp(r["start"]).date(), "window_end": pd.Timestamp(r["end"]).date(),
            "as_of": pd.Timestamp(r["as_of"]).date(), "y": float(r["y"]), "kappa": float(r["kappa"]),
            "eta": float(r["eta"]), "rmse": float(r["rmse"]) if r["rmse"] is not None else np.nan,
            "rmse_raw": float(r["rmse_raw"]),
            "y_identified": r["identified"], "error_curvature": float(r["curvature"]),
            "observed_sales_bn_cny": float(r["observed_sales_cny"] / 1e9),
            "obs_cross_bucket_std": float(r["obs_spread"]), "n_days": int(r["n_days"]),
            "days_simulated": int(r["result"].days), "status": status[r["name"]],
            "sold_bn_cny": float(r["result"].fund_path["sold_cny"].sum() / 1e9),
            "input_hash": r["input_hash"], "calibration_reused": False,
        })
    paths_df = pd.concat(paths, ignore_index=True)
    cols = ["run", "bucket_type", "bucket", "day", "trade_date", "sim_cum_ret", "obs_cum_ret"]
    for c in cols:
        if c not in paths_df.columns:
            paths_df[c] = np.nan
    paths_df = as_dates(paths_df[cols])
    stock_df = pd.concat(stock_paths, ignore_index=True)
    fund_df = pd.concat(fund_paths, ignore_index=True)
    cal_df = pd.DataFrame(cal_rows)
    for name, df in (("fire_sale_simulation", paths_df), ("fire_sale_stock_path", stock_df),
                     ("fire_sale_fund_path", fund_df), ("fire_sale_calibration", cal_df)):
        warehouse.write_table(LAYER, name, df)
    warehouse.refresh_catalog([(LAYER, n) for n in ("fire_sale_simulation", "fire_sale_stock_path",
                                                    "fire_sale_fund_path", "fire_sale_calibration")])
    meta = {"parameters": {**params.as_metadata(), "holdings": hparams.as_metadata(),
                           "scenario": {"as_of": day, "market": config.scenario_market_move,
                                        "basis": config.scenario_basis_move, "redemption": config.scenario_redemption}},
            "status": status, "calibration_reused": w1_reused}
    context.log.info(f"fire_sale_simulation: {status}; Y={params.y:.3f} kappa={params.kappa:.2f}")
    yield dg.MaterializeResult(asset_key=FIRE_SALE, metadata=table_metadata(
        paths_df, preview=paths_df[(paths_df["bucket_type"] == "micro")], **meta,
        calibrated_y=float(params.y), calibrated_kappa=float(params.kappa)))
    yield dg.MaterializeResult(asset_key=FIRE_STOCKS, metadata=table_metadata(stock_df, date_column=None, **meta))
    yield dg.MaterializeResult(asset_key=FIRE_FUNDS, metadata=table_metadata(fund_df, date_column=None, **meta))
    yield dg.MaterializeResult(asset_key=FIRE_CAL, metadata=table_metadata(cal_df, date_column=None, preview=cal_df, **meta))


# ---- stress_summary ------------------------------------------------------------------------------


def _summary_rows(events, red, cal, paths, crowd) -> pd.DataFrame:
    rows = []

    def add(section, item, value, unit, detail=""):
        rows.append({"item": item, "value": float(value) if value is not None and np.isfinite(value) else np.nan,
                     "unit": unit, "section": section, "detail": detail})

    if events is not None:
        for _, e in events.iterrows():
            add("basis", f"basis event {e['fut_code']} {pd.Timestamp(e['start']):%Y-%m-%d}..{pd.Timestamp(e['end']):%Y-%m-%d}",
                e["depth"], "annualized basis (fraction)", f"{int(e['duration_days'])} sessions, deepest {pd.Timestamp(e['depth_date']):%Y-%m-%d}")
    if crowd is not None and len(crowd):
        day = crowd["trade_date"].max()
        c = crowd[(crowd["trade_date"] == day) & crowd["bucket_type"].isin(["micro", "index"])]
        for _, r in c.iterrows():
            add("crowding", f"holdings share {r['bucket']}", r["holdings_share"], "fraction of free float", f"as of {pd.Timestamp(day):%Y-%m-%d}")
            add("crowding", f"redemption-stress share {r['bucket']}", r["redemption_share"], "fraction of ADV", f"as of {pd.Timestamp(day):%Y-%m-%d}")
    if red is not None:
        r = red[red["bucket_type"].isin(SUMMARY_BUCKETS)]
        for _, x in r.iterrows():
            add("redemption", f"redemption impact {x['bucket']}", x["impact_ff_weighted"], "cumulative return (FF-weighted)",
                f"as of {x['as_of']}, {int(x['redemption_days'])} days; locked {x['share_locked_any']:.0%} of stocks")
    if cal is not None:
        for _, x in cal.iterrows():
            if x["run"] == "wave1_fit":
                add("fire_sale", "calibrated Y (wave 1)", x["y"], "coefficient", x["status"])
                add("fire_sale", "calibrated kappa (wave 1)", x["kappa"], "outflow per unit loss", x["status"])
                add("fire_sale", "in-sample RMSE (wave 1)", x["rmse"], "cumulative return", f"{x['window_start']}..{x['window_end']}")
            elif x["run"] == "wave2_oos":
                add("fire_sale", "out-of-sample RMSE (wave 2)", x["rmse"], "cumulative return", f"{x['window_start']}..{x['window_end']}")
    if paths is not None and len(paths):
        sc = paths[(paths["run"] == "scenario") & paths["bucket_type"].isin(SUMMARY_BUCKETS)]
        if len(sc):
            last = sc[sc["day"] == sc["day"].max()]
            for _, x in last.iterrows():
                add("fire_sale", f"scenario impact {x['bucket']}", x["sim_cum_ret"], "cumulative return (FF-weighted)",
                    f"after {int(x['day'])} days")
    return pd.DataFrame(rows, columns=["item", "value", "unit", "section", "detail"])


def _maybe(warehouse: Warehouse, layer: str, name: str):
    return warehouse.read(layer, name) if warehouse.exists(layer, name) else None


@dg.asset(key=SUMMARY, group_name=LAYER, deps=[EVENTS, REDEMPTION, FIRE_SALE, FIRE_CAL, CROWDING], kinds=KINDS,
          code_version="1")
def stress_summary(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """One stress table for the report: basis events, crowding (latest day), redemption impact, fire-sale calibration and scenario.

    Reads the stress tables and the latest crowding_table partition. Columns: item, value, unit,
    section, detail (one row per figure).
    """
    crowd = None
    days = warehouse.partitions("crowding", "crowding_table")
    if days:
        crowd = warehouse.read("crowding", "crowding_table", days=[days[-1]])
        crowd = crowd[crowd["level"] == "bucket"]
    out = _summary_rows(
        _maybe(warehouse, LAYER, "basis_stress_events"), _maybe(warehouse, LAYER, "redemption_stress"),
        _maybe(warehouse, LAYER, "fire_sale_calibration"), _maybe(warehouse, LAYER, "fire_sale_simulation"), crowd,
    )
    warehouse.write_table(LAYER, "stress_summary", out)
    warehouse.refresh_catalog([(LAYER, "stress_summary")])
    return dg.MaterializeResult(metadata=table_metadata(out, date_column=None, preview=out.head(30)))
