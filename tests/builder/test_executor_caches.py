"""Build caches against the real Docker engine: restore, save, isolation, and what is dropped."""

import hashlib
import io
import json
import re
import subprocess
import tarfile

import pytest

from builder import RepositorySettings
from tests.builder.cached_project import cache_lines, cached_project
from tests.builder.executor_helpers import build, log_text

pytestmark = pytest.mark.docker


def stored(tmp_path, repository="example") -> list:
    directory = tmp_path / "data" / "caches" / repository
    return sorted(directory.glob("*/*.tar")) if directory.exists() else []


async def test_a_first_build_saves_and_the_next_commit_restores(make_executor, git_repo, build_ids, tmp_path):
    executor = make_executor()
    git_repo.commit("master", cached_project("one"))

    first = await build(executor, git_repo, build_ids)

    assert first.status == "success", log_text(first)
    lines = cache_lines(first)
    assert re.fullmatch(r"== cache restore miss key [0-9a-f]{12}: no cache of 'example' for branch 'master' on this node", lines[0]), lines
    assert re.fullmatch(r"== cache saved key [0-9a-f]{12} for branch 'master' \(0\.0 MB\); 1 kept for it", lines[1]), lines
    assert "== settings cache ~/.cache/x, .tox (key files requirements.txt): at most 512 MB" in log_text(first)
    assert "+ 512 /pbft-cache/out)" in log_text(first)
    assert len(stored(tmp_path)) == 1

    git_repo.commit("master", cached_project("two", require=True))
    second = await build(executor, git_repo, build_ids)

    text = log_text(second)
    assert second.status == "success", text
    assert "restored: home-one tox-one" in text
    key = lines[1].split()[4]
    assert cache_lines(second)[0].startswith(f"== cache restore hit key {key} of branch 'master' (")
    assert re.search(r", saved by build \S+ \(push\) at commit [0-9a-f]{12}$", cache_lines(second)[0])
    # Restored for its own key, the cache is kept as it is rather than saved again.
    assert cache_lines(second)[1] == f"== cache not saved: key {key} was restored and is kept as it is"
    assert "/pbft-cache/out/cache.tar" not in text


async def test_only_a_build_that_saves_its_cache_has_a_second_container(
    make_executor, git_repo, build_ids, container_roles
):
    executor = make_executor()
    git_repo.commit("master", cached_project("one"))
    saved = await build(executor, git_repo, build_ids)
    git_repo.commit("master", cached_project("two", require=True))
    kept = await build(executor, git_repo, build_ids)

    assert saved.status == kept.status == "success", log_text(kept)
    assert cache_lines(kept)[1].endswith("was restored and is kept as it is")
    # The identity reader, created and never started once per image on a node, belongs to no build.
    roles = [roles for build_id, roles in container_roles.items() if build_id]
    assert roles == [["build", "holder"], ["build"]]
    assert container_roles[""] == ["identity-reader"]


async def test_another_repository_never_sees_the_cache(make_executor, git_repo, build_ids, tmp_path):
    executor = make_executor()
    git_repo.commit("master", cached_project("one"))
    assert (await build(executor, git_repo, build_ids)).status == "success"
    git_repo.commit("master", cached_project("two", before=["test ! -e ~/.cache/x/f && test ! -e .tox/y"]))

    other = await build(executor, git_repo, build_ids, repository_name="other")

    assert other.status == "success", log_text(other)
    assert cache_lines(other)[0].endswith(": no cache of 'other' for branch 'master' on this node")
    assert len(stored(tmp_path, "example")) == 1 and len(stored(tmp_path, "other")) == 1


async def test_a_changed_key_file_misses_and_falls_back_to_the_newest(make_executor, git_repo, build_ids, tmp_path):
    executor = make_executor()
    git_repo.commit("master", cached_project("one"))
    first = await build(executor, git_repo, build_ids)
    old_key = cache_lines(first)[1].split()[4]
    git_repo.commit("master", cached_project("two", require=True, requirements="a==2\n"))

    second = await build(executor, git_repo, build_ids)

    text = log_text(second)
    assert second.status == "success", text
    assert "restored: home-one tox-one" in text
    restore = cache_lines(second)[0]
    assert re.fullmatch(
        rf"== cache restore miss key [0-9a-f]{{12}}, fallback to key {old_key}, the newest of branch 'master' "
        r"\(.*\), saved by build .*",
        restore,
    ), restore
    assert restore.split()[5] != old_key + ","
    assert len(stored(tmp_path)) == 2


async def test_a_failing_build_saves_nothing(make_executor, git_repo, build_ids, tmp_path):
    git_repo.commit("master", cached_project("one", extra=["exit 1"]))

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.exit_code) == ("failure", 1)
    assert cache_lines(result)[-1] == "== cache not saved: the build did not succeed"
    assert stored(tmp_path) == []


