"""A build's artifacts as SLSA Provenance v1, signed by the nodes as DSSE signs, checked offline.

The statement is a pure function of what honest nodes agree on; signatures
are made as the replica makes them (`Authenticator.sign_bytes` over its PAE)
and the envelope is checked with securesystemslib, as a third party would.
"""

import pytest

from pbft.attestation import STATEMENT_TYPE, manifest_digest
from pbft.messages import Operation, Result, Spec
from pbft.provenance import BUILD_TYPE, PROVENANCE_TYPE, Provenance, builder_id, provenance

COMMIT = "6c9a1984d4929131a50de697145df0cd4e74068d"
SPEC = Spec(".pbft-ci.yml", "ab" * 32, "pbft-ci/busybox:latest")
FILES = {"dist/app.tar": "sha256:" + "1" * 64, "README.txt": "sha256:" + "2" * 64, "dist/a.whl": "sha256:" + "3" * 64}
BUILT = Result("success", 0, COMMIT, spec=SPEC, artifacts=manifest_digest(FILES))
PINNED = Operation("example", "master", COMMIT)
BUILDER = builder_id(["cd" * 32, "ab" * 32, "ef" * 32, "01" * 32], 1)


def provenance_of(operation=PINNED, result=BUILT, files=FILES, *, client="ci", timestamp=17, builder=BUILDER):
    return provenance(operation, result, files, client=client, timestamp=timestamp, builder_id=builder)


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


def test_two_nodes_that_found_the_same_files_in_another_order_sign_the_same_bytes():
    """Each node builds its own mapping; the reason, which nodes do not compare, changes nothing."""
    one = Provenance(PINNED, BUILT, FILES, client="ci", timestamp=17, builder_id=BUILDER)
    other_files = dict(reversed(list(FILES.items())))
    other_result = Result("success", 0, COMMIT, "another node's reason", spec=SPEC, artifacts=BUILT.artifacts)
    other = Provenance(PINNED, other_result, other_files, client="ci", timestamp=17, builder_id=BUILDER)
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
    assert not Provenance(PINNED, BUILT, files, client="ci", timestamp=17, builder_id=BUILDER).exists


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
