"""A verdict as an in-toto attestation, and as an in-toto link: the bytes nodes sign.

Every node that ran a build signs, when the build ends, two things about it:

- the in-toto Statement v1 of the verdict (`statement`): its subject is the
  built commit, its predicate the test-result predicate, signed as DSSE
  signs (`pae`), so that f+1 nodes' signatures make one DSSE envelope;
- the `signed` part of its in-toto link for the step `build` (`link_signed`),
  whose product is the statement's sha256, so that in-toto's stock verifier
  checks the same agreement with a layout naming the nodes.

Both are pure functions of what f+1 honest nodes agree on: the request's
repository, branch and pinned commit, and the agreed result (status, exit
code, commit, spec). Nothing of one node, no clock. Equal inputs give equal
bytes on every node, so one node's signature can sit beside another's.
Pure: the replica calls it, the client and the tools reuse it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Callable, Iterable, Mapping, NamedTuple

from pbft.encoding import canonical, digest as canonical_digest
from pbft.build import Operation, Result, SHA256_DIGEST, combination_label
from pbft.messages import Reply, ResultVote

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STEP_NAME = "build"
STATEMENT_FILE = "statement.json"  # the link's product: the statement itself
STEP_COMMAND = ("pbft-ci", "build")  # what a link reports as run, and a layout expects


# An artifact's path as nodes store and serve it: parts of letters, digits and `. _ + @ -` between slashes.
MAX_ARTIFACT_PATH_CHARS = 1024
_ARTIFACT_PATH = re.compile(r"[A-Za-z0-9._+@-]+(/[A-Za-z0-9._+@-]+)*")


def is_artifact_path(path: str) -> bool:
    """Whether `path` can name a stored artifact: relative, bounded, no empty, `.` or `..` part."""
    return (
        len(path) <= MAX_ARTIFACT_PATH_CHARS
        and _ARTIFACT_PATH.fullmatch(path) is not None
        and not {".", ".."} & set(path.split("/"))
    )


def is_manifest_entry(path: object, digest: object) -> bool:
    """Whether one {path: digest} entry of an artifact manifest is well formed."""
    return (
        isinstance(path, str) and is_artifact_path(path)
        and isinstance(digest, str) and SHA256_DIGEST.fullmatch(digest) is not None
    )


def manifest_digest(files: Mapping[str, str]) -> str:
    """One digest for a build's whole set of artifacts (`Result.artifacts`): sha256 of the
    canonical encoding of its {path: "sha256:<hex>"} mapping.

    Two nodes that hold the same files under the same paths get the same
    value, whatever order they found them in. Whoever holds the mapping whose
    digest the nodes agreed on holds every file's agreed digest.
    """
    return "sha256:" + canonical_digest(dict(files))


def statement(operation: Operation, result: Result) -> dict | None:
    """The in-toto statement of a build's agreed result, or None when there is no
    commit to name (a branch that does not exist, an invalid request) or nothing ran (a
    skipped build, a matrix's expansion: each of its combinations is a build of its own)."""
    if result.commit is None or result.status in ("skipped", "matrix"):
        return None
    repository = {"name": "repository", "uri": f"pbft-ci:repository/{operation.repository}",
                  "annotations": {"branch": operation.branch}}
    if operation.commit is not None:
        repository["annotations"]["requestedCommit"] = operation.commit
    if operation.pull_ref is not None:
        repository["annotations"]["pullRequestRef"] = operation.pull_ref
    if operation.event is not None:
        repository["annotations"]["event"] = operation.event
    if operation.combination is not None:
        # Which of the spec's matrix combinations passed or failed: without it, the
        # statements of two combinations of one commit would read alike.
        repository["annotations"]["matrixCombination"] = combination_label(operation.combination)
    if operation.inputs is not None:
        # A manual run's inputs: the same commit built with other values is another build.
        repository["annotations"]["inputs"] = dict(operation.inputs)
    if operation.actor is not None:
        # Who asked for the build, as the signed request names it (client/actors.py).
        repository["annotations"]["requestedBy"] = operation.actor.label()
    configuration = [repository]
    if result.spec is not None:
        configuration.append({"name": result.spec.path, "digest": {"sha256": result.spec.sha256}})
        configuration.append({"name": "image", "uri": f"pbft-ci:image/{result.spec.image}"})
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": operation.repository, "digest": {"gitCommit": result.commit}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            # The predicate's schema and example write "pass" and "fail"; anything but a
            # success is a fail, and `status` says which kind (failure, error, timeout).
            "result": "pass" if result.status == "success" else "fail",
            "configuration": configuration,
            "status": result.status,
            "exitCode": result.exit_code,
        },
    }


