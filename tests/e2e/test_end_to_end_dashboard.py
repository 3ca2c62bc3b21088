"""End to end in a real browser: the dashboard of a running network.

The README's commands start four real nodes and the client; Debian's headless
Chromium, driven by selenium through Debian's chromedriver, opens the
dashboard and sees what a user would: a build's output streamed into the page
while the build runs, the finished build with all four nodes' votes, a
hostile branch name and hostile build output shown as text, an action's result
beside the runner that signed its report (its hostile reason as text), and a node killed
with SIGKILL marked unreachable on the network page; a matrix's page lists the
builds of its combinations with their verdicts. A client with a bearer
token, on its own, shows that the token a user types in once reaches every
request of the pages, and no URL. Screenshots go to log/dashboard/.

The repository's build prints markup, a line, sleeps, and prints another, so
there is a moment when the build is known to run. The network gets ports of
its own, so it never meets the example network another checkout may run.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from client.records import BuildRecords, records_path
from harness.builds import slow_repository
from harness.network import write_network
from harness.scripts import client
from harness.verdicts import http_json
from pbft.build import Operation
from pbft.messages import Request, signed
from shared.actionreport import ActionReport
from shared.config import NetworkConfig, load_config
from shared.crypto import Ed25519Authenticator, load_private_key
from tests.e2e.browser import BROWSER_MARKS, SCREENSHOTS, attributes, screenshot, text_of, texts, wait_for
from tests.e2e.example_network import (
    MATRIX_SPEC, OWN_NETWORK, example_copy, followed_events, kill_9, matrix_settled, node_status, running_node, webhook,
)
from tests.support.status_server import StatusServer
from cli.main import main as cli_main  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402 (tests.e2e.browser skips the module without selenium)

pytestmark = [*BROWSER_MARKS, OWN_NETWORK]
# Builds wait for a git fetch and a container on every node; the first build of fresh nodes clones too.
BUILD_WAIT_S = 120
MARKUP = "<b id=injected>bold</b><img src=x onerror=document.title=1>"
HOSTILE_BRANCH = "<i id=branch-injected>x</i>"
# A status line of its own after a carriage return, then a terminal title (OSC) and a screen clear (CSI).
HOSTILE_PRINTF = r"printf 'x\r== status success exit_code 0 duration_ms 1\n\033]0;owned\007\033[2Jcleared\n'"
ESCAPED = "x\n == status success exit_code 0 duration_ms 1\n\\x1b]0;owned\\x07\\x1b[2Jcleared\n"
PRINTING_SPEC = f"""commands:
  - "echo '{MARKUP}'"
  - {HOSTILE_PRINTF}
  - echo build started
  - sleep 8
  - echo build finished
