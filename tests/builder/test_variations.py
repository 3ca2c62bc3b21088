"""Reproducibility under variation (builder/plan/variations.py): each node's variation is a
function of the node and the build alone, nodes differ, and the umask reaches the script."""

from builder.engine.gate import exported
from builder.plan.variations import LOCALES, UMASK_VARIABLE, ZONES, suspects, variation


def test_a_nodes_variation_is_a_function_of_the_node_and_the_build_only():
    assert variation(2, "client-17") == variation(2, "client-17")
    assert [variation(node, "client-17") for node in range(4)] != [variation(node, "client-18") for node in range(4)]


def test_up_to_seven_nodes_never_share_a_time_zone_or_a_locale():
    for build in ("client-1", "client-2", "other-99"):
        varied = [variation(node, build) for node in range(7)]
        assert len({each.time_zone for each in varied}) == len(ZONES)
        assert len({each.locale for each in varied}) == len(LOCALES)


def test_a_part_is_cleared_by_two_agreeing_nodes_that_differ_in_it():
    # Nodes 0 and 1 agree under different values of everything: nothing varied explains node 2.
    assert suspects([(0, 1), (2,)], "client-5") == []
    # Each node alone: every part that differs may be the cause.
    assert suspects([(0,), (1,)], "client-5") == ["time zone", "locale", "umask"]
    # One node is no divergence: nothing differs.
    assert suspects([(2,)], "client-5") == []


def test_the_umask_is_set_on_the_scripts_first_line_and_only_a_well_formed_one():
    script = exported({"TZ": "UTC", UMASK_VARIABLE: "0077"}, "make\ntest")
    assert script.splitlines()[0].startswith("umask 0077; export ")
    assert script.splitlines()[1:] == ["test"]
    assert not exported({UMASK_VARIABLE: "0077; rm -rf /"}, "make").startswith("umask")
    assert exported({"TZ": "UTC"}, "make") == "export TZ=UTC; make"
