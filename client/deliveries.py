"""Answering forge deliveries: at once, with where the verdict will appear.

Forges give up on a webhook after about ten seconds, while consensus and a
build take longer, so a push is answered `202` with the build id and a
status URL as soon as the request is signed and recorded; the service
follows it in the background and the verdict lands in the build records.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiohttp import web

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


def answer_delivery(
    delivery: Delivery, service: ClientService, records: BuildRecords, settings: WebhookSettings
) -> web.Response:
    if isinstance(delivery, Ignored):
        log.info("forge delivery ignored: %s", delivery.reason)
        return web.json_response({"ignored": True, "reason": delivery.reason}, status=202)
    if isinstance(delivery, Pong):
        log.info("forge ping for %s", delivery.repository)
        return web.json_response({"pong": True, "repository": delivery.repository})
    assert isinstance(delivery, Build)
    operation, delivery_id = delivery.operation, delivery.delivery_id
    # From the lookup to the insert nothing awaits, so two copies of one
    # delivery arriving together cannot both start a build.
    if delivery_id is not None:
        known = records.deliveries.build_of(operation.repository, delivery_id)
        if known is not None:
            log.info("forge redelivery %s of build %d: nothing new to build", delivery_id, known)
            return started(known, settings, redelivery=True)
        held = records.approvals.of_delivery(operation.repository, delivery_id)
        if held is not None:
            log.info("forge redelivery %s of approval %s: nothing new to hold", delivery_id, held["approval_id"])
            return _held(held["approval_id"], settings, redelivery=True)
    if delivery.fork and not settings.builds_forks(operation.repository):
        return _held(str(service.verbs.approve.hold(operation, delivery_id)), settings, redelivery=False)
    build_id = service.verbs.submit.start(operation, Origin(commit_info=delivery.commit_info))
    if delivery_id is not None:
        records.deliveries.add(operation.repository, delivery_id, build_id, time.time())
    log.info("forge delivery %s started build %d", delivery_id or "(no id)", build_id)
    if settings.auto_cancels(operation.repository) and operation.trigger_event in ("push", "pull_request"):
        service.verbs.cancel.supersede(operation, build_id)
    return started(build_id, settings)


def _held(approval_id: str, settings: WebhookSettings, *, redelivery: bool) -> web.Response:
    approval_url = f"{settings.status_base_url}/approvals/{approval_id}"
    answer = {"awaiting_approval": True, "approval_id": approval_id, "approval_url": approval_url,
              "approve": f"POST {approval_url}/approve with the client's token"}
    if redelivery:
        answer["redelivery"] = True
    return web.json_response(answer, status=202)


def started(build_id: int | str, settings: WebhookSettings, **more) -> web.Response:
    """202: a build is on its way; its id, where its verdict will appear, and `more` fields."""
    answer = {"build_id": str(build_id), "status_url": f"{settings.status_base_url}/builds/{build_id}", **more}
    return web.json_response(answer, status=202)
