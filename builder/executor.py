"""The executor: turn a committed build request into a BuildResult.

fetch the mirror → resolve the commit → check it out into a fresh workspace →
read the build spec → run it in the sandbox → take its artifacts → write the
build log.

`run` never raises for a problem with the build: every failure becomes an
`error` result whose reason is the same text on every honest node, because
the reason travels with the result the nodes sign. Details that differ between
nodes (paths, daemon messages, timings) go only to this node's build log.
"""

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import docker
import docker.errors
import requests.exceptions

from builder.result import BuildResult
from builder.workspace.artifacts import MAX_FILES
from builder.workspace.artifactstore import ArtifactStore
from builder.workspace.log import BuildLog
from builder.engine.network import BuildNetwork
from builder.queue import BuildQueue
from builder.plan.spec import SPEC_FILE, BuildSpec, CacheSpec, parse_build_spec
from builder.plan.triggers import Skips, Trigger
from builder.workspace.caches import OUT_DIR, CacheScope, CacheStore, CacheWriter, cache_key, cache_scopes, wrapper_script
from builder.engine.connection import connect, describe
from builder.plan.civars import BuildFacts, ci_variables
from builder.workspace import checkout
from builder.workspace.basespec import read_base_spec
from builder.workspace.gitmirror import GitError, GitMirrors, changed_paths, commit_author, commit_message, commit_time
from builder.engine.identity import Identities
from builder.plan.spec import HOME_DIR
from builder.engine.images import Images
from builder.plan.matrix import check_combination
from builder.plan.secrets import BuildSecrets, RepositorySecrets, SecretUnreadable, build_secrets
from builder.plan.pipeline import Step, narrowed, run_order
from builder.engine.services import PlannedService
from builder.engine.ready import ReadyContainers
from builder.engine.steps import PlannedStep, run_steps
from builder.engine.sandbox import (
    ROOT_USER,
    ArtifactCopy,
    CacheMounts,
    GatedContainer,
    ContainerOutcome,
    ENGINE_LOST,
    Sandbox,
    SandboxError,
    Script,
    build_image,
    check_image,
    memory_budget,
    exported,
    reproducible_environment,
    run_container,
    start_gated_container,
)
from pbft.attestation import manifest_digest
from shared.config import BuildConfig, DockerEngineConfig
from pbft.build import EVENTS, Result, Spec, combination_label
from shared.refs import check_branch_name, check_commit_sha, check_pull_ref, check_repository_name

log = logging.getLogger(__name__)

ROOT_REFUSED = "build spec asks for root; the network does not allow it"
ARTIFACTS_OFF = "build spec declares artifacts; the network keeps none (build.artifacts_mb is 0)"
KILLED_OUTSIDE = "build container killed outside the build (not by its timeout or memory limit)"
NODE_STOPPING = "the node stopped during the build"
ENGINE_UNAVAILABLE = "docker engine unavailable"
# How long a build whose engine went away, and a removal that found it gone, wait for it to
# answer again: a service restart takes seconds, an upgrade may take a minute.
ENGINE_BACK_S = 60.0

# A leading dot is refused so that "." and ".." never name a workspace.
_BUILD_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class _CacheRun:
    """What a build with caches needs after its container: where to save what, under which key."""

    key: str
    roots: tuple[str, ...]  # the spec's cache paths inside the container
    mounts: CacheMounts
    script: str
    scope: CacheScope  # where the build's cache is kept (builder/workspace/caches.py)
    writer: CacheWriter


