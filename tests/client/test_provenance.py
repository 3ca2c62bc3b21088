"""A build's artifacts as SLSA Provenance v1, signed by the nodes as DSSE signs, checked offline.

The statement is a pure function of what honest nodes agree on; signatures
are made as the replica makes them (`Authenticator.sign_bytes` over its PAE)
and the envelope is checked with securesystemslib, as a third party would.
"""

import dataclasses
import base64
import copy
import hashlib
import json
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError

from builder import BuildOrder, BuildResult
from client.attestation import (
    AttestationError,
    check_envelope,
    provenance_envelope_from_record,
    provenance_signers_from_record,
    sslib_keys,
)
from client.certificate import CertificateUnavailable
from harness.network import write_network
from node.server import make_app
from pbft.attestation import STATEMENT_TYPE, Signed, envelope, keyid, manifest_digest, pae, statement
from pbft.build import Actor, Operation, Result, Spec
from pbft.ci.variations import variation, variations_of, vary_of
from pbft.encoding import canonical
from pbft.messages import Reply, Request, ResultVote, decode, encode, signed
from pbft.provenance import BUILD_TYPE, PROVENANCE_TYPE, Provenance, builder_id, provenance, provenance_signers
from shared.config import load_config
from shared.crypto import Ed25519Authenticator, load_private_key, parse_public_key, verify_bytes
from tests.client.signed_network import Network, TIMESTAMP
from tests.support.cluster import Cluster, keys
from tests.support.node_network import Network as NodeNetwork

COMMIT = "6c9a1984d4929131a50de697145df0cd4e74068d"
SPEC = Spec(".pbft-ci.yml", "ab" * 32, "pbft-ci/busybox:latest")
FILES = {"dist/app.tar": "sha256:" + "1" * 64, "README.txt": "sha256:" + "2" * 64, "dist/a.whl": "sha256:" + "3" * 64}
BUILT = Result("success", 0, COMMIT, spec=SPEC, artifacts=manifest_digest(FILES))
PINNED = Operation("example", "master", COMMIT)
BUILDER = builder_id(["cd" * 32, "ab" * 32, "ef" * 32, "01" * 32], 1)


def provenance_of(operation=PINNED, result=BUILT, files=FILES, *, client="ci", timestamp=17, builder=BUILDER):
    return provenance(Request(client, timestamp, operation), result, files, builder_id=builder)


# --- the statement ---------------------------------------------------------


def test_the_provenance_names_every_file_the_build_its_source_and_the_network():
    assert provenance_of() == {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": "README.txt", "digest": {"sha256": "2" * 64}},
            {"name": "dist/a.whl", "digest": {"sha256": "3" * 64}},
            {"name": "dist/app.tar", "digest": {"sha256": "1" * 64}},
        ],
        "predicateType": PROVENANCE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "repository": "example", "branch": "master", "requestedCommit": COMMIT,
                    "spec": {"path": ".pbft-ci.yml", "sha256": "ab" * 32},
                },
                "internalParameters": {"image": "pbft-ci/busybox:latest"},
                "resolvedDependencies": [{"uri": "pbft-ci:repository/example", "digest": {"gitCommit": COMMIT}}],
            },
            "runDetails": {"builder": {"id": BUILDER}, "metadata": {"invocationId": "ci/17"}},
        },
    }


def test_an_unpinned_request_names_no_requested_commit():
    external = provenance_of(Operation("example", "master"))["predicate"]["buildDefinition"]["externalParameters"]
    assert "requestedCommit" not in external and external["branch"] == "master"


def test_the_provenance_names_who_asked_among_the_builders_own_parameters():
    asked = provenance_of(dataclasses.replace(PINNED, actor=Actor("schedule", "example/nightly")))
    assert asked["predicate"]["buildDefinition"]["internalParameters"] == {
        "image": "pbft-ci/busybox:latest", "requestedBy": {"kind": "schedule", "name": "example/nightly"}}
    unspecified = provenance_of(dataclasses.replace(PINNED, actor=Actor("machine", "ci")), Result(
        "success", 0, COMMIT, artifacts=BUILT.artifacts))
    assert unspecified["predicate"]["buildDefinition"]["internalParameters"] == {
        "requestedBy": {"kind": "machine", "name": "ci"}}