def statement_bytes(statement: dict) -> bytes:
    """The DSSE payload: the statement's canonical JSON (sorted keys, no spaces, ASCII)."""
    return canonical(statement)


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE's pre-authentication encoding: what each signer signs."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def public_key_dict(public_key_hex: str) -> dict:
    """An Ed25519 public key as securesystemslib and in-toto write it."""
    return {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public_key_hex}}


def keyid(public_key_hex: str) -> str:
    """securesystemslib's default keyid (so in-toto's): sha256 of the key dict's canonical JSON."""
    return hashlib.sha256(canonical(public_key_dict(public_key_hex))).hexdigest()


def link_signed(operation: Operation, result: Result, statement_payload: bytes) -> dict:
    """The `signed` part of a node's in-toto link for this build.

    Material: the built commit. Product: the statement, by its sha256, so that
    links agree exactly when the statements do, and a layout can require the
    statement file a verifier holds to be that one. Byproducts: the exit code,
    as in-toto-run records it.
    """
    return {
        "_type": "link",
        "name": STEP_NAME,
        # No field is left at in-toto's default: in-toto reads a missing field as its
        # default and signs what it read, so a renamed default field would still verify.
        "command": list(STEP_COMMAND),
        "materials": {f"git/{operation.repository}": {"gitCommit": result.commit}},
        "products": {STATEMENT_FILE: {"sha256": hashlib.sha256(statement_payload).hexdigest()}},
        "byproducts": {"return-value": result.exit_code},
        "environment": {"repository": operation.repository},
    }


def link_bytes(signed: dict) -> bytes:
    """What a link's signature covers: securesystemslib's canonical JSON of `signed`.

    For the ASCII strings, integers and nulls a link holds here, that is
    byte for byte `pbft.encoding.canonical` (tests check it against securesystemslib).
    """
    return canonical(signed)


def link_file_name(node_keyid: str) -> str:
    """The name in-toto-verify looks for: `<step>.<first 8 of the keyid>.link`."""
    return f"{STEP_NAME}.{node_keyid[:8]}.link"


def link_metablock(signed: dict, node_keyid: str, sig_hex: str) -> dict:
    return {"signed": signed, "signatures": [{"keyid": node_keyid, "sig": sig_hex}]}


def envelope(payload: bytes, signatures: list[tuple[str, str]]) -> dict:
    """A DSSE envelope (JSON form) of `payload` with (keyid, hex signature) pairs, in that order."""
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [
            {"keyid": key, "sig": base64.b64encode(bytes.fromhex(sig)).decode("ascii")} for key, sig in signatures
        ],
    }


class Signed:
    """A build's statement and link bytes, ready for one node to sign or for anyone to check."""

    def __init__(self, operation: Operation, result: Result) -> None:
        found = statement(operation, result)
        self.statement = found
        self.payload = b"" if found is None else statement_bytes(found)
        self.link = None if found is None else link_signed(operation, result, self.payload)

    @property
    def exists(self) -> bool:
        return self.statement is not None

    def pae(self) -> bytes:
        return pae(self.payload)

    def link_bytes(self) -> bytes:
        assert self.link is not None
        return link_bytes(self.link)


class Signer(NamedTuple):
    """One node's two signatures of a build's attestation, both checked."""

    node: int
    keyid: str
    statement_sig: str
    link_sig: str


def signers(
    attestation: Signed,
    messages: Iterable[Reply | ResultVote],
    node_keys: Mapping[int, str],
    verify: Callable[[str, bytes, str], bool],
) -> list[Signer]:
    """The distinct nodes among `messages` (replies or votes that carry the agreed result)
    whose statement and link signatures both verify with their public key, in id order.

    `node_keys` maps node ids to public keys (hex); `verify(public_key_hex, data, sig_hex)`
    checks one signature. A node's first message counts; one whose signatures do not
    verify (a faulty node, or a message from before attestations) counts for nothing.
    """
    if not attestation.exists:
        return []
    pae_bytes, link = attestation.pae(), attestation.link_bytes()
    found: dict[int, Signer] = {}
    for message in messages:
        key = node_keys.get(message.sender)
        if message.sender in found or key is None or not message.statement_sig or not message.link_sig:
            continue
        if verify(key, pae_bytes, message.statement_sig) and verify(key, link, message.link_sig):
            found[message.sender] = Signer(message.sender, keyid(key), message.statement_sig, message.link_sig)
    return [found[node] for node in sorted(found)]


def envelope_of(attestation: Signed, found: list[Signer]) -> dict:
    return envelope(attestation.payload, [(signer.keyid, signer.statement_sig) for signer in found])
