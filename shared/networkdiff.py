"""What a change of the network document changes, in lines an owner reads before signing it.

Owners sign two digests (pbft/networkchange.py); these lines are what those digests stand for:
each setting that differs with its old and new value, and the members of a list — nodes by id,
repositories, clients and owners by name — added, removed or changed one by one, with their
addresses and full public keys, which an owner compares with what each operator sent them.

A change file may come from anyone, so every name and value is printed plain only when it is
one word of harmless characters, and as JSON (quoted, control characters escaped) otherwise:
nothing in a document reaches the owner's terminal as a control sequence.
"""

from __future__ import annotations

import json
import re
from typing import Any

ABSENT = object()  # a setting one side leaves out: at its default
# Lists whose entries are members, each named by its identity in both documents.
MEMBER_LISTS = {"nodes": "id", "clients": "name", "repositories": "name", "keys": "name", "runners": "name"}
PLAIN = re.compile(r"[A-Za-z0-9._:/@+~\[\]-]{1,256}")


def differences(before: dict, after: dict) -> list[str]:
    """One line per setting or member that differs, by top-level key in sorted order:
    `build: memory_mb 512 -> 768`, `nodes: adds node 4 at 10.0.0.14:9000 with public key …`."""
    lines = []
    for key in sorted(before.keys() | after.keys(), key=str):
        old, new = before.get(key, ABSENT), after.get(key, ABSENT)
        if old != new:
            lines += [f"{shown(key)}: {line}" for line in _section(key, old, new)]
    return lines


def shown(value: Any) -> str:
    """`value` as one safe word where it is one, else as JSON; `(default)` for a setting left out."""
    if value is ABSENT:
        return "(default)"
    if isinstance(value, str) and PLAIN.fullmatch(value):
        return value
    return json.dumps(value, sort_keys=True)


def _section(key: str, old: Any, new: Any) -> list[str]:
    members = _members(key, old, new)
    if members is not None:
        return members
    if isinstance(old, dict) or isinstance(new, dict):
        old, new = ({} if side is ABSENT else side for side in (old, new))
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [f"{shown(old)} -> {shown(new)}"]
    lines = []
    for name in sorted(old.keys() | new.keys(), key=str):
        before, after = old.get(name, ABSENT), new.get(name, ABSENT)
        if before == after:
            continue
        members = _members(name, before, after)
        lines += members if members is not None else [f"{shown(name)} {shown(before)} -> {shown(after)}"]
    return lines


def _members(key: str, old: Any, new: Any) -> list[str] | None:
    """The members added, removed and changed, or None if `key` holds no members on both sides."""
    identity = MEMBER_LISTS.get(key)
    if identity is None:
        return None
    before, after = _keyed([] if old is ABSENT else old, identity), _keyed([] if new is ABSENT else new, identity)
    if before is None or after is None:
        return None
    lines = []
    for name in sorted(before.keys() | after.keys(), key=_order):
        label = f"node {shown(name)}" if key == "nodes" else shown(name)
        if name not in after:
            lines.append(f"removes {label}{_address(before[name])}")
        elif name not in before:
            lines.append(f"adds {label}{_described(after[name], identity)}")
        elif before[name] != after[name]:
            changed = sorted(before[name].keys() | after[name].keys(), key=str)
            lines.append(f"changes {label}: " + "; ".join(
                f"{shown(field)} {shown(before[name].get(field, ABSENT))} -> {shown(after[name].get(field, ABSENT))}"
                for field in changed if before[name].get(field, ABSENT) != after[name].get(field, ABSENT)))
    return lines


def _keyed(entries: Any, identity: str) -> dict | None:
    """The entries by their identity, or None unless each is a mapping with its own one."""
    if not isinstance(entries, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get(identity), (int, str)) for entry in entries):
        return None
    keyed = {entry[identity]: entry for entry in entries}
    return keyed if len(keyed) == len(entries) else None


def _order(name: int | str) -> tuple:
    return (0, name, "") if isinstance(name, int) else (1, 0, name)


def _address(entry: dict) -> str:
    if "host" not in entry or "port" not in entry:
        return ""
    host = entry["host"]
    host = f"[{host}]" if isinstance(host, str) and ":" in host else host  # an IPv6 address
    return f" at {shown(host)}:{shown(entry['port'])}"


def _described(entry: dict, identity: str) -> str:
    """` at host:port with public key …` and the entry's other settings in parentheses."""
    text = _address(entry)
    if "public_key" in entry:
        text += f" with public key {shown(entry['public_key'])}"
    others = [f"{shown(field)} {shown(value)}" for field, value in sorted(entry.items(), key=lambda item: str(item[0]))
              if field not in (identity, "host", "port", "public_key")]
    return text + (f" ({', '.join(others)})" if others else "")


def printable(text: str) -> str:
    """`text` with every character a terminal would act on (controls, formatting marks) escaped
    as JSON escapes it: for words a node or a change file chose, such as a refusal's reason."""
    return "".join(char if char.isprintable() else json.dumps(char)[1:-1] for char in text)
