"""The LedgerTransfer part alone (pbft.transfer): what a replica serves of its ledger,
what it checks before it adopts a peer's, and the requests it adopted without building."""

import pytest

from pbft.encoding import digest
from pbft.ledger import MemoryLedger
from pbft.build import Operation
from pbft.messages import LedgerEntry, Request, batch_digest
from pbft.slot import GENESIS_STATE
from pbft.transfer import LedgerTransfer

INTERVAL = 1.0  # fetch_interval_s: a peer is answered once per half of it
ANY_BYTES = 1 << 20  # max_bytes where the test's few small batches never reach it


def request(timestamp, branch="master"):
    return Request("client", timestamp, Operation("repo", branch))


def entries(*seqs):
    return [LedgerEntry(seq, (request(seq),)) for seq in seqs]


def chained(state, ledger_entries):
    """The state digest after `ledger_entries`, as the replica computes it when it executes them."""
    for entry in ledger_entries:
        state = digest([state, entry.seq, batch_digest(entry.batch)])
    return state


def ledger_with_proofs(*seqs):
    ledger = MemoryLedger()
    ledger.proofs = {seq: () for seq in seqs}
    return ledger


# --- serving -----------------------------------------------------------------


def test_a_fetch_for_the_next_chunk_is_answered_at_once():
    transfer = LedgerTransfer(INTERVAL, chunk=10, max_bytes=ANY_BYTES)
    assert transfer.fetch_problem(2, 1, 30, False, 0.0) is None
    transfer.answered(2, 10, 0.0)
    assert transfer.fetch_problem(2, 11, 30, False, 0.01) is None
    transfer.answered(2, 20, 0.01)
    assert transfer.fetch_problem(2, 21, 30, False, 0.02) is None


def test_a_fetch_for_anything_but_the_next_chunk_waits_half_an_interval():
    transfer = LedgerTransfer(INTERVAL, chunk=10, max_bytes=ANY_BYTES)
    assert transfer.fetch_problem(2, 1, 30, False, 0.0) is None
    transfer.answered(2, 10, 0.0)
    assert transfer.fetch_problem(2, 10, 30, False, 0.1) == "too_soon"  # within what it got
    assert transfer.fetch_problem(2, 5, 30, False, INTERVAL / 2 - 0.01) == "too_soon"
    assert transfer.fetch_problem(2, 5, 30, False, INTERVAL / 2) is None
    assert transfer.fetch_problem(2, 5, 30, False, INTERVAL / 2 + 0.01) == "too_soon"  # that counted too
    assert transfer.fetch_problem(2, 11, 30, False, INTERVAL / 2 + 0.01) is None


def test_a_peer_raising_from_seq_by_one_gets_no_more_than_a_laggard():
    transfer = LedgerTransfer(INTERVAL, chunk=10, max_bytes=ANY_BYTES)
    assert transfer.fetch_problem(2, 11, 30, False, 0.0) is None
    transfer.answered(2, 20, 0.0)  # the answer reached the chunk's checkpoint
    assert transfer.fetch_problem(2, 12, 30, False, 0.01) == "too_soon"
    assert transfer.fetch_problem(2, 21, 30, False, 0.02) is None


def test_the_fetch_limit_is_per_peer():
    transfer = LedgerTransfer(INTERVAL, chunk=10, max_bytes=ANY_BYTES)
    assert transfer.fetch_problem(2, 1, 30, False, 0.0) is None
    transfer.answered(2, 10, 0.0)
    assert transfer.fetch_problem(2, 1, 30, False, 0.1) == "too_soon"
    assert transfer.fetch_problem(3, 1, 30, False, 0.1) is None


def test_a_fetch_beyond_our_ledger_is_answered_only_for_a_newer_view():
    transfer = LedgerTransfer(INTERVAL, chunk=10, max_bytes=ANY_BYTES)
    assert transfer.fetch_problem(2, 31, 30, False, 0.0) == "nothing_newer"
    assert transfer.fetch_problem(2, 31, 30, True, 0.0) is None  # it lacks our NEW-VIEW
    transfer.answered(2, 30, 0.0)
    assert transfer.fetch_problem(2, 31, 30, True, 0.1) == "too_soon"  # nothing of the ledger is next


def test_a_chunk_ends_at_the_furthest_kept_checkpoint_within_reach():
    transfer = LedgerTransfer(INTERVAL, chunk=15, max_bytes=ANY_BYTES)
    ledger = ledger_with_proofs(10, 20, 30)
    assert transfer.chunk_end(1, 40, ledger) == 10
    assert transfer.chunk_end(11, 40, ledger) == 20
    assert transfer.chunk_end(10, 40, ledger) == 20
    assert transfer.chunk_end(26, 40, ledger) == 40  # h is close enough
    assert transfer.chunk_end(41, 40, ledger) == 40  # beyond h: the last chunk


