"""The network configuration: YAML in, frozen dataclasses out, every problem reported at once."""

import re

import pytest

from harness.network import write_network
from pbft.messages import MAX_NODES
from shared.config import BuildConfig, ConfigError, load_config, read_node_status_token
from shared.crypto import generate_private_key, public_key_hex
from tests.shared.config_files import edit


def fresh_key() -> str:
    return public_key_hex(generate_private_key())


def test_the_example_configuration_loads(tmp_path):
    config = load_config(write_network(tmp_path))
    assert (config.n, config.f) == (4, 1)
    assert config.repository("example").url == str(tmp_path / "repo")
    assert config.repository("nope") is None
    assert config.protocol.checkpoint_interval == 128 and config.protocol.log_window == 256
    assert config.data_dir == tmp_path / "data"


def test_a_network_of_more_nodes_than_a_verdicts_proof_can_hold_in_one_batch_is_refused(tmp_path):
    def grow(data, n):
        first = data["nodes"][0]
        data["nodes"] = [{**first, "id": i, "port": 30000 + i, "public_key": fresh_key()} for i in range(n)]

    at_most = load_config(edit(write_network(tmp_path / "64"), lambda data: grow(data, MAX_NODES)))
    assert at_most.n == MAX_NODES
    with pytest.raises(ConfigError) as caught:
        load_config(edit(write_network(tmp_path / "65"), lambda data: grow(data, MAX_NODES + 1)))
    assert caught.value.problems == [f"nodes: at most {MAX_NODES} nodes, got {MAX_NODES + 1}: a verdict's proof "
                                     "holds a vote of each, and must fit in one batch"]


def test_every_problem_is_reported_at_once_with_its_path(tmp_path):
    def break_it(data):
        data["f"] = 2
        data["nodes"][1]["port"] = 70000
        data["nodes"][2]["public_key"] = "zz"
        data["repositories"][0]["url"] = "-oProxyCommand=evil"
        data["repositories"][0]["auto_cancle"] = False
        data["build"] = {"timeout_s": "long", "gpus": 1, "user": "build"}
        data["surprise"] = True

    with pytest.raises(ConfigError) as caught:
        load_config(edit(write_network(tmp_path), break_it))
    problems = "\n".join(caught.value.problems)
    for expected in (
        "nodes[1].port: must be at most 65535",
        "nodes[2].public_key: is not an Ed25519 public key (64 hex digits): 'zz'",
        "repositories[0].url: is not a valid repository URL or path",
        "repositories[0].auto_cancle: unknown setting",
        "build.timeout_s: expected a number, got 'long'",
        "build.gpus: unknown setting; did you mean cpus?",
        "build.user: is not a numeric uid:gid (e.g. 1000:1000): 'build'",
        "surprise: unknown setting",
        "f: n = 4 nodes tolerate at most f = 1",
    ):
        assert expected in problems, problems
    assert len(caught.value.problems) == 9
    # One line per problem, each naming the file and the key.
    path = tmp_path / "network.yaml"
    assert str(caught.value).splitlines() == [f"{path}: {problem}" for problem in caught.value.problems]


def test_a_yaml_syntax_error_is_one_line_naming_the_file_line_and_column(tmp_path):
    path = tmp_path / "network.yaml"
    path.write_text("f: 1\nnodes:\n  - {id: 0, host: 127.0.0.1, port: 9000\nclients: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: line 4, column 8: not valid YAML: expected ',' or '}}', but got ':' "
                                 "(while parsing a flow mapping at line 3, column 5)")


def test_a_file_that_cannot_be_read_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert str(caught.value) == f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"


def test_node_ids_are_each_nodes_own_and_need_not_follow_on(tmp_path):
    def renumber(data):
        data["nodes"][3]["id"] = 7

    def share(data):
        data["nodes"][3]["id"] = 1

    # A node that joins takes a new id, and one removed leaves its id unused.
    path = write_network(tmp_path)
    assert [node.id for node in load_config(edit(path, renumber)).nodes] == [0, 1, 2, 7]
    with pytest.raises(ConfigError, match=r"each id must be a node's own; got \[0, 1, 1, 2\]"):
        load_config(edit(path, share))


