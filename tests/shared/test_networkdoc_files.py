"""A network whose configuration names host files takes an owner-signed change (shared/networkdoc.py).

A network document holds none of a host's own settings: a notification webhook's secret, a
forge's secret and status token, each node's status token, a build secret's file, the
client's token, mail server and sign-in, registry credentials, TLS files, folders. A change is
checked with each of them standing in, whatever a section needs of it, so owners can change
any network the nodes run; a problem with the document's own settings is still said. Each
kind of file setting the schema has is one case (tests/support/file_settings.py), and a
setting added without one fails `test_every_file_setting_of_the_schema_has_a_case`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.network import write_network
from pbft.encoding import canonical
from pbft.networkchange import NetworkChange, OwnerSignature, document_digest
from pbft.networks import NetworkState
from shared.config import ConfigError, NetworkConfig, load_config
from shared.config_files import OwnerKeyFile, PublicKeyFile
from shared.crypto import generate_private_key, parse_public_key, public_key_hex, sign_bytes, verify_bytes
from shared.networkdoc import agreed, document_problem, with_document
from shared.schema import FilePath, Inline, schema_of
from tests.shared.config_files import edit
from tests.support.file_settings import (
    CASES, SECRET_TEXT, WEBHOOK, mail_server, node_statuses, notify_webhook, secret_file, with_owner,
)

OWNER = generate_private_key()


def file_settings(cls: type = NetworkConfig, under_local: bool = False, found: dict | None = None) -> dict:
    """Every setting the configuration's schema has that names a file or folder of a host (a
    path, a key of the form `<key>_file`, a value kept in `<key>_file`), as "Section.key", with
    whether it is a host's own (itself, or the section it is in)."""
    found = {} if found is None else found
    for declared in schema_of(cls).settings:
        local = under_local or declared.setting.local
        kind = declared.kind
        inner = getattr(kind, "cls", None) or getattr(getattr(kind, "item", None), "cls", None)
        if isinstance(kind, FilePath) or declared.key.endswith("_file"):
            found[f"{cls.__name__}.{declared.key}"] = (declared, local)
        if declared.file_key:
            found[f"{cls.__name__}.{declared.file_key}"] = (declared, local)
        if inner is not None and (isinstance(kind, Inline) or inner is not cls):
            file_settings(inner, local, found)
    return found


def test_every_file_setting_of_the_schema_has_a_case():
    covered = set().union(*(settings for settings, _ in CASES.values()))
    assert covered == set(file_settings())


def test_every_file_setting_is_a_hosts_own_or_a_public_key_the_document_holds_by_value():
    """A setting that names a file stands in when a document is checked because it is a host's
    own; the only others are public keys, whose value the document holds (a `<key>_file` in a
    document is refused unread)."""
    for name, (declared, local) in file_settings().items():
        assert local or isinstance(declared.setting.file, (PublicKeyFile, OwnerKeyFile)), name


def owned_network(tmp_path: Path) -> Path:
    return edit(write_network(tmp_path), lambda data: with_owner(data, "ada", OWNER))


def signed_change(base: dict, document: dict) -> NetworkChange:
    unsigned = NetworkChange(document_digest(base), canonical(document).decode())
    signature = sign_bytes(OWNER, canonical(unsigned.signed_payload()))
    return replace(unsigned, signatures=(OwnerSignature("ada", signature),))


def verify(public_key: str, payload: dict, sig: str) -> bool:
    return verify_bytes(parse_public_key(public_key), canonical(payload), sig)


def owners_answer(document: dict, new: dict, folder: Path) -> str | None:
    """What every node answers an owner-signed change from `document` to `new` (pbft.networks)."""
    state = NetworkState(document, document_digest(document))
    return state.problem(signed_change(document, new), verify, lambda checked: document_problem(checked, folder),
                         membership=True)


def with_build(document: dict, **build) -> dict:
    return {**document, "build": {**document.get("build", {}), **build}}


@pytest.mark.parametrize("give", [give for _, give in CASES.values()], ids=list(CASES))
def test_a_network_with_the_setting_takes_an_owner_signed_change_and_a_real_problem_is_still_said(tmp_path, give):
    path = edit(owned_network(tmp_path), lambda data: give(data, tmp_path))
    load_config(path)  # the case is a configuration the client runs, its files read
    config = load_config(path, read_secrets=False)  # as the nodes and scripts/network.py read it
    document = agreed(config)
    assert SECRET_TEXT not in canonical(document).decode()
    assert document_problem(document, tmp_path) is None
    assert owners_answer(document, with_build(document, memory_mb=512), tmp_path) is None
    assert owners_answer(document, with_build(document, memory_mb=0), tmp_path) == "build.memory_mb: must be at least 1"


