"""The build spec: `.pbft-ci.yml` at the root of the built commit.

    image: pbft-ci/busybox:latest   # optional, the node's default image otherwise
    commands:                       # required, run in order by `sh -e`
      - sh test.sh
    timeout_s: 60                   # optional, capped by the node's limit
    user: root                      # optional; refused unless the network allows root builds

Parsing is pure. Every problem is reported at once, with the offending key, in
a ValueError whose text becomes the deterministic reason of an error result.
"""

from dataclasses import dataclass

import yaml

SPEC_FILE = ".pbft-ci.yml"
MAX_SPEC_BYTES = 64 * 1024
_KEYS = ("image", "commands", "timeout_s", "user")


@dataclass(frozen=True)
class BuildSpec:
    image: str | None
    commands: tuple[str, ...]
    timeout_s: float | None
    user: str | None = None  # "root" or None (the node's build user)

    def script(self) -> str:
        """One command per line, for `/bin/sh -e -c`."""
        return "\n".join(self.commands)


def parse_build_spec(text: bytes) -> BuildSpec:
    if len(text) > MAX_SPEC_BYTES:
        raise ValueError(f"{SPEC_FILE}: larger than {MAX_SPEC_BYTES} bytes")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The mark gives line and column only, never a path, so the text is
        # the same on every node.
        raise ValueError(f"{SPEC_FILE}: invalid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{SPEC_FILE}: must be a mapping with a 'commands' list")

    errors = [f"unknown key {key!r}" for key in document if key not in _KEYS]
    image = document.get("image")
    if image is not None and (not isinstance(image, str) or not image or image.split() != [image]):
        errors.append("image: must be a non-empty image name without spaces")
    commands = document.get("commands")
    if not isinstance(commands, list) or not commands:
        errors.append("commands: must be a non-empty list of strings")
    else:
        errors += [
            f"commands[{index}]: must be a non-empty string"
            for index, command in enumerate(commands)
            if not isinstance(command, str) or not command.strip()
        ]
    timeout_s = document.get("timeout_s")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0
    ):
        errors.append("timeout_s: must be a positive number")
    user = document.get("user")
    if user is not None and user != "root":
        # The node picks the unprivileged build user; a spec can only ask to
        # leave it for root, which the executor then allows or refuses.
        errors.append("user: must be 'root' when given")
    if errors:
        raise ValueError(f"{SPEC_FILE}: " + "; ".join(errors))
    return BuildSpec(
        image=image,
        commands=tuple(commands),
        timeout_s=None if timeout_s is None else float(timeout_s),
        user=user,
    )