class _BuildError(Exception):
    """Ends a build early with an `error` result; `detail` goes to the log only."""

    def __init__(self, reason: str, detail: str = "", commit: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.commit = commit


class _Cancelled(Exception):
    """Ends a build whose cancel was ordered: its result is `cancelled`, whatever it had done."""


# A cancel is kept for a build not started yet (queued, or ordered after its cancel) until
# this many later cancels push it out: the builds a node has waiting are far fewer.
MAX_CANCELS = 4096
# The same on every node whatever stage each had reached: no commit, no spec, no exit code.
CANCELLED = "cancelled by the client's request"


@dataclasses.dataclass(frozen=True)
class _RepositorySettings:
    """What a build takes of its repository's configuration when it starts."""

    networked: bool  # build_network: true
    submodule_urls: frozenset[str]
    secrets: RepositorySecrets | None


class Executor:
    def __init__(
        self,
        *,
        data_dir: Path,
        log_dir: Path,
        node_id: int,
        limits: BuildConfig,
        max_concurrent: int = 2,
        docker_client=None,
        engine: DockerEngineConfig = DockerEngineConfig(),
        networked_repositories: frozenset[str] = frozenset(),
        peer_hosts: tuple[str, ...] = (),
        repository_bounds: dict[str, int] | None = None,
        registry_auth: dict[str, dict[str, str]] | None = None,
        submodule_urls: dict[str, frozenset[str]] | None = None,
        extra_environment: dict[str, str] | None = None,
        repository_secrets: dict[str, RepositorySecrets] | None = None,
    ):
        """`engine` is where builds run, unless `docker_client` (tests) is given;
        `networked_repositories` may build with a network (`build_network: true`);
        `peer_hosts`, the network's node and client hosts, are what those builds must never reach;
        `repository_bounds` caps how many builds of a repository run at once (builder/queue.py);
        `registry_auth`, this node's credentials for the registries it pulls from (builder/engine/images.py);
        `submodule_urls`, per repository, the URLs its submodules may be fetched from (builder/workspace/checkout.py);
        `extra_environment`, variables every build of this node gets (node/byzantine.py's flaky mode);
        `repository_secrets`, per repository, the secrets its builds may get (builder/plan/secrets.py)."""
        self._data_dir = Path(data_dir).resolve()
        self._log_dir = Path(log_dir)
        self._node_id = node_id
        self._limits = limits
        # Which build takes a freed slot: the node's max_concurrent, each repository's own bound
        # and a fair turn between repositories; a waiting build's future is set when it may run.
        self._queue = BuildQueue(max_concurrent, dict(repository_bounds or {}))
        self._slot_waiters: dict[str, asyncio.Future] = {}
        # Told (build id, "queued" or "running") as a build waits for a slot and as it takes
        # one: the node tells the build's client (node/driver.py).
        self.on_state: Callable[[str, str], None] | None = None
        self._mirrors = GitMirrors(self._data_dir / "mirrors")
        self._checkouts = checkouts_root(self._data_dir, limits.workspace_mb * max_concurrent * 1024 * 1024)
        self._extra_environment = dict(extra_environment or {})
        self._caches = CacheStore(
            self._data_dir, keep=limits.cache_keep, max_bytes=limits.cache_mb * 1024 * 1024,
            scopes=limits.cache_scopes,
        )
        self._artifacts = ArtifactStore(self._data_dir, keep=limits.artifacts_keep)
        self._docker = docker_client
        self._engine = engine
        self._images = Images(
            registries=limits.registries, auth=dict(registry_auth or {}), require_digests=limits.require_digests
        )
        self._owns_docker = docker_client is None
        self._docker_guard = threading.Lock()
        self._running = 0
        self._active_ids: set[str] = set()
        # Build ids whose cancel was ordered (node/driver.py), oldest first, and the container
        # each running build runs in, so that a cancel can kill it (from another thread).
        self._cancels: OrderedDict[str, None] = OrderedDict()
        self._containers: dict[str, Any] = {}
        # The matrix combination each running build names, by build id as its container is:
        # only the spec's reading needs it, not the fetch and checkout before it.
        self._combinations: dict[str, tuple[tuple[str, str], ...]] = {}
        # The repository settings each build started with, by build id: a reload
        # (`reconfigure`) changes the next builds' settings, never a running build's.
        self._started_with: dict[str, _RepositorySettings] = {}
        self._closing = False
        # Containers carry it so that close() finds this executor's builds only,
        # even with several nodes (or test runs) sharing one engine.
        self._instance_id = uuid.uuid4().hex
        # The passwd and group files made per image, on the engine (builder/engine/identity.py).
        self._identities = Identities(self._labels())
        self._build_network = BuildNetwork(self._data_dir, peer_hosts)
        self._networked: frozenset[str] = frozenset()
        self._network_made = False  # whether a repository ever built with a network: close() removes it
        self.reconfigure(networked_repositories=networked_repositories, repository_bounds=repository_bounds or {},
                         submodule_urls=submodule_urls or {}, repository_secrets=repository_secrets or {})
        # Removes each finished build's containers and volumes after its result is
        # out: the daemon takes a tenth of a second to tear them down, which no
        # verdict should wait for. One thread, so removals never pile up on the engine.
        self._janitor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"remove-node{node_id}")
        # Spec builds without caches or a build network run in a container
        # started before they came, keyed by image id and build user. The next
        # one is started once a build's commands run, not as soon as the build
        # takes its container: the start would compete with the upload of the
        # sources, which the build waits for. With four builds at once on two
        # cores that made the node's own time per build about 340 ms instead
        # of 230; only builds that follow each other without a pause find the
        # next container ready less often.
        self._ready = ReadyContainers(self._start_ready, thread_name=f"ready-node{node_id}")

    def reconfigure(
        self, *, networked_repositories: frozenset[str], repository_bounds: dict[str, int],
        submodule_urls: dict[str, frozenset[str]], repository_secrets: dict[str, RepositorySecrets],
    ) -> None:
        """The repositories' settings from now on (see __init__), after a reload of the
        configuration: builds that start from here on get them; builds that started, running
        or waiting for a slot, keep theirs, except the bounds, which are the queue's."""
        self._networked = frozenset(networked_repositories)
        self._network_made |= bool(self._networked)
        self._queue.bounds = dict(repository_bounds)
        self._submodule_urls = dict(submodule_urls)
        self._repository_secrets = dict(repository_secrets)

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        """Builds waiting for a build slot here."""
        return self._queue.waiting()

    def is_queued(self, build_id: str) -> bool:
        return self._queue.is_waiting(build_id)

    def has_slot(self, build_id: str) -> bool:
        """Whether the build holds one of the node's build slots: it runs. One not yet come
        to the queue (its task not started) holds none, as one waiting in it does not."""
        return build_id in self._queue.running

    def sweep_leftovers(self) -> int:
        """Remove containers (builds' and prepared ones), workspace and cache volumes a killed
        earlier process of this node left.

        A node killed with `kill -9` cannot remove its builds; they would run
        on to their deadline and keep their workspaces. They carry this node's
        data directory as a label, which no other node or network shares.
        Its half-copied caches and restore links go too. Returns how many
        containers and volumes were removed (the build network is not counted).
        """
        removed = 0
        try:
            shutil.rmtree(self._checkouts, ignore_errors=True)
            sweep_orphaned_checkouts()
            self._caches.sweep()
            self._artifacts.sweep()
        except OSError:
            log.warning("could not sweep leftover cache or artifact files of node %s", self._node_id, exc_info=True)
        try:
            removed = remove_labelled_builds(self._client(), self._data_dir)
            # The network and its rules come back with the next networked build.
            self._build_network.remove(self._client())
        except docker.errors.DockerException:
            log.warning("could not sweep leftover builds of node %s", self._node_id, exc_info=True)
        if removed:
            log.warning("node %s removed %d containers and volumes left by a previous run", self._node_id, removed)
        return removed

    async def cancel(self, build_id: str) -> bool:
        """Stop build `build_id`: at once if its container runs, before it starts if it waits
        (for a build slot, or for the driver to hand it over). Its result is then `cancelled`.
        Returns whether the build was running or waiting here."""
        if not isinstance(build_id, str) or not _BUILD_ID.fullmatch(build_id):
            return False
        self._cancels[build_id] = None
        while len(self._cancels) > MAX_CANCELS:
            self._cancels.popitem(last=False)
        if self._queue.drop(build_id):
            turn = self._slot_waiters.pop(build_id)
            if not turn.done():  # else its task was cancelled meanwhile (the node stops)
                turn.set_result(False)
        container = self._containers.get(build_id)
        if container is not None:
            log.info("build %s node=%s: cancelled, killing its container", build_id, self._node_id)
            await asyncio.to_thread(_kill_quietly, container)
        return build_id in self._active_ids

    async def _take_slot(self, build_id: str, repository: str) -> bool:
        """Wait for a build slot and take it; False, with no slot taken, if the build is
        cancelled before its turn comes (a cancel does not wait for the builds before it)."""
        if build_id in self._cancels:
            return False
        turn = asyncio.get_running_loop().create_future()
        self._slot_waiters[build_id] = turn
        self._grant(self._queue.add(build_id, repository))
        if self._queue.is_waiting(build_id):
            self._tell(build_id, "queued")
        try:
            return await turn
        except BaseException:  # the node is stopping: no slot is kept, no place in the queue
            self._slot_waiters.pop(build_id, None)
            if not self._queue.drop(build_id):
                self._release(build_id)
            raise

    def _grant(self, build_ids: list[str]) -> None:
        for build_id in build_ids:
            turn = self._slot_waiters.pop(build_id)
            if not turn.done():  # else its task was cancelled meanwhile, and gives the slot back
                turn.set_result(True)
                self._tell(build_id, "running")

    def _tell(self, build_id: str, state: str) -> None:
        if self.on_state is not None:
            self.on_state(build_id, state)

    def _release(self, build_id: str) -> None:
        self._grant(self._queue.finish(build_id))

    def _check_cancel(self, build_id: str) -> None:
        if build_id in self._cancels:
            raise _Cancelled()

    def close(self) -> None:
        """Remove the prepared containers, kill this executor's running builds, then let go of the engine.

        A cancelled `run` leaves its worker thread waiting on the container;
        killing it lets the thread remove the container and the workspace
        right away instead of at the build's deadline.
        """
        self._closing = True  # builds it kills below are not run again
        self._ready.close()
        if self._docker is None:
            self._janitor.shutdown(wait=True)
            self._remove_checkouts()
            return
        try:
            running = self._docker.containers.list(filters={"label": f"pbft-ci.executor={self._instance_id}"})
        except docker.errors.DockerException:
            log.warning("could not list running builds of node %s", self._node_id, exc_info=True)
            running = []
        for container in running:
            try:
                container.kill()
            except docker.errors.DockerException:
                # It exited on its own meanwhile; its thread removes it.
                pass
        # Finished builds' containers go before the engine connection does.
        self._janitor.shutdown(wait=True)
        try:
            self._identities.remove_all(self._docker)
        except docker.errors.DockerException:
            log.warning("could not remove the identity volumes of node %s", self._node_id, exc_info=True)
        if self._network_made:
            # A stopped node leaves no rules behind; the network goes first,
            # and the rules stay if it cannot (a build may still be attached).
            try:
                self._build_network.remove(self._docker)
            except docker.errors.DockerException:
                log.warning("could not remove the build network of node %s", self._node_id, exc_info=True)
        if self._owns_docker:
            self._docker.close()
            self._docker = None
        self._remove_checkouts()

    def _remove_checkouts(self) -> None:
        """The checkouts' folder goes once no build is left: in memory, it would hold the
        host's RAM until the next start. Builds still running (killed above) remove their own."""
        if not self._active_ids:
            shutil.rmtree(self._checkouts, ignore_errors=True)

    async def run(
        self, *, build_id: str, repository_name: str, repository_url: str, branch: str, commit: str | None = None,
        pull_ref: str | None = None, event: str = "push", before: str | None = None,
        combination: tuple[tuple[str, str], ...] | None = None,
    ) -> BuildResult:
        if not isinstance(build_id, str) or not _BUILD_ID.fullmatch(build_id):
            return BuildResult("error", None, None, "invalid build id")
        if build_id in self._active_ids:
            # Two builds would share one workspace and one log file.
            return BuildResult("error", None, None, "build id already running")
        started = time.monotonic()
        # Checked before any git call: these names end up on git command lines
        # and in file paths.
        try:
            check_repository_name(repository_name)
            check_branch_name(branch)
            if commit is not None:
                check_commit_sha(commit)
            if pull_ref is not None:
                check_pull_ref(pull_ref)
            if event not in EVENTS:
                raise ValueError(f"unknown event {str(event)[:40]!r}")
            if before is not None:
                check_commit_sha(before)
            if combination is not None:
                check_combination(combination)
        except ValueError as exc:
            rejected = BuildResult("error", None, None, f"invalid request: {exc}")
            output = self._open_log(build_id, repository_name, branch)
            return await asyncio.to_thread(self._finish, build_id, repository_name, branch, rejected, output, started)

        self._active_ids.add(build_id)
        if combination is not None:
            self._combinations[build_id] = combination
        self._started_with[build_id] = _RepositorySettings(
            networked=repository_name in self._networked,
            submodule_urls=self._submodule_urls.get(repository_name, frozenset()),
            secrets=self._repository_secrets.get(repository_name),
        )
        try:
            if not await self._take_slot(build_id, repository_name):  # cancelled while it waited, or before
                output = self._open_log(build_id, repository_name, branch)
                return await asyncio.to_thread(
                    self._finish, build_id, repository_name, branch, self._cancelled(output), output, started
                )
            self._running += 1
            try:
                return await asyncio.to_thread(
                    self._build, build_id, repository_name, repository_url, branch, commit, pull_ref,
                    Trigger(event, branch, before, pull_ref),
                )
            finally:
                self._running -= 1
                self._release(build_id)
        finally:
            self._active_ids.discard(build_id)
            self._combinations.pop(build_id, None)
            self._started_with.pop(build_id, None)

    def _build(
        self, build_id: str, name: str, url: str, branch: str, commit: str | None, pull_ref: str | None,
        trigger: Trigger,
    ) -> BuildResult:
        """The whole build, blocking; runs in a worker thread."""
        started = time.monotonic()
        log.info("build start id=%s node=%s repo=%r branch=%r", build_id, self._node_id, name, branch)
        output = self._open_log(build_id, name, branch)
        workspace = self._checkouts / build_id
        commands_ms = None
        try:
            result, commands_ms = self._build_in(
                workspace, build_id, name, url, branch, commit, pull_ref, trigger, output
            )
        except _Cancelled:
            result = self._cancelled(output)
        except _BuildError as exc:
            output.write(exc.detail.encode(errors="replace"))
            result = BuildResult("error", None, exc.commit, exc.reason)
        except requests.exceptions.ConnectionError as exc:
            # The engine is down (between builds, or went away outside a container's run).
            log.warning("node=%s build %s: %s: %s", self._node_id, build_id, ENGINE_UNAVAILABLE, exc)
            result = BuildResult("error", None, None, ENGINE_UNAVAILABLE)
        except Exception:
            # A bug or an unexpected environment problem must not take the
            # node down; the traceback stays in the node log.
            log.exception("build %s failed unexpectedly", build_id)
            result = BuildResult("error", None, None, "internal executor error")
        finally:
            self._containers.pop(build_id, None)
            shutil.rmtree(workspace, ignore_errors=True)
        if build_id in self._cancels and result.status != "cancelled":
            # Cancelled while it ended (its container killed, or before its result is out).
            result = self._cancelled(output)
        return self._finish(build_id, name, branch, result, output, started, commands_ms)

    @staticmethod
    def _cancelled(output: BuildLog) -> BuildResult:
        output.note(CANCELLED)
        return BuildResult("cancelled", None, None, CANCELLED)

    def _open_log(self, build_id: str, name: str, branch: str) -> BuildLog:
        return BuildLog(
            self._log_dir / f"build-node{self._node_id}-{build_id}.log",
            self._limits.output_cap_bytes,
            f"pbft-ci build {build_id} node {self._node_id} repo {name!r} branch {branch!r}",
        )

    def _finish(
        self, build_id, name, branch, result: BuildResult, output: BuildLog, started, commands_ms: int | None = None
    ) -> BuildResult:
        """Close the build log and log the build's end.

        `commands_ms` is how long the build's own commands ran (-1 in the
        line when they never ran or the sandbox failed), so that duration_ms
        minus it is what the node spent around them: git, workspace, containers.
        """
        duration_ms = round((time.monotonic() - started) * 1000)
        log_path = output.close(result.status, result.exit_code, duration_ms, result.reason)
        log.info(
            "build end id=%s node=%s repo=%r branch=%r commit=%s status=%s exit_code=%s duration_ms=%d commands_ms=%d",
            build_id, self._node_id, name, branch, (result.commit or "-")[:12],
            result.status, result.exit_code, duration_ms, -1 if commands_ms is None else commands_ms,
        )
        return dataclasses.replace(result, log_path=log_path)

    def _build_in(
        self, workspace, build_id, name, url, branch, commit, pull_ref, trigger, output
    ) -> tuple[BuildResult, int | None]:
        self._check_cancel(build_id)
        try:
            make_checkouts_folder(self._checkouts, self._data_dir)
        except OSError as exc:
            raise _BuildError("could not make this node's checkout folder", f"{exc}\n") from None
        try:
            repo, resolved = self._mirrors.resolve(name=name, url=url, branch=branch, commit=commit, pull_ref=pull_ref)
            try:
                shutil.rmtree(workspace, ignore_errors=True)
                # A tag's or a pull request's build is a detached HEAD, as a forge's checkout is.
                on_branch = branch if trigger.event != "tag" and not trigger.pull_request else None
                checkout.workspace(
                    self._mirrors, name=name, url=url, commit=resolved, branch=on_branch, dest=workspace,
                    submodule_urls=self._started_with[build_id].submodule_urls,
                    max_bytes=self._limits.workspace_mb * 1024 * 1024,
                )
                committed_s = commit_time(repo, resolved)
                message = commit_message(repo, resolved)
                author, email = commit_author(repo, resolved)
                changed = None if trigger.before is None else changed_paths(repo, trigger.before, resolved)
                base, base_read = read_base_spec(repo, trigger, resolved) if trigger.pull_request else (None, "")
            finally:
                repo.close()
        except GitError as exc:
            raise _BuildError(exc.reason, exc.detail) from None
        output.commit(resolved)
        if base_read:
            output.node_line(base_read)
        self._check_cancel(build_id)
        decide = Skips(trigger, message, changed, base)
        facts = BuildFacts(
            build_id=build_id, repository=name, event=trigger.event, branch=branch, commit=resolved,
            message=message, author_name=author, author_email=email, pull_ref=pull_ref, before=trigger.before,
        )
        images: list = []
        try:
            result, commands_ms = self._run_sandboxed(
                workspace, build_id, name, resolved, committed_s, facts, decide, output, images
            )
        except SandboxError as exc:
            raise _BuildError(exc.reason, exc.detail, resolved) from None
        if images and result.spec is not None:
            result = dataclasses.replace(result, images=tuple(sorted(set(images), key=lambda image: image.name)))
        return result, commands_ms

    def _run_sandboxed(
        self, workspace: Path, build_id: str, name: str, commit: str, committed_s: int, facts: BuildFacts,
        decide: Skips, output, images: list,
    ) -> tuple[BuildResult, int | None]:
        """The build's result and how long its own commands ran (ContainerOutcome.commands_ms);
        `decide` says why the build, or a step of it, does not run. The registry digests of the
        images it runs are added to `images`."""
        limits = self._limits
        labels = {"pbft-ci.build": build_id, **self._labels()}
        # Derived from the commit and the agreed request alone, so the same on every honest node.
        environment = {**reproducible_environment(committed_s), **ci_variables(facts), **self._extra_environment}
        artifacts, digests, artifacts_problem = None, (), ""
        skipped = decide.before_spec()
        if skipped is not None:
            return self._skipped(commit, skipped, None, output), None
        spec_path = workspace / SPEC_FILE
        if spec_path.is_symlink():
            # Reading it would follow the link on the node's own file system.
            raise _BuildError(f"{SPEC_FILE} must be a regular file", commit=commit)
        combination = self._combinations.get(build_id)
        if combination is not None and not spec_path.is_file():
            raise _BuildError(f"the build names a matrix combination; the commit has no {SPEC_FILE}", commit=commit)
        if spec_path.is_file():
            try:
                spec = parse_build_spec(spec_path.read_bytes(), combination)
            except ValueError as exc:
                raise _BuildError(str(exc), commit=commit) from None
            if spec.user == "root" and not limits.allow_root:
                raise _BuildError(ROOT_REFUSED, commit=commit)
            if spec.artifacts and limits.artifacts_mb == 0:
                raise _BuildError(ARTIFACTS_OFF, commit=commit)
            timeout_s = min(spec.timeout_s or limits.timeout_s, limits.timeout_s)
            image = spec.image or limits.image
            ran = _spec(spec_path, image)
            skipped = decide.of_spec(spec.when)
            if skipped is not None:
                return self._skipped(commit, skipped, ran, output), None
            if spec.matrix and combination is None:
                return self._matrix(commit, spec.matrix, output), None
            user = ROOT_USER if spec.user == "root" else limits.user
            network = None
            if self._started_with[build_id].networked:
                network = self._build_network.ensure(self._client()).name
            environment.update(spec.environment)
            secrets = self._secrets(facts, output, commit)
            output.settings(_spec_settings(limits, image, user, timeout_s, spec, network, environment, secrets))
            if spec.steps or spec.services:
                return self._run_pipeline(
                    spec, image, user, timeout_s, network, environment, secrets.values, workspace, build_id, name,
                    commit, ran, labels, decide, output, images,
                )
            caching = spec.cache is not None and limits.cache_mb > 0
            budget = memory_budget(limits, with_workspace=True, with_cache=caching)
            image_id = self._image(image, images)
            script, arguments, cache_run, ready_key, ready = spec.script(), (), None, None, None
            if caching:
                cache_run = self._prepare_cache(facts, image_id, spec.cache, workspace, output)
                script, arguments = cache_run.script, ("pbft-ci-cache", spec.script())
            elif network is None:
                ready_key = (image_id, user)
                ready = self._ready.take(ready_key)
                if ready is not None:
                    log.debug(
                        "build id=%s node=%s runs in prepared container %s",
                        build_id, self._node_id, ready.container.id[:12],
                    )
                else:
                    log.debug(
                        "build id=%s node=%s has no prepared container for image %s user %s; it starts one",
                        build_id, self._node_id, image_id[:19], user,
                    )
            if spec.artifacts:
                artifacts = ArtifactCopy(
                    spec.artifacts, self._artifacts.incoming(build_id), max_bytes=limits.artifacts_mb * 1024 * 1024
                )
            try:
                run = functools.partial(
                    run_container,
                    self._sandbox(limits, user, labels), image_id,
                    Script(script, workspace, arguments, secrets.values),
                    timeout_s=timeout_s, environment=_without(environment, secrets.values),
                    cache=cache_run.mounts if cache_run else None,
                    network=network, artifacts=artifacts, on_output=output.write,
                    on_container=functools.partial(self._running_in, build_id),
                )
                outcome = self._unless_host_fault(run, output, commit, build_id, ready=ready, on_started=(
                    None if ready_key is None else functools.partial(self._ready.prepare, ready_key)))
                if cache_run is not None:
                    self._save_cache(name, cache_run, outcome, output)
                if artifacts is not None:
                    digests, artifacts_problem = self._take_artifacts(
                        name, build_id, commit, artifacts, outcome, output
                    )
            finally:
                if artifacts is not None:
                    # Moved into the store by now if they are kept.
                    self._artifacts.discard(artifacts.dest)
                if cache_run is not None:
                    self._caches.release(build_id)
                    if cache_run.mounts.save_to is not None:
                        cache_run.mounts.save_to.unlink(missing_ok=True)
        elif (workspace / "Dockerfile").is_file():
            # The context is the commit's tree alone: .git differs between checkouts (its
            # index records file times), and would make every `COPY .` miss the layer cache.
            shutil.rmtree(workspace / ".git")
            timeout_s = limits.timeout_s
            tag = f"pbft-ci-build/{_image_name(name)}:{commit[:12]}"
            ran = _spec(workspace / "Dockerfile", tag)
            secrets = self._secrets(facts, output, commit)
            output.settings(_dockerfile_settings(limits, tag, timeout_s, environment, secrets))
            budget = memory_budget(limits, with_workspace=False)
            build_log = build_image(self._client(), context=workspace, tag=tag, limits=limits, timeout_s=timeout_s)
            output.write(build_log.encode(errors="replace"))
            run = functools.partial(
                run_container,
                self._sandbox(limits, limits.user, labels), check_image(self._client(), tag), None,
                timeout_s=timeout_s, environment={**environment, **secrets.values}, on_output=output.write,
                on_container=functools.partial(self._running_in, build_id),
            )
            outcome = self._unless_host_fault(run, output, commit, build_id)
        else:
            raise _BuildError(f"no {SPEC_FILE} or Dockerfile", commit=commit)

        output.truncated |= outcome.truncated
        if outcome.oom_killed:
            # Only in the log: the exit code (137) is what nodes agree on.
            output.note(f"killed: out of memory (limit {budget.breakdown()})")
        if outcome.exit_code is None:
            timed_out = BuildResult("timeout", None, commit, f"build exceeded {timeout_s:g} s", spec=ran)
            return timed_out, outcome.commands_ms
        if outcome.exit_code != 0:
            return BuildResult("failure", outcome.exit_code, commit, spec=ran), outcome.commands_ms
        if artifacts_problem:
            return BuildResult("error", None, commit, artifacts_problem, spec=ran), outcome.commands_ms
        if digests:
            agreed = BuildResult(
                "success", 0, commit, spec=ran, artifacts=manifest_digest(dict(digests)), artifact_files=digests
            )
            return agreed, outcome.commands_ms
        return BuildResult("success", 0, commit, spec=ran), outcome.commands_ms

    def _run_pipeline(
        self, spec: BuildSpec, image: str, user: str, timeout_s: float, network: str | None,
        environment: dict[str, str], secrets: dict[str, str], workspace: Path, build_id: str, name: str, commit: str,
        ran: Spec, labels: dict[str, str], decide: Skips, output: BuildLog, images: list,
    ) -> tuple[BuildResult, int | None]:
        """A `steps:` build, or one with services (builder/engine/steps.py): its result names each step's
        outcome, and the step that failed it. A one-script spec with services is one step, `build`.
        Every step and service gets `secrets`, or those of them it lists, on top of its environment."""
        steps = spec.steps or (Step(name="build", image=None, commands=spec.commands),)
        limits = _share(self._limits, 1 + len(spec.services))
        services = tuple(
            PlannedService(
                name=service.name, image=service.image, image_id=self._image(service.image, images),
                script=service.script() if service.commands else None,
                environment={**environment, **dict(service.environment), **narrowed(secrets, service.secrets)},
                ready_command=service.ready_command, ready_timeout_s=service.ready_timeout_s,
            )
            for service in spec.services
        )
        planned = []
        for step in run_order(steps):
            step_image = step.image or image
            step_environment = {**environment, **dict(step.environment), "CI_STEP_NAME": step.name}
            step_secrets = narrowed(secrets, step.secrets)
            planned.append(PlannedStep(
                name=step.name, image=step_image, image_id=self._image(step_image, images),
                script=exported(_without(step_environment, step_secrets), step.script()), status=step.status,
                ignore_failure=step.ignore_failure,
                skip_reason=decide.of_step(step.conditions) if step.conditions else None,
                secrets=step_secrets,
            ))
        artifacts = None
        if spec.artifacts:
            artifacts = ArtifactCopy(
                spec.artifacts, self._artifacts.incoming(build_id), max_bytes=self._limits.artifacts_mb * 1024 * 1024
            )
        try:
            run = functools.partial(
                run_steps,
                self._sandbox(limits, user, labels), tuple(planned), workspace, timeout_s=timeout_s,
                on_output=output.write, on_section=output.section, network=network, artifacts=artifacts,
                on_container=functools.partial(self._running_in, build_id),
                cancelled=lambda: build_id in self._cancels, services=services,
            )
            outcome = self._unless_host_fault(run, output, commit, build_id)
            digests, artifacts_problem = (), ""
            if artifacts is not None:
                digests, artifacts_problem = self._take_artifacts(name, build_id, commit, artifacts, outcome, output)
        finally:
            if artifacts is not None:
                self._artifacts.discard(artifacts.dest)
        output.truncated |= outcome.truncated
        if outcome.oom_killed:
            output.note(f"killed: out of memory (limit {memory_budget(limits, with_workspace=True).breakdown()})")
        steps = outcome.steps
        if outcome.exit_code is None:
            reason = f"build exceeded {timeout_s:g} s (in step {outcome.failed_step!r})"
            return BuildResult("timeout", None, commit, reason, spec=ran, steps=steps), outcome.commands_ms
        if outcome.exit_code != 0:
            reason = f"step {outcome.failed_step!r} failed with exit code {outcome.exit_code}"
            return BuildResult("failure", outcome.exit_code, commit, reason, spec=ran, steps=steps), outcome.commands_ms
        if artifacts_problem:
            return BuildResult("error", None, commit, artifacts_problem, spec=ran, steps=steps), outcome.commands_ms
        agreed = BuildResult(
            "success", 0, commit, spec=ran, steps=steps,
            artifacts=manifest_digest(dict(digests)) if digests else None, artifact_files=digests,
        )
        return agreed, outcome.commands_ms

    def _secrets(self, facts: BuildFacts, output: BuildLog, commit: str) -> BuildSecrets:
        """The secrets this build gets, read now (a replaced file takes effect at the next build),
        their values masked in its log from here on."""
        try:
            secrets = build_secrets(self._started_with[facts.build_id].secrets, facts.event, facts.pull_ref)
        except SecretUnreadable as exc:
            log.warning("node=%s build %s: %s", self._node_id, facts.build_id, exc.detail.strip())
            raise _BuildError(exc.reason, exc.detail, commit) from None
        output.hide(secrets.values)
        return secrets

    def _image(self, name: str, images: list) -> str:
        """The id of image `name`, pulled if the engine lacks it; its registry digest, if it has
        one, is added to `images`."""
        image_id, digest = self._images.resolve(self._client(), name)
        if digest is not None:
            images.append(digest)
        return image_id

    @staticmethod
    def _skipped(commit: str, reason: str, spec: Spec | None, output: BuildLog) -> BuildResult:
        output.note(f"skipped: {reason}")
        return BuildResult("skipped", None, commit, reason, spec=spec)

    @staticmethod
    def _matrix(commit: str, combinations: tuple, output: BuildLog) -> BuildResult:
        """The result of a build whose spec has a matrix and which names no combination: no
        container, the combinations listed for the client to ask for one build each."""
        reason = f"the spec's matrix expands into {len(combinations)} builds"
        output.note(f"{reason}: {'; '.join(combination_label(combination) for combination in combinations)}")
        return BuildResult("matrix", None, commit, reason, combinations=combinations)

    def _running_in(self, build_id: str, container) -> None:
        """The build's container is `container`; a cancel ordered before it came kills it at once."""
        self._containers[build_id] = container
        if build_id in self._cancels:
            _kill_quietly(container)

    def _unless_host_fault(self, run, output: BuildLog, commit: str, build_id: str, **first) -> ContainerOutcome:
        """`run()`'s outcome; if the host failed the build, the outcome of running it once more,
        in a fresh container, from the same sources, once the engine answers.

        Host faults are a container killed from outside the build (`docker kill`, an operator,
        the host's tooling) and an engine that went away under it (its service restarted or
        crashed). They are the node's trouble, not the build's: an exit code 137 must not be
        signed as the build's failure, which would make this node a dissenter on a build that
        passed. Failed by the host again, the node says so as its `error`, the same text on
        every node it happens to."""
        faults = []
        while True:
            self._check_cancel(build_id)
            try:
                outcome = run(**first) if not faults else run()
            except SandboxError as exc:
                self._check_cancel(build_id)  # its container killed by the cancel, before it ran
                if not exc.engine_lost:
                    raise
                log.warning("node=%s %s: %s", self._node_id, ENGINE_LOST, exc.detail.strip())
                faults.append(ENGINE_LOST)
            else:
                self._check_cancel(build_id)  # killed by the cancel, not from outside
                if not outcome.killed_outside:
                    return outcome
                faults.append(KILLED_OUTSIDE)
            if self._closing:
                raise _BuildError(NODE_STOPPING, commit=commit)
            if len(faults) == 2:
                twice = f"{faults[0]}, twice" if faults[0] == faults[1] else f"{faults[0]}, then {faults[1]}"
                raise _BuildError(twice, commit=commit)
            if not self._engine_answers(ENGINE_BACK_S):
                raise _BuildError(f"{faults[0]}; it did not answer again within {ENGINE_BACK_S:g} s", commit=commit)
            log.warning("node=%s %s: running the build again", self._node_id, faults[0])
            output.section(f"{faults[0]}: the build runs again, in a fresh container")

    def _engine_answers(self, within_s: float) -> bool:
        """Whether the build engine answers within `within_s` (not once the executor closes)."""
        deadline = time.monotonic() + within_s
        while not self._closing:
            try:
                self._client().ping()
                return True
            except (SandboxError, docker.errors.DockerException, requests.exceptions.RequestException):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.5)
        return False

    def _take_artifacts(
        self, name: str, build_id: str, commit: str, copy: ArtifactCopy, outcome, output: BuildLog
    ) -> tuple[tuple[tuple[str, str], ...], str]:
        """Store what a successful build left as its artifacts: their digests, or why there are none.

        A build that did not exit 0 gets no artifacts and keeps its verdict;
        one whose artifacts cannot be taken (builder/workspace/artifacts.py says why, the
        same on every honest node) ends as an error.
        """
        if outcome.exit_code != 0:
            output.note("artifacts not taken: the build did not succeed")
            return (), ""
        if outcome.artifacts is None:
            output.note(f"artifacts not taken: {outcome.artifacts_problem}")
            return (), outcome.artifacts_problem
        try:
            sizes, kept = self._artifacts.store(
                repository=name, build_id=build_id, commit=commit, incoming=copy.dest, digests=outcome.artifacts
            )
        except OSError as exc:
            log.warning("could not store the artifacts of build %s", build_id, exc_info=True)
            raise _BuildError("could not store the artifacts on this node", f"{exc}\n", commit) from None
        for path, digest in outcome.artifacts.items():
            output.note(f"artifact {path} {digest} ({sizes[path]} bytes)")
        output.note(
            f"artifacts stored: {len(sizes)} files, {sum(sizes.values())} bytes; "
            f"those of the newest {kept} builds of {name!r} are kept on this node"
        )
        return tuple(outcome.artifacts.items()), ""

    def _prepare_cache(
        self, facts: BuildFacts, image_id: str, cache: CacheSpec, workspace: Path, output: BuildLog
    ) -> _CacheRun:
        name, build_id = facts.repository, facts.build_id
        roots = cache.container_paths()
        key = cache_key(name, image_id, cache, workspace)
        scopes = cache_scopes(facts.event, facts.branch, facts.pull_ref)
        try:
            restore = self._caches.restore(name, scopes, key, roots, build_id, workspace, output.node_line)
            if restore is not None:
                log.info("build %s restores cache key %s of %s, %s", build_id, key[:12], restore.scope,
                         restore.writer)
        except OSError as exc:
            # The node's own disk, not the build: go on without a cache.
            log.warning("cache restore failed for build %s", build_id, exc_info=True)
            output.node_line(f"cache restore failed on this node ({type(exc).__name__}); none restored")
            restore = None
        # Like GitHub Actions, a cache restored for its own key is kept as it
        # is: its key files have not changed, and saving it again would cost
        # every warm build what the cold one paid to save (about 2 s for
        # 20,000 files; `scripts/bench.py caches`).
        keep_as_is = restore is not None and restore.exact
        mounts = CacheMounts(
            restore_tar=restore.tar if restore else None,
            size_mb=self._limits.cache_mb,
            save_to=None if keep_as_is else self._caches.incoming_path(name, scopes[0], build_id),
        )
        script = wrapper_script(restore.paths if restore else (), () if keep_as_is else roots, self._limits.cache_mb)
        return _CacheRun(key, roots, mounts, script, scopes[0], CacheWriter(build_id, facts.commit, facts.event))

    def _save_cache(self, name: str, cache_run: _CacheRun, outcome, output: BuildLog) -> None:
        """Store the cache a successful build left; a cache that cannot be kept never changes the verdict."""
        if cache_run.mounts.save_to is None:
            output.note(f"cache not saved: key {cache_run.key[:12]} was restored and is kept as it is")
        elif outcome.exit_code != 0:
            output.note("cache not saved: the build did not succeed")
        elif not outcome.cache_copied:
            output.note(f"cache not saved: {outcome.cache_problem}")
        else:
            try:
                output.note(self._caches.save(
                    name, cache_run.scope, cache_run.key, cache_run.mounts.save_to, cache_run.roots,
                    cache_run.writer,
                ))
            except OSError as exc:
                log.warning("cache save failed for repository %r", name, exc_info=True)
                output.note(f"cache not saved: could not store it on this node ({type(exc).__name__})")

    def _labels(self) -> dict[str, str]:
        """The labels of every container and volume of this executor; a build's add its id."""
        return {
            "pbft-ci.node": str(self._node_id),
            "pbft-ci.data": str(self._data_dir),
            "pbft-ci.executor": self._instance_id,
        }

    def _start_ready(self, key: tuple[str, str]) -> GatedContainer:
        """A spec build's container for image id and user, as run_container would start it, for the next build."""
        image_id, user = key
        return start_gated_container(self._sandbox(self._limits, user, self._labels()), image_id, role="ready")

    def _sandbox(self, limits: BuildConfig, user: str, labels: dict[str, str]) -> Sandbox:
        """What a build's containers are made with on this executor's engine; what they leave is
        removed by its janitor."""
        return Sandbox(self._client(), limits, user, self._identities, labels, self._remove_later)

    def _remove_later(self, removal) -> None:
        try:
            done = self._janitor.submit(functools.partial(self._removing, removal))
        except RuntimeError:
            # The executor is closing: remove it now, as the build's own last step.
            removal()
            return
        done.add_done_callback(_report_failed_removal)

    def _removing(self, removal) -> None:
        """`removal()`, done again once the engine answers if it was away (restarting): a
        build's containers and volumes must not stay on it until the node's next start."""
        try:
            removal()
        except requests.exceptions.ConnectionError:
            if not self._engine_answers(ENGINE_BACK_S):
                raise
            removal()

    def _client(self) -> docker.DockerClient:
        # Created on first use so that a node starts (and answers with error
        # results) even while the engine is down.
        with self._docker_guard:
            if self._docker is None:
                try:
                    self._docker = connect(self._engine)
                except docker.errors.DockerException as exc:
                    log.warning("node %s: build engine %s unavailable: %s", self._node_id, describe(self._engine), exc)
                    raise SandboxError(ENGINE_UNAVAILABLE, f"{exc}\n") from None
                log.info("node %s builds on %s", self._node_id, describe(self._engine))
            return self._docker


