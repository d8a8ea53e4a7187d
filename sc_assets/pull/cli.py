"""``sc-assets pull``: real market data into the landing folder."""

from __future__ import annotations

import click

FEED_ORDER = ("stock_basic", "stock_daily", "daily_basic", "adj_factor", "st_flags", "index_daily",
              "index_weight", "fut_daily", "fut_basic", "etf_share")
FEED_ALIASES = {"daily": "stock_daily", "etf": "etf_share", "fund_share": "etf_share", "namechange": "st_flags"}
DEFAULT_CALLS_PER_MINUTE = {"tushare": 190.0, "akshare": 60.0}


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


HELP = """Pull real market data (Tushare Pro / AkShare) into <data-dir>/landing.

\b
Writes one file per feed per trading day, landing/<feed>/<YYYYMMDD>.csv, in the canonical
raw formats (Tushare Pro field names and units, sc_assets/feeds/schemas.py); reference data
(stock_basic, fut_basic) lands as a snapshot dated --end. Trading days come from the SSE
calendar (sc_assets.partitions). Feeds: stock_daily (alias: daily), daily_basic, adj_factor,
stock_basic, st_flags, index_daily, index_weight, fut_daily, fut_basic, etf_share.
Neither source serves Wind's micro-cap index: a proxy (400 smallest, equal weight) is
derived from the landed stock data and added to index_daily (--microcap-code).

\b
Resumable: days already landed are not fetched again (--refresh refetches; unchanged
content is never rewritten). Calls are rate limited (token bucket, --calls-per-minute) and
retried with exponential backoff on network errors and rate-limit refusals.

\b
Sources:
  tushare       Tushare Pro; token from $TUSHARE_TOKEN; pip install 'sc_assets[tushare]'
  akshare       AkShare (free; per-stock calls: use --codes for a subset);
                pip install 'sc_assets[akshare]'
  fund-nav-csv  validate your private-fund NAV file (--file, format in
                examples/fund_nav_example.csv) and split it into landing/fund_nav/

\b
Examples:
  export TUSHARE_TOKEN=...; sc-assets pull --source tushare --start 2023-12-01 --end 2024-03-29
  sc-assets pull --source akshare --start 2024-01-02 --end 2024-02-29 --feeds index_daily,fut_daily
  sc-assets pull --source fund-nav-csv --file navs.csv
Then: dagster dev -w workspace.yaml and materialize (or backfill) the asset graph.
"""


@click.command("pull", help=HELP)
@click.option("--source", type=click.Choice(["tushare", "akshare", "fund-nav-csv"]), required=True,
              help="Data source.")