def test_two_nodes_that_found_the_same_files_in_another_order_sign_the_same_bytes():
    """Each node builds its own mapping; the reason, which nodes do not compare, changes nothing."""
    one = Provenance(Request("ci", 17, PINNED), BUILT, FILES, builder_id=BUILDER)
    other_files = dict(reversed(list(FILES.items())))
    other_result = Result("success", 0, COMMIT, "another node's reason", spec=SPEC, artifacts=BUILT.artifacts)
    other = Provenance(Request("ci", 17, PINNED), other_result, other_files, builder_id=BUILDER)
    assert one.exists and one.payload == other.payload and one.pae() == other.pae()
    assert one.payload.startswith(b'{"_type":') and b" " not in one.payload  # canonical JSON


@pytest.mark.parametrize("files", [
    {**FILES, "dist/app.tar": "sha256:" + "9" * 64},  # one file's bytes differ
    {path: digest for path, digest in FILES.items() if path != "README.txt"},  # a file missing
    {**FILES, "extra.bin": "sha256:" + "4" * 64},  # a file more
    {},
])
def test_files_that_are_not_the_agreed_manifest_have_no_provenance(files):
    assert provenance_of(files=files) is None
    assert not Provenance(Request("ci", 17, PINNED), BUILT, files, builder_id=BUILDER).exists


@pytest.mark.parametrize("result", [
    Result("success", 0, COMMIT, spec=SPEC),  # a build without artifacts
    Result("failure", 1, COMMIT, spec=SPEC, artifacts=BUILT.artifacts),  # what a lying node might claim
    Result("error", None, None, "branch not found", artifacts=BUILT.artifacts),
])
def test_only_a_successful_build_with_matching_artifacts_has_a_provenance(result):
    assert provenance_of(result=result) is None


def test_a_file_digest_that_is_not_sha256_has_no_provenance():
    files = {"app": "sha512:" + "1" * 64}
    result = Result("success", 0, COMMIT, spec=SPEC, artifacts=manifest_digest(files))
    assert provenance_of(result=result, files=files) is None


def test_the_builder_id_is_the_networks_keys_and_f_whatever_their_order():
    keys = ["ab" * 32, "cd" * 32, "ef" * 32, "01" * 32]
    assert builder_id(keys, 1) == builder_id(list(reversed(keys)), 1) == BUILDER
    assert BUILDER.startswith("pbft-ci:network/") and len(BUILDER) == len("pbft-ci:network/") + 16
    assert builder_id(keys[:3] + ["23" * 32], 1) != BUILDER  # another node
    seven = keys + ["23" * 32, "45" * 32, "67" * 32]
    assert builder_id(seven, 2) != builder_id(seven, 1)  # another threshold


def test_the_invocation_is_the_request_and_the_builder_the_network():
    details = provenance_of(client="forge", timestamp=1_700_000_000_000_000, builder="pbft-ci:network/x")["predicate"]
    assert details["runDetails"] == {
        "builder": {"id": "pbft-ci:network/x"}, "metadata": {"invocationId": "forge/1700000000000000"},
    }


# --- signatures as the replica makes them -----------------------------------


def artifact_build(operation: Operation) -> Result:
    return BUILT if operation.branch == "master" else Result("failure", 3, COMMIT, spec=SPEC)


def cluster_keys() -> dict[int, str]:
    """The public keys of tests.cluster's nodes (made once per run, the same for every Cluster)."""
    node_keys, _ = keys(4)
    return {i: key.public_key().raw.hex() for i, key in enumerate(node_keys)}


CLUSTER_BUILDER = builder_id(cluster_keys().values(), 1)


def cluster_with_artifacts(files_of=lambda node, operation: FILES, builder: str = CLUSTER_BUILDER) -> Cluster:
    """Replicas told the network's builder id, as node.server makes them, whose builds find `files_of`."""
    settings = {"builder_id": builder} if builder else {}
    return Cluster(build=artifact_build, artifact_files=files_of, settings=settings)


