"""End to end: why one node's artifact differs, explained by diffoscope on the build's page.

The README's commands start the network with node 3 flaky (node/byzantine.py: honest, but
its builds see PBFT_CI_FLAKY=1), and the client. The repository's build writes that variable
into its one artifact, so nodes 0, 1 and 2 agree on its bytes (2f+1: the verdict is
certified) and node 3 signs another digest. `GET /builds/{id}/divergence` names the two
sides and diffoscope's report shows the differing line; the build's page shows the same
report, as text, once asked for.
"""

from __future__ import annotations


from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.browser import BROWSER_MARKS, screenshot, text_of, wait_for
from tests.e2e.example_network import OWN_NETWORK, example_copy
from selenium.webdriver.common.by import By  # noqa: E402 (tests.e2e.browser skips the module without selenium)

pytestmark = [*BROWSER_MARKS, OWN_NETWORK]

SPEC = """\
commands:
  - mkdir -p dist && echo "flaky is ${PBFT_CI_FLAKY:-unset}" > dist/said.txt
artifacts: [dist/said.txt]
"""


def test_a_node_that_built_other_bytes_is_named_and_diffoscope_shows_the_difference(network, browser, tmp_path):
    slow_repository(tmp_path / "varied", SPEC)
    repositories = [{"name": "varied", "url": str(tmp_path / "varied")}]
    path = example_copy(tmp_path, allow_byzantine=True, repositories=repositories)
    network(str(path), "--byzantine", "3:flaky")
    with client(load_config(path), tmp_path / "client.out", str(path)) as base_url:
        code, verdict = http_json("POST", f"{base_url}/webHook", {"repository": "varied", "branch": "master"})
        assert code == 200 and verdict["status"] == "success" and 3 not in verdict["agreed_by"], verdict
        build_id = verdict["build_id"]
        # Node 3's reply comes in its own time: the comparison needs it in the record.
        browser.get(f"{base_url}/dashboard/builds/{build_id}")
        wait_for(browser, "node 3's reply", lambda d: replies(base_url, build_id) == 4 or None, timeout_s=60)

        code, explained = http_json("GET", f"{base_url}/builds/{build_id}/divergence")
        assert code == 200, explained
        assert [side["nodes"] for side in explained["sides"]] == [[0, 1, 2], [3]]
        (file,) = explained["files"]
        assert file["path"] == "dist/said.txt"
        assert "-flaky is unset" in file["report"] and "+flaky is 1" in file["report"], file["report"]

        browser.refresh()
        wait_for(browser, "the compare button", lambda d: d.find_elements(By.ID, "explain-divergence"))
        browser.find_element(By.ID, "explain-divergence").click()
        shown = wait_for(browser, "diffoscope's report", lambda d: (
            found if "+flaky is 1" in (found := text_of(d, "#divergence pre") or "") else None))
        assert "nodes-3/said.txt" in shown and "nodes-0-1-2/said.txt" in shown, shown
        assert text_of(browser, "#divergence .side") == f"nodes 0, 1, 2: {explained['sides'][0]['digest']}"
        screenshot(browser, "divergence.png")


def replies(base_url: str, build_id: str) -> int:
    return len(http_json("GET", f"{base_url}/builds/{build_id}")[1]["replies"])
