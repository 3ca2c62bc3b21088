"""A spec build's commands run in an image with an ENTRYPOINT of its own.

Every container the node starts for a spec build (the build's, one prepared ahead, a pipeline's
steps, the holder of its artifacts or cache, the copier of a large checkout) runs a command of the
node's; an image's ENTRYPOINT would otherwise be run instead, with that command as its arguments
(`echo from-entrypoint /bin/sh -c …`). The image's ENTRYPOINT is replaced as Woodpecker's and
GitHub Actions' steps replace it; a Dockerfile build, which runs the image's own command, keeps it.
"""

import io
import logging

import pytest
import yaml

from builder.engine import sources
from tests.builder.executor_helpers import build, log_text, spec, wait_for_prepared

pytestmark = pytest.mark.docker


@pytest.fixture
def entrypoint_image(docker_client, default_image, build_ids):
    """The default image with an ENTRYPOINT that prints and exits 0. Asked for before
    make_executor, so that it is removed after the executor closed."""
    tag = f"pbft-ci-test/entrypoint:{build_ids()}"
    dockerfile = io.BytesIO(f'FROM {default_image}\nENTRYPOINT ["echo", "from-entrypoint"]\n'.encode())
    image, _ = docker_client.images.build(fileobj=dockerfile, tag=tag, network_mode="none", rm=True)
    yield tag
    docker_client.images.remove(image.id, force=True)


async def test_the_commands_run_and_decide_the_result_in_a_fresh_and_in_a_prepared_container(
    entrypoint_image, make_executor, git_repo, build_ids, caplog
):
    caplog.set_level(logging.DEBUG, logger="builder.run")
    git_repo.commit("master", {".pbft-ci.yml": spec("echo script ran", "exit 3", image=entrypoint_image)})
    executor = make_executor()

    fresh = await build(executor, git_repo, build_ids)
    await wait_for_prepared(executor)
    prepared = await build(executor, git_repo, build_ids)

    for result in (fresh, prepared):
        text = log_text(result)
        assert (result.status, result.exit_code) == ("failure", 3), text
        assert "script ran" in text and "from-entrypoint" not in text
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "runs in prepared container" in messages


@pytest.mark.parametrize("extra", ["artifacts", "cache"])
async def test_a_build_that_keeps_something_has_a_holder_that_runs_too(
    entrypoint_image, make_executor, git_repo, build_ids, extra
):
    options = {"artifacts": ["out.txt"]} if extra == "artifacts" else {"cache": {"paths": ["~/.cache/x"]}}
    git_repo.commit("master", {".pbft-ci.yml": spec(
        "mkdir -p ~/.cache/x", "echo kept > out.txt", "echo script ran", image=entrypoint_image, **options)})

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    assert "script ran" in text and "from-entrypoint" not in text
    if extra == "artifacts":
        assert "== artifacts stored: 1 files" in text, text


async def test_a_pipelines_steps_and_its_large_checkout_copy_run_too(
    entrypoint_image, make_executor, git_repo, build_ids, monkeypatch
):
    monkeypatch.setattr(sources, "MOUNT_FROM_ENTRIES", 1)
    git_repo.commit("master", {"data.txt": "from the checkout\n", ".pbft-ci.yml": yaml.safe_dump({"steps": [
        {"name": "one", "image": entrypoint_image, "commands": ["cat data.txt", "echo one > made.txt"]},
        {"name": "two", "image": entrypoint_image, "commands": ["cat made.txt"]},
    ]})})

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert result.status == "success", text
    assert "from the checkout" in text and "\none\n" in text and "from-entrypoint" not in text
