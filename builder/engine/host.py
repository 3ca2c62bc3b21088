"""One node's Docker engine, as its executor uses it: the connection (made on first use, so a
node starts and answers with error results while the engine is down), the labels that make this
executor's containers its own, the images it pulls, the build network, the prepared containers,
and the removal of what finished builds leave.

The engine is the environment's, or the one the configuration names; only the operator's
configuration chooses it (shared/config.py,
`build.docker_host` or a node's own `docker_host`); nothing from a webhook or
a peer reaches it. Access to a Docker engine is root on its machine, so a
tcp:// engine is reached only with TLS both ways (the node checks the engine
against the configured CA, the engine checks the node's client certificate),
and ssh:// through the SDK's paramiko transport, which refuses a host whose
key is not in the node user's ~/.ssh/known_hosts and logs in with that
user's keys (or ~/.ssh/config's IdentityFile for the host). Not through the
`ssh` command (`use_ssh_client`): its connection cannot half-close, which
the end of a build's script needs (builder/engine/attach.py).

Everything the executor does on the engine goes through `DockerEngine` (the `Engine` protocol of
builder/engine/__init__.py); the sandbox, steps and services modules make the containers."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Mapping

import docker
import docker.constants
import docker.errors
import docker.tls
import requests.exceptions

from builder.engine.identity import Identities
from builder.engine.images import BuiltImages, Images
from builder.engine.network import BuildNetwork
from builder.engine.ready import ReadyContainers
from builder.engine.container import ContainerJob, run_container
from builder.engine.gate import GatedContainer, start_gated_container, start_image_gate
from builder.engine.sandbox import (
    ContainerOutcome,
    Hooks,
    RunAs,
    Sandbox,
    SandboxError,
    build_image,
    check_image,
    kill_quietly,
)
from builder.engine.steps import StepsJob, StepsOutcome, run_steps
from builder.settings import ExecutorSettings
from shared.config import DockerEngineConfig
from shared.config_build import BuildConfig

log = logging.getLogger(__name__)

ENGINE_UNAVAILABLE = "docker engine unavailable"
# How many Dockerfile images an engine remembers having built (DockerEngine._built_images).
BUILT_IMAGES_KEPT = 64
# How long a build waits for its container still starting in the background (`ready.py`)
# before it starts one of its own: a start takes 0.3-1.5 s on a busy two-core machine.
READY_WAIT_S = 5.0
# What the engine's calls raise when it does not answer (down, or gone away between a build's
# steps), and when it refuses a call: the executor catches them without speaking the Docker SDK.
ENGINE_DOWN = requests.exceptions.ConnectionError
ENGINE_FAILED = docker.errors.DockerException


class DockerEngine:
    """The engine of a node, whose data directory labels what it makes."""

    def __init__(self, settings: ExecutorSettings, client=None, inboxes: Path | None = None):
        """The engine `settings.engine` names, unless `client` (tests) replaces the connection.
        `inboxes`: where its gated containers' inboxes go (Sandbox.inboxes) if it runs on this host."""
        self._config = settings.engine
        self._inboxes = inboxes if on_this_host(self._config) else None
        self._data_dir = data_dir = settings.data_dir
        self._node_id = node_id = settings.node_id
        self._docker = client
        self._owns_docker = client is None
        self._guard = threading.Lock()
        self.closing = False
        # Containers carry it so that close() finds this executor's builds only,
        # even with several nodes (or test runs) sharing one engine.
        self.instance_id = uuid.uuid4().hex
        self._images = Images(auth=dict(settings.registry_auth))
        # The passwd and group files made per image, on the engine (builder/engine/identity.py).
        self._identities = Identities(self.labels())
        self._network = BuildNetwork(data_dir, settings.peer_hosts)
        self._network_made = False  # whether a build ever ran with a network: close() removes it
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
        self.ready = ReadyContainers(self._start_ready, thread_name=f"ready-node{node_id}")
        # The Dockerfile images built lately, and how often (at most BUILT_IMAGES_KEPT, the least
        # recently built dropped first). A Dockerfile build's container is prepared only for an
        # image built before: most pushes change the image (the sources are in it), and a
        # container started for an image no build comes for again costs a start and a removal.
        self._built_images: OrderedDict[str, int] = OrderedDict()
        self._dockerfile_images = BuiltImages()
        self._images_keep = settings.limits.images_keep

    def client(self) -> docker.DockerClient:
        with self._guard:
            if self._docker is None:
                try:
                    self._docker = connect(self._config)
                except docker.errors.DockerException as exc:
                    log.warning("node %s: build engine %s unavailable: %s", self._node_id, describe(self._config), exc)
                    raise SandboxError(ENGINE_UNAVAILABLE, f"{exc}\n") from None
                log.info("node %s builds on %s", self._node_id, describe(self._config))
            return self._docker

    def labels(self) -> dict[str, str]:
        """The labels of every container and volume of this executor; a build's add its id."""
        return {
            "pbft-ci.node": str(self._node_id),
            "pbft-ci.data": str(self._data_dir),
            "pbft-ci.executor": self.instance_id,
        }

    def sandbox(self, who: RunAs) -> Sandbox:
        """What a build's containers are made with on this engine; what they leave is removed by its janitor."""
        return Sandbox(self.client(), who.limits, who.user, self._identities, who.labels, self._remove_later,
                       inboxes=self._inboxes, hostname=who.hostname, build_path=who.build_path)

    def run(self, job: ContainerJob, who: RunAs, hooks: Hooks = Hooks(), ready: GatedContainer | None = None,
            ) -> ContainerOutcome:
        """One build container to its end (builder/engine/container.py); `ready`, a container
        take_ready gave, is used instead of starting one."""
        return run_container(self.sandbox(who), job, hooks, ready)

    def run_steps(self, job: StepsJob, who: RunAs, hooks: Hooks) -> StepsOutcome:
        """A pipeline's steps and services to their end (builder/engine/steps.py)."""
        return run_steps(self.sandbox(who), job, hooks)

    def take_ready(
        self, image_id: str, user: str, limits: BuildConfig, command: tuple[str, ...] | None = None,
    ) -> GatedContainer | None:
        """A container started earlier for a build of this image and user under these limits
        (the order's, which a change of `build:` moves), if one waits: a spec build's gate, or
        with `command` (the image's own) a Dockerfile build's."""
        return self.ready.take((image_id, user, limits, command), wait_s=READY_WAIT_S)

    def prepare_ready(
        self, image_id: str, user: str, limits: BuildConfig, command: tuple[str, ...] | None = None,
    ) -> None:
        """Start the next build's container of this image, user, limits and command (in the
        background); with `command`, only for a Dockerfile image this engine has built twice."""
        if command is not None:
            with self._guard:
                if self._built_images.get(image_id, 0) < 2:
                    return
        self.ready.prepare((image_id, user, limits, command))

    def image(self, name: str, digests: list, limits: BuildConfig) -> str:
        """The id of image `name`, pulled if the engine lacks it from a registry the order's
        `limits` allow; its registry digest, if it has one, is added to `digests`."""
        image_id, digest = self._images.resolve(self.client(), name, limits)
        if digest is not None:
            digests.append(digest)
        return image_id

    def build_image(
        self, context: Path, tag: str, limits: BuildConfig, timeout_s: float, commit: str = "",
    ) -> tuple[str, str, tuple[str, ...]]:
        """A Dockerfile build's image, built under the order's `limits`: its `docker build`
        output, the id of the image and the command it runs (ENTRYPOINT and CMD). An image this
        engine built from the same `commit`, base images and limits is not built again
        (images.BuiltImages): its output then says so."""
        client = self.client()
        key = self._dockerfile_images.key(client, context, commit, limits)
        known = self._dockerfile_images.get(client, tag, key)
        repository, _, version = tag.rpartition(":")
        if known is not None:
            try:
                # Tagged again, as a cached `docker build` would: the image is in use, and a
                # node sharing this engine does not count it among the old ones (imagekeep.py).
                client.api.tag(known[0], repository, version)
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                known = None  # gone meanwhile, or the engine went away: build it as if unknown
        if known is not None:
            image_id, command = known
            output = (f"== image {tag}: built on this node from commit {commit[:12]} and the same base images "
                      "before; not built again\n")
        else:
            output, built_id = build_image(client, context=context, tag=tag, limits=limits, timeout_s=timeout_s)
            image_id, command = check_image(client, tag)
            self._dockerfile_images.remember(tag, key, image_id, command)
            # Another node on this engine may build the same tag at once and tag its own
            # image last, now or after this check: ours is then named by nothing (imagekeep.Orphans).
            self._dockerfile_images.made.add(built_id)
        self._remove_later(functools.partial(self._dockerfile_images.prune, client, repository, limits.images_keep))
        with self._guard:
            self._built_images[image_id] = self._built_images.pop(image_id, 0) + 1
            while len(self._built_images) > BUILT_IMAGES_KEPT:
                self._built_images.popitem(last=False)
        return output, image_id, command

    def network_name(self, peer_hosts: tuple[str, ...] = ()) -> str:
        """The build network networked builds join, made (with its rules) if need be, that
        reaches none of `peer_hosts` (the build's document's nodes and clients) either."""
        self._network_made = True
        return self._network.ensure(self.client(), peer_hosts).name

    def answers(self, within_s: float) -> bool:
        """Whether the engine answers within `within_s` (not once the executor closes)."""
        deadline = time.monotonic() + within_s
        while not self.closing:
            try:
                self.client().ping()
                return True
            except (SandboxError, docker.errors.DockerException, requests.exceptions.RequestException):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.5)
        return False

    def remove_leftovers(self) -> int:
        """Remove what a killed earlier process of this node left on the engine (containers,
        volumes, the build network) and every repository's Dockerfile images beyond
        `images_keep`; how many containers and volumes."""
        removed = remove_labelled_builds(self.client(), self._data_dir)
        # Images carry no node's label: each repository's old ones, whoever built them (imagekeep.py).
        self._dockerfile_images.prune_all(self.client(), self._images_keep)
        # The network and its rules come back with the next networked build.
        self._network.remove(self.client())
        return removed

    def close(self) -> None:
        """Remove the prepared containers, kill this executor's running builds, then let go of the engine.

        A cancelled build leaves its worker thread waiting on the container;
        killing it lets the thread remove the container and the workspace
        right away instead of at the build's deadline.
        """
        self.closing = True  # builds it kills below are not run again
        self.ready.close()
        if self._docker is None:
            self._janitor.shutdown(wait=True)
            return
        try:
            running = self._docker.containers.list(filters={"label": f"pbft-ci.executor={self.instance_id}"})
        except docker.errors.DockerException:
            log.warning("could not list running builds of node %s", self._node_id, exc_info=True)
            running = []
        for container in running:
            # One that exited on its own meanwhile is removed by its thread.
            kill_quietly(container)
        # Finished builds' containers go before the engine connection does, then the images
        # this node built that nothing names.
        self._janitor.shutdown(wait=True)
        self._dockerfile_images.made.remove(self._docker, grace_s=0.0)
        try:
            self._identities.remove_all(self._docker)
        except docker.errors.DockerException:
            log.warning("could not remove the identity volumes of node %s", self._node_id, exc_info=True)
        if self._network_made:
            # A stopped node leaves no rules behind; the network goes first,
            # and the rules stay if it cannot (a build may still be attached).
            try:
                self._network.remove(self._docker)
            except docker.errors.DockerException:
                log.warning("could not remove the build network of node %s", self._node_id, exc_info=True)
        if self._owns_docker:
            self._docker.close()
            self._docker = None

    def _start_ready(self, key: tuple[str, str, BuildConfig, tuple[str, ...] | None]) -> GatedContainer:
        """A build's container for image id, user, limits and command, as run_container would
        start it, for the next build: a spec build's gate, or a Dockerfile build's."""
        image_id, user, limits, command = key
        sandbox = self.sandbox(RunAs(limits, user, self.labels()))
        if command is None:
            return start_gated_container(sandbox, image_id, "ready")
        return start_image_gate(sandbox, image_id, command)

    def _remove_later(self, removal: Callable[[], None]) -> None:
        try:
            done = self._janitor.submit(functools.partial(self._removing, removal))
        except RuntimeError:
            # The executor is closing: remove it now, as the build's own last step.
            removal()
            return
        done.add_done_callback(_report_failed_removal)

    def _removing(self, removal: Callable[[], None]) -> None:
        """`removal()`, done again once the engine answers if it was away (restarting): a
        build's containers and volumes must not stay on it until the node's next start."""
        try:
            removal()
        except requests.exceptions.ConnectionError:
            if not self.answers(ENGINE_BACK_S):
                raise
            removal()


