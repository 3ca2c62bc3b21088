"""The workspace is a git checkout of the agreed commit (builder/workspace/checkout.py), on the real
Docker engine: `.git` with the commit's history and tags, the build's branch and nothing of
the node's mirror, the same on every node; submodules only from the URLs a repository allows."""

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.workspace.checkout import resolve_url
from builder import BuildOrder, Executor, ExecutorSettings, RepositorySettings
from builder.workspace.checkouts import INBOXES_DIR, TRASH_DIR, CheckoutRemover, checkouts_root, make_checkouts_folder, sweep_orphaned_checkouts
from builder.workspace.gitmirror import GitError
from builder.workspace.kepttrees import KEPT_DIR, TreeKey
from shared.config import BuildConfig
from tests.builder.executor_helpers import GitRepo, build, log_text, spec

pytestmark = pytest.mark.docker

# What a build can see of git; every line must be the same on every node.
GIT_FACTS = [
    "git rev-parse HEAD",
    "git branch --show-current",
    "git describe --tags",
    "git log --format='%H %s'",
    "git for-each-ref --format='%(refname) %(objectname)'",
    "git remote | wc -l",
    "git status --porcelain --untracked-files=no | wc -l",
]


def git_facts_spec(image: str) -> str:
    commands = [
        "git --version >&2", *(f"{command} >> git.txt" for command in GIT_FACTS), "env | grep ^CI | sort >> git.txt",
        "cat git.txt",
    ]
    return spec(*commands, image=image, artifacts=["git.txt"])


async def test_the_workspace_is_a_git_checkout_with_history_tags_and_the_branch_alone(
    make_executor, git_repo, build_ids, python_image
):
    first = git_repo.commit("master", {"README": "one\n"}, message="first")
    git_repo.tag("v1.0", first, annotated=True)
    git_repo.commit("other", {"README": "elsewhere\n"}, message="on another branch")
    head = git_repo.commit("master", {".pbft-ci.yml": git_facts_spec(python_image)}, message="second")

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert (result.status, result.exit_code, result.commit) == ("success", 0, head), text
    tag_object = subprocess.run(["git", "-C", str(git_repo.path), "rev-parse", "v1.0"], capture_output=True,
                                text=True, check=True).stdout.strip()
    assert f"""{head}
master
v1.0-1-g{head[:7]}
{head} second
{first} first
refs/heads/master {head}
refs/tags/v1.0 {tag_object}
0
0
""" in text


async def test_every_node_checks_out_the_same_git_state(tmp_path, docker_client, git_repo, build_ids, python_image):
    """Four executors, four mirrors fetched at different times, one build: the file of git
    facts and CI variables the build writes is an artifact, and its agreed digest is the same
    on all four."""
    first = git_repo.commit("master", {"README": "one\n"}, message="first")
    git_repo.tag("v1.0", first)
    head = git_repo.commit("master", {".pbft-ci.yml": git_facts_spec(python_image)}, message="second")
    executors = [
        Executor(ExecutorSettings(data_dir=tmp_path / f"node-{node}", log_dir=tmp_path / "log", node_id=node, limits=BuildConfig()), docker_client=docker_client)
        for node in range(4)
    ]
    build_id = build_ids()
    try:
        results = []
        for executor in executors:
            results.append(await executor.run(BuildOrder(
                build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master",
                commit=head,
            )))
            # Each later node's mirror holds a branch the earlier ones never saw.
            git_repo.commit(f"later-{len(results)}", {"later": "x\n"})
    finally:
        for executor in executors:
            executor.close()

    assert [result.status for result in results] == ["success"] * 4, log_text(results[0])
    assert f"CI_COMMIT_SHA={head}\n" in log_text(results[0]) and "CI_REPO=example\n" in log_text(results[0])
    assert len({result.artifacts for result in results}) == 1
    assert results[0].artifacts is not None


