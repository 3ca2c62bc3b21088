"""Which network document each peer says it runs (shared/networkdoc.py).

Every CHECKPOINT and STATUS a node signs names the digest of its network document. A
peer whose digest is not ours runs another configuration: other members, keys, limits
or repositories. Its checkpoints never match ours (`pbft.checkpoints`), and a build it
runs may differ from ours for that reason alone, so it is named here — in the node's log,
its status and its metrics — from its first signed word, not discovered as a dispute.

One entry per sender, the digest it named last: bounded by n, and a node that fixes its
file and restarts is no longer named once it speaks again.
"""

from __future__ import annotations


class NetworkClaims:
    def __init__(self, own: str) -> None:
        self.own = own
        self.named: dict[int, str] = {}  # sender -> the digest it named last

    def claim(self, sender: int, network: str) -> bool:
        """Note what `sender` signed that it runs; True if that is news: another network
        document than ours, named for the first time or changed."""
        before = self.named.get(sender)
        self.named[sender] = network
        return network != self.own and network != before

    def foreign(self) -> dict[int, str]:
        """The peers that last named a network document other than ours, with its digest."""
        return {sender: network for sender, network in sorted(self.named.items()) if network != self.own}

    def runs(self, own: str) -> None:
        """This node now runs the document `own` (its configuration was reloaded)."""
        self.own = own
