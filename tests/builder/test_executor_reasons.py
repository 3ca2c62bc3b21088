"""A build's reason travels in every node's signed REPLY and RESULT vote, whose wire form
bounds it (pbft.wire.MAX_TEXT): a reason longer than that, a spec with many problems say,
is cut the same way on every node to fit, so that peers and clients can read the vote; the
build log keeps it whole."""

import pytest

from builder.result import BuildResult, bounded_reason
from pbft.build import Result
from pbft.messages import ResultVote, decode, encode
from pbft.wire import MAX_TEXT
from tests.builder.executor_helpers import build, log_text

pytestmark = pytest.mark.docker

MANY_PROBLEMS = "steps:\n" + "".join(f"  - {{name: s{i}, commands: [x], unknown_key_{i}: 1}}\n" for i in range(60))


def _travels(result: Result) -> Result:
    vote = ResultVote(1, "client", 5, Result(result.status, result.exit_code, result.commit, result.reason), 0, "0" * 128)
    return decode(encode(vote)).result


async def test_a_spec_with_many_problems_gives_a_reason_every_peer_can_read(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": MANY_PROBLEMS})

    result = await build(make_executor(), git_repo, build_ids)

    assert result.status == "error" and len(result.reason) <= MAX_TEXT, len(result.reason)
    assert result.reason.startswith(".pbft-ci.yml: steps[0]: unknown key 'unknown_key_0'")
    assert result.reason.endswith("more characters in the build log)")
    assert _travels(result).reason == result.reason
    assert "steps[59]: unknown key 'unknown_key_59'" in log_text(result)


@pytest.mark.parametrize("length", [0, MAX_TEXT - 1, MAX_TEXT, MAX_TEXT + 1, 10 * MAX_TEXT])
def test_a_reason_is_cut_to_the_wire_bound_only_when_longer(length):
    reason = "".join(chr(ord("a") + index % 26) for index in range(length))

    bounded = bounded_reason(reason)

    assert len(bounded) <= MAX_TEXT
    assert bounded == reason if length <= MAX_TEXT else bounded.startswith(reason[:900])
    assert _travels(BuildResult("error", None, None, bounded)).reason == bounded
