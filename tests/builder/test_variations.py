"""Reproducibility under variation (builder/plan/variations.py): each node's variation is a
function of the node and the build alone, nodes differ, the umask and the clock reach the
script, and each part's traces tell it from the others in bytes that differ."""

import calendar

from builder.engine.gate import exported
from builder.plan.variations import (
    CLOCK_DAYS, CLOCK_VARIABLE, HOSTNAMES, LOCALES, UMASK_VARIABLE, ZONES, Variation, suspects, traced, traces, variation,
)

BUILT_AT_S = calendar.timegm((2026, 11, 29, 5, 0, 0))


def test_a_nodes_variation_is_a_function_of_the_node_and_the_build_only():
    assert variation(2, "client-17") == variation(2, "client-17")
    assert [variation(node, "client-17") for node in range(4)] != [variation(node, "client-18") for node in range(4)]


def test_up_to_seven_nodes_never_share_a_time_zone_or_a_locale():
    for build in ("client-1", "client-2", "other-99"):
        varied = [variation(node, build) for node in range(7)]
        assert len({each.time_zone for each in varied}) == len(ZONES)
        assert len({each.locale for each in varied}) == len(LOCALES)
        assert len({each.clock_days for each in varied}) == len(CLOCK_DAYS)
        assert len({each.hostname for each in varied}) == len(HOSTNAMES)
        assert len({each.build_path for each in varied}) == len(HOSTNAMES)


def test_a_part_is_cleared_by_two_agreeing_nodes_that_differ_in_it():
    # Nodes 0 and 1 agree under different values of everything: nothing varied explains node 2.
    assert suspects([(0, 1), (2,)], "client-5") == []
    # Each node alone: every part that differs may be the cause.
    assert suspects([(0,), (1,)], "client-5") == ["time zone", "locale", "umask", "clock", "host name", "build path"]
    # One node is no divergence: nothing differs.
    assert suspects([(2,)], "client-5") == []


def test_the_umask_is_set_on_the_scripts_first_line_and_only_a_well_formed_one():
    script = exported({"TZ": "UTC", UMASK_VARIABLE: "0077"}, "make\ntest")
    assert script.splitlines()[0].startswith("umask 0077; export ")
    assert script.splitlines()[1:] == ["test"]
    assert not exported({UMASK_VARIABLE: "0077; rm -rf /"}, "make").startswith("umask")
    assert exported({"TZ": "UTC"}, "make") == "export TZ=UTC; make"


def test_the_clock_is_moved_by_libfaketime_on_the_first_line_where_the_image_has_it():
    first = exported({CLOCK_VARIABLE: "+373d"}, "date").splitlines()[0]
    assert first.startswith("for lib in /usr/lib/*/faketime/libfaketime.so.1; do if [ -r \"$lib\" ]; then export ")
    assert 'LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" FAKETIME=+373d FAKETIME_DONT_FAKE_MONOTONIC=1' in first
    assert first.endswith("export PBFT_CI_FAKETIME=+373d; date")
    for wrong in ("373d", "+373d; rm -rf /", "+1y", "-5d"):
        assert "faketime" not in exported({CLOCK_VARIABLE: wrong}, "date").split("export PBFT_CI")[0]


def test_each_parts_traces_are_what_it_leaves_in_bytes():
    left = traces(Variation("<+0545>-5:45", "tr_TR.UTF-8", "0077", 746), BUILT_AT_S)
    assert left["time zone"][0].search("Sun Nov 29 10:45:00 +0545 2026")
    assert not left["time zone"][0].search("offset 10+0545x")
    assert left["umask"][0].search("-rw-------   0 build  build  5 dist/out.txt")
    assert not left["umask"][0].search("-rw-r--r--   0 build  build  5 dist/out.txt")
    assert any(each.search("2028-12-04T05:00:00Z") for each in left["clock"])
    assert not any(each.search("2026-11-29T05:00:00Z") for each in left["clock"])
    assert "locale" not in left
    named = traces(Variation("CET-1", "C.UTF-8", "0022", 0), BUILT_AT_S)
    assert named["time zone"][0].search("05:00 CET") and not named["time zone"][0].search("CETUS")
    assert named["host name"][0].search("built on pbft-ci.") and not named["host name"][0].search("pbft-ci-2")
    alder = traces(Variation("UTC0", "C.UTF-8", "0022", 0, "build-alder", "/build/alder/src"), BUILT_AT_S)
    assert alder["build path"][0].search("File \"/build/alder/src/app.py\", line 3")
    assert not alder["build path"][0].search("/build/alder/srcs/app.py")


def test_a_part_is_traced_when_each_side_holds_its_own_value_and_not_the_others():
    one = traces(Variation("UTC0", "C.UTF-8", "0022", 0), BUILT_AT_S)
    other = traces(Variation("JST-9", "ja_JP.UTF-8", "0002", 373), BUILT_AT_S)
    stamps = ("built 2026-11-29T05:00:01Z", "built 2027-12-07T05:00:02Z")
    assert traced((one["clock"], other["clock"]), stamps)
    assert not traced((one["time zone"], other["time zone"]), stamps)
    assert not traced((one["clock"], other["clock"]), ("built 2026", "built 2026 or 2027"))
    assert not traced((one["clock"], other["clock"]), ("built 2026", "built at noon"))


def test_a_variations_environment_sets_its_time_zone_locale_umask_and_clock():
    varied = variation(2, "client-7")
    assert varied.environment() == {"TZ": varied.time_zone, "LC_ALL": varied.locale, "LANG": varied.locale,
                                    UMASK_VARIABLE: varied.umask, CLOCK_VARIABLE: f"+{varied.clock_days}d"}
