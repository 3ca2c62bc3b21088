"""in-toto's stock verifier on what pbft-ci emits: the owner's layout and f+1 nodes' links.

The links are signed as the replica signs them (`Authenticator.sign_bytes`
over `pbft.attestation.link_bytes`), the layout by `scripts/owner.py`, the
bundle is the client's (`client.intoto.bundle`), and the verdict is the one
the unmodified `in-toto-verify` command (PyPI in-toto) gives.
"""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from in_toto import verifylib
from in_toto.models.metadata import Metadata
from in_toto.models._signer import load_public_key_from_file

from client.intoto import LAYOUT_FILE, bundle
from pbft.attestation import STATEMENT_FILE, Signed, Signer, keyid, link_file_name
from shared.crypto import Ed25519Authenticator, load_private_key
from pbft.build import Operation, Result, Spec
from tests.client.signed_network import IN_TOTO_VERIFY, Network, REPOSITORY_ROOT

COMMIT = "6c9a1984d4929131a50de697145df0cd4e74068d"
RESULT = Result("success", 0, COMMIT, spec=Spec(".pbft-ci.yml", "ab" * 32, "pbft-ci/busybox:latest"))
OPERATION = Operation("example", "master")


def node_signer(net: Network, node: int, attestation: Signed) -> Signer:
    auth = Ed25519Authenticator(load_private_key(net.keys / f"node-{node}.key"), {}, {})
    return Signer(node, keyid(net.config.node(node).public_key), auth.sign_bytes(attestation.pae()),
                  auth.sign_bytes(attestation.link_bytes()))


def owner_command(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/owner.py", *map(str, args)], cwd=REPOSITORY_ROOT,
                          capture_output=True, text=True, timeout=60)


def owner_layout(net: Network, name: str = "owner") -> tuple[Path, Path]:
    """The owner's ceremony: a key of its own, then the layout signed from the network YAML."""
    key = net.root / f"{name}.key"
    assert owner_command("generate", "--key", key).returncode == 0
    layout = net.root / f"{name}.layout"
    done = owner_command("layout", "--config", net.config_path, "--key", key, "--out", layout)
    assert done.returncode == 0, done.stderr
    return layout, key.with_suffix(".pub")


def unpack(tar_bytes: bytes, folder: Path) -> Path:
    folder.mkdir()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        tar.extractall(folder, filter="data")
    return folder


@pytest.fixture
def net(tmp_path) -> Network:
    return Network(tmp_path)


@pytest.fixture
def folder(net) -> Path:
    """A bundle of nodes 1 and 3's links (f+1 = 2) with the owner's layout, unpacked."""
    layout, _ = owner_layout(net)
    attestation = Signed(OPERATION, RESULT)
    signers = [node_signer(net, node, attestation) for node in (1, 3)]
    return unpack(bundle(attestation, signers, layout.read_bytes()), net.root / "bundle")


def in_toto_verify(folder: Path, public_key: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(IN_TOTO_VERIFY), "--layout", LAYOUT_FILE, "--verification-keys", str(public_key)],
        cwd=folder, capture_output=True, text=True, timeout=60,
    )


def flip(path: Path, before: bytes) -> None:
    """Change one byte of `path`, the one right after `before`: its lowest bit flipped."""
    content = bytearray(path.read_bytes())
    at = content.index(before) + len(before)
    content[at] ^= 1
    path.write_bytes(bytes(content))


def links(folder: Path) -> list[Path]:
    return sorted(folder.glob("build.*.link"))


def test_the_bundle_holds_the_layout_one_link_per_signer_and_the_statement(net, folder):
    names = sorted(path.name for path in folder.iterdir())
    expected = sorted([LAYOUT_FILE, STATEMENT_FILE] + [link_file_name(keyid(net.config.node(i).public_key))
                                                        for i in (1, 3)])
    assert names == expected
    assert (folder / STATEMENT_FILE).read_bytes() == Signed(OPERATION, RESULT).payload


def test_stock_in_toto_verify_accepts_a_good_verdict(net, folder):
    done = in_toto_verify(folder, net.root / "owner.pub")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("target, before", [
    ("link", b'"gitCommit":"'),  # the material: another commit
    ("link", b'"sha256":"'),  # the product: another statement
    ("link", b'"return-value":'),  # a byproduct: signed all the same
    ("link", b'"sig":"'),  # the signature itself
    ("layout", b'"threshold":'),
    ("layout", b'"expires":"'),
    ("layout", b'"sig":"'),
    ("statement", b'"result":"'),  # the statement a verifier reads: no longer the one the links name
])
def test_stock_in_toto_verify_refuses_after_one_changed_byte(net, folder, target, before):
    path = {"link": links(folder)[0], "layout": folder / LAYOUT_FILE, "statement": folder / STATEMENT_FILE}[target]
    flip(path, before)
    done = in_toto_verify(folder, net.root / "owner.pub")
    assert done.returncode == 1, done.stdout + done.stderr


