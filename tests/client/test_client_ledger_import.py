"""Another client's builds, imported from the nodes' ledgers (client.ledgerimport): recorded only
as their client signed them, with a verdict only where f+1 members signed one, and the reading
of the order moving on only as far as f+1 members served it, so that one faulty node can
neither make up a build or a verdict nor hide a build."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from aiohttp import web

from client.certificate import certificate_from_record, check_certificate
from client import ledgerimport
from pbft.build import Result
from pbft.messages import encode
from tests.client.ledger_imports import FAILURE, OTHER, TIMESTAMP, Imports, serve_members, stop_serving


@pytest.fixture
def imports(tmp_path):
    imports = Imports(tmp_path)
    yield imports
    imports.records.close()


def test_another_clients_build_is_recorded_with_the_verdict_f_plus_1_members_signed(imports):
    request = imports.request(delivery="github:d-1")
    imports.importer._take(imports.config, [imports.build(request, [imports.vote(0, request)])])
    assert imports.record()["state"] == "pending"
    assert imports.record()["request"]["client"] == OTHER
    agreed = [imports.build(request, [imports.vote(0, request), imports.vote(2, request)])]
    imports.importer._take(imports.config, agreed)
    # f+1 agree: like its own client, the import waits up to client_settle_s for the verdict to
    # settle (2f+1 alike, or none can be), and takes the f+1 when it has not.
    assert imports.record()["state"] == "pending"
    imports.now += imports.config.protocol.client_settle_s
    imports.importer._take(imports.config, agreed)
    record = imports.record()
    assert (record["state"], record["result"]["status"], record["agreed_by"]) == ("accepted", "success", [0, 2])
    # The votes are its certificate: anyone with the network's keys checks it offline.
    summary = check_certificate(certificate_from_record(record), imports.config)
    assert (summary.client, summary.build_id, summary.signers) == (OTHER, TIMESTAMP, (0, 2))


def test_a_request_its_client_did_not_sign_as_shown_is_not_recorded(imports):
    request = imports.request()
    forged = {**encode(request), "operation": {**encode(request)["operation"], "branch": "release"}}
    votes = [imports.vote(node, request) for node in range(4)]
    imports.importer._take(imports.config, [{**imports.build(request, votes), "request": forged}])
    assert imports.record() is None


def test_votes_that_do_not_verify_or_repeat_a_node_make_no_verdict_and_spoil_none(imports):
    request = imports.request()
    genuine = imports.vote(0, request)
    forged = imports.vote(1, request, signer=3)  # node 3 signing as node 1
    copied = {**genuine, "node": 2}  # node 0's vote, listed under node 2
    wrong_result = imports.vote(3, request, FAILURE)
    imports.importer._take(imports.config, [imports.build(request, [genuine, forged, copied, wrong_result])])
    assert imports.record()["state"] == "pending"
    # The one more genuine vote, from another node's ledger, makes f+1 whatever else came with it.
    more = [imports.build(request, [genuine, forged, copied, wrong_result]), imports.build(request, [forged, copied]),
            imports.build(request, [imports.vote(1, request)])]
    imports.importer._take(imports.config, more)
    imports.now += imports.config.protocol.client_settle_s  # two agree and one dissents: it never settles
    imports.importer._take(imports.config, more)
    assert (imports.record()["state"], imports.record()["agreed_by"]) == ("accepted", [0, 1])


def test_this_clients_own_builds_and_other_clients_cancels_are_left_alone(imports):
    own = imports.request(client="client", timestamp=TIMESTAMP - 1)
    cancel = imports.request(timestamp=TIMESTAMP + 16, cancels=TIMESTAMP)
    imports.importer._take(imports.config, [imports.build(request, [imports.vote(node, request) for node in range(4)])
                                            for request in (own, cancel)])
    assert imports.record(own.timestamp) is None and imports.record(cancel.timestamp) is None


def pages(imports, answers: list[tuple[int, list[dict]]]):
    async def ask_all(config, path, query):
        return [{"after": int(query["after"]), "through": through, "builds": builds} for through, builds in answers]
    imports.importer._ask_all = ask_all


def test_the_reading_moves_on_as_far_as_f_plus_1_members_served_and_takes_what_any_of_them_holds(imports):
    request = imports.request()
    held = imports.build(request, [imports.vote(node, request) for node in (1, 2, 3)], seq=4)
    # A faulty node says it served up to 100 and hides the build; one node is behind.
    pages(imports, [(100, []), (5, [held]), (5, [held]), (3, [])])
    assert asyncio.run(imports.importer.step()) is True
    assert imports.records.imported.cursor() == 5
    assert imports.record()["state"] == "accepted"


def test_the_reading_stays_while_fewer_than_f_plus_1_members_answer(imports):
    request = imports.request()
    pages(imports, [(9, [imports.build(request, [])])])
    assert asyncio.run(imports.importer.step()) is False
    assert imports.records.imported.cursor() == 0 and imports.record() is None


def test_a_member_that_never_answers_holds_a_reading_up_for_the_grace_alone(imports, monkeypatch):
    """f+1 answers make a reading; a silent member (a faulty one, or one that hangs) gets
    ANSWER_GRACE_S after them, not ANSWER_TIMEOUT_S, and is asked again at the next reading."""
    request = imports.request()
    held = imports.build(request, [imports.vote(node, request) for node in (0, 1, 2)], seq=3)
    monkeypatch.setattr(ledgerimport, "ANSWER_TIMEOUT_S", 3600.0)
    monkeypatch.setattr(ledgerimport, "ANSWER_GRACE_S", 0.01)
    cut_short: list[int] = []

    async def get(node, path, query):
        if node.id == 3:
            try:
                await asyncio.Event().wait()  # never answers
            except asyncio.CancelledError:
                cut_short.append(node.id)
                raise
        return {"after": int(query["after"]), "through": 3, "builds": [held]}

    imports.importer._get = get
    # Without the grace this would wait out the hour-long timeout: the bound here fails it.
    assert asyncio.run(asyncio.wait_for(imports.importer.step(), timeout=60)) is True
    assert imports.records.imported.cursor() == 3 and imports.record()["state"] == "accepted"
    assert cut_short == [3]  # asked, and cut short when the grace was over


def test_a_build_that_takes_the_id_of_another_is_not_imported_over_it(imports):
    own = imports.request(client="client")  # the same timestamp: another client left its lane
    imports.records.builds.add_pending(own, 0.0)
    request = imports.request()
    imports.importer._take(imports.config, [imports.build(request, [imports.vote(node, request) for node in range(4)])])
    assert (imports.record()["request"]["client"], imports.record()["state"]) == ("client", "pending")


def test_votes_no_result_can_win_make_the_build_disputed_and_a_build_without_a_verdict_for_too_long_times_out(imports):
    request = imports.request()
    split = [imports.vote(0, request), imports.vote(1, request, FAILURE), imports.vote(2, request, Result("error", 2, None))]
    imports.importer._take(imports.config, [imports.build(request, split)])
    record = imports.record()
    assert (record["state"], sorted(record["result"]["split"])) == ("disputed", ["0", "1", "2"])

    late = imports.request(timestamp=TIMESTAMP - 3_600_000_000 * 16)  # an hour and more ago
    imports.importer._take(imports.config, [imports.build(late, [imports.vote(0, late)])])
    assert imports.record(late.timestamp)["state"] == "timeout"


def test_answers_of_the_wrong_shape_count_as_no_answer_and_stop_nothing(imports):
    request = imports.request()
    held = imports.build(request, [imports.vote(node, request) for node in (1, 2, 3)], seq=2)
    pages(imports, [("9", "all"), (None, [7, "x", {"seq": "2"}]), (2, [held]), (2, [held, {"votes": 5}])])
    assert asyncio.run(imports.importer.step()) is True
    assert imports.records.imported.cursor() == 2 and imports.record()["state"] == "accepted"


class SlowNodes:
    """Every member of the network as a real HTTP server that serves `page` as its answer to
    `GET /ledger`, written a few KiB at a time as a node on a real network sends it, or
    `oversized` bytes of it when set."""

    CHUNK_BYTES = 4096

    def __init__(self, config, page: dict) -> None:
        self.config, self.body, self.oversized = config, json.dumps(page).encode(), 0
        self.runners: list[web.AppRunner] = []

    async def ledger(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        body = self.body if not self.oversized else b" " * self.oversized
        try:
            for start in range(0, len(body), self.CHUNK_BYTES):
                await response.write(body[start:start + self.CHUNK_BYTES])
                await asyncio.sleep(0.001)  # the next segment is still on its way
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client stopped reading an answer over its bound
        return response

    async def __aenter__(self) -> "SlowNodes":
        self.runners = await serve_members(self.config, [("/ledger", self.ledger)])
        return self

    async def __aexit__(self, *_) -> None:
        await stop_serving(self.runners)


def backlog(imports, count: int) -> tuple[dict, list[int]]:
    """A page of `count` builds of the other client, each with the votes of every member."""
    requests = [imports.request(timestamp=TIMESTAMP + 16 * index) for index in range(count)]
    builds = [imports.build(request, [imports.vote(node, request) for node in range(4)], seq=index + 1)
              for index, request in enumerate(requests)]
    return {"after": 0, "through": count, "last_executed": count, "builds": builds}, [r.timestamp for r in requests]


async def read_with_a_real_session(imports, page: dict, oversized: int = 0) -> bool:
    async with SlowNodes(imports.config, page) as nodes, aiohttp.ClientSession() as session:
        nodes.oversized = oversized
        imports.importer._session = session
        return await imports.importer.step()


def test_a_page_that_arrives_in_many_pieces_is_read_whole_and_every_build_on_it_imported(imports):
    page, build_ids = backlog(imports, 40)
    assert len(json.dumps(page)) > 64 * 1024  # more than one read of the stream ever gives
    assert asyncio.run(read_with_a_real_session(imports, page)) is True
    assert imports.records.imported.cursor() == 40
    assert [imports.record(build_id)["state"] for build_id in build_ids] == ["accepted"] * 40


def test_an_answer_over_its_bound_is_refused_at_warning_with_the_reason_and_the_reading_stays(imports, caplog, monkeypatch):
    monkeypatch.setattr(ledgerimport, "MAX_ANSWER_BYTES", 32 * 1024)
    page, _ = backlog(imports, 1)
    with caplog.at_level(logging.WARNING, logger="client.ledgerimport"):
        assert asyncio.run(read_with_a_real_session(imports, page, oversized=64 * 1024)) is False
    assert imports.records.imported.cursor() == 0
    refusals = [record.getMessage() for record in caplog.records if "refused" in record.getMessage()]
    assert len(refusals) == 4 and all("sent more than 32768 bytes" in line for line in refusals), refusals
