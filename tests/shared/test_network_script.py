"""scripts/network.py, as owners and operators run it: `join` makes a node's key once on its own
host, prints its entry and writes its file with the folders the systemd unit lets it write;
`show` and `sign` list what a change does (settings, members with their full keys) and who
signed it, against the document the change replaces, which must have the digest the owners
sign; `document` prints the running document as YAML, and `status` what every node runs."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import yaml
from aiohttp import web

from harness.network import write_network
from pbft.networkchange import document_digest
from shared.config import load_config
from shared.crypto import generate_private_key, load_private_key, public_key_hex, save_private_key
from shared.networkdoc import agreed
from tests.support.node_processes import RealNodes

REPO_ROOT = Path(__file__).resolve().parents[2]
NEW_KEY = public_key_hex(generate_private_key())


def network_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/network.py", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def join(keys_dir: Path, *extra: str) -> tuple[str, dict]:
    done = network_py("join", "--node", "4", "--host", "10.0.0.14", "--port", "9000", "--keys-dir", str(keys_dir),
                      *extra)
    assert done.returncode == 0, done.stderr
    [entry] = yaml.safe_load(done.stdout)
    return done.stdout, entry


def test_join_makes_the_key_once_on_its_own_host_and_prints_the_nodes_entry(tmp_path):
    printed, entry = join(tmp_path / "keys")
    key = tmp_path / "keys" / "node-4.key"
    assert entry == {"id": 4, "host": "10.0.0.14", "port": 9000,
                     "public_key": public_key_hex(load_private_key(key))}
    assert "made now" in printed and key.stat().st_mode & 0o077 == 0
    again, same = join(tmp_path / "keys")
    assert same == entry and "kept" in again
    _, next_entry = join(tmp_path / "keys", "--next")
    assert next_entry["public_key"] != entry["public_key"]
    assert next_entry["public_key"] == public_key_hex(load_private_key(tmp_path / "keys" / "node-4.next.key"))


def test_the_joining_nodes_file_keeps_its_ledger_and_logs_where_the_systemd_unit_lets_it_write(tmp_path):
    network = write_network(tmp_path / "network")
    unit = (REPO_ROOT / "deploy" / "systemd" / "pbft-ci-node@.service").read_text()
    out = tmp_path / "etc" / "network.yaml"
    join(tmp_path / "keys", "--first-from", str(network), "--out", str(out))
    config = load_config(out, node_id=4)
    assert (config.data_dir, config.log_dir) == (Path("/var/lib/pbft-ci"), Path("/var/log/pbft-ci"))
    assert "data_dir:\n# /var/lib/pbft-ci and log_dir: /var/log/pbft-ci" in unit  # what the unit expects
    assert config.keys_dir == (tmp_path / "keys").resolve() and config.digest == load_config(network).digest
    elsewhere = tmp_path / "other" / "network.yaml"
    join(tmp_path / "keys", "--first-from", str(network), "--out", str(elsewhere), "--data-dir", "srv/data",
         "--log-dir", "/srv/log")
    config = load_config(elsewhere, node_id=4)
    assert (config.data_dir, config.log_dir) == (REPO_ROOT / "srv" / "data", Path("/srv/log"))
    again = network_py("join", "--node", "4", "--host", "10.0.0.14", "--port", "9000", "--keys-dir",
                       str(tmp_path / "keys"), "--first-from", str(network), "--out", str(out))
    assert again.returncode == 1 and again.stderr.startswith("refused: ") and "never replaced" in again.stderr


def owned_network(root: Path, **kwargs) -> tuple[Path, dict]:
    """A network of four nodes with owners ada, bob and cy, two of whom sign a change; their
    keys in owners/; and the file's data. `kwargs` as write_network takes them."""
    path = write_network(root, **kwargs)
    data = yaml.safe_load(path.read_text())
    keys = []
    for name in ("ada", "bob", "cy"):
        key = generate_private_key()
        save_private_key(key, root / "owners" / f"{name}.key")
        keys.append({"name": name, "public_key": public_key_hex(key)})
    data["owners"] = {"threshold": 2, "keys": keys}
    path.write_text(yaml.safe_dump(data))
    return path, data


def proposed(root: Path, edit) -> tuple[Path, str]:
    """A change from the network at `root` to its file as `edit` changes it; propose's output."""
    path = root / "network.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    wanted = root / "network-next.yaml"
    wanted.write_text(yaml.safe_dump(data))
    change = root / "change.json"
    done = network_py("propose", "--from", str(path), "--to", str(wanted), "--out", str(change))
    assert done.returncode == 0, done.stderr
    return change, done.stdout


