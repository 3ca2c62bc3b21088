"""Property tests of the message decoder: nothing a peer sends can make it raise anything but MessageError."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pbft.messages import (
    Challenge,
    Checkpoint,
    Commit,
    Hello,
    MessageError,
    Operation,
    PrePrepare,
    Prepare,
    Relay,
    Reply,
    Request,
    Result,
    ResultVote,
    Status,
    VoteFetch,
    batch_digest,
    decode,
    encode,
)

SIG = "ab" * 64
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True)
naturals = st.integers(min_value=0, max_value=2**40)
challenges = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)


@st.composite
def messages(draw):
    request = Request(draw(names), draw(naturals), Operation(draw(names), draw(names), None), SIG)
    result = Result(draw(st.sampled_from(["success", "failure", "error", "timeout"])),
                    draw(st.none() | st.integers(-255, 255)), None, draw(st.text(max_size=30)))
    view, seq, sender = draw(naturals), draw(naturals), draw(st.integers(0, 6))
    return draw(st.sampled_from([
        request,
        PrePrepare(view, seq, batch_digest((request,)), sender, (request,), SIG),
        Prepare(view, seq, "c" * 64, sender, SIG),
        Commit(view, seq, "d" * 64, sender, SIG),
        Checkpoint(seq, "e" * 64, sender, SIG),
        Reply(view, request.timestamp, request.client, sender, result, SIG),
        ResultVote(seq, request.client, request.timestamp, result, sender, SIG),
        Hello(request.client, sender, draw(challenges), SIG),
        Challenge(draw(challenges)),
        Status(view, seq, sender, SIG),
        VoteFetch(((request.client, request.timestamp),) * draw(st.integers(1, 64)), sender, SIG),
        Relay((Prepare(view, seq, "c" * 64, sender, SIG), Commit(view, seq, "d" * 64, sender, SIG),
               ResultVote(seq, request.client, request.timestamp, result, sender, SIG))),
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
