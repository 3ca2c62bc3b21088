"""A build's artifacts as SLSA Provenance v1: the bytes nodes sign beside the verdict's statement.

A successful build whose spec declares artifacts has an agreed manifest
digest (`Result.artifacts`, `pbft.attestation.manifest_digest`). The node
that built it holds the per-file digests; with them it signs, as DSSE signs
(`pbft.attestation.pae`), an in-toto Statement v1 whose subject is every
file and whose predicate is SLSA Provenance v1 (`provenance`). f+1 nodes'
signatures make one DSSE envelope, as for the verdict's statement.

Everything in it is a function of what f+1 honest nodes agree on: the
request (client, timestamp, repository, branch, pinned commit), the agreed
result, the files whose manifest it names, the network (`builder_id`) and,
for a repository the network document varies, every member's variation
(`pbft.ci.variations`: a function of the node and the build alone).
No clock, nothing of one node: equal inputs give equal bytes on every node,
so one node's signature can sit beside another's. Pure, like
`pbft.attestation`: the replica signs with it, the client and tools check with it.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, NamedTuple

from pbft.attestation import STATEMENT_TYPE, envelope, keyid, manifest_digest, pae, statement_bytes
from pbft.encoding import digest as canonical_digest
from pbft.build import Result, SHA256_DIGEST, combination_label
from pbft.messages import Reply, Request, ResultVote

PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
# What a pbft-ci build is: the spec file at the built commit, run in the named image
# on each node. Named like the statement's pbft-ci:repository/… and pbft-ci:image/… URIs.
BUILD_TYPE = "pbft-ci:buildtype/spec/v1"
BUILDER_PREFIX = "pbft-ci:network/"


def builder_id(public_keys: Iterable[str], f: int) -> str:
    """The network as a SLSA builder: the same on every node and on every client of it.

    The first 16 hex digits of the sha256 of the canonical {f, sorted node public
    keys}: the nodes and the threshold are what vouch for a build, so another
    set of keys or another f is another builder, and renumbering the nodes is not.
    """
    return BUILDER_PREFIX + canonical_digest({"f": f, "nodes": sorted(public_keys)})[:16]


def invocation_id(client: str, timestamp: int) -> str:
    """The build's request as every node knows it (its client and its timestamp, `Request.key`)."""
    return f"{client}/{timestamp}"


def provenance(
    request: Request, result: Result, files: Mapping[str, str], *, builder_id: str,
    variations: Mapping[str, dict] | None = None,
) -> dict | None:
    """The SLSA provenance statement of a build's artifacts, or None when there is none to make.

    `files` maps each artifact's path to "sha256:<hex>". None unless the result
    is a success that names a commit and a manifest digest, and `files` is
    exactly that manifest: a node never signs files its peers did not agree
    on, and a result a Byzantine node altered (whose manifest no longer
    matches) gets no provenance.
    """
    operation = request.operation
    if result.status != "success" or result.commit is None or result.artifacts is None or not files:
        return None
    if manifest_digest(files) != result.artifacts:
        return None
    subject = []
    for path in sorted(files):
        found = SHA256_DIGEST.fullmatch(files[path]) if isinstance(files[path], str) else None
        if found is None:
            return None
        subject.append({"name": path, "digest": {"sha256": found.group(1)}})
    external: dict = {"repository": operation.repository, "branch": operation.branch}
    if operation.commit is not None:
        external["requestedCommit"] = operation.commit
    if operation.pull_ref is not None:
        external["pullRequestRef"] = operation.pull_ref
    if operation.event is not None:
        external["event"] = operation.event
    if operation.combination is not None:
        # Which of the spec's matrix combinations made these files, as the attestation names it.
        external["matrixCombination"] = combination_label(operation.combination)
    if operation.inputs is not None:
        # A manual run's inputs are parameters the person who ran it chose (SLSA's external ones).
        external["inputs"] = dict(operation.inputs)
    if result.spec is not None:
        external["spec"] = {"path": result.spec.path, "sha256": result.spec.sha256}
    build_definition: dict = {"buildType": BUILD_TYPE, "externalParameters": external}
    internal: dict = {}
    if result.spec is not None:
        # The image by the name the spec or the configuration gives it: each node's image id differs.
        internal["image"] = result.spec.image
    if operation.actor is not None:
        # Who asked for the build, as the signed request names it: the client decided it.
        internal["requestedBy"] = {"kind": operation.actor.kind, "name": operation.actor.name}
    if variations:
        # Each member built under its own variation: f+1 of them signing these bytes say the
        # build came out the same under theirs (reproducibility under variation).
        internal["variations"] = {node: dict(variation) for node, variation in variations.items()}
    if internal:
        build_definition["internalParameters"] = internal
    build_definition["resolvedDependencies"] = [
        {"uri": f"pbft-ci:repository/{operation.repository}", "digest": {"gitCommit": result.commit}}
    ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PROVENANCE_TYPE,
        "predicate": {
            "buildDefinition": build_definition,
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": {"invocationId": invocation_id(request.client, request.timestamp)},
            },
        },
    }


class Provenance:
    """A build's provenance bytes, ready for one node to sign or for anyone to check."""

    def __init__(
        self, request: Request, result: Result, files: Mapping[str, str], *, builder_id: str,
        variations: Mapping[str, dict] | None = None,
    ) -> None:
        found = provenance(request, result, files, builder_id=builder_id, variations=variations)
        self.statement = found
        self.payload = b"" if found is None else statement_bytes(found)

    @property
    def exists(self) -> bool:
        return self.statement is not None

    def pae(self) -> bytes:
        assert self.statement is not None
        return pae(self.payload)


class ProvenanceSigner(NamedTuple):
    """One node's checked signature of a build's provenance."""

    node: int
    keyid: str
    sig: str


def provenance_signers(
    signed: Provenance,
    messages: Iterable[Reply | ResultVote],
    node_keys: Mapping[int, str],
    verify: Callable[[str, bytes, str], bool],
) -> list[ProvenanceSigner]:
    """The distinct nodes among `messages` whose provenance signature verifies, in id order.

    As `pbft.attestation.signers`, a node counts once, and a signature that does
    not verify (a faulty node's, or one of other files) counts for nothing.
    """
    if not signed.exists:
        return []
    pae_bytes = signed.pae()
    found: dict[int, ProvenanceSigner] = {}
    for message in messages:
        key = node_keys.get(message.sender)
        if message.sender in found or key is None or not message.provenance_sig:
            continue
        if verify(key, pae_bytes, message.provenance_sig):
            found[message.sender] = ProvenanceSigner(message.sender, keyid(key), message.provenance_sig)
    return [found[node] for node in sorted(found)]


def provenance_envelope(signed: Provenance, found: list[ProvenanceSigner]) -> dict:
    return envelope(signed.payload, [(signer.keyid, signer.sig) for signer in found])
