"""How a build's sources reach its /workspace (builder/engine/sources.py): copied by the gate from
its container's inbox when the engine runs on this host, copied through a mount for a pipeline's
large tree, streamed through the API otherwise; the same tree, owner and links every way."""

import asyncio
import base64
import io
import logging
import os
import tarfile
from pathlib import Path

import pytest
import yaml
from docker.models.containers import Container, ContainerCollection

from builder import BuildOrder
from builder.engine import host, sources
from builder.engine.gate import INBOX_TREE
from builder.engine.host import on_this_host
from builder.engine.sandbox import Sandbox
from builder.plan.containerpaths import SOURCES_DIR
from builder.workspace.checkouts import INBOXES_DIR, checkouts_root
from shared.config import BuildConfig, DockerEngineConfig
from tests.builder.executor_helpers import build, log_text, spec

# What the build checks of its workspace: .git, every entry the build user's, the links kept
# as links (one to a path of the host), the mode bits, and nothing of the node's checkout in sight.
CHECKS = (
    "test -d .git && git_head=$(cat .git/HEAD) && echo \"head: $git_head\"",
    'test -z "$(find . ! -user "$(id -u)" | head -1)" && echo "every entry is the build user\'s"',
    'test -L host-link && test "$(readlink host-link)" = /etc/hostname && echo "host link kept"',
    'test -L data-link && test "$(cat data-link)" = data && echo "relative link kept"',
    "test -x run.sh && ./run.sh",
    # Where the gate copied from: empty once the script runs, and read-only, on every engine.
    f'test -d {SOURCES_DIR} && test -z "$(ls -A {SOURCES_DIR})" && ! touch {SOURCES_DIR}/x 2>/dev/null '
    "&& echo 'no checkout in sight'",
)


@pytest.fixture
def created(monkeypatch) -> list[dict]:
    """The role, command and mounts of every container the node creates, as it asked for them."""
    made: list[dict] = []
    create = ContainerCollection.create

    def recording_create(self, image, command=None, **kwargs):
        made.append({"role": (kwargs.get("labels") or {}).get("pbft-ci.role"), "command": command,
                     "mounts": kwargs.get("mounts") or []})
        return create(self, image, command, **kwargs)

    monkeypatch.setattr(ContainerCollection, "create", recording_create)
    return made


@pytest.fixture
def uploads(monkeypatch) -> list[str]:
    """The path of every archive the node uploads into a container's workspace."""
    paths: list[str] = []
    put_archive = Container.put_archive

    def recording_put_archive(self, path, data):
        if path.startswith("/workspace"):
            paths.append(path)
        return put_archive(self, path, data)

    monkeypatch.setattr(Container, "put_archive", recording_put_archive)
    return paths


@pytest.fixture
def elsewhere(monkeypatch):
    """The executors made from here on take their engine for one on another machine."""
    monkeypatch.setattr(host, "on_this_host", lambda config, environ=None: False)


def sources_mount(container: dict) -> dict:
    [mount] = [mount for mount in container["mounts"] if mount["Target"] == SOURCES_DIR]
    return mount


@pytest.fixture
def variant_image(docker_client, default_image, build_ids):
    """Makes an image: the default one with `steps` (Dockerfile lines) added. Asked for before
    make_executor, so that its images are removed after the executor closed."""
    made = []

    def make(*steps: str, base: str | None = None) -> str:
        """`base`: the default image unless given; busybox's shell runs its own cp whatever
        /bin/cp is, Debian's runs /bin/cp."""
        tag = f"pbft-ci-test/sources:{build_ids()}"
        # The default image runs as the build user; its files are root's.
        lines = [f"FROM {base or default_image}", "USER 0", *steps, "USER 1000:1000", ""]
        dockerfile = io.BytesIO("\n".join(lines).encode())
        image, _ = docker_client.images.build(fileobj=dockerfile, tag=tag, network_mode="none", rm=True)
        made.append(image.id)
        return tag

    yield make
    for image in made:
        docker_client.images.remove(image, force=True)


def commit_tree(git_repo, *, image: str | None = None) -> None:
    """A tree with an executable script and two symbolic links, built by CHECKS."""
    options = {"image": image} if image else {}
    for name, target in (("host-link", "/etc/hostname"), ("data-link", "data")):
        (git_repo.path / name).symlink_to(target)
    (git_repo.path / "run.sh").write_text("echo script ran\n")
    (git_repo.path / "run.sh").chmod(0o755)
    git_repo.commit("master", {".pbft-ci.yml": spec(*CHECKS, **options), "data": "data"})


