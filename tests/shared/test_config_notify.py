"""The configuration of notifications: `repositories[].notify` and `clients[].smtp`."""

import pytest
import yaml

from harness.network import write_network
from shared.config import NOTIFY_STATUSES, ConfigError, load_config
from tests.shared.config_files import edit

SECRET = "0123456789abcdef" * 4


def with_notify(path, targets, smtp=None):
    def change(data):
        data["repositories"][0]["notify"] = targets
        if smtp is not None:
            data["clients"][0]["smtp"] = smtp
    return edit(path, change)


def test_the_example_of_the_docs_loads_with_a_bare_on(tmp_path):
    (tmp_path / "keys").mkdir(exist_ok=True)
    path = write_network(tmp_path)
    (tmp_path / "keys" / "notify-hook.secret").write_text(SECRET + "\n")
    (tmp_path / "keys" / "smtp.password").write_text("hunter2-but-longer\n")
    data = yaml.safe_load(path.read_text())
    url = data["repositories"][0]["url"]
    # As an operator writes it: YAML 1.1 reads a bare `on` as true.
    text = path.read_text().replace(f"url: {url}", f"""url: {url}
  notify:
    - webhook: https://hooks.example.org/ci
      secret_file: keys/notify-hook.secret
      on: [failure, error, disputed]
      branches: [master]
    - email: team@example.org
      on: [failure, disputed]""", 1)
    text = text.replace("  plain_without_token: true", """  plain_without_token: true
  smtp:
    host: smtp.example.org
    port: 587
    from: pbft-ci@example.org
    starttls: true
    user: pbft-ci
    password_file: keys/smtp.password""", 1)
    path.write_text(text)

    config = load_config(path)
    hook, mail = config.repository("example").notify
    assert (hook.webhook, hook.secret, hook.on, hook.branches, hook.email) == (
        "https://hooks.example.org/ci", SECRET, ("failure", "error", "disputed"), ("master",), ())
    assert (mail.email, mail.on, mail.branches, mail.webhook) == (("team@example.org",), ("failure", "disputed"), (),
                                                                  "")
    smtp = config.clients[0].smtp
    assert (smtp.host, smtp.port, smtp.from_address, smtp.starttls, smtp.user, smtp.password) == (
        "smtp.example.org", 587, "pbft-ci@example.org", True, "pbft-ci", "hunter2-but-longer")
    assert SECRET not in repr(config) and "hunter2" not in repr(config)

    # A node reads neither file: they stay on the client's host.
    (tmp_path / "keys" / "notify-hook.secret").unlink()
    (tmp_path / "keys" / "smtp.password").unlink()
    with pytest.raises(ConfigError, match=r"notify\[0\].secret_file: cannot read"):
        load_config(path)
    on_a_node = load_config(path, read_secrets=False)
    assert on_a_node.repository("example").notify[0].secret == "" and on_a_node.clients[0].smtp.password == ""


def test_targets_default_to_every_verdict_and_every_branch(tmp_path):
    path = with_notify(write_network(tmp_path), [{"webhook": "http://127.0.0.1:9999/hook", "secret": SECRET}])
    [target] = load_config(path).repository("example").notify
    assert target.on == NOTIFY_STATUSES and target.branches == ()
    assert "no_quorum" in NOTIFY_STATUSES and "matrix" not in NOTIFY_STATUSES


def test_every_problem_is_named_by_its_key(tmp_path):
    path = with_notify(write_network(tmp_path), [
        {"webhook": "https://hooks.example.org/ci", "email": "team@example.org"},
        {"webhook": "ftp://hooks.example.org/ci", "secret": "short", "on": ["failed"], "branches": ["-x"], "colour": 1},
        {"webhook": "https://hooks.example.org/ci"},
        {"email": ["team@example.org", "evil@example.org\r\nBcc: x@example.org"], "secret": SECRET},
        {"email": "ops@example.org", "on": []},
        "team@example.org",
    ], smtp={"host": "smtp.example.org", "from": "Pbft CI <ci@example.org>", "user": "ci", "port": 70000,
             "ca_file": "ca.pem", "tls": True})
    with pytest.raises(ConfigError) as error:
        load_config(path)
    problems = error.value.problems
    expected = [
        "repositories[0].notify[0]: has both webhook and email: make them two entries",
        "repositories[0].notify[1].colour: unknown setting; known here: webhook, secret, secret_file, email, on, "
        "branches",
        "repositories[0].notify[1].webhook: is not a valid http(s) URL: 'ftp://hooks.example.org/ci'",
        "repositories[0].notify[1].secret: is not a valid webhook secret: at least 32 characters",
        "repositories[0].notify[1].on[0]: expected a verdict (success, failure, error, timeout, skipped, cancelled, "
        "divergent, disputed, no_quorum), got 'failed'",
        "repositories[0].notify[1].branches[0]: '-x': branch name starts with '-'",
        "repositories[0].notify[2].secret_file: is required for a webhook",
        "repositories[0].notify[3].secret: is only for a webhook",
        "repositories[0].notify[3].email[1]: is not a plain e-mail address",
        "repositories[0].notify[4].on: must not be empty",
        "repositories[0].notify[5]: expected a mapping, got 'team@example.org'",
        "clients[0].smtp.tls: unknown setting",
        "clients[0].smtp.password_file: user and password_file go together",
        "clients[0].smtp.starttls: must be true to log in to smtp.example.org",
        "clients[0].smtp.ca_file: is only for starttls",
        "clients[0].smtp.from: is not a plain e-mail address",
        "clients[0].smtp.port: must be at most 65535",
    ]
    for start in expected:
        assert any(problem.startswith(start) for problem in problems), (start, problems)
    assert len(problems) == len(expected), problems


def test_an_email_target_needs_a_mail_server_and_a_login_on_loopback_may_go_without_starttls(tmp_path):
    path = with_notify(write_network(tmp_path), [{"email": "team@example.org"}])
    with pytest.raises(ConfigError, match=r"repositories\[0\].notify\[0\].email: needs an smtp section "
                                          r"\(host, from\) in clients\[0\] \('client'\)"):
        load_config(path)

    (tmp_path / "smtp.password").write_text("a local relay's password\n")
    edit(path, lambda data: data["clients"][0].update(smtp={
        "host": "127.0.0.1", "port": 2525, "from": "ci@example.org", "user": "ci", "password_file": "smtp.password"}))
    smtp = load_config(path).clients[0].smtp
    assert (smtp.starttls, smtp.user, smtp.password, smtp.timeout_s) == (False, "ci", "a local relay's password", 30.0)
