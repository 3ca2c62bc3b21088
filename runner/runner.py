"""The action runner: runs a spec's `after:` actions once per certified verdict.

It follows the client's build records, and for each build with a verdict
that it has not examined:

1. takes the build's certificate from the client and checks it against the
   network's public keys alone (client/certificate.py): the client's
   signature on the request and f+1 nodes' signatures on one result. A
   certificate that does not check (one flipped signature) runs nothing;
2. reads the spec at the certified commit from its own mirror of the
   repository and checks its sha256 against the certified one, so it runs
   the `after:` section the nodes agreed was in it (builder/plan/actions.py);
3. picks the actions whose `status:` and `when:` admit the verdict;
4. fetches the build's artifacts from the client and checks them against
   the certified manifest digest, then each file against the manifest;
5. runs each action in a container on its own engine, with the commit's
   files and the artifacts in /workspace and the secrets the action lists
   (from the runner's configuration, never a node's) in its environment;
6. records the outcome (runner/ledger.py) and reports it to the client,
   signed with the runner's own key (shared/actionreport.py): the client
   takes a report from no one else, and shows it with the build.

An action that deploys to an environment whose approval is required waits
instead, and runs at a later poll once an approval was ordered
(runner/approvals.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from client.certificate import CertificateError, check_certificate, parse_certificate
from builder import (
    SPEC_FILE,
    ActionSpec,
    ContainerJob,
    GitError,
    GitMirrors,
    Hooks,
    Identities,
    Sandbox,
    SandboxError,
    Script,
    parse_actions,
    run_container,
    spec_document,
)
from pbft.attestation import is_manifest_entry, manifest_digest
from pbft.messages import Request, decode
from runner.approvals import (
    APPROVAL_WINDOW_S, APPROVALS_ASKED, CHECKED_PER_POLL, NotApproved, approver, environment_refusal, needs_approval,
)
from runner.config import RunnerConfig, RunnerConfigError
from runner.ledger import RunnerLedger
from runner.maskedlog import MaskedLog
from shared.actionreport import MAX_REASON_CHARS, ActionReport

log = logging.getLogger(__name__)

# Builds read from the client per poll, the newest first: more than a burst of pushes between polls.
BUILDS_PER_POLL = 200
MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=300)


def pull_request_refusal(operation) -> str | None:
    """Why a build runs no action at all, or None: a pull request's `after:` is in the spec its
    author wrote, and the runner is where the deploy secrets and network are. The checkout
    (`pull_ref`) says so, whatever event the request names."""
    if operation.pull_ref is None:
        return None
    return "no actions: a pull request's build runs none (its after: section is its author's)"


def _json_object(body: bytes) -> dict:
    """The JSON object the client answered, or an empty one: the client is not trusted, and an
    answer that is no object (or nests past json.loads' recursion) must not end the runner."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


class Refused(Exception):
    """Nothing of this build runs; the reason is recorded."""


class NotNow(Exception):
    """The client could not answer now (down, or a 5xx): the build is examined again at the next poll."""


@dataclass(frozen=True)
class Certified:
    """What a checked certificate says, as far as actions need it."""

    build_id: int
    request: Request
    result: dict

    @property
    def status(self) -> str:
        return self.result["status"]


class ActionRunner:
    def __init__(self, config: RunnerConfig, session: aiohttp.ClientSession, ledger: RunnerLedger, docker_client):
        self._config = config
        self._session = session
        self._ledger = ledger
        self._docker = docker_client
        self._mirrors = GitMirrors(config.data_dir / "mirrors")
        self._logs = config.data_dir / "logs"
        self._labels = {"pbft-ci.runner": str(config.data_dir)}
        self._identities = Identities(self._labels)
        self._urls = {repository.name: repository.url for repository in config.network.repositories}

    def close(self) -> None:
        """Remove what the runner keeps on its engine between actions (the build user's files)."""
        self._identities.remove_all(self._docker)

    def _headers(self) -> dict[str, str]:
        token = self._config.client_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _get(self, path: str) -> tuple[int, bytes]:
        """The client's answer to GET `path`; NotNow when it cannot answer now."""
        try:
            async with self._session.get(self._config.client_url + path, headers=self._headers(),
                                         timeout=_HTTP_TIMEOUT) as response:
                body = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise NotNow(f"client unreachable at {self._config.client_url}: {error}") from None
        if response.status >= 500:
            raise NotNow(f"GET {path} answered {response.status}")
        return response.status, body

    async def start(self) -> None:
        """Say what a previous run left half done, and start after the builds already recorded
        when the runner first starts: it acts on verdicts to come, not on history."""
        for build_id, name in self._ledger.interrupt_running():
            log.warning("action %s of build %d was running when the runner stopped: marked interrupted", name, build_id)
            await self._report(build_id, name, "interrupted", None, "the runner stopped while it ran")
        if self._ledger.floor() is None:
            builds = await self._builds()
            floor = max((int(build["build_id"]) for build in builds), default=0)
            self._ledger.set_floor(floor)
            log.info("first start: acting on builds after %d", floor)

    async def run_forever(self) -> None:
        started = False
        while True:
            try:
                if not started:
                    await self.start()
                    started = True
                await self.poll()
            except NotNow as error:
                log.warning("%s; trying again in %g s", error, self._config.poll_s)
            await asyncio.sleep(self._config.poll_s)

    async def _builds(self) -> list[dict]:
        status, body = await self._get(f"/builds?limit={BUILDS_PER_POLL}")
        if status != 200:
            raise NotNow(f"GET /builds answered {status}: {body[:200]!r}")
        builds = _json_object(body).get("builds")
        if not isinstance(builds, list) or not all(isinstance(build, dict) and isinstance(build.get("build_id"), str)
                                                   and isinstance(build.get("state"), str) for build in builds):
            raise NotNow(f"GET /builds answered no list of builds: {body[:200]!r}")
        return builds

    async def poll(self) -> list[tuple[int, str]]:
        """Examine every build with a verdict not examined yet, oldest first; return what each came to.
        NotNow if the client cannot answer: what was examined so far stays examined."""
        floor = self._ledger.floor() or 0
        done = []
        for build in sorted(await self._builds(), key=lambda build: int(build["build_id"])):
            build_id = int(build["build_id"])
            if build_id <= floor or build["state"] == "pending" or self._ledger.examined(build_id):
                continue
            done.append((build_id, await self.examine(build_id, build["state"])))
        return done + await self.poll_waiting()

    async def poll_waiting(self) -> list[tuple[int, str]]:
        """Ask about deploys that wait for an approval, a few a poll: run each one approved, end
        each one out of time; return what each came to."""
        done = []
        now = time.time()
        for waiting in self._ledger.waiting(CHECKED_PER_POLL, now):
            build_id, name, environment = waiting["build_id"], waiting["name"], waiting["environment"]
            if now - waiting["since"] > APPROVAL_WINDOW_S:
                done.append((build_id, await self._no_approval(
                    build_id, name, environment, f"no approval to deploy to {environment}"
                                                 f" within {APPROVAL_WINDOW_S / 86400:g} days")))
                continue
            outcome = await self._approved(build_id, name)
            if outcome is not None:
                done.append((build_id, outcome))
        return done

    async def _no_approval(self, build_id: int, name: str, environment: str, reason: str) -> str:
        self._ledger.done_waiting(build_id, name)
        if self._ledger.start(build_id, name):
            await self._end_in_error(build_id, name, reason, environment=environment)
        log.info("build %d: action %s: %s", build_id, name, reason)
        return f"{name} error"

    async def _end_in_error(self, build_id: int, name: str, reason: str, **said: str | None) -> None:
        """End an action this runner started in its ledger as an `error`, and report why."""
        self._ledger.finish(build_id, name, "error", None, reason)
        await self._report(build_id, name, "error", None, reason, **said)

    async def _approved(self, build_id: int, name: str) -> str | None:
        """Run action `name` of build `build_id` if an approval of it was ordered; None while none was."""
        status, body = await self._get(f"/builds/{build_id}")
        if status != 200:
            return None
        actions = _json_object(body).get("actions")
        approvals = [each for action in (actions if isinstance(actions, list) else [])
                     if isinstance(action, dict) and action.get("name") == name
                     for each in (action.get("approvals") or []) if isinstance(each, dict)]
        if not approvals:
            return None
        # The client lists a few (client.tables.actions); one that lists more is not asked about them all.
        approvals = approvals[:APPROVALS_ASKED]
        try:
            certified = await self._certified(build_id)
            (action,) = [action for action in await self._actions(certified) if action.name == name]
        except (Refused, ValueError) as refusal:  # ValueError: the action no longer runs for this verdict
            return await self._no_approval(build_id, name, "", f"refused: {refusal}")
        for approval in approvals:
            try:
                approval_id = int(approval.get("approval_id"))
                checked = await self._certified(approval_id)
                who = approver(build_id, certified.request.client, action, checked.request, checked.status)
            except (Refused, NotApproved, TypeError, ValueError) as refusal:
                log.warning("build %d: approval %s of action %s does not count: %s", build_id,
                            approval.get("approval_id"), name, refusal)
                continue
            self._ledger.done_waiting(build_id, name)
            log.info("build %d: action %s deploys to %s, approved by %s (approval %d)", build_id, name,
                     action.environment, who, approval_id)
            return await self._run_all(certified, [action], approved_by=who)
        return None

    async def examine(self, build_id: int, state: str) -> str:
        """Run what the verdict of `build_id` calls for; record and return the outcome."""
        try:
            if state != "accepted":
                raise Refused(f"no certified verdict (the build is {state})")
            certified = await self._certified(build_id)
            actions = await self._actions(certified)
            if not actions:
                raise Refused("no action of the spec is for this verdict")
            outcome = await self._run_all(certified, actions)
        except Refused as refusal:
            outcome = str(refusal)
        except RunnerConfigError as error:
            outcome = f"refused: {error}"
        self._ledger.examine(build_id, outcome)
        log.info("build %d: %s", build_id, outcome)
        return outcome

    async def _certified(self, build_id: int) -> Certified:
        status, body = await self._get(f"/builds/{build_id}/certificate")
        if status != 200:
            raise Refused(f"refused: the client serves no certificate ({status})")
        try:
            data = parse_certificate(body)
            summary = check_certificate(data, self._config.network)
        except (ValueError, CertificateError) as error:
            raise Refused(f"refused: the certificate does not check: {getattr(error, 'reason', error)}") from None
        if summary.build_id != build_id:
            raise Refused(f"refused: the certificate is of build {summary.build_id}")
        return Certified(build_id, decode(data["request"]), data["result"])

    async def _actions(self, certified: Certified) -> list[ActionSpec]:
        operation = certified.request.operation
        refusal = pull_request_refusal(operation)
        if refusal is not None:
            raise Refused(refusal)
        spec = certified.result.get("spec")
        commit = certified.result.get("commit")
        if spec is None or spec["path"] != SPEC_FILE or commit is None:
            raise Refused(f"no actions: the build ran no {SPEC_FILE}")
        url = self._urls.get(operation.repository)
        if url is None:
            raise Refused(f"refused: repository {operation.repository} is not in the network's configuration")
        try:
            text = await asyncio.to_thread(self._spec_at, operation, commit)
        except GitError as error:
            raise Refused(f"refused: {error.reason}") from None
        if hashlib.sha256(text).hexdigest() != spec["sha256"]:
            raise Refused(f"refused: {SPEC_FILE} at {commit[:12]} is not the spec the nodes agreed on")
        try:
            # The nodes' own parse, bounds included: a spec they agreed on passes here as it did there,
            # and anything else is a refusal, never the runner's crash.
            document = spec_document(text)
        except ValueError as error:
            raise Refused(f"refused: {error}") from None
        actions, errors = parse_actions(document.get("after") if isinstance(document, dict) else None)
        if errors:
            raise Refused("refused: " + "; ".join(errors))
        event, branch = operation.trigger_event, operation.branch
        chosen = []
        for action in actions:
            refusal = action.refusal(event, branch, certified.status)
            if refusal is None:
                chosen.append(action)
            else:
                log.info("build %d: action %s does not run: %s", certified.build_id, action.name, refusal)
        return chosen

    def _spec_at(self, operation, commit: str) -> bytes:
        repo, resolved = self._mirrors.resolve(name=operation.repository, url=self._urls[operation.repository],
                                               branch=operation.branch, commit=commit, pull_ref=operation.pull_ref)
        try:
            return (repo.commit(resolved).tree / SPEC_FILE).data_stream.read()
        except KeyError:
            raise GitError(f"{SPEC_FILE} not found at {commit}") from None
        finally:
            repo.close()

    async def _run_all(self, certified: Certified, actions: list[ActionSpec], approved_by: str | None = None) -> str:
        """Run `actions`, but hold back a deploy that waits for an approval (unless `approved_by`
        approved it) and refuse one to an environment the network does not have."""
        outcomes, ready = [], []
        for action in actions:
            refusal = environment_refusal(action, self._config.network)
            if refusal is not None:
                outcomes.append(f"{action.name} error")
                if self._ledger.start(certified.build_id, action.name):
                    await self._end_in_error(certified.build_id, action.name, refusal, environment=action.environment)
            elif approved_by is None and needs_approval(action, self._config.network):
                outcomes.append(f"{action.name} waits for an approval to deploy to {action.environment}")
                await self._wait(certified.build_id, action)
            else:
                ready.append(action)
        if not ready:
            return "; ".join(outcomes)
        workspace = Path(tempfile.mkdtemp(prefix="pbft-ci-action-"))
        try:
            await asyncio.to_thread(self._export, certified, workspace)
            await self._fetch_artifacts(certified, workspace / "artifacts")
            ran = [f"{action.name} {await self._run_one(certified, action, workspace, approved_by)}"
                   for action in ready]
            return "; ".join(["ran " + ", ".join(ran), *outcomes])
        finally:
            shutil.rmtree(workspace, ignore_errors=True)

    async def _wait(self, build_id: int, action: ActionSpec) -> None:
        if self._ledger.waits(build_id, action.name):
            return
        for pushed_out in self._ledger.wait(build_id, action.name, action.environment, time.time()):
            await self._no_approval(*pushed_out, "refused: more deploys waited for an approval than the runner keeps")
        await self._report(build_id, action.name, "waiting", None,
                           f"waits for an approval to deploy to {action.environment}", environment=action.environment)

    def _export(self, certified: Certified, workspace: Path) -> None:
        """The certified commit's files, without .git, into `workspace`."""
        operation = certified.request.operation
        repo, resolved = self._mirrors.resolve(name=operation.repository, url=self._urls[operation.repository],
                                               branch=operation.branch, commit=certified.result["commit"],
                                               pull_ref=operation.pull_ref)
        try:
            archive = io.BytesIO()
            repo.archive(archive, treeish=resolved, format="tar")
        finally:
            repo.close()
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(workspace, filter="data")

    async def _fetch_artifacts(self, certified: Certified, directory: Path) -> None:
        """The build's artifacts under `directory`, each checked: the manifest against the certified
        digest, every file against the manifest. Refused if any does not check."""
        digest = certified.result.get("artifacts")
        if digest is None:
            return
        status, body = await self._get(f"/builds/{certified.build_id}/artifacts")
        if status != 200:
            raise Refused(f"refused: the client serves no artifacts ({status})")
        files = _json_object(body).get("artifacts")
        if (not isinstance(files, dict) or not all(is_manifest_entry(path, value) for path, value in files.items())
                or manifest_digest(files) != digest):
            raise Refused("refused: the artifact manifest is not the one the nodes agreed on")
        for path, file_digest in files.items():
            status, data = await self._get(f"/builds/{certified.build_id}/artifacts/{path}")
            if status != 200 or len(data) > MAX_ARTIFACT_BYTES:
                raise Refused(f"refused: artifact {path} not served ({status})")
            if "sha256:" + hashlib.sha256(data).hexdigest() != file_digest:
                raise Refused(f"refused: artifact {path} is not the file the nodes agreed on")
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    async def _run_one(self, certified: Certified, action: ActionSpec, workspace: Path, approved_by: str | None) -> str:
        build_id = certified.build_id
        if not self._ledger.start(build_id, action.name, approved_by):
            return "ran before"
        said = {"environment": action.environment, "approver": approved_by}
        operation = certified.request.operation
        try:
            secrets = self._config.secret_values(operation.repository, action.secrets)
        except RunnerConfigError as error:
            await self._end_in_error(build_id, action.name, str(error), **said)
            return "error"
        environment = {
            "CI": "true", "CI_SYSTEM_NAME": "pbft-ci", "CI_BUILD_ID": str(build_id), "CI_REPO": operation.repository,
            "CI_COMMIT_SHA": certified.result["commit"], "CI_COMMIT_BRANCH": operation.branch,
            "CI_PIPELINE_EVENT": operation.trigger_event, "CI_BUILD_STATUS": certified.status,
            "PBFT_CI_ACTION": action.name,
        }
        if action.environment is not None:
            environment["CI_PIPELINE_DEPLOY_TARGET"] = action.environment
        if approved_by is not None:
            environment["PBFT_CI_APPROVED_BY"] = approved_by
        self._logs.mkdir(parents=True, exist_ok=True)
        log_path = self._logs / f"{build_id}-{action.name}.log"
        started_s = time.monotonic()
        state, exit_code, reason = await asyncio.to_thread(
            self._container, action, workspace, environment, log_path, secrets)
        elapsed_s = time.monotonic() - started_s
        self._ledger.finish(build_id, action.name, state, exit_code, reason)
        log.info("build %d: action %s %s exit_code=%s in %.1f s (log %s)", build_id, action.name, state, exit_code,
                 elapsed_s, log_path)
        await self._report(build_id, action.name, state, exit_code, reason, **said)
        return state

    def _container(self, action: ActionSpec, workspace: Path, environment: dict[str, str], log_path: Path,
                   secrets: dict[str, str]) -> tuple[str, int | None, str]:
        image = action.image or self._config.image
        try:
            image_id = self._docker.images.get(image).id
        except Exception:  # noqa: BLE001 - docker's NotFound and API errors alike
            return "error", None, f"image {image} is not on the runner's engine"
        limits = self._config.network.build
        sandbox = Sandbox(self._docker, limits, limits.user, self._identities, self._labels)
        output = MaskedLog(log_path, secrets)
        try:
            # The secrets go through the container's gate, never a command line (builder/engine/gate.py).
            job = ContainerJob(
                image_id, Script("\n".join(action.commands), workspace, secrets=secrets), self._config.timeout_s,
                environment=environment,
                network=None if self._config.network_mode == "none" else self._config.network_mode,
            )
            outcome = run_container(sandbox, job, Hooks(on_output=output.write))
        except SandboxError as error:
            return "error", None, error.reason
        finally:
            output.close()
        if outcome.exit_code is None:
            return "failure", None, f"timed out after {self._config.timeout_s:g} s"
        return ("success" if outcome.exit_code == 0 else "failure"), outcome.exit_code, ""

    async def _report(self, build_id: int, name: str, state: str, exit_code: int | None, reason: str, *,
                      environment: str | None = None, approver: str | None = None) -> None:
        """Tell the client how the action went, signed, for the build's record and page; a client
        that is down misses it (the runner's own ledger and log keep it)."""
        # The client takes printable text only: a line break in an engine's error is a space there.
        printable = "".join(char if char.isprintable() else " " for char in reason)[:MAX_REASON_CHARS]
        report = ActionReport(build_id, name, state, exit_code, printable, self._config.name,
                              self._ledger.next_report_stamp(time.time_ns() // 1000), environment or None, approver)
        body = report.signed_body(self._config.key)
        try:
            async with self._session.post(f"{self._config.client_url}/builds/{build_id}/actions", json=body,
                                          headers=self._headers(), timeout=_HTTP_TIMEOUT) as response:
                if response.status != 200:
                    log.warning("client refused the outcome of action %s of build %d: %s %s", name, build_id,
                                response.status, (await response.text())[:200])
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            log.warning("could not report action %s of build %d to the client: %s", name, build_id, error)
