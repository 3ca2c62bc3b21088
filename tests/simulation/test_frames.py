"""The simulator's codec round trip (pbft/sim/frames.py): each delivered message is written and
read as a real frame is, once per message object, whatever number of peers it goes to."""

from __future__ import annotations

import pytest

from pbft.build import Operation
from pbft.messages import MessageError, PrePrepare, Prepare, Request, batch_digest
from pbft.sim.frames import FrameCodec

SIG = "ab" * 64


def prepare(seq: int) -> Prepare:
    return Prepare(1, seq, "c" * 64, 2, SIG)


def test_every_peer_gets_the_one_message_decoded_from_its_frame():
    codec = FrameCodec(limit=1 << 20)
    sent = prepare(7)
    first, oversized = codec.round_trip(sent)
    assert (first, oversized) == (sent, None) and first is not sent
    # Its other peers: the same decoded message, not a second round trip.
    assert all(codec.round_trip(sent)[0] is first for _ in range(3))
    # An equal message sent apart (another node's) takes its own.
    again = codec.round_trip(prepare(7))[0]
    assert again == first and again is not first


def test_a_frame_over_the_limit_is_refused_for_every_peer():
    request = Request("client-0", 1, Operation("example", "master", None), SIG)
    big = PrePrepare(0, 1, batch_digest((request,)), 0, (request,), SIG)
    codec = FrameCodec(limit=100)
    for _ in range(2):
        decoded, oversized = codec.round_trip(big)
        assert decoded == big and oversized is not None and "over 100" in oversized
    assert FrameCodec(limit=1 << 20).round_trip(big)[1] is None


def test_a_message_the_codec_refuses_is_refused_for_every_peer():
    codec = FrameCodec(limit=1 << 20)
    absurd = prepare(2**63)  # a faulty node's sequence number past what the codec reads
    for _ in range(2):
        with pytest.raises(MessageError, match="63-bit"):
            codec.round_trip(absurd)


def test_it_keeps_only_the_newest_messages():
    codec = FrameCodec(limit=1 << 20, keep=3)
    sent = [prepare(seq) for seq in range(5)]
    decoded = [codec.round_trip(message)[0] for message in sent]
    assert codec.round_trip(sent[4])[0] is decoded[4]  # still kept
    assert codec.round_trip(sent[0])[0] is not decoded[0]  # gone: read again, an equal message
    assert codec.round_trip(sent[0])[0] == decoded[0]