# How long a build whose engine went away, and a removal that found it gone, wait for it to
# answer again: a service restart takes seconds, an upgrade may take a minute.
ENGINE_BACK_S = 60.0


def remove_labelled_builds(client: docker.DockerClient, data_dir: Path) -> int:
    """Remove the containers (builds' and prepared ones), then the workspace and cache
    volumes, labelled with the node data directory `data_dir` (resolved, as an executor
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


def _report_failed_removal(done) -> None:
    # The next start's sweep_leftovers removes what is left; say why it is there.
    if done.exception() is not None:
        log.warning("could not remove a finished build's containers", exc_info=done.exception())


def connect(engine: DockerEngineConfig) -> docker.DockerClient:
    """A client of `engine`; raises docker.errors.DockerException when it does not answer.

    The engine is asked for its API version here, so a wrong address, a
    refused certificate or a failed ssh login surfaces at once.
    """
    if not engine.host:
        return docker.from_env()
    tls = False
    if engine.tls is not None:
        tls = docker.tls.TLSConfig(
            client_cert=(str(engine.tls.cert_file), str(engine.tls.key_file)),
            ca_cert=str(engine.tls.ca_file),
            verify=True,
        )
    client = None
    try:
        # Any version will do until the engine is asked which it speaks, below;
        # a version given here means the constructor sends no request yet (over
        # ssh it does log in).
        client = docker.DockerClient(
            base_url=engine.host, tls=tls, version=docker.constants.MINIMUM_DOCKER_API_VERSION,
        )
        # Without this, requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
        # replace the configured CA (the engine would then be trusted with
        # any certificate of a public CA), and HTTPS_PROXY route the API
        # elsewhere. The configuration alone says whom the node talks to.
        client.api.trust_env = False
        # What version="auto" does, once the session trusts only the configured CA.
        client.api._version = client.api.version(api_version=False)["ApiVersion"]
    except Exception as exc:
        if client is not None:
            client.close()
        # requests' and paramiko's own errors (a refused certificate, no route) are no DockerException.
        raise docker.errors.DockerException(f"{engine.host} did not answer: {exc}") from exc
    return client


def on_this_host(engine: DockerEngineConfig, environment: Mapping[str, str] = os.environ) -> bool:
    """Whether `engine` runs on this machine, so that a path of the node's names the same folder
    for the engine: reached through a unix socket, the configured one or (none configured) the
    environment's (DOCKER_HOST, or the default socket). An engine over tcp:// or ssh:// is taken
    to be elsewhere, even on loopback; the sources then go through the API."""
    address = engine.host or environment.get("DOCKER_HOST", "")
    return not address or address.startswith("unix://")


def describe(engine: DockerEngineConfig) -> str:
    """The engine as a node's log names it."""
    return engine.host or "the environment's engine (DOCKER_HOST or the local socket)"


def missing_support(engine: DockerEngineConfig) -> str | None:
    """Why this machine cannot reach `engine` at all, or None.

    The SDK's ssh transport needs paramiko and says so only at the first
    build; a node says it at start.
    """
    if engine.host.startswith("ssh://") and importlib.util.find_spec("paramiko") is None:
        return (f"{engine.host} needs the paramiko package for the docker SDK's ssh support "
                "(.venv/bin/pip install paramiko)")
    return None
