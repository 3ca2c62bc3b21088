"""The log monitor (client/logmonitor.py) against nodes that serve heads of two histories: what
more than f faulty nodes would have to sign, so each head here is signed with every node's key."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from client.logmonitor import Monitor
from client.logproofs import LogProofError, check_head
from harness.network import write_network
from pbft.encoding import canonical
from pbft.merkle import consistency_proof, leaf_hash, root
from pbft.messages import Checkpoint, encode, signed
from shared.config import load_config
from shared.crypto import load_private_key, sign_bytes


def head(config, seq: int, leaves: list[bytes]) -> dict:
    """A head over `leaves` (their data) signed by every node of `config`."""
    hashes = [leaf_hash(data) for data in leaves]
    checkpoints = []
    for node in config.nodes:
        checkpoint = Checkpoint(seq, "cd" * 32, node.id, log_size=len(leaves), log_root=root(hashes).hex())
        key = load_private_key(config.node_key_path(node.id))
        checkpoints.append(encode(signed(checkpoint, lambda payload: sign_bytes(key, canonical(payload)))))
    return {"seq": seq, "size": len(leaves), "root": root(hashes).hex(), "checkpoints": checkpoints}


@pytest.fixture
async def nodes(tmp_path):
    """`serve({node_id: leaves}, indexing=..., lying=...)`: each node serves the co-signed head
    over its leaves, and consistency proofs from its own leaves; those `indexing` answer 503 (as
    a node still growing its log's tree does) and those `lying` a proof with a node flipped."""
    config = load_config(write_network(tmp_path))
    runners = []

    async def serve(histories: dict[int, list[bytes]], indexing=(), lying=()) -> None:
        for node_id, leaves in histories.items():
            async def serve_head(request, leaves=leaves):
                return web.json_response(head(config, 8, leaves))

            async def serve_consistency(request, leaves=leaves, node_id=node_id):
                if node_id in indexing:
                    return web.json_response({"error": "this node is still indexing its verdict log"}, status=503)
                first, second = int(request.query["first"]), int(request.query["second"])
                proof = consistency_proof([leaf_hash(data) for data in leaves[:second]], first)
                if node_id in lying:
                    proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
                return web.json_response({"first": first, "second": second, "proof": [node.hex() for node in proof]})

            app = web.Application()
            app.router.add_get("/log/head", serve_head)
            app.router.add_get("/log/consistency", serve_consistency)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", config.node(node_id).port).start()
            runners.append(runner)

    yield config, serve
    for runner in runners:
        await runner.cleanup()


LOG = [b"a", b"b", b"c", b"d", b"e"]


async def test_heads_of_one_history_are_one_history(nodes):
    config, serve = nodes
    await serve({0: LOG[:3], 1: LOG[:5], 2: LOG[:5], 3: LOG[:1]})
    async with aiohttp.ClientSession() as session:
        assert await Monitor(config).poll(session) == []


async def test_two_roots_for_one_size_cannot_both_be_true(nodes):
    config, serve = nodes
    await serve({0: LOG[:3], 1: LOG[:3], 2: [b"a", b"b", b"x"], 3: LOG[:3]})
    async with aiohttp.ClientSession() as session:
        problems = await Monitor(config).poll(session)
    assert [problem.split(":")[0] for problem in problems] == [
        "nodes 0 and 2 serve heads of one log that cannot both be true",
        "nodes 1 and 2 serve heads of one log that cannot both be true",
        "nodes 2 and 3 serve heads of one log that cannot both be true"]
    assert all("two roots for 3 verdicts" in problem for problem in problems)


async def test_a_larger_head_that_rewrote_the_past_is_caught_by_its_consistency_proof(nodes):
    config, serve = nodes
    await serve({0: LOG[:2], 1: LOG[:2], 2: LOG[:2], 3: [b"a", b"z", b"c", b"d"]})
    async with aiohttp.ClientSession() as session:
        problems = await Monitor(config).poll(session)
    assert len(problems) == 3 and all(problem.startswith(f"nodes {n} and 3 serve") for n, problem in zip((0, 1, 2), problems))
    assert all("the head of 4 verdicts does not extend the head of 2" in problem for problem in problems)


async def test_a_node_whose_next_head_does_not_extend_its_last_is_named(nodes):
    config, serve = nodes
    monitor = Monitor(config)
    monitor.seen[1] = check_head(head(config, 4, [b"q"]), config)  # what node 1 served at the last poll
    await serve({0: LOG[:2], 1: LOG[:2], 2: LOG[:2], 3: LOG[:2]})
    async with aiohttp.ClientSession() as session:
        problems = await monitor.poll(session)
    assert problems == ["node 1's head does not extend the one it served before: the head of 2 verdicts does not"
                        " extend the head of 1"]


def test_a_head_is_checked_field_by_field(tmp_path):
    config = load_config(write_network(tmp_path))
    good = head(config, 8, LOG)
    assert check_head(good, config).signers == (0, 1, 2, 3)
    for broken, reason in (
        ({**good, "root": "00" * 32}, f"node 0's checkpoint signs another head (size 5, root {good['root'][:16]})"),
        ({**good, "root": "zz"}, "root: a SHA-256 hash is 64 hex digits"),
        ({**good, "seq": 9}, "a head at checkpoint 9 holds only checkpoints at 9"),
        ({**good, "checkpoints": good["checkpoints"] * 2}, "a head's checkpoints are a list, at most one per node"),
        ({**good, "checkpoints": [good["checkpoints"][0]] * 3}, "checkpoint from unknown or repeated node 0"),
        ({**good, "extra": 1}, "a head is an object with exactly checkpoints, root, seq and size"),
    ):
        with pytest.raises(LogProofError) as caught:
            check_head(broken, config)
        assert caught.value.reason == reason


async def test_a_node_that_cannot_prove_now_is_stood_in_for_by_one_that_holds_as_much(nodes, capsys):
    config, serve = nodes
    await serve({0: LOG[:2], 1: LOG[:5], 2: LOG[:5], 3: LOG[:3]}, indexing={1, 3})
    async with aiohttp.ClientSession() as session:
        assert await Monitor(config).poll(session) == []  # node 2 proves what 1 and 3 cannot yet
    assert "no node proves" not in capsys.readouterr().err


async def test_heads_no_node_can_prove_now_are_no_contradiction_and_are_checked_again(nodes, capsys):
    config, serve = nodes
    await serve({0: LOG[:2], 1: LOG[:5], 2: LOG[:5], 3: LOG[:3]}, indexing={1, 2, 3})
    async with aiohttp.ClientSession() as session:
        assert await Monitor(config).poll(session) == []
    said = capsys.readouterr().err
    assert "no node proves now that the head of 3 verdicts extends the head of 2" in said
    assert "no node proves now that the head of 5 verdicts extends the head of 3" in said
    assert "node 3: ValueError" in said and "checked again at the next poll" in said


async def test_a_node_that_serves_a_wrong_proof_is_named_and_the_heads_still_are_one_history(nodes):
    config, serve = nodes
    await serve({0: LOG[:2], 1: LOG[:5], 2: LOG[:5], 3: LOG[:2]}, lying={1})
    async with aiohttp.ClientSession() as session:
        problems = await Monitor(config).poll(session)
    assert len(problems) == 1 and problems[0].startswith(
        "node 1 serves a consistency proof that does not check, where node 2's does:")
