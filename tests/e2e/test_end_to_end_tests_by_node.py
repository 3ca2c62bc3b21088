"""End to end: a test that failed on one node only, shown in the build's test table.

The README's commands start the network with node 3 flaky (node/byzantine.py: honest, but its
builds see PBFT_CI_FLAKY=1), and the client. The repository's build writes a JUnit report in
which `app.Net::races` fails where that variable is set, and exits 0 on every node: the
verdict is certified success, and `GET /builds/{id}/tests` and the build's page show the test
failed on node 3 and passed on nodes 0, 1 and 2, listed first and marked proven flaky, each
node's outcomes signed by its key in the network's configuration; the repository's page of
flaky tests lists it, failed on node 3. The build also writes two
hostile reports, a billion laughs and 100 MB of zeros: every node refuses each with its reason
and reads the good report all the same.
"""

from __future__ import annotations


from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from shared.crypto import parse_public_key
from shared.testrecord import verify_statement
from tests.e2e.browser import BROWSER_MARKS, screenshot, text_of, texts, wait_for
from tests.e2e.example_network import OWN_NETWORK, example_copy
from selenium.webdriver.common.by import By  # noqa: E402 (tests.e2e.browser skips the module without selenium)

pytestmark = [*BROWSER_MARKS, OWN_NETWORK]

SPEC = """\
commands:
  - mkdir -p reports
  - if [ -n "${PBFT_CI_FLAKY:-}" ]; then races='<failure message="lost the race"/>'; else races=''; fi
  - >-
    printf '<testsuite name="app"><testcase classname="app.Math" name="adds"/>
    <testcase classname="app.Net" name="races">%s</testcase></testsuite>' "$races" > reports/unit.xml
  - >-
    printf '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
    <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><testsuite><testcase name="&c;"/></testsuite>' > reports/laughs.xml
  - head -c 100000000 /dev/zero > reports/huge.xml
reports:
  junit: [reports/*.xml]
"""


def test_a_test_that_failed_on_one_node_only_is_shown_with_each_nodes_outcome(network, browser, tmp_path):
    slow_repository(tmp_path / "tested", SPEC)
    repositories = [{"name": "tested", "url": str(tmp_path / "tested")}]
    path = example_copy(tmp_path, allow_byzantine=True, repositories=repositories)
    network(str(path), "--byzantine", "3:flaky")
    with client(load_config(path), tmp_path / "client.out", str(path)) as base_url:
        code, verdict = http_json("POST", f"{base_url}/webHook", {"repository": "tested", "branch": "master"})
        assert code == 200 and verdict["status"] == "success", verdict
        build_id = verdict["build_id"]
        # A node may finish its build after the verdict: its record comes in its own time.
        table = wait_for(browser, "every node's test outcomes", lambda d: every_node_read(base_url, build_id),
                         timeout_s=60)
        assert table["differing"] == ["app.Net::races"], table
        assert table["tests"][0]["outcomes"] == {"0": "passed", "1": "passed", "2": "passed", "3": "failed"}
        assert (table["tests"][0]["flaky"], table["tests"][0]["failed_on"]) == ("proven", ["3"])
        config = load_config(path)
        for node, said in table["nodes"].items():
            assert said["statement"]["commit"] == verdict["commit"]
            assert verify_statement(parse_public_key(config.node(int(node)).public_key), said["statement"],
                                    said["signature"]), node
            assert said["problems"] == [
                "test report reports/huge.xml: 100000000 bytes, over the 8388608-byte bound (MAX_REPORT_BYTES)",
                "test report reports/laughs.xml: a DOCTYPE or entity declaration is refused"], node
        # Each node's signed reply named the digest of the outcomes it serves (Result.tests). Replies
        # only grow: a table asked for after the record vouches for every reply the record holds.
        replied = {reply["sender"] for reply in http_json("GET", f"{base_url}/builds/{build_id}")[1]["replies"]}
        vouched = http_json("GET", f"{base_url}/builds/{build_id}/tests")[1]["nodes"]
        assert len(replied) > config.f and all(vouched[str(node)]["in_reply"] for node in replied), (replied, vouched)
        assert table["tests"][1] == {"test": "app.Math::adds", "differs": False,
                                     "outcomes": {"0": "passed", "1": "passed", "2": "passed", "3": "passed"}}

        browser.get(f"{base_url}/dashboard/builds/{build_id}")
        wait_for(browser, "the tests button", lambda d: d.find_elements(By.ID, "show-tests"))
        browser.find_element(By.ID, "show-tests").click()
        wait_for(browser, "the test table", lambda d: d.find_elements(By.CSS_SELECTOR, "#tests tr.differs"))
        assert text_of(browser, "#tests tr.differs td") == (
            "app.Net::races (proven flaky: passed on node 0, 1, 2, failed on node 3; each signed)")
        assert texts(browser, "#tests tr.differs td")[1:] == ["passed", "passed", "passed", "failed"]
        screenshot(browser, "tests-by-node.png")

        # The repository's page: the table asked for above kept the test as proven flaky.
        browser.find_element(By.ID, "flaky-link").click()
        wait_for(browser, "the flaky tests", lambda d: d.find_elements(By.CSS_SELECTOR, "#flaky tr[data-test]"))
        assert texts(browser, "#flaky tr[data-test] td") == ["app.Net::races", "1", str(build_id), "node 3 ×1"]
        screenshot(browser, "flaky-tests.png")


def every_node_read(base_url: str, build_id: str) -> dict | None:
    """The build's test table once every node's record is in it."""
    table = http_json("GET", f"{base_url}/builds/{build_id}/tests")[1]
    return table if all(node.get("summary") for node in table["nodes"].values()) else None
