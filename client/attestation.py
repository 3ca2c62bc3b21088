"""A verdict's in-toto attestation: one DSSE envelope signed by f+1 nodes, and its check.

The client's build record holds the f+1 signed replies that made a verdict;
each carries its node's DSSE signature of the verdict's statement
(`pbft.attestation`). `attestation_from_record` puts the statement and those
signatures in one envelope. `check_envelope` verifies one with
securesystemslib's DSSE implementation and the network's public keys alone
(f+1 distinct node keys), then applies the policy a verdict's consumer
needs: the statement and predicate types, the subject's commit, the result.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

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
    public_key_dict,
    signers,
)
from pbft.config import NetworkConfig
from pbft.crypto import parse_public_key, verify_bytes
from pbft.messages import MessageError, Reply, Request, decode
from pbft.quorum import reply_quorum

_COMMIT_HEX = set("0123456789abcdef")


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


def verify_with(public_key_hex: str, data: bytes, sig: str) -> bool:
    return verify_bytes(parse_public_key(public_key_hex), data, sig)


def node_keys(config: NetworkConfig) -> dict[int, str]:
    return {node.id: node.public_key for node in config.nodes}


def attested_from_record(record: dict[str, Any], config: NetworkConfig) -> Attested:
    """The statement of an accepted build and the f+1 agreeing nodes' checked signatures."""
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

    def line(self) -> str:
        exit_code = "none" if self.exit_code is None else self.exit_code
        return (
            f"valid: attestation of {self.repository} ({self.branch}) commit {self.commit[:12]}"
            f" {self.result} ({self.status} exit_code={exit_code})"
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
    data: Any, config: NetworkConfig, *, commit: str | None = None, result: str | None = None
) -> EnvelopeSummary:
    """Verify a parsed DSSE envelope with f+1 distinct node keys, then the policy; raise AttestationError."""
    envelope = _parsed_envelope(data)
    keys = sslib_keys(config)
    needed = reply_quorum(config.f)
    try:
        accepted = envelope.verify([key for _, key in keys.values()], needed)
    except VerificationError:
        valid = sorted(node for key_id, (node, key) in keys.items() if _verifies(envelope, key))
        raise AttestationError(f"{len(valid)} valid node signatures {valid}, {needed} needed") from None
    statement = _statement(envelope.payload)
    summary = _policy(statement, commit, result)
    signed_by = tuple(sorted(keys[key_id][0] for key_id in accepted))
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
        raise AttestationError(f"predicateType must be {PREDICATE_TYPE}")
    subject = statement.get("subject")
    digest = subject[0].get("digest") if isinstance(subject, list) and len(subject) == 1 and isinstance(
        subject[0], dict) else None
    built = digest.get("gitCommit") if isinstance(digest, dict) else None
    if not isinstance(built, str) or len(built) != 40 or not set(built) <= _COMMIT_HEX:
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
    exit_code = predicate.get("exitCode")
    return {
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