def verify(public_key_hex: str, data: bytes, sig: str) -> bool:
    return verify_bytes(parse_public_key(public_key_hex), data, sig)


def test_every_node_with_the_agreed_files_signs_the_provenance_in_its_reply_and_its_vote():
    cluster = cluster_with_artifacts()
    request = cluster.request("master")
    cluster.deliver_to(0, request)
    cluster.run()
    votes = [message for stored in cluster.stored for message in stored if isinstance(message, ResultVote)]
    signed = Provenance(request, BUILT, FILES, builder_id=CLUSTER_BUILDER)

    assert [s.node for s in provenance_signers(signed, cluster.replies, cluster_keys(), verify)] == [0, 1, 2, 3]
    assert [s.node for s in provenance_signers(signed, votes, cluster_keys(), verify)] == [0, 1, 2, 3]
    assert {(r.sender, r.provenance_sig) for r in cluster.replies} == {(v.sender, v.provenance_sig) for v in votes}


def test_a_varied_builds_provenance_lists_every_members_variation_and_every_node_signs_it():
    document = {"f": 1, "nodes": [{"id": node, "public_key": ""} for node in range(4)],
                "repositories": [{"name": "example", "url": "/srv/example", "vary": True}]}
    cluster = Cluster(build=artifact_build, artifact_files=lambda node, operation: FILES,
                      settings={"builder_id": CLUSTER_BUILDER}, document=document)
    request = cluster.request("master")
    cluster.deliver_to(0, request)
    cluster.run()
    varied = variations_of((0, 1, 2, 3), f"{request.client}-{request.timestamp}")
    signed = Provenance(request, BUILT, FILES, builder_id=CLUSTER_BUILDER,
                        variations=varied)

    assert signed.statement["predicate"]["buildDefinition"]["internalParameters"]["variations"] == varied
    assert varied["2"] == variation(2, f"{request.client}-{request.timestamp}").as_dict()
    assert [s.node for s in provenance_signers(signed, cluster.replies, cluster_keys(), verify)] == [0, 1, 2, 3]
    # The signatures are of the bytes that list them: without, none verifies.
    unlisted = Provenance(request, BUILT, FILES, builder_id=CLUSTER_BUILDER)
    assert provenance_signers(unlisted, cluster.replies, cluster_keys(), verify) == []
    assert not vary_of({"repositories": [{"name": "example", "url": "/srv/example"}]}, "example")
    assert not vary_of(None, "example") and not vary_of(document, "other")


def test_a_node_whose_files_are_not_the_agreed_manifest_signs_no_provenance():
    """Node 3's build wrote other bytes than its result's manifest names (a result tampered after the
    build): its reply keeps its verdict signatures, but it vouches for no file."""
    tampered = {**FILES, "dist/app.tar": "sha256:" + "9" * 64}
    cluster = cluster_with_artifacts(lambda node, operation: tampered if node == 3 else FILES)
    cluster.deliver_to(0, cluster.request("master"))
    cluster.run()
    by_node = {reply.sender: reply for reply in cluster.replies}
    assert by_node[3].provenance_sig == "" and by_node[3].statement_sig != ""
    assert all(by_node[node].provenance_sig for node in (0, 1, 2))


@pytest.mark.parametrize("branch, builder", [
    ("feature", CLUSTER_BUILDER),  # a failed build has no artifacts
    ("master", ""),  # the simulator's and core tests' replicas are not told a builder id
], ids=["failed-build", "no-builder-id"])
def test_no_provenance_without_artifacts_or_without_a_builder_id(branch, builder):
    cluster = cluster_with_artifacts(builder=builder)
    cluster.deliver_to(0, cluster.request(branch))
    cluster.run()
    assert len(cluster.replies) == 4 and all(reply.provenance_sig == "" for reply in cluster.replies)


# --- real nodes: the driver hands the executor's files to the replica -----------


async def build_with_artifacts(order: BuildOrder) -> BuildResult:
    """What the executor returns for a build whose spec declares artifacts: the files stay on the node."""
    return BuildResult("success", 0, COMMIT, spec=SPEC, artifacts=BUILT.artifacts,
                       artifact_files=tuple(sorted(FILES.items())))