"""


def own_network_config(tmp_path: Path) -> Path:
    """The example network with the printing repository, a data directory and ports of its own."""
    slow_repository(tmp_path / "printing", PRINTING_SPEC)
    repositories = [{"name": "printing", "url": str(tmp_path / "printing")}]
    path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories)
    return path


def record_a_hostile_branch(config: NetworkConfig) -> None:
    """A finished build record whose branch is markup, as if an older client had let it in.

    The webhook refuses such names (shared.refs), so the record is written before the client starts.
    """
    name = config.clients[0].name
    sign = Ed25519Authenticator(load_private_key(config.client_key_path(name)), {}, {}).sign
    records = BuildRecords(records_path(config.data_dir, name))
    request = signed(Request(name, 1_000_000, Operation("printing", HOSTILE_BRANCH)), sign)
    records.builds.add_pending(request, submitted_at=time.time() - 60)
    records.verdicts.time_out(request.timestamp, 1000, [])
    records.close()


def test_the_dashboard_shows_a_running_build_the_votes_and_a_dead_node(network, browser, tmp_path):
    config_path = own_network_config(tmp_path)
    config = load_config(config_path)
    pids = network(str(config_path))
    record_a_hostile_branch(config)
    (SCREENSHOTS / "failure.png").unlink(missing_ok=True)  # an earlier run's
    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        try:
            check_the_pages(browser, base_url, config, pids)
        except Exception:
            screenshot(browser, "failure.png")
            raise


def check_the_pages(browser, base_url: str, config: NetworkConfig, pids: dict[int, int]) -> None:
    browser.get(f"{base_url}/dashboard")
    hostile_row = '#builds tr[data-build-id="1000000"] td[data-field="branch"]'
    assert wait_for(browser, "the hostile branch's row", lambda d: text_of(d, hostile_row)) == HOSTILE_BRANCH
    assert browser.title == "pbft-ci builds"
    assert not browser.find_elements(By.ID, "branch-injected")

    verdicts: list[dict] = []
    sender = threading.Thread(target=lambda: verdicts.append(webhook(base_url, config, "master")))
    sender.start()
    try:
        # The builds list polls: the new build appears on its own, newest first.
        rows = "#builds tbody tr"
        listed = wait_for(browser, "the new build in the list", lambda d: (
            ids := attributes(d, rows, "data-build-id")) and ids[0] != "1000000" and ids)
        build_id = listed[0]
        assert listed == [build_id, "1000000"]
        assert attributes(browser, f'{rows}[data-build-id="{build_id}"]', "data-state") == ["pending"]
        assert attributes(browser, f'{rows}[data-build-id="{build_id}"] a.build-link', "href") == [
            f"/dashboard/builds/{build_id}"]
        screenshot(browser, "builds.png")
        browser.get(f"{base_url}/dashboard/builds/{build_id}")

        # One build, while it runs: the first line is in the page and the last is not yet.
        wait_for(browser, "node 1's output to start", lambda d: "build started" in (text_of(d, "#output-1") or ""),
                 BUILD_WAIT_S)
        running_output = text_of(browser, "#output-1")
        cancel_shown = browser.find_element(By.ID, "cancel").is_displayed()
        still_running = sender.is_alive()
        screenshot(browser, "build-running.png")
        assert "build finished" not in running_output, running_output
        assert still_running, "the verdict came before the output reached the page"
        assert cancel_shown, "no Cancel button on a build without a verdict"
    finally:
        sender.join(timeout=BUILD_WAIT_S)
    assert verdicts and verdicts[0]["status"] == "success", verdicts
    verdict = verdicts[0]

    # Finished: every node's output ended in the page, and all four nodes' signed votes are in the table.
    for node in config.nodes:
        wait_for(browser, f"node {node.id}'s output to end",
                 lambda d, i=node.id: text_of(d, f"#output-state-{i}") == "finished", BUILD_WAIT_S)
        output = text_of(browser, f"#output-{node.id}")
        assert "build started\nbuild finished\n" in output and MARKUP in output, output
        # The hostile output is shown as text: no second status line, no escape a terminal would act on.
        assert ESCAPED in output and "\x1b" not in output and "\r" not in output, output
        check_one_status_line(output)
        # The same through the client, plain and followed live.
        with urllib.request.urlopen(f"{base_url}/builds/{build_id}/log?node={node.id}", timeout=30) as answer:
            plain = answer.read().decode()
        streamed = "".join(data for event, data in followed_events(
            f"{base_url}/builds/{build_id}/log?node={node.id}&follow=1") if event == "output")
        for text in (plain, streamed):
            assert ESCAPED in text and "\x1b" not in text and "\r" not in text, text
            check_one_status_line(text)
    agreed = f"success (exit 0) @ {verdict['commit'][:12]}"
    wait_for(browser, "all four votes and certified ledgers", lambda d: (
        texts(d, '#nodes td[data-field="vote"]') == [agreed] * 4
        and texts(d, '#nodes td[data-field="ledger"]') == [f"certified: {agreed}"] * 4), BUILD_WAIT_S)
    assert text_of(browser, '#summary dd[data-field="state"]') == "accepted"
    assert text_of(browser, '#summary dd[data-field="agreed_by"]') == "nodes " + ", ".join(map(str, verdict["agreed_by"]))
    assert attributes(browser, "#certificate", "href") == [f"/builds/{build_id}/certificate"]
    # The build's markup is text in the page: no element of it exists, no handler of it ran.
    assert not browser.find_elements(By.ID, "injected")
    numbered = http_json("GET", f"{base_url}/builds/{build_id}")[1]["number"]
    assert browser.title == f"pbft-ci printing #{numbered}"
    screenshot(browser, "build-finished.png")

    # The example's runner reports an action, signed with the key the set-up made for it.
    report = ActionReport(int(build_id), "deploy", "success", 0, MARKUP, "runner", time.time_ns() // 1000)
    code, answer = http_json("POST", f"{base_url}/builds/{build_id}/actions",
                             report.signed_body(load_private_key(config.runner_key_path("runner"))))
    assert code == 200, answer
    browser.get(f"{base_url}/dashboard/builds/{build_id}")
    actions = '#summary dd[data-field="actions_after_the_verdict"]'
    assert wait_for(browser, "the action's result", lambda d: text_of(d, actions)) == (
        f"deploy: success (exit 0), {MARKUP} — reported by runner")
    assert not browser.find_elements(By.ID, "injected")
    # A deploy that waits for an approval has a button; the client's refusal is shown as it says it
    # (the example's network document has no environments).
    waiting = ActionReport(int(build_id), "release", "waiting", None, "waits", "runner", time.time_ns() // 1000,
                           "production")
    code, answer = http_json("POST", f"{base_url}/builds/{build_id}/actions",
                             waiting.signed_body(load_private_key(config.runner_key_path("runner"))))
    assert code == 200, answer
    browser.get(f"{base_url}/dashboard/builds/{build_id}")
    release = '#summary div[data-action="release"]'
    wait_for(browser, "the waiting deploy", lambda d: d.find_elements(By.CSS_SELECTOR, release + " button"))
    assert text_of(browser, release).startswith("release: waiting for approval (deploys to production) — reported by")
    browser.find_element(By.CSS_SELECTOR, release + " button").click()
    assert wait_for(browser, "the refusal", lambda d: "could not approve" in text_of(d, release) and text_of(
        d, release)).endswith("could not approve: environment production is not in the network document")

    # Run it again: a new build of the commit the verdict named, linked to this one.
    assert not browser.find_element(By.ID, "cancel").is_displayed()  # it has its verdict
    browser.find_element(By.ID, "rerun").click()
    wait_for(browser, "the re-run's page", lambda d: d.current_url.rstrip("/") != f"{base_url}/dashboard/builds/{build_id}")
    rerun_id = browser.current_url.rstrip("/").rsplit("/", 1)[1]
    assert wait_for(browser, "the re-run's summary", lambda d: text_of(d, '#summary dd[data-field="re-run_of"]')) == (
        f"build {build_id}")
    assert text_of(browser, '#summary dd[data-field="commit_requested"]') == verdict["commit"]
    # Asked for with the client's token: the actor its signed request names.
    assert text_of(browser, '#summary dd[data-field="asked_for_by"]') == f"machine {config.clients[0].name}"
    wait_for(browser, "the re-run's verdict", lambda d: text_of(d, '#summary dd[data-field="state"]') == "accepted",
             BUILD_WAIT_S)
    code, old = http_json("GET", f"{base_url}/builds/{build_id}")
    assert code == 200 and old["reruns"] == [rerun_id], old

    # The network: kill a backup (losing the primary would mean a view change) and watch it go.
    primary = node_status(config, 0)["primary"]
    victim = next(node.id for node in reversed(config.nodes) if node.id != primary)
    browser.get(f"{base_url}/dashboard/network")
    states = "#network tr[data-node] td[data-field=state]"
    wait_for(browser, "every node up", lambda d: texts(d, states) == ["up"] * len(config.nodes))
    assert running_node(pids[victim])
    kill_9(pids[victim])
    expected = ["unreachable" if node.id == victim else "up" for node in config.nodes]
    wait_for(browser, f"node {victim} marked unreachable", lambda d: texts(d, states) == expected)
    assert attributes(browser, f'#network tr[data-node="{victim}"]', "class") == ["unreachable"]
    screenshot(browser, "network-node-down.png")
    code, answer = http_json("GET", f"{base_url}/network")
    assert code == 200 and answer["nodes"][victim]["reachable"] is False, answer


def check_one_status_line(output: str) -> None:
    """Only the node's own status line starts with `== status`, not the one the build printed."""
    status_lines = [line for line in output.split("\n") if line.startswith("== status")]
    assert len(status_lines) == 1 and not status_lines[0].endswith(" duration_ms 1"), status_lines