def expect_checked(result) -> None:
    text = log_text(result)
    assert result.status == "success", text
    for line in ("head: ref: refs/heads/master", "every entry is the build user's", "host link kept",
                 "relative link kept", "script ran", "no checkout in sight"):
        assert line in text


async def build_as(executor, git_repo, build_id):
    return await executor.run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master",
    ))


@pytest.mark.docker
async def test_the_gate_copies_a_checkout_from_its_containers_own_inbox(
    tmp_path, created, uploads, make_executor, git_repo, build_ids, caplog
):
    """The build user reads the inbox although the node's checkouts folder above it is the
    node's alone (mode 0700): only the container's own inbox is mounted, read-only. No archive
    goes through the engine's API, no container but the build's copies, and the inbox goes
    with the build."""
    caplog.set_level(logging.INFO, logger="builder.engine.sources")
    commit_tree(git_repo)

    result = await build_as(make_executor(), git_repo, build_ids())

    expect_checked(result)
    assert uploads == []
    [container] = [made for made in created if made["role"] == "build"]
    mount = sources_mount(container)
    inboxes = checkouts_root((tmp_path / "data").resolve()) / INBOXES_DIR
    assert (mount["Type"], mount["ReadOnly"], Path(mount["Source"]).parent) == ("bind", True, inboxes)
    assert not Path(mount["Source"]).exists()
    assert "streaming the sources" not in caplog.text
    assert not [made for made in created if made["role"] == "sources"]


@pytest.mark.docker
async def test_the_next_build_is_copied_into_a_prepared_container_too(created, uploads, make_executor, git_repo,
                                                                        build_ids):
    commit_tree(git_repo)
    executor = make_executor()
    expect_checked(await build(executor, git_repo, build_ids))
    await asyncio.wrap_future(executor.engine.ready.settled())

    expect_checked(await build(executor, git_repo, build_ids))

    [prepared] = [made for made in created if made["role"] == "ready"][:1]
    assert sources_mount(prepared)["Type"] == "bind"
    assert uploads == []


@pytest.mark.docker
async def test_an_engine_elsewhere_is_sent_the_sources_and_shows_the_same_empty_folder(
    elsewhere, created, uploads, make_executor, git_repo, build_ids
):
    commit_tree(git_repo)

    result = await build(make_executor(), git_repo, build_ids)

    expect_checked(result)
    assert uploads == ["/workspace"]
    [container] = [made for made in created if made["role"] == "build"]
    assert (sources_mount(container)["Type"], sources_mount(container)["ReadOnly"]) == ("tmpfs", True)


@pytest.mark.docker
async def test_a_copy_that_writes_to_its_sources_changes_nothing_of_the_checkout(
    variant_image, python_image, uploads, make_executor, git_repo, build_ids
):
    """An image's own cp runs at the gate: one that tries to change the node's checkout before
    copying finds it read-only, and the build gets the commit's tree. The build runs as root:
    where the node does too, the checkout's files are the copy's own, and only the mount's
    being read-only keeps them unchanged."""
    tree = f"{SOURCES_DIR}/{INBOX_TREE}"
    hostile_cp = (
        "#!/bin/sh\\n"
        f"echo injected > {tree}/injected; echo changed >> {tree}/data; rm -f {tree}/run.sh\\n"
        'echo hostile cp ran >&2; touch /workspace/cp-ran; exec /bin/cp.real "$@"\\n'
    )
    image = variant_image(f"RUN mv /bin/cp /bin/cp.real && printf '{hostile_cp}' > /bin/cp && chmod 755 /bin/cp",
                          base=python_image)
    commit_tree(git_repo, image=image)
    git_repo.commit("master", {".pbft-ci.yml": spec(*CHECKS, "! test -e injected", 'test "$(cat data)" = data',
                                                    "echo untouched", "test -e cp-ran && echo \"the image's cp ran\"", image=image, user="root")})

    result = await build(make_executor(allow_root=True), git_repo, build_ids)

    expect_checked(result)
    assert "untouched" in log_text(result)
    assert uploads == []
    # It did run, and what it said at the gate is not the build's output.
    assert "the image's cp ran" in log_text(result)
    assert "hostile cp ran" not in log_text(result)


@pytest.mark.docker
async def test_an_image_without_cp_gets_its_sources_streamed(
    variant_image, python_image, uploads, make_executor, git_repo, build_ids, caplog
):
    caplog.set_level(logging.INFO, logger="builder.engine.sources")
    image = variant_image("RUN rm /bin/cp", base=python_image)
    commit_tree(git_repo, image=image)

    result = await build(make_executor(), git_repo, build_ids)

    expect_checked(result)
    assert uploads == ["/workspace"]
    assert "the gate's copy failed" in caplog.text


