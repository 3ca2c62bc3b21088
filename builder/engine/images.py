"""The images a build runs: found on the node's engine, or pulled from a registry the
network allows, and named by the registry's digest in the result.

A tag is a name that can move: two nodes that pulled `app:1` an hour apart may hold
different bytes under it. Where an image came from a registry, the digest of its
manifest (`RepoDigests`) is part of the result every node signs (pbft.build.ImageDigest),
so nodes that ran different bytes disagree visibly, each naming its digest. A reference
with a digest (`app@sha256:…`) runs exactly those bytes: the engine checks the manifest
against it when it pulls, and this module that the image it runs carries it.

A node pulls only from the registries the network names (`build.registries`), with the
credentials of its own file (`build.registry_auth_file`, Docker's config.json format),
once per reference however many builds ask at once. A pull happens before a build's
deadline starts; the image stays on the engine for the next build. An image that was
built on the engine (no registry digest) is used as it is, named by no digest.
"""

from __future__ import annotations

import base64
import json
import logging
import stat
import threading
from collections import OrderedDict
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from builder.plan.imageref import Reference, parse_reference
from builder.engine.imagekeep import Orphans, prune_every_repository, prune_images
from builder.engine.sandbox import SandboxError
from pbft.build import ImageDigest
from shared.config_build import BuildConfig
from shared.boundedread import MAX_SECRET_FILE_BYTES, read_bounded

log = logging.getLogger(__name__)

def load_registry_auth(path: Path | None) -> dict[str, dict[str, str]]:
    """Credentials per registry host from a Docker config.json (`{"auths": {host: {"auth":
    base64(user:password)}}}`, or `username` and `password`); ValueError naming the problem."""
    if path is None:
        return {}
    try:
        document = json.loads(read_bounded(path, MAX_SECRET_FILE_BYTES))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read registry credentials: {exc}") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        raise ValueError(f"{path}: must be a JSON object with an 'auths' object, as Docker's config.json")
    found = {}
    for host, entry in auths.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: auths[{host!r}] must be an object")
        if "auth" in entry:
            try:
                user, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise ValueError(f"{path}: auths[{host!r}].auth must be base64 of user:password") from None
        else:
            user, password = entry.get("username"), entry.get("password")
        if not (isinstance(user, str) and isinstance(password, str) and user):
            raise ValueError(f"{path}: auths[{host!r}] needs a user name and a password")
        found[host.removeprefix("https://").removeprefix("http://").rstrip("/")] = {"username": user, "password": password}
    return found


# What an operator does about an image a node lacks: each node builds on its own engine.
EVERY_ENGINE_NEEDS_IT = (
    "Every node's engine needs the image: a node pulls it only from a registry in build.registries that it "
    "reaches, else run docker pull or scripts/build-image.sh on every node's host"
)


class Images:
    """Resolves the images of builds on one engine, pulling what it lacks from the registries a
    build's limits allow (the order's `build:`, never the node's own file: a change through the
    order moves them on every node at the same sequence number)."""

    def __init__(self, *, auth: dict[str, dict[str, str]]):
        self._auth = auth
        self._guard = threading.Lock()
        self._pulling: dict[str, threading.Lock] = {}

    def resolve(self, client: docker.DockerClient, name: str, limits: BuildConfig) -> tuple[str, ImageDigest | None]:
        """The id of the image `name` names under `limits` (registries, require_digests), and its
        registry digest if it has one; SandboxError with a reason that is the same on every node
        that cannot get it."""
        try:
            reference = parse_reference(name)
        except ValueError as exc:
            raise SandboxError(f"image {name[:255]!r}: {exc}") from None
        if limits.require_digests and reference.digest is None:
            raise SandboxError(f"image {name}: this network runs images by digest only (name@sha256:...)")
        image = self._local(client, name)
        if image is None:
            image = self._pull(client, name, reference, frozenset(limits.registries))
        digest = self._digest(image, reference)
        if reference.digest is not None and digest != reference.digest:
            # The engine holds the name with other bytes than the digest names (never pulled by it).
            raise SandboxError(f"image {name}: the engine's image is not {reference.digest}")
        return image.id, None if digest is None else ImageDigest(name, digest)

    @staticmethod
    def _local(client, name: str):
        try:
            return client.images.get(name)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise SandboxError("docker error: could not inspect image", str(exc)) from None

    def _pull(self, client, name: str, reference: Reference, registries: frozenset[str]):
        if reference.registry not in registries:
            allowed = ", ".join(sorted(registries)) or "none"
            raise SandboxError(
                f"image not found: {name} (not on this node's engine, and {reference.registry} is not a registry "
                f"this network pulls from; build.registries: {allowed}). {EVERY_ENGINE_NEEDS_IT}"
            )
        with self._guard:
            lock = self._pulling.setdefault(name, threading.Lock())
        try:
            with lock:  # one pull per reference; builds that waited find the image then
                return self._pulled(client, name, reference)
        finally:
            # Names come from the specs of every repository: a lock nobody holds goes, so the
            # table holds the pulls under way and not every name ever pulled. (A build that
            # takes the lock just as it goes may pull beside a newcomer: twice, not wrongly.)
            with self._guard:
                if not lock.locked() and self._pulling.get(name) is lock:
                    del self._pulling[name]

    def _pulled(self, client, name: str, reference: Reference):
        """The image `name`, pulled unless a build that held the lock before pulled it."""
        image = self._local(client, name)
        if image is not None:
            return image
        log.info("pulling image %s from %s", name, reference.registry)
        try:
            client.images.pull(
                reference.repository, tag=reference.digest or reference.tag or "latest",
                auth_config=self._auth.get(reference.registry),
            )
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise SandboxError(f"image {name} could not be pulled from {reference.registry}", str(exc)) from None
        image = self._local(client, name)
        if image is None:
            raise SandboxError(f"image {name} could not be pulled from {reference.registry}")
        return image

    @staticmethod
    def _digest(image, reference: Reference) -> str | None:
        """The digest under which `reference`'s repository gave the engine this image, if it did."""
        for entry in image.attrs.get("RepoDigests") or ():
            repository, _, digest = entry.rpartition("@")
            if repository in (reference.repository, f"{reference.registry}/{reference.path}"):
                return digest
        return None


