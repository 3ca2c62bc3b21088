"""A repository's build secrets in the network configuration (docs/secrets.md): names, events,
files read and checked by a node that starts, every problem named with its key."""

import pytest

from harness.network import write_network
from shared.config import DEFAULT_SECRET_EVENTS, ConfigError, load_config, read_build_secret
from tests.shared.config_files import edit

VALUE = "deploy-token-0123456789"


def with_secrets(tmp_path, secrets, *, value: str | bytes | None = VALUE, **repository) -> object:
    """The test network's configuration with `secrets` in its repository's entry, and `value`
    (if not None) in the file keys/deploy."""
    def add(data):
        data["repositories"][0].update(secrets=secrets, **repository)

    path = edit(write_network(tmp_path), add)
    if isinstance(value, bytes):
        (tmp_path / "keys" / "deploy").write_bytes(value)
    elif value is not None:
        (tmp_path / "keys" / "deploy").write_text(value)
    return path


def problems(path, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    return caught.value.problems


def test_a_secret_is_a_name_a_file_beside_the_configuration_and_its_events(tmp_path):
    path = with_secrets(tmp_path, [
        {"name": "DEPLOY_TOKEN", "file": "keys/deploy"},
        {"name": "PR_TOKEN", "file": "keys/deploy", "events": ["pull_request", "push"]},
    ], value=VALUE + "\n", secrets_for_forks=True)

    repository = load_config(path, node_id=0).repository("example")

    deploy, pr = repository.secrets
    assert (deploy.name, deploy.file, deploy.events) == ("DEPLOY_TOKEN", tmp_path / "keys" / "deploy",
                                                         DEFAULT_SECRET_EVENTS)
    assert "pull_request" not in DEFAULT_SECRET_EVENTS
    assert pr.events == ("pull_request", "push") and repository.secrets_for_forks
    # The configuration holds where the value is, never the value.
    assert VALUE not in repr(load_config(path, node_id=0))


def test_bad_names_events_and_keys_are_each_named(tmp_path):
    path = with_secrets(tmp_path, [
        {"name": "deploy-token", "file": "keys/deploy"},
        {"name": "CI_TOKEN", "file": "keys/deploy"},
        {"name": "PBFT_CI_FLAKY", "file": "keys/deploy"},
        {"name": "TOKEN", "file": "keys/deploy", "events": ["pull_request"]},
        {"name": "TOKEN", "file": "keys/deploy", "events": ["merge"]},
        {"name": "OTHER", "events": [], "value": VALUE},
        "DEPLOY_TOKEN",
    ])

    assert sorted(problems(path)) == sorted([
        "repositories[0].secrets[0].name: is not an environment variable name (capitals, digits and _, "
        "not starting with a digit, at most 64): 'deploy-token'",
        "repositories[0].secrets[1].name: CI_TOKEN is the node's to set (CI, CI_*, PBFT_CI*, HOME, USER, LOGNAME, "
        "PATH, SHELL, SOURCE_DATE_EPOCH, TZ, LC_ALL, LANG)",
        "repositories[0].secrets[2].name: PBFT_CI_FLAKY is the node's to set (CI, CI_*, PBFT_CI*, HOME, USER, "
        "LOGNAME, PATH, SHELL, SOURCE_DATE_EPOCH, TZ, LC_ALL, LANG)",
        "repositories[0].secrets[3].events: names pull_request, whose builds run code that anyone with a fork "
        "may write: the repository must also set secrets_for_forks: true",
        "repositories[0].secrets[4].events[0]: expected an event (push, tag, pull_request, manual, cron), got 'merge'",
        "repositories[0].secrets[5].value: unknown setting; known here: name, file, events",
        "repositories[0].secrets[5].file: is required",
        "repositories[0].secrets[5].events: must not be empty",
        "repositories[0].secrets[6]: expected a mapping, got 'DEPLOY_TOKEN'",
        "repositories[0].secrets[4].name: 'TOKEN' is already the name of repositories[0].secrets[3]",
    ])


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read {path}: No such file or directory"),
    ("", "{path} is empty"),
    ("\n", "{path} is empty"),
    ("short\n", "{path} holds fewer than 8 characters: so short a value would be masked wherever those "
                "characters appear in a build's output"),
    (b"\xff\xfe-not-text-at-all", "{path} is not UTF-8 text"),
    ("with\0a-nul-in-it", "{path} holds a NUL character, which no environment variable can"),
    ("x" * 8193, "{path} holds more than 8192 characters"),
], ids=["missing", "empty", "a line break", "short", "not text", "nul", "long"])
def test_a_node_that_starts_checks_each_secrets_file(tmp_path, content, problem):
    path = with_secrets(tmp_path, [{"name": "DEPLOY_TOKEN", "file": "keys/deploy"}], value=content)
    secret = tmp_path / "keys" / "deploy"

    assert problems(path, node_id=2) == [f"repositories[0].secrets[0].file: {problem.format(path=secret)}"]
    # The client, and every tool but a node, never reads them: only nodes need the files.
    assert load_config(path).repository("example").secrets[0].file == secret


def test_one_trailing_line_break_is_not_part_of_the_value(tmp_path):
    secret = tmp_path / "deploy"
    for written, value in ((VALUE + "\n", VALUE), (VALUE + "\r\n", VALUE), (VALUE + "\n\n", VALUE + "\n"),
                           (f" {VALUE} ", f" {VALUE} "), ("line one\nline two\n", "line one\nline two")):
        secret.write_text(written)
        assert read_build_secret(secret) == value, written


def test_the_flag_and_the_list_must_have_their_types(tmp_path):
    path = with_secrets(tmp_path, {"DEPLOY_TOKEN": "keys/deploy"}, value=None, secrets_for_forks="yes")

    assert sorted(problems(path)) == [
        "repositories[0].secrets: expected a list, got a mapping",
        "repositories[0].secrets_for_forks: expected a boolean, got 'yes'",
    ]