def test_a_joining_node_runs_with_the_document_the_network_started_from(tmp_path):
    path = write_network(tmp_path)
    first = load_config(path)
    entry = {"id": 4, "host": "127.0.0.1", "port": 19999, "public_key": fresh_key()}
    joining = load_config(edit(path, lambda data: data.update(joining=entry)), node_id=4)
    # Its own entry is a local setting: the network document, and its digest, stay the network's.
    assert joining.digest == first.digest and joining.n == 4
    assert joining.has_node(4) and joining.node(4).port == 19999 and joining.node(4).url("/peer").startswith("http")
    assert not first.has_node(4)


def test_nodes_and_clients_need_addresses_and_keys_of_their_own(tmp_path):
    def collide(data):
        data["nodes"][3]["public_key"] = data["nodes"][1]["public_key"]
        data["clients"][0]["public_key"] = data["nodes"][0]["public_key"]
        data["nodes"][2].update(host=data["nodes"][0]["host"], port=data["nodes"][0]["port"])
        data["clients"].append({**data["clients"][0], "public_key": fresh_key(), "port": data["nodes"][1]["port"]})

    with pytest.raises(ConfigError) as caught:
        load_config(edit(write_network(tmp_path), collide))
    problems = "\n".join(caught.value.problems)
    for expected in (
        "nodes: node 3 has the same public key as node 1",
        "clients: client 'client' has the same public key as node 0",
        "clients[1].name: 'client' is already the name of clients[0]",
    ):
        assert expected in problems, problems
    for section, who, owner in (("nodes", "node 2", "node 0"), ("clients", "client 'client'", "node 1")):
        assert re.search(rf"{section}: {who} listens on 127\.0\.0\.1:\d+, as {owner} does", problems), problems
    assert len(caught.value.problems) == 5, problems


def test_a_client_lists_the_action_runners_it_takes_reports_from(tmp_path):
    config = load_config(write_network(tmp_path, runners=("deploy", "deploy-next")))
    client = config.clients[0]
    assert [runner.name for runner in client.runners] == ["deploy", "deploy-next"]
    assert client.runner("deploy").public_key and client.runner("stranger") is None
    assert config.runner_key_path("deploy") == tmp_path / "keys" / "runner-deploy.key"


def test_each_runner_needs_a_name_and_a_key_of_its_own(tmp_path):
    def collide(data):
        runners = data["clients"][0]["runners"]
        runners[1]["public_key"] = data["nodes"][0]["public_key"]
        runners.append({"name": "deploy", "public_key": fresh_key(), "host": "x"})
        runners.append({"name": "no spaces", "public_key_file": "keys/absent.pub"})
        # A second client may list the same runner, with the same key; not with another one.
        data["clients"].append({"name": "other", "host": "127.0.0.1", "port": data["clients"][0]["port"] + 1,
                                "public_key": fresh_key(), "runners": [{**runners[0], "public_key": fresh_key()}]})

    with pytest.raises(ConfigError) as caught:
        load_config(edit(write_network(tmp_path, runners=("deploy", "next")), collide))
    problems = "\n".join(caught.value.problems)
    for expected in (
        "clients[0].runners[2].host: unknown setting; known here: name, public_key, public_key_file",
        "clients[0].runners[2].name: 'deploy' is already the name of clients[0].runners[0]",
        "clients[0].runners[3].name: is not a valid runner name",
        "clients[0].runners[3].public_key_file: ",  # does not exist (run scripts/keygen.py)
        "clients: runner 'next' has the same public key as node 0",
        "clients: runner 'deploy' is listed with two different public keys",
    ):
        assert expected in problems, problems


