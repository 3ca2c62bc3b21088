"""`POST /builds/{id}/actions/{action}/approve`: a person lets an `after:` action that waits for an
approval deploy to its environment (client.verbs.deploys). Against fake nodes that answer an
approval as the replica does (pbft.ci.answers.approval_answer): the approval is a request of its
own, ordered, with its actor, and the audit lists it."""

from client.keys import RECORDS_KEY
from tests.client.client_token import BEARER
from tests.client.deploys import a_client, certified_deploy, record, reported, waiting_deploy
from tests.client.forge_deliveries import settled


async def test_an_approval_is_ordered_once_with_its_approver_and_the_audit_names_them(cluster, aiohttp_client):
    client, build_id, alice = await waiting_deploy(cluster, aiohttp_client, "alice", "approve")

    response = await client.post(f"/builds/{build_id}/actions/deploy/approve", headers=alice)
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert answer["build_id"] == build_id and answer["already_approved"] is False
    approval = await settled(client, answer["approval_id"], BEARER)
    assert approval["state"] == "accepted" and approval["verdict"] == "success"
    assert approval["approves"] == {"build": build_id, "action": "deploy", "environment": "production"}
    assert approval["request"]["operation"]["actor"] == {"kind": "token", "name": "alice"}
    assert approval["request"]["operation"]["commit"] is None  # never pinned: it builds nothing

    # A second click answers the first approval rather than ordering another.
    again = await (await client.post(f"/builds/{build_id}/actions/deploy/approve", headers=alice)).json()
    assert (again["approval_id"], again["already_approved"]) == (answer["approval_id"], True)
    (action,) = (await record(client, build_id))["actions"]
    assert [(each["approval_id"], each["verdict"], each["actor"]) for each in action["approvals"]] == [
        (answer["approval_id"], "success", "token alice")]

    audit = await (await client.get("/audit?action=approve", headers=BEARER)).json()
    (entry,) = audit["actions"]
    assert entry["actor"] == {"kind": "token", "name": "alice"} and entry["target"] == build_id
    assert entry["deploy"] == {"action": "deploy", "environment": "production"}
    # Not a build of the branch: a newer push does not supersede it, and the branch's builds list none.
    assert entry["build_id"] not in [build["build_id"] for build in
                                     client.server.app[RECORDS_KEY].builds.branch_verdicts("hello", "deploy", 10)]


async def test_a_person_without_the_environments_role_is_refused_naming_it(cluster, aiohttp_client):
    client, build_id, bob = await waiting_deploy(cluster, aiohttp_client, "bob", "operate")

    response = await client.post(f"/builds/{build_id}/actions/deploy/approve", headers=bob)
    assert response.status == 403
    assert (await response.json())["error"] == (
        "approving a deploy to production: this needs the role approve on repository hello: "
        "token bob has operate there")
    assert (await record(client, build_id))["actions"][0]["approvals"] == []

    # Staging asks only for operate: bob may approve there.
    await reported(cluster, client, build_id, "waiting", environment="staging")
    response = await client.post(f"/builds/{build_id}/actions/deploy/approve", headers=bob)
    assert response.status == 202, await response.text()


async def test_an_action_that_waits_for_nothing_is_not_approved(cluster, aiohttp_client):
    client = await a_client(cluster, aiohttp_client)
    build_id = await certified_deploy(client)
    url = f"/builds/{build_id}/actions/deploy/approve"

    response = await client.post(url, headers=BEARER)
    assert response.status == 409
    assert (await response.json())["error"] == (
        f"action deploy of build {build_id} deploys to no environment that its runner reported")
    await reported(cluster, client, build_id, "success", approver="user carol")
    response = await client.post(url, headers=BEARER)
    assert (response.status, (await response.json())["error"]) == (
        409, f"action deploy of build {build_id} waits for no approval: its runner reported it success")
    await reported(cluster, client, build_id, "waiting", environment="moon")
    response = await client.post(url, headers=BEARER)
    assert (response.status, (await response.json())["error"]) == (
        409, "environment moon is not in the network document")
    assert (await client.post(f"/builds/{build_id}/actions/a%20b/approve", headers=BEARER)).status == 400
    assert (await client.post("/builds/1/actions/deploy/approve", headers=BEARER)).status == 404


async def test_an_approval_is_no_build_to_rerun_or_cancel(cluster, aiohttp_client):
    client = await a_client(cluster, aiohttp_client)
    build_id = await certified_deploy(client)
    await reported(cluster, client, build_id, "waiting")
    approval_id = (await (await client.post(f"/builds/{build_id}/actions/deploy/approve",
                                            headers=BEARER)).json())["approval_id"]
    await settled(client, approval_id, BEARER)
    for verb in ("rerun", "cancel"):
        response = await client.post(f"/builds/{approval_id}/{verb}", headers=BEARER)
        assert (response.status, (await response.json())["error"]) == (
            409, f"build {approval_id} is an approval, not a build")
