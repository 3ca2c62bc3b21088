"""The client's HTTP interface: the webhook, the build records and the dashboard.

Handlers are thin: `client.intake` and `client.forges` validate,
`client.service` talks to the network, `client.records` stores,
`client.nodeviews` asks the nodes what the dashboard shows of them
(`client.dashboard` serves its pages). Bad input
is answered with a 4xx and a reason; a 500 means a bug in this program and
is logged with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from pathlib import Path
from typing import AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from client.access import AccessRules
from client.actionreports import check_build_takes_reports, checked_report
from client.artifacts import (
    ArtifactsUnavailable, add_artifact_proxy, agreed_files, artifact_source, serve_file, serve_manifest,
)
from client.buildlogs import LOG_PROXY, add_build_log_proxy, build_log_links, serve_build_log
from client.attestation import (
    Attested, AttestationUnavailable, attested_from_record, provenance_envelope_from_record,
)
from client.certificate import CertificateUnavailable, certificate_from_record
from client.intoto import bundle
from client.badge import add_badge
from client.dashboard import add_dashboard
from client.deliveries import WebhookSettings, answer_delivery, started
from client.forges import forge_of, parse_delivery
from client.heads import BranchHeads
from client.intake import WebhookError, checked_branch, json_object, parse_webhook
from client.links import NodeLinks
from client.metrics import ClientMetrics
from client.notifications import notifications_ctx
from client.notifier import NotifySettings
from client.nodeviews import build_view, network_view
from client.outcome import Abandoned, Accepted, Disputed, Divergent, TimedOut, Verdict, disputed_result
from client.records import BuildRecords, records_path
from client.tables.summaries import VERDICTS
from client.tables.verdicts import replies_until
from client.schedules import ScheduleRunner, Schedules
from client.service import ClientOptions, ClientService
from client.statuses import commit_statuses_ctx
from client.transfers import NODE_SESSIONS, add_transfers
from shared.boundedread import read_bounded
from shared.config import NetworkConfig, load_config
from shared.reload import LiveConfig, reload_on_sighup
from shared.crypto import Ed25519Authenticator, load_private_key, parse_public_key
from pbft.build import Result, combination_label
from pbft.encoding import canonical
from pbft.messages import MessageError, encode
from pbft.wire import NAME

log = logging.getLogger(__name__)

RECORDS_KEY = web.AppKey("records", BuildRecords)
SERVICE_KEY = web.AppKey("service", ClientService)
METRICS_KEY = web.AppKey("metrics", ClientMetrics)
NAME_KEY = web.AppKey("client_name", str)

DEFAULT_BUILDS_LIMIT = 50
MAX_BUILDS_LIMIT = 1000
# How long an action runner's report may be (shared/actionreport.py).
MAX_ACTION_REPORT_BYTES = 4096
# The most of an in-toto layout (one signed JSON document) the client serves.
MAX_LAYOUT_BYTES = 1024 * 1024
# Build ids are request timestamps in microseconds, which SQLite stores as 63-bit integers.
MAX_BUILD_ID = 2**63 - 1


def client_authenticator(config: NetworkConfig, client_name: str) -> Ed25519Authenticator:
    """Signs as the client `client_name` with its private key; verifies the network's nodes."""
    return Ed25519Authenticator(
        load_private_key(config.client_key_path(client_name)),
        {node.id: parse_public_key(node.public_key) for node in config.nodes},
        {},
    )


class CurrentAccess:
    """The access rules (client.access) of the configuration the client runs with now: a
    reload may set, change or remove the client's token."""

    def __init__(self, live: LiveConfig, client_name: str) -> None:
        self._live = live
        self._client_name = client_name

    def rules(self) -> AccessRules:
        return AccessRules.from_config(self._live.current, self._client_name)

    def check_plain_call(self, headers: Mapping[str, str]) -> None:
        self.rules().check_plain_call(headers)

    def check_reader(self, headers: Mapping[str, str]) -> None:
        self.rules().check_reader(headers)


LIVE_KEY = web.AppKey("live_config", LiveConfig)
ACCESS_KEY = web.AppKey("access", CurrentAccess)


