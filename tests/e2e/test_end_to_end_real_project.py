"""End to end with a real project: more-itertools' own test suite, from its PyPI sdist,
built by four nodes in the Debian image scripts/build-debian-image.sh makes.

The network is a fresh one of the test's own (keys, ports, data and log
folders under the test's temporary folder), started and stopped with the
README's scripts, and its one repository is the sdist turned into git
(harness/real_project.py). Three webhooks: master passes, a branch with one
false assertion fails with pytest's exit code 1, and a branch using HOME, the
build user's name and a script in /tmp passes.
"""

from __future__ import annotations

import re

import pytest

from harness.network import write_network
from harness.real_project import (
    BROKEN_BRANCH, BUILD_IMAGE_SCRIPT, IMAGE, PROJECT, SANDBOX_BRANCH, SANDBOX_MARKERS, STATUS_LINE, ProjectUnavailable,
    every_node_log, fetch_sdist, image_present, make_project_repo,
)
from harness.scripts import client
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, webhook

pytestmark = [*OWN_NETWORK_MARKS, pytest.mark.slow]

PYTEST_PASSED = re.compile(r"^\d+ passed\b.* in [\d.]+s", re.MULTILINE)
PYTEST_FAILED = re.compile(r"^1 failed, \d+ passed\b", re.MULTILINE)


def test_a_real_project_from_its_sdist_passes_fails_and_uses_the_sandbox(scratch, network):
    try:
        sdist = fetch_sdist()
    except ProjectUnavailable as error:
        pytest.fail(f"the real project's sdist is needed and could not be had: {error}")
    repository = scratch / PROJECT
    commits = make_project_repo(repository, sdist)
    config_path = write_network(scratch, repositories={PROJECT: str(repository)})
    config = load_config(config_path)

    network(str(config_path))  # its set-up builds the image where it can
    assert image_present(), f"{IMAGE} is missing: run {BUILD_IMAGE_SCRIPT} as root"

    with client(config, scratch / "client.out", str(config_path)) as base_url:
        # webhook() checks that f+1 distinct nodes signed each verdict (its certificate).
        master = webhook(base_url, config, "master")
        assert (master["status"], master["exit_code"], master["commit"]) == ("success", 0, commits["master"]), master
        for node_id, text in every_node_log(base_url, config, master).items():
            assert PYTEST_PASSED.search(text), f"node {node_id} shows no pytest summary:\n{text[-2000:]}"
            assert STATUS_LINE.search(text)[1] == "success", f"node {node_id}:\n{text[-2000:]}"

        broken = webhook(base_url, config, BROKEN_BRANCH)
        assert (broken["status"], broken["exit_code"], broken["commit"]) == (
            "failure", 1, commits[BROKEN_BRANCH]
        ), broken
        for node_id, text in every_node_log(base_url, config, broken).items():
            assert PYTEST_FAILED.search(text), f"node {node_id}:\n{text[-2000:]}"
            assert "test_null_take" in text, f"node {node_id}:\n{text[-2000:]}"

        sandbox = webhook(base_url, config, SANDBOX_BRANCH)
        assert (sandbox["status"], sandbox["exit_code"], sandbox["commit"]) == (
            "success", 0, commits[SANDBOX_BRANCH]
        ), sandbox
        for node_id, text in every_node_log(base_url, config, sandbox).items():
            for marker in SANDBOX_MARKERS:
                assert re.search(rf"^{re.escape(marker)}$", text, re.MULTILINE), f"node {node_id}: {marker!r}:\n{text}"