@pytest.mark.docker
async def test_a_pipelines_large_checkout_is_copied_from_a_read_only_mount_of_its_own_folder(
    tmp_path, created, uploads, make_executor, git_repo, build_ids, monkeypatch
):
    """A pipeline's steps share a workspace their holder keeps: a large tree is copied onto it by
    a container of its own that mounts the build's own checkout folder, read-only."""
    monkeypatch.setattr(sources, "MOUNT_FROM_ENTRIES", 1)
    commit_tree(git_repo)
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({"steps": [
        {"name": "check", "commands": [*CHECKS[:-1], f"! test -e {SOURCES_DIR} && echo 'no mount in sight'"]},
    ]})})
    build_id = build_ids()

    result = await build_as(make_executor(), git_repo, build_id)

    text = log_text(result)
    assert result.status == "success", text
    assert "script ran" in text and "no mount in sight" in text
    [copier] = [made for made in created if made["role"] == "sources"]
    assert copier["command"] == ["cp", "-PR", f"{SOURCES_DIR}/.", "/workspace/"]
    mount = sources_mount(copier)
    assert (mount["Type"], mount["ReadOnly"]) == ("bind", True)
    assert mount["Source"] == str(checkouts_root((tmp_path / "data").resolve()) / build_id)
    assert uploads == []


@pytest.mark.docker
@pytest.mark.parametrize("engine", ["this host", "elsewhere"])
async def test_sources_that_do_not_fit_the_workspace_end_the_build_the_same_either_way(
    make_executor, git_repo, build_ids, monkeypatch, engine
):
    # The files alone fit 2 MB, so the checkout takes them; with their history in .git they do not.
    if engine == "elsewhere":
        monkeypatch.setattr(host, "on_this_host", lambda config, environ=None: False)
    noise = base64.b64encode(os.urandom(1_400_000)).decode()
    git_repo.commit("master", {".pbft-ci.yml": spec("true"), "noise.txt": noise})

    result = await build(make_executor(workspace_mb=2), git_repo, build_ids)

    assert (result.status, result.reason) == ("error", "sources do not fit the 2 MB workspace"), log_text(result)


def test_only_an_engine_on_this_host_gets_sources_through_a_mount():
    assert on_this_host(DockerEngineConfig(), {})
    assert on_this_host(DockerEngineConfig(), {"DOCKER_HOST": "unix:///run/user/1000/docker.sock"})
    assert on_this_host(DockerEngineConfig("unix:///var/run/docker.sock"), {"DOCKER_HOST": "tcp://build-1:2376"})
    assert not on_this_host(DockerEngineConfig(), {"DOCKER_HOST": "tcp://127.0.0.1:2376"})
    assert not on_this_host(DockerEngineConfig("tcp://build-1.example:2376"), {})
    assert not on_this_host(DockerEngineConfig("ssh://pbft@build-1.example"), {})


class _Streamed:
    """A running container as fill_workspace uses it: the archive it is sent."""

    def __init__(self):
        self.archive = b""

    def put_archive(self, path, chunks):
        assert path == "/workspace"
        self.archive = b"".join(chunks)


class _NoEngine:
    @property
    def containers(self):
        raise AssertionError("an engine elsewhere is sent the archive, never asked for a container")


def test_an_engine_elsewhere_is_sent_a_large_tree_through_the_api(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MOUNT_FROM_ENTRIES", 1)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "file.txt").write_text("sources")
    sandbox = Sandbox(_NoEngine(), BuildConfig(), "1000:1000", None, {})
    container = _Streamed()

    sources.fill_workspace(sandbox, container, tmp_path / "tree", image_id="unused", volume="unused")

    with tarfile.open(fileobj=io.BytesIO(container.archive)) as archive:
        member = archive.getmember("./file.txt")
        assert (member.uid, member.gid) == (1000, 1000)


@pytest.mark.docker
@pytest.mark.skipif(os.geteuid() == 1000, reason="the build user would own the checkout")
async def test_a_checkout_the_build_user_may_not_read_is_streamed(uploads, make_executor, git_repo, build_ids, caplog):
    """A node whose umask keeps its files from others: the gate's cp, the build user's, cannot
    read them, and the node streams the tree instead."""
    caplog.set_level(logging.INFO, logger="builder.engine.sources")
    commit_tree(git_repo)
    executor = make_executor()
    kept = os.umask(0o077)
    try:
        result = await build(executor, git_repo, build_ids)
    finally:
        os.umask(kept)

    expect_checked(result)
    assert uploads == ["/workspace"]
    assert "the gate's copy failed" in caplog.text
