"""The network document: the part of a configuration every node must hold alike, and its digest.

A configuration file mixes two kinds of settings. A node's own — its folders, its build
engine, the files its secrets and tokens are read from, TLS — may differ from host to
host (`setting(..., local=True)`). Everything else is the network's: its members and their
keys, f, the protocol and build settings, the repositories and what they may do. Two nodes
that differ there order the same requests and build them differently, so that part is one
document with one digest, which every node binds to its checkpoints, its STATUS and its
replies (pbft/messages.py): a node started with another document is named by its peers, the
client and the dashboard instead of showing up as a disputed build.

The document is the settings' values as read, defaults filled in, in the canonical encoding
(pbft/encoding.py), never the file's bytes: comments, key order and a key left at its default
do not change the digest. Secrets never enter it (only whether a repository has them, by
name); public keys do, by value, wherever they were read from.
"""

from __future__ import annotations

from typing import Any

from pbft.encoding import digest
from shared.schema import Inline, schema_of

# Part of what is hashed, so that a later change of the document's shape is a new digest.
DOCUMENT_FORMAT = 1


def agreed(section: Any) -> dict:
    """`section`'s network settings as plain JSON values, nested sections included."""
    document = {}
    for declared in schema_of(type(section)).settings:
        if declared.setting.local:
            continue
        assert not getattr(declared.kind, "secret", False), f"{declared.key}: a secret is declared local"
        assert not isinstance(declared.kind, Inline), f"{declared.key}: an inline section is a node's own"
        document[declared.key] = _value(getattr(section, declared.name), declared.key)
    return document


def _value(value: Any, key: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return [_value(item, key) for item in value]
    if isinstance(value, dict):
        return {str(name): _value(item, key) for name, item in value.items()}
    # A path means a file on one host: such settings are declared local.
    assert not hasattr(value, "__fspath__"), f"{key}: a path in the network document"
    return agreed(value)


def network_digest(config: Any) -> str:
    """The digest of `config`'s network document (a `shared.config.NetworkConfig`)."""
    return digest({"format": DOCUMENT_FORMAT, "network": agreed(config)})
