"""Verdict certificates: built from real Ed25519 keys and checked offline.

The unit tests sign requests and replies with the keys `write_network` puts
under `<root>/keys`, exactly as the client and the nodes would, then tamper
with them. The endpoint tests reuse the fake-node harness of
tests/test_client_app.py, so the certificate a real client serves is the one
the verifier is shown to accept.
"""

import asyncio
import json
import subprocess
import sys

import pytest

from client.certificate import (
    CertificateError,
    CertificateUnavailable,
    certificate_from_record,
    check_certificate,
    parse_certificate,
)
from client.index import main
from pbft.encoding import canonical
from pbft.build import Operation, Result, StepResult
from pbft.messages import Request, signed
from tests.client.fake_nodes import honest_result, post, start_client
from tests.client.signed_network import Network, REPOSITORY_ROOT, SUCCESS, TIMESTAMP

FAILURE = Result("failure", 1, SUCCESS.commit)
ERROR = Result("error", None, None, "branch main not found")


@pytest.fixture
def net(tmp_path) -> Network:
    return Network(tmp_path)


def reason_for(net: Network, data: dict) -> str:
    with pytest.raises(CertificateError) as caught:
        check_certificate(data, net.config)
    return caught.value.reason


def valid_line(signers: list[int], result: Result = SUCCESS, needed: int = 2) -> str:
    exit_code = "none" if result.exit_code is None else result.exit_code
    commit = "none" if result.commit is None else result.commit[:12]
    return (
        f"valid: build {TIMESTAMP} {result.status} exit_code={exit_code} commit={commit}"
        f" signed by nodes {signers} (f+1={needed} needed)"
    )


# --- valid certificates ---------------------------------------------------


def test_valid_certificate_exits_0_with_a_one_line_summary(net, capsys):
    path = net.write(net.certificate([net.reply(1), net.reply(0)]))

    assert net.verify(path) == 0

    out, err = capsys.readouterr()
    assert out == valid_line([0, 1]) + "\n" and err == ""


def test_the_script_path_verifies_from_any_directory(net, tmp_path):
    path = net.write(net.certificate([net.reply(0), net.reply(2)]))

    finished = subprocess.run(
        [sys.executable, str(REPOSITORY_ROOT / "client" / "index.py"), "verify", path.name,
         "--config", str(net.config_path)],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )

    assert (finished.returncode, finished.stdout, finished.stderr) == (0, valid_line([0, 2]) + "\n", "")


def test_more_than_f_plus_1_matching_replies_are_valid(net):
    summary = check_certificate(net.certificate([net.reply(3), net.reply(0), net.reply(1)]), net.config)
    assert summary.signers == (0, 1, 3) and summary.needed == 2
    assert (summary.client, summary.repository, summary.branch) == ("client", "example", "main")


def test_a_certificate_names_the_builders_the_order_picked_once_f_plus_1_replies_name_them(net):
    # builders: f+1 (pbft.builders): node 0 stood by and built too, as node 1 was silent.
    data = net.certificate([net.reply(2, builders=(1, 2)), net.reply(0, builders=(1, 2))])
    summary = check_certificate(data, net.config)
    assert summary.picked == (1, 2)
    assert summary.line() == valid_line([0, 2]) + "; the order picked nodes [1, 2] to build it"
    # One reply alone, maybe a faulty node's, names nobody.
    data = net.certificate([net.reply(2, builders=(2, 3)), net.reply(0, builders=(1, 2))])
    assert check_certificate(data, net.config).picked == ()


def test_an_error_verdict_has_no_commit(net):
    data = net.certificate([net.reply(0, result=ERROR), net.reply(1, result=ERROR)], result=ERROR)
    assert check_certificate(data, net.config).line() == valid_line([0, 1], ERROR)


def test_a_reformatted_certificate_still_verifies(net):
    # Signatures cover the canonical payloads, not the file's layout, so
    # pretty-printing a certificate (jq, an editor) does not invalidate it.
    path = net.write(json.dumps(net.certificate([net.reply(0), net.reply(1)]), indent=4).encode() + b"\n")
    assert net.verify(path) == 0


# --- tampering ------------------------------------------------------------


