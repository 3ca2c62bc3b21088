"""Testing layer 1: the build log file a node writes as a build goes."""

import re

import pytest

from builder.workspace.log import BuildLog


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


def written(tmp_path, *chunks: bytes, cap_bytes: int = 10_000, reason: str = "") -> str:
    """The log file's text once `chunks` were written as the build's output and the log closed."""
    log = BuildLog(tmp_path / "b.log", cap_bytes=cap_bytes, header="pbft-ci build b node 0")
    log.settings(["image x"])
    for chunk in chunks:
        log.write(chunk)
    log.close("failure", 1, 5, reason)
    return (tmp_path / "b.log").read_bytes().decode("utf-8")  # strictly UTF-8, or this raises


def node_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.startswith("==")]


OWN_LINES = ["== pbft-ci build b node 0", "== settings image x", "== status failure exit_code 1 duration_ms 5"]


@pytest.mark.parametrize("chunks", [
    [b"x\r== status success exit_code 0 duration_ms 1\n"],  # a carriage return ends a line for a reader
    [b"x\r\n== status success exit_code 0 duration_ms 1\n"],
    [b"x\r", b"== status success exit_code 0 duration_ms 1\n"],  # split at the carriage return
    [b"x\r", b"\n== status success exit_code 0\n"],  # a CRLF split in two
    [b"x\r=", b"= status success exit_code 0\n"],
    [b"\r== status success\r"],
    [b"x\x0b== status success\n", b"y\x0c== status success\n", b"z\xc2\x85== status success\n"],  # VT, FF, NEL
])
def test_no_line_end_a_reader_splits_at_lets_output_start_a_line_of_the_nodes(tmp_path, chunks):
    text = written(tmp_path, *chunks)

    assert node_lines(text) == OWN_LINES
    assert "\r" not in text
    # Every line end any reader splits at is one "\n": what a terminal, the SSE parser and the dashboard see.
    assert [line for line in re.split(r"\r\n|\r|\n|\x0b|\x0c|\x85|\u2028|\u2029", text) if line.startswith("==")] \
        == OWN_LINES


def test_a_crlf_split_across_two_pieces_is_one_line_end(tmp_path):
    text = written(tmp_path, b"a\r", b"\nb\rc\r\n")

    assert text.split("\n")[2:5] == ["a", "b", "c"]


