"""End to end: the example network's in-toto bundle works out of the box, as the README says.

The set-up signs the example network's layout with an owner key it makes
beside the node keys (`scripts/owner.py local`, which scripts/setup.sh runs
for the example); the README's network and client answer
`GET /builds/<id>/in-toto` with a tar that `tar x` unpacks and the stock
`in-toto-verify` accepts with the owner's public key.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from harness.scripts import client
from pbft.attestation import STATEMENT_FILE
from shared.config import load_config
from tests.e2e.example_network import E2E_MARKS, EXAMPLE_CONFIG, REPO_ROOT, webhook

pytestmark = E2E_MARKS
IN_TOTO_VERIFY = Path(sys.executable).parent / "in-toto-verify"
OWNER_KEY = EXAMPLE_CONFIG.parent / "keys" / "owner.key"


def the_set_up_s_layout_step() -> None:
    """The command scripts/setup.sh runs for the example network, as it runs it."""
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    assert "scripts/owner.py local --config example-config/network.yaml" in setup
    done = subprocess.run(
        [sys.executable, "scripts/owner.py", "local", "--config", "example-config/network.yaml",
         "--key", "example-config/keys/owner.key"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_example_network_s_in_toto_bundle_untars_and_verifies(network, tmp_path):
    the_set_up_s_layout_step()
    config = load_config(EXAMPLE_CONFIG)
    assert config.in_toto_layout is not None and config.in_toto_layout.exists()
    network()

    with client(config, tmp_path / "client.out") as base_url:
        master = webhook(base_url, config, "master")
        with urllib.request.urlopen(f"{base_url}/builds/{master['build_id']}/in-toto", timeout=60) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "application/x-tar"
            tar_bytes = response.read()

    folder = tmp_path / "bundle"
    folder.mkdir()
    untarred = subprocess.run(["tar", "x"], input=tar_bytes, cwd=folder, capture_output=True, timeout=60)
    assert untarred.returncode == 0, untarred.stderr
    assert (folder / "network.layout").exists() and (folder / STATEMENT_FILE).exists()
    assert len(list(folder.glob("build.*.link"))) == config.f + 1
    verified = subprocess.run(
        [str(IN_TOTO_VERIFY), "--layout", "network.layout", "--verification-keys", str(OWNER_KEY.with_suffix(".pub"))],
        cwd=folder, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
