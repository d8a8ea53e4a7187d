"""Synthetic A-share market with the 2024 small-cap crash embedded (issue 4, DESIGN §5).

``simulate(root, SimulationParams(...))`` writes vendor-format landing files and the ground
truth; ``sc-assets simulate`` is the command-line entry point (``sc_assets.simulator.cli``).
The model and the ground-truth columns are documented in :mod:`sc_assets.simulator.run` and
:mod:`sc_assets.simulator.market`; all parameters in :class:`SimulationParams`.
"""

from sc_assets.simulator.params import SimulationParams
from sc_assets.simulator.run import SimulationResult, simulate

__all__ = ["SimulationParams", "SimulationResult", "simulate"]
