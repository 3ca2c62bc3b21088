"""The network document: the part of a configuration every node must hold alike, and its digest.

A configuration file mixes two kinds of settings. A node's own — its folders, its build
engine, the files its secrets and tokens are read from, TLS — may differ from host to
host (`setting(..., local=True)`). Everything else is the network's: its members and their
keys, f, the protocol and build settings, the repositories and what they may do. Two nodes
that differ there order the same requests and build them differently, so that part is one
document with one digest, which every node binds to its checkpoints, its STATUS and its
replies (pbft/messages.py): a node started with another document is named by its peers, the
client and the dashboard instead of showing up as a disputed build.

The document is the settings' values as read, those at their default left out, in the
canonical encoding (pbft/encoding.py), never the file's bytes: comments, key order and a
default written out or left out do not change the digest. Secrets never enter it (only whether a repository has them, by
name); public keys do, by value, wherever they were read from.

The document's settings as plain values (`agreed`) and its digest are taken in
shared/networkdigest.py, below the configuration's loader, which completes every
configuration with its digest (shared/config.py). This module stands above the loader: it
checks a changed document (`document_problem`) and makes the configuration a process runs
with one and its own file (`with_document`), both by loading them as configurations.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from pbft.networkchange import document_digest
from shared.boundedread import MAX_CONFIG_BYTES, read_bounded
from shared.config import ConfigError, LoadOptions, NetworkConfig, config_from
from shared.networkdigest import agreed, network_digest
from shared.schema import Inline, held, schema_of

__all__ = ["agreed", "document_problem", "merged", "with_document"]

log = logging.getLogger(__name__)
MAX_PROBLEMS = 5  # in a refused change's reason
# What names an entry of a list in both a document and a host's file, so that it takes the
# local settings of its own entry there: a repository or a client its name, a node its id, a
# notification's webhook its URL (whose secret only the client's file gives). An entry with
# none of them is matched by its place among the entries with none.
IDENTITY_KEYS = ("name", "id", "webhook")


def merged(local: dict, document: dict) -> dict:
    """A configuration file's mapping made of the network document `document` and the local
    settings of `local` (a file's mapping): each entry of a list takes the local settings of
    the file's entry of the same name (or id), so a node keeps its engine and a repository
    the files its secrets are read from, whatever the order changed around them."""
    return _merged_section(NetworkConfig, local if isinstance(local, dict) else {}, document)


def _merged_section(cls: type, local: dict, document: dict) -> dict:
    result = dict(document)
    for declared in schema_of(cls).settings:
        kind = declared.kind
        if isinstance(kind, Inline):
            keys = [kind.prefix + key for key in schema_of(kind.cls).keys]
        elif declared.setting.local:
            keys = [declared.key] + ([declared.file_key] if declared.file_key else [])
        else:
            inner, _ = held(kind)
            value = document.get(declared.key)
            if inner is not None and isinstance(value, list):
                result[declared.key] = _merged_list(inner, local.get(declared.key), value)
            elif inner is not None and isinstance(value, dict) and isinstance(local.get(declared.key), dict):
                result[declared.key] = _merged_section(inner, local[declared.key], value)
            continue
        result.update({key: local[key] for key in keys if key in local})
    return result


def _merged_list(cls: type, local: Any, document: list) -> list:
    local = [entry for entry in local if isinstance(entry, dict)] if isinstance(local, list) else []
    by_identity = dict(zip(_identities(local), local))
    return [
        _merged_section(cls, by_identity.get(identity, {}), entry) if isinstance(entry, dict) else entry
        for identity, entry in zip(_identities(document), document)
    ]


def _identities(entries: list) -> list[tuple]:
    """Each entry's identity (IDENTITY_KEYS), with how many entries before it have the same:
    two webhooks of one URL are the first and the second of it. A webhook removed from the
    document then takes its secret with it, and leaves no other entry the file's."""
    identities, seen = [], {}
    for entry in entries:
        found = next(((key, entry[key]) for key in IDENTITY_KEYS
                      if isinstance(entry, dict) and isinstance(entry.get(key), (str, int))), ("#",))
        seen[found] = seen.get(found, -1) + 1
        identities.append((*found, seen[found]))
    return identities


def document_problem(document: dict, folder: Path) -> str | None:
    """Why `document` is not a network document every node can run, or None: the configuration
    rules alone, with no file read, so that every node answers the same (`pbft.networks`).
    Every host's own setting stands in (`LoadOptions.document_only`), whatever a section
    needs of it (a build secret's file, a webhook's secret, a node's status token, a client's
    mail server): each host's file gives its own, and each process says what its own lacks
    when it runs the document (`with_document`)."""
    # A key of a host's own, or a `<key>_file`, would have each node read a file of its own
    # host: nodes would answer differently, and a file's text could end up in the reason.
    foreign = _foreign_keys(NetworkConfig, document, "")
    if foreign:
        return f"{', '.join(foreign[:MAX_PROBLEMS])}: not a key of a network document"
    options = LoadOptions(require_keys=True, read_secrets=False, document_only=True)
    try:
        config = config_from(folder / "network-change.yaml", dict(document), options=options)
    except ConfigError as error:
        return "; ".join(error.problems[:MAX_PROBLEMS])
    except Exception as error:  # a reading our rules did not foresee: refused the same way by every node
        log.error("a changed network document could not be checked", exc_info=True)
        return f"the document could not be checked ({type(error).__name__})"
    if network_digest(config) != document_digest(document):
        return "the document is not in its complete form: write it with scripts/network.py"
    return None


def _foreign_keys(cls: type, data: Any, at: str) -> list[str]:
    """The keys of `data` (a section of a document) that a network document does not have."""
    if not isinstance(data, dict):
        return []
    declared = {item.key: item for item in schema_of(cls).settings
                if not item.setting.local and not isinstance(item.kind, Inline)}
    found = [f"{at}{key}" for key in data if key not in declared]
    for key, item in declared.items():
        inner, listed = held(item.kind)
        value = data.get(key)
        if listed and isinstance(value, list):
            for index, entry in enumerate(value):
                found += _foreign_keys(inner, entry, f"{at}{key}[{index}].")
        elif inner is not None and not listed:
            found += _foreign_keys(inner, value, f"{at}{key}.")
    return found


def with_document(config: Any, document: dict, *, read_secrets: bool) -> Any:
    """The configuration a process runs once the order replaced its network document with
    `document`: that document, with the local settings of the file `config` was read from
    (its folders, engines, secret files), whose secrets a client reads (`read_secrets`) and a
    node does not, nor requires. Raises ConfigError, naming what the file lacks for the
    document (a new webhook's secret_file, on the client), or OSError for a file that cannot
    be read."""
    local = yaml.safe_load(read_bounded(config.path, MAX_CONFIG_BYTES))
    return config_from(config.path, merged(local, document), options=LoadOptions(read_secrets=read_secrets))