def test_a_chunk_ends_at_the_nearest_kept_checkpoint_beyond_reach_if_none_is_close():
    transfer = LedgerTransfer(INTERVAL, chunk=5, max_bytes=ANY_BYTES)
    assert transfer.chunk_end(1, 60, ledger_with_proofs(30, 50)) == 30
    assert transfer.chunk_end(1, 60, ledger_with_proofs()) == 60


def test_a_chunk_ends_at_the_furthest_kept_checkpoint_within_its_bytes():
    ledger = ledger_with_proofs(10, 20, 30)
    sent = entries(*range(1, 41))
    for entry in sent:
        ledger.batches[entry.seq] = entry.batch
    size = sent[0].batch[0].size  # the requests of `entries` are of about this size
    transfer = LedgerTransfer(INTERVAL, chunk=100, max_bytes=25 * size)
    assert transfer.entries_to(1, 40, ledger) == (20, sent[:20])
    assert transfer.entries_to(11, 40, ledger) == (30, sent[10:30])
    assert transfer.entries_to(21, 40, ledger) == (40, sent[20:])  # they fit
    assert transfer.entries_to(41, 40, ledger) == (40, [])  # beyond h: certificates only
    # None close enough: the nearest kept one, however long; no kept one before the end: all.
    small = LedgerTransfer(INTERVAL, 100, max_bytes=5 * size)
    assert small.entries_to(1, 40, ledger) == (10, sent[:10])
    assert small.entries_to(31, 40, ledger) == (40, sent[30:])


# --- adopting ----------------------------------------------------------------


def test_entries_that_chain_to_the_vouched_digest_are_adopted_from_where_we_are():
    sent = entries(1, 2, 3)
    vouched = chained(GENESIS_STATE, sent)
    assert LedgerTransfer.entries_problem(sent, 0, GENESIS_STATE, 3, vouched) == (None, sent)
    after_one = chained(GENESIS_STATE, sent[:1])
    assert LedgerTransfer.entries_problem(sent, 1, after_one, 3, vouched) == (None, sent[1:])


def test_entries_with_a_gap_are_not_adopted():
    vouched = chained(GENESIS_STATE, entries(1, 2, 3))
    for sent in (entries(1, 3), entries(1, 2), entries(2, 3), entries(1, 2, 3, 4), entries(2, 1, 3)):
        assert LedgerTransfer.entries_problem(sent, 0, GENESIS_STATE, 3, vouched) == ("entries_not_contiguous", [])


def test_entries_that_break_the_digest_chain_are_not_adopted():
    honest = entries(1, 2, 3)
    vouched = chained(GENESIS_STATE, honest)
    swapped = [honest[0], LedgerEntry(2, (request(2, "evil"),)), honest[2]]
    assert LedgerTransfer.entries_problem(swapped, 0, GENESIS_STATE, 3, vouched) == (
        "entries_do_not_match_checkpoint", []
    )
    # Honest entries on top of a state other than ours do not reach the vouched digest either.
    assert LedgerTransfer.entries_problem(honest, 0, "1" * 64, 3, vouched) == ("entries_do_not_match_checkpoint", [])


# --- what we adopted without building ------------------------------------------


def test_take_removes_a_learnt_request_from_unbuilt_and_open():
    transfer = LedgerTransfer(INTERVAL, chunk=10, max_bytes=ANY_BYTES)
    first, second = request(1), request(2)
    transfer.learnt(4, first)
    transfer.learnt(5, second)
    assert transfer.take(first.key) == (4, first)
    assert first.key not in transfer.learnt_unbuilt and first.key not in transfer.learnt_open
    assert transfer.oldest_open() == second.key
    with pytest.raises(KeyError):
        transfer.take(first.key)
    transfer.check_invariants()


def test_oldest_open_follows_the_ledger_and_stop_waiting_keeps_the_request_unbuilt():
    transfer = LedgerTransfer(INTERVAL, chunk=10, max_bytes=ANY_BYTES)
    requests = [request(timestamp) for timestamp in (9, 3, 6)]  # ledger order, not timestamp order
    for seq, learnt in enumerate(requests, start=1):
        transfer.learnt(seq, learnt)
    assert transfer.oldest_open() == requests[0].key
    transfer.stop_waiting(requests[0].key)
    assert transfer.oldest_open() == requests[1].key
    assert transfer.take(requests[0].key) == (1, requests[0])  # still buildable, e.g. on a resend
    transfer.stop_waiting(requests[1].key)
    transfer.stop_waiting(requests[2].key)
    assert transfer.oldest_open() is None and set(transfer.learnt_unbuilt) == {requests[1].key, requests[2].key}
    transfer.check_invariants()


def test_forget_removes_a_learnt_request_from_both_and_ignores_unknown_keys():
    transfer = LedgerTransfer(INTERVAL, chunk=10, max_bytes=ANY_BYTES)
    first, second = request(1), request(2)
    transfer.learnt(1, first)
    transfer.learnt(2, second)
    transfer.stop_waiting(second.key)
    transfer.forget([first.key, second.key, ("client", 99)])
    assert transfer.learnt_unbuilt == {} and transfer.learnt_open == {} and transfer.oldest_open() is None
    transfer.check_invariants()
