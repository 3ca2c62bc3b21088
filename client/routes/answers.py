"""The 202 answers of the routes that start something: a build on its way, or a pull request on hold."""

from __future__ import annotations

from aiohttp import web

from client.deliveries import WebhookSettings


def started(build_id: int | str, settings: WebhookSettings, **more) -> web.Response:
    """202: a build is on its way; its id, where its verdict will appear, and `more` fields."""
    answer = {"build_id": str(build_id), "status_url": f"{settings.status_base_url}/builds/{build_id}", **more}
    return web.json_response(answer, status=202)


def held(approval_id: str, settings: WebhookSettings, *, redelivery: bool) -> web.Response:
    """202: a fork's pull request waits for an approval; where to give it."""
    approval_url = f"{settings.status_base_url}/approvals/{approval_id}"
    answer = {"awaiting_approval": True, "approval_id": approval_id, "approval_url": approval_url,
              "approve": f"POST {approval_url}/approve with the client's token"}
    if redelivery:
        answer["redelivery"] = True
    return web.json_response(answer, status=202)
