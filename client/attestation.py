"""A verdict's in-toto attestation, and its artifacts' SLSA provenance: DSSE envelopes
signed by f+1 nodes, and their check.

The client's build record holds the f+1 signed replies that made a verdict;
each carries its node's DSSE signature of the verdict's statement
(`pbft.attestation`) and, for a build with artifacts, of their provenance
(`pbft.provenance`). `attested_from_record` puts the statement and those
signatures in one envelope; `provenance_envelope_from_record` does the same
for the provenance, given the files of the agreed manifest, which the record
does not hold. `check_envelope` verifies either with securesystemslib's DSSE
implementation and the network's public keys alone (f+1 distinct node keys),
then applies the policy its consumer needs: for a verdict, the statement and
predicate types, the subject's commit, the result; for a provenance, the
types, the source commit, this network as the builder, and the files.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import Signature, SSlibKey

from client.certificate import CertificateUnavailable
from pbft.attestation import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Signed,
    Signer,
    envelope_of,
    keyid,
    manifest_digest,
    public_key_dict,
    signers,
)
from shared.config import NetworkConfig
from shared.crypto import parse_public_key, verify_bytes
from pbft.build import ACTOR_KINDS, ACTOR_NAME
from pbft.ci.variations import variations_of
from pbft.messages import MessageError, Reply, Request, decode
from pbft.provenance import (
    BUILD_TYPE,
    PROVENANCE_TYPE,
    Provenance,
    ProvenanceSigner,
    provenance_envelope,
    provenance_signers,
)
from pbft.quorum import reply_quorum

_LOWER_HEX = set("0123456789abcdef")
# An actor as a statement names it (`pbft.build.Actor.label`): its kind, a space, its name.
_ACTOR_LABEL = re.compile(f"(?:{'|'.join(ACTOR_KINDS)}) {ACTOR_NAME.pattern}")


class AttestationError(ValueError):
    """An envelope that does not prove what it claims; `reason` says the first thing wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AttestationUnavailable(CertificateUnavailable):
    """A build that has no attestation: no verdict yet, no commit, or too few signatures."""


@dataclass(frozen=True)
class Attested:
    """A build's statement and the checked signatures of the nodes that agreed on it."""

    attestation: Signed
    signers: list[Signer]

    def envelope(self) -> dict:
        return envelope_of(self.attestation, self.signers)


# The network's node keys, parsed once: checking that a key is a curve point costs
# more than half a signature check, and every reply's attestation names one.
_node_public_key = functools.lru_cache(maxsize=256)(parse_public_key)


def verify_with(public_key_hex: str, data: bytes, sig: str) -> bool:
    return verify_bytes(_node_public_key(public_key_hex), data, sig)


def node_keys(config: NetworkConfig) -> dict[int, str]:
    return {node.id: node.public_key for node in config.nodes}


def _agreeing_replies(record: dict[str, Any]) -> tuple[Request, list[Reply]]:
    """An accepted build's signed request and the replies of the nodes that agreed on its verdict."""
    if record["state"] != "accepted":
        raise AttestationUnavailable(f"build {record['build_id']} has no accepted verdict")
    try:
        request = decode(record["request"])
        replies = [decode(wire) for wire in record["replies"]]
    except MessageError as error:
        raise AttestationUnavailable(f"build {record['build_id']}: unreadable record ({error})") from None
    assert isinstance(request, Request)
    agreed = [
        reply for reply in replies
        if isinstance(reply, Reply) and reply.sender in record["agreed_by"]
        and reply.result.to_dict() | {"reason": ""} == record["result"] | {"reason": ""}
    ]
    if not agreed:
        raise AttestationUnavailable(f"build {record['build_id']}: no agreeing reply in the record")
    return request, agreed


def attested_from_record(record: dict[str, Any], config: NetworkConfig) -> Attested:
    """The statement of an accepted build and the f+1 agreeing nodes' checked signatures."""
    request, agreed = _agreeing_replies(record)
    attestation = Signed(request.operation, agreed[0].result)
    if not attestation.exists:
        raise AttestationUnavailable(f"build {record['build_id']} names no commit: there is nothing to attest")
    found = signers(attestation, agreed, node_keys(config), verify_with)
    needed = reply_quorum(config.f)
    if len(found) < needed:
        raise AttestationUnavailable(
            f"build {record['build_id']}: {len(found)} agreeing nodes signed its attestation, {needed} needed"
            " (a verdict from before attestations existed has none)"
        )
    return Attested(attestation, found[:needed])


