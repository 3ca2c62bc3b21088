"""The client's service: one request core, the verbs over it, and the event stream they publish to.

`core` (client.requests) signs, sends, retransmits and collects replies, and
follows the view. `verbs` (client.verbs) are what the client does with it:
`submit` a build and follow it to its verdict, `approve` a fork's pull
request, `cancel` a build, `rerun` one, expand a `matrix` verdict, and
`resume` what a restarted client left without a verdict. Everything that
happens to a build is published on `events` (client.events), which the
records observe first; the statuses, notifications and metrics subscribe
where the app starts them.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.events import EventStream
from client.recorder import Recorder
from client.records import BuildRecords
from client.requests import Links, RequestCore, RequestSettings, RequestSigner
from client.verbs import Verbs
from client.verbs.submit import Pin
from pbft.authenticator import Authenticator
from shared.config import NetworkConfig

# How long close() lets abandoned background builds write their records;
# only a send stuck on a full socket could take longer.
BACKGROUND_CLOSE_S = 5.0


@dataclass(frozen=True)
class ClientOptions:
    # Replaces the configuration's client_deadline_s (client/index.py --deadline-s).
    deadline_s: float | None = None
    # Send to all nodes as soon as the primary's link is seen down (client.requests.RequestSettings).
    follow_links: bool = True
    # Pins the head of a branch a request names without a commit (client.heads `BranchHeads.pin`);
    # None: unpinned.
    pin: Pin | None = None


class ClientService:
    def __init__(
        self, config: NetworkConfig, name: str, auth: Authenticator, records: BuildRecords, links: Links,
        options: ClientOptions = ClientOptions(),
    ) -> None:
        settings = RequestSettings.of(config, options.deadline_s, options.follow_links)
        self.events = EventStream()
        self.events.subscribe(Recorder(records, config.f, settings).observe, critical=True)
        self._links = links
        self._membership = _membership(config)
        self._name, self._lane = name, config.build_id_lane(name)
        signer = RequestSigner(name, auth, lambda now_us: records.store.next_timestamp(now_us, self._lane))
        self.core = RequestCore(config, signer, links, settings, self.events)
        self.verbs = Verbs(self.core, self.events, records, options.pin)

    def start(self) -> None:
        self._links.start(self.core.on_frame, self.core.on_connect, self.core.on_down)

    def follow(self, config: NetworkConfig) -> None:
        """Run with the membership of `config` (nodes, their keys, f), if it is another one, and
        take build ids from the lane the clients of `config` give this one."""
        self._lane = config.build_id_lane(self._name)
        if _membership(config) == self._membership:
            return
        self._membership = _membership(config)
        self._links.follow(config.nodes)
        # Requests sent from now on count replies by the new members and f; those out already
        # keep the f they were sent with, their builds ordered by the members before. Views
        # count from 0 again in the members' first epoch: the views nodes showed are forgotten.
        core = self.core
        core.f, core.n, core.ids = config.f, config.n, tuple(node.id for node in config.nodes)
        core.views.clear()
        core.frames.follow(config)

    def connected(self) -> list[int]:
        """The nodes whose link is up now."""
        return self._links.connected()

    async def close(self) -> None:
        # Builds followed in the background end promptly once abandoned, and
        # are awaited so that their records are written before the file closes.
        self.core.abandon_all()
        await self.core.tasks.close(BACKGROUND_CLOSE_S)
        await self._links.close()


def _membership(config: NetworkConfig) -> tuple:
    return config.f, tuple((node.id, node.public_key, node.url("/client")) for node in config.nodes)
