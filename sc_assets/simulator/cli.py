"""``sc-assets simulate``: write the synthetic market into ``<out>/landing`` and ``<out>/ground_truth``."""

from __future__ import annotations

import click

from sc_assets.settings import data_root
from sc_assets.simulator.params import SimulationParams

_D = SimulationParams()


@click.command("simulate")
@click.option("--stocks", type=int, default=_D.n_stocks, show_default=True, help="Number of stocks.")
@click.option("--start", default=_D.start, show_default=True, help="First session (YYYY-MM-DD).")
@click.option("--end", default=_D.end, show_default=True, help="Last session (YYYY-MM-DD).")
@click.option("--seed", type=int, default=_D.seed, show_default=True, help="Random seed (same seed, same bytes).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Data root (default: $SC_ASSETS_DATA_DIR or ./data).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="Format of the large daily feeds (stock_daily, daily_basic, adj_factor, st_flags).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def simulate(stocks: int, start: str, end: str, seed: int, out: str | None, fmt: str, progress: bool) -> None:
    """Simulate the synthetic A-share market (with the 2024 crash) into the landing folder."""
    from sc_assets.simulator.run import simulate as run

    root = data_root(out)
    params = _D.replace(n_stocks=stocks, start=start, end=end, seed=seed, output_format=fmt)
    res = run(root, params, progress=progress)
    click.echo(f"simulated {res.stocks} stocks x {res.days} sessions -> {res.files} landing files in "
               f"{root / 'landing'} ({res.seconds:.1f} s); ground truth in {root / 'ground_truth'}")