@dataclass(frozen=True)
class AttestedProvenance:
    """A build's artifacts' provenance and the checked signatures of the agreeing nodes that signed it."""

    provenance: Provenance
    signers: list[ProvenanceSigner]

    def envelope(self) -> dict:
        return provenance_envelope(self.provenance, self.signers)


def provenance_signers_from_record(
    record: dict[str, Any], config: NetworkConfig, files: Mapping[str, str]
) -> AttestedProvenance:
    """The provenance of an accepted build's artifacts, `files` ({path: "sha256:<hex>"}, as a
    node's manifest lists them), and every agreeing node whose signature of it verifies.

    The record holds only the manifest's digest: `files` must be the manifest it
    names, or no node's signature could be of them.
    """
    request, agreed = _agreeing_replies(record)
    build = record["build_id"]
    result = agreed[0].result
    if result.artifacts is None:
        raise AttestationUnavailable(f"build {build} has no artifacts: there is no provenance")
    if manifest_digest(files) != result.artifacts:
        raise AttestationUnavailable(
            f"build {build}: the files given are not its artifacts (their manifest is {manifest_digest(files)},"
            f" the verdict's {result.artifacts})"
        )
    repository = config.repository(request.operation.repository)
    # A varied repository's provenance lists each member's variation, as the nodes made it
    # (pbft.ci.variations): the members and `vary` of the document the client runs now.
    variations = variations_of(tuple(node.id for node in config.nodes), f"{request.client}-{request.timestamp}") \
        if repository is not None and repository.vary else None
    provenance = Provenance(request, result, files, builder_id=config.builder_id, variations=variations)
    if not provenance.exists:
        raise AttestationUnavailable(f"build {build}: its artifacts have no provenance")
    return AttestedProvenance(provenance, provenance_signers(provenance, agreed, node_keys(config), verify_with))


def provenance_envelope_from_record(record: dict[str, Any], config: NetworkConfig, files: Mapping[str, str]) -> dict:
    """The DSSE envelope of an accepted build's artifacts' provenance, signed by f+1 agreeing nodes."""
    attested = provenance_signers_from_record(record, config, files)
    needed = reply_quorum(config.f)
    if len(attested.signers) < needed:
        raise AttestationUnavailable(
            f"build {record['build_id']}: {len(attested.signers)} agreeing nodes signed its artifacts' provenance,"
            f" {needed} needed (a node that found other files, or a verdict from before provenance, signs none)"
        )
    return AttestedProvenance(attested.provenance, attested.signers[:needed]).envelope()


@dataclass(frozen=True)
class EnvelopeSummary:
    """What a valid envelope proves."""

    repository: str
    branch: str
    commit: str
    result: str
    status: str
    exit_code: int | None
    signers: tuple[int, ...]
    needed: int
    requested_by: str | None = None  # the actor the signed request named (`kind name`)

    def line(self) -> str:
        exit_code = "none" if self.exit_code is None else self.exit_code
        asked = f"; asked for by {self.requested_by}" if self.requested_by is not None else ""
        return (
            f"valid: attestation of {self.repository} ({self.branch}) commit {self.commit[:12]}"
            f" {self.result} ({self.status} exit_code={exit_code})"
            f" signed by nodes {list(self.signers)} (f+1={self.needed} needed){asked}"
        )


@dataclass(frozen=True)
class ProvenanceSummary:
    """What a valid provenance envelope proves."""

    repository: str
    branch: str
    commit: str
    builder: str
    artifacts: tuple[str, ...]  # the subjects' names
    checked: tuple[str, ...]  # the names of the subjects the given files matched
    signers: tuple[int, ...]
    needed: int

    def line(self) -> str:
        checked = f" ({', '.join(self.checked)} checked)" if self.checked else ""
        return (
            f"valid: provenance of {len(self.artifacts)} artifacts{checked} from {self.repository}"
            f" ({self.branch}) commit {self.commit[:12]} built by {self.builder}"
            f" signed by nodes {list(self.signers)} (f+1={self.needed} needed)"
        )


def is_envelope(data: Any) -> bool:
    return isinstance(data, dict) and "payloadType" in data


def sslib_keys(config: NetworkConfig) -> dict[str, tuple[int, SSlibKey]]:
    """Each node's public key as securesystemslib wants it, by keyid: the same Ed25519 key, converted."""
    keys = {}
    for node in config.nodes:
        key_id = keyid(node.public_key)
        keys[key_id] = (node.id, SSlibKey.from_dict(key_id, public_key_dict(node.public_key)))
    return keys


