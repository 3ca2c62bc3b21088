"""Verdicts as in-toto attestations: the statement, DSSE's PAE and envelope, the threshold, the policy.

Signatures are made as the replica makes them (`Authenticator.sign_bytes`
over `pbft.attestation`'s bytes) with the keys of a written network, and
checked with securesystemslib, the library a third party would use.
"""

import base64
import copy
import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import SSlibKey

from client.attestation import AttestationError, attested_from_record, check_envelope, sslib_keys
from client.certificate import CertificateUnavailable
from pbft.attestation import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Signed,
    envelope,
    keyid,
    link_bytes,
    pae,
    signers,
    statement,
)
from shared.crypto import Ed25519Authenticator, load_private_key, verify_bytes, parse_public_key
from pbft.encoding import canonical
from pbft.build import Actor, Operation, Result, Spec
from pbft.messages import Reply, ResultVote, encode, signed
from tests.support.cluster import Cluster
from tests.client.signed_network import Network

COMMIT = "6c9a1984d4929131a50de697145df0cd4e74068d"
SPEC = Spec(".pbft-ci.yml", "ab" * 32, "pbft-ci/busybox:latest")
SUCCESS = Result("success", 0, COMMIT, spec=SPEC)
FAILURE = Result("failure", 3, COMMIT, spec=SPEC)
OPERATION = Operation("example", "master")
PINNED = Operation("example", "master", COMMIT)


@pytest.fixture
def net(tmp_path) -> Network:
    return Network(tmp_path)


def auth(net: Network, node: int) -> Ed25519Authenticator:
    return Ed25519Authenticator(load_private_key(net.keys / f"node-{node}.key"), {}, {})


def node_key(net: Network, node: int) -> str:
    return net.config.node(node).public_key


def signed_envelope(net: Network, nodes: list[int], payload: bytes) -> dict:
    """An envelope of `payload` signed by `nodes`, each under its own keyid."""
    return envelope(payload, [(keyid(node_key(net, node)), auth(net, node).sign_bytes(pae(payload))) for node in nodes])


def statement_of(operation: Operation = PINNED, result: Result = SUCCESS) -> bytes:
    return Signed(operation, result).payload


# --- the statement --------------------------------------------------------


def test_the_statement_names_the_commit_the_repository_the_spec_and_the_image():
    assert statement(PINNED, SUCCESS) == {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "example", "digest": {"gitCommit": COMMIT}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "result": "pass",
            "configuration": [
                {"name": "repository", "uri": "pbft-ci:repository/example",
                 "annotations": {"branch": "master", "requestedCommit": COMMIT}},
                {"name": ".pbft-ci.yml", "digest": {"sha256": "ab" * 32}},
                {"name": "image", "uri": "pbft-ci:image/pbft-ci/busybox:latest"},
            ],
            "status": "success",
            "exitCode": 0,
        },
    }


@pytest.mark.parametrize("result, status", [
    (FAILURE, "failure"),
    (Result("timeout", None, COMMIT, "build exceeded 60 s", spec=SPEC), "timeout"),
    (Result("error", None, COMMIT, "no .pbft-ci.yml or Dockerfile"), "error"),
])
def test_anything_but_success_is_a_fail_with_its_status_beside_it(result, status):
    predicate = statement(OPERATION, result)["predicate"]
    assert (predicate["result"], predicate["status"], predicate["exitCode"]) == ("fail", status, result.exit_code)


def test_a_result_without_a_commit_has_no_statement_and_nothing_is_signed():
    error = Result("error", None, None, "branch not found: x")
    assert statement(OPERATION, error) is None and not Signed(OPERATION, error).exists


def test_a_skipped_build_has_no_statement_since_nothing_ran():
    skipped = Result("skipped", None, COMMIT, "[skip ci] in the commit message")
    assert statement(PINNED, skipped) is None and not Signed(PINNED, skipped).exists