def make_app(
    config: NetworkConfig, client_name: str, *, deadline_s: float | None = None,
    notify_settings: NotifySettings = NotifySettings(), config_path: str | Path | None = None,
) -> web.Application:
    """The client `client_name` of `config`. SIGHUP re-reads `config_path` (the path the
    client was started with; default `config.path`) and applies what may change live
    (shared.reload): handlers read `app[LIVE_KEY].current`, never a configuration of their own."""
    config.client(client_name)  # raises KeyError for a name the config does not know
    auth = client_authenticator(config, client_name)
    metrics = ClientMetrics(lambda: app[SERVICE_KEY].core.waiting if SERVICE_KEY in app else 0,
                            lambda: app[SERVICE_KEY].core.queued if SERVICE_KEY in app else 0)
    app = web.Application(middlewares=[metrics.count_webhooks(), _errors_as_json])  # outermost: sees every answer
    app[METRICS_KEY] = metrics
    # As client/index.py read it at the start: with the client's secrets.
    live = LiveConfig(config, functools.partial(load_config, config_path or config.path), f"client {client_name}",
                      metrics.count_reload)
    app[LIVE_KEY] = live
    app[ACCESS_KEY] = CurrentAccess(live, client_name)
    app[NAME_KEY] = client_name

    async def records_ctx(app: web.Application) -> AsyncIterator[None]:
        records = BuildRecords(records_path(config.data_dir, client_name))
        app[RECORDS_KEY] = records
        yield
        records.close()

    async def service_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=config.node_ssl())) as session:
            options = ClientOptions(deadline_s, pin=BranchHeads(lambda: live.current.repositories).pin)
            service = ClientService(config, client_name, auth, app[RECORDS_KEY], NodeLinks(session, config.nodes),
                                    options)
            app[SERVICE_KEY] = service
            service.events.subscribe(metrics.observe)
            service.start()
            yield
            await service.close()

    async def resume_pending(app: web.Application) -> None:
        # After every context has started: the statuses observe the service by now.
        app[SERVICE_KEY].verbs.resume.start()

    async def abandon_outstanding(app: web.Application) -> None:
        # Webhooks may wait minutes for a verdict; a shutdown should not.
        app[SERVICE_KEY].core.abandon_all()

    async def schedules_ctx(app: web.Application) -> AsyncIterator[None]:
        def start(repositories) -> tuple[ScheduleRunner, asyncio.Task]:
            # From the slots the records hold, as at a start: a schedule they know fires at its
            # next slot as before, a new or changed one starts from now.
            schedules = Schedules(repositories, app[RECORDS_KEY].slots.get())
            submit = app[SERVICE_KEY].verbs.submit
            runner = ScheduleRunner(schedules, app[RECORDS_KEY].slots, submit.start, pin=submit.pinned)
            return runner, asyncio.create_task(runner.run(), name="schedules")

        running = [start(live.current.repositories)]

        def reschedule(new: NetworkConfig) -> None:
            runner, task = running[0]
            if Schedules(new.repositories, {}).entries != runner.schedules.entries:
                # Cancelled in its sleep, the runner has saved every build it started; cancelled
                # while it pins heads, it started none (ScheduleRunner.step).
                task.cancel()
                running[0] = start(new.repositories)

        live.on_reload(reschedule)
        yield
        task = running[0][1]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.extend([records_ctx, service_ctx])
    # After the service's context: statuses observe the service, and stop before it closes.
    app.cleanup_ctx.append(commit_statuses_ctx(live, client_name, SERVICE_KEY))
    # Notifications likewise: they observe the service, and stop before it closes.
    app.cleanup_ctx.append(notifications_ctx(live, client_name, SERVICE_KEY, metrics.count_notification,
                                             notify_settings))
    # Last: a scheduled build, like a webhook's, finds the statuses observing.
    app.cleanup_ctx.append(schedules_ctx)
    app.cleanup_ctx.append(reload_on_sighup(live))
    add_transfers(app, config, client_name)
    add_build_log_proxy(app, config, client_name, auth)
    add_artifact_proxy(app, config, client_name)
    app.on_startup.append(resume_pending)  # runs after the cleanup contexts have started
    app.on_shutdown.append(abandon_outstanding)
    app.router.add_get("/client", identity)
    app.router.add_post("/webHook", webhook)
    app.router.add_get("/builds", list_builds)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/builds/{build_id}", get_build)
    app.router.add_post("/builds/{build_id}/rerun", rerun)
    app.router.add_post("/builds/{build_id}/cancel", cancel)
    app.router.add_post("/builds/{build_id}/actions", report_action)
    app.router.add_get("/builds/{build_id}/certificate", get_certificate)
    app.router.add_get("/builds/{build_id}/attestation", get_attestation)
    app.router.add_get("/builds/{build_id}/in-toto", get_in_toto)
    app.router.add_get("/builds/{build_id}/log", get_build_log)
    app.router.add_get("/builds/{build_id}/artifacts", get_artifacts)
    app.router.add_get("/builds/{build_id}/artifacts/{path:.+}", get_artifact)
    app.router.add_get("/builds/{build_id}/provenance", get_provenance)
    app.router.add_get("/builds/{build_id}/nodes", get_build_nodes)
    app.router.add_get("/network", get_network)
    app.router.add_get("/approvals", list_approvals)
    app.router.add_get("/approvals/{approval_id}", get_approval)
    app.router.add_post("/approvals/{approval_id}/approve", approve)
    add_dashboard(app)
    add_badge(app, live, client_name, RECORDS_KEY, app[ACCESS_KEY])
    return app


