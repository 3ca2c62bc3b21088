"""Who asked, in the order: every request the client signs names its actor, and `GET /audit`
lists who triggered, cancelled, re-ran and approved what, and the owners whose signatures
carried a change of the network document, against fake nodes with real signatures
(tests/client/fake_nodes.py)."""

import dataclasses
import json
import sqlite3

from client.certificate import check_certificate
from client.records import BuildRecords
from client.tables.schema import SCHEMA_VERSION
from pbft.encoding import canonical
from pbft.messages import encode
from pbft.networkchange import NetworkChange, OwnerSignature
from shared.crypto import generate_private_key, sign_bytes
from shared.networkdoc import agreed
from tests.client.fake_nodes import post, start_client
from tests.client.forge_deliveries import GITHUB_PUSH, REPOSITORIES, push, settled

SHAS = ["1" * 40, "2" * 40]
MACHINE = {"kind": "machine", "name": "ci"}  # the fake cluster's client is named "ci"
PUSHER = {"kind": "forge", "name": f"github:{GITHUB_PUSH['sender']['login']}"}


async def audit(client, query: str = "") -> dict:
    response = await client.get(f"/audit{query}")
    assert response.status == 200, await response.text()
    return await response.json()


def listed(answer: dict) -> list[tuple]:
    return [(entry["action"], entry["actor"], entry["target"]) for entry in answer["actions"]]


async def test_the_audit_lists_who_built_re_ran_and_cancelled_what_newest_first(cluster, aiohttp_client):
    cluster.config = dataclasses.replace(cluster.config, repositories=REPOSITORIES)
    client = await start_client(aiohttp_client, cluster)
    status, built = await post(client, {"repository": "hello", "branch": "main"})
    assert status == 200
    rerun = (await (await client.post(f"/builds/{built['build_id']}/rerun")).json())["build_id"]
    await settled(client, rerun)
    first = await push(client, "hold/main", SHAS[0], "d-1")
    second = await push(client, "hold/main", SHAS[1], "d-2")  # makes the first moot: a cancel, by the pusher
    assert (await settled(client, first))["result"]["status"] == "cancelled"

    everything = await audit(client)
    assert listed(everything) == [
        ("cancel", PUSHER, first), ("build", PUSHER, None), ("build", PUSHER, None),
        ("rerun", MACHINE, built["build_id"]), ("build", MACHINE, None),
    ]
    assert [entry["build_id"] for entry in everything["actions"][1:]] == [second, first, rerun, built["build_id"]]
    assert everything["next"] is None
    # Each actor is the one the signed request names, which the nodes ordered.
    for entry in everything["actions"]:
        record = await (await client.get(f"/builds/{entry['build_id']}")).json()
        assert record["request"]["operation"]["actor"] == record["actor"] == entry["actor"]
    ordered = {request.timestamp: request.operation.actor for _view, request in cluster.committed.values()}
    assert {str(timestamp): dataclasses.asdict(actor) for timestamp, actor in ordered.items()} == {
        entry["build_id"]: entry["actor"] for entry in everything["actions"]}

    assert listed(await audit(client, "?action=cancel")) == [("cancel", PUSHER, first)]
    assert listed(await audit(client, "?action=rerun")) == [("rerun", MACHINE, built["build_id"])]
    assert [entry["build_id"] for entry in (await audit(client, "?actor=ci"))["actions"]] == [
        rerun, built["build_id"]]
    assert len((await audit(client, f"?actor={PUSHER['name']}&action=build"))["actions"]) == 2
    assert (await audit(client, "?actor_kind=schedule"))["actions"] == []
    page = await audit(client, "?limit=2")
    assert (len(page["actions"]), page["next"]) == (2, second)
    assert [entry["build_id"] for entry in (await audit(client, f"?limit=2&before={page['next']}"))["actions"]] == [
        first, rerun]