def test_a_matrix_s_page_lists_its_combinations_builds_with_their_verdicts(network, browser, tmp_path):
    slow_repository(tmp_path / "matrix", MATRIX_SPEC)
    repositories = [{"name": "matrix", "url": str(tmp_path / "matrix")}]
    path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories)
    network(str(path))
    with client(load_config(path), tmp_path / "client.out", str(path)) as base_url:
        code, expansion = http_json("POST", f"{base_url}/webHook", {"repository": "matrix", "branch": "master"})
        assert code == 200 and expansion["status"] == "matrix", expansion
        matrix_settled(base_url, expansion["build_id"])

        browser.get(f"{base_url}/dashboard/builds/{expansion['build_id']}")
        lines = wait_for(browser, "the matrix's builds with their verdicts", lambda d: (
            found if len(found := texts(d, "[data-field=matrix_builds] div")) == 3 else None))
        assert lines == ["FLAVOUR=one success", "FLAVOUR=two success", "FLAVOUR=three failure"]
        links = attributes(browser, "[data-field=matrix_builds] a", "href")
        assert links == [f"/dashboard/builds/{build['build_id']}" for build in expansion["matrix"]]
        screenshot(browser, "matrix.png")

        # Run failed again: only FLAVOUR=three, as a new build naming the combination's.
        wait_for(browser, "the button that runs the failed combinations again",
                 lambda d: d.find_element(By.ID, "rerun-failed").is_displayed())
        browser.find_element(By.ID, "rerun-failed").click()
        said = wait_for(browser, "the builds it started", lambda d: (
            found if (found := text_of(d, "#notice") or "").startswith("Running again: ") else None))
        failed_id = expansion["matrix"][2]["build_id"]
        rerun_id = said.removeprefix("Running again: build ").split(" ")[0]
        assert said == f"Running again: build {rerun_id} (FLAVOUR=three)"
        assert http_json("GET", f"{base_url}/builds/{failed_id}")[1]["reruns"] == [rerun_id]

        # The command line reads the same node's output, whole or followed to its end (cli/).
        for follow in ([], ["--follow"]):
            said: list[str] = []
            assert cli_main(["--url", base_url, "logs", failed_id, "--node", "1", *follow], said.append) == 0
            assert "flavour three" in "\n".join(said), said

        browser.get(base_url + links[2])
        wait_for(browser, "a combination's page", lambda d: text_of(d, "[data-field=combination]") == "FLAVOUR=three")
        assert text_of(browser, "[data-field=matrix_of]") == f"build {expansion['build_id']}"


