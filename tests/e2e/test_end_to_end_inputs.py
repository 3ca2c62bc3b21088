"""End to end: a manual run's inputs, through four real nodes, the client, the command line and
the dashboard.

The README's commands start the network and the client; the one repository's spec declares
three inputs and writes what its build saw into an artifact. `pbft-ci run --input` gives
two: every node's own build log shows the values (and the default of the third), the
certificate `pbft-ci verify` checks names them, and so does the provenance f+1 nodes
signed. A name no input can have, and a value outside a choice (which the client reads in
the spec at the pinned commit), are refused by the client with a 400 before anything is
ordered. The dashboard's form gives inputs too, and a build's page
shows them.
"""

from __future__ import annotations

import base64
import json
import urllib.request


from cli.main import main as cli_main
from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.browser import BROWSER_MARKS, text_of, wait_for
from tests.e2e.example_network import OWN_NETWORK, example_copy, finished_log, matrix_settled
from selenium.webdriver.common.by import By  # noqa: E402 (tests.e2e.browser skips the module without selenium)

pytestmark = [*BROWSER_MARKS, OWN_NETWORK]

SPEC = """\
inputs:
  target: {type: choice, options: [staging, production]}
  dry_run: {type: boolean, default: true}
  note: {}
commands:
  - echo "target=$CI_INPUT_TARGET dry_run=$CI_INPUT_DRY_RUN note=[$CI_INPUT_NOTE]" | tee said.txt
artifacts: [said.txt]
"""


def test_a_runs_inputs_reach_every_nodes_build_the_certificate_and_the_provenance(network, browser, tmp_path, capsys):
    slow_repository(tmp_path / "deploy", SPEC)
    repositories = [{"name": "deploy", "url": str(tmp_path / "deploy")}]
    path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories)
    network(str(path))
    config = load_config(path)
    with client(config, tmp_path / "client.out", str(path)) as base_url:
        said: list[str] = []
        assert cli_main(["--url", base_url, "run", "deploy", "master", "--input", "target=production",
                         "--input", "note=it's $HOME", "--wait"], said.append) == 0, said
        build_id = said[0].split()[1].rstrip(":")
        record = matrix_settled(base_url, build_id)
        assert record["state"] == "accepted" and record["result"]["status"] == "success", record

        for node in config.nodes:
            finished_log(base_url, build_id, node.id)  # f+1 nodes' results make the verdict: the rest may still build
            output: list[str] = []
            assert cli_main(["--url", base_url, "logs", build_id, "--node", str(node.id)], output.append) == 0
            assert "target=production dry_run=true note=[it's $HOME]" in "\n".join(output), (node.id, output)

        with urllib.request.urlopen(f"{base_url}/builds/{build_id}/certificate", timeout=60) as answer:
            (tmp_path / "cert.json").write_bytes(answer.read())
        capsys.readouterr()
        assert cli_main(["verify", str(tmp_path / "cert.json"), "--config", str(path)]) == 0
        assert capsys.readouterr().out.rstrip("\n").endswith("""; inputs target='production', note="it's $HOME\"""")
        with urllib.request.urlopen(f"{base_url}/builds/{build_id}/provenance", timeout=60) as answer:
            statement = json.loads(base64.b64decode(json.loads(answer.read())["payload"]))
        assert statement["predicate"]["buildDefinition"]["externalParameters"]["inputs"] == {
            "target": "production", "note": "it's $HOME"}

        code, refused = http_json("POST", f"{base_url}/webHook",
                                  {"repository": "deploy", "branch": "master", "inputs": {"Target": "x"}})
        assert code == 400 and refused["error"].startswith("inputs: 'Target' is not an input's name"), refused
        ordered = len(http_json("GET", f"{base_url}/builds")[1]["builds"])
        code, outside = http_json("POST", f"{base_url}/webHook",
                                  {"repository": "deploy", "branch": "master", "inputs": {"target": "prod"}})
        assert (code, outside["error"]) == (
            400, ".pbft-ci.yml: input target: 'prod' is not one of staging, production"), outside
        assert len(http_json("GET", f"{base_url}/builds")[1]["builds"]) == ordered, "nothing was ordered"

        # The dashboard's form: NAME=VALUE lines, shown on the build's page as the request names them.
        browser.get(f"{base_url}/dashboard")
        wait_for(browser, "the form that runs a build", lambda d: d.find_elements(By.ID, "run-repository"))
        browser.find_element(By.ID, "run-repository").send_keys("deploy")
        browser.find_element(By.ID, "run-branch").send_keys("master")
        browser.find_element(By.ID, "run-inputs").send_keys("target=staging\ndry_run=false")
        browser.find_element(By.CSS_SELECTOR, "#run button[type=submit]").click()
        answered = wait_for(browser, "the form's verdict", lambda d: (
            found if (found := text_of(d, "#run-said") or "").startswith("Build ") else None), timeout_s=120)
        assert answered.endswith(": success."), answered
        browser.get(f"{base_url}/dashboard/builds/{answered.split()[1].rstrip(':')}")
        assert wait_for(browser, "the inputs on the build's page", lambda d: text_of(d, "[data-field=inputs]")) == (
            "target = staging\ndry_run = false")