async def test_a_bad_audit_filter_is_refused_with_its_reason(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    for query, reason in (("?action=delete", "action must be one of"), ("?actor=a%20b", "actor must be"),
                          ("?actor_kind=root", "actor_kind must be one of"), ("?before=x", "before must be"),
                          ("?repository=..", "repository"), ("?limit=0", "limit must be")):
        response = await client.get(f"/audit{query}")
        assert response.status == 400, query
        error = (await response.json())["error"]
        assert reason in error, (query, error)


async def test_the_certificate_names_who_asked_for_the_build(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    status, verdict = await post(client, {"branch": "main"})
    assert status == 200
    certificate = await (await client.get(f"/builds/{verdict['build_id']}/certificate")).json()
    summary = check_certificate(certificate, cluster.config)
    assert summary.actor == "machine ci"
    assert summary.line().endswith("; asked for by machine ci")


def test_records_of_version_8_gain_the_index_of_builds_by_actor(tmp_path):
    path = tmp_path / "builds.sqlite"
    BuildRecords(path).close()
    with sqlite3.connect(path) as db:  # as version 8 left a file: no index by actor
        db.execute("DROP INDEX builds_actor")
        db.execute("PRAGMA user_version = 8")
    BuildRecords(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 14
        plan = " ".join(row[3] for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT build_id FROM builds"
            " WHERE json_extract(request, '$.operation.actor.name') = 'ci' ORDER BY build_id DESC"))
        assert "builds_actor" in plan, plan


def owners_change(cluster, *owners: str) -> NetworkChange:
    """The client's network with one repository more, signed by `owners` (fresh keys: a fake
    node checks no owner's signature)."""
    document = agreed(cluster.config)
    wanted = {**document, "repositories": [*document["repositories"], {"name": "newrepo", "url": "/srv/git/newrepo"}]}
    unsigned = NetworkChange(cluster.config.digest, canonical(wanted).decode())
    payload = canonical(unsigned.signed_payload())
    return dataclasses.replace(unsigned, signatures=tuple(
        OwnerSignature(name, sign_bytes(generate_private_key(), payload)) for name in owners))


async def submit_change(client, change: NetworkChange) -> tuple[int, dict]:
    response = await client.post("/network/changes", data=json.dumps(encode(change)))
    return response.status, await response.json()


async def test_the_audit_of_a_change_names_the_owners_whose_signatures_carried_it(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    status, answer = await submit_change(client, owners_change(cluster, "bob", "ada"))
    assert status == 200, answer
    assert answer["signed_by"] == ["ada", "bob"] and ", signed by ada, bob, runs from" in answer["reason"]
    [entry] = (await audit(client, "?action=change"))["actions"]
    assert (entry["build_id"], entry["actor"], entry["verdict"]) == (answer["build_id"], MACHINE, "success")
    assert entry["signed_by"] == ["ada", "bob"]
    status, built = await post(client, {"branch": "main"})
    assert status == 200
    assert "signed_by" not in (await audit(client, "?action=build"))["actions"][0]  # only a change has signers


async def test_a_node_of_the_quorum_naming_other_owners_leaves_them_unnamed_never_named_falsely(
        cluster, aiohttp_client):
    # Each node's reason text is its own, not part of the agreed result: node 0 names an owner
    # that signed nothing, and makes the quorum with node 1 (2 and 3 answer late).
    cluster.change_signers = {0: ("mallory",)}
    cluster.delay_s = {0: 0.0, 1: 0.0, 2: 1.0, 3: 1.0}
    client = await start_client(aiohttp_client, cluster)
    status, answer = await submit_change(client, owners_change(cluster, "ada", "bob"))
    assert status == 200, answer
    assert answer["agreed_by"] == [0, 1] and "mallory" in answer["reason"]  # the lowest agreeing node's words
    assert answer["signed_by"] is None
    [entry] = (await audit(client, "?action=change"))["actions"]
    assert entry["signed_by"] is None