@click.option("--start", help="First day (YYYY-MM-DD); required except for fund-nav-csv.")
@click.option("--end", help="Last day (YYYY-MM-DD), inclusive; default --start.")
@click.option("--feeds", multiple=True, help="Feeds to pull, comma-separated or repeated (default: all).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data root (default $SC_ASSETS_DATA_DIR or ./data).")
@click.option("--file", "nav_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="fund-nav-csv: the CSV to validate and land.")
@click.option("--codes", multiple=True, help="Restrict stocks to these codes (600000.SH,000001.SZ,...).")
@click.option("--index", "indexes", multiple=True,
              help="Index codes for index_daily (default 000300.SH,000905.SH,000852.SH,932000.CSI,000016.SH).")
@click.option("--etf", "etfs", multiple=True,
              help="ETF=INDEX pairs for etf_share, e.g. 510500.SH=000905.SH (default: 11 large CSI ETFs).")
@click.option("--calls-per-minute", type=float, default=None,
              help="Rate limit (default 190 for tushare, 60 for akshare); set to your account's quota.")
@click.option("--retries", type=int, default=4, show_default=True, help="Retries per call (exponential backoff).")
@click.option("--refresh", is_flag=True, help="Refetch days already landed (unchanged files are not rewritten).")
@click.option("--microcap-code", default="8841431.WI", show_default=True,
              help="Code of the micro-cap proxy (400 smallest by total cap, equal weight) derived from the landed "
                   "stock_daily/daily_basic/st_flags and added to index_daily; '' to skip.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def pull(source, start, end, feeds, data_dir, nav_file, codes, indexes, etfs, calls_per_minute, retries,
         refresh, microcap_code, no_progress) -> None:
    from sc_assets import partitions
    from sc_assets.pull.base import DEFAULT_ETFS, DEFAULT_INDEXES, PullOptions
    from sc_assets.pull.core import Caller, PullError, RetryPolicy
    from sc_assets.settings import data_root

    root = data_root(data_dir)
    try:
        if source == "fund-nav-csv":
            from sc_assets.pull.fund_nav import land_fund_nav

            if not nav_file:
                raise click.UsageError("--source fund-nav-csv needs --file <csv>")
            counts = land_fund_nav(nav_file, root, start=start, end=end)
            click.echo(f"fund_nav: {counts['funds']} funds; {counts['written']} day files written, "
                       f"{counts['unchanged']} unchanged -> {root / 'landing' / 'fund_nav'}")
            return
        if not start:
            raise click.UsageError("--start is required")
        try:
            days = partitions.trading_days_between(start, end or start)
        except partitions.CalendarRangeError as exc:
            raise click.UsageError(str(exc)) from exc
        if len(days) == 0:
            raise click.UsageError(f"no SSE trading day between {start} and {end or start}")
        wanted = [FEED_ALIASES.get(f, f) for f in _split(feeds)] or list(FEED_ORDER)
        unknown = [f for f in wanted if f not in FEED_ORDER]
        if unknown:
            raise click.UsageError(f"unknown feed(s) {unknown}; choose from {list(FEED_ORDER)}")
        ordered = [f for f in FEED_ORDER if f in wanted]
        etf_map = dict(DEFAULT_ETFS)
        if etfs:
            etf_map = {}
            for pair in _split(etfs):
                if "=" not in pair:
                    raise click.UsageError(f"--etf {pair!r}: expected ETF=INDEX")
                k, v = pair.split("=", 1)
                etf_map[k.strip()] = v.strip()
        options = PullOptions(indexes=_split(indexes) or DEFAULT_INDEXES, etfs=etf_map,
                              codes=_split(codes) or None, refresh=refresh)
        caller = Caller(_client(source), calls_per_minute=calls_per_minute or DEFAULT_CALLS_PER_MINUTE[source],
                        policy=RetryPolicy(retries=retries), log=lambda m: click.echo(m, err=True))
        adapter = _adapter(source)(caller, options, log=lambda m: click.echo(m, err=True))
        report = adapter.pull(ordered, days, root, progress=not no_progress)
        if microcap_code and "index_daily" in ordered and not options.codes:  # needs the whole market
            from sc_assets.pull.microcap import MicrocapParams, derive_microcap

            mc = derive_microcap(root, days, MicrocapParams(code=microcap_code))
            report[f"index_daily[{microcap_code} proxy]"] = {"written": mc["written"], "unchanged": mc["unchanged"],
                                                             "empty": mc["missing_inputs"]}
    except PullError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{source}: {len(days)} trading days {days[0].date()}..{days[-1].date()}, "
               f"{caller.calls} calls ({caller.retried} retried) -> {root / 'landing'}")
    for feed, c in report.items():
        click.echo(f"  {feed:<13} written {c.get('written', 0):>4}  unchanged {c.get('unchanged', 0):>4}  "
                   f"already landed {c.get('skipped', 0):>4}  no data {c.get('empty', 0):>4}")


def _client(source: str):
    if source == "tushare":
        from sc_assets.pull.tushare import TushareClient

        return TushareClient()
    from sc_assets.pull.akshare import AkshareClient

    return AkshareClient()


def _adapter(source: str):
    if source == "tushare":
        from sc_assets.pull.tushare import TushareAdapter

        return TushareAdapter
    from sc_assets.pull.akshare import AkshareAdapter

    return AkshareAdapter