class ArtifactNetwork(NodeNetwork):
    async def start(self, node_id: int) -> None:
        runner = web.AppRunner(make_app(self.config, node_id, build=build_with_artifacts))
        await runner.setup()
        node = self.config.node(node_id)
        await web.TCPSite(runner, node.host, node.port).start()
        self.runners[node_id] = runner


async def test_nodes_sign_the_provenance_of_their_executors_files_under_the_configured_builder(tmp_path):
    config = load_config(write_network(tmp_path))
    net = ArtifactNetwork(config, set())
    try:
        for node_id in range(4):
            await net.start(node_id)
        async with aiohttp.ClientSession() as session:
            agreed, replies = await net.submit(session, "master", 5, [0])
    finally:
        for node_id in list(net.runners):
            await net.stop(node_id)
    assert agreed["artifacts"] == BUILT.artifacts
    signed = Provenance(Request("client", 5, Operation("example", "master")), BUILT, FILES,
                        builder_id=config.builder_id)
    node_keys = {node.id: node.public_key for node in config.nodes}
    found = provenance_signers(signed, replies, node_keys, verify)
    assert len(found) >= 2 and [s.node for s in found] == sorted(reply.sender for reply in replies)


# --- the client: an envelope of f+1 nodes' signatures, checked offline ----------


@pytest.fixture
def net(tmp_path) -> Network:
    return Network(tmp_path)


def node_auth(net: Network, node: int) -> Ed25519Authenticator:
    return Ed25519Authenticator(load_private_key(net.keys / f"node-{node}.key"), {}, {})


def provenance_for(net: Network, request=None, files=FILES) -> Provenance:
    """The provenance a node of `net` signs for `request` (the record's), as its replica builds it."""
    request = request or net.request(timestamp=TIMESTAMP)
    return Provenance(request, BUILT, files, builder_id=net.config.builder_id)


def reply_of(net: Network, sender: int, provenance_sig: str | None = None) -> Reply:
    """Node `sender`'s signed reply with the verdict's signatures and, unless given, its provenance signature."""
    request = net.request(timestamp=TIMESTAMP)
    auth = node_auth(net, sender)
    attestation = Signed(request.operation, BUILT)
    if provenance_sig is None:
        provenance_sig = auth.sign_bytes(provenance_for(net, request).pae())
    reply = Reply(0, TIMESTAMP, "client", sender, BUILT, statement_sig=auth.sign_bytes(attestation.pae()),
                  link_sig=auth.sign_bytes(attestation.link_bytes()), provenance_sig=provenance_sig)
    return signed(reply, net.signer(f"node-{sender}"))


def record_of(net: Network, replies: list[Reply], result: Result = BUILT) -> dict:
    return {
        "build_id": str(TIMESTAMP), "state": "accepted", "result": result.to_dict(),
        "agreed_by": sorted(reply.sender for reply in replies),
        "request": encode(net.request(timestamp=TIMESTAMP)), "replies": [encode(reply) for reply in replies],
    }


def signed_envelope(net: Network, nodes: list[int], payload: bytes) -> dict:
    return envelope(payload, [
        (keyid(net.config.node(node).public_key), node_auth(net, node).sign_bytes(pae(payload))) for node in nodes
    ])


def test_the_networks_builder_id_is_stable_and_differs_between_networks(net, tmp_path):
    again = load_config(net.config_path)
    other = Network(tmp_path / "other")
    assert net.config.builder_id == again.builder_id == builder_id(
        [node.public_key for node in again.nodes], again.f)
    assert other.config.builder_id != net.config.builder_id


def test_f_plus_1_provenance_signatures_verify_with_securesystemslib_and_f_do_not(net):
    payload = provenance_for(net).payload
    keys = [key for _, key in sslib_keys(net.config).values()]
    two = Envelope.from_dict(signed_envelope(net, [1, 3], payload))
    assert sorted(two.verify(keys, 2)) == sorted(keyid(net.config.node(i).public_key) for i in (1, 3))
    assert two.payload_type == "application/vnd.in-toto+json"
    with pytest.raises(VerificationError):
        Envelope.from_dict(signed_envelope(net, [1], payload)).verify(keys, 2)