def check_envelope(
    data: Any,
    config: NetworkConfig,
    *,
    commit: str | None = None,
    result: str | None = None,
    artifacts: Mapping[str, str] | None = None,
) -> EnvelopeSummary | ProvenanceSummary:
    """Verify a parsed DSSE envelope with f+1 distinct node keys, then the policy; raise AttestationError.

    The envelope holds a verdict's statement or its artifacts' provenance, as its
    predicate type says. `artifacts` maps a name (a file's path) to the sha256
    (hex) that must be one of a provenance's subjects.
    """
    envelope = _parsed_envelope(data)
    keys = sslib_keys(config)
    needed = reply_quorum(config.f)
    try:
        accepted = envelope.verify([key for _, key in keys.values()], needed)
    except VerificationError:
        valid = sorted(node for key_id, (node, key) in keys.items() if _verifies(envelope, key))
        raise AttestationError(f"{len(valid)} valid node signatures {valid}, {needed} needed") from None
    statement = _statement(envelope.payload)
    signed_by = tuple(sorted(keys[key_id][0] for key_id in accepted))
    if statement.get("predicateType") == PROVENANCE_TYPE:
        found = _provenance_policy(statement, config.builder_id, commit, result, artifacts or {})
        return ProvenanceSummary(**found, signers=signed_by, needed=needed)
    if artifacts:
        raise AttestationError("the envelope attests a verdict, which names no artifact: a file needs a provenance")
    summary = _policy(statement, commit, result)
    return EnvelopeSummary(**summary, signers=signed_by, needed=needed)


def _verifies(envelope: Envelope, key: SSlibKey) -> bool:
    try:
        envelope.verify([key], 1)
    except VerificationError:
        return False
    return True


