"""End to end: a spec written with `x-` anchors, `extends:` templates and an `include:`d file, on
four real nodes and the client. Every node builds it exactly as it builds the same spec written
out (their logs' lines compared, node by node and form by form), `pbft-ci lint` expands and
checks it in the checkout as the nodes do, and refuses an include cycle and an include outside
the checkout in one line each."""

from __future__ import annotations

import difflib
import subprocess

from harness.scripts import client
from shared.config import load_config
from tests.builder.reuse_specs import INCLUDED, TEMPLATES, WITH_REUSE, WRITTEN_OUT, comparable
from tests.e2e.example_network import OWN_NETWORK_MARKS, REPO_ROOT, finished_log
from tests.e2e.runner_helpers import build, forge_commit, forge_network, git

pytestmark = OWN_NETWORK_MARKS

LINT = REPO_ROOT / ".venv" / "bin" / "pbft-ci"


def lint(folder, *paths: str) -> tuple[int, str]:
    done = subprocess.run([str(LINT), "lint", *paths], cwd=folder, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout


def test_a_reused_spec_builds_on_every_node_as_its_written_out_form_and_lint_reads_it_alike(scratch, network):
    forge = scratch / "forge"
    written = forge_commit(forge, {".pbft-ci.yml": WRITTEN_OUT}, "written out", branch="written")
    git(forge, "rm", "-q", ".pbft-ci.yml")
    (forge / "ci").mkdir()
    reused = forge_commit(forge, {"ci/templates.yml": INCLUDED, ".pbft-ci.yml": TEMPLATES + WITH_REUSE}, "reused",
                          branch="reused")
    assert lint(forge) == (0, ".pbft-ci.yml: ok\n")
    (forge / "cycle.yml").write_text("include: [ci/loop.yml]\ncommands: [make]\n")
    (forge / "ci" / "loop.yml").write_text("include: [ci/loop.yml]\n")
    (forge / "outside.yml").write_text("include: ['../secrets.yml']\ncommands: [make]\n")
    code, said = lint(forge, "cycle.yml", "outside.yml")
    assert code == 1 and said.splitlines() == [
        "cycle.yml: refused",
        ".pbft-ci.yml: include: the files include each other in a circle: ci/loop.yml -> ci/loop.yml",
        "outside.yml: refused",
        ".pbft-ci.yml: include[0]: '../secrets.yml' must be relative to the repository's root, with no . or .. "
        "part",
    ], said
    config_path = forge_network(scratch, forge)
    network(str(config_path))
    config = load_config(config_path)

    with client(config, scratch / "client.out", str(config_path)) as base_url:
        verdicts = {form: build(base_url, form, head) for form, head in (("reused", reused), ("written", written))}
        assert [verdict["status"] for verdict in verdicts.values()] == ["success", "success"], verdicts
        logs = {(form, node.id): comparable(finished_log(base_url, verdict["build_id"], node.id))
                for form, verdict in verdicts.items() for node in config.nodes}
    first = logs[("reused", 0)]
    assert "one base from-anchor included" in first and "two two from-template included" in first, first
    differing = {key: "\n".join(difflib.unified_diff(first, log, "reused on node 0", f"{key[0]} on node {key[1]}",
                                                    lineterm=""))
                 for key, log in logs.items() if log != first}
    assert not differing, "\n".join(differing.values())
