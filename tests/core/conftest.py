"""The core layer: the replica, its parts and the codec, driven through tests/support/cluster.py
(replicas joined by an in-memory network on a simulated clock), text scenarios and the seeded
simulator. Pure: no socket, no process, no sleep. Its fixtures, when it needs some, go here."""
