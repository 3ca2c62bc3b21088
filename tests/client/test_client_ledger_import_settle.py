"""The ledger import reaches the verdict the signing client reaches from the same signed results
(issue 55): once f+1 votes agree it holds the build pending, as the signing client waits, for
up to client_settle_s until 2f+1 agree or none can (client.verdicts `settling`), and then reads
the votes by the signing client's own rule (client.verdicts `outcome_of`). Before, the import
accepted a build at its first f+1 matching votes, so a flaky build that passed on two nodes
and failed on two was `disputed` in its own client's records and `accepted` as a success in
every other client's; and a build whose nodes made different artifacts was accepted at its
first f+1 matching votes, or disputed once all were in, where its own client, which needs
2f+1 for a result with artifacts, found it `divergent`.

The nodes are real HTTP servers serving a ledger the test writes vote by vote; the clock is
simulated. The signing client's verdict is worked out by its own code over the same results
arriving in the same order (`signing_client_verdict`)."""

from __future__ import annotations

import asyncio
import types

import aiohttp
import pytest

from client.outcome import Accepted, Disputed, Divergent
from client.requests import Outstanding
from client.verdicts import verdict_of
from pbft.build import Result
from pbft.messages import Reply, Request, signed
from pbft.replies import ReplyCollector
from tests.client.ledger_imports import FAILURE, SUCCESS, Imports, LedgerNodes

STATE_OF = {Accepted: "accepted", Disputed: "disputed", Divergent: "divergent"}


@pytest.fixture
def imports(tmp_path):
    imports = Imports(tmp_path)
    yield imports
    imports.records.close()


def signing_client_verdict(imports: Imports, request: Request, arrivals: list[tuple[int, Result]]):
    """The outcome the signing client records for `request` when its nodes' signed replies come
    in as `arrivals`, each within client_settle_s of the f+1-th: its collector counts them
    (pbft.replies), and its verdict is read once it stops waiting (client.verdicts)."""
    config = imports.config
    collector = ReplyCollector(request.client, request.timestamp, config.f, config.n)
    for node, result in arrivals:
        collector.add(signed(Reply(0, request.timestamp, request.client, node, result), imports.sign(f"node-{node}")))
    core = types.SimpleNamespace(f=config.f, view=0, closing=False)
    return verdict_of(Outstanding(request, collector, ""), core, 0, 0.0).outcome


def import_as_votes_come(imports: Imports, request: Request, rounds: list[tuple[float, list[tuple[int, Result]]]]):
    """Run the import against real nodes whose ledgers order `request` at sequence number 1 and
    take in its votes round by round: each round moves the clock on by its seconds, adds its
    votes and reads once. The record's state after each round."""
    async def run() -> list[str]:
        states = []
        async with LedgerNodes(imports) as nodes, aiohttp.ClientSession() as session:
            imports.importer._session = session
            nodes.order(1, request)
            for wait_s, votes in rounds:
                imports.now += wait_s
                nodes.vote(request, *(imports.vote(node, request, result, seq=1) for node, result in votes))
                await imports.importer.step()
                states.append(imports.record()["state"])
        return states

    return asyncio.run(run())


def test_a_flaky_build_is_held_until_its_votes_settle_and_disputed_as_its_own_client_finds_it(imports):
    request = imports.request()
    first, then = [(0, SUCCESS), (1, SUCCESS)], [(2, FAILURE), (3, FAILURE)]
    # Its own client has f+1 replies for success, waits for them to settle, and within
    # client_settle_s two failures make it disputed: no result can have 2f+1 any more.
    assert type(signing_client_verdict(imports, request, first + then)) is Disputed
    states = import_as_votes_come(imports, request, [(0, first), (5, then)])
    assert states == ["pending", "disputed"]
    record = imports.record()
    assert record["result"]["reason"] == "nodes 0, 1: success (exit 0); nodes 2, 3: failure (exit 1)"
    assert sorted(record["result"]["split"]) == ["0", "1", "2", "3"]


def test_f_plus_1_that_never_settle_are_accepted_once_client_settle_s_has_passed_as_by_its_own_client(imports):
    request = imports.request()
    votes = [(0, SUCCESS), (1, SUCCESS), (2, FAILURE)]  # node 3 never votes: success may yet get 2f+1
    own = signing_client_verdict(imports, request, votes)
    assert (type(own), own.agreed_by) == (Accepted, [0, 1])
    settle_s = imports.config.protocol.client_settle_s
    states = import_as_votes_come(imports, request, [(0, votes), (settle_s - 1, []), (1, [])])
    assert states == ["pending", "pending", "accepted"]
    assert (imports.record()["result"]["status"], imports.record()["agreed_by"]) == ("success", [0, 1])


def test_a_build_whose_nodes_made_different_artifacts_is_divergent_as_its_own_client_finds_it(imports):
    request = imports.request()
    made = [Result("success", 0, "ab" * 20, artifacts=f"sha256:{digit * 64}") for digit in "12"]
    votes = [(0, made[0]), (1, made[0]), (2, made[1]), (3, made[1])]
    # Artifacts need 2f+1 matching replies (pbft.replies): f+1 on each manifest is divergent.
    assert type(signing_client_verdict(imports, request, votes)) is Divergent
    assert import_as_votes_come(imports, request, [(0, votes)]) == ["divergent"]
    assert imports.record()["result"]["artifacts_by_node"] == {
        "0": made[0].artifacts, "1": made[0].artifacts, "2": made[1].artifacts, "3": made[1].artifacts}


def test_votes_that_settle_at_once_make_the_verdict_at_once(imports):
    """2f+1 alike settle the verdict: nothing is held (this one passes before the change too)."""
    request = imports.request()
    votes = [(0, SUCCESS), (1, SUCCESS), (2, SUCCESS)]
    assert STATE_OF[type(signing_client_verdict(imports, request, votes))] == "accepted"
    assert import_as_votes_come(imports, request, [(0, votes)]) == ["accepted"]
