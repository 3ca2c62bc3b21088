"""How a build's sources reach its /workspace (builder/engine/sources.py): copied from a read-only
mount of its own checkout when the engine runs on this host and the tree is large, streamed
through the API otherwise; the same tree, owner and links either way."""

import base64
import io
import logging
import os
import tarfile

import pytest
from docker.models.containers import ContainerCollection

from builder import BuildOrder
from builder.engine import sources
from builder.engine.host import on_this_host
from builder.engine.sandbox import Sandbox
from builder.plan.containerpaths import SOURCES_DIR
from builder.workspace.checkouts import checkouts_root
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
    f"! test -e {SOURCES_DIR} && echo 'no mount in sight'",
)


@pytest.fixture
def mounted(monkeypatch) -> list[dict]:
    """Every tree is large enough to be copied through a mount; the mounts of each container
    that copies one, as the node asked for them."""
    monkeypatch.setattr(sources, "MOUNT_FROM_ENTRIES", 1)
    copiers: list[dict] = []
    create = ContainerCollection.create

    def recording_create(self, image, command=None, **kwargs):
        if (kwargs.get("labels") or {}).get("pbft-ci.role") == "sources":
            copiers.append({"command": command, "mounts": kwargs.get("mounts")})
        return create(self, image, command, **kwargs)

    monkeypatch.setattr(ContainerCollection, "create", recording_create)
    return copiers


@pytest.fixture
def variant_image(docker_client, default_image, build_ids):
    """Makes an image: the default one with `steps` (Dockerfile lines) added. Asked for before
    make_executor, so that its images are removed after the executor closed."""
    made = []

    def make(*steps: str) -> str:
        tag = f"pbft-ci-test/sources:{build_ids()}"
        # The default image runs as the build user; its files are root's.
        lines = [f"FROM {default_image}", "USER 0", *steps, "USER 1000:1000", ""]
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
                 "relative link kept", "script ran", "no mount in sight"):
        assert line in text


async def build_as(executor, git_repo, build_id):
    return await executor.run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master",
    ))


@pytest.mark.docker
async def test_a_large_checkout_is_copied_from_a_read_only_mount_of_its_own_folder(
    tmp_path, mounted, make_executor, git_repo, build_ids, caplog
):
    """The build user reads the mounted folder although the node's checkouts folder above it is
    the node's alone (mode 0700): only the build's own folder is mounted."""
    caplog.set_level(logging.INFO, logger="builder.engine.sources")
    commit_tree(git_repo)
    build_id = build_ids()

    result = await build_as(make_executor(), git_repo, build_id)

    expect_checked(result)
    [copier] = mounted
    assert copier["command"] == ["cp", "-PR", f"{SOURCES_DIR}/.", "/workspace/"]
    [bind] = [mount for mount in copier["mounts"] if mount["Type"] == "bind"]
    # The build's own folder, not the node's checkouts folder above it, and never writable.
    assert bind["Source"] == str(checkouts_root((tmp_path / "data").resolve()) / build_id)
    assert (bind["Target"], bind["ReadOnly"]) == (SOURCES_DIR, True)
    assert "streaming the sources" not in caplog.text


@pytest.mark.docker
async def test_a_small_checkout_is_streamed_into_the_same_workspace(make_executor, git_repo, build_ids, monkeypatch):
    copies = []
    monkeypatch.setattr(sources, "_copy_through_mount", lambda *args: copies.append(args))
    commit_tree(git_repo)

    result = await build(make_executor(), git_repo, build_ids)

    expect_checked(result)
    assert not copies


@pytest.mark.docker
async def test_a_copy_that_writes_to_its_sources_changes_nothing_of_the_checkout(
    variant_image, mounted, make_executor, git_repo, build_ids
):
    """An image's own cp runs in the copy's container: one that tries to change the node's
    checkout before copying finds it read-only, and the build gets the commit's tree. The build
    runs as root: where the node does too, the checkout's files are the copy's own, and only the
    mount's being read-only keeps them unchanged."""
    hostile_cp = (
        "#!/bin/sh\\n"
        f"echo injected > {SOURCES_DIR}/injected; echo changed >> {SOURCES_DIR}/data; rm -f {SOURCES_DIR}/run.sh\\n"
        'exec /bin/busybox cp "$@"\\n'
    )
    image = variant_image(f"RUN rm /bin/cp && printf '{hostile_cp}' > /bin/cp && chmod 755 /bin/cp")
    commit_tree(git_repo, image=image)
    git_repo.commit("master", {".pbft-ci.yml": spec(*CHECKS, "! test -e injected", 'test "$(cat data)" = data',
                                                    "echo untouched", image=image, user="root")})

    result = await build(make_executor(allow_root=True), git_repo, build_ids)

    expect_checked(result)
    assert "untouched" in log_text(result)
    assert len(mounted) == 1


@pytest.mark.docker
async def test_an_image_without_cp_gets_its_sources_streamed(
    variant_image, mounted, make_executor, git_repo, build_ids, caplog
):
    caplog.set_level(logging.INFO, logger="builder.engine.sources")
    image = variant_image("RUN rm /bin/cp")
    commit_tree(git_repo, image=image)

    result = await build(make_executor(), git_repo, build_ids)

    expect_checked(result)
    assert len(mounted) == 1
    assert "a copy through a mount could not start" in caplog.text


@pytest.mark.docker
@pytest.mark.parametrize("through_mount", [True, False])
async def test_sources_that_do_not_fit_the_workspace_end_the_build_the_same_either_way(
    make_executor, git_repo, build_ids, monkeypatch, through_mount
):
    # The files alone fit 2 MB, so the checkout takes them; with their history in .git they do not.
    monkeypatch.setattr(sources, "MOUNT_FROM_ENTRIES", 1 if through_mount else 10**9)
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
    sandbox = Sandbox(_NoEngine(), BuildConfig(), "1000:1000", None, {}, sources_mountable=False)
    container = _Streamed()

    sources.fill_workspace(sandbox, container, tmp_path / "tree", image_id="unused", volume="unused")

    with tarfile.open(fileobj=io.BytesIO(container.archive)) as archive:
        member = archive.getmember("./file.txt")
        assert (member.uid, member.gid) == (1000, 1000)
