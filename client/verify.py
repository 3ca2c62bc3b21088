"""`verify`: check a verdict offline, with the network's public keys alone (`client/index.py
verify`, `pbft-ci verify`). What it checks depends on the file: a certificate, an attestation
or provenance (a DSSE envelope), or a head of the verdict log (docs/verdict-log.md).

    verify CERT --config NET.yaml                                      the certificate
    verify CERT --config NET.yaml --head HEAD --inclusion PROOF        and that its verdict is in the log
    verify HEAD --config NET.yaml [--extends OLD --consistency PROOF]  a co-signed head, extending OLD
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from client.attestation import AttestationError, check_envelope, is_envelope
from client.certificate import CertificateError, check_certificate, parse_certificate
from client.logproofs import LogProofError, check_consistency, check_head, check_inclusion
from pbft.messages import MessageError, decode
from shared.cli import load_config_or_report

MAX_FILE_BYTES = 16 * 1024 * 1024


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check a verdict offline. A certificate: the client's signature on the request and"
        " f+1 distinct configured nodes' signatures on one agreed result; with --head and --inclusion, also"
        " that its verdict is in that co-signed head of the verdict log. An attestation (DSSE envelope):"
        " f+1 distinct configured nodes' signatures on one in-toto statement (checked with securesystemslib),"
        " its types, its commit and its result. A provenance (DSSE envelope of SLSA provenance v1): the same"
        " signatures, the built commit, this network as the builder, and the given artifact files. A head of"
        " the verdict log (GET /log/head on a node): 2f+1 configured nodes' signed checkpoints naming it;"
        " with --extends and --consistency, also that it extends an earlier head."
        " Prints one line; exit 0 when valid, 1 with the reason when not, 2 on usage or configuration errors.",
    )
    parser.add_argument(
        "certificate", metavar="FILE",
        help="a certificate (GET /builds/{id}/certificate), attestation (GET /builds/{id}/attestation),"
        " provenance of a build's artifacts, or a head of the verdict log (a node's GET /log/head)",
    )
    parser.add_argument("--config", required=True, help="network configuration YAML holding the public keys")
    parser.add_argument(
        "--commit", help="attestations and provenance: the commit (40 hex digits) the subject or source must be"
    )
    parser.add_argument("--result", choices=("pass", "fail"), help="attestations: the result it must state")
    parser.add_argument(
        "--artifact", action="append", default=[], metavar="ARTIFACT",
        help="provenance: a file whose sha256 must be one of its subjects (repeatable)",
    )
    parser.add_argument("--head", metavar="HEAD", help="certificates: a head of the verdict log (GET /log/head)")
    parser.add_argument("--inclusion", metavar="PROOF",
                        help="certificates: the proof that its verdict is in --head (GET /log/inclusion)")
    parser.add_argument("--extends", metavar="OLD", help="heads: an earlier head the FILE head must extend")
    parser.add_argument("--consistency", metavar="PROOF",
                        help="heads: the proof that FILE extends --extends (GET /log/consistency)")
    return parser


def verify(argv: list[str], prog: str = "verify") -> int:
    """Exit 0 for a valid certificate, attestation, provenance or head, 1 for an invalid one, 2
    for a usage or configuration error. `prog` names the command in its usage."""
    args = _parser(prog).parse_args(argv)
    if (args.head is None) != (args.inclusion is None) or (args.extends is None) != (args.consistency is None):
        print("--head goes with --inclusion, and --extends with --consistency", file=sys.stderr)
        return 2
    # Public keys are all it needs: any host may check, holding none of the client's secrets.
    config = load_config_or_report(args.config, read_secrets=False)
    if config is None:
        return 2
    try:
        raw = Path(args.certificate).read_bytes()
        artifacts = {path: _sha256_of(path) for path in args.artifact}
        files = {name: _json(path) for name, path in (("head", args.head), ("inclusion", args.inclusion),
                                                      ("extends", args.extends), ("consistency", args.consistency))
                 if path is not None}
    except OSError as error:
        print(f"cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(str(error), file=sys.stderr)
        return 2
    try:
        data = parse_certificate(raw)
        if isinstance(data, dict) and "checkpoints" in data:
            line = _head_line(data, config, files)
        elif is_envelope(data):
            line = check_envelope(data, config, commit=args.commit, result=args.result, artifacts=artifacts).line()
        elif artifacts:
            print("--artifact needs a provenance, not a certificate", file=sys.stderr)
            return 2
        else:
            line = check_certificate(data, config).line()
            if "head" in files:
                line += "; " + _inclusion_line(data, config, files)
    except (CertificateError, AttestationError, LogProofError) as error:
        print(f"invalid: {error.reason}", file=sys.stderr)
        return 1
    print(line)
    return 0


def _head_line(data: dict, config, files: dict) -> str:
    head = check_head(data, config)
    if "extends" not in files:
        return f"valid {head.line()}"
    old = check_head(files["extends"], config)
    check_consistency(files["consistency"], old, head)
    return f"valid {head.line()}; extends the head of {old.size} verdicts at checkpoint {old.seq}"


def _inclusion_line(certificate: dict, config, files: dict) -> str:
    """That a checked certificate's verdict is in the co-signed head `files["head"]`."""
    head = check_head(files["head"], config)
    request = decode(certificate["request"])
    try:
        agreed = decode(certificate["replies"][0]).result.agreed()
    except (MessageError, IndexError, KeyError, TypeError) as error:
        raise LogProofError(f"the certificate's replies do not decode: {error}") from None
    position = check_inclusion(files["inclusion"], head, request.client, request.timestamp, agreed)
    return f"in the verdict log at position {position} of the {head.line()}"


def _json(path: str):
    with open(path, "rb") as file:
        raw = file.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not JSON: {error}") from None


def _sha256_of(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
