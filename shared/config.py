"""Network configuration: YAML in, frozen dataclasses out.

The file is declared once, section by section, in the schema idiom (shared/schema): the
top level in shared/config_network.py, the nodes and clients in shared/config_principals.py,
the repositories in shared/config_repositories.py, `build:` and `protocol:` in
shared/config_build.py, engines and TLS in shared/config_engines.py, the kinds of values in
shared/config_values.py; this module reads a file into them and names them all. The
reference page (docs/configuration-reference.md) and a JSON Schema come from the same
declarations.

`load_config` reads the whole file and reports every problem at once, each with its path
in the file (`nodes[2].port: must be at most 65535`), so an operator fixes a configuration
in one pass. Relative paths are relative to the folder that holds the file. The rules that
look across sections (ids, quorum size, addresses and keys of their own) follow the reading,
and so do the files only a starting node reads (its engine's certificates, build secrets,
its own status tokens, its TLS certificate).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from shared.boundedread import MAX_CONFIG_BYTES, read_bounded
from shared.config_checks import check_network, check_node_files, check_tls_files
from shared.config_build import REPLICA_SETTINGS, RELAY_VOTES_FROM_NODES, BuildConfig, ProtocolConfig
from shared.config_engines import DockerEngineConfig, DockerTLSConfig, NodeTLSConfig
from shared.config_files import (
    MAX_SECRET_CHARS, MIN_SECRET_CHARS, LoadOptions, client_key_file, node_key_file, per_node, read_build_secret,
    read_node_status_token, runner_key_file,
)
from shared.config_network import NetworkConfig
from shared.config_principals import (
    BUILD_ID_LANES, MAX_RUNNERS, ClientConfig, NodeConfig, OwnerKeyConfig, OwnersConfig, RunnerKeyConfig, SMTPConfig,
)
from shared.config_repositories import (
    DEFAULT_SECRET_EVENTS, MAX_EMAIL_RECIPIENTS, MAX_NOTIFY_TARGETS, MAX_SCHEDULES, MAX_SECRETS, MAX_SUBMODULE_URLS,
    NOTIFY_STATUSES, BuildSecretConfig, NotifyConfig, RepositoryConfig, ScheduleConfig,
)
from shared.config_values import MIN_TOKEN_CHARS, SECRET_NAME, is_client_name, is_loopback_host
from shared.networkdigest import network_digest
from shared.schema import Reading

__all__ = [
    "DEFAULT_SECRET_EVENTS", "MAX_EMAIL_RECIPIENTS", "MAX_NOTIFY_TARGETS", "MAX_RUNNERS", "MAX_SCHEDULES",
    "MAX_SECRETS", "MAX_SECRET_CHARS", "MAX_SUBMODULE_URLS", "MIN_SECRET_CHARS", "MIN_TOKEN_CHARS",
    "NOTIFY_STATUSES", "RELAY_VOTES_FROM_NODES", "REPLICA_SETTINGS", "SECRET_NAME", "BuildConfig",
    "BuildSecretConfig", "ClientConfig", "ConfigError", "DockerEngineConfig", "DockerTLSConfig", "NetworkConfig",
    "NodeConfig", "NodeTLSConfig", "NotifyConfig", "OwnerKeyConfig", "OwnersConfig", "ProtocolConfig", "RepositoryConfig", "RunnerKeyConfig",
    "SMTPConfig", "ScheduleConfig", "client_key_file", "is_client_name", "is_loopback_host", "load_config",
    "node_key_file", "per_node", "read_build_secret", "read_node_status_token", "runner_key_file",
]


class ConfigError(Exception):
    """Every problem of a configuration file, one line each, each naming the file and the
    key (`network.yaml: nodes[2].port: must be at most 65535`), as compilers report."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {problem}" for problem in problems))