@pytest.mark.parametrize("result", [SUCCESS, ERROR], ids=["success", "error"])
def test_changing_any_single_byte_is_refused(net, capsys, result):
    # Null fields (the request's commit, an error's commit) are where a lenient decoder would let a change through.
    raw = canonical(net.certificate([net.reply(0, result=result), net.reply(1, result=result)], result=result))
    assert net.verify(net.write(raw)) == 0
    text = raw.decode()
    reply_sig = text.index(net.reply(1, result=result).sig)
    regions = {
        "request branch": text.index('"branch":"main"'),
        "request sig": text.index(net.request().sig),
        "reply result": text.index('"result":{"commit"'),
        "reply reason": text.index('"reason"'),
        "reply sig": reply_sig,
        "stated result": text.rindex('"result":{"commit"'),
        "version": text.index('"version":1'),
    }
    positions = set(range(0, len(raw), 7))  # a spread over every field
    for start in regions.values():
        positions.update(range(start, start + 20))
    positions.update(range(reply_sig + 100, reply_sig + 128))  # the S half of the signature
    capsys.readouterr()

    for position in sorted(positions & set(range(len(raw)))):
        for replacement in {raw[position] ^ 0x01, ord("0"), ord(" "), ord('"')} - {raw[position]}:
            tampered = raw[:position] + bytes([replacement]) + raw[position + 1:]
            with pytest.raises(CertificateError):
                check_certificate(parse_certificate(tampered), net.config)
    # The command line refuses a tampered file the same way, with exit 1.
    assert net.verify(net.write(raw.replace(b'"main"', b'"mair"'))) == 1
    assert capsys.readouterr().err == "invalid: request: bad signature of client 'client'\n"


@pytest.mark.parametrize(
    "content", [b"{", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000], ids=["truncated", "not UTF-8", "too deep"]
)
def test_a_file_that_is_not_json_exits_1(net, capsys, content):
    assert net.verify(net.write(content)) == 1
    assert capsys.readouterr().err == "invalid: not JSON\n"


def test_disagreeing_replies_are_refused(net, capsys):
    assert net.verify(net.write(net.certificate([net.reply(0), net.reply(1, result=FAILURE)]))) == 1
    assert capsys.readouterr().err == "invalid: replies disagree\n"
    # A certificate holds only the matching replies: a stray dissent spoils it too.
    data = net.certificate([net.reply(0), net.reply(1), net.reply(3, result=FAILURE)])
    assert reason_for(net, data) == "replies disagree"


def test_replies_must_carry_the_stated_result(net):
    data = net.certificate([net.reply(0, result=FAILURE), net.reply(1, result=FAILURE)], result=SUCCESS)
    assert reason_for(net, data) == "the replies carry a different result than the certificate states"


def test_a_result_differing_only_in_its_reason_still_agrees(net):
    # Nodes agree on status, exit code and commit; the reason is free text.
    worded = Result(SUCCESS.status, SUCCESS.exit_code, SUCCESS.commit, "worded differently")
    assert check_certificate(net.certificate([net.reply(0), net.reply(1, result=worded)]), net.config).signers == (0, 1)


def piped(lint_ms: int, test_exit: int = 1) -> Result:
    steps = (StepResult("lint", "success", 0, lint_ms), StepResult("test", "failure", test_exit, 2000 + lint_ms))
    return Result("failure", test_exit, SUCCESS.commit, spec=SUCCESS.spec, steps=steps, reason="step 'test' failed")


def test_step_durations_are_signed_but_a_pipelines_steps_agree_without_them(net):
    # Each node times its steps itself; the steps' names, statuses and exit codes are what agree.
    data = net.certificate([net.reply(0, result=piped(510)), net.reply(2, result=piped(734))], result=piped(1))
    assert data["result"]["steps"] == [
        {"name": "lint", "status": "success", "exit_code": 0}, {"name": "test", "status": "failure", "exit_code": 1},
    ]
    assert check_certificate(data, net.config).signers == (0, 2)
    assert reason_for(net, net.certificate([net.reply(0, result=piped(510)), net.reply(2, result=piped(510, 2))],
                                           result=piped(1))) == "replies disagree"
    with_duration = net.certificate([net.reply(0, result=piped(510)), net.reply(2, result=piped(510))], result=piped(1))
    with_duration["result"]["steps"][0]["duration_ms"] = 510
    assert "steps must be a non-empty list of objects with exactly" in reason_for(net, with_duration)


def test_a_matrix_expansion_is_certified_with_its_combinations(net):
    # What f+1 nodes sign for a matrix is the list of builds the client then asks for.
    expansion = Result("matrix", None, SUCCESS.commit, "the spec's matrix expands into 2 builds",
                       combinations=((("PYTHON", "3.11"),), (("PYTHON", "3.12"),)))
    data = net.certificate([net.reply(0, result=expansion), net.reply(3, result=expansion)], result=expansion)
    assert data["result"]["combinations"] == [[["PYTHON", "3.11"]], [["PYTHON", "3.12"]]]
    assert check_certificate(data, net.config).signers == (0, 3)
    other = Result("matrix", None, SUCCESS.commit, combinations=((("PYTHON", "3.11"),),))
    assert reason_for(net, net.certificate([net.reply(0, result=expansion), net.reply(3, result=other)],
                                           result=expansion)) == "replies disagree"
    data["result"]["combinations"] = [["PYTHON=3.11"]]
    assert "combinations must be a non-empty list of non-empty lists of [axis, value]" in reason_for(net, data)


