"""Seeded fault simulator: the pure replica cluster on a simulated network.

`run_seed(seed)` replays one scenario exactly; see `pbft.sim.cluster`.
"""

from pbft.sim.cluster import SeedOutcome, SimCluster, SimOptions, run_seed

__all__ = ["SeedOutcome", "SimCluster", "SimOptions", "run_seed"]
