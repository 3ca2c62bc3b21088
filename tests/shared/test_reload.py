"""Reloading the configuration (shared/reload.py): which keys may change while a process runs,
what a reload says, and that a refused file leaves the running configuration in place."""

import asyncio
import logging
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from harness.network import free_port, write_network
from shared.config import NodeTLSConfig, NotifyConfig, SMTPConfig, load_config
from shared.crypto import generate_private_key, public_key_hex
from shared.reload import LiveConfig, live_changes, reload_on_sighup
from tests.shared.config_files import edit

SECRET = "a-webhook-secret-nobody-may-read-0123456789"
TOKEN = "a-bearer-token-nobody-may-read-0123456789"


def fresh_key() -> str:
    return public_key_hex(generate_private_key())


def add_node(data):
    data["nodes"].append({"id": 4, "host": "127.0.0.1", "port": free_port(), "public_key": fresh_key()})


def add_client(data):
    data["clients"].append({"name": "other", "host": "127.0.0.1", "port": free_port(), "public_key": fresh_key()})


def setting(*path_and_value):
    *path, key, value = path_and_value

    def change(data):
        for step in path:
            data = data.setdefault(step, {}) if isinstance(step, str) else data[step]
        data[key] = value

    return change


# Each edit of the file that needs a restart, and the key the refusal names.
FIXED = [
    (setting("nodes", 2, "port", 1), ["nodes[2].port"]),
    (setting("nodes", 1, "host", "127.0.0.9"), ["nodes[1].host"]),
    (lambda data: data["nodes"][0].update(public_key=fresh_key()), ["nodes[0].public_key"]),
    (setting("nodes", 3, "docker_host", "unix:///run/other-docker.sock"), ["nodes[3].docker_host"]),
    (setting("build", "docker_host", "unix:///run/other-docker.sock"),
     [f"nodes[{i}].docker_host" for i in range(4)] + ["build.docker_host"]),
    (add_node, ["nodes"]),
    (setting("f", 0), ["f"]),
    (setting("clients", 0, "port", 1), ["clients[0].port"]),
    (setting("clients", 0, "host", "127.0.0.2"), ["clients[0].host"]),
    (setting("clients", 0, "name", "renamed"), ["clients[0].name"]),
    (lambda data: data["clients"][0].update(public_key=fresh_key()), ["clients[0].public_key"]),
    (setting("clients", 0, "max_follows", 3), ["clients[0].max_follows"]),
    (add_client, ["clients"]),
    (setting("protocol", "checkpoint_interval", 64), ["protocol.checkpoint_interval"]),
    (setting("protocol", "client_deadline_s", 900.0), ["protocol.client_deadline_s"]),
    (setting("protocol", "relay_votes", True), ["protocol.relay_votes"]),
    (setting("build", "timeout_s", 60.0), ["build.timeout_s"]),
    (setting("build", "registries", ["registry.example:5000"]), ["build.registries"]),
    (setting("data_dir", "elsewhere"), ["data_dir"]),
    (setting("log_dir", "elsewhere"), ["log_dir"]),
    (setting("keys_dir", "elsewhere"), ["keys_dir"]),
    (setting("allow_byzantine", True), ["allow_byzantine"]),
    (lambda data: (data["nodes"][2].update(port=1), data["protocol"].update(checkpoint_interval=64)),
     ["nodes[2].port", "protocol.checkpoint_interval"]),
]


@pytest.mark.parametrize("change, keys", FIXED)
def test_a_key_that_needs_a_restart_is_named(tmp_path, change, keys):
    path = write_network(tmp_path, protocol={"checkpoint_interval": 128})
    old = load_config(path)
    fixed, _ = live_changes(old, load_config(edit(path, change)))
    assert fixed == keys


def test_tls_and_the_clients_mail_server_need_a_restart(tmp_path):
    old = load_config(write_network(tmp_path))
    tls = NodeTLSConfig(Path("ca.pem"), Path("node-{id}.pem"), Path("node-{id}-key.pem"))
    with_tls = replace(old, tls=tls, nodes=tuple(replace(node, scheme="https") for node in old.nodes))
    assert live_changes(old, with_tls)[0] == ["tls"]
    smtp = SMTPConfig("mail.example", "ci@example.org")
    with_smtp = replace(old, clients=(replace(old.clients[0], smtp=smtp),))
    assert live_changes(old, with_smtp)[0] == ["clients[0].smtp"]


def other_repository(data):
    data["repositories"].append({"name": "other", "url": "other-repo"})