def _parsed_envelope(data: Any) -> Envelope:
    if not isinstance(data, dict) or set(data) != {"payload", "payloadType", "signatures"}:
        raise AttestationError("a DSSE envelope is an object with exactly payload, payloadType and signatures")
    if data["payloadType"] != PAYLOAD_TYPE:
        raise AttestationError(f"payloadType must be {PAYLOAD_TYPE}")
    if not isinstance(data["payload"], str) or not isinstance(data["signatures"], list):
        raise AttestationError("payload must be base64 text and signatures a list")
    signatures: dict[str, Signature] = {}
    for index, item in enumerate(data["signatures"]):
        if not isinstance(item, dict) or set(item) != {"keyid", "sig"} or not all(
            isinstance(value, str) for value in item.values()
        ):
            raise AttestationError(f"signature {index}: an object with exactly a keyid and a sig, both text")
        try:
            sig_hex = base64.b64decode(item["sig"], validate=True).hex()
        except (binascii.Error, ValueError):
            raise AttestationError(f"signature {index}: sig is not base64") from None
        # A key's second signature does not count again: only its first is kept.
        signatures.setdefault(item["keyid"], Signature(item["keyid"], sig_hex))
    try:
        payload = base64.b64decode(data["payload"], validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError("payload is not base64") from None
    return Envelope(payload, PAYLOAD_TYPE, signatures)


def _statement(payload: bytes) -> dict:
    try:
        statement = json.loads(payload)
    except (ValueError, RecursionError):
        raise AttestationError("the payload is not JSON") from None
    if not isinstance(statement, dict):
        raise AttestationError("the payload is not a statement")
    return statement


def _policy(statement: dict, commit: str | None, result: str | None) -> dict:
    """What the statement says, once it says it the way a pbft-ci verdict must."""
    if statement.get("_type") != STATEMENT_TYPE:
        raise AttestationError(f"statement _type must be {STATEMENT_TYPE}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise AttestationError(f"predicateType must be {PREDICATE_TYPE} or {PROVENANCE_TYPE}")
    subject = statement.get("subject")
    digest = subject[0].get("digest") if isinstance(subject, list) and len(subject) == 1 and isinstance(
        subject[0], dict) else None
    built = digest.get("gitCommit") if isinstance(digest, dict) else None
    if not isinstance(built, str) or len(built) != 40 or not set(built) <= _LOWER_HEX:
        raise AttestationError("the subject must be one git commit (gitCommit digest)")
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict) or predicate.get("result") not in ("pass", "fail"):
        raise AttestationError("the predicate's result must be pass or fail")
    status = predicate.get("status")
    if (predicate["result"] == "pass") != (status == "success"):
        raise AttestationError(f"result {predicate['result']} contradicts status {status!r}")
    repository = _repository(predicate.get("configuration"))
    requested = repository["annotations"].get("requestedCommit")
    if requested is not None and requested != built:
        raise AttestationError(f"the subject is commit {built}, the request pinned {requested}")
    if commit is not None and commit != built:
        raise AttestationError(f"the subject is commit {built}, not the requested {commit}")
    if result is not None and predicate["result"] != result:
        raise AttestationError(f"the result is {predicate['result']}, not {result}")
    requested_by = repository["annotations"].get("requestedBy")
    if requested_by is not None and not (isinstance(requested_by, str) and _ACTOR_LABEL.fullmatch(requested_by)):
        raise AttestationError("requestedBy must name an actor: one of its kinds, a space and a plain name")
    exit_code = predicate.get("exitCode")
    return {
        "requested_by": requested_by,
        "repository": str(subject[0].get("name", "")),
        "branch": str(repository["annotations"].get("branch", "")),
        "commit": built,
        "result": predicate["result"],
        "status": str(status),
        "exit_code": exit_code if type(exit_code) is int else None,
    }


def _repository(configuration: Any) -> dict:
    if isinstance(configuration, list):
        for item in configuration:
            if isinstance(item, dict) and item.get("name") == "repository" and isinstance(
                item.get("annotations"), dict
            ):
                return item
    raise AttestationError("the predicate's configuration names no repository")


def _provenance_policy(
    statement: dict, builder: str, commit: str | None, result: str | None, artifacts: Mapping[str, str]
) -> dict:
    """What a provenance says, once it says it the way a pbft-ci network's provenance must."""
    if statement.get("_type") != STATEMENT_TYPE:
        raise AttestationError(f"statement _type must be {STATEMENT_TYPE}")
    subjects = _artifact_subjects(statement.get("subject"))
    predicate = statement.get("predicate")
    definition = predicate.get("buildDefinition") if isinstance(predicate, dict) else None
    if not isinstance(definition, dict) or definition.get("buildType") != BUILD_TYPE:
        raise AttestationError(f"the provenance's buildType must be {BUILD_TYPE}")
    external = definition.get("externalParameters")
    if not isinstance(external, dict) or not all(
        isinstance(external.get(name), str) for name in ("repository", "branch")
    ):
        raise AttestationError("the provenance's externalParameters name no repository and branch")
    built = _source_commit(definition.get("resolvedDependencies"), external["repository"])
    requested = external.get("requestedCommit")
    if requested is not None and requested != built:
        raise AttestationError(f"the source is commit {built}, the request pinned {requested}")
    if commit is not None and commit != built:
        raise AttestationError(f"the source is commit {built}, not the requested {commit}")
    if result == "fail":
        raise AttestationError("a provenance is of a passing build, not fail")
    details = predicate.get("runDetails")
    named = details.get("builder") if isinstance(details, dict) else None
    named_id = named.get("id") if isinstance(named, dict) else None
    if named_id != builder:
        raise AttestationError(f"the builder is {str(named_id)[:64]!r}, not this network ({builder})")
    checked = []
    for name, sha256 in artifacts.items():
        matches = [subject for subject, digest in subjects.items() if digest == sha256]
        if not matches:
            raise AttestationError(f"{name}: its sha256 {sha256[:12]} is none of the provenance's artifacts")
        checked.append(matches[0])
    return {
        "repository": external["repository"],
        "branch": external["branch"],
        "commit": built,
        "builder": builder,
        "artifacts": tuple(subjects),
        "checked": tuple(checked),
    }


def _artifact_subjects(subject: Any) -> dict[str, str]:
    """A provenance's subjects: name -> sha256 hex, one or more, each named once."""
    found: dict[str, str] = {}
    for item in subject if isinstance(subject, list) else []:
        digest = item.get("digest") if isinstance(item, dict) else None
        sha256 = digest.get("sha256") if isinstance(digest, dict) else None
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name in found or not isinstance(sha256, str) or len(sha256) != 64 \
                or not set(sha256) <= _LOWER_HEX:
            raise AttestationError("each subject must be a file named once, with a sha256 digest")
        found[name] = sha256
    if not found:
        raise AttestationError("the subject must name the artifacts, one or more")
    return found


def _source_commit(dependencies: Any, repository: str) -> str:
    """The commit the provenance says was built: the repository's gitCommit among its resolved dependencies."""
    uri = f"pbft-ci:repository/{repository}"
    for item in dependencies if isinstance(dependencies, list) else []:
        digest = item.get("digest") if isinstance(item, dict) and item.get("uri") == uri else None
        built = digest.get("gitCommit") if isinstance(digest, dict) else None
        if isinstance(built, str) and len(built) == 40 and set(built) <= _LOWER_HEX:
            return built
    raise AttestationError(f"the resolved dependencies name no git commit of {uri}")