@pytest.mark.parametrize("event", ["tag", "pull_request"])
async def test_a_tag_or_pull_request_build_has_a_detached_head(make_executor, git_repo, build_ids, event):
    head = git_repo.commit("master", {".pbft-ci.yml": spec("cat .git/HEAD", "ls .git/refs/heads | wc -l")})
    git_repo.tag("v2", head)
    subprocess.run(["git", "-C", str(git_repo.path), "update-ref", "refs/pull/7/head", head], check=True)
    request = {"tag": {"branch": "v2"}, "pull_request": {"branch": "master", "pull_ref": "refs/pull/7/head"}}[event]

    result = await build(make_executor(), git_repo, build_ids, commit=head, event=event, **request)

    assert result.status == "success", log_text(result)
    assert f"{head}\n0\n" in log_text(result)


def add_submodule(repo: GitRepo, path: str, url: str, commit: str) -> None:
    """Record `commit` of the repository at `url` as the submodule `path` of `repo`'s index,
    with its .gitmodules entry (git submodule add refuses local paths unless told otherwise)."""
    (repo.path / ".gitmodules").write_text(f'[submodule "{path}"]\n\tpath = {path}\n\turl = {url}\n')
    # An empty directory: `git add --all` then keeps the gitlink as it is (unpopulated).
    (repo.path / path).mkdir(parents=True)
    repo._git("update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")


@pytest.mark.parametrize("relative", [False, True])
async def test_a_submodule_from_an_allowed_url_is_checked_out_at_its_recorded_commit(
    tmp_path, make_executor, docker_client, build_ids, relative
):
    library = GitRepo(tmp_path / "library")
    pinned = library.commit("master", {"lib.txt": "pinned\n"})
    library.commit("master", {"lib.txt": "newer, not recorded\n"})
    project = GitRepo(tmp_path / "project")
    project.commit("master", {"README": "x\n"})
    add_submodule(project, "vendor/lib", "../library" if relative else str(library.path), pinned)
    head = project.commit("master", {".pbft-ci.yml": spec("cat vendor/lib/lib.txt", "cat vendor/lib/.git/HEAD")})
    executor = Executor(ExecutorSettings(data_dir=tmp_path / "data", log_dir=tmp_path / "log", node_id=7),
                        docker_client=docker_client)
    try:
        result = await build(executor, project, build_ids,
                             settings=RepositorySettings(submodule_urls=frozenset({str(library.path)})))
    finally:
        executor.close()

    assert (result.status, result.commit) == ("success", head), log_text(result)
    assert f"pinned\n{pinned}\n" in log_text(result)


async def test_a_submodule_from_a_url_the_repository_does_not_allow_is_refused(tmp_path, make_executor, build_ids):
    library = GitRepo(tmp_path / "library")
    pinned = library.commit("master", {"lib.txt": "x\n"})
    project = GitRepo(tmp_path / "project")
    project.commit("master", {"README": "x\n"})
    add_submodule(project, "lib", str(library.path), pinned)
    project.commit("master", {".pbft-ci.yml": spec("true")})

    result = await build(make_executor(), project, build_ids)

    assert (result.status, result.commit) == ("error", None)
    assert result.reason == (
        f"submodule lib: {library.path} is not among the repository's submodule URLs (repositories[].submodules)"
    )
    assert not (tmp_path / "data" / "mirrors" / "submodules").exists()


def test_submodule_urls_resolve_against_the_repository_url_and_options_are_refused():
    assert resolve_url("https://forge.example/org/app.git", "../lib.git", "lib") == "https://forge.example/org/lib.git"
    assert resolve_url("/srv/git/app.git", "./sub", "sub") == "/srv/git/app.git/sub"
    assert resolve_url("/srv/git/app", "https://other.example/x.git", "x") == "https://other.example/x.git"
    for url in ("--upload-pack=touch /tmp/x", "", "a b", "x\ny"):
        with pytest.raises(GitError, match="is not a URL"):
            resolve_url("/srv/git/app", url, "lib")


async def test_a_tree_larger_than_the_workspace_is_refused_before_it_is_checked_out(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec("true"), "big.txt": "x" * (3 * 1024 * 1024)})
    executor = make_executor(workspace_mb=2)

    result = await build(executor, git_repo, build_ids)

    assert (result.status, result.reason) == (
        "error", "sources do not fit the 2 MB workspace (the commit's files take 4 MB)"
    )


