"""`include:` through whole builds on the real Docker engine: a node reads the included files
from git at the built commit (builder/workspace/fetch.py), never from its checkout, so a link
in the tree is refused as no regular file, never followed."""

import os

import pytest

from tests.builder.executor_helpers import build, log_text, spec

pytestmark = pytest.mark.docker


async def test_a_spec_builds_with_the_files_it_includes_read_at_its_commit(make_executor, git_repo, build_ids):
    head = git_repo.commit("master", {
        "ci/common.yml": "environment: {GREETING: from-the-included-file}\n",
        ".pbft-ci.yml": "include: [ci/common.yml]\n" + spec('echo "greeting=$GREETING"'),
    })

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.commit) == ("success", head), log_text(result)
    assert "greeting=from-the-included-file\n" in log_text(result)


async def test_an_included_link_is_refused_never_followed(make_executor, git_repo, build_ids, tmp_path):
    outside = tmp_path / "outside.yml"
    outside.write_text("environment: {GREETING: read-through-a-link}\n")
    (git_repo.path / "ci").mkdir()
    os.symlink(outside, git_repo.path / "ci" / "link.yml")
    git_repo.commit("master", {".pbft-ci.yml": "include: [ci/link.yml]\n" + spec('echo "greeting=$GREETING"')})

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.reason) == (
        "error", ".pbft-ci.yml: include: ci/link.yml: no regular file of at most 65536 bytes there at the commit"
    ), log_text(result)
