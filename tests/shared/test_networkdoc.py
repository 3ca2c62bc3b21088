"""The network document (shared/networkdoc.py): what every node must hold alike, and its digest.

A host's own settings and secrets may differ between hosts without changing the digest;
any network setting changes it; the file's formatting never does; no secret is in it.
"""

import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.network import write_network
from shared.config import load_config
from shared.crypto import generate_private_key, public_key_hex
from shared.networkdoc import agreed, document_problem
from tests.shared.config_files import edit

WEBHOOK_SECRET = "5ecret-of-the-forge-" * 3
TOKEN = "c1ient-token-" * 4


@pytest.fixture
def config_path(tmp_path):
    path = write_network(tmp_path)
    (tmp_path / "forge.secret").write_text(WEBHOOK_SECRET)
    (tmp_path / "client.token").write_text(TOKEN)
    (tmp_path / "value.secret").write_text("build-secret-value")

    def secrets(data):
        data["repositories"][0].update(secret_file="forge.secret", full_name="team/example",
                                       secrets=[{"name": "API_KEY", "file": "value.secret"}])
        data["clients"][0]["token_file"] = "client.token"
        data["clients"][0].pop("plain_without_token")

    return edit(path, secrets)


def digest_after(path, change) -> str:
    return load_config(edit(path, change)).digest


LOCAL_CHANGES = {
    "folders": lambda d: d.update(data_dir="elsewhere", log_dir="logs", keys_dir="keys"),
    "a node's own engine": lambda d: d["nodes"][1].update(docker_host="unix:///run/other.sock"),
    "every node's engine": lambda d: d.setdefault("build", {}).update(docker_host="ssh://builder@host"),
    "registry credentials": lambda d: d.setdefault("build", {}).update(registry_auth_file="keys/auth-{id}.json"),
    "a secret's file": lambda d: d["repositories"][0]["secrets"][0].update(file="value.secret"),
    "the client's limits": lambda d: d["clients"][0].update(max_follows=3, public_url="https://ci.example.org"),
}
NETWORK_CHANGES = {
    "f": lambda d: d.update(f=0),
    "a node's key": lambda d: d["nodes"][2].update(public_key=public_key_hex(generate_private_key())),
    "a node's address": lambda d: d["nodes"][2].update(port=d["nodes"][2]["port"] + 1000),
    "a build limit": lambda d: d.setdefault("build", {}).update(memory_mb=1024),
    "a protocol setting": lambda d: d.setdefault("protocol", {}).update(checkpoint_interval=64),
    "a repository's URL": lambda d: d["repositories"][0].update(url="https://git.example.org/other.git"),
    "a repository added": lambda d: d["repositories"].append({"name": "more", "url": "https://git.example.org/m"}),
    "a secret's events": lambda d: d["repositories"][0]["secrets"][0].update(events=["push"]),
    "the client's key": lambda d: d["clients"][0].update(public_key=public_key_hex(generate_private_key())),
}


@pytest.mark.parametrize("change", LOCAL_CHANGES.values(), ids=LOCAL_CHANGES.keys())
def test_a_hosts_own_settings_leave_the_digest_as_it_is(config_path, change):
    before = load_config(config_path).digest
    assert digest_after(config_path, change) == before


@pytest.mark.parametrize("change", NETWORK_CHANGES.values(), ids=NETWORK_CHANGES.keys())
def test_every_network_setting_changes_the_digest(config_path, change):
    before = load_config(config_path).digest
    assert digest_after(config_path, change) != before


def test_the_files_formatting_and_defaults_written_out_leave_the_digest_as_it_is(config_path):
    before = load_config(config_path)
    data = yaml.safe_load(config_path.read_text())
    # Keys in another order, a default written out, comments.
    data = dict(reversed(list(data.items())))
    data.setdefault("build", {})["timeout_s"] = 300.0
    config_path.write_text("# the same network, written by another operator\n" + yaml.safe_dump(data, sort_keys=False))
    assert load_config(config_path).digest == before.digest


def test_no_secret_is_in_the_document_only_that_a_secret_exists(config_path):
    config = load_config(config_path)
    text = json.dumps(agreed(config))
    for secret in (WEBHOOK_SECRET, TOKEN, "build-secret-value"):
        assert secret not in text
    repository = agreed(config)["repositories"][0]
    assert "secret" not in repository
    assert [secret["name"] for secret in repository["secrets"]] == ["API_KEY"]
    assert "file" not in repository["secrets"][0]
    assert "token" not in agreed(config)["clients"][0]


def test_a_document_that_names_a_file_or_a_hosts_own_setting_is_refused_unread(config_path, tmp_path):
    """A change is checked by every node alike: a key that would make each node read a file of
    its own host (whose text could end up in the refusal) is refused before anything is read."""
    config = load_config(config_path)
    document = agreed(config)
    secret = tmp_path / "not-for-the-ledger"
    secret.write_text("the-contents-of-a-private-file")
    document["nodes"][1] = {key: value for key, value in document["nodes"][1].items() if key != "public_key"}
    document["nodes"][1]["public_key_file"] = str(secret)
    document["data_dir"] = "/srv"
    problem = document_problem(document, config.path.parent)
    assert problem == "data_dir, nodes[1].public_key_file: not a key of a network document"
    assert document_problem(agreed(config), config.path.parent) is None


def test_a_document_written_some_other_way_than_its_complete_form_is_refused(config_path):
    config = load_config(config_path)
    document = agreed(config)
    document["repositories"][0]["url"] = "relative/path"  # each node would resolve it in its own folder
    assert document_problem(document, config.path.parent) == (
        "the document is not in its complete form: write it with scripts/network.py")


def test_the_document_names_whether_votes_are_relayed_whatever_its_node_count(config_path):
    """relay_votes defaults by the node count: a document of four that grows to seven keeps
    meaning what it meant, and stays in its complete form."""
    config = load_config(config_path)
    document = agreed(config)
    assert document["protocol"] == {"relay_votes": False}
    nodes = document["nodes"]
    grown = {**document, "f": 2, "nodes": nodes + [
        {**nodes[0], "id": 4 + index, "port": nodes[0]["port"] + 100 + index,
         "public_key": public_key_hex(generate_private_key())} for index in range(3)]}
    assert document_problem(grown, config.path.parent) is None
    relaying = {**grown, "protocol": {}}  # read with seven nodes, it would relay
    assert document_problem(relaying, config.path.parent) == (
        "the document is not in its complete form: write it with scripts/network.py")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(["f", "nodes", "clients", "repositories", "build", "protocol", "owners", "allow_byzantine"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(KEYS, JSON_VALUES, max_size=4))
def test_any_document_is_answered_with_a_reason_or_none_never_an_exception(config_path, changes):
    config = load_config(config_path)
    problem = document_problem({**agreed(config), **changes}, config.path.parent)
    assert problem is None or (isinstance(problem, str) and problem)
    assert problem is None or "could not be checked" not in problem, problem  # every reading has its own words
