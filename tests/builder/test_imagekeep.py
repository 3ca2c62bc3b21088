"""A node's engine keeps the newest `build.images_keep` Dockerfile images of each repository
(builder/engine/imagekeep.py): which tags are stale, what the real engine removes and refuses,
the executor pruning after its builds, a reused image counting as new, and the images nodes
sharing an engine made of one tag at once, which nothing names after."""

import asyncio
import io
import uuid
from datetime import datetime, timedelta, timezone

import docker.errors
import pytest

from builder.engine.imagekeep import Orphans, prune_images, stale_tags, tagged_at
from tests.builder.executor_helpers import build, log_text, remove_images

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def image(*tags: str, tagged: str | None = None, created: str = "2026-11-01T00:00:00Z") -> dict:
    return {"RepoTags": list(tags), "Created": created,
            "Metadata": {"LastTagTime": tagged or "0001-01-01T00:00:00Z"}}


def hours_ago(hours: float) -> str:
    return (NOW - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def test_when_an_image_was_last_tagged_is_read_to_the_microsecond_and_falls_back_to_its_making():
    assert tagged_at(image(tagged="2026-11-30T18:55:22.123456789Z")) == datetime(
        2026, 11, 30, 18, 55, 22, 123456, tzinfo=timezone.utc)
    assert tagged_at(image(tagged="2026-11-30T18:55:22+01:00")) == datetime(2026, 11, 30, 17, 55, 22, tzinfo=timezone.utc)
    # Never tagged since it was made: its making counts; nothing readable: the oldest of all.
    assert tagged_at(image(created="2026-11-29T01:02:03.5Z")) == datetime(2026, 11, 29, 1, 2, 3, 500000, tzinfo=timezone.utc)
    assert tagged_at({"Created": "yesterday", "Metadata": None}) == datetime.min.replace(tzinfo=timezone.utc)


def test_all_but_the_newest_tags_of_the_repository_are_stale_unless_tagged_within_the_grace():
    images = [
        image("pbft-ci-build/app:aaaa", tagged=hours_ago(5)),
        image("pbft-ci-build/app:bbbb", "pbft-ci-build/app:cccc", tagged=hours_ago(3)),  # one image, two commits
        image("pbft-ci-build/app:dddd", tagged=hours_ago(0.5)),
        image("pbft-ci-build/app:eeee", tagged=hours_ago(0.2)),
        image("pbft-ci-build/app-two:ffff", "other/app:gggg", tagged=hours_ago(9)),  # other repositories
    ]
    assert stale_tags(images, "pbft-ci-build/app", 2, NOW, 3600) == [
        "pbft-ci-build/app:cccc", "pbft-ci-build/app:bbbb", "pbft-ci-build/app:aaaa"]
    assert stale_tags(images, "pbft-ci-build/app", 1, NOW, 3600) == [
        "pbft-ci-build/app:cccc", "pbft-ci-build/app:bbbb", "pbft-ci-build/app:aaaa"], "dddd is within the hour"
    assert stale_tags(images, "pbft-ci-build/app", 1, NOW, 0) == [
        "pbft-ci-build/app:dddd", "pbft-ci-build/app:cccc", "pbft-ci-build/app:bbbb", "pbft-ci-build/app:aaaa"]
    assert stale_tags(images, "pbft-ci-build/app", 5, NOW, 0) == []
    assert stale_tags(images, "pbft-ci-build/app-two", 0, NOW, 0) == ["pbft-ci-build/app-two:ffff"]


@pytest.mark.docker
def test_the_engine_loses_the_old_tags_and_keeps_one_a_container_uses(docker_client, default_image):
    repository = f"pbft-ci-build/keep-{uuid.uuid4().hex[:8]}"
    tags = [f"{repository}:v{index}" for index in range(4)]
    neighbour = f"pbft-ci-build/keep-{uuid.uuid4().hex[:8]}:v0"
    container = None
    try:
        for index, tag in enumerate([*tags, neighbour]):
            docker_client.images.build(fileobj=io.BytesIO(f"FROM {default_image}\nENV V={index}\n".encode()),
                                       tag=tag, rm=True, network_mode="none")
        # v0 is the oldest, but a container (not even started) uses its image.
        container = docker_client.containers.create(tags[0], command=["true"])
        assert prune_images(docker_client, repository, 1) == [], "all tagged within the hour"
        assert prune_images(docker_client, repository, 1, grace_s=0) == [tags[2], tags[1]]
        held = {tag for found in docker_client.images.list(name=repository) for tag in found.tags}
        assert held == {tags[3], tags[0]}
        assert docker_client.images.get(neighbour).tags == [neighbour], "another repository's image is not touched"
    finally:
        if container is not None:
            container.remove(force=True)
        remove_images(docker_client, *tags, neighbour)


@pytest.mark.docker
async def test_an_executor_keeps_the_newest_images_and_an_image_it_runs_again_counts_as_new(
        make_executor, git_repo, build_ids, docker_client, default_image, monkeypatch):
    monkeypatch.setattr("builder.engine.imagekeep.GRACE_S", 0.0)
    name = f"keep-{uuid.uuid4().hex[:8]}"
    dockerfile = f'FROM {default_image}\nCOPY f /f\nCMD ["cat", "/f"]\n'
    first = git_repo.commit("master", {"Dockerfile": dockerfile, "f": "one\n"})
    second = git_repo.commit("second", {"f": "two\n"})
    third = git_repo.commit("third", {"f": "three\n"})
    tag = {commit: f"pbft-ci-build/{name}:{commit[:12]}" for commit in (first, second, third)}
    try:
        executor = make_executor(images_keep=2)
        results = [await build(executor, git_repo, build_ids, branch=branch, repository_name=name)
                   for branch in ("master", "second", "master", "third")]
        executor.close()  # its removals (the pruning after each image among them) are done
        assert "not built again" in log_text(results[2])
        held = {found_tag for found in docker_client.images.list(name=f"pbft-ci-build/{name}") for found_tag in found.tags}
    finally:
        remove_images(docker_client, *tag.values())
    for result, printed in zip(results, ("one", "two", "one", "three")):
        assert (result.status, result.exit_code) == ("success", 0), log_text(result)
        assert printed in log_text(result).splitlines()
    # The first commit's image ran again after the second's was built: the second's is the oldest.
    assert held == {tag[first], tag[third]}


@pytest.mark.docker
def test_an_image_its_tag_moved_off_is_removed_unless_a_tag_or_a_container_holds_it(docker_client, default_image):
    repository = f"pbft-ci-build/keep-{uuid.uuid4().hex[:8]}"
    made = []
    container = None
    try:
        for index in range(3):  # each built as the same tag: the first two are named by nothing after
            built, _ = docker_client.images.build(fileobj=io.BytesIO(f"FROM {default_image}\nENV V={index}\n".encode()),
                                                  tag=f"{repository}:v", rm=True, network_mode="none")
            made.append(built.id)
        orphans = Orphans()
        for image_id in made:
            orphans.add(image_id)
        docker_client.images.get(made[2]).tag(repository, "v")  # still named: not an orphan
        container = docker_client.containers.create(made[1], command=["true"])  # in use
        assert orphans.remove(docker_client) == [], "all made within the hour"
        assert orphans.remove(docker_client, grace_s=0) == [made[0]]
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(made[0])
        assert docker_client.images.get(f"{repository}:v").id == made[2]
        container.remove(force=True)
        container = None
        assert orphans.remove(docker_client, grace_s=0) == [made[1]], "tried again once nothing uses it"
        assert orphans.remove(docker_client, grace_s=0) == []
    finally:
        if container is not None:
            container.remove(force=True)
        remove_images(docker_client, f"{repository}:v", *made)


@pytest.mark.docker
async def test_two_nodes_building_one_new_image_at_once_on_one_engine_leave_only_its_tag(
        make_executor, git_repo, build_ids, docker_client, default_image):
    marker = uuid.uuid4().hex
    head = git_repo.commit("master", {"Dockerfile": f'FROM {default_image}\nCOPY f /f\nCMD ["echo", "{marker}"]\n',
                                      "f": marker})
    tag = f"pbft-ci-build/example:{head[:12]}"
    try:
        nodes = [make_executor(data_dir=f"node-{index}", node_id=index) for index in range(4)]
        results = await asyncio.gather(*(build(node, git_repo, build_ids) for node in nodes))
        for node in nodes:
            node.close()
        left = [found.id for found in docker_client.images.list(filters={"dangling": True})
                if marker in ((found.attrs.get("Config") or {}).get("Cmd") or [])]  # others' may have none
        assert docker_client.images.get(tag).attrs["Config"]["Cmd"] == ["echo", marker]
    finally:
        remove_images(docker_client, tag)
    for result in results:
        assert (result.status, result.exit_code) == ("success", 0), log_text(result)
    assert left == [], "images of the four builds that nothing names"


@pytest.mark.docker
def test_a_node_starting_prunes_every_repository_s_images_even_those_no_longer_built(
        make_executor, docker_client, default_image, monkeypatch):
    # Under a prefix of this test's own, so that no other test's images are in reach.
    prefix = f"pbft-ci-keeptest-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr("builder.engine.imagekeep.PREFIX", prefix)
    monkeypatch.setattr("builder.engine.imagekeep.GRACE_S", 0.0)
    tags = [f"{prefix}/{name}:v{index}" for name in ("gone", "kept") for index in range(2)]
    try:
        for index, tag in enumerate(tags):
            docker_client.images.build(fileobj=io.BytesIO(f"FROM {default_image}\nENV V={index}\n".encode()),
                                       tag=tag, rm=True, network_mode="none")
        make_executor(images_keep=1).sweep_leftovers()
        held = {tag for found in docker_client.images.list(filters={"reference": f"{prefix}/*"}) for tag in found.tags}
    finally:
        remove_images(docker_client, *tags)
    assert held == {f"{prefix}/gone:v1", f"{prefix}/kept:v1"}
