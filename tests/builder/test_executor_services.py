"""Services on the real Docker engine: started before the steps in the build's own network
namespace, reached by name from the steps, ready when their readiness command says so,
unreachable from another build and unable to reach this host, hardened and limited like
a step, and removed with the build."""

import asyncio
import socket

import pytest
import yaml

from builder import BuildOrder
from harness.network import free_port
from tests.builder.executor_helpers import Listener, build, host_address, live_log, log_text, until_logged

pytestmark = pytest.mark.docker

# A TCP service in busybox: answers "pong" to every connection on port 7000, then says it is up.
PONG = {
    "name": "pong",
    "image": "pbft-ci/busybox:latest",
    "commands": ["nc -ll -p 7000 -e echo pong &", "touch /tmp/up", "echo pong service up", "wait"],
    "ready": {"command": "test -f /tmp/up", "timeout_s": 20},
}


def with_services(*services: dict, **spec) -> str:
    return yaml.safe_dump({"services": list(services), **spec}, sort_keys=False)


async def test_a_step_reaches_a_service_by_name_and_a_service_reaches_nothing_else(
    make_executor, git_repo, build_ids, container_roles
):
    listener = Listener()
    address = f"{host_address()} {listener.port}"
    git_repo.commit("master", {".pbft-ci.yml": with_services(
        {**PONG, "commands": [
            f"nc -w 3 {address} </dev/null && echo service reached the host || echo service cannot reach the host",
            "echo service interfaces: $(ip -o link | grep -vc ': lo:') besides loopback",
            *PONG["commands"],
        ]},
        steps=[{"name": "ask", "commands": ["nc pong 7000 </dev/null", "grep pong /etc/hosts"]}],
    )})
    build_id = build_ids()

    try:
        result = await make_executor().run(BuildOrder(
            build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master",
        ))
    finally:
        listener.socket.close()

    text = log_text(result)
    assert (result.status, result.exit_code) == ("success", 0), text
    assert "\npong\n" in text and "127.0.0.1\tpong" in text
    assert "== service pong: image pbft-ci/busybox:latest, ready" in text
    # Its output follows the steps, under its name.
    service_output = text.split("--- service pong ---\n", 1)[1]
    lines = service_output.splitlines()
    assert "service cannot reach the host" in lines and "service interfaces: 0 besides loopback" in lines
    assert listener.connections == 0
    assert container_roles[build_id] == ["holder", "service", "step"]


async def test_a_service_is_hardened_and_shares_the_builds_limits(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": with_services(
        {**PONG, "commands": [
            "echo service uid=$(id -u)",
            "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
            "echo service pids $(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)",
            "touch /root-file 2>/dev/null && echo service root-writable || echo service root-read-only",
            *PONG["commands"],
        ]},
        commands=["echo step pids $(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)"],
    )})

    result = await build(make_executor(pids_limit=100, cpus=1.0), git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    # A one-script spec with services runs as one step, `build`.
    assert [(step.name, step.status) for step in result.steps] == [("build", "success")]
    assert "service uid=1000" in text and "CapEff:\t0000000000000000" in text and "NoNewPrivs:\t1" in text
    assert "service pids 50" in text and "step pids 50" in text and "service root-read-only" in text
    assert "services pong (pbft-ci/busybox:latest): each container of the build gets memory 128 MB, cpus 0.5, pids 50" \
        in text


async def test_another_build_cannot_reach_a_service(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": with_services(
        PONG, steps=[{"name": "hold", "commands": ["nc pong 7000 </dev/null", "sleep 8"]}],
    )})
    git_repo.commit("other", {".pbft-ci.yml": yaml.safe_dump({"commands": [
        "sleep 3",
        "nc -w 2 127.0.0.1 7000 </dev/null && exit 6",
        "nc -w 2 pong 7000 </dev/null && exit 7",
        "echo nothing answered",
    ]})})
    executor = make_executor()

    with_service, without = await asyncio.gather(
        build(executor, git_repo, build_ids), build(executor, git_repo, build_ids, branch="other"),
    )

    assert with_service.status == "success", log_text(with_service)
    assert (without.status, without.exit_code) == ("success", 0), log_text(without)
    assert "nothing answered" in log_text(without)