def remove_labelled_builds(client: docker.DockerClient, data_dir: Path) -> int:
    """Remove the containers (builds' and prepared ones), then the workspace and cache
    volumes, labelled with the node data directory `data_dir` (resolved, as an Executor
    labels them); return how many. For what a node killed with `kill -9` left: its own next
    start removes them (Executor.sweep_leftovers), and so does ./stopNetwork.sh for a node
    it finds dead."""
    label = {"label": f"pbft-ci.data={data_dir}"}
    removed = 0
    # Before the volumes they mount. One the engine removes meanwhile is gone already.
    for container in client.containers.list(all=True, filters=label, ignore_removed=True):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
            removed += 1
    for volume in client.volumes.list(filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)
            removed += 1
    return removed


def checkouts_root(data_dir: Path, room_bytes: int = 0) -> Path:
    """Where a node's builds are checked out before their files go to the engine: in memory
    (/dev/shm) when the host has one of at least `room_bytes` (its builds at once, each up to
    build.workspace_mb: a container's own /dev/shm has 64 MB), else beside the mirrors. A
    repository of 30,000 files took 5 s on disk and 2 s in memory, four nodes' builds at once
    several times that; the host copy lives only while its build runs. Named for the data
    directory, which no other node shares, and readable by this node's user alone."""
    memory = Path("/dev/shm")
    try:
        usable = os.access(memory, os.W_OK | os.X_OK) and _size_bytes(memory) >= room_bytes
    except OSError:
        usable = False
    if usable:
        return memory / f"pbft-ci-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]}"
    return data_dir / "workspaces"


