"""End to end: a repository's `vary: true` (builder/plan/variations.py), with the README's commands
starting the example network and the client.

Each node builds under its own time zone, locale, umask, clock and host name. A build whose
artifact depends on none of them is certified with the same bytes from every node: reproducible
under those variations. One whose artifact prints the commit's time in the build's time zone
differs on every node; `GET /builds/{id}/divergence` names each node's variation, the parts that
may explain it, and the time zone as the cause: each side's bytes hold its own zone's name. One
that embeds the time it was built at, in an image with libfaketime, differs on every node too,
and the clock is named the cause: each side's bytes hold its own clock's year.
"""

from __future__ import annotations

import base64
import json
import urllib.request

from builder.plan.variations import variation
from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK, example_copy

pytestmark = [OWN_NETWORK]

SAME = """\
commands:
  - mkdir -p dist && echo "built from $(cat .pbft-ci.yml | wc -l) lines" > dist/same.txt
artifacts: [dist/same.txt]
"""

ZONED = """\
commands:
  - mkdir -p dist && date -d "@$SOURCE_DATE_EPOCH" > dist/when.txt
artifacts: [dist/when.txt]
"""

STAMPED = """\
image: pbft-ci/debian-python:bookworm
commands:
  - mkdir -p dist && date -u +%Y-%m-%dT%H:%M:%SZ > dist/stamp.txt
artifacts: [dist/stamp.txt]
"""


def test_a_varied_build_is_reproducible_or_names_what_may_explain_it(network, tmp_path):
    slow_repository(tmp_path / "same", SAME)
    slow_repository(tmp_path / "zoned", ZONED)
    slow_repository(tmp_path / "stamped", STAMPED)
    path = example_copy(tmp_path, allow_byzantine=False, repositories=[
        {"name": name, "url": str(tmp_path / name), "vary": True} for name in ("same", "zoned", "stamped")])
    network(str(path))
    with client(load_config(path), tmp_path / "client.out", str(path)) as base_url:
        code, verdict = http_json("POST", f"{base_url}/webHook", {"repository": "same", "branch": "master"})
        assert code == 200 and verdict["status"] == "success", verdict
        assert len(verdict["agreed_by"]) >= 3, verdict
        # The provenance f+1 nodes signed lists every member's variation: the bytes came out the
        # same under each of theirs.
        with urllib.request.urlopen(f"{base_url}/builds/{verdict['build_id']}/provenance", timeout=60) as answer:
            envelope = json.loads(answer.read())
        assert len(envelope["signatures"]) == 2, envelope  # f+1
        statement = json.loads(base64.b64decode(envelope["payload"]))
        listed = statement["predicate"]["buildDefinition"]["internalParameters"]["variations"]
        build = f"client-{verdict['build_id']}"
        assert listed == {str(node): variation(node, build).as_dict() for node in range(4)}, listed
        assert len({each["time_zone"] for each in listed.values()}) == 4

        code, verdict = http_json("POST", f"{base_url}/webHook", {"repository": "zoned", "branch": "master"})
        assert code == 200 and verdict["status"] == "divergent", verdict
        code, explained = http_json("GET", f"{base_url}/builds/{verdict['build_id']}/divergence")
        assert code == 200, explained
        assert all(len(side["nodes"]) == 1 for side in explained["sides"]), explained["sides"]
        zones = {zone for side in explained["sides"] for zone in
                 (variation["time_zone"] for variation in side["variations"].values())}
        assert len(zones) == len(explained["sides"]) >= 3
        assert explained["suspects"] == ["time zone", "locale", "umask", "clock", "host name", "build path"]
        assert explained["causes"] == ["time zone"], explained["files"]
        (file,) = explained["files"]
        assert file["path"] == "dist/when.txt"

        code, verdict = http_json("POST", f"{base_url}/webHook", {"repository": "stamped", "branch": "master"})
        assert code == 200 and verdict["status"] == "divergent", verdict
        code, explained = http_json("GET", f"{base_url}/builds/{verdict['build_id']}/divergence")
        assert code == 200, explained
        assert len(explained["sides"]) == 4, explained["sides"]
        assert explained["causes"] == ["clock"], explained["files"]
