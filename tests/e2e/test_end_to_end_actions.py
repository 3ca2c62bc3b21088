"""End to end: a spec's `after:` deploy action on four real nodes, the client and the action
runner (runner/index.py). It runs exactly once per certified success on master, with the
build's agreed artifact and the runner's own secret; never for a failure, another branch, or
a certificate with one flipped signature; the client records its outcome as the runner's,
signed with the runner's key the example's setup made; and the secret reaches no node: not
their logs, ledgers, build containers' settings or attestations."""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import yaml

from harness.scripts import client
from harness.verdicts import http_json
from shared.actionreport import ActionReport
from shared.config import load_config
from shared.crypto import parse_public_key
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy
from tests.e2e.runner_helpers import build, git, run_runner

pytestmark = OWN_NETWORK_MARKS

SECRET = "deploy-secret-7f3a9c21"
SPEC = """commands:
  - mkdir -p out
  - echo "built $CI_COMMIT_SHA" > out/app.txt
  - test ! -f fail
artifacts:
  - out/app.txt
after:
  - name: deploy
    commands:
      - echo "deploying $CI_COMMIT_SHA with $DEPLOY_TOKEN"
      - printf '%s' "$DEPLOY_TOKEN" | base64
      - cat artifacts/out/app.txt
    when: {branch: master}
    secrets: [DEPLOY_TOKEN]
"""


def commit(repository: Path, branch: str, *, fails: bool) -> str:
    git(repository, "checkout", "-q", "-B", branch)
    marker = repository / "fail"
    if fails:
        marker.write_text("this commit's build fails\n")
    else:
        marker.unlink(missing_ok=True)
    (repository / "change").write_text(f"{branch} {fails} {len(git(repository, 'log', '--oneline', '--all'))}\n")
    git(repository, "add", "-A")
    git(repository, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", f"{branch} fails={fails}")
    return git(repository, "rev-parse", "HEAD")


class TamperingProxy(ThreadingHTTPServer):
    """Forwards GETs to the client; the certificate of a build in `tamper` gets one flipped signature."""

    def __init__(self, upstream: str) -> None:
        self.tamper: set[str] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with urllib.request.urlopen(upstream + self.path, timeout=60) as answer:
                    status, body = answer.status, answer.read()
                parts = self.path.strip("/").split("/")
                if parts[-1] == "certificate" and parts[1] in proxy.tamper:
                    certificate = json.loads(body)
                    sig = certificate["replies"][0]["sig"]
                    certificate["replies"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
                    body = json.dumps(certificate).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = urllib.request.Request(upstream + self.path, data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as answer:
                    status, body = answer.status, answer.read()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_a_deploy_action_runs_once_per_certified_success_on_master_with_a_secret_no_node_sees(scratch, network):
    forge = scratch / "forge"
    forge.mkdir()
    git(forge, "init", "-q", "-b", "master")
    (forge / ".pbft-ci.yml").write_text(SPEC)
    config_path = example_copy(scratch, allow_byzantine=False, repositories=[{"name": "deployed", "url": str(forge)}])
    heads = {"failing": commit(forge, "master", fails=True)}
    heads["feature"] = commit(forge, "feature", fails=False)
    git(forge, "checkout", "-q", "master")
    network(str(config_path))
    config = load_config(config_path)

    with client(config, scratch / "client.out", str(config_path)) as base_url:
        proxy = TamperingProxy(base_url)
        (scratch / "deploy-token").write_text(SECRET + "\n")
        runner_path = scratch / "runner.yaml"
        runner_path.write_text(yaml.safe_dump({
            # Its key is the example's (keys_dir/runner-runner.key), which the example's client lists.
            "network": str(config_path), "name": "runner", "client_url": proxy.url, "data_dir": str(scratch / "runner"),
            "network_mode": "none", "repositories": {"deployed": {"secrets": {"DEPLOY_TOKEN": "deploy-token"}}},
        }))
        try:
            run_runner(runner_path)  # its first start: what came before is history
            failed = build(base_url, "master", heads["failing"])
            feature = build(base_url, "feature", heads["feature"])
            heads["master"] = commit(forge, "master", fails=False)
            passed = build(base_url, "master", heads["master"])
            forged = build(base_url, "master", heads["master"])  # the same commit again, certificate tampered with
            proxy.tamper.add(forged["build_id"])
            assert [answer["status"] for answer in (failed, feature, passed, forged)] == [
                "failure", "success", "success", "success"]

            first = run_runner(runner_path)
            again = run_runner(runner_path)
        finally:
            proxy.shutdown()
            proxy.server_close()

        assert f"build {failed['build_id']}: no action of the spec is for this verdict" in first, first
        assert f"build {feature['build_id']}: no action of the spec is for this verdict" in first, first
        assert f"build {passed['build_id']}: ran deploy success" in first, first
        assert f"build {forged['build_id']}: refused: the certificate does not check" in first, first
        assert "ran deploy" not in again, again  # every build was examined once

        log = (scratch / "runner" / "logs" / f"{passed['build_id']}-deploy.log").read_text()
        assert f"deploying {heads['master']} with [secret DEPLOY_TOKEN]" in log, log
        assert f"built {heads['master']}" in log, log  # the agreed artifact, checked, in its workspace
        assert SECRET not in log and base64.b64encode(SECRET.encode()).decode() not in log
        assert not (scratch / "runner" / "logs" / f"{forged['build_id']}-deploy.log").exists()

        record = http_json("GET", f"{base_url}/builds/{passed['build_id']}")[1]
        assert [(action["name"], action["state"], action["exit_code"], action["runner"])
                for action in record["actions"]] == [("deploy", "success", 0, "runner")], record
        (deployed,) = record["actions"]
        report = ActionReport(int(passed["build_id"]), "deploy", "success", 0, deployed["reason"], "runner",
                              deployed["stamp_us"])
        runner_key = config.client("client").runner("runner").public_key
        assert report.verifies(parse_public_key(runner_key), deployed["sig"])  # checkable later, offline
        assert http_json("GET", f"{base_url}/builds/{failed['build_id']}")[1]["actions"] == []

    engine = docker.from_env()
    try:  # the runner left nothing on its engine
        made = [*engine.containers.list(all=True, filters={"label": "pbft-ci.runner"}),
                *engine.volumes.list(filters={"label": "pbft-ci.runner"})]
        labels = [item.labels if hasattr(item, "labels") else item.attrs["Labels"] for item in made]
        assert not [label for label in labels if label["pbft-ci.runner"].startswith(str(scratch))], labels
    finally:
        engine.close()
    # The secret lives on the runner alone: no node's data, ledger, build log or process log holds it.
    for path in [*(scratch / "data").rglob("*"), *config.log_dir.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