def _size_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_blocks * info.f_frsize


# In a checkouts folder: the data directory it serves (build ids never start with a dot).
CHECKOUTS_OWNER_FILE = ".data-dir"


def make_checkouts_folder(root: Path, data_dir: Path) -> None:
    """Make the checkouts folder `root` if need be, and check that it is this node's own: in
    /dev/shm anyone may have made it first, and could then read and change the sources a build
    gets. It names the data directory it serves, for sweep_orphaned_checkouts."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise OSError(f"{root} is not this node's own (owner uid {info.st_uid}, mode {info.st_mode & 0o7777:o})")
    owner = root / CHECKOUTS_OWNER_FILE
    if not owner.exists():
        owner.write_text(str(data_dir))


def sweep_orphaned_checkouts(memory: Path = Path("/dev/shm")) -> None:
    """Remove the checkouts folders in `memory` of this user's data directories that are gone:
    a node killed during a build leaves its folder, and its data directory may go with no node
    ever started on it again (a test's, a node moved away). Any node starting on the host does it."""
    for root in memory.glob("pbft-ci-*"):
        try:
            info = root.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                continue
            served = Path((root / CHECKOUTS_OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not served.exists():
            shutil.rmtree(root, ignore_errors=True)


def _report_failed_removal(done) -> None:
    # The next start's sweep_leftovers removes what is left; say why it is there.
    if done.exception() is not None:
        log.warning("could not remove a finished build's containers", exc_info=done.exception())


def _without(environment: dict[str, str], secrets: dict[str, str]) -> dict[str, str]:
    """`environment` but the variables `secrets` set: a script exports its environment after the
    gate has set the secrets (builder/engine/sandbox.py), and must not replace one."""
    return {name: value for name, value in environment.items() if name not in secrets}


def _share(limits: BuildConfig, containers: int) -> BuildConfig:
    """Each container's limits when `containers` run at once (a step and the services): the
    build's processes' memory, CPUs and pids divided among them."""
    if containers == 1:
        return limits
    return dataclasses.replace(
        limits, memory_mb=max(limits.memory_mb // containers, 1), cpus=limits.cpus / containers,
        pids_limit=max(limits.pids_limit // containers, 1),
    )


def _spec_settings(
    limits: BuildConfig, image: str, user: str, timeout_s: float, spec: BuildSpec, network: str | None,
    environment: dict[str, str], secrets: BuildSecrets,
) -> list[str]:
    """The settings lines of a .pbft-ci.yml build, as it will run: three, and one more each for caches and artifacts."""
    timeout = f"timeout {timeout_s:g} s"
    if spec.timeout_s is not None and spec.timeout_s > limits.timeout_s:
        timeout += f" (the spec's {spec.timeout_s:g} s capped to the network's limit)"
    caching = spec.cache is not None and limits.cache_mb > 0
    lines = [
        f"image {image}, user {user}, {timeout}, {_network_settings(network)}, root file system read-only",
        _resource_settings(limits, with_workspace=True, with_cache=caching),
        _environment_settings(environment, secrets, _narrowing(spec, secrets)),
    ]
    if spec.cache is not None:
        paths = ", ".join(spec.cache.paths)
        if spec.cache.key_files:
            paths += f" (key files {', '.join(spec.cache.key_files)})"
        if caching:
            lines.append(
                f"cache {paths}: at most {limits.cache_mb} MB written to {OUT_DIR}, "
                f"{limits.cache_keep} kept per branch, tag or pull request on this node"
            )
        else:
            lines.append(f"cache {paths}: off on this node (build.cache_mb is 0)")
    if spec.services:
        share = _share(limits, 1 + len(spec.services))
        lines.append(
            f"services {', '.join(f'{service.name} ({service.image})' for service in spec.services)}: "
            f"each container of the build gets memory {share.memory_mb} MB, cpus {share.cpus:g}, "
            f"pids {share.pids_limit} of the build's; only the build's own containers reach them"
        )
    if spec.artifacts:
        lines.append(
            f"artifacts {', '.join(spec.artifacts)}: regular files taken after the build succeeds, "
            f"at most {limits.artifacts_mb} MB and {MAX_FILES} files, "
            f"those of the newest {limits.artifacts_keep} builds per repository kept on this node"
        )
    return lines


def _environment_settings(environment: dict[str, str], secrets: BuildSecrets, narrowing: str = "") -> str:
    """The build's variables with their values, but its secrets by name only (a variable the
    spec sets and a secret replaces is not shown either), and `narrowing`, which steps and
    services get fewer of them."""
    ci = [name for name in environment if name == "CI" or name.startswith("CI_")]
    shown = ", ".join(
        f"{name}={value}" for name, value in environment.items() if name not in ci and name not in secrets.values
    )
    line = f"environment {shown} (SOURCE_DATE_EPOCH is the commit's time), and CI and {len(ci) - 1} CI_ variables"
    if secrets.values or secrets.withheld:
        line += f"; {secrets.settings()}{narrowing}"
    return line


def _narrowing(spec: BuildSpec, secrets: BuildSecrets) -> str:
    """The steps and services whose `secrets:` lets them have only some of the build's, and which."""
    only = [
        f"{kind} {entry.name} {', '.join(narrowed(secrets.values, entry.secrets)) or 'none'}"
        for kind, entries in (("step", spec.steps), ("service", spec.services))
        for entry in entries
        if entry.secrets is not None
    ]
    return f" (only: {'; '.join(only)})" if only else ""


def _network_settings(network: str | None) -> str:
    if network is None:
        return "network none"
    return f"network {network} (outside only: not this host, not the peers)"


def _dockerfile_settings(
    limits: BuildConfig, tag: str, timeout_s: float, environment: dict[str, str], secrets: BuildSecrets,
) -> list[str]:
    """The settings of a Dockerfile build: `docker build` first, then the image run like a spec build."""
    return [
        f"docker build: network none, memory {limits.memory_mb} MB, timeout {timeout_s:g} s, "
        "Docker's defaults otherwise",
        f"run: image {tag}, user {limits.user}, timeout {timeout_s:g} s, network none, "
        f"root file system writable (the image's own, discarded), no /workspace tmpfs, "
        + _resource_settings(limits, with_workspace=False),
        f"run: {_environment_settings(environment, secrets)}",
    ]


def _resource_settings(limits: BuildConfig, *, with_workspace: bool, with_cache: bool = False) -> str:
    budget = memory_budget(limits, with_workspace=with_workspace, with_cache=with_cache)
    workspace = f"workspace {limits.workspace_mb} MB, " if with_workspace else ""
    return (
        f"memory {budget.breakdown()}, cpus {limits.cpus:g}, pids {limits.pids_limit}, "
        f"{workspace}tmp {limits.tmp_mb} MB, home {limits.home_mb} MB at {HOME_DIR}, "
        f"output cap {limits.output_cap_bytes} bytes"
    )


def _spec(path: Path, image: str) -> Spec:
    """What the build ran, as nodes agree on it and its attestation names it (pbft.build.Spec).
    A link is hashed as a link: following it would read this node's own files."""
    content = str(path.readlink()).encode() if path.is_symlink() else path.read_bytes()
    return Spec(path.name, hashlib.sha256(content).hexdigest(), image)


def _image_name(repository_name: str) -> str:
    """A Docker repository path component: lowercase alphanumerics joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", repository_name.lower()).strip("-") or "repository"


def _kill_quietly(container) -> None:
    """Kill a build's container; one that already stopped, or is gone, is left to its thread."""
    try:
        container.kill()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        pass
