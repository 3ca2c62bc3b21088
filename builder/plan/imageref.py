"""Image references as Docker reads them (the distribution project's grammar, less what no
build needs): `[registry/]path[:tag][@sha256:digest]`. Pure, so that the spec's parser can
check a reference where it is written (builder/plan/spec.py) and the node can pull by it
(builder/engine/images.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
# The distribution project's reference grammar (github.com/distribution/reference), less
# what no build needs: a path of lowercase components, a tag, a sha256 digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}))?"
                   r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?")
_DOMAIN = re.compile(r"(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                     r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?")


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port]; docker.io for a name without one
    path: str  # e.g. library/busybox
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """The name as `RepoDigests` writes it: Docker Hub's without docker.io/ (and library/)."""
        if self.registry == DOCKER_HUB:
            return self.path.removeprefix("library/")
        return f"{self.registry}/{self.path}"


def parse_reference(text: str) -> Reference:
    """`text` as an image reference, or ValueError saying why it is not one."""
    if not isinstance(text, str) or not 0 < len(text) <= 255:
        raise ValueError("must be an image reference of at most 255 characters")
    first, slash, rest = text.partition("/")
    registry = DOCKER_HUB
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _DOMAIN.fullmatch(first):
            raise ValueError(f"{first!r} is not a registry host[:port]")
        registry, text = first, rest
    found = _NAME.fullmatch(text)
    if found is None:
        raise ValueError("is not an image reference (lowercase name[:tag][@sha256:digest])")
    path = found["path"]
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return Reference(registry, path, found["tag"], found["digest"])
