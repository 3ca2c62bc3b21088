"""A build's outcome as this node keeps it: the agreed result and what stays on this node."""

from __future__ import annotations

from dataclasses import dataclass

from pbft.build import Result
from pbft.wire import MAX_TEXT


def bounded_reason(reason: str) -> str:
    """`reason` as a result carries it: whole if the wire takes it (MAX_TEXT characters), else
    cut to fit and saying how much more the build log holds. A function of the reason alone,
    so honest nodes that agree on a reason agree on its cut."""
    if len(reason) <= MAX_TEXT:
        return reason
    kept = MAX_TEXT - 64  # room for the note, whatever the count's digits
    return f"{reason[:kept]} … ({len(reason) - kept} more characters in the build log)"


@dataclass(frozen=True)
class BuildResult(Result):
    """A build's outcome plus where this node wrote its output, and its artifacts' digests.

    `log_path` is local to this node and never signed: `agreed()` and
    `to_dict()` come from `Result`, which is what nodes compare and sign.

    `artifact_files` are the `(path, "sha256:<hex>")` pairs of a successful
    build whose spec declares artifacts, sorted by path; () otherwise. Only
    their manifest's digest (`Result.artifacts`) goes on the wire; the pairs
    stay on this node, which keeps them with the files (builder/workspace/artifactstore.py)
    and names them in the verdict's provenance.
    """

    log_path: str = ""
    artifact_files: tuple[tuple[str, str], ...] = ()

    def artifact_digests(self) -> dict[str, str]:
        return dict(self.artifact_files)
