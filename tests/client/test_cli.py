"""`pbft-ci`, the command line (cli/), against the client and fake nodes: each command asks
the client's HTTP API as the docs show and prints one line per build; its exit code says
whether the build passed, the client refused (with its reason) or did not answer."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from pathlib import Path

from cli.main import main
from tests.client.client_token import BEARER, TOKEN
from tests.client.deploys import a_client, certified_deploy, reported
from tests.client.fake_nodes import start_client
from tests.client.forge_deliveries import settled
from tests.client.signed_network import Network

ROOT = Path(__file__).resolve().parents[2]


async def cli(client, *args: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    url = str(client.make_url("/")).rstrip("/")
    code = await asyncio.to_thread(main, ["--url", url, *args], lines.append)
    return code, lines


async def test_run_status_and_rerun_print_the_verdicts_and_exit_as_the_build_went(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)

    code, lines = await cli(client, "run", "example", "main", "--wait")
    assert code == 0 and len(lines) == 1 and lines[0].startswith("build ") and ": success, commit " in lines[0]
    build_id = lines[0].split()[1].rstrip(":")

    code, lines = await cli(client, "status", build_id)
    assert (code, lines) == (0, [f"build {build_id}: accepted success, commit {lines[0].rsplit(' ', 1)[1]}"])

    code, lines = await cli(client, "rerun", build_id)
    assert code == 0 and lines[0].endswith(f": runs build {build_id} again")
    await settled(client, lines[0].split()[1].rstrip(":"))

    code, lines = await cli(client, "run", "example", "fail-pipeline/x", "--wait")
    assert code == 1 and "failure (step 'test' failed with exit code 3)" in lines[0]


async def test_run_signs_its_inputs_into_the_request_and_a_bad_one_is_refused_before_ordering(
        cluster, aiohttp_client, capsys):
    client = await start_client(aiohttp_client, cluster)

    code, lines = await cli(client, "run", "example", "main", "--input", "target=production", "--input",
                            "note=a = b", "--wait")
    assert code == 0, lines
    record = await (await client.get(f"/builds/{lines[0].split()[1].rstrip(':')}")).json()
    assert record["request"]["operation"]["inputs"] == [["target", "production"], ["note", "a = b"]]

    asked = len(cluster.committed)
    code, lines = await cli(client, "run", "example", "main", "--input", "Target=production")
    assert (code, lines, len(cluster.committed)) == (1, [], asked)
    assert capsys.readouterr().err.startswith("pbft-ci run: 400 inputs: 'Target' is not an input's name")
    with pytest.raises(SystemExit):
        main(["run", "example", "main", "--input", "no-equals-sign"])


async def test_a_matrix_is_followed_to_its_last_combination_and_its_failed_ones_run_again(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)

    code, lines = await cli(client, "run", "example", "matrix/ci", "--wait")

    assert code == 1  # PYTHON=fail failed
    parent = lines[0].split()[1].rstrip(":")
    assert lines[0].startswith(f"build {parent}: matrix (the spec's matrix expands into 3 builds)")
    assert [line.split(": ", 1)[1] for line in lines[1:4]] == ["started"] * 3
    assert [line.split(": ", 1)[1].split(",")[0] for line in lines[4:]] == [
        "accepted success", "accepted success", "accepted failure"]

    code, lines = await cli(client, "rerun", parent, "--failed")
    assert code == 0 and len(lines) == 1 and "PYTHON=fail: runs build" in lines[0]

    code, lines = await cli(client, "status", parent)
    assert code == 0 and len(lines) == 4 and lines[3].endswith("PYTHON=fail: failure")


async def test_run_waits_for_the_combinations_a_max_parallel_matrix_starts_one_by_one(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)

    code, lines = await cli(client, "run", "example", "matrix-parallel", "--wait")

    assert code == 1, lines  # its PYTHON=fail combination failed
    assert [line.split(": ", 1)[1].split(",")[0] for line in lines[1:]] == [
        "started", "accepted success", "accepted success", "accepted failure"], lines


async def test_a_refusal_exits_1_with_the_clients_reason_and_no_answer_exits_2(cluster, aiohttp_client, capsys):
    client = await start_client(aiohttp_client, cluster)
    _, lines = await cli(client, "run", "example", "main")
    build_id = lines[0].split()[1].rstrip(":")

    code, lines = await cli(client, "cancel", build_id)

    assert (code, lines) == (1, [])
    assert capsys.readouterr().err == f"pbft-ci cancel: 409 build {build_id} has its verdict already (accepted)\n"
    code = await asyncio.to_thread(main, ["--url", "http://127.0.0.1:9", "status", "1"], lambda line: None)
    assert code == 2 and capsys.readouterr().err.startswith("pbft-ci status: no answer from http://127.0.0.1:9")


def test_the_installed_command_lints_a_spec_from_any_folder(tmp_path):
    """scripts/setup.sh installs .venv/bin/pbft-ci; `lint` is the nodes' own reading."""
    (tmp_path / ".pbft-ci.yml").write_text("x-t: {retry: 1}\nsteps: [{name: s, commands: [t], extends: x-t}]\n")
    (tmp_path / "bad.yml").write_text("commands: []\n")
    command = ROOT / ".venv" / "bin" / "pbft-ci"

    good = subprocess.run([str(command), "lint"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    bad = subprocess.run([str(command), "lint", "bad.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert (good.returncode, good.stdout) == (0, ".pbft-ci.yml: ok\n"), good.stderr
    assert (bad.returncode, bad.stdout) == (1, "bad.yml: refused\n.pbft-ci.yml: commands: must be a non-empty list "
                                               "of strings\n")


def test_verify_checks_a_certificate_offline_as_client_index_does(tmp_path, capsys):
    net = Network(tmp_path)
    good = net.write(net.certificate([net.reply(1), net.reply(0)]))
    forged = net.write(net.certificate([net.reply(1), net.reply(1)]), name="forged.json")

    assert main(["verify", str(good), "--config", str(net.config_path)]) == 0
    said = capsys.readouterr()
    assert net.verify(good) == 0 and capsys.readouterr().out == said.out and said.out.startswith("valid: build ")
    assert main(["verify", str(forged), "--config", str(net.config_path)]) == 1
    assert capsys.readouterr().err.startswith("invalid: ")


def test_the_installed_command_verifies_from_any_folder_and_names_itself(tmp_path):
    net = Network(tmp_path / "network")
    certificate = net.write(net.certificate([net.reply(0), net.reply(2)]))
    command = [str(ROOT / ".venv" / "bin" / "pbft-ci"), "verify"]

    good = subprocess.run([*command, certificate.name, "--config", str(net.config_path)], cwd=certificate.parent,
                          capture_output=True, text=True, timeout=60)
    usage = subprocess.run([*command, certificate.name], cwd=certificate.parent, capture_output=True, text=True,
                           timeout=60)

    assert (good.returncode, good.stdout.split()[:2]) == (0, ["valid:", "build"]), good.stderr
    assert usage.returncode == 2 and usage.stderr.startswith("usage: pbft-ci verify ")


async def test_approve_lets_a_deploy_that_waits_run_and_says_which_approval(cluster, aiohttp_client, capsys):
    client = await a_client(cluster, aiohttp_client)
    build_id = await certified_deploy(client)
    code, lines = await cli(client, "--token", TOKEN, "approve", build_id, "--action", "deploy")
    assert (code, lines) == (1, [])
    assert capsys.readouterr().err == (f"pbft-ci approve: 409 action deploy of build {build_id} deploys to no"
                                       " environment that its runner reported\n")
    await reported(cluster, client, build_id, "waiting")

    code, lines = await cli(client, "--token", TOKEN, "approve", build_id, "--action", "deploy")
    assert code == 0 and lines[0].startswith(f"build {build_id}: action deploy approved by approval ")
    approval_id = lines[0].rsplit(" ", 1)[1]
    assert (await settled(client, approval_id, BEARER))["approves"]["build"] == build_id
    code, lines = await cli(client, "--token", TOKEN, "approve", build_id, "--action", "deploy")
    assert (code, lines) == (0, [f"build {build_id}: action deploy approved by approval {approval_id}"
                                 " (approved before)"])
