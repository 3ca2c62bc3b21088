"""`GET /builds/{id}/divergence` (client/divergence.py), against fake nodes that serve artifacts
and check the client's signatures, with the real diffoscope: the nodes grouped by the manifest
digest each signed, the two largest sides' manifests and differing files fetched from a node
of each (checked against what it signed) and compared."""

import asyncio
import calendar
import shutil
import subprocess
import time

import pytest

from builder.plan.variations import variation
from client.divergence import _read_capped, with_variations
from client.keys import RECORDS_KEY
from pbft.attestation import manifest_digest
from pbft.build import Operation, Result
from pbft.messages import Reply, Request, signed
from tests.client.artifact_nodes import ARTIFACTS_MB, FakeArtifactNodes, manifest_body, sha256
from tests.client.fake_nodes import CLIENT, FakeCluster, N, serve_fake_nodes, start_client

pytestmark = pytest.mark.skipif(shutil.which("diffoscope") is None, reason="scripts/setup.sh installs diffoscope")

ONE = {"dist/app.txt": b"built by nodes zero and one\n", "same.txt": b"same\n"}
OTHER = {"dist/app.txt": b"built by nodes two and three\n", "same.txt": b"same\n", "extra.bin": b"\x00\x01"}


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {path: sha256(data) for path, data in files.items()}


@pytest.fixture
async def network(aiohttp_server, tmp_path):
    cluster = FakeCluster()
    nodes = FakeArtifactNodes(cluster)
    nodes.servers = await serve_fake_nodes(
        aiohttp_server, cluster, nodes.add_routes, tmp_path, build={"artifacts_mb": ARTIFACTS_MB})
    for node in range(N):
        files = ONE if node < 2 else OTHER
        nodes.manifests[node], nodes.files[node] = manifest_body(node, digests(files)), dict(files)
    return nodes