def test_secrets_can_live_in_files_next_to_the_configuration(tmp_path):
    (tmp_path / "hook.secret").write_text("It's a Secret to Everybody\n")

    def add_forge(data):
        data["repositories"][0].update(full_name="octo/example", secret_file="hook.secret", build_tags=True)

    path = write_network(tmp_path)
    repository = load_config(edit(path, add_forge)).repository("example")
    assert (repository.full_name, repository.secret, repository.build_tags) == (
        "octo/example", "It's a Secret to Everybody", True
    )

    def missing(data):
        data["repositories"][0]["status_token_file"] = "absent.token"

    with pytest.raises(ConfigError, match=r"repositories\[0\].status_token_file: cannot read"):
        load_config(edit(path, missing))


def test_a_node_reads_none_of_the_clients_secret_files(tmp_path):
    def secrets_elsewhere(data):
        data["clients"][0]["token_file"] = "on-the-client-host.token"
        data["repositories"][0].update(secret_file="secrets/hook", status_token_file="secrets/status")

    path = edit(write_network(tmp_path), secrets_elsewhere)
    with pytest.raises(ConfigError, match="token_file: cannot read"):
        load_config(path)
    config = load_config(path, read_secrets=False)
    assert config.clients[0].token == "" and config.repository("example").secret == ""
    assert config.repository("example").status_token == ""


NODE_TOKEN_FILE = "keys/node-{id}.status-token"


def node_statuses_on(data, **settings):
    data["repositories"][0].update(node_statuses=True, **settings)


def test_node_statuses_need_a_status_api_a_full_name_and_a_token_file(tmp_path):
    path = edit(write_network(tmp_path), node_statuses_on)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        "repositories[0].node_statuses: needs status_api and full_name: each node posts its own status "
        "to the forge's statuses API for the repository's full_name",
        "repositories[0].node_status_token_file: is required with node_statuses: each node posts with a forge "
        "token of its own (e.g. keys/node-{id}.status-token, where {id} is the node's id)",
    ]

    def only_a_token_file(data):
        data["repositories"][0].update(node_statuses=False, node_status_token_file=NODE_TOKEN_FILE)

    with pytest.raises(ConfigError) as caught:
        load_config(edit(path, only_a_token_file))
    assert caught.value.problems == ["repositories[0].node_status_token_file: is read only with node_statuses: true"]


def test_each_node_reads_its_own_status_token_and_refuses_to_start_without_it(tmp_path):
    path = edit(write_network(tmp_path), lambda data: node_statuses_on(
        data, status_api="https://api.github.com", full_name="octo/example", node_status_token_file=NODE_TOKEN_FILE))
    (tmp_path / "keys" / "node-1.status-token").write_text("ghp_node-one-token\n")
    (tmp_path / "keys" / "node-2.status-token").write_text("two words\n")

    # The client reads no node's token; node 1 has its own.
    repository = load_config(path).repository("example")
    assert repository.node_statuses and repository.node_status_token_file == NODE_TOKEN_FILE
    assert load_config(path, node_id=1, read_secrets=False).repository("example").node_statuses
    assert read_node_status_token(repository.node_status_token_path(tmp_path, 1)) == "ghp_node-one-token"

    missing = tmp_path / "keys" / "node-0.status-token"
    with pytest.raises(ConfigError) as caught:
        load_config(path, node_id=0, read_secrets=False)
    assert caught.value.problems == [
        f"repositories[0].node_status_token_file: node 0: cannot read {missing}: No such file or directory"]
    with pytest.raises(ConfigError) as caught:
        load_config(path, node_id=2, read_secrets=False)
    assert caught.value.problems == [
        f"repositories[0].node_status_token_file: node 2: {tmp_path / 'keys' / 'node-2.status-token'} "
        "must hold one token of printable ASCII without spaces"]
    assert "two words" not in str(caught.value)  # a file's content never lands in an error


