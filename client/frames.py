"""What a client takes from the nodes' frames: replies, build states and current views, each checked.

A frame counts only if it decodes as one of those three messages, names
this client and a node of the network, and carries that node's signature; a
reply must also carry the attestation signatures every verdict's replies
make (pbft.attestation). Anything else is dropped with a logged reason
(`ignore_<what>_<reason>`), as a node drops bad input from a peer.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from client.attestation import verify_with
from pbft.attestation import Signed, signers
from pbft.authenticator import Authenticator
from pbft.build import Operation
from pbft.messages import BuildState, CurrentView, MessageError, Reply, decode
from pbft.networks import NetworkClaims
from shared.config import NetworkConfig

log = logging.getLogger(__name__)

NodeMessage = Reply | BuildState | CurrentView


class NodeFrames:
    def __init__(self, config: NetworkConfig, client_name: str, auth: Authenticator) -> None:
        self._client_name = client_name
        self._auth = auth
        self.node_ids: frozenset[int] = frozenset()
        self._node_keys: dict[int, str] = {}
        self.follow(config)
        # Which network document each node signed that it runs (its CURRENT-VIEW at the
        # handshake, then each reply): those whose digest is not this client's are named
        # on GET /network and the dashboard (shared/networkdoc.py).
        self.network = config.digest  # the network document this client runs
        self.networks = NetworkClaims()
        # Told the digest of a network document f+1 nodes signed that they run, other than this
        # client's: at least one honest node runs it, so the order made it (client.contexts).
        self.on_vouched: Callable[[str], None] | None = None

    def runs(self, network: str) -> None:
        """Run the network document `network` from now on. Each node's last signed word is
        compared with it at once: a node that named it before this client took it runs what
        this client runs, and one that named the document this client ran before does not."""
        self.network = network
        self.networks.named = {sender: (named, network) for sender, (named, _) in self.networks.named.items()}

    def follow(self, config: NetworkConfig) -> None:
        """Take the members of `config` and their keys: a change through the order made them."""
        self.node_ids = frozenset(node.id for node in config.nodes)
        self._node_keys = {node.id: node.public_key for node in config.nodes}
        self._f = config.f

    def parse(self, link_node_id: int, text: str) -> NodeMessage | None:
        """The message in a frame from the link to node `link_node_id`, if it is one for this client."""
        try:
            message = decode(json.loads(text))
        except (json.JSONDecodeError, MessageError, RecursionError) as error:
            log.warning("ignore_frame_malformed from link %d: %s", link_node_id, str(error)[:200])
            return None
        if not isinstance(message, (Reply, BuildState, CurrentView)):
            log.warning("ignore_frame_not_reply from link %d: %s", link_node_id, type(message).__name__)
            return None
        if message.client != self._client_name:
            log.warning("ignore_reply_other_client from link %d: %r", link_node_id, message.client)
            return None
        if message.sender not in self.node_ids:
            log.warning("ignore_reply_unknown_sender from link %d: %d", link_node_id, message.sender)
            return None
        return message

    def signed(self, message: NodeMessage, link_node_id: int) -> bool:
        """Whether `message` carries its sender's signature (logged when it does not); the
        network document a signed reply or current view names is noted."""
        if self._auth.verify_key(self._node_keys[message.sender], message.payload(), message.sig):
            if not isinstance(message, BuildState):
                self._claim_network(message.sender, message.network)
            return True
        what = {Reply: "reply", BuildState: "build-state", CurrentView: "current-view"}[type(message)]
        log.warning("ignore_%s_bad_signature: sender %d on link %d", what, message.sender, link_node_id)
        return False

    def _claim_network(self, sender: int, network: str) -> None:
        if not self.networks.claim(sender, network, self.network):
            return
        # A node that runs another configuration is one of the f the network tolerates: its
        # replies still count (f+1 matching ones include an honest node's); it is named.
        log.warning("node %d runs another network configuration: %s, this client %s",
                    sender, network[:16] or "none", self.network[:16])
        vouching = [node for node, digest in self.networks.foreign().items() if digest == network]
        if len(vouching) > self._f and self.on_vouched is not None:
            self.on_vouched(network)

    def vouching(self, network: str) -> list[int]:
        """The nodes whose last signed word named the network document `network`."""
        return [node for node, (named, _) in sorted(self.networks.named.items()) if named == network]

    def attested(self, operation: Operation, reply: Reply, link_node_id: int) -> bool:
        """Whether `reply` makes its part of the verdict's attestation (logged when it does not)."""
        attestation = Signed(operation, reply.result)
        if attestation.exists and not signers(attestation, [reply], self._node_keys, verify_with):
            # Every verdict's f+1 replies must make its attestation: one whose attestation
            # signatures do not verify is a faulty node's, and does not count.
            log.warning("ignore_reply_bad_attestation: sender %d on link %d", reply.sender, link_node_id)
            return False
        return True
