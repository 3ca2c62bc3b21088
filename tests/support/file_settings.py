"""A test network's configuration given each kind of setting that names a host's file: one
case per kind (`CASES`), each writing its files beside the configuration and editing its
mapping; the cases combine (`give_all`). The network must have owners (`with_owner`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from shared.crypto import PrivateKey, generate_private_key, public_key_hex
from tests.support.second_engine import make_certificates

WEBHOOK = "https://hooks.example.org/ci"
# What every secret file of a case holds: a document or a reason must never show it.
SECRET_TEXT = "a-secret-that-must-stay-on-its-host-" * 2


def with_owner(data: dict, name: str, key: PrivateKey) -> None:
    owners = data.setdefault("owners", {"threshold": 1, "keys": []})
    owners["keys"].append({"name": name, "public_key": public_key_hex(key)})


def secret_file(folder: Path, name: str) -> str:
    """`name`, a file in `folder` that holds SECRET_TEXT."""
    (folder / name).write_text(SECRET_TEXT)
    return name


def _notify(data: dict) -> list:
    return data["repositories"][0].setdefault("notify", [])


def notify_webhook(data: dict, folder: Path) -> None:
    _notify(data).append({"webhook": WEBHOOK, "secret_file": secret_file(folder, "hook.secret")})


def forge_secrets(data: dict, folder: Path) -> None:
    data["repositories"][0].update(full_name="team/example", status_api="https://api.github.com",
                                   secret_file=secret_file(folder, "forge.secret"),
                                   status_token_file=secret_file(folder, "status.token"))


def node_statuses(data: dict, folder: Path) -> None:
    for node in data["nodes"]:
        (folder / f"node-{node['id']}.status-token").write_text("a-node-token\n")
    data["repositories"][0].update(full_name="team/example", node_statuses=True,
                                   node_status_token_file="node-{id}.status-token")
    data["repositories"][0].setdefault("status_api", "https://api.github.com")


def build_secret(data: dict, folder: Path) -> None:
    data["repositories"][0]["secrets"] = [{"name": "API_KEY", "file": secret_file(folder, "api.secret")}]


def client_token(data: dict, folder: Path) -> None:
    data["clients"][0]["token_file"] = secret_file(folder, "client.token")


def mail_server(data: dict, folder: Path) -> None:
    """The client's mail server, which an e-mail target needs."""
    data["clients"][0]["smtp"] = {"host": "smtp.example.org", "from": "ci@example.org", "port": 587,
                                  "starttls": True, "ca_file": secret_file(folder, "smtp-ca.pem"), "user": "ci",
                                  "password_file": secret_file(folder, "smtp.password")}
    _notify(data).append({"email": "team@example.org"})


def sign_in(data: dict, folder: Path) -> None:
    data["clients"][0]["sign_in"] = {"issuer": "https://id.example.org", "client_id": "pbft-ci",
                                     "client_secret_file": secret_file(folder, "oidc.secret")}


def public_key_files(data: dict, folder: Path) -> None:
    """Each kind of principal's key read from a file: its value is in the document."""
    runner = generate_private_key()
    data["clients"][0]["runners"] = [{"name": "runner", "public_key": public_key_hex(runner)}]
    entries = [data["nodes"][1], data["clients"][0], data["clients"][0]["runners"][0], data["owners"]["keys"][0]]
    for index, entry in enumerate(entries):
        (folder / f"key-{index}.pub").write_text(entry.pop("public_key") + "\n")
        entry["public_key_file"] = f"key-{index}.pub"


def registry_credentials(data: dict, folder: Path) -> None:
    (folder / "auth-0.json").write_text('{"auths": {}}')
    data.setdefault("build", {}).update(registries=["registry.example.org"], registry_auth_file="auth-{id}.json")


def engine_tls(data: dict, folder: Path) -> None:
    for name in ("engine-ca.pem", "engine-cert.pem", "engine-key.pem"):
        secret_file(folder, name)
    tls = {"ca_file": "engine-ca.pem", "cert_file": "engine-cert.pem", "key_file": "engine-key.pem"}
    data.setdefault("build", {}).update(docker_host="tcp://10.0.0.5:2376", docker_tls=tls)
    data["nodes"][2].update(docker_host="tcp://10.0.0.6:2376", docker_tls=tls)


def node_tls(data: dict, folder: Path) -> None:
    made = make_certificates(folder / "tls")
    data["tls"] = {"ca_file": str(made["ca"]), "cert_file": str(made["server"]), "key_file": str(made["server-key"])}


def layout_and_folders(data: dict, folder: Path) -> None:
    (folder / "owner.layout").write_text("{}")
    data.update(in_toto_layout="owner.layout", data_dir="state", log_dir="logs", keys_dir="keys")


Give = Callable[[dict, Path], None]
# Each case: the settings it gives (as "Section.key"), and how.
CASES: dict[str, tuple[set[str], Give]] = {
    "a notification webhook's secret_file": ({"NotifyConfig.secret_file"}, notify_webhook),
    "a forge's secret_file and status_token_file": (
        {"RepositoryConfig.secret_file", "RepositoryConfig.status_token_file"}, forge_secrets),
    "each node's node_status_token_file": ({"RepositoryConfig.node_status_token_file"}, node_statuses),
    "a build secret's file": ({"BuildSecretConfig.file"}, build_secret),
    "the client's token_file": ({"ClientConfig.token_file"}, client_token),
    "the client's mail server, its password_file and ca_file, for an e-mail target": (
        {"SMTPConfig.password_file", "SMTPConfig.ca_file"}, mail_server),
    "the client's sign-in client_secret_file": ({"SignInConfig.client_secret_file"}, sign_in),
    "public_key_file of a node, a client, a runner and an owner": (
        {"NodeConfig.public_key_file", "ClientConfig.public_key_file", "RunnerKeyConfig.public_key_file",
         "OwnerKeyConfig.public_key_file"}, public_key_files),
    "registry_auth_file": ({"BuildConfig.registry_auth_file"}, registry_credentials),
    "a build engine's TLS files": (
        {"DockerTLSConfig.ca_file", "DockerTLSConfig.cert_file", "DockerTLSConfig.key_file"}, engine_tls),
    "the nodes' TLS files": ({"NodeTLSConfig.ca_file", "NodeTLSConfig.cert_file", "NodeTLSConfig.key_file"}, node_tls),
    "the in-toto layout and the folders": (
        {"NetworkConfig.in_toto_layout", "NetworkConfig.data_dir", "NetworkConfig.log_dir", "NetworkConfig.keys_dir"},
        layout_and_folders),
}


def give_all(data: dict, folder: Path, *, leave_out: tuple[Give, ...] = ()) -> None:
    """Every case at once, but those of `leave_out`."""
    for _, give in CASES.values():
        if give not in leave_out:
            give(data, folder)
