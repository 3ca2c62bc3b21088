"""The runner's reports to the client: signed with the runner's own key, stamped higher each
time, and recorded by a real client app as the runner's word."""

import aiohttp
import yaml

from client.actionreports import ACTIONS_SPEC
from builder.plan.spec import SPEC_FILE
from runner.config import load_runner_config
from runner.ledger import RunnerLedger
from runner.runner import ActionRunner
from shared.actionreport import ActionReport
from tests.client.fake_nodes import RUNNER, post, start_client


def test_report_stamps_only_grow_even_when_the_clock_goes_back(tmp_path):
    ledger = RunnerLedger(tmp_path / "runner.sqlite")
    assert ledger.next_report_stamp(1_000) == 1_000
    assert ledger.next_report_stamp(1_000) == 1_001  # two reports in one microsecond
    assert ledger.next_report_stamp(500) == 1_002  # the clock went back
    ledger.close()
    reopened = RunnerLedger(tmp_path / "runner.sqlite")  # and across a restart
    assert reopened.next_report_stamp(900) == 1_003
    assert reopened.next_report_stamp(5_000) == 5_000
    reopened.close()


async def test_the_runner_signs_its_report_and_the_client_records_it_as_the_runners(cluster, aiohttp_client,
                                                                                     tmp_path):
    client = await start_client(aiohttp_client, cluster)
    status, verdict = await post(client, {"branch": "deploy"})
    assert status == 200, verdict
    build_id = int(verdict["build_id"])
    path = tmp_path / "runner.yaml"
    # Its key is the one the client's configuration lists (keys/runner-deployer.key, the default).
    path.write_text(yaml.safe_dump({"network": "network.yaml", "name": RUNNER, "data_dir": "runner",
                                    "client_url": str(client.make_url("")).rstrip("/")}))
    config = load_runner_config(path)
    ledger = RunnerLedger(config.data_dir / "runner.sqlite")
    assert ledger.start(build_id, "deploy")  # a previous run of the runner stopped while deploy ran
    try:
        async with aiohttp.ClientSession() as session:
            # Its start reports the action it finds interrupted; no container runs, so no engine.
            await ActionRunner(config, session, ledger, None).start()
        stamp = ledger.next_report_stamp(0) - 1  # the stamp of the report it sent
    finally:
        ledger.close()

    (action,) = (await (await client.get(f"/builds/{build_id}")).json())["actions"]
    assert (action["name"], action["state"], action["reason"], action["runner"], action["stamp_us"]) == (
        "deploy", "interrupted", "the runner stopped while it ran", RUNNER, stamp)
    signed = ActionReport(build_id, "deploy", "interrupted", None, action["reason"], RUNNER, stamp)
    assert signed.verifies(cluster.runner_key.public_key(), action["sig"])


def test_the_client_takes_reports_of_builds_of_the_spec_the_runner_reads():
    """The client, which imports nothing of node/, names the spec file on its own."""
    assert ACTIONS_SPEC == SPEC_FILE
