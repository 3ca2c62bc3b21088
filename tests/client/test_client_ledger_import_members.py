"""The ledger import checks a build's votes against the members in force at the sequence number
the build was ordered at, not today's (issue 55): the members before a change of the network
document vote on the builds ordered up to it, those it names on the builds after it
(pbft.epochs), and the import learns them from the changes it reads in the order
(client.ledgermembers). Before, it checked every vote against the members the client runs
now, so a build ordered before two nodes were re-keyed, whose votes only the old keys make
f+1 of, stayed pending in every other client and ended `timeout`, while every ledger had
certified it.

The nodes are real HTTP servers serving a ledger the test writes; the clock is simulated."""

from __future__ import annotations

import asyncio
import copy

import aiohttp
import pytest

from client.ledgermembers import LedgerMembers
from pbft.build import CHANGE_BRANCH, CHANGE_REPOSITORY, Operation, Result
from pbft.encoding import canonical
from pbft.epochs import MAX_PAST
from pbft.messages import Request, signed
from pbft.networkchange import NetworkChange, document_digest
from shared.crypto import generate_private_key, public_key_hex, save_private_key
from shared.networkdoc import agreed, with_document
from tests.client.ledger_imports import FAILURE, OTHER, SUCCESS, TIMESTAMP, Imports, LedgerNodes

HOUR_US = 3_600_000_000  # a whole number of lanes (16 µs): a timestamp moved by it stays in its lane
APPLIED = Result("success", 0, None, reason="network configuration …, runs from sequence number 2")


@pytest.fixture
def imports(tmp_path):
    imports = Imports(tmp_path)
    yield imports
    imports.records.close()


def rekeying(imports: Imports, nodes: tuple[int, ...], timestamp: int) -> tuple[Request, object]:
    """The other client's request of a change that gives `nodes` new keys (keys/node-N.next.key),
    and the configuration a client runs once the change applied (shared.networkdoc)."""
    document = agreed(imports.config)
    for entry in document["nodes"]:
        if entry["id"] in nodes:
            key = generate_private_key()
            save_private_key(key, imports.keys / f"node-{entry['id']}.next.key")
            entry["public_key"] = public_key_hex(key)
    change = NetworkChange(document_digest(agreed(imports.config)), canonical(document).decode())
    request = signed(Request(OTHER, timestamp, Operation(CHANGE_REPOSITORY, CHANGE_BRANCH, change=change)),
                     imports.sign(f"client-{OTHER}"))
    return request, with_document(imports.config, document, read_secrets=False)


def reading(imports: Imports, script) -> None:
    """Run `script(nodes, read)` against real nodes: `read()` is one reading of the import."""
    async def run() -> None:
        async with LedgerNodes(imports) as nodes, aiohttp.ClientSession() as session:
            async def read() -> None:
                imports.importer._session = session  # that of the import a restart made, too
                await imports.importer.step()

            await script(nodes, read)

    asyncio.run(run())


def old_keys(imports: Imports, request: Request, seq: int, nodes=(0, 1, 2, 3), result: Result = SUCCESS) -> list:
    return [imports.vote(node, request, result, seq=seq) for node in nodes]


def new_keys(imports: Imports, request: Request, seq: int, nodes=(1, 2), result: Result = SUCCESS) -> list:
    return [imports.vote(node, request, result, seq=seq, signer=f"node-{node}.next") for node in nodes]


def test_a_build_ordered_before_two_nodes_were_rekeyed_is_certified_by_the_keys_of_its_day(imports):
    # Two hours ago, while node 3 was down, nodes 0, 1 and 2 built it: every ledger certified it.
    # Then the owners replaced the keys of nodes 1 and 2, and this client, down meanwhile,
    # starts with the network's first document and runs the new one as soon as f+1 nodes vouch.
    before = imports.request(timestamp=TIMESTAMP - 2 * HOUR_US)
    change, rekeyed = rekeying(imports, (1, 2), TIMESTAMP - 2 * HOUR_US + 16_000)
    after = imports.request(timestamp=TIMESTAMP - 2 * HOUR_US + 32_000)

    async def script(nodes: LedgerNodes, read) -> None:
        nodes.order(1, before)
        nodes.vote(before, *old_keys(imports, before, 1, (0, 1, 2)))
        nodes.order(2, change)
        nodes.vote(change, *old_keys(imports, change, 2, result=APPLIED))
        nodes.order(3, after)
        nodes.vote(after, imports.vote(0, after, seq=3), *new_keys(imports, after, 3))
        imports.live.current = rekeyed
        await read()

    reading(imports, script)
    assert imports.records.imported.cursor() == 3
    assert [(imports.record(build.timestamp)["state"], imports.record(build.timestamp)["agreed_by"])
            for build in (before, change, after)] == [("accepted", [0, 1])] * 3