def add_node_and_more_memory(data: dict) -> None:
    data["nodes"].append({"id": 4, "host": "10.0.0.14", "port": 9000, "public_key": NEW_KEY})
    data["build"] = {"memory_mb": 768}


def sign(root: Path, change: Path, owner: str, key_of: str | None = None) -> subprocess.CompletedProcess:
    return network_py("sign", str(change), "--key", str(root / "owners" / f"{key_of or owner}.key"), "--owner", owner)


def test_show_prints_a_new_node_with_its_key_a_changed_setting_and_who_signed(tmp_path):
    _, data = owned_network(tmp_path)
    change, printed = proposed(tmp_path, add_node_and_more_memory)
    wanted = ["build: memory_mb (default) -> 768", f"nodes: adds node 4 at 10.0.0.14:9000 with public key {NEW_KEY}"]
    assert printed.splitlines()[1:3] == wanted
    shown = network_py("show", str(change))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1:] == [*wanted, "signed by no owner yet: 0 of the 2 owners' signatures it needs"]
    signed = sign(tmp_path, change, "ada")
    assert signed.returncode == 0, signed.stderr
    assert "signed by ada: 1 of the 2 owners' signatures it needs" in signed.stdout.splitlines()
    # A key that is not the named owner's is refused before it signs, and the file is kept.
    wrong = sign(tmp_path, change, "bob", key_of="ada")
    assert wrong.returncode == 1 and wrong.stderr.startswith("refused: in the document") and "bob's public key" in \
        wrong.stderr
    assert sign(tmp_path, change, "bob").returncode == 0
    shown = network_py("show", str(change))
    assert shown.stdout.splitlines()[-1] == "signed by ada, bob: 2 of the 2 owners' signatures it needs"
    # What goes to a client is the change alone: its signed fields, never the document it replaces.
    assert set(json.loads(change.read_text())) == {"base", "document", "signatures", "base_document"}
    assert json.loads(change.read_text())["base_document"] == agreed(load_config(tmp_path / "network.yaml"))


def test_show_takes_no_document_it_replaces_but_the_one_whose_digest_the_owners_sign(tmp_path):
    owned_network(tmp_path)
    change, _ = proposed(tmp_path, add_node_and_more_memory)
    data = json.loads(change.read_text())
    data["base_document"]["build"] = {"memory_mb": 768}  # the change would seem to change nodes alone
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(data))
    refused = network_py("show", str(altered))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"refused: {altered}: the document it carries as the one it replaces has the "
                                     "digest ") and "the file was altered" in refused.stderr
    # The document it replaces may come from the file the network runs instead, and only that one.
    assert network_py("show", str(altered), "--from", str(tmp_path / "network.yaml")).returncode == 0
    other = network_py("show", str(altered), "--from", str(tmp_path / "network-next.yaml"))
    assert other.returncode == 1 and "a change already applied, or one made before another" in other.stderr
    del data["base_document"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(data))
    for command in (("show", str(bare)), ("sign", str(bare), "--key", str(tmp_path / "owners" / "ada.key"),
                                          "--owner", "ada")):
        unseen = network_py(*command)
        assert unseen.returncode == 1 and "carries no document it replaces: name it with --from" in unseen.stderr
    assert json.loads(bare.read_text()) == data  # nobody signed what nobody saw