def add_build(client, cluster, manifests: dict[int, dict[str, bytes]]) -> str:
    """A build whose nodes each signed the digest of their manifest; divergent if they differ."""
    records = client.app[RECORDS_KEY]
    timestamp = records.store.next_timestamp(time.time_ns() // 1000)
    records.builds.add_pending(Request(CLIENT, timestamp, Operation("example", "main")), time.time())
    by_node = {node: manifest_digest(digests(files)) for node, files in manifests.items()}
    replies = [signed(Reply(0, timestamp, CLIENT, node, Result("success", 0, "a" * 40, artifacts=digest)),
                      cluster.auths[node].sign) for node, digest in by_node.items()]
    if len(set(by_node.values())) > 1:
        records.verdicts.diverge(timestamp, Result("success", 0, "a" * 40), by_node, 12, replies)
    else:
        records.verdicts.accept(timestamp, replies[0].result, list(by_node), 12, replies)
    records.store.commit()
    return str(timestamp)


async def test_the_sides_and_a_report_of_each_differing_file_naming_the_nodes_of_each(network, aiohttp_client):
    client = await start_client(aiohttp_client, network.cluster)
    build_id = add_build(client, network.cluster, {0: ONE, 1: ONE, 2: OTHER, 3: OTHER})

    answer = await client.get(f"/builds/{build_id}/divergence")

    assert answer.status == 200
    explained = await answer.json()
    assert explained["sides"] == [{"digest": manifest_digest(digests(ONE)), "nodes": [0, 1]},
                                  {"digest": manifest_digest(digests(OTHER)), "nodes": [2, 3]}]
    assert [file["path"] for file in explained["files"]] == ["dist/app.txt", "extra.bin"]
    report = explained["files"][0]["report"]
    assert "nodes-0-1/app.txt" in report and "nodes-2-3/app.txt" in report
    assert "-built by nodes zero and one" in report and "+built by nodes two and three" in report
    assert explained["files"][1]["report"] == "only the nodes [2, 3] made it"
    asked = list(network.asked)
    assert (await (await client.get(f"/builds/{build_id}/divergence")).json()) == explained
    assert network.asked == asked, "an explained build is kept, not fetched again"


async def test_a_node_speaks_only_for_the_side_it_signed_and_agreeing_nodes_have_nothing_to_explain(
        network, aiohttp_client):
    client = await start_client(aiohttp_client, network.cluster)
    network.manifests[0] = manifest_body(0, digests(OTHER))  # node 0 signed ONE's digest, serves OTHER's
    build_id = add_build(client, network.cluster, {0: ONE, 1: ONE, 2: OTHER, 3: OTHER})

    explained = await (await client.get(f"/builds/{build_id}/divergence")).json()
    agreed = add_build(client, network.cluster, {node: ONE for node in range(N)})
    refused = await client.get(f"/builds/{agreed}/divergence")

    assert [side["from_node"] for side in explained["compared"]] == [1, 2]
    assert (refused.status, (await refused.json())["error"]) == (
        409, f"build {agreed}'s nodes signed 1 artifact digest: nothing differs to explain")


async def test_an_explanation_is_kept_only_once_every_node_has_replied(network, aiohttp_client):
    client = await start_client(aiohttp_client, network.cluster)
    build_id = add_build(client, network.cluster, {0: ONE, 1: ONE, 2: OTHER})  # node 3 yet to reply

    first = await (await client.get(f"/builds/{build_id}/divergence")).json()
    asked = len(network.asked)
    again = await (await client.get(f"/builds/{build_id}/divergence")).json()

    assert first == again and [side["nodes"] for side in first["sides"]] == [[0, 1], [2]]
    assert len(network.asked) > asked, "asked the nodes again: a reply still to come may add a side"


async def test_a_report_is_read_to_its_end_as_it_comes_and_cut_at_the_bound():
    stream = asyncio.StreamReader()
    reading = asyncio.create_task(_read_capped(stream, 1000))
    for piece in (b"--- a\n", b"+++ b\n", b"-one\n+two\n"):  # as diffoscope writes it, piece by piece
        stream.feed_data(piece)
        await asyncio.sleep(0.01)
    stream.feed_eof()
    capped = asyncio.StreamReader()
    capped.feed_data(b"x" * 100)

    assert await reading == b"--- a\n+++ b\n-one\n+two\n"
    assert await _read_capped(capped, 10) == b"x" * 10


def test_with_vary_each_side_names_its_nodes_variations_and_what_differs_between_the_compared():
    record = {"client": CLIENT, "build_id": "1700"}
    explained = {"sides": [{"digest": "sha256:a", "nodes": [0, 1, 2]}, {"digest": "sha256:b", "nodes": [3]}]}
    shown = with_variations(explained, record)
    assert shown["sides"][1]["variations"] == {"3": variation(3, f"{CLIENT}-1700").as_dict()}
    assert list(shown["sides"][0]["variations"]) == ["0", "1", "2"]
    # Nodes 0, 1 and 2 built under three time zones, locales and umasks and agree: none explains node 3.
    assert shown["suspects"] == []
    alone = with_variations({"sides": [{"digest": f"sha256:{node}", "nodes": [node]} for node in range(4)]}, record)
    assert alone["suspects"] == ["time zone", "locale", "umask", "clock", "host name", "build path"]
    assert alone["causes"] == [], "no file was compared: nothing is traced"


def diffoscope_report(one: str, other: str) -> str:
    """diffoscope's text report of two one-line files, as it writes it (nested in a tarball)."""
    return (f"--- nodes-0/dist.tar\n+++ nodes-3/dist.tar\n├── file list\n│ @@ -1 +1 @@\n"
            f"│ --rw-r--r--   0 build  build  21 dist/stamp.txt\n│ +-rw-r--r--   0 build  build  21 dist/stamp.txt\n"
            f"├── dist/stamp.txt\n│ @@ -1 +1 @@\n│ -{one}\n│ +{other}\n")


def test_the_part_whose_traces_each_side_holds_is_named_the_cause():
    build_id = str(calendar.timegm((2026, 11, 29, 5, 0, 0)) * 1_000_000)
    record = {"client": CLIENT, "build_id": build_id}
    zero, three = variation(0, f"{CLIENT}-{build_id}"), variation(3, f"{CLIENT}-{build_id}")
    assert zero.clock_days != three.clock_days and zero.time_zone != three.time_zone

    def causes(one: str, other: str) -> list[str]:
        explained = {"sides": [{"digest": "sha256:a", "nodes": [0]}, {"digest": "sha256:b", "nodes": [3]}],
                     "compared": [{"nodes": [0], "from_node": 0}, {"nodes": [3], "from_node": 3}],
                     "files": [{"path": "dist.tar", "report": diffoscope_report(one, other)}]}
        return with_variations(explained, record)["causes"]

    def year(varied) -> int:
        return time.gmtime(int(build_id) / 1e6 + varied.clock_days * 86_400).tm_year

    # A build that wrote the date of its clock, in UTC: the years are each node's moved clock.
    assert causes(f"built {year(zero)}-11-29T05:00:01Z", f"built {year(three)}-12-03T05:00:02Z") == ["clock"]
    # One that wrote its time zone's name, as date(1) prints it under each: the zone.
    zone = {varied: subprocess.run(["date", "+%Z"], env={"TZ": varied.time_zone}, capture_output=True, text=True,
                                   check=True).stdout.strip() for varied in (zero, three)}
    assert causes(f"at 05:00 {zone[zero]}", f"at 14:00 {zone[three]}") == ["time zone"]
    # Bytes that hold neither: suspects, but no cause.
    assert causes("random 1f3a", "random 9b0c") == []

