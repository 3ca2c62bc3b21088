"""A node's Prometheus metrics (GET /metrics): counters the driver feeds as effects go out,
and the replica's and links' state read at scrape time.

Each node has a registry of its own, not the library's global one, so that
several nodes in one process (tests) never share a counter.
"""

from __future__ import annotations

import collections
from collections import OrderedDict
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# Requests whose first sighting is remembered until they are executed; the oldest go first.
MAX_PENDING = 4096
CONSENSUS_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BUILD_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
SAVE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class NodeMetrics:
    def __init__(
        self,
        state: Callable[[], dict],
        links: Callable[[], dict[int, dict]],
        signatures_checked: Callable[[], int] = lambda: 0,
    ) -> None:
        """`state`: the driver's status (view, last_executed, builds_running, dropped);
        `links`: each peer link's status (connected, reconnects, dropped);
        `signatures_checked`: how many signatures the node's authenticator checked so far."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests_received = Counter("pbft_requests_received", "Client REQUEST frames this node received", registry=r)
        self.requests_ordered = Counter(
            "pbft_requests_ordered", "Requests in the batches this node executed, built here or learnt", registry=r)
        self.view_changes = Counter("pbft_view_changes", "Views this node moved on to", registry=r)
        self.checkpoints = Counter("pbft_checkpoints_stable", "Checkpoints that became stable here", registry=r)
        self.state_transfers = Counter(
            "pbft_state_transfer_batches", "Batches this node learnt by state transfer instead of building", registry=r)
        self.verdicts = Counter("pbft_verdicts", "Build verdicts this node recorded, by state", ["state"], registry=r)
        self.builds = Counter("pbft_builds_finished", "Builds this node ran to a result, by status", ["status"],
                              registry=r)
        self.consensus_seconds = Histogram(
            "pbft_consensus_seconds", "From a request's first sighting here (REQUEST or PRE-PREPARE) to its execution",
            buckets=CONSENSUS_BUCKETS_S, registry=r)
        self.build_seconds = Histogram("pbft_build_seconds", "Duration of this node's builds",
                                       buckets=BUILD_BUCKETS_S, registry=r)
        self.reloads = Counter(
            "pbft_node_reloads", "Configuration reloads (SIGHUP) by outcome: applied, or refused (the running "
            "configuration stays)", ["outcome"], registry=r)
        for outcome in ("applied", "refused"):
            self.reloads.labels(outcome)
        # The node's event loop waits for every save: a slow disk (or fsyncs queued behind
        # other processes') shows here before it shows as consensus latency.
        self.save_seconds = Histogram(
            "pbft_store_save_seconds", "Time saving one turn's steps held up this node, by whether it was fsynced",
            ["synced"], buckets=SAVE_BUCKETS_S, registry=r)
        # Looked up once: labels() takes a lock and checks its arguments, on every save.
        self.save_seconds_by_sync = {sync: self.save_seconds.labels(str(sync).lower()) for sync in (True, False)}
        # Frames sent to peers, by message type: a plain counter, as the driver counts each
        # frame of every turn (a labelled Counter takes a lock per increment).
        self.sent: collections.Counter[str] = collections.Counter()
        r.register(_StateCollector(state, links, signatures_checked, self.sent))
        self._first_seen: OrderedDict[tuple[str, int], float] = OrderedDict()

    def count_reload(self, outcome: str) -> None:
        """One reload (SIGHUP) ended: "applied" or "refused" (`shared.reload.LiveConfig`)."""
        self.reloads.labels(outcome).inc()

    def seen(self, keys: Iterable[tuple[str, int]], now_s: float) -> None:
        for key in keys:
            if key not in self._first_seen:
                self._first_seen[key] = now_s
                if len(self._first_seen) > MAX_PENDING:
                    self._first_seen.popitem(last=False)

    def executed(self, keys: Iterable[tuple[str, int]], now_s: float) -> None:
        for key in keys:
            seen_s = self._first_seen.pop(key, None)
            if seen_s is not None:
                self.consensus_seconds.observe(now_s - seen_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    def __init__(self, state: Callable[[], dict], links: Callable[[], dict[int, dict]],
                 signatures_checked: Callable[[], int], sent: collections.Counter[str]) -> None:
        self._state = state
        self._sent = sent
        self._links = links
        self._signatures_checked = signatures_checked

    def describe(self) -> list[Metric]:
        return []  # read at scrape time; nothing to check for clashes up front

    def collect(self) -> Iterable[Metric]:
        state = self._state()
        for name, text in (("view", "The view this node is in"),
                           ("primary", "The primary of that view"),
                           ("last_executed", "The last sequence number this node executed"),
                           ("low_watermark", "The last stable checkpoint"),
                           ("high_watermark", "The highest sequence number this node accepts"),
                           ("builds_running", "Builds running on this node now"),
                           ("builds_queued", "Builds waiting for a build slot on this node now")):
            yield GaugeMetricFamily(f"pbft_{name}", text, value=state[name])
        # 1 per peer that signed that it runs another network document (shared/networkdoc.py):
        # an alert on this names a misconfigured node before its builds are disputed.
        foreign = GaugeMetricFamily("pbft_peer_foreign_network", "1 while the peer says it runs another network "
                                    "configuration than this node", labels=["peer"])
        for peer in state["network"]["foreign"]:
            foreign.add_metric([peer], 1)
        yield foreign
        drops = CounterMetricFamily("pbft_frames_dropped", "Frames this node dropped, by reason", labels=["reason"])
        for reason, count in sorted(state["dropped"].items()):
            drops.add_metric([reason], count)
        yield drops
        sent = CounterMetricFamily("pbft_messages_sent", "Frames this node sent to its peers, by message type",
                                   labels=["type"])
        for kind, count in sorted(self._sent.items()):
            sent.add_metric([kind], count)
        yield sent
        # A third of the nodes' CPU per request at n = 16 (docs/performance.md): one check per vote counted.
        yield CounterMetricFamily("pbft_signatures_checked", "Signatures of nodes and clients this node checked",
                                  value=self._signatures_checked())
        links = self._links()
        connected = GaugeMetricFamily("pbft_peer_connected", "1 while the link to the peer is up", labels=["peer"])
        reconnects = CounterMetricFamily("pbft_peer_reconnects", "Times the link to the peer was made again",
                                         labels=["peer"])
        unsent = CounterMetricFamily("pbft_peer_frames_unsent", "Frames for the peer dropped unsent, by why",
                                     labels=["peer", "why"])
        for peer, link in sorted(links.items()):
            connected.add_metric([str(peer)], 1 if link["connected"] else 0)
            reconnects.add_metric([str(peer)], link["reconnects"])
            unsent.add_metric([str(peer), "queue_full"], link["dropped"])
            unsent.add_metric([str(peer), "expired"], link["expired"])
        yield from (connected, reconnects, unsent)