def test_the_statement_names_the_event_of_anything_but_a_push():
    tag = dataclasses.replace(PINNED, event="tag")
    repository = statement(tag, SUCCESS)["predicate"]["configuration"][0]
    assert repository["annotations"] == {"branch": "master", "requestedCommit": COMMIT, "event": "tag"}
    assert "event" not in statement(PINNED, SUCCESS)["predicate"]["configuration"][0]["annotations"]


def test_the_statement_names_who_asked_when_the_request_names_it(net):
    asked = dataclasses.replace(PINNED, actor=Actor("forge", "github:octocat"))
    annotations = statement(asked, SUCCESS)["predicate"]["configuration"][0]["annotations"]
    assert annotations["requestedBy"] == "forge github:octocat"
    summary = check_envelope(signed_envelope(net, [0, 2], Signed(asked, SUCCESS).payload), net.config)
    assert summary.requested_by == "forge github:octocat"
    assert summary.line().endswith("; asked for by forge github:octocat")
    # A statement of an older request, which named none, is what it was.
    assert "requestedBy" not in statement(PINNED, SUCCESS)["predicate"]["configuration"][0]["annotations"]


@pytest.mark.parametrize("requested_by", ["root alice", "user", "user alice\x1b[2J", "user " + "a" * 129, 7])
def test_a_statement_naming_no_plain_actor_is_refused_though_f_plus_1_signed_it(net, requested_by):
    forged = statement(PINNED, SUCCESS)
    forged["predicate"]["configuration"][0]["annotations"]["requestedBy"] = requested_by
    with pytest.raises(AttestationError, match="requestedBy must name an actor"):
        check_envelope(signed_envelope(net, [0, 1], canonical(forged)), net.config)


def test_the_statement_is_a_function_of_the_agreed_result_only():
    """A reason, which nodes do not compare, changes nothing a node signs."""
    other_reason = Result("success", 0, COMMIT, "instant build: nothing ran", spec=SPEC)
    assert statement_of(result=other_reason) == statement_of()
    assert statement_of(result=Result("success", 0, COMMIT)) != statement_of()  # the spec is agreed, and named


def test_pae_keyid_and_link_bytes_are_what_securesystemslib_computes(net):
    payload = statement_of()
    assert pae(payload) == Envelope(payload, PAYLOAD_TYPE, {}).pae()
    public = node_key(net, 0)
    assert keyid(public) == SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))).keyid
    link = Signed(PINNED, SUCCESS).link
    assert link_bytes(link) == encode_canonical(link).encode("utf-8")


# --- signatures as the replica makes them -----------------------------------


def test_every_node_signs_the_same_statement_in_its_reply_and_its_vote():
    cluster = Cluster()
    cluster.deliver_to(0, cluster.request("master"))
    cluster.run()
    votes = [message for stored in cluster.stored for message in stored if isinstance(message, ResultVote)]
    node_keys = {i: key.public_key().raw.hex() for i, key in enumerate(cluster.node_keys)}
    reply = cluster.replies[0]
    request = cluster.builds(0)[0]
    attestation = Signed(request.operation, reply.result)

    def verify(public, data, sig):
        return verify_bytes(parse_public_key(public), data, sig)

    assert [s.node for s in signers(attestation, cluster.replies, node_keys, verify)] == [0, 1, 2, 3]
    assert [s.node for s in signers(attestation, votes, node_keys, verify)] == [0, 1, 2, 3]
    assert {(r.sender, r.statement_sig, r.link_sig) for r in cluster.replies} == {
        (v.sender, v.statement_sig, v.link_sig) for v in votes
    }


def test_a_node_whose_attestation_signatures_do_not_verify_is_not_a_signer(net):
    attestation = Signed(PINNED, SUCCESS)
    keys = {i: node_key(net, i) for i in range(4)}

    def reply(sender: int, signer: int, data: bytes | None = None) -> Reply:
        a = auth(net, signer)
        return Reply(0, 1, "client", sender, SUCCESS, statement_sig=a.sign_bytes(data or attestation.pae()),
                     link_sig=a.sign_bytes(attestation.link_bytes()))

    def verify(public, data, sig):
        return verify_bytes(parse_public_key(public), data, sig)

    replies = [reply(0, 0), reply(1, 2), reply(2, 2, b"another statement"), reply(3, 3), reply(0, 0),
               Reply(0, 1, "client", 3, SUCCESS)]
    assert [s.node for s in signers(attestation, replies, keys, verify)] == [0, 3]


