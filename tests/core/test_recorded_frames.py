"""Frames as pbft-ci wrote them on 2026-11-24, kept in tests/data/recorded_frames.json.

Two runs of the in-memory cluster (votes all-to-all with results in their
oldest wire form; votes relayed with specs, artifacts and attestation
signatures) recorded up to four frames of each message type, the client's
handshake, a request that pins a commit, and the public keys that signed
them. However the codec is written, these bytes must decode, encode back to
themselves byte for byte, and every signature in them, nested ones included,
must verify: signed frames in flight and records in nodes' stores outlive
any change of the code that reads them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from shared.crypto import Ed25519Authenticator, generate_private_key, parse_public_key
from pbft.handshake import Challenge, Hello
from pbft.messages import Message, Relay, Request, decode, encode

RECORDED = json.loads((Path(__file__).parent / "data" / "recorded_frames.json").read_text())
RUNS = RECORDED["runs"]
FRAMES = [(index, frame) for index, run in enumerate(RUNS) for frame in run["frames"]]
ALL_TYPES = {"request", "preprepare", "prepare", "commit", "checkpoint", "view-change", "new-view", "fetch", "state",
             "result", "reply", "hello", "challenge", "vote-fetch", "status", "relay"}


def verifier(run: dict) -> Ed25519Authenticator:
    keys = run["keys"]
    nodes = {int(name.split("-")[1]): parse_public_key(key) for name, key in keys.items() if name.startswith("node-")}
    clients = {name.removeprefix("client-"): parse_public_key(key) for name, key in keys.items()
               if name.startswith("client-")}
    return Ed25519Authenticator(generate_private_key(), nodes, clients)


def signed_parts(value) -> list:
    """`value` and every message nested in it that carries a signature of its own."""
    found = []
    if dataclasses.is_dataclass(value):
        if getattr(value, "sig", ""):
            found.append(value)
        for field in dataclasses.fields(value):
            found += signed_parts(getattr(value, field.name))
    elif isinstance(value, tuple):
        for item in value:
            found += signed_parts(item)
    return found


def test_the_recording_holds_every_message_type_from_both_runs():
    for run in RUNS:
        assert {json.loads(frame)["type"] for frame in run["frames"]} == ALL_TYPES


@pytest.mark.parametrize("run, frame", FRAMES, ids=[f"{i}-{json.loads(f)['type']}" for i, f in FRAMES])
def test_a_recorded_frame_decodes_and_encodes_to_the_same_bytes(run, frame):
    message = decode(json.loads(frame))
    assert message.TYPE == json.loads(frame)["type"]
    assert json.dumps(encode(message)) == frame


@pytest.mark.parametrize("run, frame", FRAMES, ids=[f"{i}-{json.loads(f)['type']}" for i, f in FRAMES])
def test_every_signature_in_a_recorded_frame_verifies(run, frame):
    auth = verifier(RUNS[run])
    message = decode(json.loads(frame))
    parts = signed_parts(message)
    if isinstance(message, (Challenge, Relay)):
        assert not message.__dict__.get("sig")  # envelopes and challenges carry no signature of their own
    else:
        assert parts and parts[0] is message
    for part in parts:
        if isinstance(part, (Request, Hello)):
            assert auth.verify_client(part.client, part.payload(), part.sig), part
        else:
            assert auth.verify_node(part.sender, part.payload(), part.sig), part
    # A changed byte under a signature does not verify.
    if parts:
        part = parts[0]
        assert not (auth.verify_client(part.client, {**part.payload(), "tampered": 1}, part.sig)
                    if isinstance(part, (Request, Hello))
                    else auth.verify_node(part.sender, {**part.payload(), "tampered": 1}, part.sig))


def test_relays_carry_signed_votes_and_nested_messages_are_checked_too():
    nested = 0
    for run, frame in FRAMES:
        message: Message = decode(json.loads(frame))
        parts = signed_parts(message)
        nested += len(parts) - (1 if parts and parts[0] is message else 0)
    assert nested > 100  # batches, relayed votes, certificates, checkpoint proofs, view changes
