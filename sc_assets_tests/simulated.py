"""A small simulated market shared by test modules.

``simulate_small_market(root)`` writes ~300 stocks, 2023-06-01 .. 2024-03-29 (the default 2024
episode inside), fixed seed, into ``root/landing`` and ``root/ground_truth``; the session-scoped
fixture ``small_market`` does it once per test session into a temp dir and returns that data root.
Use it through the landing files / raw layer (as a user would) and compare with
``root / "ground_truth"``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sc_assets.simulator import SimulationParams, simulate

SMALL_MARKET = SimulationParams(n_stocks=300, start="2023-06-01", end="2024-03-29", seed=20240207)


def simulate_small_market(root: Path, **overrides) -> Path:
    """Simulate the small market into ``root`` (landing/ and ground_truth/); returns ``root``."""
    root = Path(root)
    simulate(root, SMALL_MARKET.replace(**overrides) if overrides else SMALL_MARKET)
    return root


@pytest.fixture(scope="session")
def small_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data root holding the small simulated market (read-only: copy before writing a lake into it)."""
    return simulate_small_market(tmp_path_factory.mktemp("small_market"))
