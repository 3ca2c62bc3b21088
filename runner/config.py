"""The action runner's configuration: its own YAML, beside the network's.

    network: network.yaml                 # the network's configuration: its nodes' public keys, f, repositories
    name: runner                          # as the client's entry lists it (clients[].runners) with its public key
    key_file: keys/runner-runner.key      # its own Ed25519 key, which signs its reports (default: the
                                          # network's keys_dir/runner-<name>.key, where scripts/keygen.py makes it)
    client_url: http://127.0.0.1:8080     # the client whose certified verdicts it follows
    client_token_file: keys/client.token  # the client's bearer token, if it has one
    data_dir: data/runner                 # its records of what ran, its mirrors and action logs
    poll_s: 2.0
    image: pbft-ci/busybox:latest         # for an action that names none
    timeout_s: 600
    network_mode: bridge                  # the actions' containers: bridge (a deploy reaches out) or none
    repositories:
      example:
        secrets:
          DEPLOY_TOKEN: keys/deploy-token # a file beside this one; read when an action starts

Paths are relative to this file. Secrets live only here: no node's
configuration names them, and an action gets only those its `secrets:` lists.
The runner starts only if a client of the network's configuration lists its
name with the public key of its `key_file`: otherwise that client would
refuse every report it signs (shared/actionreport.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from builder import SECRET_NAME
from shared.config import NetworkConfig, is_client_name, load_config
from shared.crypto import PrivateKey, load_private_key, public_key_hex

_KEYS = {"network", "name", "key_file", "client_url", "client_token_file", "data_dir", "poll_s", "image", "timeout_s",
         "network_mode", "repositories"}
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
# CI and PBFT_CI variables are the runner's to set.
_RESERVED = ("CI", "CI_", "PBFT_CI")


class RunnerConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RunnerConfig:
    path: Path
    network: NetworkConfig
    name: str  # signs its reports under this name
    key: PrivateKey = field(repr=False)  # its own; the client's configuration has the public half
    client_url: str
    data_dir: Path
    client_token_file: Path | None = None
    poll_s: float = 2.0
    image: str = "pbft-ci/busybox:latest"
    timeout_s: float = 600.0
    network_mode: str = "bridge"
    secrets: dict[str, dict[str, Path]] = field(default_factory=dict)  # repository -> name -> file

    def client_token(self) -> str | None:
        if self.client_token_file is None:
            return None
        return self.client_token_file.read_text().strip()

    def secret_values(self, repository: str, names: tuple[str, ...]) -> dict[str, str]:
        """The values of `names` for `repository`, read now (a rotated file takes effect at once);
        RunnerConfigError names the first one missing."""
        values = {}
        for name in names:
            path = self.secrets.get(repository, {}).get(name)
            if path is None:
                raise RunnerConfigError(f"secret {name} is not configured for repository {repository}")
            try:
                value = path.read_text().removesuffix("\n")
            except OSError as error:
                raise RunnerConfigError(f"secret {name}: cannot read {path}: {error.strerror}") from None
            if not value:
                raise RunnerConfigError(f"secret {name}: {path} is empty")
            values[name] = value
        return values


def load_runner_config(path: Path) -> RunnerConfig:
    path = Path(path).resolve()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise RunnerConfigError(f"{path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise RunnerConfigError(f"{path}: not YAML: {error}") from None
    if not isinstance(data, dict):
        raise RunnerConfigError(f"{path}: must be a mapping")
    problems = [f"{key}: unknown setting" for key in data if key not in _KEYS]

    def relative(value) -> Path:
        return (path.parent / value).resolve()

    network_path = data.get("network")
    if not isinstance(network_path, str):
        raise RunnerConfigError(f"{path}: network: the network configuration's path is required")
    network = load_config(relative(network_path), read_secrets=False)  # public keys are all it needs
    client_url = data.get("client_url")
    if not isinstance(client_url, str) or not _URL.fullmatch(client_url):
        problems.append("client_url: must be an http(s) URL")
    poll_s, timeout_s = data.get("poll_s", 2.0), data.get("timeout_s", 600.0)
    for key, value in (("poll_s", poll_s), ("timeout_s", timeout_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            problems.append(f"{key}: must be a positive number")
    network_mode = data.get("network_mode", "bridge")
    if network_mode not in ("bridge", "none"):
        problems.append("network_mode: must be bridge or none")
    secrets: dict[str, dict[str, Path]] = {}
    repositories = data.get("repositories") or {}
    known = {repository.name for repository in network.repositories}
    if not isinstance(repositories, dict):
        problems.append("repositories: must be a mapping of repository names")
        repositories = {}
    for name, section in repositories.items():
        where = f"repositories.{name}"
        if name not in known:
            problems.append(f"{where}: not a repository of the network ({', '.join(sorted(known))})")
            continue
        if not isinstance(section, dict) or set(section) - {"secrets"}:
            problems.append(f"{where}: must be a mapping with secrets")
            continue
        for secret, file in (section.get("secrets") or {}).items():
            if not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret) or secret.startswith(_RESERVED):
                problems.append(f"{where}.secrets: {str(secret)[:40]!r} is not a variable name of its own")
            elif not isinstance(file, str) or not relative(file).is_file():
                problems.append(f"{where}.secrets.{secret}: {file!r} is not a file")
            else:
                secrets.setdefault(name, {})[secret] = relative(file)
    name, key = data.get("name"), None
    if not isinstance(name, str) or not is_client_name(name):
        problems.append("name: the runner's name is required (letters, digits, . _ -), as the client's"
                        " configuration lists it under clients[].runners")
    else:
        key_file = data.get("key_file")
        key_path = network.runner_key_path(name) if key_file is None else relative(str(key_file))
        try:
            key = load_private_key(key_path)
        except FileNotFoundError:
            problems.append(f"key_file: {key_path} does not exist (scripts/keygen.py makes it for a runner the"
                            " network's configuration lists; scripts/nodekey.py generate --runner on a host of its own)")
        except (OSError, ValueError) as error:
            problems.append(f"key_file: cannot read the runner's private key at {key_path}: {error}")
        else:
            problems += _listed(network, name, public_key_hex(key))
    token_file = data.get("client_token_file")
    if token_file is not None and (not isinstance(token_file, str) or not relative(token_file).is_file()):
        problems.append(f"client_token_file: {token_file!r} is not a file")
    if problems:
        raise RunnerConfigError(f"{path}: " + "; ".join(problems))
    return RunnerConfig(
        path=path, network=network, name=name, key=key, client_url=client_url.rstrip("/"),
        data_dir=relative(data.get("data_dir", "data/runner")),
        client_token_file=None if token_file is None else relative(token_file),
        poll_s=float(poll_s), image=data.get("image", RunnerConfig.image), timeout_s=float(timeout_s),
        network_mode=network_mode, secrets=secrets,
    )


def _listed(network: NetworkConfig, name: str, public_key: str) -> list[str]:
    """Why no client of `network` would take reports signed by runner `name` with `public_key`; [] if one would."""
    keys = {runner.public_key for client in network.clients for runner in client.runners if runner.name == name}
    if not keys:
        return [f"name: no client of {network.path} lists a runner {name!r} (clients[].runners):"
                " it would refuse every report"]
    if public_key not in keys:
        return [f"key_file: its public key {public_key[:16]}… is not the one {network.path} lists for runner"
                f" {name!r}: the client would refuse every report"]
    return []
