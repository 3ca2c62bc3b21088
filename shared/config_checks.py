"""The network configuration's rules that look across its sections, and the files a starting
node must be able to read. Each problem is named by its path in the file (`Reading.where`); a
setting the reading already refused is not judged again (`Reading.refused`)."""

from __future__ import annotations

import ssl
from pathlib import Path

from pbft.messages import MAX_NODES
from shared.boundedread import MAX_CERTIFICATE_FILE_BYTES, read_bounded
from shared.config_engines import DockerEngineConfig, NodeTLSConfig
from shared.config_files import read_build_secret, read_node_status_token
from shared.config_network import NetworkConfig
from shared.schema import Reading

_DOCKER_TLS_FILES = ("ca_file", "cert_file", "key_file")


def check_network(config: NetworkConfig, reading: Reading) -> None:
    """The rules of a network as a whole: ids, n against f, principals of their own, what
    e-mails and secrets need, builds that can finish before the client gives up."""
    nodes = config.nodes
    if nodes and not any("id" in reading.refused(node) for node in nodes):
        ids = sorted(node.id for node in nodes)
        if len(set(ids)) != len(ids):
            reading.fail("nodes", f"each id must be a node's own; got {ids}")
    if len(nodes) > MAX_NODES:
        reading.fail("nodes", f"at most {MAX_NODES} nodes, got {len(nodes)}: a verdict's proof holds a vote of each, "
                              "and must fit in one batch")
    if nodes and "f" not in reading.refused(config) and len(nodes) < 3 * config.f + 1:
        reading.fail("f", f"n = {len(nodes)} nodes tolerate at most f = {(len(nodes) - 1) // 3}; need n >= 3f+1")
    _check_distinct(config, reading)
    _check_mail_can_be_sent(config, reading)
    for repository in config.repositories:
        if not repository.secrets_for_forks and "secrets_for_forks" not in reading.refused(repository):
            for secret in repository.secrets:
                if "pull_request" in secret.events:
                    reading.fail(f"{reading.where(secret)}.events", (
                        "names pull_request, whose builds run code that anyone with a fork may write: the "
                        "repository must also set secrets_for_forks: true"))
    build, protocol = config.build, config.protocol
    # The client waits client_deadline_s for f+1 replies; a build allowed to run as long or
    # longer would time out at the client while its nodes still agree.
    if build.timeout_s >= protocol.client_deadline_s and "timeout_s" not in reading.refused(build):
        reading.fail("build.timeout_s", (
            f"{build.timeout_s:g} s must be less than protocol.client_deadline_s ({protocol.client_deadline_s:g} s): "
            "a build at its full timeout could not be answered before the client gives up"))


def _check_distinct(config: NetworkConfig, reading: Reading) -> None:
    """Each node and client needs an address and a key of its own (names: `unique` lists).

    Two entries sharing a key could sign for each other, so one stolen key
    would make two faulty principals; and a public key pasted into the wrong
    entry during a key ceremony shows up here instead of as a silent node.
    """
    principals = [("nodes", f"node {node.id}", node) for node in config.nodes]
    principals += [("clients", f"client {client.name!r}", client) for client in config.clients]
    by_address: dict[tuple[str, int], str] = {}
    by_key: dict[str, str] = {}
    for section, label, entry in principals:
        address = (entry.host, entry.port)
        if not reading.refused(entry) & {"host", "port"}:
            if address in by_address:
                reading.fail(section, f"{label} listens on {entry.host}:{entry.port}, as {by_address[address]} does")
            by_address.setdefault(address, label)
        if entry.public_key in by_key:  # "" (a key not generated yet, or refused) is never stored
            reading.fail(section, f"{label} has the same public key as {by_key[entry.public_key]} "
                                  f"({entry.public_key[:16]}…): every node and client needs a key of its own")
        elif entry.public_key:
            by_key[entry.public_key] = label
    # A runner only signs reports of actions, but a key it shared with a node or a client would
    # let one stolen key speak as both. Two clients may list the same runner: one name, one key.
    runner_keys: dict[str, str] = {}
    for client in config.clients:
        for runner in client.runners:
            label = f"runner {runner.name!r}"
            if runner_keys.setdefault(runner.name, runner.public_key) != runner.public_key:
                reading.fail("clients", f"{label} is listed with two different public keys")
            elif runner.public_key and by_key.setdefault(runner.public_key, label) != label:
                reading.fail("clients", f"{label} has the same public key as {by_key[runner.public_key]} "
                                        f"({runner.public_key[:16]}…): every runner needs a key of its own")


