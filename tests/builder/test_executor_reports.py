"""Test reports (`reports: {junit: [...]}`) on the real Docker engine: each node reads them
after the build whatever its end, keeps the outcomes beside its verdict and says them in its
log, and nothing a report holds or lacks changes the verdict. And a repository's `vary: true`:
each node builds under its own time zone, locale, umask and clock (where the image has libfaketime)."""

import json
import time

import pytest
import yaml

from builder import BuildOrder, RepositorySettings
from builder.plan.variations import variation
from tests.builder.executor_helpers import build, log_text, spec

pytestmark = pytest.mark.docker

JUNIT = """<?xml version="1.0"?>
<testsuites><testsuite name="unit">
<testcase classname="app.Math" name="adds"/>
<testcase classname="app.Math" name="divides"><failure message="ZeroDivisionError"/></testcase>
<testcase classname="app.Net" name="fetches"><skipped/></testcase>
</testsuite></testsuites>
"""

LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><testsuite><testcase name="&lol2;"/></testsuite>')


def writes(path: str, text: str) -> str:
    """A command that writes `text` at `path` of /workspace."""
    return f"mkdir -p $(dirname {path}) && printf '%s' '{text}' > {path}"


def stored(tmp_path, data_dir="data") -> dict:
    """The one build's test record the node at `data_dir` kept."""
    (path,) = (tmp_path / data_dir / "reports" / "example").glob("*.json")
    return json.loads(path.read_text())


async def test_a_failed_build_keeps_its_verdict_and_its_test_outcomes(make_executor, git_repo, build_ids, tmp_path):
    git_repo.commit("master", {".pbft-ci.yml": spec(writes("reports/unit.xml", JUNIT), "exit 1",
                                                    reports={"junit": ["reports/*.xml"]})})

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.exit_code) == ("failure", 1), log_text(result)
    record = stored(tmp_path)
    assert record["tests"] == {"app.Math::adds": "passed", "app.Math::divides": "failed",
                               "app.Net::fetches": "skipped"}
    assert record["summary"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    assert list(record["files"]) == ["reports/unit.xml"] and record["problems"] == []
    assert f"tests: 1 passed, 1 failed, 1 skipped; outcomes {record['digest']}" in log_text(result)
    assert not list((tmp_path / "data" / "reports").glob(".incoming-*"))
    # The node's result names the outcomes' digest: its signed reply holds it to them, and the
    # verdict is what the other nodes' results agree on, whatever digest each names.
    assert result.tests == record["digest"] and "tests" not in result.agreed()
    assert result.to_dict()["tests"] == record["digest"]


async def test_two_nodes_that_read_the_same_outcomes_have_one_digest(make_executor, git_repo, build_ids, tmp_path):
    git_repo.commit("master", {".pbft-ci.yml": spec(writes("out/a.xml", JUNIT), reports={"junit": ["out/a.xml"]})})

    first = await build(make_executor(), git_repo, build_ids)
    second = await build(make_executor(data_dir="node-b"), git_repo, build_ids)

    assert first.status == second.status == "success", log_text(first)
    assert stored(tmp_path)["digest"] == stored(tmp_path, "node-b")["digest"] == first.tests == second.tests


async def test_a_hostile_or_missing_report_is_a_problem_noted_not_a_verdict(make_executor, git_repo, build_ids, tmp_path):
    git_repo.commit("master", {".pbft-ci.yml": spec(
        writes("reports/laughs.xml", LAUGHS), writes("reports/unit.xml", JUNIT),
        reports={"junit": ["reports/*.xml", "missing/*.xml"]})})

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.exit_code) == ("success", 0), log_text(result)
    record = stored(tmp_path)
    # The refused report and the pattern that matched nothing cost the other report nothing.
    assert record["tests"] == {"app.Math::adds": "passed", "app.Math::divides": "failed",
                               "app.Net::fetches": "skipped"}
    assert record["problems"] == [
        "reports.junit 'missing/*.xml' matched no file",
        "test report reports/laughs.xml: a DOCTYPE or entity declaration is refused",
    ]
    assert "== test reports: test report reports/laughs.xml: a DOCTYPE" in log_text(result)


async def test_a_pipeline_reads_its_reports_after_a_failed_step(make_executor, git_repo, build_ids, tmp_path):
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({
        "steps": [{"name": "test", "commands": [writes("reports/unit.xml", JUNIT), "exit 2"]}],
        "reports": {"junit": ["reports/unit.xml"]},
    }, sort_keys=False)})

    result = await build(make_executor(), git_repo, build_ids)

    assert result.status == "failure", log_text(result)
    assert stored(tmp_path)["summary"]["failed"] == 1


