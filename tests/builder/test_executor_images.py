"""Images from a real registry (Debian's docker-registry, started by the test): a node pulls
an image it lacks from an allowed registry, names it by digest in its result, runs exactly
the bytes an `@sha256:` reference names, and two nodes that pulled a moved tag disagree,
each naming its digest."""

import base64
import json

import docker.errors
import pytest
import yaml

from builder.plan.imageref import parse_reference
from builder.engine.images import EVERY_ENGINE_NEEDS_IT, load_registry_auth
from pbft.build import ImageDigest
from shared.config_build import BuildConfig
from tests.builder.executor_helpers import DEFAULT_IMAGE, build, log_text

pytestmark = pytest.mark.docker
# `registry` comes first in each test's fixtures: set up first, it is torn down (its images
# removed) after the executors are closed, whose prepared containers use those images.


def make_image(docker_client, version: str) -> str:
    """A new image: the default one with /version holding `version`; its id."""
    container = docker_client.containers.create(
        DEFAULT_IMAGE, ["sh", "-c", f"echo {version} > /version"], user="0:0", network_mode="none",
    )
    try:
        container.start()
        assert container.wait(timeout=30)["StatusCode"] == 0
        image = container.commit(changes=["LABEL pbft-ci.test-image=1"])
    finally:
        container.remove(force=True)
    return image.id


def push(docker_client, image_id: str, name: str) -> str:
    """Push image `image_id` as `name` (host/path:tag); forget the name locally, as a node that
    never pulled it; return the registry's digest for it."""
    repository, tag = name.rsplit(":", 1)
    docker_client.images.get(image_id).tag(repository, tag)
    for line in docker_client.images.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    digest = next(entry.split("@")[1] for entry in docker_client.images.get(name).attrs["RepoDigests"]
                  if entry.startswith(repository + "@"))
    forget(docker_client, name)
    return digest


def forget(docker_client, name: str) -> None:
    """Remove the name and its digest from the engine (the image's bytes may stay, under other names)."""
    repository = name.rsplit(":", 1)[0]
    image = docker_client.images.get(name)
    for entry in image.attrs.get("RepoDigests") or ():
        if entry.startswith(repository + "@"):
            docker_client.images.remove(entry, force=True)
    try:
        docker_client.images.remove(name, force=True)
    except docker.errors.ImageNotFound:
        pass


def version_spec(image: str) -> str:
    return yaml.safe_dump({"image": image, "commands": ["echo version $(cat /version)"]})


async def test_a_node_pulls_an_image_it_lacks_and_names_its_digest(
    registry, make_executor, git_repo, build_ids, docker_client
):
    name = f"{registry}/pbft/app:1"
    digest = push(docker_client, make_image(docker_client, "one"), name)
    git_repo.commit("master", {".pbft-ci.yml": version_spec(name)})
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(name)

    executor = make_executor(registries=(registry,))
    result = await build(executor, git_repo, build_ids)

    assert result.status == "success", log_text(result)
    assert "version one" in log_text(result)
    assert result.images == (ImageDigest(name, digest),)
    assert result.agreed()["images"] == [{"name": name, "digest": digest}]
    # No pull under way, no lock kept: the table does not grow with every name a spec pulls.
    assert executor.engine._images._pulling == {}
    # Pulled once: the next build finds it on the engine.
    again = await build(make_executor(registries=(registry,), data_dir="again"), git_repo, build_ids)
    assert again.images == result.images and again.agreed_key() == result.agreed_key()


async def test_a_moved_tag_makes_two_nodes_disagree_and_a_digest_runs_exactly_its_bytes(
    registry, make_executor, git_repo, build_ids, docker_client
):
    name = f"{registry}/pbft/app:stable"
    first = push(docker_client, make_image(docker_client, "one"), name)
    git_repo.commit("master", {".pbft-ci.yml": version_spec(name)})
    node_a = await build(make_executor(registries=(registry,), data_dir="a"), git_repo, build_ids)
    # The tag moves to new bytes before the second node pulls it.
    forget(docker_client, name)
    second = push(docker_client, make_image(docker_client, "two"), name)
    node_b = await build(make_executor(registries=(registry,), data_dir="b"), git_repo, build_ids)

    assert first != second
    assert "version one" in log_text(node_a) and "version two" in log_text(node_b)
    assert node_a.images == (ImageDigest(name, first),) and node_b.images == (ImageDigest(name, second),)
    # Same status, exit code, commit and spec: only the bytes differ, and the results do.
    assert (node_a.status, node_a.exit_code, node_a.commit, node_a.spec) == (
        node_b.status, node_b.exit_code, node_b.commit, node_b.spec)
    assert node_a.agreed_key() != node_b.agreed_key()

    pinned = f"{registry}/pbft/app@{first}"
    git_repo.commit("master", {".pbft-ci.yml": version_spec(pinned)})
    by_digest = await build(make_executor(registries=(registry,), data_dir="c"), git_repo, build_ids)
    assert by_digest.status == "success", log_text(by_digest)
    assert "version one" in log_text(by_digest)
    assert by_digest.images == (ImageDigest(pinned, first),)