def _check_mail_can_be_sent(config: NetworkConfig, reading: Reading) -> None:
    """An e-mail target needs a mail server in every client's entry: any client may submit the build."""
    without = [f"{reading.where(client)} ({client.name!r})" for client in config.clients
               if client.smtp is None and "smtp" not in reading.refused(client)]
    if not without:
        return
    for repository in config.repositories:
        for target in repository.notify:
            if target.email:
                reading.fail(f"{reading.where(target)}.email",
                             f"needs an smtp section (host, from) in {', '.join(without)} to send it through")


def check_node_files(config: NetworkConfig, reading: Reading, node_id: int) -> None:
    """What node `node_id` reads that nobody else does: its build engine's certificates, the
    build secrets' files and its own status tokens. Each machine holds only its node's."""
    for node in (*config.nodes, *filter(None, [config.joining])):
        if node.id == node_id:
            own = node.docker != DockerEngineConfig()
            engine, where = (node.docker, reading.where(node)) if own else (config.build.docker, "build")
            if engine.tls is not None and not reading.refused(engine.tls):
                for key in _DOCKER_TLS_FILES:
                    path = getattr(engine.tls, key)
                    problem = _unreadable(path)
                    if problem is not None:
                        reading.fail(f"{where}.docker_tls.{key}", f"cannot read {path}: {problem}")
    for repository in config.repositories:
        for secret in repository.secrets:
            if "file" in reading.refused(secret):
                continue
            try:
                read_build_secret(secret.file)
            except ValueError as error:
                reading.fail(f"{reading.where(secret)}.file", str(error))
        if repository.node_statuses and repository.node_status_token_file:
            try:
                read_node_status_token(repository.node_status_token_path(reading.base, node_id))
            except ValueError as error:
                reading.fail(f"{reading.where(repository)}.node_status_token_file", f"node {node_id}: {error}")


def check_tls_files(tls: NodeTLSConfig, reading: Reading, node_id: int | None) -> None:
    """The CA must load, for everyone; the node starting with this configuration must be able
    to serve with its certificate and key. Each file is read within its bound first: ssl opens
    the path itself, and would wait for ever on a FIFO put there."""
    problem = _unreadable(tls.ca_file)
    if problem is None:
        try:
            tls.client_context()
        except (OSError, ssl.SSLError) as error:
            problem = getattr(error, "strerror", None) or str(error)
    if problem is not None:
        reading.fail("tls.ca_file", f"cannot load {tls.ca_file}: {problem}")
    if node_id is None:
        return
    cert, key = tls.node_files(node_id)
    reasons = {path: _unreadable(path) for path in (cert, key)}
    problem = next((f"{path}: {reason}" for path, reason in reasons.items() if reason is not None), None)
    if problem is None:
        try:
            tls.server_context(node_id)
        except (OSError, ssl.SSLError) as error:
            problem = getattr(error, "strerror", None) or str(error)
    if problem is not None:
        reading.fail("tls", f"node {node_id} cannot serve with {cert} and {key}: {problem}")


def _unreadable(path: Path) -> str | None:
    """Why the certificate file at `path` cannot be read, or None when it can."""
    try:
        read_bounded(path, MAX_CERTIFICATE_FILE_BYTES)
    except OSError as error:
        return error.strerror
    return None