def test_a_record_and_the_agreed_files_make_an_envelope_of_f_plus_1_signatures(net):
    """Node 0 signed other bytes: it does not count; the envelope holds f+1 of the others."""
    forged = node_auth(net, 0).sign_bytes(pae(b"other files"))
    record = record_of(net, [reply_of(net, 2), reply_of(net, 0, forged), reply_of(net, 1)])
    assert [s.node for s in provenance_signers_from_record(record, net.config, FILES).signers] == [1, 2]
    data = provenance_envelope_from_record(record, net.config, dict(reversed(list(FILES.items()))))
    summary = check_envelope(copy.deepcopy(data), net.config, commit=COMMIT)
    assert summary.signers == (1, 2) and summary.artifacts == ("README.txt", "dist/a.whl", "dist/app.tar")
    assert base64.b64decode(data["payload"]) == provenance_for(net).payload


def test_f_provenance_signatures_make_no_envelope(net):
    record = record_of(net, [reply_of(net, 2), reply_of(net, 0, "")])
    with pytest.raises(CertificateUnavailable, match="1 agreeing nodes signed its artifacts' provenance, 2 needed"):
        provenance_envelope_from_record(record, net.config, FILES)


@pytest.mark.parametrize("files, result, reason", [
    ({**FILES, "extra": "sha256:" + "4" * 64}, BUILT, "the files given are not its artifacts"),
    (FILES, Result("success", 0, COMMIT, spec=SPEC), "has no artifacts: there is no provenance"),
])
def test_no_envelope_for_files_that_are_not_the_verdicts(net, files, result, reason):
    record = record_of(net, [reply_of(net, 0), reply_of(net, 1)], result)
    record["replies"] = [encode(replace(decode(wire), result=result)) for wire in record["replies"]]
    with pytest.raises(CertificateUnavailable, match=reason):
        provenance_envelope_from_record(record, net.config, files)


def resigned_provenance(net: Network, change) -> dict:
    """A provenance changed by `change`, then signed by f+1 nodes all the same: what only the policy can refuse."""
    changed = json.loads(provenance_for(net).payload)
    change(changed)
    return signed_envelope(net, [0, 1], canonical(changed))


@pytest.mark.parametrize("change, options, reason", [
    (lambda s: None, {"commit": "f" * 40}, f"the source is commit {COMMIT}, not the requested {'f' * 40}"),
    (lambda s: None, {"result": "fail"}, "a provenance is of a passing build, not fail"),
    (lambda s: None, {"artifacts": {"app.tar": "9" * 64}}, "app.tar: its sha256 999999999999 is none of the"
     " provenance's artifacts"),
    (lambda s: s["predicate"]["runDetails"]["builder"].update(id="pbft-ci:network/0000000000000000"), {},
     "the builder is 'pbft-ci:network/0000000000000000', not this network"),
    (lambda s: s["predicate"]["buildDefinition"].update(buildType="https://example.com/other"), {},
     f"the provenance's buildType must be {BUILD_TYPE}"),
    (lambda s: s.update(subject=[]), {}, "the subject must name the artifacts, one or more"),
    (lambda s: s["subject"].append(dict(s["subject"][0])), {},
     "each subject must be a file named once, with a sha256 digest"),
    (lambda s: s["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"].update(gitCommit="x"), {},
     "the resolved dependencies name no git commit of pbft-ci:repository/example"),
    (lambda s: s["predicate"]["buildDefinition"]["externalParameters"].update(requestedCommit="e" * 40), {},
     f"the source is commit {COMMIT}, the request pinned {'e' * 40}"),
    (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), {},
     "statement _type must be https://in-toto.io/Statement/v1"),
])
def test_the_provenance_policy_refuses_what_signatures_alone_would_pass(net, change, options, reason):
    with pytest.raises(AttestationError) as caught:
        check_envelope(resigned_provenance(net, change), net.config, **options)
    assert caught.value.reason.startswith(reason)


