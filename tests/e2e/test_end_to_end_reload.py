"""End to end: four real nodes and the client of a network without owners re-read their
configuration on SIGHUP (./scripts/reload.sh) while builds run. A repository added to the file is built without a
restart, with the right verdict; every build running at the reload ends with its verdict; a
broken file and a change of a node's port are refused, each in one log line of every process,
and the running configuration keeps serving."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from harness.builds import slow_repository
from harness.network import free_port, parse_metrics
from harness.scripts import describe, run_script
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, EXAMPLE_REPO, branch_commit, example_copy

pytestmark = OWN_NETWORK_MARKS

SLOW_BUILDS = 3
# A line every process writes within this long of its SIGHUP.
LOG_TIMEOUT_S = 20


def git_head(repository: Path) -> str:
    return subprocess.run(["git", "-C", str(repository), "rev-parse", "refs/heads/master"],
                          check=True, capture_output=True, text=True).stdout.strip()


def log_paths(log_dir: Path) -> dict[str, Path]:
    return {**{f"node {i}": log_dir / f"node-{i}.log" for i in range(4)}, "client": log_dir / "client.log"}


def wait_for_line(paths: dict[str, Path], offsets: dict[str, int], text: str) -> dict[str, str]:
    """Each process's first new log line holding `text`, once every one has written it."""
    deadline = time.monotonic() + LOG_TIMEOUT_S
    while True:
        found = {}
        for who, path in paths.items():
            with path.open("rb") as log:
                log.seek(offsets[who])
                lines = [line for line in log.read().decode(errors="replace").splitlines() if text in line]
            if lines:
                found[who] = lines[0]
        if len(found) == len(paths):
            return found
        assert time.monotonic() < deadline, f"no {text!r} in the logs of {sorted(set(paths) - set(found))}"
        time.sleep(0.1)


def sizes(paths: dict[str, Path]) -> dict[str, int]:
    return {who: path.stat().st_size for who, path in paths.items()}


def reload_all() -> str:
    result = run_script("./scripts/reload.sh")
    assert result.returncode == 0, describe(result)
    assert result.stdout.startswith("sent SIGHUP to node 0 (pid "), describe(result)
    return result.stdout


def post(base_url: str, body: dict) -> tuple[int, dict]:
    return http_json("POST", f"{base_url}/webHook", body)


def test_a_repository_added_to_the_file_is_built_after_a_sighup_and_running_builds_keep_their_verdicts(
        network, scratch):
    slow_repository(scratch / "slow")
    config_path = example_copy(scratch, allow_byzantine=False)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"] = [{"name": "slow", "url": str(scratch / "slow")}]
    # Without owners: a network with owners changes its repositories through the order alone
    # (tests/e2e/test_end_to_end_network_changes.py), and a reload takes only local settings.
    del data["owners"]
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    good = config_path.read_text()
    network(str(config_path))
    config = load_config(config_path)
    started = run_script("./scripts/startClient.sh", str(config_path), "--background")
    assert started.returncode == 0, describe(started)
    client = config.clients[0]
    base_url = f"http://{client.host}:{client.port}"
    paths = log_paths(scratch / "log")

    code, answer = post(base_url, {"branch": "master", "repository": "newrepo"})
    assert code == 400 and answer["error"].startswith("unknown repository 'newrepo': this client builds slow. ")

    with ThreadPoolExecutor(SLOW_BUILDS) as pool:
        running = [pool.submit(post, base_url, {"branch": "master", "repository": "slow"})
                   for _ in range(SLOW_BUILDS)]
        deadline = time.monotonic() + 60
        while len([build for build in http_json("GET", f"{base_url}/builds")[1]["builds"]
                   if build["state"] == "pending"]) < SLOW_BUILDS:
            assert time.monotonic() < deadline, "the slow builds were never submitted"
            time.sleep(0.1)

        data["repositories"].append({"name": "newrepo", "url": str(EXAMPLE_REPO)})
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        offsets = sizes(paths)
        sighup_s = time.monotonic()
        reload_all()
        refusals = 0
        while True:
            sent_s = time.monotonic()
            code, verdict = post(base_url, {"branch": "master", "repository": "newrepo"})
            if code != 400:
                break
            refusals += 1
            # Only until the client has taken the signal: the nodes were signalled before it.
            assert "unknown repository 'newrepo'" in verdict["error"] and time.monotonic() - sighup_s < 5, verdict
            time.sleep(0.05)
        first_verdict_s = time.monotonic() - sighup_s
        assert code == 200, verdict
        assert (verdict["status"], verdict["exit_code"], verdict["commit"]) == (
            "success", 0, branch_commit("master")), verdict
        assert len(verdict["agreed_by"]) >= config.f + 1, verdict
        # The build waits for a build slot behind the slow builds: most of the time is theirs.
        print(f"\nSIGHUP to the first verdict of the new repository: {first_verdict_s * 1000:.0f} ms; the "
              f"webhook that got it was sent {(sent_s - sighup_s) * 1000:.0f} ms after the SIGHUP, after "
              f"{refusals} refused before the client had reloaded, and took {verdict['elapsed_ms']} ms "
              f"(ordering, a build slot behind the {SLOW_BUILDS} slow builds, the build)")

        answers = [future.result() for future in running]
    slow_head = git_head(scratch / "slow")
    for code, answer in answers:
        assert code == 200 and (answer["status"], answer["commit"]) == ("success", slow_head), answer
    applied = wait_for_line(paths, offsets, "reload: repositories added: newrepo")
    assert all(" INFO shared.reload " in line for line in applied.values()), applied

    # A file that does not load: refused by every process, with the loader's words; the old one serves.
    config_path.write_text(good.replace("repositories:", "repositories: [", 1))
    offsets = sizes(paths)
    reload_all()
    refused = wait_for_line(paths, offsets, "reload refused, the running configuration stays")
    for line in refused.values():
        assert " WARNING shared.reload " in line and f"{config_path.resolve()}: line " in line, line
    code, verdict = post(base_url, {"branch": "master", "repository": "newrepo"})
    assert (code, verdict["status"]) == (200, "success"), verdict

    # A node's new port needs a restart: refused as a whole, the new repository included.
    data["nodes"][2]["port"] = free_port()
    data["repositories"].append({"name": "another", "url": str(EXAMPLE_REPO)})
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    offsets = sizes(paths)
    reload_all()
    refused = wait_for_line(paths, offsets, "reload refused: nodes[2].port cannot change without a restart")
    assert all(" WARNING shared.reload " in line for line in refused.values()), refused
    code, answer = post(base_url, {"branch": "master", "repository": "another"})
    assert code == 400, answer
    code, verdict = post(base_url, {"branch": "feature", "repository": "newrepo"})
    assert (code, verdict["status"], verdict["commit"]) == (200, "failure", branch_commit("feature")), verdict

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        metrics = parse_metrics(response.read().decode())
    assert {outcome: metrics[("pbft_client_reloads_total", (("outcome", outcome),))]
            for outcome in ("applied", "refused")} == {"applied": 1, "refused": 2}