def test_a_build_must_be_able_to_finish_before_the_client_gives_up(tmp_path):
    def slow_builds(data):
        data["build"] = {"timeout_s": 600}
        data["protocol"] = {"client_deadline_s": 600}

    with pytest.raises(ConfigError) as caught:
        load_config(edit(write_network(tmp_path), slow_builds))
    assert caught.value.problems == [
        "build.timeout_s: 600 s must be less than protocol.client_deadline_s (600 s): "
        "a build at its full timeout could not be answered before the client gives up"
    ]


def test_the_defaults_and_the_example_keep_builds_within_the_client_deadline(tmp_path):
    config = load_config(write_network(tmp_path))
    assert config.build.timeout_s < config.protocol.client_deadline_s
    assert config.build.home_mb == 256


def test_build_caches_have_defaults_and_may_be_switched_off(tmp_path):
    assert (BuildConfig().cache_mb, BuildConfig().cache_keep) == (512, 3)

    build = load_config(write_network(tmp_path, build={"cache_mb": 0, "cache_keep": 1})).build
    assert (build.cache_mb, build.cache_keep) == (0, 1)


def test_build_artifacts_have_defaults_and_may_be_switched_off(tmp_path):
    assert (BuildConfig().artifacts_mb, BuildConfig().artifacts_keep) == (64, 5)

    build = load_config(write_network(tmp_path, build={"artifacts_mb": 0, "artifacts_keep": 1})).build
    assert (build.artifacts_mb, build.artifacts_keep) == (0, 1)


@pytest.mark.parametrize(
    "setting, value, problem",
    [
        ("memory_mb", 0, "build.memory_mb: must be at least 1"),
        ("workspace_mb", 0, "build.workspace_mb: must be at least 1"),
        ("tmp_mb", 0, "build.tmp_mb: must be at least 1"),
        ("home_mb", 0, "build.home_mb: must be at least 1"),
        ("pids_limit", 0, "build.pids_limit: must be at least 1"),
        ("max_concurrent", 0, "build.max_concurrent: must be at least 1"),
        ("cpus", 0, "build.cpus: must be more than 0"),
        ("cpus", -1.5, "build.cpus: must be more than 0"),
        ("timeout_s", 0, "build.timeout_s: must be more than 0"),
        ("cache_keep", 0, "build.cache_keep: must be at least 1"),
        ("cache_mb", -1, "build.cache_mb: must be at least 0"),
        ("artifacts_keep", 0, "build.artifacts_keep: must be at least 1"),
        ("artifacts_mb", -1, "build.artifacts_mb: must be at least 0"),
    ],
)
def test_build_limits_that_leave_no_room_are_refused(tmp_path, setting, value, problem):
    def zero(data):
        data["build"] = {setting: value}

    with pytest.raises(ConfigError) as caught:
        load_config(edit(write_network(tmp_path), zero))
    assert caught.value.problems == [problem]


TOKEN = "0123456789abcdef" * 4  # 64 characters, as `openssl rand -hex 32` writes


def test_client_access_settings_and_their_defaults(tmp_path):
    (tmp_path / "client.token").write_text(TOKEN + "\n")

    def add_token(data):
        data["clients"][0].update(token_file="client.token", body_timeout_s=0.5)

    client = load_config(edit(write_network(tmp_path), add_token)).clients[0]
    assert (client.token, client.body_timeout_s) == (TOKEN, 0.5)
    assert TOKEN not in repr(client)  # a config printed for debugging does not leak it

    def defaults(data):
        data["clients"][0] = {key: data["clients"][0][key] for key in ("name", "host", "port", "public_key")}

    client = load_config(edit(tmp_path / "network.yaml", defaults)).clients[0]
    assert (client.token, client.plain_without_token, client.body_timeout_s) == ("", False, 10.0)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_plain_calls_without_a_token_may_be_allowed_on_loopback(tmp_path, host):
    def opt_out(data):
        data["clients"][0].update(host=host, plain_without_token=True)

    assert load_config(edit(write_network(tmp_path), opt_out)).clients[0].plain_without_token


