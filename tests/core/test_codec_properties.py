"""Property tests of the message decoder: nothing a peer sends can make it raise anything but MessageError."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbft.build import Operation, Result, Spec
from pbft.handshake import Challenge, Hello
from pbft.messages import (
    Checkpoint, Commit, MessageError, PrePrepare, Prepare, Relay, Reply, Request, ResultVote, Status, VoteFetch, batch_digest, decode, encode,
)

SIG = "ab" * 64
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
# Text strategies over alphabets rather than st.from_regex: the same strings, drawn many times faster.
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def hex_text(length: int) -> st.SearchStrategy[str]:
    return st.text("0123456789abcdef", min_size=length, max_size=length)


names = st.builds(str.__add__, st.sampled_from(ALNUM), st.text(ALNUM + "._-", max_size=10))
naturals = st.integers(min_value=0, max_value=2**40)
challenges = hex_text(64)
commits = hex_text(40)


@st.composite
def messages(draw):
    request = Request(draw(names), draw(naturals), Operation(draw(names), draw(names), None), SIG)
    spec = draw(st.none() | st.builds(
        Spec, st.sampled_from([".pbft-ci.yml", "Dockerfile"]), hex_text(64),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    ))
    result = Result(draw(st.sampled_from(["success", "failure", "error", "timeout"])),
                    draw(st.none() | st.integers(-255, 255)), draw(st.none() | commits), draw(st.text(max_size=30)),
                    spec=spec, artifacts=draw(st.none() | hex_text(64).map("sha256:".__add__)))
    statement_sig, link_sig = draw(st.sampled_from([("", ""), (SIG, "cd" * 64)]))
    provenance_sig = draw(st.sampled_from(["", "ef" * 64]))
    attestation_sigs = {"statement_sig": statement_sig, "link_sig": link_sig, "provenance_sig": provenance_sig}
    view, seq, sender = draw(naturals), draw(naturals), draw(st.integers(0, 6))
    return draw(st.sampled_from([
        request,
        PrePrepare(view, seq, batch_digest((request,)), sender, (request,), SIG),
        Prepare(view, seq, "c" * 64, sender, SIG),
        Commit(view, seq, "d" * 64, sender, SIG),
        Checkpoint(seq, "e" * 64, sender, SIG),
        Reply(view, request.timestamp, request.client, sender, result, SIG, **attestation_sigs),
        ResultVote(seq, request.client, request.timestamp, result, sender, SIG, **attestation_sigs),
        Hello(request.client, sender, draw(challenges), SIG),
        Challenge(draw(challenges)),
        Status(view, seq, sender, SIG),
        VoteFetch(((request.client, request.timestamp),) * draw(st.integers(1, 64)), sender, SIG),
        Relay((Prepare(view, seq, "c" * 64, sender, SIG), Commit(view, seq, "d" * 64, sender, SIG),
               ResultVote(seq, request.client, request.timestamp, result, sender, SIG, **attestation_sigs))),
    ]))


def decodes_or_refuses(data) -> None:
    try:
        decode(data)
    except MessageError:
        pass


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_is_decoded_or_refused(data):
    decodes_or_refuses(data)


@settings(max_examples=300)
@given(messages())
def test_every_message_survives_the_wire(message):
    assert decode(json.loads(json.dumps(encode(message)))) == message


@settings(max_examples=500)
@given(messages(), st.data())
def test_mutated_messages_are_decoded_or_refused(message, data):
    wire = encode(message)
    key = data.draw(st.sampled_from(sorted(wire)))
    wire[key] = data.draw(json_values)
    decodes_or_refuses(wire)
    wire.pop(data.draw(st.sampled_from(sorted(wire))))
    decodes_or_refuses(wire)


@settings(max_examples=200, deadline=None)
@given(messages(), st.data())
def test_mutated_results_and_specs_are_decoded_or_refused(message, data):
    if not isinstance(message, (Reply, ResultVote)):
        return
    wire = encode(message)
    result = wire["result"]
    target = result["spec"] if result.get("spec") is not None and data.draw(st.booleans()) else result
    target[data.draw(st.sampled_from(sorted(target)))] = data.draw(json_values)
    decodes_or_refuses(wire)


def test_attestation_signatures_and_specs_are_checked_like_every_field():
    result = Result("success", 0, "a" * 40, spec=Spec(".pbft-ci.yml", "b" * 64, "pbft-ci/busybox:latest"))
    reply = Reply(0, 1, "ci", 2, result, SIG, statement_sig=SIG, link_sig=SIG, provenance_sig=SIG)
    for field, value in [("statement_sig", ""), ("statement_sig", "xy"), ("link_sig", 7), ("link_sig", None),
                         ("provenance_sig", ""), ("provenance_sig", "AB" * 64), ("provenance_sig", SIG + "0"),
                         ("provenance_sig", None), ("provenance_sig", [SIG])]:
        try:
            decode({**encode(reply), field: value})
        except MessageError:
            continue
        raise AssertionError(f"{field}={value!r} was accepted")
    for spec in [{"path": "other.yml", "sha256": "b" * 64, "image": "x"}, {"path": "Dockerfile", "sha256": "B" * 64,
                 "image": "x"}, {"path": "Dockerfile", "sha256": "b" * 64, "image": "a b"}, ["Dockerfile"]]:
        try:
            decode({**encode(reply), "result": {**result.to_dict(), "spec": spec}})
        except MessageError:
            continue
        raise AssertionError(f"spec {spec!r} was accepted")
    for artifacts in ["sha256:" + "B" * 64, "b" * 64, "sha256:" + "b" * 63, "sha512:" + "b" * 64, 7, ["sha256:"]]:
        try:
            decode({**encode(reply), "result": {**result.to_dict(), "artifacts": artifacts}})
        except MessageError:
            continue
        raise AssertionError(f"artifacts {artifacts!r} was accepted")


def test_replies_and_votes_signed_before_attestations_keep_their_wire_form():
    old = {"type": "reply", "view": 0, "timestamp": 1, "client": "ci", "sender": 2, "sig": SIG,
           "result": {"status": "success", "exit_code": 0, "commit": "a" * 40, "reason": ""}}
    reply = decode(old)
    assert (reply.statement_sig, reply.link_sig, reply.provenance_sig, reply.result.spec) == ("", "", "", None)
    assert encode(reply) == old


def test_replies_and_votes_signed_before_provenance_keep_their_wire_form():
    """A message with attestation signatures but no provenance signature has the bytes it had before."""
    result = {"status": "success", "exit_code": 0, "commit": "a" * 40, "reason": "",
              "spec": {"path": ".pbft-ci.yml", "sha256": "b" * 64, "image": "pbft-ci/busybox:latest"}}
    old_reply = {"type": "reply", "view": 0, "timestamp": 1, "client": "ci", "sender": 2, "sig": SIG,
                 "result": result, "statement_sig": SIG, "link_sig": "cd" * 64}
    old_vote = {"type": "result", "seq": 3, "client": "ci", "timestamp": 1, "sender": 2, "sig": SIG,
                "result": result, "statement_sig": SIG, "link_sig": "cd" * 64}
    for old in (old_reply, old_vote):
        message = decode(old)
        assert message.provenance_sig == "" and encode(message) == old
        assert "provenance_sig" not in message.payload()
    with_provenance = decode({**old_vote, "provenance_sig": "ef" * 64})
    assert with_provenance.provenance_sig == "ef" * 64
    assert with_provenance.payload()["provenance_sig"] == "ef" * 64  # signed with the rest


def test_fields_left_out_while_at_their_default_are_read_when_present_and_only_then():
    # The decoder reads the fields it always writes first, and looks for those left out at their
    # default only when the object has other keys (pbft.wire._reader): both paths decode alike.
    plain = Operation("example", "main", None)
    pinned = Operation("example", "main", "a" * 40, event="manual", pull_ref="refs/pull/5/head")
    for operation in (plain, pinned):
        wire = encode(Request("ci", 1, operation, SIG))
        assert decode(wire).operation == operation
        assert decode({**wire, "operation": {**wire["operation"], "unknown": 1}}).operation == operation
    wire = encode(Request("ci", 1, plain, SIG))
    with pytest.raises(MessageError, match="unknown event"):
        decode({**wire, "operation": {**wire["operation"], "event": "deploy"}})