@web.middleware
async def _errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except WebhookError as error:
        response = web.json_response({"error": error.reason}, status=error.status, headers=error.headers)
        if error.close_connection:
            await _send_and_close(request, response)
        return response
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {name: error.headers[name] for name in ("Allow", "Retry-After") if name in error.headers}
        return web.json_response({"error": error.reason}, status=error.status, headers=headers or None)
    except Exception:
        log.exception("bug while handling %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


async def _send_and_close(request: web.Request, response: web.Response) -> None:
    """Send `response` now and close the connection behind it.

    Returning a response with the body unread would make aiohttp read and
    discard the rest of the body for up to ten seconds before closing: the
    very hold on the connection a slow caller must not get.
    """
    response.force_close()  # says `Connection: close`
    await response.prepare(request)
    await response.write_eof()
    # Closing the transport flushes the answer written above before the socket closes.
    request.protocol.force_close()


async def identity(request: web.Request) -> web.Response:
    """Which client answers on this port, and its process: scripts/startClient.sh is ready only
    when the process it started answers, not whatever else may hold the port. Public: a name
    from the configuration and a process id open nothing."""
    return web.json_response({"name": request.app[NAME_KEY], "pid": os.getpid()})


def _config(request: web.Request) -> NetworkConfig:
    """The configuration the client runs with now (a reload may have replaced it)."""
    return request.app[LIVE_KEY].current


def _webhook_settings(request: web.Request) -> WebhookSettings:
    return WebhookSettings.from_config(_config(request), request.app[NAME_KEY])


async def webhook(request: web.Request) -> web.Response:
    config = _config(request)
    settings = WebhookSettings.from_config(config, request.app[NAME_KEY])
    # Forges are recognised by their headers and authenticated by the
    # repository's secret once the body is read; a plain call is checked
    # before its body is waited for.
    forge = forge_of(request.headers)
    if forge is None:
        request.app[ACCESS_KEY].check_plain_call(request.headers)
    body = await _read_capped(request, settings.max_body_bytes, settings.body_timeout_s)
    if forge is not None:
        delivery = parse_delivery(forge, body, request.headers, settings.repositories)
        return answer_delivery(delivery, request.app[SERVICE_KEY], request.app[RECORDS_KEY], settings)
    operation = parse_webhook(body, request.headers.get("Content-Type", ""),
                              [repository.name for repository in config.repositories])
    verdict = await request.app[SERVICE_KEY].verbs.submit.wait(operation)
    match verdict.outcome:
        case Accepted() | Divergent() | Disputed():
            answer = {**_verdict_json(verdict, config.f), "logs": build_log_links(request.app, verdict.build_id)}
            if isinstance(verdict.outcome, Accepted) and verdict.outcome.matrix:
                # Answered once the expansion is certified, not when its builds end: up to
                # MAX_COMBINATIONS builds may take far longer than a caller waits on one call.
                base_url = settings.status_base_url
                answer["matrix"] = [
                    {"build_id": build_id, "combination": combination_label(combination),
                     "status_url": f"{base_url}/builds/{build_id}"}
                    for build_id, combination in verdict.outcome.matrix
                ]
            return web.json_response(answer)
        case Abandoned():
            error, status = "client shutting down: the build is followed again when the client restarts", 503
        case TimedOut(progress=progress) if progress is not None:
            limit_s = request.app[SERVICE_KEY].core.settings.queue_limit_s
            error, status = f"still {progress} at f+1 nodes after client_queue_limit_s ({limit_s:g} s)", 504
        case TimedOut():
            error, status = "no quorum before the deadline", 504
    return web.json_response(
        {"error": error, "build_id": verdict.build_id, "replies": [encode(reply) for reply in verdict.replies]},
        status=status,
    )


async def _read_capped(request: web.Request, max_bytes: int, timeout_s: float) -> bytes:
    """The body, refused with 413 by its declared length or once it grows past `max_bytes`,
    and with 408 (closing the connection) unless it is complete within `timeout_s`.

    The plain call has its own, smaller cap in `client.intake`.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise WebhookError(413, f"body is larger than {max_bytes} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_any():
                body += chunk
                if len(body) > max_bytes:
                    raise WebhookError(413, f"body is larger than {max_bytes} bytes")
    except TimeoutError:
        raise WebhookError(408, f"body not received within {timeout_s:g} s", close_connection=True) from None
    except ConnectionResetError:
        # aiohttp 3.14 fails the body's stream with ConnectionResetError("Connection lost")
        # when the peer closes mid-body. That is the caller's doing, not a bug here;
        # the 400 is for the access log, as nobody is left to read it.
        log.info("caller hung up after %d of %s body bytes: %s %s",
                 len(body), request.content_length or "?", request.method, request.path)
        raise WebhookError(400, "caller hung up before the body was complete") from None
    return bytes(body)


def _verdict_json(verdict: Verdict, f: int) -> dict:
    """The answer to a plain call for an accepted, divergent or disputed verdict."""
    match verdict.outcome:
        case Disputed(split=split):
            # As the record has it: each node's result, and which said what in one line.
            return {**disputed_result(split, f), "agreed_by": [], "build_id": verdict.build_id,
                    "elapsed_ms": verdict.elapsed_ms}
        case Divergent(result=result, artifacts_by_node=by_node):
            answer = _result_json(verdict, "divergent", result, [])
            answer["artifacts_by_node"] = {str(node): digest for node, digest in by_node.items()}
            return answer
        case Accepted(result=result, agreed_by=agreed_by, cancelled_by=cancelled_by):
            answer = _result_json(verdict, result.status, result, agreed_by, cancelled_by)
            if result.artifacts is not None:
                answer["artifacts"] = result.artifacts
            return answer
    raise AssertionError(f"no verdict to answer: {verdict.outcome}")


def _result_json(verdict: Verdict, status: str, result: Result, agreed_by: list[int],
                 cancelled_by: str | None = None) -> dict:
    answer = {
        "status": status,
        "exit_code": result.exit_code,
        "commit": result.commit,
        "agreed_by": agreed_by,
        "build_id": verdict.build_id,
        "elapsed_ms": verdict.elapsed_ms,
    }
    if result.status in ("error", "skipped", "cancelled", "matrix"):
        answer["reason"] = result.reason
    if cancelled_by is not None:
        answer["cancelled_by"] = cancelled_by
    elif result.failure_reason() is not None:
        answer["reason"] = result.failure_reason()
    return answer


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text format (client.metrics), behind the same token as the build records."""
    request.app[ACCESS_KEY].check_reader(request.headers)
    return web.Response(body=request.app[METRICS_KEY].exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_builds(request: web.Request) -> web.Response:
    """The newest builds, `limit` at a time: `next` is the `before` of the next page (null on the
    last), so pages never repeat or skip a build while new ones arrive. Filtered by a
    `repository`, a `branch`, a `verdict` (client.tables.summaries.VERDICTS) or a repository's `number`."""
    request.app[ACCESS_KEY].check_reader(request.headers)
    query = request.query
    limit = _bounded_int(query.get("limit", str(DEFAULT_BUILDS_LIMIT)), 1, MAX_BUILDS_LIMIT)
    if limit is None:
        raise web.HTTPBadRequest(reason=f"limit must be an integer from 1 to {MAX_BUILDS_LIMIT}")
    filters: dict = {}
    for name, low in (("before", 0), ("number", 1)):
        if name in query:
            filters[name] = _bounded_int(query[name], low, MAX_BUILD_ID)
            if filters[name] is None:
                raise web.HTTPBadRequest(reason=f"{name} must be a decimal number from {low} to {MAX_BUILD_ID}")
    if "repository" in query:
        # Any well-formed name: a repository no longer configured still has its builds.
        try:
            filters["repository"] = NAME.read(query["repository"], "repository")
        except MessageError as error:
            raise web.HTTPBadRequest(reason=str(error)) from None
    if "branch" in query:
        filters["branch"] = checked_branch(query["branch"])
    if "verdict" in query:
        if query["verdict"] not in VERDICTS:
            raise web.HTTPBadRequest(reason=f"verdict must be one of {', '.join(VERDICTS)}")
        filters["verdict"] = query["verdict"]
    builds = request.app[RECORDS_KEY].builds.recent(limit + 1, **filters)  # one more: is there a next page?
    service = request.app[SERVICE_KEY]
    return web.json_response({"builds": [_with_progress(service, build) for build in builds[:limit]],
                              "next": builds[limit - 1]["build_id"] if len(builds) > limit else None})


def _with_progress(service: ClientService, build: dict) -> dict:
    """A build's record and, while it has no verdict, where f+1 nodes say it is: `queued` for
    a build slot, or `running` (None until f+1 say either). And its `dissent`: the nodes that
    replied otherwise than the verdict, and those that did not reply in time, once that time
    is over (`dissent_final`; until then the list is what is known so far)."""
    pending = build["state"] == "pending"
    silent = _silent_nodes(service, build)
    dissent = build["dissent"] + [{"node": node, "kind": "silent", "said": None} for node in silent or ()]
    return {**build, "progress": service.core.progress(int(build["build_id"])) if pending else None,
            "dissent": sorted(dissent, key=lambda entry: entry["node"]), "dissent_final": silent is not None}


def _silent_nodes(service: ClientService, build: dict) -> list[int] | None:
    """The nodes that sent no reply to `build` (a record's summary): none of a build without
    a verdict, and None while one may still answer (client.tables.verdicts `replies_until`)."""
    if build["state"] == "pending":
        return None
    missing = service.core.frames.node_ids - set(build["replied_by"])
    settings = service.core.settings
    if missing and time.time() <= replies_until(
            int(build["build_id"]), build["elapsed_ms"], settings.deadline_s, settings.settle_s):
        return None
    return sorted(missing)


def _record(request: web.Request) -> dict:
    """The build record the URL names, or the 401/400/404 that says why there is none."""
    request.app[ACCESS_KEY].check_reader(request.headers)
    build_id = _bounded_int(request.match_info["build_id"], 0, MAX_BUILD_ID)
    if build_id is None:
        raise web.HTTPBadRequest(reason="build id must be a decimal number")
    record = request.app[RECORDS_KEY].builds.get(build_id)
    if record is None:
        raise web.HTTPNotFound(reason=f"no build {build_id}")
    return record


def _approval(request: web.Request) -> dict:
    """The approval the URL names, or the 400/404 that says why there is none."""
    approval_id = _bounded_int(request.match_info["approval_id"], 1, MAX_BUILD_ID)
    if approval_id is None:
        raise web.HTTPBadRequest(reason="approval id must be a positive decimal number")
    approval = request.app[RECORDS_KEY].approvals.get(approval_id)
    if approval is None:
        raise web.HTTPNotFound(reason=f"no approval {approval_id}")
    return approval


def _approval_json(approval: dict) -> dict:
    return {key: value for key, value in approval.items() if key != "operation"}


async def list_approvals(request: web.Request) -> web.Response:
    """Pull requests from forks that wait for an approval, newest first."""
    request.app[ACCESS_KEY].check_reader(request.headers)
    limit = _bounded_int(request.query.get("limit", str(DEFAULT_BUILDS_LIMIT)), 1, MAX_BUILDS_LIMIT)
    if limit is None:
        raise web.HTTPBadRequest(reason=f"limit must be an integer from 1 to {MAX_BUILDS_LIMIT}")
    waiting = request.app[RECORDS_KEY].approvals.waiting(limit)
    return web.json_response({"approvals": [_approval_json(approval) for approval in waiting]})


async def get_approval(request: web.Request) -> web.Response:
    request.app[ACCESS_KEY].check_reader(request.headers)
    return web.json_response(_approval_json(_approval(request)))


async def approve(request: web.Request) -> web.Response:
    """Build a fork's pull request that waited for an approval: whoever may ask for builds
    may approve one. Approving it again answers the build it started."""
    request.app[ACCESS_KEY].check_plain_call(request.headers)
    approval = _approval(request)
    build_id = request.app[SERVICE_KEY].verbs.approve.start(int(approval["approval_id"]))
    return started(build_id, _webhook_settings(request), already_approved=approval["build_id"] is not None)


async def rerun(request: web.Request) -> web.Response:
    """Build again what a build built (its repository, ref and commit), as a new build that
    names the old one: whoever may ask for builds may ask for this."""
    record = _build_to_act_on(request)
    build_id = await request.app[SERVICE_KEY].verbs.rerun.start(record)
    return started(build_id, _webhook_settings(request), rerun_of=record["build_id"])


async def cancel(request: web.Request) -> web.Response:
    """Stop a build still without a verdict: whoever may ask for builds may ask for this."""
    record = _build_to_act_on(request)
    if record["state"] != "pending":
        raise WebhookError(409, f"build {record['build_id']} has its verdict already ({record['state']})")
    cancel_id = request.app[SERVICE_KEY].verbs.cancel.start(record)
    return started(record["build_id"], _webhook_settings(request), cancel_id=str(cancel_id))


def _build_to_act_on(request: web.Request) -> dict:
    """The build the URL names, for a caller who may ask for builds; a cancel is not one (409)."""
    request.app[ACCESS_KEY].check_plain_call(request.headers)
    record = _record(request)
    if record["cancels"] is not None:
        raise WebhookError(409, f"build {record['build_id']} is a cancel, not a build")
    return record


async def report_action(request: web.Request) -> web.Response:
    """The action runner (runner/) reports how an action after a build's verdict went, signed
    with its own key (client.actionreports): the record keeps its newest word per action and
    who said it. The bearer token is still asked for, before any signature is checked."""
    request.app[ACCESS_KEY].check_plain_call(request.headers)
    record = _record(request)
    check_build_takes_reports(record)
    build_id = int(record["build_id"])
    body = await _read_capped(request, MAX_ACTION_REPORT_BYTES, _webhook_settings(request).body_timeout_s)
    report, sig = checked_report(body, build_id, _config(request).client(request.app[NAME_KEY]))
    actions = request.app[RECORDS_KEY].actions
    if not actions.keep(report, sig, time.time()):
        raise WebhookError(409, f"a replayed or older report: the record keeps a report of action {report.action}"
                                f" of build {build_id} stamped {actions.stamp(build_id, report.action)},"
                                f" and this one is stamped {report.stamp_us}")
    log.info("build %d: action %s %s exit_code=%s, reported by runner %s", build_id, report.action, report.state,
             report.exit_code, report.runner)
    return web.json_response({"build_id": record["build_id"], "action": report.action, "state": report.state,
                              "runner": report.runner})


async def get_build(request: web.Request) -> web.Response:
    record = _with_progress(request.app[SERVICE_KEY], _record(request))
    return web.json_response({**record, "logs": build_log_links(request.app, record["build_id"])})


async def get_build_log(request: web.Request) -> web.StreamResponse:
    return await serve_build_log(request, _record(request))


async def get_artifacts(request: web.Request) -> web.Response:
    """The build's agreed artifact manifest, from the first node that serves one with the agreed digest."""
    return await serve_manifest(request, _record(request))


async def get_artifact(request: web.Request) -> web.Response:
    """One artifact's bytes, from the first node whose bytes have the agreed digest."""
    return await serve_file(request, _record(request))


async def get_provenance(request: web.Request) -> web.Response:
    """SLSA provenance of the build's artifacts in one DSSE envelope, signed by f+1 agreeing nodes.

    The record holds only the manifest's digest: the files the nodes signed come
    from a node's manifest, taken only if it hashes to that digest.
    """
    record = _record(request)
    try:
        files = await agreed_files(artifact_source(request.app), record)
    except ArtifactsUnavailable as error:
        return web.json_response({"error": error.reason}, status=error.status)
    try:
        envelope = provenance_envelope_from_record(record, _config(request), files)
    except AttestationUnavailable as error:
        raise web.HTTPConflict(reason=str(error)) from None
    return web.Response(body=canonical(envelope), content_type="application/json")


async def get_build_nodes(request: web.Request) -> web.Response:
    """Each node's ledger record of the build, fetched from the nodes, and every vote that verifies."""
    record = _record(request)
    proxy = request.app[LOG_PROXY]
    view = await build_view(
        request.app[NODE_SESSIONS].short, proxy.nodes.values(), proxy.auth, proxy.client_name, int(record["build_id"])
    )
    return web.json_response(view)


async def get_network(request: web.Request) -> web.Response:
    """Each node's GET /status, or "unreachable" with the reason, and the view this client follows."""
    request.app[ACCESS_KEY].check_reader(request.headers)
    service = request.app[SERVICE_KEY]
    nodes = await network_view(request.app[NODE_SESSIONS].short, request.app[LOG_PROXY].nodes.values())
    return web.json_response({"client": {"view": service.core.view, "primary": service.core.primary}, "nodes": nodes})


async def get_certificate(request: web.Request) -> web.Response:
    record = _record(request)
    try:
        certificate = certificate_from_record(record)
    except CertificateUnavailable as error:
        raise web.HTTPConflict(reason=str(error)) from None
    # Canonical JSON has no insignificant whitespace, so every byte of the
    # file a user saves is covered by a signature or by the verifier's checks.
    return web.Response(body=canonical(certificate), content_type="application/json")


def _attested(request: web.Request) -> Attested:
    try:
        return attested_from_record(_record(request), _config(request))
    except AttestationUnavailable as error:
        raise web.HTTPConflict(reason=str(error)) from None


async def get_attestation(request: web.Request) -> web.Response:
    """The verdict's in-toto statement in one DSSE envelope, signed by f+1 agreeing nodes."""
    envelope = _attested(request).envelope()
    return web.Response(body=canonical(envelope), content_type="application/json")


async def get_in_toto(request: web.Request) -> web.Response:
    """A tar of the owner's layout, f+1 agreeing nodes' links and the statement, for in-toto-verify."""
    attested = _attested(request)
    path = _config(request).in_toto_layout
    if path is None:
        raise web.HTTPConflict(reason="no in-toto layout: the network YAML sets no in_toto_layout; its owner signs"
                                      " one with scripts/owner.py layout (docs/attestations.md)")
    try:
        # Bounded, and never waited on (a FIFO there would hold a worker thread per request).
        layout_bytes = await asyncio.to_thread(read_bounded, path, MAX_LAYOUT_BYTES)
    except OSError as error:
        raise web.HTTPConflict(reason=f"in-toto layout unreadable: {error.strerror or error}") from None
    body = bundle(attested.attestation, attested.signers, layout_bytes)
    name = f"pbft-ci-{request.match_info['build_id']}-in-toto.tar"
    return web.Response(
        body=body, content_type="application/x-tar", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _bounded_int(text: str, low: int, high: int) -> int | None:
    """The decimal integer `text` if it lies in [low, high], else None."""
    if not (text.isascii() and text.isdecimal()) or len(text) > len(str(high)):
        return None
    value = int(text)
    return value if low <= value <= high else None