def test_client_access_problems_are_reported_with_their_paths(tmp_path):
    (tmp_path / "short.token").write_text("too-short\n")

    def break_it(data):
        data["clients"][0].update(token_file="short.token", body_timeout_s=0)
        # Each client a key of its own: a shared one is a problem of its own (below).
        data["clients"].append({**data["clients"][0], "name": "exposed", "host": "0.0.0.0", "public_key": fresh_key(),
                                "plain_without_token": True, "token_file": "absent.token", "body_timeout_s": -1})
        data["clients"].append({**data["clients"][0], "name": "spaced", "host": "10.0.0.5", "token": " " * 40,
                                "public_key": fresh_key(),
                                "token_fiel": "typo.token", "body_timeout_s": 1,
                                "plain_without_token": False})
        del data["clients"][2]["token_file"]

    with pytest.raises(ConfigError) as caught:
        load_config(edit(write_network(tmp_path), break_it))
    problems = "\n".join(caught.value.problems)
    for expected in (
        "clients[0].token_file: is not a valid token: 32 or more printable ASCII characters without spaces",
        "clients[0].body_timeout_s: must be more than 0",
        "clients[1].token_file: cannot read",
        "clients[1].plain_without_token: only allowed when host is a loopback address",
        "clients[1].body_timeout_s: must be more than 0",
        "clients[2].token: is not a valid token: 32 or more printable ASCII characters without spaces",
        "clients[2].token_fiel: unknown setting; did you mean token_file?",
    ):
        assert expected in problems, problems
    assert len(caught.value.problems) == 7, problems


@pytest.mark.parametrize("flag", [
    "build_network",  # may builds reach the network?
    "skipped_passes",  # is a skipped build a pass to GitHub and Gitea?
])
def test_a_repository_flag_is_off_unless_the_repository_asks_and_must_be_a_bool(tmp_path, flag):
    path = write_network(tmp_path)
    assert getattr(load_config(path).repository("example"), flag) is False

    def set_to(value):
        return lambda data: data["repositories"][0].update({flag: value})

    assert getattr(load_config(edit(path, set_to(True))).repository("example"), flag) is True
    with pytest.raises(ConfigError, match=rf"repositories\[0\].{flag}: expected a boolean, got 'yes'"):
        load_config(edit(path, set_to("yes")))


@pytest.mark.parametrize("n, relay", [(4, False), (7, True), (16, True)])
def test_votes_are_relayed_from_seven_nodes_up_unless_the_network_says(tmp_path, n, relay):
    assert load_config(write_network(tmp_path / "unset", n=n, f=(n - 1) // 3)).protocol.relay_votes is relay
    for setting in (True, False):
        path = write_network(tmp_path / str(setting), n=n, f=(n - 1) // 3, protocol={"relay_votes": setting})
        assert load_config(path).protocol.relay_votes is setting


def test_a_client_grants_roles_to_people_and_groups_and_refuses_a_grant_to_nobody(tmp_path):
    def grant(data):
        data["clients"][0]["grants"] = [
            {"role": "trigger", "users": ["alice"], "repositories": ["example"]},
            {"role": "admin", "groups": ["ci-admins"]},
        ]

    grants = load_config(edit(write_network(tmp_path), grant)).clients[0].grants
    assert [(g.role, g.users, g.groups, g.repositories) for g in grants] == [
        ("trigger", ("alice",), (), ("example",)), ("admin", (), ("ci-admins",), ())]

    def break_it(data):
        data["clients"][0]["grants"] = [{"role": "root", "users": ["alice"]}, {"role": "read"},
                                        {"role": "read", "users": ["a b"]}]

    with pytest.raises(ConfigError) as caught:
        load_config(edit(tmp_path / "network.yaml", break_it))
    problems = "\n".join(caught.value.problems)
    for expected in ("clients[0].grants[0].role: ", "clients[0].grants[1].users: a grant names users, groups or both",
                     "clients[0].grants[2].users[0]: "):
        assert expected in problems, problems