async def test_images_from_elsewhere_or_by_tag_where_digests_are_required_are_refused(
    registry, make_executor, git_repo, build_ids
):
    git_repo.commit("master", {".pbft-ci.yml": version_spec(f"{registry}/pbft/absent:1")})
    not_allowed = await build(make_executor(), git_repo, build_ids)
    assert not_allowed.status == "error"
    assert not_allowed.reason == (
        f"image not found: {registry}/pbft/absent:1 (not on this node's engine, and {registry} is not a registry "
        "this network pulls from; build.registries: none). " + EVERY_ENGINE_NEEDS_IT
    )
    absent = await build(make_executor(registries=(registry,)), git_repo, build_ids)
    assert (absent.status, absent.reason) == ("error", f"image {registry}/pbft/absent:1 could not be pulled from {registry}")

    git_repo.commit("master", {".pbft-ci.yml": version_spec(DEFAULT_IMAGE)})
    by_tag = await build(make_executor(require_digests=True), git_repo, build_ids)
    assert by_tag.reason == f"image {DEFAULT_IMAGE}: this network runs images by digest only (name@sha256:...)"


async def test_the_registries_and_the_digest_rule_are_the_orders_not_the_nodes_own(
    registry, make_executor, git_repo, build_ids
):
    """A change of `build:` through the order (BuildOrder.limits) moves them on every node at the
    same sequence number, whatever each node's configuration file said when it started."""
    git_repo.commit("master", {".pbft-ci.yml": version_spec(f"{registry}/pbft/absent:1")})
    pulled = await build(make_executor(), git_repo, build_ids, limits=BuildConfig(registries=(registry,)))
    assert (pulled.status, pulled.reason) == (
        "error", f"image {registry}/pbft/absent:1 could not be pulled from {registry}")

    git_repo.commit("master", {".pbft-ci.yml": version_spec(DEFAULT_IMAGE)})
    by_tag = await build(make_executor(require_digests=True), git_repo, build_ids, limits=BuildConfig())
    assert by_tag.status == "success", log_text(by_tag)
    refused = await build(make_executor(), git_repo, build_ids, limits=BuildConfig(require_digests=True))
    assert refused.reason == f"image {DEFAULT_IMAGE}: this network runs images by digest only (name@sha256:...)"


@pytest.mark.parametrize("text, parsed", [
    ("busybox", ("docker.io", "library/busybox", None, None)),
    ("pbft-ci/busybox:latest", ("docker.io", "pbft-ci/busybox", "latest", None)),
    ("127.0.0.1:5000/a/b:v1", ("127.0.0.1:5000", "a/b", "v1", None)),
    ("ghcr.io/o/p:t@sha256:" + "a" * 64, ("ghcr.io", "o/p", "t", "sha256:" + "a" * 64)),
])
def test_references_are_read_as_docker_reads_them(text, parsed):
    reference = parse_reference(text)
    assert (reference.registry, reference.path, reference.tag, reference.digest) == parsed


@pytest.mark.parametrize("text", ["Upper/x", "x::y", "x@sha256:abc", "a b", "", "x" * 256, "-x", "bad host/x/y"])
def test_malformed_references_are_refused(text):
    with pytest.raises(ValueError):
        parse_reference(text)


def test_registry_credentials_are_read_from_a_docker_config_json(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {
        "127.0.0.1:5000": {"auth": base64.b64encode(b"ci:s3cret:with-colon").decode()},
        "https://ghcr.io/": {"username": "bot", "password": "token"},
    }}))
    assert load_registry_auth(path) == {
        "127.0.0.1:5000": {"username": "ci", "password": "s3cret:with-colon"},
        "ghcr.io": {"username": "bot", "password": "token"},
    }
    assert load_registry_auth(None) == {}
    for bad, problem in [
        ("not json", "cannot read registry credentials"),
        ('{"auths": []}', "must be a JSON object with an 'auths' object"),
        ('{"auths": {"h": {"auth": "%%%"}}}', "must be base64 of user:password"),
        ('{"auths": {"h": {"username": "u"}}}', "needs a user name and a password"),
    ]:
        path.write_text(bad)
        with pytest.raises(ValueError, match=problem):
            load_registry_auth(path)