# --- the envelope, checked with securesystemslib --------------------------------


def test_f_plus_1_node_signatures_verify_with_securesystemslib_and_f_do_not(net):
    payload = statement_of()
    keys = [key for _, key in sslib_keys(net.config).values()]
    two = Envelope.from_dict(signed_envelope(net, [0, 2], payload))
    assert sorted(two.verify(keys, 2)) == sorted(keyid(node_key(net, i)) for i in (0, 2))
    with pytest.raises(VerificationError):
        Envelope.from_dict(signed_envelope(net, [1], payload)).verify(keys, 2)


def test_a_valid_envelope_passes_the_policy_with_a_one_line_summary(net):
    summary = check_envelope(signed_envelope(net, [3, 1], statement_of()), net.config, commit=COMMIT, result="pass")
    assert summary.line() == (
        f"valid: attestation of example (master) commit {COMMIT[:12]} pass (success exit_code=0)"
        " signed by nodes [1, 3] (f+1=2 needed)"
    )


def test_f_signatures_are_refused(net):
    with pytest.raises(AttestationError, match=r"1 valid node signatures \[0\], 2 needed"):
        check_envelope(signed_envelope(net, [0], statement_of()), net.config)


def test_a_duplicated_signer_counts_once(net):
    data = signed_envelope(net, [0], statement_of())
    data["signatures"].append(dict(data["signatures"][0]))
    with pytest.raises(AttestationError, match="1 valid node signatures"):
        check_envelope(data, net.config)


def test_a_forged_signature_under_another_nodes_keyid_does_not_count(net):
    payload = statement_of()
    data = signed_envelope(net, [0], payload)
    forged = auth(net, 0).sign_bytes(pae(payload))  # node 0 signs again, claiming to be node 1
    data["signatures"].append({"keyid": keyid(node_key(net, 1)), "sig": base64.b64encode(bytes.fromhex(forged)).decode()})
    with pytest.raises(AttestationError, match=r"1 valid node signatures \[0\]"):
        check_envelope(data, net.config)


def test_a_stranger_key_does_not_count(net, tmp_path):
    stranger = Network(tmp_path / "other")
    payload = statement_of()
    data = signed_envelope(net, [0], payload)
    data["signatures"] += signed_envelope(stranger, [1], payload)["signatures"]
    with pytest.raises(AttestationError, match="1 valid node signatures"):
        check_envelope(data, net.config)


def test_one_changed_byte_of_the_payload_breaks_every_signature(net):
    data = signed_envelope(net, [0, 1, 2], statement_of())
    payload = bytearray(base64.b64decode(data["payload"]))
    payload[payload.index(b"pass")] = ord("P")
    data["payload"] = base64.b64encode(bytes(payload)).decode()
    with pytest.raises(AttestationError, match=r"0 valid node signatures \[\], 2 needed"):
        check_envelope(data, net.config)


def resigned(net: Network, change) -> dict:
    """An envelope whose statement was changed by `change`, then signed by f+1 nodes all the same:
    what only the policy can refuse."""
    changed = json.loads(statement_of())
    change(changed)
    return signed_envelope(net, [0, 1], canonical(changed))