def test_a_rule_about_the_documents_own_settings_is_still_said_beside_a_hosts_own_standing_in(tmp_path):
    path = edit(owned_network(tmp_path), lambda data: (notify_webhook(data, tmp_path), node_statuses(data, tmp_path)))
    document = agreed(load_config(path, read_secrets=False))
    repository = dict(document["repositories"][0])
    del repository["status_api"]
    repository["notify"] = [{"webhook": "ftp://hooks.example.org/ci"}, {"webhook": WEBHOOK, "email": ["a@example.org"]}]
    assert owners_answer(document, {**document, "repositories": [repository]}, tmp_path) == "; ".join([
        "repositories[0].notify[0].webhook: is not a valid http(s) URL: 'ftp://hooks.example.org/ci'",
        "repositories[0].notify[1]: has both webhook and email: make them two entries",
        "repositories[0].node_statuses: needs status_api: each node posts its own status to the forge's statuses "
        "API for the repository's full_name",
    ])


def test_owners_add_and_remove_what_needs_a_hosts_own_file_remove_a_node_and_rotate_a_key(tmp_path):
    """A network with a webhook takes a change that adds a repository with a webhook, an e-mail
    target, node statuses and a build secret; one that removes the webhook; one that removes a
    node; and one that replaces a node's key."""
    path = edit(owned_network(tmp_path), lambda data: notify_webhook(data, tmp_path))
    document = agreed(load_config(path, read_secrets=False))
    added = {"name": "more", "url": "https://git.example.org/more.git", "full_name": "team/more",
             "status_api": "https://api.github.com", "node_statuses": True,
             "notify": [{"webhook": "https://hooks.example.org/more"}, {"email": ["team@example.org"]}],
             "secrets": [{"name": "API_KEY"}]}
    assert owners_answer(document, {**document, "repositories": [*document["repositories"], added]}, tmp_path) is None
    repository = {key: value for key, value in document["repositories"][0].items() if key != "notify"}
    without_webhook = {**document, "repositories": [repository]}
    assert owners_answer(document, without_webhook, tmp_path) is None
    assert owners_answer(document, {**document, "f": 0, "nodes": document["nodes"][:3]}, tmp_path) is None
    nodes = [*document["nodes"]]
    nodes[3] = {**nodes[3], "public_key": public_key_hex(generate_private_key())}
    assert owners_answer(document, {**document, "nodes": nodes}, tmp_path) is None


def test_a_node_runs_a_change_that_adds_a_webhook_and_an_e_mail_target_its_file_has_no_secret_or_mail_server_for(
        tmp_path):
    """A node reads none of the client's secrets and sends no notification: what the client
    needs for a new webhook or e-mail target, the node's file need not give. The client's
    file must: it says what it lacks, its secret's text never in the words."""
    path = edit(owned_network(tmp_path), lambda data: notify_webhook(data, tmp_path))
    config = load_config(path)
    document = agreed(config)
    added = {"name": "more", "url": "https://git.example.org/more.git",
             "notify": [{"webhook": "https://hooks.example.org/more"}, {"email": ["team@example.org"]}]}
    new = {**document, "repositories": [*document["repositories"], added]}
    on_a_node = with_document(load_config(path, read_secrets=False), new, read_secrets=False)
    assert on_a_node.digest == document_digest(new)
    assert on_a_node.repository("more").notify[0].secret == ""
    with pytest.raises(ConfigError) as lacking:
        with_document(config, new, read_secrets=True)
    assert SECRET_TEXT not in str(lacking.value)
    assert lacking.value.problems == [
        "repositories[1].notify[0].secret_file: is required for a webhook: its receiver checks the signature with it",
        "repositories[1].notify[1].email: needs an smtp section (host, from) in clients[0] ('client') to send it "
        "through",
    ]


def test_each_webhook_keeps_its_own_secret_when_another_is_removed_before_it(tmp_path):
    """The client's file gives each webhook's secret by the webhook's URL, not by its place."""
    (tmp_path / "second.secret").write_text("the-second-webhooks-own-secret-" * 2)

    def two_webhooks(data: dict) -> None:
        mail_server(data, tmp_path)  # and an e-mail target, which a webhook's secret must not go to
        data["repositories"][0]["notify"] = [
            {"webhook": WEBHOOK, "secret_file": secret_file(tmp_path, "hook.secret")}, {"email": "team@example.org"},
            {"webhook": "https://hooks.example.org/second", "secret_file": "second.secret"}]

    path = edit(owned_network(tmp_path), two_webhooks)
    config = load_config(path)
    document = agreed(config)
    repository = document["repositories"][0]
    kept = {**document, "repositories": [{**repository, "notify": repository["notify"][1:]}]}
    assert owners_answer(document, kept, tmp_path) is None
    [email, second] = with_document(config, kept, read_secrets=True).repository("example").notify
    assert email.email == ("team@example.org",) and email.secret == ""
    assert second.webhook == "https://hooks.example.org/second"
    assert second.secret == "the-second-webhooks-own-secret-" * 2
