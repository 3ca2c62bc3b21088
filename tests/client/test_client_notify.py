"""Notifications of verdicts: signed webhooks to a receiver on loopback and e-mail to an SMTP
server on loopback, both started by the tests, from the client app over the fake nodes.

Backoffs are shortened (`FAST`); nothing here sleeps for a fixed time: the tests wait for a
delivery, a mail or a counter, or close the client, which ends every notification it holds.
"""

import asyncio
import dataclasses
import json
import logging
import ssl
import time
from pathlib import Path

import aiohttp
import pytest

from client.metrics import ClientMetrics
from client.notifications import WebhookSender, email_message, send_mail, signature, verdict_event
from client.notifier import DeliveryError, Notification, Notifier, NotifySettings
from client.outcome import Accepted, Verdict
from harness.network import parse_metrics
from pbft.build import Operation, Result
from shared.config import NotifyConfig, SMTPConfig
from tests.client.fake_nodes import honest_result, post, start_client
from tests.client.hook_receiver import HookReceiver
from tests.client.mail_server import MailServer
from tests.client.status_api import PUBLIC_URL
from tests.support.second_engine import make_certificates

DOCS = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
SECRET = "notify-hook-secret-0123456789abcdef0123456789"
PASSWORD = "smtp-password-never-logged-4f2a"
SENDER = "pbft-ci@example.org"
FAST = NotifySettings(first_backoff_s=0.05, max_backoff_s=0.2, max_attempts=40, call_timeout_s=2.0,
                      close_grace_s=2.0)


