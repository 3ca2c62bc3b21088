"""A Dockerfile image a node built is not built again from the same commit, base images and
limits (builder/engine/images.py `BuiltImages`), on the real engine; and which images a
Dockerfile's text names as its bases (`base_images`)."""

import io
import os
import uuid

import pytest

from builder.engine.images import BuiltImages, base_images
from shared.config_build import BuildConfig
from tests.builder.executor_helpers import build, log_text, remove_images


@pytest.mark.parametrize("text, bases", [
    ("FROM busybox\nRUN true\n", ("busybox",)),
    ("FROM --platform=linux/amd64 golang:1.22 AS build\nFROM scratch\nCOPY --from=build /x /x\n", ("golang:1.22",)),
    ("FROM a AS one\nFROM one\nCOPY --from=0 /x /x\nCOPY --from=tools:1 /y /y\n", ("a", "tools:1")),
    ("# syntax=docker/dockerfile:1\nfrom \\\n  busybox\n", ("busybox",)),
    # What the text alone does not say: a name made of ARGs, a mount's contents.
    ("ARG BASE=busybox\nFROM $BASE\n", None),
    ("FROM busybox\nCOPY --from=${TOOLS} /x /x\n", None),
    ("FROM busybox\nRUN --mount=type=cache,target=/c make\n", None),
])
def test_the_base_images_a_dockerfile_names(text, bases):
    assert base_images(text) == bases


@pytest.mark.docker
async def test_an_image_built_from_the_same_commit_and_base_images_is_not_built_again(
        make_executor, git_repo, build_ids, docker_client, default_image):
    base = f"pbft-ci-test/base-{uuid.uuid4().hex[:8]}:1"
    docker_client.images.get(default_image).tag(base)
    head = git_repo.commit("master", {"Dockerfile": f'FROM {base}\nRUN echo layer > /tmp/x\nCMD ["echo", "ran"]\n'})
    tag = f"pbft-ci-build/example:{head[:12]}"
    moved_id = None
    try:
        executor = make_executor()
        first = await build(executor, git_repo, build_ids)
        again = await build(executor, git_repo, build_ids)
        # The base's name now means other bytes: the image is built again, from them.
        moved, _ = docker_client.images.build(fileobj=io.BytesIO(f"FROM {default_image}\nENV MOVED=1\n".encode()),
                                              tag=base, rm=True, network_mode="none")
        moved_id = moved.id
        rebuilt = await build(executor, git_repo, build_ids)
        elsewhere = await build(make_executor(data_dir="other"), git_repo, build_ids)
    finally:
        remove_images(docker_client, tag, base, *([moved_id] if moved_id else []))

    for result in (first, again, rebuilt, elsewhere):
        assert (result.status, result.exit_code) == ("success", 0), log_text(result)
        assert "ran" in log_text(result).splitlines()
    said = f"== image {tag}: built on this node from commit {head[:12]} and the same base images before; not built again"
    assert said not in log_text(first)
    assert said in log_text(again)
    assert said not in log_text(rebuilt), "its base moved"
    assert said not in log_text(elsewhere), "another node's engine built nothing yet"
    assert first.agreed() == again.agreed() == rebuilt.agreed() == elsewhere.agreed()


def test_a_dockerfile_that_is_not_a_regular_file_of_the_checkout_is_never_read(tmp_path, docker_client):
    """A link out of the checkout, or a FIFO a read would block on: the image is built as ever."""
    (tmp_path / "secret").write_text("FROM busybox\n")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "Dockerfile").symlink_to(tmp_path / "secret")
    piped = tmp_path / "piped"
    piped.mkdir()
    os.mkfifo(piped / "Dockerfile")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "Dockerfile").write_text("FROM scratch\n")
    limits = BuildConfig()

    assert BuiltImages.key(docker_client, linked, "c" * 40, limits) is None
    assert BuiltImages.key(docker_client, piped, "c" * 40, limits) is None
    assert BuiltImages.key(docker_client, plain, "c" * 40, limits) == ("c" * 40, (), limits)
    assert BuiltImages.key(docker_client, plain, "", limits) is None
