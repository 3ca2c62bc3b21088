"""The dashboard's routes over real loopback sockets, against fake nodes with real signatures.

The fake nodes are test_client_app's FakeCluster (webhooks get verdicts, so
build records exist) plus what the dashboard asks a node for: `GET /status`
and `GET /requests/{client}/{timestamp}`, answering what each test gives each
node, and a `/logs/{client}/{timestamp}` route for hostile build output.
What the browser does with the pages is tests/test_end_to_end_dashboard.py.
"""

import dataclasses
import re
import time

import pytest
from aiohttp import web

from client.dashboard import SCRIPTS, STATIC_DIR
from client.records import BuildRecords, records_path
from shared.crypto import Ed25519Authenticator
from pbft.build import Operation, Result
from pbft.messages import Request, ResultVote, encode, signed
from tests.client.fake_nodes import CLIENT, FakeCluster, N, honest_result, serve_fake_nodes, start_client

TOKEN = "5ec12e7" * 7  # 49 characters
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE_BRANCH = "<img src=x onerror=alert(1)>"
HOSTILE_OUTPUT = b"</pre><script>document.title='owned'</script><img src=x onerror=alert(2)>\n"
PAGES = ("/dashboard", "/dashboard/network", "/dashboard/builds/123")
# Scripts, styles, fetches and images from this origin's files only; no inline script, no eval, no forms sent.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DATA_ROUTES = ("/builds/{id}/nodes", "/network")


def node_status(node_id: int) -> dict:
    return {
        "id": node_id, "view": 0, "primary": 0, "last_executed": 7, "low_watermark": 0, "high_watermark": 256,
        "builds_running": 1, "dropped": {"ignore_prepare_old_view": 2},
        "links": {str(peer): {"connected": True, "reconnects": 0, "dropped": 0, "expired": 0}
                  for peer in range(N) if peer != node_id},
    }