async def test_checkouts_live_only_while_their_build_runs(tmp_path, docker_client, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec("true")})
    executor = Executor(ExecutorSettings(data_dir=tmp_path / "data", log_dir=tmp_path / "log", node_id=7, limits=BuildConfig()), docker_client=docker_client)
    root = checkouts_root((tmp_path / "data").resolve())
    try:
        result = await build(executor, git_repo, build_ids)
        assert result.status == "success"
        await asyncio.wrap_future(executor.checkouts_removed())
        # The build's own checkout is gone, kept for the next build of the repository
        # (builder/workspace/kepttrees.py); the inboxes left are prepared containers', empty.
        assert {path.name for path in root.iterdir()} <= {".data-dir", INBOXES_DIR, TRASH_DIR, KEPT_DIR}
        assert [path.name for path in (root / KEPT_DIR).iterdir()] == [TreeKey("example", False).folder]
        assert not list((root / TRASH_DIR).glob("*"))
        assert not [entry for inbox in (root / INBOXES_DIR).glob("*") for entry in inbox.iterdir()]
        assert root.stat().st_mode & 0o077 == 0
    finally:
        executor.close()
    assert not root.exists()


async def test_a_checkout_folder_someone_else_made_first_is_not_used(tmp_path, docker_client, git_repo, build_ids):
    """In /dev/shm anyone may make a node's folder before it does, to read or change the
    sources its builds get: one open to others is refused."""
    git_repo.commit("master", {".pbft-ci.yml": spec("true")})
    data_dir = (tmp_path / "data").resolve()
    root = checkouts_root(data_dir)
    root.mkdir()
    root.chmod(0o777)
    executor = Executor(ExecutorSettings(data_dir=data_dir, log_dir=tmp_path / "log", node_id=7, limits=BuildConfig()), docker_client=docker_client)
    try:
        result = await build(executor, git_repo, build_ids)
        assert (result.status, result.reason) == ("error", "could not make this node's checkout folder")
        assert list(root.iterdir()) == []
    finally:
        executor.close()
        shutil.rmtree(root, ignore_errors=True)


def test_checkout_folders_of_data_directories_that_are_gone_are_swept(tmp_path):
    memory, kept_data = tmp_path / "shm", tmp_path / "kept"
    kept_data.mkdir()
    for name, served in (("pbft-ci-gone", tmp_path / "gone"), ("pbft-ci-kept", kept_data)):
        make_checkouts_folder(memory / name, served)
        (memory / name / "client-1").mkdir()
    (memory / "pbft-ci-unmarked").mkdir()
    (memory / "other").mkdir()

    sweep_orphaned_checkouts(memory)

    assert sorted(path.name for path in memory.iterdir()) == ["other", "pbft-ci-kept", "pbft-ci-unmarked"]


def test_checkouts_go_to_the_data_disk_where_memory_has_no_room_for_the_builds(tmp_path):
    data_dir = tmp_path / "data"
    assert checkouts_root(data_dir, room_bytes=1 << 62) == data_dir / "workspaces"
    assert checkouts_root(data_dir, room_bytes=1).parent == Path("/dev/shm")  # Debian hosts have one


def test_a_finished_checkout_is_moved_aside_at_once_and_deleted_after(tmp_path):
    root = tmp_path / "checkouts"
    make_checkouts_folder(root, tmp_path)
    remover = CheckoutRemover(root, node_id=7)
    checkout = root / "t-1"
    (checkout / "src").mkdir(parents=True)
    (checkout / "src" / "file").write_text("sources")
    try:
        remover.discard(checkout)
        assert not checkout.exists()  # moved aside before the build's result goes out
        remover.settled().result(timeout=30)
        assert not list((root / TRASH_DIR).iterdir())
        remover.discard(root / "never-made")  # a build that ended before its checkout
    finally:
        remover.close()
    late = root / "t-2"
    late.mkdir()
    remover.discard(late)  # closed: removed at once
    assert not late.exists() and not list((root / TRASH_DIR).iterdir())