async def test_a_cache_larger_than_cache_mb_is_dropped_and_the_build_succeeds(
    make_executor, git_repo, build_ids, tmp_path
):
    git_repo.commit("master", cached_project("one", extra=["dd if=/dev/zero of=$HOME/.cache/x/big bs=1M count=2"]))

    result = await build(make_executor(cache_mb=1), git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    assert "cache not saved: tar could not write it (at most 1 MB)" in text
    assert cache_lines(result)[-1].startswith("== cache not saved: the build wrote none")
    assert stored(tmp_path) == []


async def test_a_cache_changed_on_disk_is_dropped_and_the_build_succeeds(make_executor, git_repo, build_ids, tmp_path):
    executor = make_executor()
    git_repo.commit("master", cached_project("one"))
    await build(executor, git_repo, build_ids)
    [cache] = stored(tmp_path)
    with open(cache, "r+b") as file:
        file.seek(700)
        file.write(b"corrupt bytes")
    git_repo.commit("master", cached_project("two", before=["test ! -e .tox/y"]))

    result = await build(executor, git_repo, build_ids)

    assert result.status == "success", log_text(result)
    lines = cache_lines(result)
    assert lines[0] == f"== cache dropped key {cache.stem[:12]} of branch 'master': checksum mismatch (changed on disk)"
    assert lines[1].startswith("== cache restore miss key")
    assert lines[2].startswith("== cache saved key")


async def test_a_cache_reaching_outside_its_paths_is_dropped(make_executor, git_repo, build_ids, tmp_path):
    executor = make_executor()
    git_repo.commit("master", cached_project("one"))
    await build(executor, git_repo, build_ids)
    [cache] = stored(tmp_path)
    # A cache as a buggy or subverted node might have stored it: its digest
    # matches, but it would plant a file beside the sources.
    with tarfile.open(cache, "w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in (("home/build/.cache/x/f", b"home-evil\n"), ("workspace/planted.sh", b"exit 0\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    about = json.loads(cache.with_suffix(".json").read_text())
    cache.with_suffix(".json").write_text(json.dumps({**about, "sha256": hashlib.sha256(cache.read_bytes()).hexdigest()}))
    git_repo.commit("master", cached_project("two", before=["test ! -e planted.sh", "test ! -e ~/.cache/x/f"]))

    result = await build(executor, git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    assert cache_lines(result)[0] == (
        f"== cache dropped key {cache.stem[:12]} of branch 'master': member 'workspace/planted.sh' is outside the "
        "cache paths"
    )
    assert "home-evil" not in text


async def test_caches_off_run_the_build_as_before(make_executor, git_repo, build_ids, tmp_path):
    git_repo.commit("master", cached_project("one"))

    result = await build(make_executor(cache_mb=0), git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    assert "== settings cache ~/.cache/x, .tox (key files requirements.txt): off on this node" in text
    assert cache_lines(result) == [] and "/pbft-cache" not in text
    assert stored(tmp_path) == []


async def test_a_cache_does_not_replace_files_of_the_commit(make_executor, git_repo, build_ids):
    executor = make_executor()
    git_repo.commit("master", cached_project("one"))
    await build(executor, git_repo, build_ids)
    files = cached_project("two", extra=["cat .tox/y"])
    files[".tox/y"] = "from the commit\n"
    files["build.sh"] = 'echo "home: $(cat ~/.cache/x/f)"; cat .tox/y\n'
    git_repo.commit("master", files)

    result = await build(executor, git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    assert "== cache restore skips .tox: the commit has it" in text
    assert "home: home-one\nfrom the commit\n" in text


async def test_a_build_with_caches_keeps_its_exit_code_and_deadline(make_executor, git_repo, build_ids):
    executor = make_executor(timeout_s=2.0)
    git_repo.commit("master", cached_project("one", extra=["exit 3"]))
    assert (await build(executor, git_repo, build_ids)).agreed()["exit_code"] == 3

    git_repo.commit("master", cached_project("two", requirements="a==2\n", extra=["sleep 30"]))
    result = await build(executor, git_repo, build_ids)

    assert (result.status, result.reason) == ("timeout", "build exceeded 2 s")
    assert cache_lines(result)[-1] == "== cache not saved: the build did not succeed"


async def test_a_pull_request_reads_the_base_branch_cache_and_the_branch_never_reads_its_own(
    make_executor, git_repo, build_ids, tmp_path
):
    """The attack: a pull request saves a cache under the key the branch's next commit will
    ask for, with a file of its own in it. The branch must not run that file."""
    executor = make_executor()
    git_repo.commit("master", cached_project("branch"))
    assert (await build(executor, git_repo, build_ids)).status == "success"
    planting = cached_project("planted", require=True, requirements="a==2\n")
    head = git_repo.commit("feature", planting)
    subprocess.run(["git", "-C", str(git_repo.path), "update-ref", "refs/pull/5/head", head], check=True)

    pull = await build(executor, git_repo, build_ids, commit=head, event="pull_request", pull_ref="refs/pull/5/head")

    pull_lines = cache_lines(pull)
    assert pull.status == "success", log_text(pull)
    assert "restored: home-branch tox-branch" in log_text(pull)
    assert "the newest of branch 'master'" in pull_lines[0], pull_lines
    assert pull_lines[1].startswith("== cache saved key ") and " for pull request #5 " in pull_lines[1], pull_lines
    pull_key = pull_lines[1].split()[4]
    # The branch's next commit asks for the very key the pull request saved.
    git_repo.commit("master", cached_project("next", require=True, requirements="a==2\n"))

    branch = await build(executor, git_repo, build_ids)

    text = log_text(branch)
    assert branch.status == "success", text
    assert "restored: home-branch tox-branch" in text and "planted" not in text
    assert re.match(rf"== cache restore miss key {pull_key}, fallback to key [0-9a-f]{{12}}, the newest of "
                    r"branch 'master'", cache_lines(branch)[0]), cache_lines(branch)


def cached_pipeline(tag: str, requirements: str = "a==1\n") -> dict[str, str]:
    """A pipeline whose cache is `.tox` in the workspace: one step says what it found there and
    leaves `tag`, another beside it runs at once."""
    spec = {
        "cache": {"paths": [".tox"], "key_files": ["requirements.txt"]},
        "steps": [
            {"name": "fill", "commands": [
                "if [ -f .tox/marker ]; then echo \"restored: $(cat .tox/marker)\"; else echo cold; fi",
                "mkdir -p .tox", f"echo {tag} > .tox/marker"]},
            {"name": "beside", "commands": ["echo beside"], "depends_on": []},
        ],
    }
    return {".pbft-ci.yml": json.dumps(spec), "requirements.txt": requirements}


def cache_notes(result) -> list[str]:
    return [line for line in cache_lines(result) if " step: " not in line]


async def test_a_pipeline_restores_its_cache_on_the_second_build(make_executor, git_repo, build_ids, tmp_path):
    executor = make_executor()
    git_repo.commit("master", cached_pipeline("one"))

    first = await build(executor, git_repo, build_ids)

    assert first.status == "success", log_text(first)
    assert "\ncold\n" in log_text(first)
    assert cache_notes(first)[1].startswith("== cache saved key "), cache_lines(first)
    assert len(stored(tmp_path)) == 1
    git_repo.commit("master", cached_pipeline("two"))

    second = await build(executor, git_repo, build_ids)

    text = log_text(second)
    assert second.status == "success", text
    assert "restored: one" in text and "\ncold\n" not in text
    assert "== cache restore step: success exit_code 0" in text
    assert cache_notes(second)[0].startswith("== cache restore hit key "), cache_lines(second)
    assert cache_notes(second)[1].endswith("was restored and is kept as it is")


async def test_a_pipeline_of_a_pull_request_never_writes_the_cache_its_branch_reads(
    make_executor, git_repo, build_ids
):
    executor = make_executor()
    git_repo.commit("master", cached_pipeline("branch"))
    assert (await build(executor, git_repo, build_ids)).status == "success"
    head = git_repo.commit("feature", cached_pipeline("planted", requirements="a==2\n"))
    subprocess.run(["git", "-C", str(git_repo.path), "update-ref", "refs/pull/5/head", head], check=True)
    pull = await build(executor, git_repo, build_ids, commit=head, event="pull_request", pull_ref="refs/pull/5/head")
    assert pull.status == "success" and " for pull request #5 " in cache_notes(pull)[1], cache_lines(pull)
    # The branch's next commit asks for the very key the pull request saved under.
    git_repo.commit("master", cached_pipeline("next", requirements="a==2\n"))

    branch = await build(executor, git_repo, build_ids)

    text = log_text(branch)
    assert branch.status == "success", text
    assert "restored: branch" in text and "planted" not in text


async def test_a_varied_build_restores_and_saves_its_cache_from_its_own_build_path(make_executor, git_repo, build_ids):
    """The cache's paths are the workspace's, which the node's build path shows too."""
    executor = make_executor()
    varied = {"settings": RepositorySettings(vary=True)}
    git_repo.commit("master", cached_project("one"))
    first = await build(executor, git_repo, build_ids, **varied)
    git_repo.commit("master", cached_project("two", require=True, before=["pwd"]))
    second = await build(executor, git_repo, build_ids, **varied)

    assert first.status == second.status == "success", log_text(second)
    assert "restored: home-one tox-one" in log_text(second)
    assert re.search(r"^/build/[a-z]+/src$", log_text(second), re.MULTILINE), "pwd: it ran at its build path"
