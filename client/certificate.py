"""Verdict certificates: the signed request and the f+1 signed replies behind a verdict.

A node's RESULT vote signs the same result of the same request as its reply, so
a certificate may hold votes in place of replies: a build another client asked
for is known here by the votes in the nodes' ledgers (client.ledgerimport).

A client accepts a result once f+1 distinct nodes sign it, and at most f nodes
are faulty, so the same f+1 signatures convince anyone else who holds the
network's public keys. `certificate_from_record` cuts that proof out of a
build record; `check_certificate` re-checks it offline from the public keys
alone and takes nothing on the word of the client that served it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.config import NetworkConfig
from shared.crypto import parse_public_key, verify_bytes
from pbft.encoding import canonical
from pbft.build import SHA256_DIGEST, STATUSES
from pbft.builders import named_by
from pbft.messages import MessageError, Reply, Request, ResultVote, decode, encode
from pbft.quorum import reply_quorum
from pbft.membership import Membership

VERSION = 1
_CERTIFICATE_KEYS = {"version", "request", "replies", "result"}
_RESULT_KEYS = {"status", "exit_code", "commit"}
_OPTIONAL_RESULT_KEYS = {"spec", "artifacts", "steps", "images", "combinations"}
_SPEC_KEYS = {"path", "sha256", "image"}  # a result's optional "spec" (pbft.build.Spec)
_STEP_KEYS = ("name", "status", "exit_code")  # each of its optional "steps", as agreed (pbft.build.StepResult)
_IMAGE_KEYS = {"name", "digest"}  # each of its optional "images" (pbft.build.ImageDigest)


class CertificateError(ValueError):
    """A certificate that does not prove its verdict; `reason` says the first thing wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CertificateUnavailable(Exception):
    """A build that has no verdict to certify (yet, or ever)."""


@dataclass(frozen=True)
class Summary:
    """What a valid certificate proves."""

    build_id: int
    client: str
    repository: str
    branch: str
    status: str
    exit_code: int | None
    commit: str | None
    signers: tuple[int, ...]
    needed: int
    # The f+1 builders the order picked (`pbft.builders`), as f+1 signed replies name them; ()
    # when every node built it.
    picked: tuple[int, ...] = ()
    # Who asked for the build, as the signed request names it (`kind name`); None for a
    # request signed before requests named their actor.
    actor: str | None = None
    # A manual run's inputs as the signed request names them (pbft.build.Operation.inputs).
    inputs: tuple[tuple[str, str], ...] = ()

    def line(self) -> str:
        exit_code = "none" if self.exit_code is None else self.exit_code
        commit = "none" if self.commit is None else self.commit[:12]
        picked = f"; the order picked nodes {list(self.picked)} to build it" if self.picked else ""
        asked = f"; asked for by {self.actor}" if self.actor is not None else ""
        # repr: a value is one line of printable text (pbft.build.INPUT_VALUE), quoted as it is.
        given = "; inputs " + ", ".join(f"{name}={value!r}" for name, value in self.inputs) if self.inputs else ""
        return (
            f"valid: build {self.build_id} {self.status} exit_code={exit_code} commit={commit}"
            f" signed by nodes {list(self.signers)} (f+1={self.needed} needed){picked}{asked}{given}"
        )


def certificate_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """The certificate of an accepted build, from `BuildRecords.get`.

    Only the replies that carry the accepted result go in: a reply that
    disagreed was not part of the proof, and including it would make a
    valid verdict look disputed to whoever checks it.
    """
    if record["state"] == "pending":
        raise CertificateUnavailable(f"build {record['build_id']} is pending: no verdict yet")
    if record["state"] != "accepted":
        raise CertificateUnavailable(f"build {record['build_id']} timed out without f+1 matching replies")
    result = _agreed_dict(record["result"])
    replies = [
        reply
        for reply in record["replies"]
        if reply["sender"] in record["agreed_by"] and _agreed_dict(reply["result"]) == result
    ]
    replies.sort(key=lambda reply: reply["sender"])
    return {"version": VERSION, "request": record["request"], "replies": replies, "result": result}


