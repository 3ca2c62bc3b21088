"""What someone who can write beside the configuration may put where the loader reads
(shared/config.py through shared/boundedread.py): a FIFO, a device, a file of megabytes, YAML
that breaks the parser. Each is refused at once, in one line naming the file and the key; at a
start the process says so and exits, without a traceback and without waiting for a writer."""

from __future__ import annotations

import contextlib
import os

import pytest

from harness.network import write_network
from shared.config import ConfigError, load_config
from tests.shared.config_files import edit
from tests.support.hostile_files import fifo_in_place_of, oversized_in_place_of


def problems_of(path, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    assert "\n".join(caught.value.problems) == str(caught.value).replace(f"{path.resolve()}: ", "")
    return caught.value.problems


@pytest.mark.parametrize("hostile, problem", [
    (fifo_in_place_of, "cannot read: is a FIFO, not a regular file"),
    (oversized_in_place_of, "cannot read: is larger than 256 KiB, the most this file may hold"),
])
def test_a_fifo_or_a_file_of_megabytes_in_place_of_the_configuration_is_refused(tmp_path, hostile, problem):
    path = write_network(tmp_path)
    with hostile(path):
        assert problems_of(path) == [problem]


def test_a_device_in_place_of_the_configuration_is_refused(tmp_path):
    path = tmp_path / "network.yaml"
    path.symlink_to("/dev/zero")
    assert problems_of(path) == ["cannot read: is a character device, not a regular file"]


@pytest.mark.parametrize("text, problem", [
    ("[" * 5000 + "]" * 5000, "not a configuration: nested too deeply"),
    ("f: 2001-13-45\n", "not valid YAML: month must be in 1..12"),
    ("f: !!int one\n", "not valid YAML: invalid literal for int() with base 10: 'one'"),
], ids=["nested", "date", "tagged"])
def test_yaml_that_breaks_the_parser_is_one_line(tmp_path, text, problem):
    path = tmp_path / "network.yaml"
    path.write_text(text)
    assert problems_of(path) == [problem]


def test_secret_and_key_files_are_read_within_their_bound_and_named_by_their_key(tmp_path):
    def files(data):
        data["clients"][0].update(token_file="client.token", public_key_file="client.pub")
        del data["clients"][0]["public_key"]
        data["repositories"][0].update(secret_file="hook.secret", status_token_file="status.token")

    path = edit(write_network(tmp_path), files)
    for name in ("client.token", "client.pub"):
        (tmp_path / name).write_text("placeholder\n")
    (tmp_path / "hook.secret").write_bytes(b"x" * (64 * 1024 + 1))
    (tmp_path / "status.token").write_bytes(b"\xff\xfe not UTF-8")
    with fifo_in_place_of(tmp_path / "client.token"), fifo_in_place_of(tmp_path / "client.pub"):
        assert problems_of(path) == [
            f"clients[0].public_key_file: cannot read {tmp_path}/client.pub: is a FIFO, not a regular file",
            f"clients[0].token_file: cannot read {tmp_path}/client.token: is a FIFO, not a regular file",
            f"repositories[0].secret_file: cannot read {tmp_path}/hook.secret: "
            "is larger than 64 KiB, the most this file may hold",
            f"repositories[0].status_token_file: {tmp_path}/status.token is not UTF-8 text",
        ]


def test_a_starting_node_refuses_fifos_for_its_own_files(tmp_path):
    def files(data):
        data["repositories"][0].update(secrets=[{"name": "DEPLOY_KEY", "file": "deploy.secret"}],
                                       node_statuses=True, status_api="https://api.github.com",
                                       full_name="octo/example", node_status_token_file="node-{id}.status-token")
        data["build"] = {"docker_host": "tcp://build.example:2376",
                         "docker_tls": {"ca_file": "docker-ca.pem", "cert_file": "docker-cert.pem",
                                        "key_file": "docker-key.pem"}}
        data["tls"] = {"ca_file": "ca.pem", "cert_file": "node-{id}.pem", "key_file": "node-{id}-key.pem"}

    path = edit(write_network(tmp_path), files)
    names = ("deploy.secret", "node-0.status-token", "docker-ca.pem", "docker-cert.pem", "docker-key.pem",
             "ca.pem", "node-0.pem", "node-0-key.pem")
    with contextlib.ExitStack() as stack:
        for name in names:
            (tmp_path / name).write_text("placeholder\n")
            stack.enter_context(fifo_in_place_of(tmp_path / name))
        fifo = "is a FIFO, not a regular file"
        assert problems_of(path, node_id=0, read_secrets=False) == [
            f"build.docker_tls.{key}: cannot read {tmp_path}/docker-{name}.pem: {fifo}"
            for key, name in (("ca_file", "ca"), ("cert_file", "cert"), ("key_file", "key"))
        ] + [
            f"repositories[0].secrets[0].file: cannot read {tmp_path}/deploy.secret: {fifo}",
            f"repositories[0].node_status_token_file: node 0: cannot read {tmp_path}/node-0.status-token: {fifo}",
            f"tls.ca_file: cannot load {tmp_path}/ca.pem: {fifo}",
            f"tls: node 0 cannot serve with {tmp_path}/node-0.pem and {tmp_path}/node-0-key.pem: "
            f"{tmp_path}/node-0.pem: {fifo}",
        ]


@pytest.mark.parametrize("program", ["node", "client"])
def test_a_process_started_with_a_fifo_for_its_configuration_says_so_in_one_line(tmp_path, capsys, program):
    from client import index as client_index
    from node import index as node_index

    path = write_network(tmp_path)
    with fifo_in_place_of(path):
        if program == "node":
            assert node_index.main(["--config", str(path), "--id", "0", "--log-file", "-"]) == 2
        else:
            assert client_index.main(["--config", str(path), "--log-file", "-"]) == 2
    assert capsys.readouterr().err == f"{path}: cannot read: is a FIFO, not a regular file\n"


@pytest.mark.parametrize("program", ["node", "client"])
def test_a_process_whose_private_key_is_a_fifo_says_so_in_one_line(tmp_path, capsys, program):
    from client import index as client_index
    from node import index as node_index

    path = write_network(tmp_path, allow_byzantine=True)  # for --instant-builds: no engine needed
    key = tmp_path / "keys" / ("node-0.key" if program == "node" else "client-client.key")
    with fifo_in_place_of(key):
        if program == "node":
            assert node_index.main(["--config", str(path), "--id", "0", "--instant-builds", "--log-file", "-"]) == 2
        else:
            assert client_index.main(["--config", str(path), "--log-file", "-"]) == 2
    who = "node 0" if program == "node" else "client 'client'"
    assert capsys.readouterr().err == (f"cannot read the private key of {who} at {key}: "
                                       "is a FIFO, not a regular file\n")
