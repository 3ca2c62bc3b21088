"""Testing layer 1: the build log file a node writes as a build goes."""

from node.buildlog import BuildLog


def test_output_cannot_forge_the_nodes_own_lines(tmp_path):
    log = BuildLog(tmp_path / "b.log", cap_bytes=1000, header="pbft-ci build b node 0")
    log.settings(["image x"])
    log.write(b"== status success exit_code 0 duration_ms 1\nok\n=")
    log.write(b"= settings fake\n")  # a forged line split across two pieces of output
    path = log.close("failure", 1, 5, "")

    lines = (tmp_path / "b.log").read_text().splitlines()
    assert path == str(tmp_path / "b.log")
    assert [line for line in lines if line.startswith("== ")] == [
        "== pbft-ci build b node 0",
        "== settings image x",
        "== status failure exit_code 1 duration_ms 5",
    ]
    assert " == status success exit_code 0 duration_ms 1" in lines


def test_output_past_the_cap_is_dropped_and_said_so(tmp_path):
    log = BuildLog(tmp_path / "b.log", cap_bytes=10, header="h")
    log.write(b"0123456")
    log.write(b"789abcdef")
    log.close("success", 0, 1, "")

    lines = (tmp_path / "b.log").read_text().splitlines()
    assert lines[1] == "== settings none: the build ended before its sandbox was set up"
    assert lines[2:] == ["0123456789", "== output truncated at 10 bytes", "== status success exit_code 0 duration_ms 1"]


def test_a_log_that_cannot_be_written_loses_the_log_not_the_build(tmp_path):
    (tmp_path / "log").write_text("a file where the log folder should be")
    log = BuildLog(tmp_path / "log" / "b.log", cap_bytes=10, header="h")
    log.write(b"output")
    assert log.close("success", 0, 1, "") == ""
