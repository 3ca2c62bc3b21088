"""The simulation layer: the seeded simulator (pbft/simulation.py) runs whole networks of real
replicas and the node's own driver through faults on a simulated clock, and checks safety,
liveness and memory. Minutes, not seconds, so apart from the core layer; scripts/simulate.py
runs the long sweeps."""