def test_a_repeated_signer_is_refused(net, capsys):
    assert net.verify(net.write(net.certificate([net.reply(1), net.reply(1)]))) == 1
    assert capsys.readouterr().err == "invalid: node 1 signed twice\n"
    twice = [net.reply(1), net.reply(1, result=Result(SUCCESS.status, 0, SUCCESS.commit, "again"))]
    assert reason_for(net, net.certificate(twice)) == "node 1 signed twice"


def test_an_unknown_signer_is_refused(net, capsys):
    assert net.verify(net.write(net.certificate([net.reply(0), net.reply(9, key_of=1)]))) == 1
    assert capsys.readouterr().err == "invalid: unknown node 9\n"


def test_a_reply_signed_with_another_nodes_key_is_refused(net):
    assert reason_for(net, net.certificate([net.reply(0), net.reply(2, key_of=1)])) == (
        "reply from node 2: bad signature"
    )


def test_fewer_than_f_plus_1_replies_are_refused(net, capsys):
    assert net.verify(net.write(net.certificate([net.reply(2)]))) == 1
    assert capsys.readouterr().err == "invalid: 1 matching replies, 2 needed\n"
    assert reason_for(net, net.certificate([])) == "0 matching replies, 2 needed"


def test_f_plus_1_follows_the_configured_f(tmp_path):
    net = Network(tmp_path, n=7, f=2)
    assert reason_for(net, net.certificate([net.reply(0), net.reply(5)])) == "2 matching replies, 3 needed"
    assert check_certificate(net.certificate([net.reply(0), net.reply(5), net.reply(6)]), net.config).needed == 3


@pytest.mark.parametrize(
    "kwargs, named", [({"timestamp": TIMESTAMP - 1}, f"'client', timestamp {TIMESTAMP - 1}"),
                      ({"client": "other"}, f"'other', timestamp {TIMESTAMP}")],
)
def test_a_reply_to_another_request_is_refused(net, kwargs, named):
    data = net.certificate([net.reply(0), net.reply(1, **kwargs)])
    assert reason_for(net, data) == f"reply from node 1 is for another request (client {named})"


def test_the_request_must_carry_its_clients_signature(net):
    forged = signed(Request("client", TIMESTAMP, Operation("example", "main")), net.signer("node-0"))
    data = net.certificate([net.reply(0), net.reply(1)], request=forged)
    assert reason_for(net, data) == "request: bad signature of client 'client'"
    stranger = signed(Request("stranger", TIMESTAMP, Operation("example", "main")), net.signer("client-client"))
    assert reason_for(net, net.certificate([], request=stranger)) == "request: unknown client 'stranger'"


NOT_A_CERTIFICATE = "a certificate is an object with exactly ['replies', 'request', 'result', 'version']"
NOT_A_RESULT = (
    "result must be an object with exactly ['commit', 'exit_code', 'status'] (and a spec, artifacts, steps, images and combinations)"
)


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d.pop("result"), NOT_A_CERTIFICATE),
        (lambda d: d.update(extra=1), NOT_A_CERTIFICATE),
        (lambda d: d.update(version=2), "unsupported version '2'"),
        (lambda d: d.update(version=True), "unsupported version 'True'"),
        (lambda d: d.update(replies={}), "replies must be a list"),
        (lambda d: d["replies"].append("reply"), "reply 2: a message must be a JSON object"),
        (lambda d: d["replies"].append(d["request"]), "reply 2: expected a reply or result message"),
        (lambda d: d["request"].pop("sig"), "request: missing field 'sig'"),
        # Decoding alone would read these as the signed messages; verifying must not.
        (lambda d: d["request"]["operation"].pop("commit"), "request: unexpected or missing fields"),
        (lambda d: d["replies"][1].update(note="x"), "reply 1: unexpected or missing fields"),
        (lambda d: d["result"].update(status="passed"), "result: unknown status 'passed'"),
        (lambda d: d["result"].update(exit_code="0"), "result: exit_code must be an integer or null"),
        (lambda d: d["result"].update(reason="x"), NOT_A_RESULT),
        (lambda d: d["result"].update(artifacts="sha256:00"), "result: artifacts must be a manifest digest, sha256:<64 hex>"),
    ],
)
def test_malformed_certificates_are_refused_with_a_reason(net, change, reason):
    data = net.certificate([net.reply(0), net.reply(1)])
    change(data)
    assert reason_for(net, data) == reason


