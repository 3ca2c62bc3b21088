"""A client whose network has deploy environments, a certified build of a spec with a deploy, and
the runner's signed reports of it: what the tests of approving a deploy share."""

import dataclasses
import time

from client.keys import RECORDS_KEY
from client.tables.tokens import TokenMade
from shared.actionreport import ActionReport
from shared.config_environments import EnvironmentConfig
from tests.client.client_token import BEARER, TOKEN, with_client_settings
from tests.client.fake_nodes import RUNNER, start_client
from tests.client.forge_deliveries import settled

ENVIRONMENTS = (EnvironmentConfig("production", approvers="approve"), EnvironmentConfig("staging", approvers="operate"))


async def a_client(cluster, aiohttp_client):
    with_client_settings(cluster, token=TOKEN)
    cluster.config = dataclasses.replace(cluster.config, environments=ENVIRONMENTS)
    return await start_client(aiohttp_client, cluster)


def bearer(app, owner: str, role: str) -> dict:
    _, token = app[RECORDS_KEY].tokens.create(TokenMade(owner, "laptop", role, 1), time.time())
    return {"Authorization": f"Bearer {token}"}


async def certified_deploy(client) -> str:
    response = await client.post("/webHook", json={"repository": "hello", "branch": "deploy"}, headers=BEARER)
    build_id = (await response.json())["build_id"]
    await settled(client, build_id, BEARER)
    return build_id


async def reported(cluster, client, build_id: str, state: str, environment: str | None = "production",
                   approver: str | None = None) -> None:
    report = ActionReport(int(build_id), "deploy", state, None, "", RUNNER, time.time_ns() // 1000,
                          environment, approver)
    response = await client.post(f"/builds/{build_id}/actions", json=report.signed_body(cluster.runner_key),
                                 headers=BEARER)
    assert response.status == 200, await response.text()


async def waiting_deploy(cluster, aiohttp_client, person: str, role: str) -> tuple:
    """A client, a certified build whose deploy its runner reported waiting for production, and a
    bearer header of `person` with `role`."""
    client = await a_client(cluster, aiohttp_client)
    build_id = await certified_deploy(client)
    await reported(cluster, client, build_id, "waiting")
    return client, build_id, bearer(client.server.app, person, role)


async def record(client, build_id: str) -> dict:
    return await (await client.get(f"/builds/{build_id}", headers=BEARER)).json()