def test_a_verdicts_statement_names_no_artifact(net):
    statement = Signed(Operation("example", "main"), BUILT).payload
    with pytest.raises(AttestationError, match="names no artifact: a file needs a provenance"):
        check_envelope(signed_envelope(net, [0, 1], statement), net.config, artifacts={"app": "1" * 64})


# --- `client/index.py verify` ---------------------------------------------------


def test_verify_cli_accepts_a_provenance_and_checks_the_artifact_files(net, tmp_path, capsys):
    artifact = tmp_path / "app.tar"
    artifact.write_bytes(b"the artifact's bytes")
    files = {**FILES, "dist/app.tar": "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()}
    result = Result("success", 0, COMMIT, spec=SPEC, artifacts=manifest_digest(files))
    request = net.request(timestamp=TIMESTAMP)
    signed_by = Provenance(Request("client", TIMESTAMP, request.operation), result, files,
                           builder_id=net.config.builder_id)
    good = net.write(signed_envelope(net, [0, 2], signed_by.payload), "good.provenance.json")

    assert main_verify(net, good, "--artifact", artifact, "--commit", COMMIT) == 0
    assert capsys.readouterr().out == (
        f"valid: provenance of 3 artifacts (dist/app.tar checked) from example (main) commit {COMMIT[:12]}"
        f" built by {net.config.builder_id} signed by nodes [0, 2] (f+1=2 needed)\n"
    )

    changed_file = tmp_path / "changed.tar"
    changed_file.write_bytes(b"the artifact's byteS")
    assert main_verify(net, good, "--artifact", changed_file) == 1
    assert "is none of the provenance's artifacts" in capsys.readouterr().err

    data = json.loads(good.read_bytes())
    payload = bytearray(base64.b64decode(data["payload"]))
    payload[payload.index(b"dist/app.tar")] = ord("D")  # one byte of the signed payload
    data["payload"] = base64.b64encode(bytes(payload)).decode()
    changed = net.write(data, "changed.provenance.json")
    assert main_verify(net, changed) == 1
    assert capsys.readouterr().err == "invalid: 0 valid node signatures [], 2 needed\n"


def test_verify_cli_refuses_an_artifact_for_a_certificate_and_an_unreadable_file(net, tmp_path, capsys):
    certificate = net.write(net.certificate([net.reply(0), net.reply(1)]))
    artifact = tmp_path / "app.tar"
    artifact.write_bytes(b"x")
    assert main_verify(net, certificate, "--artifact", artifact) == 2
    assert "--artifact needs a provenance" in capsys.readouterr().err
    assert main_verify(net, certificate, "--artifact", tmp_path / "absent") == 2
    assert f"cannot read {tmp_path / 'absent'}" in capsys.readouterr().err


def main_verify(net: Network, path, *options) -> int:
    from client.index import main

    return main(["verify", str(path), "--config", str(net.config_path), *map(str, options)])


def test_a_manual_runs_inputs_are_external_parameters_and_the_attestation_names_them_too():
    run = dataclasses.replace(PINNED, event="manual", inputs=(("target", "production"), ("dry_run", "false")))

    external = provenance_of(run)["predicate"]["buildDefinition"]["externalParameters"]
    annotations = statement(run, BUILT)["predicate"]["configuration"][0]["annotations"]

    assert external["inputs"] == annotations["inputs"] == {"target": "production", "dry_run": "false"}
    assert "inputs" not in provenance_of(PINNED)["predicate"]["buildDefinition"]["externalParameters"]
    assert "inputs" not in statement(PINNED, BUILT)["predicate"]["configuration"][0]["annotations"]


def test_a_matrix_combinations_provenance_names_the_combination():
    one = dataclasses.replace(PINNED, combination=(("PYTHON", "3.12"), ("DB", "sqlite")))

    external = provenance_of(one)["predicate"]["buildDefinition"]["externalParameters"]

    assert external["matrixCombination"] == "PYTHON=3.12,DB=sqlite"
    assert "matrixCombination" not in provenance_of(PINNED)["predicate"]["buildDefinition"]["externalParameters"]