async def test_a_service_that_is_never_ready_or_exits_is_an_error_with_its_output(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": with_services(
        {**PONG, "ready": {"command": "false", "timeout_s": 2}},
        steps=[{"name": "never", "commands": ["echo the step ran"]}],
    )})
    git_repo.commit("exits", {".pbft-ci.yml": with_services(
        {**PONG, "commands": ["echo giving up", "exit 3"]},
        steps=[{"name": "never", "commands": ["echo the step ran"]}],
    )})
    executor = make_executor()

    slow = await build(executor, git_repo, build_ids)
    exited = await build(executor, git_repo, build_ids, branch="exits")

    assert (slow.status, slow.reason) == ("error", "service 'pong' was not ready within 2 s"), log_text(slow)
    assert "pong service up" in log_text(slow) and "the step ran" not in log_text(slow)
    assert (exited.status, exited.reason) == ("error", "service 'pong' exited with code 3 before it was ready")
    assert "giving up" in log_text(exited)


def test_services_are_declared_with_host_names_and_readiness():
    from builder.plan.spec import parse_build_spec

    spec = parse_build_spec(with_services(PONG, {"name": "db", "image": "x", "environment": {"A": 1}},
                                          commands=["true"]).encode())
    pong, db = spec.services
    assert (pong.ready_command, pong.ready_timeout_s, db.ready_command) == ("test -f /tmp/up", 20.0, None)
    assert db.environment == (("A", "1"),) and db.commands == ()
    with pytest.raises(ValueError, match=r"services\[1\]: another service is named 'pong'"):
        parse_build_spec(with_services(PONG, PONG, commands=["true"]).encode())
    with pytest.raises(ValueError, match=r"services\[0\].name: must be a host name"):
        parse_build_spec(with_services({**PONG, "name": "Pong_1"}, commands=["true"]).encode())



async def test_neither_the_node_nor_a_peer_reaches_a_service(
    tmp_path, make_executor, git_repo, build_ids, docker_client
):
    """A service listens in its build's own network namespace, where there is loopback only:
    no address of the node's host, the one peers connect to included, leads to it, and the
    engine gives its containers no address either."""
    port = free_port()
    service = {**PONG, "commands": [f"nc -ll -p {port} -e echo pong &", "touch /tmp/up", "wait"]}
    git_repo.commit("master", {".pbft-ci.yml": with_services(service, steps=[
        {"name": "hold", "commands": [f"nc pong {port} </dev/null", "echo service answered", "sleep 8"]},
    ])})
    build_id = build_ids()
    running = asyncio.create_task(make_executor().run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master",
    )))
    await until_logged(live_log(tmp_path, build_id), "service answered")

    answers = {}
    for address in ("127.0.0.1", host_address()):
        try:
            with socket.create_connection((address, port), timeout=2) as connection:
                answers[address] = connection.recv(100)
        except OSError as error:
            answers[address] = type(error).__name__
    containers = docker_client.containers.list(filters={"label": f"pbft-ci.build={build_id}"})
    result = await running

    assert result.status == "success", log_text(result)
    # Nothing listens on the port on this host (free_port), and the service's port is not it.
    assert answers == {"127.0.0.1": "ConnectionRefusedError", host_address(): "ConnectionRefusedError"}
    assert {container.labels["pbft-ci.role"] for container in containers} >= {"holder", "service", "step"}
    for container in containers:
        addresses = [network.get("IPAddress") for network in container.attrs["NetworkSettings"]["Networks"].values()]
        assert not any(addresses), (container.labels["pbft-ci.role"], addresses)