# Each edit that may change live, and the summary a reload logs.
LIVE = [
    (lambda data: None, "nothing changed"),
    (other_repository, "repositories added: other"),
    (lambda data: data["repositories"][0].update(url="moved-repo"), "repositories changed: example (url)"),
    (lambda data: data["repositories"][0].update(full_name="octo/example", secret=SECRET, build_tags=True),
     "repositories changed: example (full_name, secret, build_tags)"),
    (lambda data: data["repositories"][0].update(status_api="https://api.github.example", status_token=SECRET,
                                                 full_name="octo/example"),
     "repositories changed: example (full_name, status_api, status_token)"),
    (lambda data: data["repositories"][0].update(schedules=[{"name": "nightly", "cron": "@daily",
                                                             "branch": "master"}]),
     "repositories changed: example (schedules)"),
    (lambda data: data["repositories"][0].update(max_concurrent=1, build_network=True),
     "repositories changed: example (max_concurrent, build_network)"),
    (lambda data: data["clients"][0].update(token=TOKEN, plain_without_token=False),
     "changed: clients[0].plain_without_token, clients[0].token"),
    (lambda data: data["clients"][0].update(max_body_bytes=4096, body_timeout_s=3.0,
                                            public_url="https://ci.example"),
     "changed: clients[0].body_timeout_s, clients[0].max_body_bytes, clients[0].public_url"),
    (lambda data: data["clients"][0].update(public_badges=True), "changed: clients[0].public_badges"),
    # A runner's new key, beside its old one until the runner uses it.
    (lambda data: data["clients"][0].update(runners=[{"name": "deploy-next", "public_key": fresh_key()}]),
     "changed: clients[0].runners"),
    (setting("in_toto_layout", "owner.layout"), "changed: in_toto_layout"),
]


@pytest.mark.parametrize("change, summary", LIVE)
def test_a_key_that_may_change_live_is_summed_up_by_name_never_by_value(tmp_path, change, summary):
    path = write_network(tmp_path)
    old = load_config(path)
    fixed, said = live_changes(old, load_config(edit(path, change)))
    assert (fixed, said) == ([], summary)
    assert SECRET not in said and TOKEN not in said


def test_repositories_added_removed_and_changed_in_one_reload(tmp_path):
    path = write_network(tmp_path, repositories={"example": "repo", "gone": "gone-repo"})

    def change(data):
        data["repositories"] = [{"name": "example", "url": "repo", "notify": [{"webhook": "https://hooks.example/x",
                                                                               "secret": SECRET}]},
                                {"name": "newrepo", "url": "new-repo"}]

    old = load_config(path)
    new = load_config(edit(path, change))
    assert live_changes(old, new) == (
        [], "repositories added: newrepo; removed: gone; changed: example (notify)"
    )
    assert new.repository("example").notify == (NotifyConfig(webhook="https://hooks.example/x", secret=SECRET),)


async def test_a_reload_that_applies_tells_the_listeners_and_logs_what_changed(tmp_path, caplog):
    path = write_network(tmp_path)
    outcomes, seen = [], []
    live = LiveConfig(load_config(path), lambda: load_config(path), "client ci", outcomes.append)
    live.on_reload(seen.append)
    edit(path, other_repository)
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        assert await live.reload() == "applied"
    assert [repository.name for repository in live.current.repositories] == ["example", "other"]
    assert seen == [live.current] and outcomes == ["applied"]
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.INFO, "client ci reload: repositories added: other")
    ]


@pytest.mark.parametrize("broken, problem", [
    ("repositories: [{name: x, url: y}\nf: [", "line 2, column 1: not valid YAML"),
    (None, "repositories[0].name: is not a valid repository name: '-bad name'"),
    (None, "colour: unknown setting"),
])
async def test_a_file_that_does_not_load_is_refused_with_the_loaders_words(tmp_path, caplog, broken, problem):
    path = write_network(tmp_path)
    running = load_config(path)
    outcomes = []
    live = LiveConfig(running, lambda: load_config(path), "node=2", outcomes.append)
    if broken is not None:
        path.write_text(broken)
    elif "colour" in problem:
        edit(path, lambda data: data.update(colour="red"))
    else:
        edit(path, lambda data: data["repositories"][0].update(name="-bad name"))
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        assert await live.reload() == "refused"
    assert live.current is running and outcomes == ["refused"]
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("node=2 reload refused, the running configuration stays: ")
    assert f"{path.resolve()}: " in message and problem in message and "\n" not in message


async def test_a_file_changing_a_fixed_key_is_refused_as_a_whole(tmp_path, caplog):
    path = write_network(tmp_path, protocol={"checkpoint_interval": 128})
    running = load_config(path)
    seen = []
    live = LiveConfig(running, lambda: load_config(path), "node=1")
    live.on_reload(seen.append)

    def change(data):
        other_repository(data)  # would be fine alone
        data["nodes"][2]["port"] = 1
        data["protocol"]["checkpoint_interval"] = 64

    edit(path, change)
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        assert await live.reload() == "refused"
    assert live.current is running and seen == []
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.WARNING, "node=1 reload refused: nodes[2].port, protocol.checkpoint_interval cannot change "
                          "without a restart; the running configuration stays")
    ]


async def test_sighup_reloads_every_running_application_of_the_process(tmp_path):
    path = write_network(tmp_path)
    reloaded = asyncio.Event()
    lives = [LiveConfig(load_config(path), lambda: load_config(path), f"node={i}") for i in range(2)]
    seen = []
    for live in lives:
        live.on_reload(lambda config: (seen.append(config), len(seen) == 2 and reloaded.set()))
    apps = [web.Application() for _ in lives]
    for app, live in zip(apps, lives):
        app.cleanup_ctx.append(reload_on_sighup(live))
    runners = [web.AppRunner(app) for app in apps]
    for runner in runners:
        await runner.setup()
    try:
        edit(path, other_repository)
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(10):
            await reloaded.wait()
        assert all(live.current.repository("other") is not None for live in lives)
    finally:
        for runner in runners:
            await runner.cleanup()
    # Both gone: SIGHUP is the default action's again, which nobody here may now send.
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
