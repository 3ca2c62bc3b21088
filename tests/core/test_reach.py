"""The links' hint (pbft.reach): which peers a node cannot reach, from what its links saw."""

from pbft.reach import DOWN_FOR_S, Reach


def test_a_peer_whose_link_dropped_is_unreachable_once_it_stayed_down():
    reach = Reach()
    reach.link(0, True, 1.0)
    reach.link(0, False, 2.0)
    assert reach.unreachable(2.0 + DOWN_FOR_S - 0.01) == frozenset()
    assert reach.unreachable(2.0 + DOWN_FOR_S) == {0}
    reach.link(0, False, 3.0)  # said again while down: it has been down since 2.0
    assert reach.unreachable(3.0) == {0}


def test_a_peer_never_reached_is_not_suspected_it_may_be_starting():
    reach = Reach()
    reach.link(0, False, 0.0)
    assert reach.unreachable(100.0) == frozenset()


def test_a_link_that_connects_again_makes_the_peer_reachable():
    reach = Reach()
    reach.link(1, True, 0.0)
    reach.link(1, False, 1.0)
    reach.link(1, True, 1.2)
    assert reach.unreachable(10.0) == frozenset()
    reach.link(1, False, 20.0)  # down again: the wait starts over
    assert reach.unreachable(20.0 + DOWN_FOR_S / 2) == frozenset()
    assert reach.unreachable(20.0 + DOWN_FOR_S) == {1}


def test_forget_drops_a_peer_no_longer_linked_to():
    reach = Reach()
    reach.link(3, True, 0.0)
    reach.link(3, False, 1.0)
    reach.forget(3)
    assert reach.unreachable(10.0) == frozenset()
    assert (reach._up_once, reach._down_since) == (set(), {})
    reach.link(3, False, 11.0)  # a closed link's last word: not up since it was forgotten
    assert reach.unreachable(20.0) == frozenset()


def test_each_peer_is_judged_alone():
    reach = Reach(down_for_s=1.0)
    for peer in (0, 1, 2):
        reach.link(peer, True, 0.0)
    reach.link(0, False, 1.0)
    reach.link(1, False, 1.5)
    assert reach.unreachable(2.0) == {0}
    assert reach.unreachable(2.5) == {0, 1}