def test_stock_in_toto_verify_refuses_f_signers(net, folder):
    links(folder)[1].unlink()
    done = in_toto_verify(folder, net.root / "owner.pub")
    assert done.returncode == 1
    assert "requires '2' link metadata file(s), found '1'" in done.stderr


def test_stock_in_toto_verify_refuses_a_link_of_a_node_that_is_not_a_functionary(net, folder, tmp_path):
    """A link signed with another key under a node's file name counts for nothing."""
    stranger = Network(tmp_path / "stranger")
    attestation = Signed(OPERATION, RESULT)
    forged = node_signer(stranger, 1, attestation)
    victim = links(folder)[0]
    signed = json.loads(victim.read_bytes())
    signed["signatures"][0]["sig"] = forged.link_sig
    victim.write_text(json.dumps(signed, sort_keys=True, separators=(",", ":")))
    assert in_toto_verify(folder, net.root / "owner.pub").returncode == 1


def test_stock_in_toto_verify_refuses_a_layout_another_key_signed(net, folder):
    _, other_public = owner_layout(net, "impostor")
    assert in_toto_verify(folder, other_public).returncode == 1


def ignored_by_in_toto(layout: bytes) -> set[int]:
    """The bytes of the layout that in-toto does not read: a step's and an inspection's `_type`,
    which it takes as constants ("step", "inspection") whatever the file says, and signs as such."""
    ignored = set()
    for entry in (b'"_type":"step"', b'"_type":"inspection"'):
        at = layout.index(entry)
        ignored |= set(range(at, at + len(entry)))
    return ignored


def test_every_single_byte_change_of_a_link_or_the_layout_is_refused(net, folder):
    """Exhaustively, in one process (in-toto-verify's own code, without a process per byte):
    each byte of one link and of the layout, its lowest bit flipped. Only the layout's
    step and inspection `_type`s, which in-toto reads as constants, are not covered."""
    key = load_public_key_from_file(str(net.root / "owner.pub"))

    def verifies() -> bool:
        try:
            verifylib.in_toto_verify(Metadata.load(str(folder / LAYOUT_FILE)), {key["keyid"]: key}, str(folder),
                                     persist_inspection_links=False)
        except Exception:  # noqa: BLE001 - any refusal counts, whatever in-toto raises
            return False
        return True

    cwd = os.getcwd()
    os.chdir(folder)  # the inspection records the folder it runs in
    try:
        assert verifies()
        for path in (links(folder)[0], folder / LAYOUT_FILE):
            original = path.read_bytes()
            accepted = set()
            for at in range(len(original)):
                changed = bytearray(original)
                changed[at] ^= 1
                path.write_bytes(bytes(changed))
                if verifies():
                    accepted.add(at)
            path.write_bytes(original)
            allowed = ignored_by_in_toto(original) if path.name == LAYOUT_FILE else set()
            assert accepted <= allowed, f"{path.name}: accepted with bytes {sorted(accepted - allowed)[:5]} changed"
    finally:
        os.chdir(cwd)


def test_the_owner_key_is_never_replaced_and_never_a_nodes(net):
    key = net.root / "owner.key"
    assert owner_command("generate", "--key", key).returncode == 0
    again = owner_command("generate", "--key", key)
    assert again.returncode == 1 and "never replaced" in again.stderr
    shown = owner_command("show", "--key", key)
    assert shown.returncode == 0 and (net.root / "owner.pub").read_text() in shown.stdout
    node_key = net.keys / "node-0.key"
    refused = owner_command("layout", "--config", net.config_path, "--key", node_key, "--out", net.root / "x.layout")
    assert refused.returncode == 1 and "the owner key is a node's key" in refused.stderr
    assert not (net.root / "x.layout").exists()


def test_the_layout_names_every_node_with_threshold_f_plus_1(net):
    layout_path, _ = owner_layout(net)
    layout = json.loads(layout_path.read_bytes())["signed"]
    (step,) = layout["steps"]
    node_keyids = {keyid(node.public_key) for node in net.config.nodes}
    assert (step["name"], step["threshold"], set(step["pubkeys"])) == ("build", 2, node_keyids)
    assert set(layout["keys"]) == node_keyids
