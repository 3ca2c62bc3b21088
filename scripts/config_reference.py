"""Write docs/configuration-reference.md from the configuration model (shared/config.py).

    .venv/bin/python scripts/config_reference.py          # rewrite the page
    .venv/bin/python scripts/config_reference.py --check  # exit 1 if the page is not what the code says

Every setting of a network's YAML, with its type, its default and the comment
the code gives it, section by section, in the order the dataclasses declare
them; the protocol section's replica settings come from pbft.slot.ReplicaSettings,
where they are defined. tests/project/test_docs.py runs --check, so the page cannot drift.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from pbft.slot import ReplicaSettings  # noqa: E402
from shared import config  # noqa: E402

PAGE = REPO_ROOT / "docs" / "configuration-reference.md"

# Fields the YAML spells otherwise: a secret inline or from a file, the engine as its two keys.
YAML_KEYS = {
    "public_key": "public_key (or public_key_file)",
    "token": "token (or token_file)",
    "secret": "secret (or secret_file)",
    "status_token": "status_token (or status_token_file)",
    "password": "password (or password_file)",
    "from_address": "from",
    "docker": "docker_host, docker_tls",
}
# Fields the loader derives rather than reads.
DERIVED = {"scheme": "https with a tls: section, else http", "path": "the file read"}

SECTIONS = [
    ("Top level", config.NetworkConfig, "the file itself"),
    ("nodes[]", config.NodeConfig, "one entry per node, ids 0..n-1"),
    ("clients[]", config.ClientConfig, "the client(s) that sign requests"),
    ("repositories[]", config.RepositoryConfig, "what the network may build; a webhook names one"),
    ("repositories[].schedules[]", config.ScheduleConfig, "builds the client submits on a clock; optional"),
    ("repositories[].notify[]", config.NotifyConfig,
     "webhooks and e-mails the client sends once a build has its verdict; optional (see notifications.md)"),
    ("repositories[].secrets[]", config.BuildSecretConfig,
     "environment variables of the repository's builds, their values in files on every node; optional "
     "([Secrets and trust](secrets.md))"),
    ("clients[].smtp", config.SMTPConfig, "the mail server a client sends notification e-mails through; "
     "needed once a repository has an email target"),
    ("clients[].runners[]", config.RunnerKeyConfig, "the action runners whose signed reports of the actions "
     "after a verdict the client records; optional ([Actions after the verdict](actions.md))"),
    ("build", config.BuildConfig, "how every node builds: the same on every node"),
    ("protocol", config.ProtocolConfig, "the replica's settings and the client's waits"),
    ("tls", config.NodeTLSConfig, "HTTPS and WSS on every node's port; optional"),
    ("docker_tls (build or a node's entry)", config.DockerTLSConfig, "a tcp:// build engine's certificates"),
]


def comments(cls: type) -> dict[str, str]:
    """Each field's comment in `cls`'s source: the one on its line, else those just above it."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            text = line.split("  # ", 1)[1] if "  # " in line else ""
            above, index = [], node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#"):
                above.insert(0, lines[index].strip().lstrip("#").strip())
                index -= 1
            found[node.target.id] = " ".join(part for part in [" ".join(above), text] if part)
    return found


def default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        return "(see its section)" if dataclasses.is_dataclass(field.default_factory) else ""
    else:
        return "required"
    if isinstance(value, Path):
        return f"`{value}` (beside the file)"
    return f"`{value!r}`" if value not in ("", None) else "none"


def section(title: str, cls: type, what: str) -> list[str]:
    notes = comments(cls)
    if cls is config.ProtocolConfig:
        notes = {**comments(ReplicaSettings), **notes}
    out = [f"## {title}", "", f"{what[0].upper()}{what[1:]}.", "", "| key | type | default | meaning |",
           "| --- | --- | --- | --- |"]
    for field in dataclasses.fields(cls):
        if field.name in DERIVED:
            continue
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        meaning = (field.metadata.get("doc") or notes.get(field.name, "")).replace("|", "\\|")
        default = default_text(field)
        if cls is config.ProtocolConfig and field.name == "relay_votes":  # load_config decides it when unset
            default = f"true from {config.RELAY_VOTES_FROM_NODES} nodes up, else false"
        out.append(f"| `{YAML_KEYS.get(field.name, field.name)}` | `{kind}` | {default} | {meaning} |")
    return out + [""]


def page() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated by `scripts/config_reference.py` from the configuration model",
        "(`shared/config.py`; the protocol's replica settings from `pbft/slot.py`):",
        "it is what the code reads. [Configuration](configuration.md) explains the",
        "settings in context.",
        "",
    ]
    for title, cls, what in SECTIONS:
        lines += section(title, cls, what)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) docs/configuration-reference.md.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page differs from what the code says")
    args = parser.parse_args(argv)
    text = page()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE.relative_to(REPO_ROOT)} is out of date: run scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
