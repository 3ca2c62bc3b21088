"""Testing layer 1, as text: each file in tests/scenarios plays a scenario on the test
cluster and holds what every command printed (`tests.core.scenario`). To accept new output
after a deliberate change: PBFT_SCENARIO_REWRITE=1 pytest tests/core/test_scenarios.py, then
read `git diff tests/core/scenarios`."""

from pathlib import Path

import pytest

from tests.core.scenario import parse, run_file

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.txt"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[path.stem for path in SCENARIOS])
def test_scenario(path):
    differences = run_file(path)
    shown = "\n\n".join(
        f"{path.name}:{block.line}: {block.command}\n--- expected\n{block.expected}\n--- printed\n{printed}"
        for block, printed in differences
    )
    assert not differences, shown


def test_the_scenario_files_are_there_and_parse():
    assert {path.stem for path in SCENARIOS} >= {
        "censoring-primary", "crash-between-step-and-save", "relay-withheld", "client-timestamps",
        "state-transfer-builds",
    }
    assert all(parse(path.read_text()) for path in SCENARIOS)


def test_the_parser_reads_commands_outputs_and_comments():
    blocks = parse("# a comment\ncluster n=4\n----\n\nstatus\n----\nn0: view=0\nn1: view=0\n")
    assert [(block.command, block.expected, block.line) for block in blocks] == [
        ("cluster n=4", "", 2), ("status", "n0: view=0\nn1: view=0", 5),
    ]
