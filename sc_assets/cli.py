"""The ``sc-assets`` command. Each subcommand lives beside the code it drives and is imported
only when called, so ``sc-assets --help`` stays fast."""

from __future__ import annotations

import importlib

import click

COMMANDS = {
    "simulate": ("sc_assets.simulator.cli", "simulate", "Simulate the synthetic A-share market into the landing folder."),
    "demo": ("sc_assets.demo", "demo", "Simulate the default market, materialize the whole chain, write the report."),
    "bench": ("sc_assets.bench", "bench", "Full-market benchmark: time each stage, peak RSS, baselines; writes JSON."),
    "migrate-lake": ("sc_assets.resources.lake_migration", "migrate_lake",
                     "Move a lake's per-day partition folders (before month files) into month files."),
    "pull": ("sc_assets.pull.cli", "pull", "Pull real market data (Tushare Pro / AkShare) into the landing folder."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup)
@click.version_option(package_name="sc_assets")
def main() -> None:
    """sc_assets: Dagster assets for the 2024 A-share small-cap crash and quant crowding."""


if __name__ == "__main__":
    main()