def parse_certificate(raw: bytes) -> Any:
    """The JSON value in `raw`; a file that is not JSON is an invalid certificate like any other."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise CertificateError("not JSON") from None


def check_certificate(data: Any, config: NetworkConfig, members: Membership | None = None) -> Summary:
    """Check a parsed certificate against the network's public keys; raise CertificateError if it fails.
    `members`: the nodes whose signatures count, and f, where they are not `config`'s (those in
    force where the build was ordered: client.ledgermembers)."""
    if not isinstance(data, dict) or set(data) != _CERTIFICATE_KEYS:
        raise CertificateError(f"a certificate is an object with exactly {sorted(_CERTIFICATE_KEYS)}")
    if data["version"] != VERSION or type(data["version"]) is not int:
        raise CertificateError(f"unsupported version {str(data['version'])[:32]!r}")
    request = checked_request(data["request"], config)
    result = _checked_result(data["result"])
    if members is None:
        node_keys, f = {node.id: node.public_key for node in config.nodes}, config.f
    else:
        node_keys, f = members.key_of, members.f
    signers, agreed, named = _checked_replies(data["replies"], request, node_keys)
    if len(agreed) > 1:
        raise CertificateError("replies disagree")
    if agreed and agreed != {_agreed(result)}:
        raise CertificateError("the replies carry a different result than the certificate states")
    needed = reply_quorum(f)
    if len(signers) < needed:
        raise CertificateError(f"{len(signers)} matching replies, {needed} needed")
    operation = request.operation
    return Summary(
        build_id=request.timestamp,
        client=request.client,
        repository=operation.repository,
        branch=operation.branch,
        status=result["status"],
        exit_code=result["exit_code"],
        commit=result["commit"],
        signers=tuple(sorted(signers)),
        needed=needed,
        picked=named_by(named, needed),
        actor=None if operation.actor is None else operation.actor.label(),
        inputs=operation.inputs or (),
    )


def _decoded(wire: Any, cls: type | tuple[type, ...], what: str):
    try:
        message = decode(wire)
    except (MessageError, RecursionError) as error:
        raise CertificateError(f"{what}: {error}") from None
    if not isinstance(message, cls):
        kinds = " or ".join(kind.TYPE for kind in (cls if isinstance(cls, tuple) else (cls,)))
        raise CertificateError(f"{what}: expected a {kinds} message")
    # Decoding ignores unknown fields and reads a missing optional field as
    # null, so a renamed `"commit":null` would still verify. A certificate must
    # hold exactly the signed messages, which makes every byte of it count.
    if encode(message) != wire:
        raise CertificateError(f"{what}: unexpected or missing fields")
    return message


def checked_request(wire: Any, config: NetworkConfig) -> Request:
    """The request `wire`, if it is one exactly as signed by a client of `config`; else CertificateError."""
    request = _decoded(wire, Request, "request")
    client = next((client for client in config.clients if client.name == request.client), None)
    if client is None:
        raise CertificateError(f"request: unknown client {request.client!r}")
    if not verify_bytes(parse_public_key(client.public_key), canonical(request.payload()), request.sig):
        raise CertificateError(f"request: bad signature of client {request.client!r}")
    return request


def _checked_replies(
    replies: Any, request: Request, node_keys: dict[int, str]
) -> tuple[list[int], set[tuple], list[tuple[int, ...]]]:
    """The distinct signers of `replies`, the agreed results they carry, and the picked builders
    each names; each reply checked on its own against `node_keys`, the members' public keys."""
    if not isinstance(replies, list):
        raise CertificateError("replies must be a list")
    signers: list[int] = []
    agreed: set[tuple] = set()
    named: list[tuple[int, ...]] = []
    for index, wire in enumerate(replies):
        reply = _decoded(wire, (Reply, ResultVote), f"reply {index}")
        if reply.sender not in node_keys:
            raise CertificateError(f"unknown node {reply.sender}")
        if not verify_bytes(parse_public_key(node_keys[reply.sender]), canonical(reply.payload()), reply.sig):
            raise CertificateError(f"reply from node {reply.sender}: bad signature")
        if reply.sender in signers:
            raise CertificateError(f"node {reply.sender} signed twice")
        if (reply.client, reply.timestamp) != request.key:
            raise CertificateError(
                f"reply from node {reply.sender} is for another request"
                f" (client {reply.client!r}, timestamp {reply.timestamp})"
            )
        signers.append(reply.sender)
        agreed.add(_agreed(reply.result.agreed()))
        named.append(reply.builders if isinstance(reply, Reply) else ())
    return signers, agreed, named


def _checked_result(result: Any) -> dict:
    # The stated result is unsigned; it only has to be well formed here,
    # because it must then equal what every signed reply says.
    if not isinstance(result, dict) or set(result) - _OPTIONAL_RESULT_KEYS != _RESULT_KEYS:
        raise CertificateError(
            f"result must be an object with exactly {sorted(_RESULT_KEYS)} "
            "(and a spec, artifacts, steps, images and combinations)"
        )
    if "spec" in result and (not isinstance(result["spec"], dict) or set(result["spec"]) != _SPEC_KEYS):
        raise CertificateError(f"result: spec must be an object with exactly {sorted(_SPEC_KEYS)}")
    if "artifacts" in result and not (isinstance(result["artifacts"], str) and SHA256_DIGEST.fullmatch(result["artifacts"])):
        raise CertificateError("result: artifacts must be a manifest digest, sha256:<64 hex>")
    if "steps" in result and not (
        isinstance(result["steps"], list) and result["steps"]
        and all(isinstance(step, dict) and set(step) == set(_STEP_KEYS) for step in result["steps"])
    ):
        raise CertificateError(f"result: steps must be a non-empty list of objects with exactly {list(_STEP_KEYS)}")
    if "images" in result and not (
        isinstance(result["images"], list) and result["images"]
        and all(isinstance(image, dict) and set(image) == _IMAGE_KEYS for image in result["images"])
    ):
        raise CertificateError(f"result: images must be a non-empty list of objects with exactly {sorted(_IMAGE_KEYS)}")
    if "combinations" in result and not (
        isinstance(result["combinations"], list) and result["combinations"]
        and all(isinstance(combination, list) and combination and all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(part, str) for part in pair)
            for pair in combination) for combination in result["combinations"])
    ):
        raise CertificateError("result: combinations must be a non-empty list of non-empty lists of [axis, value]")
    if result["status"] not in STATUSES:
        raise CertificateError(f"result: unknown status {str(result['status'])[:32]!r}")
    if result["exit_code"] is not None and type(result["exit_code"]) is not int:
        raise CertificateError("result: exit_code must be an integer or null")
    if result["commit"] is not None and not isinstance(result["commit"], str):
        raise CertificateError("result: commit must be a string or null")
    return result


def _agreed_dict(result: dict) -> dict:
    """The agreed part of a result's wire form (`Result.agreed()`): all of it but the reason,
    the node's own test outcomes' digest and each step's duration."""
    agreed = {key: value for key, value in result.items() if key not in ("reason", "tests")}
    if "steps" in agreed:
        agreed["steps"] = [{key: step[key] for key in _STEP_KEYS} for step in agreed["steps"]]
    return agreed


def _agreed(result: dict) -> str:
    return canonical(result).decode("ascii")
