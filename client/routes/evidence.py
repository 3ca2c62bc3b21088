"""What lets anyone check a verdict without trusting the client: its certificate, its in-toto
attestation, a bundle for in-toto-verify, and its artifacts' SLSA provenance.

Each is made from the record's signed replies (client.certificate,
client.attestation) and answered in canonical JSON, so that every byte a
user saves is covered by a signature or by the verifier's checks; a build
whose record cannot make one (no certified verdict, no artifacts) gets 409.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from client.artifacts import ArtifactsUnavailable, agreed_files, artifact_source
from client.attestation import (
    Attested, AttestationUnavailable, attested_from_record, provenance_envelope_from_record,
)
from client.certificate import CertificateUnavailable, certificate_from_record
from client.intoto import bundle
from client.routes.params import config_of, record_of
from pbft.encoding import canonical
from shared.boundedread import read_bounded

# The most of an in-toto layout (one signed JSON document) the client serves.
MAX_LAYOUT_BYTES = 1024 * 1024

routes = web.RouteTableDef()


@routes.get("/builds/{build_id}/certificate")
async def get_certificate(request: web.Request) -> web.Response:
    record = record_of(request)
    try:
        certificate = certificate_from_record(record)
    except CertificateUnavailable as error:
        raise web.HTTPConflict(reason=str(error)) from None
    # Canonical JSON has no insignificant whitespace, so every byte of the
    # file a user saves is covered by a signature or by the verifier's checks.
    return web.Response(body=canonical(certificate), content_type="application/json")


@routes.get("/builds/{build_id}/attestation")
async def get_attestation(request: web.Request) -> web.Response:
    """The verdict's in-toto statement in one DSSE envelope, signed by f+1 agreeing nodes."""
    envelope = _attested(request).envelope()
    return web.Response(body=canonical(envelope), content_type="application/json")


@routes.get("/builds/{build_id}/in-toto")
async def get_in_toto(request: web.Request) -> web.Response:
    """A tar of the owner's layout, f+1 agreeing nodes' links and the statement, for in-toto-verify."""
    attested = _attested(request)
    path = config_of(request).in_toto_layout
    if path is None:
        raise web.HTTPConflict(reason="no in-toto layout: the network YAML sets no in_toto_layout; its owner signs"
                                      " one with scripts/owner.py layout (docs/attestations.md)")
    try:
        # Bounded, and never waited on (a FIFO there would hold a worker thread per request).
        layout_bytes = await asyncio.to_thread(read_bounded, path, MAX_LAYOUT_BYTES)
    except OSError as error:
        raise web.HTTPConflict(reason=f"in-toto layout unreadable: {error.strerror or error}") from None
    body = bundle(attested.attestation, attested.signers, layout_bytes)
    name = f"pbft-ci-{request.match_info['build_id']}-in-toto.tar"
    return web.Response(
        body=body, content_type="application/x-tar", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@routes.get("/builds/{build_id}/provenance")
async def get_provenance(request: web.Request) -> web.Response:
    """SLSA provenance of the build's artifacts in one DSSE envelope, signed by f+1 agreeing nodes.

    The record holds only the manifest's digest: the files the nodes signed come
    from a node's manifest, taken only if it hashes to that digest.
    """
    record = record_of(request)
    try:
        files = await agreed_files(artifact_source(request.app), record)
    except ArtifactsUnavailable as error:
        return web.json_response({"error": error.reason}, status=error.status)
    try:
        envelope = provenance_envelope_from_record(record, config_of(request), files)
    except AttestationUnavailable as error:
        raise web.HTTPConflict(reason=str(error)) from None
    return web.Response(body=canonical(envelope), content_type="application/json")


def _attested(request: web.Request) -> Attested:
    try:
        return attested_from_record(record_of(request), config_of(request))
    except AttestationUnavailable as error:
        raise web.HTTPConflict(reason=str(error)) from None