def test_an_owner_key_the_next_document_names_by_file_is_made_with_owner_py(tmp_path):
    owned_network(tmp_path)
    data = yaml.safe_load((tmp_path / "network.yaml").read_text())
    data["owners"]["keys"].append({"name": "dan", "public_key_file": "owners/dan.pub"})
    (tmp_path / "network-next.yaml").write_text(yaml.safe_dump(data))
    refused = network_py("propose", "--from", str(tmp_path / "network.yaml"), "--to",
                         str(tmp_path / "network-next.yaml"), "--out", str(tmp_path / "change.json"))
    assert refused.returncode == 1
    assert "dan.pub does not exist (the owner makes it on their host: scripts/owner.py generate" in refused.stderr
    assert "keygen" not in refused.stderr
    made = subprocess.run([sys.executable, "scripts/owner.py", "generate", "--key",
                           str(tmp_path / "owners" / "dan.key")], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    change, printed = proposed(tmp_path, lambda edited: edited["owners"]["keys"].append(
        {"name": "dan", "public_key_file": "owners/dan.pub"}))
    dan = public_key_hex(load_private_key(tmp_path / "owners" / "dan.key"))
    assert f"owners: adds dan with public key {dan}" in printed.splitlines()


def test_status_and_document_read_every_real_node_and_name_the_one_that_differs(tmp_path):
    path, _ = owned_network(tmp_path, allow_byzantine=True)  # which --instant-builds asks for
    data = yaml.safe_load(path.read_text())
    data["repositories"].append({"name": "other", "url": "/srv/git/other"})
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data))
    nodes = RealNodes(path)
    url = nodes.config.node(0).url("")
    digest = nodes.config.digest
    try:
        for node_id in range(3):
            nodes.start(node_id)
        silent = network_py("status", "--from", url, "--timeout", "2")
        assert silent.returncode == 1, silent.stderr
        lines = silent.stdout.splitlines()
        ports = [node.port for node in nodes.config.nodes]
        for node_id in range(3):
            assert lines[node_id] == (f"node {node_id} (127.0.0.1:{ports[node_id]}): network {digest[:16]}, epoch 0, "
                                      "members 0 1 2 3, f 1, executed 0: runs what the majority runs")
        assert lines[3].startswith(f"node 3 (127.0.0.1:{ports[3]}): no answer (")
        assert lines[4] == f"1 of 4 nodes differ or do not answer; the majority runs network {digest[:16]}, epoch 0, " \
                           "members 0 1 2 3, f 1"
        nodes.start(3, config_path=other)
        differs = network_py("status", "--from", str(path))
        assert differs.returncode == 1
        assert differs.stdout.splitlines()[3].endswith(": differs")
        assert f"network {load_config(other).digest[:16]}" in differs.stdout.splitlines()[3]
        nodes.kill(3)
        nodes.start(3)
        agreeing = network_py("status", "--from", url)
        assert agreeing.returncode == 0, agreeing.stdout
        assert agreeing.stdout.splitlines()[-1] == (f"all 4 nodes run network {digest[:16]}, epoch 0, members "
                                                    "0 1 2 3, f 1")

        printed = network_py("document", "--from", url)
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout.startswith(f"# network document {digest}: the one the node started with\n")
        assert yaml.safe_load(printed.stdout) == agreed(nodes.config)
        first = network_py("document", "--from", url, "--first")
        assert first.stdout.startswith(f"# network document {digest}: the document the node's ledger starts from\n")
    finally:
        nodes.close()


async def test_what_a_node_answers_is_checked_before_a_word_of_it_reaches_the_terminal(aiohttp_server):
    """A faulty node chooses its answers: a document's names are printed escaped, as YAML; a
    status of the wrong shape is no answer; signers that are no owners' names are refused."""
    served: dict = {}

    async def network_document(request: web.Request) -> web.Response:
        return web.json_response(served["document"])

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"network": {"digest": "\x1b[2J" + "0" * 60}, "epoch": 1, "members": [0], "f": 0,
                                  "last_executed": 0})

    app = web.Application()
    app.router.add_get("/network/document", network_document)
    app.router.add_get("/status", status)
    server = await aiohttp_server(app)
    hostile = {"f": 0, "nodes": [{"id": 0, "host": "127.0.0.1", "port": server.port, "public_key": NEW_KEY}],
               "repositories": [{"name": "x\x1b]0;owned\x07", "url": "/srv/git/x"}]}
    served["document"] = {"digest": document_digest(hostile), "changed_at": 3, "signed_by": ["ada"],
                          "document": hostile}
    url = f"http://127.0.0.1:{server.port}"

    async def run(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "scripts/network.py", *args, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, out.decode(), err.decode()

    code, out, err = await run("document", "--from", url)
    assert code == 0, err
    assert out.startswith(f"# network document {document_digest(hostile)}: run from sequence number 3, signed by "
                          "ada\n")
    assert "\x1b" not in out and "\x07" not in out and yaml.safe_load(out) == hostile
    code, out, err = await run("status", "--from", url, "--timeout", "5")
    assert code == 1 and "\x1b" not in out
    assert out.splitlines()[0] == (f"node 0 (127.0.0.1:{server.port}): no answer (answered no status naming its "
                                   "network document)")
    served["document"] = {**served["document"], "signed_by": ["ada\x1b[2J"]}
    code, out, err = await run("document", "--from", url)
    assert (code, out) == (1, "") and "\x1b" not in err
    assert err == f"refused: {url} did not answer with its network document: answered a signed_by that is no " \
                  "list of owners' names\n"
