"""The network document's settings and its digest: the part of a configuration every node
must hold alike, as plain values (`agreed`), and the digest the loader completes every
configuration with (shared/config.py). What the document is and what it is for: shared/networkdoc.py.
"""

from __future__ import annotations

from typing import Any

from pbft.networkchange import document_digest
from shared.schema import Inline, schema_of


def agreed(section: Any) -> dict:
    """`section`'s network settings as plain JSON values, nested sections included."""
    document = {}
    for declared in schema_of(type(section)).settings:
        if declared.setting.local:
            continue
        assert not getattr(declared.kind, "secret", False), f"{declared.key}: a secret is declared local"
        assert not isinstance(declared.kind, Inline), f"{declared.key}: an inline section is a node's own"
        value = _value(getattr(section, declared.name), declared.key)
        # Left out at its default, as a file may leave it: one form for one meaning. A default
        # the loader works out (relay_votes, from the node count) is written always: the
        # document means the same whatever membership a change gives it.
        if not declared.required and _left_out(value, _value(declared.default, declared.key),
                                               bool(declared.setting.shown_default)):
            continue
        document[declared.key] = value
    return document


def _left_out(value: Any, default: Any, worked_out: bool) -> bool:
    if isinstance(value, dict) and isinstance(default, dict):
        return not value  # a section, whose settings at their defaults are left out already
    return not worked_out and value == default


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
    return document_digest(agreed(config))