@pytest.mark.parametrize("change, options, reason", [
    (lambda s: s.update(predicateType="https://slsa.dev/provenance/v0.2"), {},
     f"predicateType must be {PREDICATE_TYPE} or https://slsa.dev/provenance/v1"),
    # Another known type is read by its own policy: a verdict's statement is no provenance.
    (lambda s: s.update(predicateType="https://slsa.dev/provenance/v1"), {},
     "each subject must be a file named once, with a sha256 digest"),
    (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), {}, f"statement _type must be {STATEMENT_TYPE}"),
    (lambda s: None, {"commit": "f" * 40}, f"the subject is commit {COMMIT}, not the requested {'f' * 40}"),
    (lambda s: s["subject"][0]["digest"].update(gitCommit="e" * 40), {},
     f"the subject is commit {'e' * 40}, the request pinned {COMMIT}"),
    (lambda s: s.update(subject=[]), {}, "the subject must be one git commit (gitCommit digest)"),
    (lambda s: None, {"result": "fail"}, "the result is pass, not fail"),
    (lambda s: s["predicate"].update(result="PASSED"), {}, "the predicate's result must be pass or fail"),
    (lambda s: s["predicate"].update(status="failure"), {}, "result pass contradicts status 'failure'"),
])
def test_policy_refuses_what_signatures_alone_would_pass(net, change, options, reason):
    with pytest.raises(AttestationError) as caught:
        check_envelope(resigned(net, change), net.config, **options)
    assert caught.value.reason == reason


@pytest.mark.parametrize("change, reason", [
    (lambda d: d.update(payloadType="application/json"), f"payloadType must be {PAYLOAD_TYPE}"),
    (lambda d: d.pop("signatures"), "a DSSE envelope is an object with exactly payload, payloadType and signatures"),
    (lambda d: d.update(payload="%%%"), "payload is not base64"),
    (lambda d: d["signatures"][0].update(sig="not base64!"), "signature 0: sig is not base64"),
    (lambda d: d["signatures"][0].pop("keyid"), "signature 0: an object with exactly a keyid and a sig, both text"),
])
def test_malformed_envelopes_are_refused_with_a_reason(net, change, reason):
    data = signed_envelope(net, [0, 1], statement_of())
    change(data)
    with pytest.raises(AttestationError) as caught:
        check_envelope(data, net.config)
    assert caught.value.reason == reason


def test_verify_cli_accepts_an_envelope_and_refuses_one_with_f_signatures(net, capsys):
    good = net.write(signed_envelope(net, [0, 1], statement_of()), "good.dsse.json")
    assert main_verify(net, good, "--commit", COMMIT, "--result", "pass") == 0
    assert capsys.readouterr().out.startswith(f"valid: attestation of example (master) commit {COMMIT[:12]} pass")
    thin = net.write(signed_envelope(net, [0], statement_of()), "thin.dsse.json")
    assert main_verify(net, thin) == 1
    assert capsys.readouterr().err == "invalid: 1 valid node signatures [0], 2 needed\n"
    assert main_verify(net, good, "--result", "fail") == 1


def main_verify(net: Network, path, *options) -> int:
    from client.index import main

    return main(["verify", str(path), "--config", str(net.config_path), *options])


# --- from a client's build record -------------------------------------------


def record_of(net: Network, replies: list[Reply], agreed_by: list[int], result: Result = SUCCESS) -> dict:
    return {
        "build_id": "1", "state": "accepted", "result": result.to_dict(), "agreed_by": agreed_by,
        "request": encode(net.request()), "replies": [encode(reply) for reply in replies],
    }


def signed_reply(net: Network, sender: int, result: Result = SUCCESS, operation: Operation = Operation("example", "main")):
    attestation = Signed(operation, result)
    a = auth(net, sender)
    return signed(Reply(0, 1, "client", sender, result, statement_sig=a.sign_bytes(attestation.pae()),
                        link_sig=a.sign_bytes(attestation.link_bytes())), net.signer(f"node-{sender}"))


def test_a_record_makes_an_envelope_of_its_agreeing_replies(net):
    record = record_of(net, [signed_reply(net, 2), signed_reply(net, 0, FAILURE), signed_reply(net, 1)], [1, 2])
    attested = attested_from_record(record, net.config)
    assert [signer.node for signer in attested.signers] == [1, 2]
    assert check_envelope(copy.deepcopy(attested.envelope()), net.config).signers == (1, 2)


def test_a_record_without_attestation_signatures_has_no_envelope(net):
    record = record_of(net, [net.reply(0), net.reply(1)], [0, 1], Result("success", 0, "0123456789abcdef" * 2 + "01234567"))
    with pytest.raises(CertificateUnavailable, match="0 agreeing nodes signed its attestation, 2 needed"):
        attested_from_record(record, net.config)