async def test_with_vary_each_node_builds_under_its_own_variation_and_a_reproducible_artifact_still_matches(
        make_executor, git_repo, build_ids, tmp_path):
    git_repo.commit("master", {".pbft-ci.yml": spec(
        'echo "varied: $TZ $LC_ALL $(umask) $(hostname) $(pwd)"', "mkdir -p dist", "echo same > dist/same.txt",
        "test -f /workspace/dist/same.txt",
        artifacts=["dist/same.txt"])})
    build_id = build_ids()
    order = dict(settings=RepositorySettings(vary=True))

    first = await make_executor(node_id=0).run(BuildOrder(build_id, "example", str(git_repo.path), "master", **order))
    second = await make_executor(node_id=1, data_dir="node-b").run(
        BuildOrder(build_id, "example", str(git_repo.path), "master", **order))

    for node, result in ((0, first), (1, second)):
        varied = variation(node, build_id)
        assert f"this node's variation (vary: true): {varied.described()}" in log_text(result)
        assert (f"varied: {varied.time_zone} {varied.locale} {varied.umask} {varied.hostname} {varied.build_path}"
                in log_text(result))
    assert variation(0, build_id).time_zone != variation(1, build_id).time_zone
    assert first.status == second.status == "success"
    assert first.agreed() == second.agreed(), "an artifact that depends on none of it is the same on both"


async def test_with_vary_an_artifact_that_depends_on_the_time_zone_differs_between_nodes(
        make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec(
        "mkdir -p dist", 'date -d "@$SOURCE_DATE_EPOCH" > dist/when.txt', artifacts=["dist/when.txt"])})
    build_id = build_ids()
    orders = [BuildOrder(build_id, "example", str(git_repo.path), "master", settings=RepositorySettings(vary=True))] * 2

    first = await make_executor(node_id=0).run(orders[0])
    second = await make_executor(node_id=1, data_dir="node-b").run(orders[1])

    assert first.status == second.status == "success", log_text(first)
    assert first.artifacts != second.artifacts


async def test_with_vary_an_image_with_libfaketime_sees_each_nodes_clock_moved_by_its_days(
        make_executor, git_repo, build_ids, python_image):
    git_repo.commit("master", {".pbft-ci.yml": spec(
        "mkdir -p dist", "date -u +%Y-%m-%d > dist/when.txt", "cat dist/when.txt",
        'python3 -c "import time; print(time.time())"',
        artifacts=["dist/when.txt"], image=python_image)})
    build_id = build_ids()
    orders = [BuildOrder(build_id, "example", str(git_repo.path), "master", settings=RepositorySettings(vary=True))] * 2
    started_s = time.time()

    results = [await make_executor(node_id=0).run(orders[0]),
               await make_executor(node_id=1, data_dir="node-b").run(orders[1])]

    ended_s = time.time()
    for node, result in enumerate(results):
        assert result.status == "success", log_text(result)
        days = variation(node, build_id).clock_days * 86_400
        # Its own date: the real one moved forward by its days, both in what date(1) wrote and in Python's clock.
        dates = {time.strftime("%Y-%m-%d", time.gmtime(moment + days)) for moment in (started_s, ended_s)}
        lines = log_text(result).splitlines()
        assert set(lines) & dates, (node, dates, lines)
        said = [float(line) for line in lines if line.replace(".", "", 1).isdigit()]
        assert said and started_s + days - 5 <= said[0] <= ended_s + days + 5, (node, said)
        assert f"clock +{variation(node, build_id).clock_days} days" in log_text(result)
    assert results[0].artifacts != results[1].artifacts, "two clocks a year apart wrote two dates"


async def test_without_vary_every_nodes_build_has_the_same_host_name(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": spec('echo "host: $(hostname)"')})
    build_id = build_ids()
    order = BuildOrder(build_id, "example", str(git_repo.path), "master")

    results = [await make_executor(node_id=0).run(order), await make_executor(node_id=1, data_dir="node-b").run(order)]

    for result in results:
        assert "host: pbft-ci\n" in log_text(result), log_text(result)


async def test_with_vary_a_pipelines_steps_run_at_the_nodes_build_path_on_the_one_workspace(
        make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({
        "steps": [{"name": "write", "commands": ["pwd > where.txt", "hostname >> where.txt"]},
                  {"name": "read", "commands": ["cat /workspace/where.txt"]}],
    }, sort_keys=False)})
    build_id = build_ids()

    result = await make_executor(node_id=2).run(
        BuildOrder(build_id, "example", str(git_repo.path), "master", settings=RepositorySettings(vary=True)))

    varied = variation(2, build_id)
    assert result.status == "success", log_text(result)
    assert f"{varied.build_path}\n{varied.hostname}\n" in log_text(result)