class FakeNodeViews:
    """What each fake node answers to the dashboard's questions."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.status: dict[int, object] = {i: node_status(i) for i in range(N)}
        self.records: dict[int, dict] = {}  # node id -> its ledger record; absent: 404
        self.output = HOSTILE_OUTPUT
        self.servers = []

    def add_routes(self, app: web.Application, node_id: int) -> None:
        async def status(request: web.Request) -> web.Response:
            answer = self.status[node_id]
            if isinstance(answer, bytes):
                return web.Response(body=answer, content_type="text/plain")
            return web.json_response(answer)

        async def record(request: web.Request) -> web.Response:
            if node_id not in self.records:
                return web.json_response({"error": "not executed"}, status=404)
            return web.json_response(self.records[node_id])

        async def output(request: web.Request) -> web.Response:
            return web.Response(body=self.output, content_type="text/plain")

        app.router.add_get("/status", status)
        app.router.add_get("/requests/{client}/{timestamp}", record)
        app.router.add_get("/logs/{client}/{timestamp}", output)

    def vote(self, voter: int, build_id: int, result: Result, *, signer: int | None = None) -> dict:
        """Node `voter`'s RESULT for the build, as a node's ledger serves it; signed by `signer` if given."""
        vote = ResultVote(5, CLIENT, build_id, result, voter)
        return {"node": voter, "vote": encode(signed(vote, self.cluster.auths[voter if signer is None else signer].sign))}

    def ledger(self, build_id: int, own: Result, votes: list[dict], state: str = "certified") -> dict:
        return {
            "seq": 5, "client": CLIENT, "timestamp": build_id,
            "operation": {"repository": "example", "branch": "main", "commit": None},
            "own_result": own.to_dict(),
            "verdict": {"state": state, "result": own.agreed() if state == "certified" else None},
            "votes": votes,
        }


@pytest.fixture
async def nodes(aiohttp_server, tmp_path):
    cluster = FakeCluster()
    views = FakeNodeViews(cluster)
    views.servers = await serve_fake_nodes(aiohttp_server, cluster, views.add_routes, tmp_path)
    return views


async def start(nodes: FakeNodeViews, aiohttp_client, **client_settings):
    if client_settings:
        client = dataclasses.replace(nodes.cluster.config.clients[0], **client_settings)
        nodes.cluster.config = dataclasses.replace(nodes.cluster.config, clients=(client,))
    return await start_client(aiohttp_client, nodes.cluster)


@pytest.fixture
async def client(nodes, aiohttp_client):
    return await start(nodes, aiohttp_client)


async def build(client, headers=None) -> int:
    response = await client.post("/webHook", json={"branch": "main"}, headers=headers)
    assert response.status == 200
    return int((await response.json())["build_id"])


# --- the pages ---------------------------------------------------------------------------------


async def test_pages_are_static_and_forbid_inline_scripts(client):
    for path in PAGES:
        response = await client.get(path)
        assert response.status == 200, path
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe" not in policy  # neither inline scripts nor event-handler attributes nor eval run
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        tags = re.findall(r"<script[^>]*></script>", await response.text())
        assert tags == [f'<script src="/dashboard/static/{name}" defer></script>' for name in SCRIPTS]
    for name in SCRIPTS:
        script = await client.get(f"/dashboard/static/{name}")
        assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript"), name
    style = await client.get("/dashboard/static/dashboard.css")
    assert style.status == 200 and style.headers["Content-Type"].startswith("text/css")
    root = await client.get("/", allow_redirects=False)
    assert root.status == 302 and root.headers["Location"] == "/dashboard"


async def test_every_page_keeps_the_policy_and_links_its_style_and_icon(client):
    for path in PAGES:
        response = await client.get(path)
        assert response.headers["Content-Security-Policy"] == POLICY, path
        page = await response.text()
        assert '<link rel="stylesheet" href="/dashboard/static/dashboard.css">' in page
        assert '<link rel="icon" href="/dashboard/static/favicon.svg">' in page


def test_log_panes_scroll_sideways_rather_than_break_a_line():
    """Build output keeps its lines whole, as a terminal shows them: no wrapping inside a word."""
    style = (STATIC_DIR / "dashboard.css").read_text()
    log_rule = re.search(r"^\.log \{([^}]*)\}", style, re.MULTILINE).group(1)
    assert "white-space: pre;" in log_rule and "overflow: auto;" in log_rule
    assert "break-all" not in style and "pre-wrap" not in style


@pytest.mark.parametrize(
    "path, status",
    [
        ("/dashboard/builds/abc", 400),
        ("/dashboard/builds/12345678901234567890", 400),
        ("/dashboard/static/dashboard.html", 404),  # only the script and the style sheet are files to fetch
        ("/dashboard/static/..%2Fapp.py", 404),
        ("/dashboard/static/nothing.js", 404),
    ],
)
async def test_bad_dashboard_paths_get_a_json_reason(client, path, status):
    response = await client.get(path)
    assert response.status == status
    assert (await response.json())["error"]


def test_the_script_builds_elements_from_text_only():
    """Every value the script shows goes through textContent or a text node; nothing is parsed as HTML."""
    script = "".join((STATIC_DIR / name).read_text() for name in SCRIPTS)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "javascript:", "DOMParser", "createContextualFragment", "localStorage"):
        assert sink not in script, sink
    assert "sessionStorage" in script and "Authorization" in script
    page = (STATIC_DIR / "dashboard.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script for the policy to have to allow
    assert not re.search(r"\son[a-z]+=", page)  # no event-handler attributes


# --- who may read --------------------------------------------------------------------------------


async def test_with_a_token_the_data_needs_it_and_the_pages_hold_none(nodes, aiohttp_client):
    client = await start(nodes, aiohttp_client, token=TOKEN)
    build_id = await build(client, BEARER)

    for route in DATA_ROUTES:
        path = route.format(id=build_id)
        for headers in ({}, {"Authorization": "Bearer " + "0" * 49}, {"Authorization": f"Basic {TOKEN}"}):
            refused = await client.get(path, headers=headers)
            assert refused.status == 401, (path, headers)
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            assert set(await refused.json()) == {"error"}
        assert (await client.get(path, headers=BEARER)).status == 200, path
    # The pages come without the token (the browser has not been given it yet): the same static file for
    # every page and every caller, holding no build, no node and no secret.
    static_page = (STATIC_DIR / "dashboard.html").read_bytes()
    for path in (*PAGES, f"/dashboard/builds/{build_id}"):
        page = await client.get(path)
        assert page.status == 200
        assert await page.read() == static_page
    for name in SCRIPTS:
        assert TOKEN.encode() not in static_page + (await (await client.get(f"/dashboard/static/{name}")).read())


async def test_without_a_token_the_loopback_opt_out_reads_freely(nodes, aiohttp_client):
    client = await start(nodes, aiohttp_client, plain_without_token=True)
    build_id = await build(client)

    for route in DATA_ROUTES:
        assert (await client.get(route.format(id=build_id))).status == 200, route


# --- what the data routes answer --------------------------------------------------------------------


@pytest.mark.parametrize("path, status", [("/builds/999/nodes", 404), ("/builds/abc/nodes", 400)])
async def test_an_unknown_or_malformed_build_id_is_refused_in_json(client, path, status):
    response = await client.get(path)
    assert response.status == status
    assert response.headers["Content-Type"].startswith("application/json")
    reason = (await response.json())["error"]
    assert reason == ("no build 999" if status == 404 else "build id must be a decimal number")


async def test_network_marks_an_unreachable_node_and_a_node_that_answers_nonsense(nodes, client):
    gone_port = nodes.servers[3].port
    await nodes.servers[3].close()  # node 3 is gone
    nodes.status[2] = b"<html>not a status</html>"

    response = await client.get("/network")

    assert response.status == 200
    answer = await response.json()
    assert answer["client"] == {"view": 0, "primary": 0,
                                "network": {"digest": nodes.cluster.config.digest, "foreign": {}}}
    by_node = {view["node"]: view for view in answer["nodes"]}
    assert sorted(by_node) == [0, 1, 2, 3]
    assert by_node[3]["reachable"] is False and by_node[3]["status"] is None
    assert by_node[3]["error"] == "node 3 does not answer: connection refused"
    assert by_node[3]["address"] == f"127.0.0.1:{gone_port}"
    assert by_node[2]["reachable"] is True and by_node[2]["status"] is None
    assert by_node[2]["error"] == "answered without JSON"
    for node_id in (0, 1):
        status = by_node[node_id]["status"]
        assert by_node[node_id]["reachable"] is True and by_node[node_id]["error"] is None
        assert (status["view"], status["primary"], status["last_executed"]) == (0, 0, 7)
        assert (status["low_watermark"], status["high_watermark"], status["builds_running"]) == (0, 256, 1)
        assert status["dropped"] == {"ignore_prepare_old_view": 2}
        assert status["links"][str(3 - node_id)] == {"connected": True, "reconnects": 0, "dropped": 0, "expired": 0}


async def test_network_names_a_node_that_signed_another_network_document(nodes, aiohttp_client):
    ours, theirs = nodes.cluster.config.digest, "ab" * 32
    nodes.cluster.networks[3] = theirs  # in its CURRENT-VIEW at the handshake, and in its replies
    for node_id in range(N):
        nodes.status[node_id]["network"] = {"digest": theirs if node_id == 3 else ours,
                                            "foreign": {"3": theirs} if node_id != 3 else {"0": ours}}
    nodes.status[2]["network"] = {"digest": "<b>not a digest</b>", "foreign": ["x"]}
    client = await start(nodes, aiohttp_client)

    answer = await (await client.get("/network")).json()

    assert answer["client"]["network"] == {"digest": ours, "foreign": {"3": theirs}}
    networks = {view["node"]: view["status"]["network"] for view in answer["nodes"]}
    assert networks[0] == {"digest": ours, "foreign": {"3": theirs}}
    assert networks[3] == {"digest": theirs, "foreign": {"0": ours}}
    assert networks[2] == {"digest": "", "foreign": {}}  # what is not a digest is not passed on


async def test_a_node_status_with_the_wrong_types_is_unusable_not_a_500(nodes, client):
    nodes.status[1] = {**node_status(1), "view": "zero"}
    nodes.status[2] = [1, 2, 3]

    answer = await (await client.get("/network")).json()

    for node_id in (1, 2):
        view = answer["nodes"][node_id]
        assert (view["reachable"], view["status"]) == (True, None)
        assert view["error"] == "answered GET /status without its numbers"


async def test_build_nodes_shows_each_nodes_ledger_and_only_the_votes_that_verify(nodes, client):
    build_id = await build(client)
    passed, failed = honest_result("main"), Result("failure", 1, honest_result("main").commit)
    honest_votes = [nodes.vote(0, build_id, passed), nodes.vote(1, build_id, passed), nodes.vote(2, build_id, failed)]
    nodes.records[0] = nodes.ledger(build_id, passed, honest_votes, state="disputed")
    # Node 1 also serves a vote "of node 3" it signed itself, and a vote of another build.
    nodes.records[1] = nodes.ledger(
        build_id, passed,
        honest_votes[:2] + [nodes.vote(3, build_id, failed, signer=1), nodes.vote(0, build_id + 1, failed)],
    )
    # Node 2 is reachable and has not executed the build; node 3 is down.
    await nodes.servers[3].close()

    response = await client.get(f"/builds/{build_id}/nodes")

    assert response.status == 200
    answer = await response.json()
    assert answer["build_id"] == str(build_id)
    by_node = {view["node"]: view for view in answer["nodes"]}
    assert by_node[0]["verdict"] == {"state": "disputed", "result": None}
    assert by_node[0]["own_result"] == passed.to_dict() and by_node[0]["seq"] == 5
    assert by_node[1]["verdict"] == {"state": "certified", "result": {**passed.agreed(), "reason": ""}}
    assert (by_node[2]["reachable"], by_node[2]["executed"], by_node[2]["error"]) == (True, False, None)
    assert by_node[3]["reachable"] is False and by_node[3]["error"] == "node 3 does not answer: connection refused"
    # Each voter's signed vote, whichever node served it; the forgery and the other build's vote are dropped.
    assert answer["votes"] == [
        {"node": 0, "results": [passed.to_dict()]},
        {"node": 1, "results": [passed.to_dict()]},
        {"node": 2, "results": [failed.to_dict()]},
    ]
    assert answer["refused_votes"] == ["node 1 served a vote of node 3 that does not verify",
                                       "node 1 served a vote of another build"]


async def test_a_node_that_serves_garbage_votes_costs_a_line_not_a_500(nodes, client):
    build_id = await build(client)
    nodes.records[0] = {**nodes.ledger(build_id, honest_result("main"), []),
                        "votes": [{"node": 1, "vote": {"type": "result", "seq": "x"}}, "junk"]}
    nodes.records[1] = {"seq": "five"}

    answer = await (await client.get(f"/builds/{build_id}/nodes")).json()

    assert answer["votes"] == []
    assert len(answer["refused_votes"]) == 2 and all("malformed vote" in line for line in answer["refused_votes"])
    assert answer["nodes"][1]["error"] == "answered without a sequence number"


# --- hostile text -------------------------------------------------------------------------------------


async def test_a_hostile_branch_name_and_build_output_reach_the_browser_only_as_data(nodes, aiohttp_client):
    # Branch names this hostile are refused at the webhook (shared.refs); a record holding one
    # anyway (an older client's, or a rule relaxed later) must still never become markup.
    records = BuildRecords(records_path(nodes.cluster.config.data_dir, CLIENT))
    sign = Ed25519Authenticator(nodes.cluster.client_key, {}, {}).sign
    hostile = signed(Request(CLIENT, 1_000_000, Operation("example", HOSTILE_BRANCH)), sign)
    records.builds.add_pending(hostile, submitted_at=time.time())
    records.verdicts.time_out(1_000_000, 5, [])
    records.close()
    client = await start(nodes, aiohttp_client)

    listing = await client.get("/builds")
    assert listing.headers["Content-Type"].startswith("application/json")
    assert listing.headers["X-Content-Type-Options"] == "nosniff"
    assert (await listing.json())["builds"][0]["branch"] == HOSTILE_BRANCH
    for path in (*PAGES, "/dashboard/builds/1000000", *(f"/dashboard/static/{name}" for name in SCRIPTS)):
        assert "onerror" not in await (await client.get(path)).text(), path
    output = await client.get("/builds/1000000/log", params={"node": "0"})
    assert output.status == 200
    assert output.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert output.headers["X-Content-Type-Options"] == "nosniff"
    assert await output.read() == HOSTILE_OUTPUT