@pytest.mark.parametrize("output, shown", [
    (b"\x1b[2J\x1b[31mred\x1b[0m", "\\x1b[2J\\x1b[31mred\\x1b[0m"),  # CSI: clear the screen, colours
    (b"\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # OSC with BEL: the terminal's title
    (b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "\\x1b]8;;http://x\\x1b\\link\\x1b]8;;\\x1b\\"),  # OSC 8 with ST
    ("\u009b31m".encode(), "\\x9b31m"),  # C1 CSI, one character
    (b"a\x00b\x08c\x7fd", "a\\x00b\\x08c\\x7fd"),
    (b"tab\tstays", "tab\tstays"),
    (b"\xff\xfebad", "\ufffd\ufffdbad"),  # not UTF-8
])
def test_control_sequences_are_written_visibly_not_passed_on(tmp_path, output, shown):
    text = written(tmp_path, output)

    assert text.split("\n")[2] == shown
    assert "\x1b" not in text and "\x07" not in text and "\u009b" not in text


def test_a_utf8_character_split_across_pieces_stays_whole(tmp_path):
    text = written(tmp_path, "é€".encode()[:1], "é€".encode()[1:4], "é€".encode()[4:])

    assert text.split("\n")[2] == "é€"


def test_the_nodes_own_lines_take_no_line_end_or_control_from_what_they_quote(tmp_path):
    text = written(tmp_path, b"out\n", reason="bad branch 'x\r\n== status success\x1b[2J'")

    assert node_lines(text)[:2] == OWN_LINES[:2] and len(node_lines(text)) == 3
    assert node_lines(text)[2].startswith("== status failure") and "\x1b" not in text


def test_the_cap_counts_the_bytes_as_written_and_cuts_between_characters(tmp_path):
    text = written(tmp_path, b"\x1b" * 3 + "é".encode() * 4, cap_bytes=14)

    assert text.split("\n")[2:4] == ["\\x1b\\x1b\\x1bé", "== output truncated at 14 bytes"]


SECRET = "deploy-token-0123456789"


def hidden(tmp_path, *chunks: bytes, sections: tuple[str, ...] = (), cap_bytes: int = 10_000) -> str:
    """The log's text once a build that got SECRET wrote `chunks` (a section line after each of
    the first ones, if given) and the log closed with a reason quoting the secret."""
    log = BuildLog(tmp_path / "b.log", cap_bytes=cap_bytes, header="pbft-ci build b node 0")
    log.hide({"DEPLOY_TOKEN": SECRET})
    log.settings(["environment A=1; secrets DEPLOY_TOKEN"])
    for index, chunk in enumerate(chunks):
        log.write(chunk)
        if index < len(sections):
            log.section(sections[index])
    log.note(f"a note that quotes it: {SECRET}")
    log.close("failure", 1, 5, f"reason {SECRET}")
    return (tmp_path / "b.log").read_text()


@pytest.mark.parametrize("split", range(0, len(f"token={SECRET}\n") + 1, 3))
def test_a_secret_is_masked_in_the_file_wherever_the_output_is_split(tmp_path, split):
    line = f"token={SECRET}\n".encode()

    text = hidden(tmp_path, line[:split], line[split:])

    assert SECRET not in text
    assert "token=[secret DEPLOY_TOKEN]\n" in text
    assert "== settings environment A=1; secrets DEPLOY_TOKEN" in text
    assert "== a note that quotes it: [secret DEPLOY_TOKEN]" in text
    assert text.endswith("reason reason [secret DEPLOY_TOKEN]\n")


def test_a_secret_cut_off_at_the_end_of_a_step_is_not_written(tmp_path):
    text = hidden(tmp_path, f"token={SECRET[:10]}".encode(), SECRET[10:].encode(), sections=("step x: success",))

    # The step ended on the value's beginning: that is masked, and its rest, in the next step's
    # output, is no value's beginning and is written as it is.
    assert SECRET[:10] not in text
    assert f"token=[secret DEPLOY_TOKEN]\n== step x: success\n{SECRET[10:]}\n" in text


def test_a_build_without_secrets_masks_nothing(tmp_path):
    text = written(tmp_path, f"token={SECRET}\n".encode())

    assert f"token={SECRET}" in text


class Clock:
    """A clock the test moves: BuildLog reads it at every write."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def line_times(text: str) -> list[int]:
    """When each line began, from a times file (builder.workspace.log LineTimes' format)."""
    times: list[int] = []
    at_ms = None
    for entry in text.splitlines():
        lines, ms = (int(field) for field in entry.split())
        at_ms = ms if at_ms is None else at_ms + ms
        times += [at_ms] * lines
    return times


def test_the_times_file_says_when_each_line_of_the_log_began(tmp_path):
    clock = Clock(1_700_000_000.0)
    log = BuildLog(tmp_path / "b.log", cap_bytes=10_000, header="h", clock=clock)
    log.settings(["image x"])
    clock.now_s += 1.5
    log.write(b"one\ntwo\nthr")  # two lines, and the start of a third
    clock.now_s += 2.0
    log.write(b"ee\n")  # ends the third: no line begins here
    clock.now_s += 0.25
    log.write(b"four")
    clock.now_s += 10
    log.close("success", 0, 1, "")

    lines = (tmp_path / "b.log").read_text().splitlines()
    times = line_times((tmp_path / "b.log.times").read_text())
    assert lines == ["== h", "== settings image x", "one", "two", "three", "four",
                     "== status success exit_code 0 duration_ms 1"]
    start_ms = 1_700_000_000_000
    assert times == [start_ms, start_ms, start_ms + 1500, start_ms + 1500, start_ms + 1500, start_ms + 3750,
                     start_ms + 13750]
    # Entries after the first are differences: a few bytes each.
    assert (tmp_path / "b.log.times").read_text().splitlines()[1:] == ["1 0", "3 1500", "1 2250", "1 10000"]


def test_the_times_of_a_log_written_afresh_start_afresh(tmp_path):
    for run in range(2):  # a node killed mid-build runs it again and writes its log anew
        log = BuildLog(tmp_path / "b.log", cap_bytes=10_000, header=f"run {run}", clock=Clock(100.0 + run))
        log.close("success", 0, 1, "")
    # Its header, the settings line and the status line, all at the second run's time.
    assert line_times((tmp_path / "b.log.times").read_text()) == [101_000] * 3


def test_the_times_stop_at_their_cap_and_the_log_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr("builder.workspace.log.TIMES_CAP_BYTES", 40)
    clock = Clock(1_700_000_000.0)
    log = BuildLog(tmp_path / "b.log", cap_bytes=10_000, header="h", clock=clock)
    log.settings(["image x"])
    for index in range(20):
        clock.now_s += 1
        log.write(b"line %d\n" % index)
    log.close("success", 0, 1, "")

    assert len((tmp_path / "b.log").read_text().splitlines()) == 23
    times = (tmp_path / "b.log.times").read_text()
    assert len(times) <= 40 and 2 < len(line_times(times)) < 23