def test_the_reading_waits_at_a_change_of_the_members_until_f_plus_1_of_the_members_before_it_sign_its_verdict(
        imports):
    change, rekeyed = rekeying(imports, (1, 2), TIMESTAMP - 16_000)
    after = imports.request()
    states = []

    async def script(nodes: LedgerNodes, read) -> None:
        imports.live.current = rekeyed  # the client already runs the new document
        nodes.order(1, change)
        nodes.vote(change, imports.vote(0, change, APPLIED, seq=1))
        nodes.order(2, after)
        nodes.vote(after, imports.vote(0, after, seq=2), *new_keys(imports, after, 2))
        await read()
        # One vote is no verdict: node 0 may be the faulty one. Nothing after it is read yet.
        states.append((imports.records.imported.cursor(), imports.record(after.timestamp)))
        nodes.vote(change, *old_keys(imports, change, 1, (1, 2), APPLIED))
        await read()
        states.append((imports.records.imported.cursor(), imports.record(after.timestamp)["state"]))

    reading(imports, script)
    assert states == [(0, None), (2, "accepted")]


def test_the_members_learnt_are_kept_in_the_records_through_a_restart(imports):
    change, _ = rekeying(imports, (1, 2), TIMESTAMP - 16_000)
    after = imports.request()
    states = []

    async def script(nodes: LedgerNodes, read) -> None:
        nodes.order(1, change)
        nodes.vote(change, *old_keys(imports, change, 1, result=APPLIED))
        nodes.order(2, after)
        nodes.vote(after, imports.vote(0, after, seq=2))
        await read()
        states.append(imports.record(after.timestamp)["state"])
        # A restart: the client runs its file's document, the first, until f+1 nodes vouch.
        imports.records.store.commit()
        imports.importer = imports.new_importer()
        nodes.vote(after, *new_keys(imports, after, 2))
        await read()
        states.append(imports.record(after.timestamp)["state"])

    reading(imports, script)
    assert states == ["pending", "accepted"]


def test_a_retired_key_counts_for_no_build_the_reading_found_after_it_retired(imports):
    """Node 1's old key, and node 3, which is faulty, sign a failure as if the build had been
    ordered before the change, when the old key counted: the reading found the build after the
    change, so only votes for a later sequence number count. (Before issue 55's change, a
    retired key counted for nothing at all: this passes there too.)"""
    change, rekeyed = rekeying(imports, (1,), TIMESTAMP - 16_000)
    after = imports.request()
    states = []

    async def script(nodes: LedgerNodes, read) -> None:
        nodes.order(1, change)
        nodes.vote(change, *old_keys(imports, change, 1, result=APPLIED))
        await read()
        imports.live.current = rekeyed
        nodes.order(2, after)
        nodes.vote(after, imports.vote(1, after, FAILURE, seq=1), imports.vote(3, after, FAILURE, seq=1),
                   imports.vote(0, after, seq=2))
        await read()
        imports.now += imports.config.protocol.client_settle_s
        await read()
        states.append(imports.record(after.timestamp)["state"])
        nodes.vote(after, imports.vote(2, after, seq=2), *new_keys(imports, after, 2, (1,)))
        await read()
        states.append(imports.record(after.timestamp)["state"])

    reading(imports, script)
    assert states == ["pending", "accepted"]
    assert imports.record(after.timestamp)["result"]["status"] == "success"


def test_the_members_kept_are_bounded_however_many_changes_the_order_makes(imports):
    members = LedgerMembers(imports.records.imported, imports.config)
    document = agreed(imports.config)
    for change in range(1, MAX_PAST + 4):
        document["nodes"][3]["public_key"] = public_key_hex(generate_private_key())
        members.learn(10 * change, copy.deepcopy(document))
    kept = imports.records.imported.memberships()
    assert [start for start, _, _ in kept] == [10 * change for change in range(3, MAX_PAST + 4)]
    # A build ordered before the oldest kept is checked against the oldest, as a node does
    # (pbft.epochs), after a restart too.
    restarted = LedgerMembers(imports.records.imported, imports.config)
    assert restarted.at(1) == members.at(1) == members.at(31) != members.at(41)
    assert restarted.at(10 * (MAX_PAST + 3) + 1).key_of[3] == document["nodes"][3]["public_key"]


def test_until_a_change_of_the_members_is_read_the_members_are_those_of_the_document_the_client_starts_with(imports):
    """A network without owners changes its members only at a restart of every node and client
    with a new file, and no change is ever in its order: there the members of the client's file
    are in force, as on the nodes. Once a change was read, the members the order made are."""
    _, rekeyed = rekeying(imports, (1,), TIMESTAMP)
    LedgerMembers(imports.records.imported, imports.config)
    restarted = LedgerMembers(imports.records.imported, rekeyed)
    assert restarted.at(1).key_of[1] == rekeyed.node(1).public_key != imports.config.node(1).public_key
    restarted.learn(5, agreed(imports.config))  # and back, through the order
    again = LedgerMembers(imports.records.imported, rekeyed)
    assert (again.at(5).key_of[1], again.at(6).key_of[1]) == (rekeyed.node(1).public_key,
                                                              imports.config.node(1).public_key)
