"""`scripts/owner.py local`: a one-machine network's owner key and in-toto layout, kept in place by
scripts/setup.sh, which in-toto's stock verifier accepts with that owner's public key."""

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from client.intoto import bundle, layout, metadata_bytes, sign_layout
from pbft.attestation import Signed, Signer, keyid
from pbft.build import Operation, Result, Spec
from shared.crypto import Ed25519Authenticator, generate_private_key, load_private_key, public_key_hex, save_private_key
from shared.config import load_config
from tests.client.signed_network import IN_TOTO_VERIFY, Network, REPOSITORY_ROOT

RESULT = Result("success", 0, "6c9a1984d4929131a50de697145df0cd4e74068d",
                spec=Spec(".pbft-ci.yml", "ab" * 32, "pbft-ci/busybox:latest"))


def with_layout(net: Network) -> Path:
    """The network's YAML, naming a layout beside its keys as the example's does."""
    data = yaml.safe_load(net.config_path.read_text())
    data["in_toto_layout"] = "keys/network.layout"
    net.config_path.write_text(yaml.safe_dump(data))
    return net.root / "keys" / "network.layout"


def local(net: Network) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/owner.py", "local", "--config", str(net.config_path),
         "--key", str(net.root / "keys" / "owner.key")],
        cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=60)


def test_the_first_run_makes_the_key_and_the_layout_and_the_next_ones_only_look(tmp_path):
    net = Network(tmp_path)
    path = with_layout(net)

    first = local(net)
    assert first.returncode == 0, first.stderr
    assert "step build, functionaries nodes [0, 1, 2, 3], threshold 2" in first.stdout
    owner = load_private_key(tmp_path / "keys" / "owner.key")
    assert (tmp_path / "keys" / "owner.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    written = path.read_bytes()
    assert json.loads(written)["signatures"][0]["keyid"] == keyid(public_key_hex(owner))

    again = local(net)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert path.read_bytes() == written
    assert public_key_hex(load_private_key(tmp_path / "keys" / "owner.key")) == public_key_hex(owner)  # kept


def test_a_layout_of_other_nodes_another_owner_or_near_its_expiry_is_signed_anew(tmp_path):
    net = Network(tmp_path)
    path = with_layout(net)
    assert local(net).returncode == 0
    owner = load_private_key(tmp_path / "keys" / "owner.key")
    config = load_config(net.config_path)

    soon = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=10)
    stranger = generate_private_key()
    for stale in (sign_layout(layout(config, soon), owner),
                  sign_layout(layout(config, soon + timedelta(days=300)), stranger),
                  {"not": "a layout"}):
        path.write_bytes(metadata_bytes(stale))
        done = local(net)
        assert done.returncode == 0 and "up to date" not in done.stdout, done.stdout
        renewed = json.loads(path.read_bytes())
        assert renewed["signatures"][0]["keyid"] == keyid(public_key_hex(owner))
        expires = datetime.strptime(renewed["signed"]["expires"], "%Y-%m-%dT%H:%M:%SZ")
        assert expires > datetime.now() + timedelta(days=300)
    path.unlink()
    assert local(net).returncode == 0 and path.exists()

    # A node's new key: the layout names it once signed anew.
    data = yaml.safe_load(net.config_path.read_text())
    new_key = generate_private_key()
    data["nodes"][2]["public_key"] = public_key_hex(new_key)
    net.config_path.write_text(yaml.safe_dump(data))
    assert "up to date" not in local(net).stdout
    assert keyid(public_key_hex(new_key)) in json.loads(path.read_bytes())["signed"]["keys"]


def test_a_network_without_a_layout_or_an_owner_key_that_is_a_node_s_is_refused(tmp_path):
    net = Network(tmp_path)
    done = local(net)
    assert done.returncode == 1 and "names no in_toto_layout" in done.stderr
    with_layout(net)
    save_private_key(load_private_key(tmp_path / "keys" / "node-1.key"), tmp_path / "keys" / "owner.key")
    done = local(net)
    assert done.returncode == 1 and "the owner key is a node's key" in done.stderr


def test_stock_in_toto_verify_accepts_a_bundle_with_the_layout_and_the_owner_s_public_key(tmp_path):
    net = Network(tmp_path)
    path = with_layout(net)
    assert local(net).returncode == 0
    attestation = Signed(Operation("example", "master"), RESULT)
    signers = []
    for node in (0, 2):
        auth = Ed25519Authenticator(load_private_key(tmp_path / "keys" / f"node-{node}.key"), {}, {})
        signers.append(Signer(node, keyid(net.config.node(node).public_key), auth.sign_bytes(attestation.pae()),
                              auth.sign_bytes(attestation.link_bytes())))
    folder = tmp_path / "bundle"
    folder.mkdir()
    archive = tmp_path / "bundle.tar"
    archive.write_bytes(bundle(attestation, signers, path.read_bytes()))
    subprocess.run(["tar", "xf", str(archive), "-C", str(folder)], check=True)
    done = subprocess.run([str(IN_TOTO_VERIFY), "--layout", "network.layout", "--verification-keys",
                           str(tmp_path / "keys" / "owner.pub")], cwd=folder, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