def documented_verify():
    """The `verify` of docs/notifications.md, run as the page prints it."""
    section = DOCS.read_text().split("## Checking a webhook's signature", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the page's own snippet, the point of the test
    return namespace["verify"]


def webhook(receiver: HookReceiver, **filters) -> NotifyConfig:
    return NotifyConfig(webhook=receiver.url, secret=SECRET, **filters)


def with_notify(cluster, targets: list[NotifyConfig], smtp: SMTPConfig | None = None) -> None:
    """Give repository `example` these targets, and the client its public URL and mail server."""
    config = cluster.config
    example, other = config.repositories
    client = dataclasses.replace(config.clients[0], public_url=PUBLIC_URL, smtp=smtp)
    cluster.config = dataclasses.replace(
        config, repositories=(dataclasses.replace(example, notify=tuple(targets)), other), clients=(client,))


def smtp_of(server: MailServer, **settings) -> SMTPConfig:
    return SMTPConfig("127.0.0.1", SENDER, port=server.port, timeout_s=5.0, **settings)


async def metrics(http) -> dict:
    return parse_metrics(await (await http.get("/metrics")).text())


def notifications(values: dict, kind: str, outcome: str) -> float:
    return values[("pbft_client_notifications_total", (("kind", kind), ("outcome", outcome)))]


async def wait_for_metric(http, read, at_least: float, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while read(await metrics(http)) < at_least:
            await asyncio.sleep(0.02)


def said(result: Result) -> dict:
    return {"status": result.status, "exit_code": result.exit_code, "commit": result.commit}


# --- webhooks ---------------------------------------------------------------------


async def test_a_signed_webhook_reaches_its_receiver_which_checks_it_with_the_documented_recipe(
    cluster, aiohttp_client, hook_receiver
):
    await hook_receiver.start()
    with_notify(cluster, [webhook(hook_receiver)])
    http = await start_client(aiohttp_client, cluster, notify_settings=FAST)

    status, answer = await post(http, {"branch": "fail-tests"})
    assert status == 200 and answer["status"] == "failure"
    [delivery] = await hook_receiver.wait_for(1)

    verify = documented_verify()
    header = delivery.headers["X-PBFT-CI-Signature-256"]
    seen: set = set()
    event = verify(SECRET.encode(), delivery.body, header, seen)
    failed = honest_result("fail-tests")
    build_id = answer["build_id"]
    split = event.pop("split")
    assert event == {
        "event": "verdict", "delivery_id": delivery.headers["X-PBFT-CI-Delivery"],
        "timestamp": int(delivery.headers["X-PBFT-CI-Timestamp"]),
        "build_id": build_id, "repository": "example", "branch": "fail-tests", "pull_request": None,
        "combination": None, "commit": failed.commit, "status": "failure", "exit_code": 1, "reason": None,
        "agreed_by": answer["agreed_by"], "elapsed_ms": answer["elapsed_ms"],
        "urls": {"build": f"{PUBLIC_URL}/dashboard/builds/{build_id}", "record": f"{PUBLIC_URL}/builds/{build_id}",
                 "certificate": f"{PUBLIC_URL}/builds/{build_id}/certificate"},
    }
    # The verdict waited for 2f+1 matching replies: each of them is in the split.
    assert len(split) >= 3 and {str(node) for node in answer["agreed_by"]} <= set(split)
    assert all(each == said(failed) for each in split.values())
    assert delivery.headers["X-PBFT-CI-Event"] == "verdict"
    assert abs(event["timestamp"] - time.time()) < 60
    # The links are the client's own pages (PUBLIC_URL stands for the client's address).
    for url in event["urls"].values():
        assert (await http.get(url.removeprefix(PUBLIC_URL))).status == 200, url

    # The check can fail: another key, a changed body, or the same delivery again.
    with pytest.raises(ValueError, match="bad signature"):
        verify(b"another key" * 4, delivery.body, header, set())
    with pytest.raises(ValueError, match="bad signature"):
        verify(SECRET.encode(), delivery.body.replace(b'"failure"', b'"success"'), header, set())
    with pytest.raises(ValueError, match="replayed"):
        verify(SECRET.encode(), delivery.body, header, seen)


async def test_a_receiver_that_is_down_delays_no_verdict_and_gets_its_notification_once_up(
    cluster, aiohttp_client, hook_receiver, caplog
):
    # One receiver not listening yet (its port refuses connections), one that takes the POST
    # and never answers while the client would wait up to 30 s for it.
    hanging = await HookReceiver().start()
    hanging.hang = True
    try:
        with_notify(cluster, [webhook(hook_receiver), webhook(hanging)])
        http = await start_client(aiohttp_client, cluster,
                                  notify_settings=dataclasses.replace(FAST, call_timeout_s=30.0))

        started_s = time.monotonic()
        status, answer = await post(http, {"branch": "main"})
        answered_s = time.monotonic() - started_s
        assert status == 200 and answer["status"] == "success"
        assert answered_s < 1.0, f"the verdict waited {answered_s:.2f} s for its notifications"

        await hanging.wait_for(1)  # taken and unanswered
        # The receiver that is down was tried, failed, and waits for its next attempt.
        await wait_for_metric(http, lambda values: values[
            ("pbft_client_notification_retries_total", (("kind", "webhook"),))], at_least=2)
        assert not hook_receiver.deliveries

        await hook_receiver.start()
        [delivery] = await hook_receiver.wait_for(1)
        event = documented_verify()(SECRET.encode(), delivery.body, delivery.headers["X-PBFT-CI-Signature-256"],
                                    set())
        assert (event["build_id"], event["status"]) == (answer["build_id"], "success")
        await wait_for_metric(http, lambda values: notifications(values, "webhook", "sent"), at_least=1)
        # Meanwhile another verdict is answered at once too, the hanging receiver notwithstanding.
        started_s = time.monotonic()
        assert (await post(http, {"branch": "main"}))[0] == 200
        assert time.monotonic() - started_s < 1.0
    finally:
        await hanging.stop()
    # The refused connections were logged by the receiver's host, never its path (a token of its own).
    assert "notification webhook of build" in caplog.text and "ci-token-in-the-path" not in caplog.text


async def test_retries_back_off_keep_the_delivery_id_and_end_in_giving_up(hook_receiver, caplog):
    caplog.set_level(logging.INFO)
    await hook_receiver.start()
    hook_receiver.script = [500, 503, 429, 502]
    counted = []
    settings = NotifySettings(first_backoff_s=0.05, max_backoff_s=0.1, max_attempts=4, call_timeout_s=2.0)
    async with aiohttp.ClientSession() as session:
        notifier = Notifier({"webhook": WebhookSender(session, 2.0)}, settings,
                            lambda kind, outcome: counted.append((kind, outcome)))
        notifier.start()
        target = webhook(hook_receiver)
        assert notifier.send(Notification("webhook", "7", "example notify[0]", (target, {"build_id": "7"}, "d-1")))
        deliveries = await hook_receiver.wait_for(4)
        await notifier.close()

    gaps_s = [later.at_s - earlier.at_s for earlier, later in zip(deliveries, deliveries[1:])]
    assert gaps_s[0] >= 0.05 and gaps_s[1] >= 0.1 and gaps_s[2] >= 0.1, gaps_s
    assert len(deliveries) == 4 and counted == [("webhook", "retried")] * 3 + [("webhook", "failed")]
    assert {delivery.headers["X-PBFT-CI-Delivery"] for delivery in deliveries} == {"d-1"}
    # Each attempt is signed anew, over its own timestamp.
    for delivery in deliveries:
        assert delivery.headers["X-PBFT-CI-Signature-256"] == signature(SECRET, delivery.body)
        assert json.loads(delivery.body)["timestamp"] == int(delivery.headers["X-PBFT-CI-Timestamp"])
    assert "attempt 4: HTTP 502; gave up after 4 attempts" in caplog.text
    # Doubling, then capped.
    assert [NotifySettings(first_backoff_s=1, max_backoff_s=5).backoff_s(attempt) for attempt in range(1, 6)] == [
        1, 2, 4, 5, 5]


async def test_a_refusal_other_than_429_or_5xx_is_not_retried(hook_receiver, caplog):
    await hook_receiver.start()
    hook_receiver.script = [404]
    counted = []
    async with aiohttp.ClientSession() as session:
        notifier = Notifier({"webhook": WebhookSender(session, 2.0)}, FAST, lambda *each: counted.append(each))
        notifier.start()
        notifier.send(Notification("webhook", "7", "example notify[0]", (webhook(hook_receiver), {}, "d-1")))
        await notifier.close()  # waits for it to end: one attempt
    assert len(hook_receiver.deliveries) == 1 and counted == [("webhook", "failed")]
    assert "attempt 1: HTTP 404; not retried" in caplog.text


# --- the bound ----------------------------------------------------------------------


async def test_notifications_held_are_bounded_and_the_ones_past_the_bound_dropped_and_counted(caplog):
    sent = []
    release, retrying = asyncio.Event(), asyncio.Event()

    async def sender(notification: Notification) -> None:
        if notification.build_id == "retry-me":
            raise DeliveryError("receiver down", retry=True)
        await release.wait()
        sent.append(notification.build_id)

    metrics = ClientMetrics(lambda: 0)

    def count(kind: str, outcome: str) -> None:
        metrics.count_notification(kind, outcome)
        if outcome == "retried":
            retrying.set()

    settings = NotifySettings(workers=1, max_pending=2, first_backoff_s=60, close_grace_s=0.1)
    notifier = Notifier({"webhook": sender}, settings, count)
    notifier.start()
    # One waiting for a retry a minute away still counts: a receiver that is down cannot
    # make the client hold ever more of them.
    assert notifier.send(Notification("webhook", "retry-me", "a", None))
    await retrying.wait()
    assert notifier.send(Notification("webhook", "1", "b", None))
    assert not notifier.send(Notification("webhook", "2", "b", None))
    assert notifier.pending == 2
    assert "notification dropped: webhook of build 2 to b: 2 are waiting already" in caplog.text

    release.set()
    await notifier.close()  # the retry is a minute away: dropped at the end of the grace
    values = parse_metrics(metrics.exposition().decode())
    assert sent == ["1"]
    assert notifications(values, "webhook", "sent") == 1
    assert notifications(values, "webhook", "dropped") == 2  # past the bound, and at the close
    assert values[("pbft_client_notification_retries_total", (("kind", "webhook"),))] == 1
    assert "stopping with 1 notifications not sent" in caplog.text


# --- e-mail -------------------------------------------------------------------------


async def test_an_email_tells_the_verdict_each_nodes_result_and_the_links(cluster, aiohttp_client, mail_server):
    with_notify(cluster, [NotifyConfig(email=("team@example.org", "lead@example.org"))], smtp_of(mail_server))
    http = await start_client(aiohttp_client, cluster, notify_settings=FAST)

    status, answer = await post(http, {"branch": "fail-tests"})
    assert status == 200
    [mail] = await mail_server.wait_for_mails(1)

    commit = honest_result("fail-tests").commit
    build_id = answer["build_id"]
    assert (mail.sender, mail.recipients, mail.tls, mail.user) == (
        SENDER, ["team@example.org", "lead@example.org"], False, None)
    message = mail.message
    assert message["Subject"] == f"[pbft-ci] example fail-tests: failure ({commit[:7]})"
    assert (message["From"], message["To"]) == (SENDER, "team@example.org, lead@example.org")
    assert message["Auto-Submitted"] == "auto-generated" and message["X-PBFT-CI-Build"] == build_id
    body = message.get_content()
    assert body.startswith(f"Build {build_id} of example, branch fail-tests: failure\n")
    assert "Verdict:      failure (exit 1)\n" in body and f"Commit:       {commit}\n" in body
    assert f"Agreed by:    nodes {', '.join(map(str, answer['agreed_by']))}\n" in body
    for node in answer["agreed_by"]:
        assert f"  node {node}: failure (exit 1), commit {commit}\n" in body
    assert f"Build page:   {PUBLIC_URL}/dashboard/builds/{build_id}\n" in body
    assert f"Certificate:  {PUBLIC_URL}/builds/{build_id}/certificate\n" in body


async def test_a_mail_server_that_says_later_gets_the_mail_at_a_later_attempt(cluster, aiohttp_client, mail_server):
    mail_server.refuse_mail = ["451 4.3.0 try again later", "421 4.7.0 too busy"]
    with_notify(cluster, [NotifyConfig(email=("team@example.org",))], smtp_of(mail_server))
    http = await start_client(aiohttp_client, cluster, notify_settings=FAST)

    status, answer = await post(http, {"branch": "main"})
    [mail] = await mail_server.wait_for_mails(1)
    assert mail.message["Subject"].endswith(": success (" + answer["commit"][:7] + ")")
    await wait_for_metric(http, lambda values: notifications(values, "email", "sent"), at_least=1)
    values = await metrics(http)
    assert values[("pbft_client_notification_retries_total", (("kind", "email"),))] == 2
    assert notifications(values, "email", "sent") == 1


async def test_a_disputed_verdict_tells_each_nodes_result(cluster, aiohttp_client, hook_receiver, mail_server):
    await hook_receiver.start()
    with_notify(cluster, [webhook(hook_receiver), NotifyConfig(email=("team@example.org",))], smtp_of(mail_server))
    cluster.behaviour.update({2: "flaky", 3: "flaky"})  # honest, but their builds fail
    http = await start_client(aiohttp_client, cluster, notify_settings=FAST)

    status, answer = await post(http, {"branch": "main"})
    assert (status, answer["status"]) == (200, "disputed")
    [delivery] = await hook_receiver.wait_for(1)
    [mail] = await mail_server.wait_for_mails(1)

    passed, failed = honest_result("main"), Result("failure", 1, honest_result("main").commit)
    event = documented_verify()(SECRET.encode(), delivery.body, delivery.headers["X-PBFT-CI-Signature-256"], set())
    assert (event["status"], event["agreed_by"], event["exit_code"], event["commit"]) == (
        "disputed", [], None, passed.commit)
    assert event["split"] == {"0": said(passed), "1": said(passed), "2": said(failed), "3": said(failed)}
    assert event["reason"] == "nodes 0, 1: success (exit 0); nodes 2, 3: failure (exit 1)"
    assert event["urls"]["certificate"] is None  # no f+1 matching replies make one
    assert (await http.get(f"/builds/{answer['build_id']}/certificate")).status == 409

    message = mail.message
    assert message["Subject"] == f"[pbft-ci] example main: disputed ({passed.commit[:7]})"
    body = message.get_content()
    assert "Reason:       nodes 0, 1: success (exit 0); nodes 2, 3: failure (exit 1)\n" in body
    for node, result in [(0, "success (exit 0)"), (1, "success (exit 0)"), (2, "failure (exit 1)"),
                         (3, "failure (exit 1)")]:
        assert f"  node {node}: {result}, commit {passed.commit}\n" in body
    assert "Certificate:" not in body


async def test_starttls_is_used_before_the_login_and_the_servers_certificate_is_checked(tmp_path, caplog):
    certificates = make_certificates(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates["server"], certificates["server-key"])
    server = await MailServer(tls=context, logins={"pbft-ci": PASSWORD}).start()
    event = verdict_event(Operation("example", "main"), _verdict(), "success", 1, PUBLIC_URL)
    try:
        smtp = smtp_of(server, starttls=True, ca_file=certificates["ca"], user="pbft-ci", password=PASSWORD)
        message = email_message(event, SENDER, ("team@example.org",), "d-1", 4)
        await asyncio.to_thread(send_mail, smtp, message, ("team@example.org",))
        [mail] = server.mails
        assert (mail.tls, mail.user) == (True, "pbft-ci")
        assert server.auth_attempts == [("pbft-ci", PASSWORD, True)]  # never in the clear

        # A server whose certificate another CA signed is refused, for good, before any login.
        stranger = dataclasses.replace(smtp, ca_file=certificates["other-ca"])
        with pytest.raises(DeliveryError, match="certificate") as refused:
            await asyncio.to_thread(send_mail, stranger, message, ("team@example.org",))
        assert not refused.value.retry and len(server.auth_attempts) == 1
        # A wrong password is a 5xx: not retried either.
        wrong = dataclasses.replace(smtp, password="not-it")
        with pytest.raises(DeliveryError, match="SMTP 535") as refused:
            await asyncio.to_thread(send_mail, wrong, message, ("team@example.org",))
        assert not refused.value.retry and len(server.mails) == 1
    finally:
        await server.stop()
    assert PASSWORD not in caplog.text and PASSWORD not in repr(smtp)


async def test_no_header_can_be_smuggled_in_through_a_branch_or_a_combination(mail_server):
    operation = Operation("example", "main\r\nBcc: victim@example.org", "a" * 40,
                          combination=(("PY", "3.12\u2028Cc: other@example.org"),))
    event = verdict_event(operation, _verdict(), "success", 1, PUBLIC_URL)
    message = email_message(event, SENDER, ("team@example.org",), "d-1", 4)
    await asyncio.to_thread(send_mail, smtp_of(mail_server), message, ("team@example.org",))

    [mail] = mail_server.mails
    assert mail.recipients == ["team@example.org"]
    received = mail.message
    assert received["Bcc"] is None and received["Cc"] is None
    assert received["Subject"] == (
        "[pbft-ci] example main??Bcc: victim@example.org PY=3.12?Cc: other@example.org: success (aaaaaaa)")
    assert b"\nBcc:" not in mail.raw and b"\nCc:" not in mail.raw


def _verdict() -> Verdict:
    return Verdict(build_id="7", outcome=Accepted(Result("success", 0, "a" * 40), [0, 1]), replies=[], elapsed_ms=5)


# --- filters, secrets -----------------------------------------------------------------


async def test_on_and_branches_choose_which_verdicts_each_target_hears_of(cluster, aiohttp_client, mail_server):
    failures, main_only = HookReceiver(), HookReceiver()
    await failures.start()
    await main_only.start()
    try:
        with_notify(cluster, [
            webhook(failures, on=("failure", "disputed")),
            webhook(main_only, branches=("main",)),
            NotifyConfig(email=("team@example.org",), on=("skipped",), branches=("skip-docs",)),
        ], smtp_of(mail_server))
        http = await start_client(aiohttp_client, cluster, notify_settings=FAST)
        for branch in ("main", "fail-tests", "skip-docs", "skip-other", "feature"):
            assert (await post(http, {"branch": branch}))[0] == 200
        # Every notification was queued before its verdict was answered; closing the client
        # ends each (sent, or dropped at the end of the grace), so nothing can arrive later.
        await http.close()
    finally:
        await failures.stop()
        await main_only.stop()

    def told(receiver):
        return [(event["branch"], event["status"]) for event in map(json.loads, (d.body for d in receiver.deliveries))]

    assert told(failures) == [("fail-tests", "failure")]
    assert told(main_only) == [("main", "success")]
    assert [mail.message["Subject"].split(":")[0] for mail in mail_server.mails] == ["[pbft-ci] example skip-docs"]


async def test_a_build_without_a_verdict_notifies_no_quorum_without_a_certificate(cluster, aiohttp_client,
                                                                                hook_receiver):
    await hook_receiver.start()
    with_notify(cluster, [webhook(hook_receiver, on=("no_quorum",))])
    cluster.behaviour.update({0: "silent", 1: "silent", 2: "silent"})
    http = await start_client(aiohttp_client, cluster, deadline_s=1.0, notify_settings=FAST)

    status, answer = await post(http, {"branch": "main"})
    assert status == 504
    [delivery] = await hook_receiver.wait_for(1)
    event = json.loads(delivery.body)
    assert (event["status"], event["agreed_by"], event["urls"]["certificate"]) == ("no_quorum", [], None)
    assert event["reason"] == "no 2 nodes agreed on a result before the deadline"
    assert set(event["split"]) == {"3"}  # the one node that replied


async def test_secrets_appear_in_no_log_record_or_metric(cluster, aiohttp_client, hook_receiver, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    await hook_receiver.start()
    hook_receiver.script = [503]  # one retry, logged
    server = await MailServer(logins={"pbft-ci": PASSWORD}).start()  # loopback: a login without TLS is allowed
    try:
        with_notify(cluster, [webhook(hook_receiver), NotifyConfig(email=("team@example.org",))],
                    smtp_of(server, user="pbft-ci", password=PASSWORD))
        http = await start_client(aiohttp_client, cluster, notify_settings=FAST)
        status, answer = await post(http, {"branch": "main"})
        await hook_receiver.wait_for(2)
        [mail] = await server.wait_for_mails(1)
        assert mail.user == "pbft-ci"
        await wait_for_metric(http, lambda values: notifications(values, "webhook", "sent")
                              + notifications(values, "email", "sent"), at_least=2)
        exposed = [caplog.text, await (await http.get("/metrics")).text(), await (await http.get("/builds")).text(),
                   await (await http.get(f"/builds/{answer['build_id']}")).text()]
    finally:
        await server.stop()
    # The hook's path stands for a token of its own (HookReceiver.url): logs show its host only.
    assert "example notify[0] (http://127.0.0.1:" in caplog.text
    for text in exposed:
        assert SECRET not in text and PASSWORD not in text and "ci-token-in-the-path" not in text
    assert SECRET not in repr(cluster.config) and PASSWORD not in repr(cluster.config)