# A Dockerfile larger than this is built every time, never keyed.
MAX_DOCKERFILE_BYTES = 256 * 1024
BUILT_KEPT = 16


def base_images(dockerfile: str) -> tuple[str, ...] | None:
    """The images a Dockerfile builds from (each FROM's and COPY --from's that is not one of its
    own stages), or None when they cannot be read from its text alone: a name made of ARGs, or a
    RUN --mount, whose contents no name says."""
    bases: list[str] = []
    stages: set[str] = set()
    logical = dockerfile.replace("\\\r\n", " ").replace("\\\n", " ")
    for line in logical.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if any(word.startswith("--mount") for word in words):
            return None
        if words[0].upper() == "FROM":
            rest = [word for word in words[1:] if not word.startswith("--")]
            if not rest:
                return None
            if len(rest) >= 3 and rest[1].lower() == "as":
                stages.add(rest[2].lower())
            named = [rest[0]]
        else:
            named = [word.split("=", 1)[1] for word in words[1:] if word.startswith("--from=")]
        for name in named:
            if "$" in name:
                return None
            if name.lower() not in stages and name != "scratch" and not name.isdecimal():
                bases.append(name)
    return tuple(bases)


class BuiltImages:
    """The Dockerfile images this engine built lately, each with what it was built from: the
    commit (its whole tree is the context), the ids its base images had, the limits. A build of
    the same tag from the same of all three is the image already built (a cached `docker build`
    would give it again, at 60 ms or so a node): it is run as it is, if the engine still holds
    it under that tag with that id. Node-local and only an optimization: a node that restarted,
    or a Dockerfile whose bases its text does not name, builds as before."""

    def __init__(self, keep: int = BUILT_KEPT):
        self._keep = keep
        self._known: OrderedDict[str, tuple[tuple, str, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        # Every image this engine's builds made, for those no tag names later (imagekeep.py).
        self.made = Orphans()

    def prune(self, client: docker.DockerClient, repository: str, keep: int) -> None:
        """What a node's engine keeps of a repository's Dockerfile images: its `keep` newest
        tags, and of the images this node made, those a tag names (builder/engine/imagekeep.py)."""
        prune_images(client, repository, keep)
        self.made.remove(client)

    @staticmethod
    def prune_all(client: docker.DockerClient, keep: int) -> list[str]:
        """`prune` for every repository's images on the engine, at a node's start."""
        return prune_every_repository(client, keep)

    @staticmethod
    def key(client: docker.DockerClient, context: Path, commit: str, limits: BuildConfig) -> tuple | None:
        """What the image of `context` at `commit` is built from, or None if it cannot be said."""
        dockerfile = context / "Dockerfile"
        try:
            # A regular file only: the commit's, never a link out of the checkout nor a FIFO to block on.
            found = dockerfile.lstat()
            if not commit or not stat.S_ISREG(found.st_mode) or found.st_size > MAX_DOCKERFILE_BYTES:
                return None
            bases = base_images(dockerfile.read_text(errors="replace"))
            if bases is None:
                return None
            return commit, tuple(client.images.get(name).id for name in bases), limits
        except (OSError, docker.errors.DockerException, requests.exceptions.RequestException):
            return None

    def get(self, client: docker.DockerClient, tag: str, key: tuple | None) -> tuple[str, tuple[str, ...]] | None:
        """The id and command of the image built as `tag` from `key`, if the engine holds it still."""
        with self._lock:
            known = self._known.get(tag)
        if key is None or known is None or known[0] != key:
            return None
        try:
            found = client.images.get(tag)
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return None
        return (known[1], known[2]) if found.id == known[1] else None

    def remember(self, tag: str, key: tuple | None, image_id: str, command: tuple[str, ...]) -> None:
        if key is None:
            return
        with self._lock:
            self._known.pop(tag, None)
            self._known[tag] = (key, image_id, command)
            while len(self._known) > self._keep:
                self._known.popitem(last=False)
