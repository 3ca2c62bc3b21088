"""How every node builds (`build:`) and how the replicas and the client pace the protocol
(`protocol:`): the same on every node."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Iterator

from pbft.slot import ReplicaSettings
from shared.config_engines import DockerEngineConfig
from shared.config_files import per_node
from shared.config_values import REGISTRY, UID_GID
from shared.schema import Bool, Inline, Int, ListOf, Number, Text, section, setting

# A build cannot run with none of these: zero memory, processes or room on a tmpfs fails
# every build in ways that look like the build's own fault, and zero concurrent builds would
# wait forever.
_AT_LEAST_ONE = Int(minimum=1)
_SIZE = Int(minimum=0)


@section
class BuildConfig:
    """How every node builds: the same on every node (a node's engine aside)."""

    image: str = setting(Text(), default="pbft-ci/busybox:latest",
                         doc="for a spec that names none; pulled like any image (builder/engine/images.py)")
    timeout_s: float = setting(Number(above=0), default=300.0,
                               doc="a build's deadline; a spec may ask for less; below protocol.client_deadline_s")
    memory_mb: int = setting(_AT_LEAST_ONE, default=256,
                             doc="the build's processes' share of its memory limit (tmpfs come on top)")
    cpus: float = setting(Number(above=0), default=1.0, doc="CPUs a build may use")
    pids_limit: int = setting(_AT_LEAST_ONE, default=128, doc="processes and threads a build may have")
    output_cap_bytes: int = setting(_SIZE, default=1_000_000, doc="build output kept in the log; the rest is cut")
    user: str = setting(UID_GID, default="1000:1000", doc="numeric uid:gid the build runs as")
    max_concurrent: int = setting(_AT_LEAST_ONE, default=2, doc="builds a node runs at once")
    allow_root: bool = setting(Bool(), default=False, doc="may a repository's .pbft-ci.yml ask to build as root?")
    tmp_mb: int = setting(_AT_LEAST_ONE, default=64, doc="size of the build's /tmp and, separately, of its /dev/shm")
    workspace_mb: int = setting(_AT_LEAST_ONE, default=1024, doc="size of the tmpfs the build's /workspace lives on")
    home_mb: int = setting(_AT_LEAST_ONE, default=256, doc="size of the tmpfs the build's HOME (/home/build) lives on")
    cache_mb: int = setting(_SIZE, default=512, doc="largest build cache (a tar) a node saves for a repository; "
                                                    "0: no caches")
    cache_keep: int = setting(_AT_LEAST_ONE, default=3, doc="caches a node keeps per scope (a branch, tag or pull "
                                                            "request), the oldest deleted first")
    cache_scopes: int = setting(_AT_LEAST_ONE, default=4, doc="scopes a node keeps caches of per repository and "
                                                              "kind; past them the least recently used goes whole")
    artifacts_mb: int = setting(_SIZE, default=64, doc="most bytes of artifacts one build may keep "
                                                       "(builder/workspace/artifacts.py); 0: artifacts off")
    artifacts_keep: int = setting(_AT_LEAST_ONE, default=5, doc="builds per repository whose artifacts a node keeps, "
                                                                "the oldest deleted first")
    images_keep: int = setting(_AT_LEAST_ONE, default=3, doc="Dockerfile images a node's engine keeps per repository, "
                                                             "the least recently tagged removed first, none tagged "
                                                             "within the hour (builder/engine/imagekeep.py)")
    registries: tuple[str, ...] = setting(ListOf(REGISTRY), default=(),
                                          doc="registries a node pulls images it lacks from; none: only what each "
                                              "engine holds")
    registry_auth_file: str = setting(Text(), default="", local=True, doc="each node's credentials for them, a Docker "
                                                              "config.json; {id} is the node's id")
    require_digests: bool = setting(Bool(), default=False, doc="run only images named by digest (name@sha256:...)")
    # Where a node builds, not how: a node's own entry may name another (NodeConfig.docker,
    # which is what the node uses).
    docker: DockerEngineConfig = setting(Inline(DockerEngineConfig, "docker_"), default=DockerEngineConfig(), local=True,
                                         doc="the build engine (docker_host, docker_tls) of every node that names none")

    def registry_auth_path(self, base: Path, node_id: int) -> Path | None:
        """Node `node_id`'s credentials file, relative to `base` (the configuration's folder)."""
        if not self.registry_auth_file:
            return None
        return (base / per_node(self.registry_auth_file, node_id)).resolve()


# From this many nodes up a network relays votes unless its YAML says otherwise: in
# scripts/bench.py relay runs, relaying was faster from n = 7 or 10 up, and the extra hop
# made n = 4 slower (13.4 vs 10.8 ms p50 in one run, 11.4 vs 10.7 in others).
RELAY_VOTES_FROM_NODES = 7
# The replica's settings a network's YAML may choose; pbft.slot.ReplicaSettings defines their
# meaning and their defaults, once.
REPLICA_SETTINGS = ("checkpoint_interval", "log_window", "batch_max", "pipeline_depth", "max_buffered",
                    "view_change_timeout_s", "relay_votes", "relay_fallback_s", "standby_s")
# Pings let both ends of a node's link notice a peer that vanished without closing the TCP
# connection (node/peers.py).
PEER_HEARTBEAT_S = 10.0
_REPLICA_DEFAULTS = {field.name: field.default for field in fields(ReplicaSettings)}


def _protocol_problems(protocol: ProtocolConfig, given: frozenset) -> Iterator[tuple[str, str]]:
    if protocol.log_window < protocol.checkpoint_interval:
        # A replica's window must hold the sequence numbers up to its next checkpoint (§4.3).
        yield "log_window", f"must be at least checkpoint_interval ({protocol.checkpoint_interval})"


@section(check=_protocol_problems)
class ProtocolConfig:
    """The replica's settings (pbft/slot.py) and the client's waits."""

    checkpoint_interval: int = setting(_AT_LEAST_ONE, default=_REPLICA_DEFAULTS["checkpoint_interval"],
                                       doc="K (§4.3): a checkpoint every K sequence numbers")
    log_window: int = setting(_AT_LEAST_ONE, default=_REPLICA_DEFAULTS["log_window"],
                              doc="L: sequence numbers a replica accepts above its low watermark h")
    batch_max: int = setting(_AT_LEAST_ONE, default=_REPLICA_DEFAULTS["batch_max"],
                             doc="requests in one pre-prepare")
    pipeline_depth: int = setting(_AT_LEAST_ONE, default=_REPLICA_DEFAULTS["pipeline_depth"],
                                  doc="sequence numbers a primary keeps in flight before it batches")
    max_buffered: int = setting(_SIZE, default=_REPLICA_DEFAULTS["max_buffered"],
                                doc="early messages a replica holds, shared out per sender")
    view_change_timeout_s: float = setting(Number(minimum=0), default=_REPLICA_DEFAULTS["view_change_timeout_s"],
                                           doc="T: how long a request may wait for its execution before a view "
                                               "change; doubled for each consecutive one")
    relay_votes: bool = setting(Bool(), default=_REPLICA_DEFAULTS["relay_votes"],
                                shown_default=f"true from {RELAY_VOTES_FROM_NODES} nodes up, else false",
                                doc="backups send votes to the primary alone, which passes quorums on in one frame")
    relay_fallback_s: float = setting(Number(above=0), default=_REPLICA_DEFAULTS["relay_fallback_s"],
                                      doc="a relaying backup whose slot has not moved for this long broadcasts its "
                                          "votes itself")
    standby_s: float = setting(Number(minimum=0), default=_REPLICA_DEFAULTS["standby_s"],
                               doc="for a repository with `builders: f+1`: how long after the first picked "
                                   "builder's result the other nodes build too, if the verdict is still open")
    peer_heartbeat_s: float = setting(
        Number(above=0), default=PEER_HEARTBEAT_S,
        doc="the WebSocket ping period on the links between nodes, read at a node's start: a peer that "
            "answers no ping for 1.5 times it is taken for gone, its link closed and what was queued for it "
            "dropped (it catches up by state transfer)")
    client_retransmit_s: float = setting(Number(minimum=0), default=5.0,
                                         doc="how long the client waits for f+1 matching replies before it sends "
                                             "the request to every node")
    client_deadline_s: float = setting(Number(minimum=0), default=600.0,
                                       doc="how long the client waits for a verdict before it answers timeout, unless "
                                           "f+1 nodes say the build waits or runs")
    client_queue_limit_s: float = setting(Number(minimum=0), default=3600.0,
                                          doc="the longest the client waits for a verdict of a build that f+1 nodes "
                                              "say waits or runs")
    client_settle_s: float = setting(Number(minimum=0), default=30.0,
                                     doc="once f+1 replies agree, how much longer the client waits for 2f+1 to agree "
                                         "(or to disagree) before it answers")

    def replica_settings(self, *, node_id: int, n: int, f: int, builder_id: str = "", network: str = "") -> ReplicaSettings:
        """The settings node `node_id` of this network runs its replica with."""
        # Nodes and clients follow a change of the membership (node.peers, client.membership).
        return ReplicaSettings(node_id=node_id, n=n, f=f, builder_id=builder_id, network=network,
                               changes_membership=True, **{name: getattr(self, name) for name in REPLICA_SETTINGS})