def load_config(
    path: str | Path, *, require_keys: bool = True, node_id: int | None = None, read_secrets: bool = True
) -> NetworkConfig:
    """Read and validate a network configuration; raise ConfigError listing every problem.

    `node_id` is the node about to run with it: the TLS files of that node's
    build engine must then be readable. Nobody else's are checked, since
    each node's machine holds only its own (and the client none); so is
    that node's own status token file, for a repository with `node_statuses`.
    `read_secrets=False` leaves the secrets kept in files (a client's token,
    forges' webhook secrets and status tokens, notification webhooks' HMAC keys
    and the SMTP password) unread and empty, and does not require them, nor
    a client's mail server: only the
    client uses them, so with one node per host they stay on the client's
    host and a node's host needs none of them. Build secrets are the other
    way round: only nodes use them, so their files are read and checked when
    `node_id` is given, and never otherwise (the client's host needs none).
    """
    path = Path(path).resolve()
    options = LoadOptions(require_keys=require_keys, read_secrets=read_secrets)
    return config_from(path, _document(path), node_id=node_id, options=options)


def config_from(path: Path, data: dict, *, node_id: int | None = None, options: LoadOptions = LoadOptions()
                ) -> NetworkConfig:
    """`load_config` of the mapping `data`, as if it were the file at `path` (whose folder
    relative paths start from): a network document the order changed, with a node's own
    settings merged in, or alone (`options.document_only`: shared/networkdoc.py)."""
    reading = Reading(path.parent, options, stands_in=options.stands_in)
    config = reading.section(NetworkConfig, data, "", fixed={"path": path})
    check_network(config, reading)
    if node_id is not None:
        check_node_files(config, reading, node_id)
    if config.tls is not None and not reading.refused(config.tls):
        check_tls_files(config.tls, reading, node_id)
    if reading.problems:
        raise ConfigError(path, reading.problems)
    protocol = data.get("protocol")
    return _completed(config, relay_votes_set=isinstance(protocol, dict) and protocol.get("relay_votes") is not None)


def _completed(config: NetworkConfig, *, relay_votes_set: bool) -> NetworkConfig:
    """The settings the loader works out: each node's engine (its own, else build's), its URL
    scheme, whether votes are relayed when the file does not say, and the network document's
    digest, of the settings as completed."""
    def completed_node(node: NodeConfig) -> NodeConfig:
        return replace(node, docker=node.docker if node.docker != DockerEngineConfig() else config.build.docker,
                       scheme="https" if config.tls is not None else "http")

    nodes = tuple(sorted(map(completed_node, config.nodes), key=lambda node: node.id))
    joining = None if config.joining is None else completed_node(config.joining)
    protocol = config.protocol
    if not relay_votes_set:
        protocol = replace(protocol, relay_votes=len(nodes) >= RELAY_VOTES_FROM_NODES)
    completed = replace(config, nodes=nodes, protocol=protocol, joining=joining)
    return replace(completed, digest=network_digest(completed))


def _document(path: Path) -> dict:
    """The file's YAML document, or ConfigError with the one problem that stops its reading."""
    try:
        # Bytes: PyYAML finds their encoding (UTF-8, or UTF-16 with its byte order mark) itself.
        data = yaml.safe_load(read_bounded(path, MAX_CONFIG_BYTES))
    except OSError as error:
        raise ConfigError(path, [f"cannot read: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError(path, [_yaml_problem(error)]) from None
    except RecursionError:
        # PyYAML composes nested collections recursively: `[[[[...` a few thousand deep ends it.
        raise ConfigError(path, ["not a configuration: nested too deeply"]) from None
    except (ValueError, TypeError, AttributeError) as error:
        # What some of PyYAML's constructors let escape for a malformed value: `2001-13-45`
        # (ValueError: month must be in 1..12), `!!int x`, `!!timestamp x` (AttributeError).
        raise ConfigError(path, [f"not valid YAML: {' '.join(str(error).split())}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, ["the file must hold a mapping"])
    return data


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML syntax error in one line, at its line and column of the file (PyYAML's own
    message spans several lines and names the text it read, not the file)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"not valid YAML: {' '.join(str(error).split())}"
    mark = error.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    context = ""
    if error.context:
        context = f" ({error.context}"
        if error.context_mark is not None:
            context += f" at line {error.context_mark.line + 1}, column {error.context_mark.column + 1}"
        context += ")"
    return f"{where}: not valid YAML: {error.problem}{context}"
