"""The build side of a node: fetch the agreed commit, run its spec in locked-down containers,
keep what it leaves (caches, artifacts, logs) and say what happened.

A library the protocol side (node/server.py, node/driver.py) calls with an agreed request; it
knows nothing of peers, the replica or the node's store, so the two halves change apart."""
