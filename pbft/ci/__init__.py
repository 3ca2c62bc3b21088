"""The CI's share of the replicated state: what the order decides about builds, apart from
how the order is made (views, epochs, checkpoints, state transfer), which stays the replica's.
"""
