"""Where a node builds: `build.docker_host`, a node's own `docker_host`, and `docker_tls` for tcp://."""

import importlib.util

import pytest

from harness.network import write_network
from shared.config import ConfigError, DockerEngineConfig, DockerTLSConfig, load_config
from tests.shared.config_files import edit


def problems_of(path, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    return caught.value.problems


def with_build_engine(tmp_path, **engine):
    return edit(write_network(tmp_path), lambda data: data.setdefault("build", {}).update(engine))


def with_node_engine(tmp_path, node: int, **engine):
    return edit(write_network(tmp_path), lambda data: data["nodes"][node].update(engine))


TLS = {"ca_file": "docker/ca.pem", "cert_file": "docker/cert.pem", "key_file": "docker/key.pem"}


def test_without_docker_host_every_node_builds_on_the_environments_engine(tmp_path):
    config = load_config(write_network(tmp_path))

    assert [node.docker for node in config.nodes] == [DockerEngineConfig()] * 4


@pytest.mark.parametrize("host", [
    "unix:///run/pbft-build/docker.sock",
    "ssh://build-1.example",
    "ssh://pbft@build-1.example:2222",
    "ssh://pbft_ci@10.0.0.7",
])
def test_a_unix_or_ssh_engine_applies_to_every_node(tmp_path, host):
    config = load_config(with_build_engine(tmp_path, docker_host=host))

    assert {node.docker for node in config.nodes} == {DockerEngineConfig(host)}
    assert "docker_host" not in vars(config.build)


def test_a_tcp_engine_takes_its_tls_files_relative_to_the_configuration(tmp_path):
    config = load_config(with_build_engine(tmp_path, docker_host="tcp://build-1.example:2376", docker_tls=TLS))

    assert config.nodes[0].docker == DockerEngineConfig(
        "tcp://build-1.example:2376",
        DockerTLSConfig(tmp_path / "docker/ca.pem", tmp_path / "docker/cert.pem", tmp_path / "docker/key.pem"),
    )


def test_a_nodes_own_engine_replaces_the_build_sections_tls_included(tmp_path):
    def engines(data):
        data["build"] = {"docker_host": "tcp://shared.example:2376", "docker_tls": TLS}
        data["nodes"][2]["docker_host"] = "unix:///srv/node-2/docker.sock"
        data["nodes"][3].update(docker_host="tcp://[fd00::3]:2376", docker_tls={**TLS, "ca_file": "/etc/pbft/ca.pem"})

    config = load_config(edit(write_network(tmp_path), engines))

    assert config.nodes[0].docker.host == config.nodes[1].docker.host == "tcp://shared.example:2376"
    assert config.nodes[2].docker == DockerEngineConfig("unix:///srv/node-2/docker.sock")
    assert config.nodes[3].docker.host == "tcp://[fd00::3]:2376"
    assert config.nodes[3].docker.tls.ca_file.as_posix() == "/etc/pbft/ca.pem"


def test_plain_tcp_is_refused_since_the_docker_api_is_root_on_its_machine(tmp_path):
    problems = problems_of(with_build_engine(tmp_path, docker_host="tcp://build-1.example:2375"))

    assert problems == [
        "build.docker_host: tcp:// needs docker_tls (ca_file, cert_file, key_file): a Docker API without TLS "
        "client certificates lets anyone who reaches its port run containers as root on that machine"
    ]


def test_a_nodes_plain_tcp_is_refused_with_the_nodes_path(tmp_path):
    problems = problems_of(with_node_engine(tmp_path, 1, docker_host="tcp://10.0.0.9:2375"))

    assert len(problems) == 1 and problems[0].startswith("nodes[1].docker_host: tcp:// needs docker_tls")


@pytest.mark.parametrize("host, reason", [
    ("http://build-1:2375", "must start with unix://, tcp:// or ssh://"),
    ("npipe:////./pipe/docker_engine", "must start with unix://, tcp:// or ssh://"),
    ("/var/run/docker.sock", "must start with unix://, tcp:// or ssh://"),
    ("unix://run/docker.sock", "unix:// needs an absolute socket path"),
    ("unix:///run/my docker.sock", "unix:// needs an absolute socket path"),
    ("tcp://build-1", "tcp:// needs a port"),
    ("tcp://build-1:99999", "has an invalid port"),
    ("tcp://build-1:2376/v1.41", "has an invalid port"),
    ("tcp://root@build-1:2376", "tcp:// takes no user name"),
    ("tcp://[not-v6]:2376", "is not a valid IPv6 address"),
    ("ssh://-oProxyCommand=evil", "is not a valid ssh:// address"),
    ("ssh://-l@build-1", "is not a valid ssh user name"),
    ("ssh://[::1]", "ssh:// takes a host name or an IPv4 address"),
    ("ssh://build-1/path", "is not a valid ssh:// address"),
    ("ssh://", "is not a valid ssh:// address"),
    (2376, "expected a Docker engine (unix://, tcp:// or ssh://), got 2376"),
])
def test_a_bad_docker_host_is_refused_with_the_reason(tmp_path, host, reason):
    problems = problems_of(with_build_engine(tmp_path, docker_host=host))

    assert len(problems) == 1 and problems[0].startswith("build.docker_host: ") and reason in problems[0], problems


def test_tls_belongs_to_tcp_only_and_needs_all_three_files(tmp_path):
    def engines(data):
        data["build"] = {"docker_tls": TLS}
        data["nodes"][0].update(docker_host="unix:///run/docker.sock", docker_tls=TLS)
        data["nodes"][1].update(docker_host="tcp://b1:2376", docker_tls={"ca_file": "ca.pem", "cert": "c.pem"})
        data["nodes"][2].update(docker_host="tcp://b2:2376", docker_tls="certs/")

    problems = problems_of(edit(write_network(tmp_path), engines))

    assert problems == [
        "nodes[0].docker_tls: is only for tcp:// engines: unix:// is guarded by the socket's file permissions, "
        "ssh:// by ssh's own keys",
        "nodes[1].docker_tls.cert_file: is required",
        "nodes[1].docker_tls.key_file: is required",
        "nodes[1].docker_tls.cert: unknown setting; known here: ca_file, cert_file, key_file",
        "nodes[2].docker_tls: expected a mapping, got 'certs/'",
        "build.docker_tls: needs docker_host (a tcp:// engine) beside it",
    ]


def test_the_starting_node_needs_its_own_tls_files_and_nobody_elses(tmp_path):
    def engines(data):
        data["build"] = {"docker_host": "tcp://shared.example:2376", "docker_tls": TLS}
        data["nodes"][1].update(docker_host="tcp://b1.example:2376",
                                docker_tls={"ca_file": "n1/ca.pem", "cert_file": "n1/cert.pem", "key_file": "n1/key"})

    path = edit(write_network(tmp_path), engines)
    (tmp_path / "n1").mkdir()
    (tmp_path / "n1" / "ca.pem").write_text("ca")
    (tmp_path / "n1" / "cert.pem").write_text("cert")

    # The client and the other nodes load the shared file without node 1's files.
    load_config(path)
    assert problems_of(path, node_id=1) == [f"nodes[1].docker_tls.key_file: cannot read {tmp_path}/n1/key: "
                                            "No such file or directory"]
    assert problems_of(path, node_id=0) == [
        f"build.docker_tls.{key}: cannot read {tmp_path}/docker/{name}: No such file or directory"
        for key, name in (("ca_file", "ca.pem"), ("cert_file", "cert.pem"), ("key_file", "key.pem"))
    ]
    (tmp_path / "n1" / "key").write_text("key")
    assert load_config(path, node_id=1).node(1).docker.tls.key_file == tmp_path / "n1" / "key"


def test_a_node_with_an_ssh_engine_refuses_to_start_without_paramiko(tmp_path, capsys, monkeypatch):
    from node import index

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "paramiko" else real_find_spec(name, *args))
    path = with_build_engine(tmp_path, docker_host="ssh://pbft@build-1.example")

    assert index.main(["--config", str(path), "--id", "0", "--log-file", "-"]) == 2
    assert "node 0 cannot reach its build engine: ssh://pbft@build-1.example needs the paramiko package" in (
        capsys.readouterr().err
    )
