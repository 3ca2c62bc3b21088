"""The network configuration's JSON Schema held against its loader. Both come from one
declaration (shared/config.py and the sections it names), so the schema accepts every
configuration the repository shows (the example network, the docs' examples, the tests'
networks) and refuses what the loader refuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from harness.network import write_network
from shared.config import ConfigError, NetworkConfig, load_config
from shared.schema import json_schema
from tests.shared.config_files import edit
from tests.shared.json_schema_check import fragment_schema, schema_problems

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json_schema(NetworkConfig, title="pbft-ci network configuration")
SECRET = "0123456789abcdef" * 4


def as_an_editor_reads(document):
    """The document as a YAML 1.2 reader (an editor's) builds it: `on` is a string there, where
    PyYAML's YAML 1.1 makes a bare `on` key the boolean true."""
    if isinstance(document, dict):
        return {("on" if key is True else key): as_an_editor_reads(value) for key, value in document.items()}
    if isinstance(document, list):
        return [as_an_editor_reads(item) for item in document]
    return document


def docs_examples() -> list:
    """Each YAML block of the docs that shows (part of) a network configuration."""
    found = []
    network_keys = set(SCHEMA["properties"])
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text()
        for block in re.finditer(r"```yaml\n(.*?)```", text, re.S):
            document = yaml.safe_load(block.group(1))
            if isinstance(document, dict) and set(document) <= network_keys and set(document) & {
                    "f", "nodes", "clients", "repositories", "build", "protocol", "tls"}:
                line = text[:block.start()].count("\n") + 1
                found.append(pytest.param(document, id=f"{page.name}:{line}"))
    return found


def test_the_schema_is_json_and_the_check_knows_every_keyword_it_uses():
    assert json.loads(json.dumps(SCHEMA)) == SCHEMA
    assert schema_problems(SCHEMA, {}) != []  # walks the top level; nested keywords below


def test_the_example_network_loads_and_the_schema_accepts_it():
    path = ROOT / "example-config" / "network.yaml"
    load_config(path, require_keys=False)
    assert schema_problems(SCHEMA, as_an_editor_reads(yaml.safe_load(path.read_text()))) == []


def test_the_docs_show_network_configurations():
    assert len(docs_examples()) >= 12


@pytest.mark.parametrize("example", docs_examples())
def test_the_schema_accepts_each_example_of_the_docs_as_a_fragment(example):
    assert schema_problems(fragment_schema(SCHEMA), as_an_editor_reads(example)) == []


def with_everything(data):
    """Settings of every section: forge, schedules, notifications, secrets, engines, limits."""
    data["f"] = 1
    data["clients"][0].update(public_badges=True, max_follows=8, body_timeout_s=2, smtp={
        "host": "127.0.0.1", "port": 2525, "from": "ci@example.org"})
    data["repositories"][0].update(
        full_name="octo/example", secret=SECRET, status_api="https://api.github.com", status_style="gitlab",
        build_tags=True, submodules=["https://git.example.org/lib.git"],
        schedules=[{"name": "nightly", "cron": "0 3 * * *", "branch": "main"}],
        notify=[{"webhook": "https://hooks.example.org/ci", "secret": SECRET, "on": ["failure"]},
                {"email": ["a@example.org", "b@example.org"], "branches": ["main"]}],
        secrets=[{"name": "DEPLOY_TOKEN", "file": "keys/deploy", "events": ["push"]}],
    )
    data["nodes"][1].update(docker_host="tcp://build.example:2376", docker_tls={
        "ca_file": "ca.pem", "cert_file": "cert.pem", "key_file": "key.pem"})
    data["build"] = {"docker_host": "unix:///run/docker.sock", "registries": ["docker.io"], "cpus": 2, "memory_mb": 64}
    data["protocol"] = {"checkpoint_interval": 64, "relay_votes": True, "client_deadline_s": 900}


def test_a_network_with_every_section_loads_and_the_schema_accepts_it(tmp_path):
    path = edit(write_network(tmp_path), with_everything)

    load_config(path)
    assert schema_problems(SCHEMA, yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("change", [
    lambda data: data.update(surprise=True),
    lambda data: data.pop("clients"),
    lambda data: data.update(nodes=[]),
    lambda data: data["nodes"][1].update(port=70000),
    lambda data: data["nodes"][1].update(public_key=None),
    lambda data: data["clients"][0].update(token=SECRET, token_file="client.token"),
    lambda data: data["clients"][0].update(max_follows=0),
    lambda data: data["repositories"][0].update(build_network="yes"),
    lambda data: data["repositories"][0].update(name="has space"),
    lambda data: data["repositories"][0].update(status_style="bitbucket"),
    lambda data: data["repositories"][0].update(notify=[{"email": [f"{n}@example.org" for n in range(17)]}]),
    lambda data: data["repositories"][0].update(secrets=[{"name": "A_B", "file": "f", "events": ["merge"]}]),
    lambda data: data["repositories"][0].update(schedules=[{"name": "x", "cron": "@daily"}]),
    lambda data: data.update(build={"cpus": 0}),
    lambda data: data.update(build={"user": "build"}),
    lambda data: data.update(protocol={"relay_fallback_s": "soon"}),
    lambda data: data.update(tls={"ca_file": "ca.pem"}),
], ids=["unknown key", "no clients", "no nodes", "port", "no key", "token twice", "bound", "boolean", "name",
        "choice", "too many", "event", "required", "more than 0", "pattern", "number", "section"])
def test_what_the_loader_refuses_the_schema_refuses(tmp_path, change):
    path = edit(write_network(tmp_path), change)

    with pytest.raises(ConfigError):
        load_config(path)
    assert schema_problems(SCHEMA, yaml.safe_load(path.read_text())) != []