def test_usage_and_configuration_errors_exit_2(net, tmp_path, capsys):
    path = net.write(net.certificate([net.reply(0), net.reply(1)]))
    assert main(["verify", str(path), "--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["verify", str(tmp_path / "missing.json"), "--config", str(net.config_path)]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["verify", str(path)])
    assert exited.value.code == 2


def test_help_explains_running_and_verifying(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["-h"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "[options]" in out and "verify FILE --config NETWORK.yaml" in out and "--deadline-s" in out


# --- from a build record --------------------------------------------------


def test_unfinished_builds_have_no_certificate(net):
    record = {"build_id": "7", "state": "pending", "result": None, "agreed_by": [], "request": {}, "replies": []}
    with pytest.raises(CertificateUnavailable, match="build 7 is pending"):
        certificate_from_record(record)
    with pytest.raises(CertificateUnavailable, match="build 7 timed out"):
        certificate_from_record({**record, "state": "timeout"})


# --- the client's endpoint ------------------------------------------------


async def test_the_endpoint_serves_a_certificate_that_verifies(cluster, aiohttp_client, tmp_path, capsys):
    cluster.behaviour[3] = "liar"
    cluster.delay_s.update({0: 0.05, 1: 0.05, 2: 0.05})  # the lie arrives first and is recorded
    client = await start_client(aiohttp_client, cluster)
    status, verdict = await post(client, {"branch": "main"})
    assert status == 200
    record = await (await client.get(f"/builds/{verdict['build_id']}")).json()
    assert 3 in [reply["sender"] for reply in record["replies"]]

    response = await client.get(f"/builds/{verdict['build_id']}/certificate")

    assert response.status == 200 and response.content_type == "application/json"
    body = await response.read()
    certificate = json.loads(body)
    assert body == canonical(certificate)
    assert [reply["sender"] for reply in certificate["replies"]] == verdict["agreed_by"]  # the liar is left out
    assert certificate["request"] == record["request"]
    summary = check_certificate(certificate, cluster.config)
    expected = honest_result("main")
    assert (summary.build_id, summary.status, summary.exit_code, summary.commit) == (
        int(verdict["build_id"]), expected.status, expected.exit_code, expected.commit,
    )
    assert list(summary.signers) == verdict["agreed_by"]
    path = tmp_path / "downloaded.json"
    path.write_bytes(body)
    assert main(["verify", str(path), "--config", str(cluster.config.path)]) == 0
    assert capsys.readouterr().out.startswith(f"valid: build {verdict['build_id']} success exit_code=0")


async def test_no_certificate_while_pending_or_after_a_timeout(cluster, aiohttp_client):
    for node_id in range(1, 4):
        cluster.behaviour[node_id] = "silent"
    client = await start_client(aiohttp_client, cluster, deadline_s=0.5)
    waiting = asyncio.create_task(client.post("/webHook", json={"branch": "main"}))
    async with asyncio.timeout(5):
        while not cluster.received[0]:
            await asyncio.sleep(0.01)
    build_id = cluster.received[0][0]

    pending = await client.get(f"/builds/{build_id}/certificate")
    assert pending.status == 409
    assert (await pending.json())["error"] == f"build {build_id} is pending: no verdict yet"

    assert (await waiting).status == 504
    timed_out = await client.get(f"/builds/{build_id}/certificate")
    assert timed_out.status == 409
    assert (await timed_out.json())["error"] == f"build {build_id} timed out without f+1 matching replies"


@pytest.mark.parametrize("build_id, status", [("abc", 400), ("-1", 400), ("9" * 20, 400), ("123", 404)])
async def test_bad_or_unknown_build_ids(cluster, aiohttp_client, build_id, status):
    client = await start_client(aiohttp_client, cluster)
    response = await client.get(f"/builds/{build_id}/certificate")
    assert response.status == status
    assert (await response.json())["error"]


def test_a_certificate_names_the_inputs_its_signed_request_gave(net, capsys):
    operation = Operation("example", "main", event="manual", inputs=(("target", "production"), ("note", "it's")))
    request = signed(Request("client", TIMESTAMP, operation), net.signer("client-client"))

    assert net.verify(net.write(net.certificate([net.reply(0), net.reply(1)], request=request))) == 0
    assert capsys.readouterr().out.rstrip("\n").endswith("""; inputs target='production', note="it's\"""")
