"""What a forge's delivery gets: a build started at once, its verdict later; or a hold; or nothing.

Forges give up on a webhook after about ten seconds, while consensus and a
build take longer, so a push is answered `202` with the build id and a
status URL as soon as the request is signed and recorded (`Started`); the
client follows it in the background and the verdict lands in the build
records. A redelivery (the same delivery id) starts nothing new and gets the
build, or the hold, the first delivery got. A pull request from a fork
waits for an approval (`Held`, client.verbs.approve) unless its repository
builds forks; a push to a repository with `auto_cancel` cancels the older
builds of its ref still without a verdict (client.verbs.cancel). The routes
say each answer in JSON (client.routes.webhook).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from client.events import Origin
from client.forges import Build, Delivery, Ignored, Pong
from client.records import BuildRecords
from client.service import ClientService
from shared.config import NetworkConfig, RepositoryConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookSettings:
    repositories: tuple[RepositoryConfig, ...]
    max_body_bytes: int
    body_timeout_s: float  # a body still incomplete after this long is answered 408
    status_base_url: str  # status URLs are this + /builds/<id>

    def auto_cancels(self, repository: str) -> bool:
        """Whether a newer push to one of `repository`'s refs cancels its older builds."""
        return any(repo.auto_cancel for repo in self.repositories if repo.name == repository)

    def builds_forks(self, repository: str) -> bool:
        """Whether pull requests from forks of `repository` build without an approval."""
        return any(repo.build_forks for repo in self.repositories if repo.name == repository)

    @classmethod
    def from_config(cls, config: NetworkConfig, client_name: str) -> WebhookSettings:
        client = config.client(client_name)
        return cls(config.repositories, client.max_body_bytes, client.body_timeout_s, client.base_url)


@dataclass(frozen=True)
class Started:
    """A build is on its way (or was, for a redelivery)."""

    build_id: int
    redelivery: bool = False


@dataclass(frozen=True)
class Held:
    """A fork's pull request waits for an approval (or did, for a redelivery)."""

    approval_id: str
    redelivery: bool = False


Answer = Ignored | Pong | Started | Held


def take_delivery(
    delivery: Delivery, service: ClientService, records: BuildRecords, settings: WebhookSettings
) -> Answer:
    if isinstance(delivery, Ignored):
        log.info("forge delivery ignored: %s", delivery.reason)
        return delivery
    if isinstance(delivery, Pong):
        log.info("forge ping for %s", delivery.repository)
        return delivery
    assert isinstance(delivery, Build)
    operation, delivery_id = delivery.operation, delivery.delivery_id
    # From the lookup to the insert nothing awaits, so two copies of one
    # delivery arriving together cannot both start a build.
    if delivery_id is not None:
        known = records.deliveries.build_of(operation.repository, delivery_id)
        if known is not None:
            log.info("forge redelivery %s of build %d: nothing new to build", delivery_id, known)
            return Started(known, redelivery=True)
        held = records.approvals.of_delivery(operation.repository, delivery_id)
        if held is not None:
            log.info("forge redelivery %s of approval %s: nothing new to hold", delivery_id, held["approval_id"])
            return Held(held["approval_id"], redelivery=True)
    if delivery.fork and not settings.builds_forks(operation.repository):
        return Held(str(service.verbs.approve.hold(operation, delivery_id)))
    build_id = service.verbs.submit.start(operation, Origin(commit_info=delivery.commit_info))
    if delivery_id is not None:
        records.deliveries.add(operation.repository, delivery_id, build_id, time.time())
    log.info("forge delivery %s started build %d", delivery_id or "(no id)", build_id)
    if settings.auto_cancels(operation.repository) and operation.trigger_event in ("push", "pull_request"):
        service.verbs.cancel.supersede(operation, build_id)
    return Started(build_id)
