"""The frames scenario: how large a VIEW-CHANGE and a NEW-VIEW can grow, against the
largest frame a node takes from a peer (`pbft.messages.MAX_FRAME_BYTES`).

A VIEW-CHANGE carries a prepared certificate and its batch for every sequence number above
the sender's stable checkpoint; a NEW-VIEW carries 2f+1 of them without their batches, and
the pre-prepares it issues again with theirs (`pbft.viewchange`). Under load the batches are full, and each carries the
verdicts of about as many earlier builds, up to `MAX_PROOFS` proofs of 2f+1 signed RESULT votes (`pbft.ci.verdictlog`). A frame over
the limit never reaches its peer, and a view change whose NEW-VIEW cannot be delivered never
ends. Nothing here starts a node: the messages are made with the real classes and sizes
(requests and votes as the example project's), dummy signatures of the real length, and
encoded as nodes send them.

Slots: `checkpoint_interval + pipeline_depth`, what lies above a stable checkpoint while
the next one becomes stable under steady load; and `log_window`, the most the window admits.
The last row of each n is a window of batches at `MAX_BATCH_BYTES`, which backups refuse
above: the most a faulty primary can make honest backups prepare.
"""

from __future__ import annotations

import json
from dataclasses import replace

from pbft.build import Operation, Result
from pbft.messages import (
    MAX_BATCH_BYTES, MAX_FRAME_BYTES, MAX_PROOFS, Checkpoint, PreparedCertificate, PrePrepare, Prepare, Request, ResultVote,
    VerdictProof, signed,
)
from pbft.replica import ReplicaSettings
from pbft.viewchange import carrying_batches_once, new_view_of
from pbft.wire import encode

SIZES = (4, 7, 16)
BATCHES = (1, 32, 64)  # requests per pre-prepare (batch_max is 64)
_SIGNATURE = "ab" * 64  # an Ed25519 signature's hex length
_T0 = 1_700_000_000_000_000


def _sign(_payload: dict) -> str:
    return _SIGNATURE


def _request(index: int) -> Request:
    operation = Operation("example", "master", "c" * 40, delivery=f"github:{index:08x}-4b5a-6978-8796-a5b4c3d2e1f0")
    return signed(Request("client-0", _T0 + index, operation), _sign)


def _vote(index: int, sender: int) -> ResultVote:
    result = Result("success", 0, "c" * 40, artifacts="sha256:" + "d" * 64)
    return signed(ResultVote(5, "client-0", _T0 + index, result, sender, statement_sig=_SIGNATURE,
                             link_sig=_SIGNATURE, provenance_sig=_SIGNATURE), _sign)


def _bytes(message) -> int:
    return len(json.dumps(encode(message)))


def largest(n: int, requests: int, proofs: int, slots: int) -> dict:
    """The encoded sizes of one pre-prepare, a VIEW-CHANGE with `slots` of them and a NEW-VIEW."""
    f = (n - 1) // 3
    verdicts = tuple(VerdictProof(tuple(_vote(index, sender) for sender in range(2 * f + 1))) for index in range(proofs))
    preprepare = signed(PrePrepare(1, 5, "e" * 64, 0, tuple(_request(index) for index in range(requests)),
                                   verdicts=verdicts), _sign)
    prepares = tuple(signed(Prepare(1, 5, "e" * 64, sender), _sign) for sender in range(1, 2 * f + 1))
    proof = tuple(signed(Checkpoint(128, "e" * 64, sender, log_size=100, log_root="f" * 64), _sign)
                  for sender in range(2 * f + 1))
    certificates = tuple(PreparedCertificate(replace(preprepare, seq=128 + slot), prepares) for slot in range(1, slots + 1))
    view_change = signed(carrying_batches_once(2, 128, proof, certificates, 1, 0), _sign)
    reissued = tuple(replace(certificate.preprepare, view=2, sender=2) for certificate in certificates)
    new_view = signed(new_view_of(2, (view_change,) * (2 * f + 1), reissued, 2, 0), _sign)
    return {"preprepare": _bytes(preprepare), "view_change": _bytes(view_change), "new_view": _bytes(new_view)}


def frames(args) -> dict:
    settings = ReplicaSettings(node_id=0, n=4, f=1)
    steady = settings.checkpoint_interval + settings.pipeline_depth
    rows = []
    for n in SIZES[:1] if args.quick else SIZES:
        for requests in BATCHES:
            # Steady load: each batch carries the verdicts of as many builds as it orders, up to the cap.
            for proofs in (0, min(requests, MAX_PROOFS)):
                for slots in (steady, settings.log_window):
                    rows.append({"n": n, "requests": requests, "proofs": proofs, "slots": slots,
                                 **largest(n, requests, proofs, slots)})
        # The most a faulty primary can make honest backups prepare: a window of batches at the bound.
        at_bound = MAX_BATCH_BYTES // _request(0).size
        rows.append({"n": n, "requests": at_bound, "proofs": 0, "slots": settings.log_window,
                     **largest(n, at_bound, 0, settings.log_window)})
    return {"scenario": "frames", "max_frame_bytes": MAX_FRAME_BYTES, "rows": rows,
            "largest_new_view_steady_n4": max(row["new_view"] for row in rows if row["n"] == 4 and row["slots"] == steady)}


def frames_table(report: dict) -> str:
    limit = report["max_frame_bytes"]
    lines = [f"frames: the largest VIEW-CHANGE and NEW-VIEW, against a peer frame's limit of {limit / 1e6:.1f} MB",
             "", "| n | requests per batch | proofs per batch | slots | pre-prepare KB | VIEW-CHANGE MB | NEW-VIEW MB | fits |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in report["rows"]:
        fits = "yes" if max(row["view_change"], row["new_view"]) <= limit else "no"
        lines.append(f"| {row['n']} | {row['requests']} | {row['proofs']} | {row['slots']} | {row['preprepare'] / 1e3:.1f} "
                     f"| {row['view_change'] / 1e6:.2f} | {row['new_view'] / 1e6:.2f} | {fits} |")
    return "\n".join(lines)