FLAKY_SPEC = 'commands:\n  - echo "flaky is ${PBFT_CI_FLAKY:-unset}"\n  - test -z "$PBFT_CI_FLAKY"\n'
FLAKY_SAID = "nodes 0, 1: success (exit 0); nodes 2, 3: failure (exit 1)"


def test_a_build_that_fails_on_two_nodes_and_passes_on_two_is_disputed_everywhere(network, browser, tmp_path):
    """Nodes 2 and 3 are flaky (node/byzantine.py): honest, but their builds see PBFT_CI_FLAKY=1."""
    statuses = StatusServer("forge-status-token").start()
    slow_repository(tmp_path / "flaky", FLAKY_SPEC)
    head = subprocess.run(["git", "-C", str(tmp_path / "flaky"), "rev-parse", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    repositories = [{"name": "flaky", "url": str(tmp_path / "flaky"), "full_name": "octo/flaky",
                     "status_api": statuses.url, "status_token": "forge-status-token"}]
    path = example_copy(tmp_path, allow_byzantine=True, repositories=repositories)
    network(str(path), "--byzantine", "2:flaky", "--byzantine", "3:flaky")
    try:
        with client(load_config(path), tmp_path / "client.out", str(path)) as base_url:
            code, answer = http_json("POST", f"{base_url}/webHook",
                                     {"repository": "flaky", "branch": "master", "commit": head})
            assert code == 200 and answer["status"] == "disputed", answer
            assert (answer["reason"], answer["commit"], answer["agreed_by"]) == (FLAKY_SAID, head, []), answer
            assert {node: said["status"] for node, said in answer["split"].items()} == {
                "0": "success", "1": "success", "2": "failure", "3": "failure"}, answer

            record = http_json("GET", f"{base_url}/builds/{answer['build_id']}")[1]
            assert (record["state"], record["result"]) == ("disputed", {
                key: answer[key] for key in ("status", "exit_code", "commit", "reason", "split")}), record
            posted = statuses.final(f"/repos/octo/flaky/statuses/{head}", "pbft-ci")
            assert (posted.state, posted.description) == ("error", f"disputed: {FLAKY_SAID}")

            browser.get(f"{base_url}/dashboard/builds/{answer['build_id']}")
            said = wait_for(browser, "each node's result", lambda d: text_of(d, "[data-field=each_node_said]"))
            assert said.split("\n") == [f"node {node}: {status} @ {head[:12]}" for node, status in [
                (0, "success (exit 0)"), (1, "success (exit 0)"), (2, "failure (exit 1)"), (3, "failure (exit 1)")]]
            assert text_of(browser, "[data-field=state]") == "disputed"
            screenshot(browser, "disputed.png")
            browser.get(f"{base_url}/dashboard")
            wait_for(browser, "the build list", lambda d: "disputed" in (texts(d, "[data-field=state]") or []))
    finally:
        statuses.stop()


def test_with_a_token_the_dashboard_asks_for_it_once_and_sends_it_on_every_request(browser, tmp_path):
    """No nodes run: the client alone, with a token, and every node unreachable on the network page."""
    config_path = write_network(tmp_path)
    data = yaml.safe_load(config_path.read_text())
    token = "d45b0a2d" * 6
    (tmp_path / "client.token").write_text(token + "\n")
    data["clients"][0].pop("plain_without_token")
    data["clients"][0]["token_file"] = "client.token"
    config_path.write_text(yaml.safe_dump(data))
    config = load_config(config_path)
    token_form, notice = "#token-form", "#notice"

    def form_shown(driver) -> bool:
        return driver.execute_script("return !document.querySelector(arguments[0]).hidden;", token_form)

    def enter(driver, text: str) -> None:
        driver.find_element(By.ID, "token-input").send_keys(text)
        driver.find_element(By.CSS_SELECTOR, f"{token_form} button").click()

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        browser.get(f"{base_url}/dashboard")
        wait_for(browser, "the token form", form_shown)
        assert "needs its bearer token" in text_of(browser, notice)
        assert texts(browser, "#builds tbody tr") == []

        enter(browser, "not-the-token")
        wait_for(browser, "the wrong token refused", lambda d: "refused the token" in (text_of(d, notice) or ""))

        assert form_shown(browser)
        enter(browser, token)
        wait_for(browser, "the builds list", lambda d: texts(d, "#builds tbody tr") == ["No builds yet."])
        assert not form_shown(browser) and text_of(browser, notice) == ""
        assert attributes(browser, "#token-forget", "hidden") == [None]
        screenshot(browser, "token-accepted.png")

        # The token stays with the tab, not the URL, as the user moves between pages.
        browser.get(f"{base_url}/dashboard/network")
        states = "#network tr[data-node] td[data-field=state]"
        wait_for(browser, "every node unreachable", lambda d: texts(d, states) == ["unreachable"] * len(config.nodes))
        assert token not in browser.current_url and token not in browser.page_source
        screenshot(browser, "network-unreachable.png")

        browser.find_element(By.ID, "token-forget").click()
        wait_for(browser, "the token form after forgetting", form_shown)
        assert browser.execute_script("return sessionStorage.length;") == 0
