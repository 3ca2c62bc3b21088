"""`POST /webHook`: a plain call waits for its build's verdict; a forge's delivery is answered at once.

A plain call (`{"branch": ...}`, client.intake) needs the client's token and
is answered with the verdict once f+1 nodes agree (or 504 without one, 503
when the client shuts down first). A forge's delivery (client.forges) is
authenticated by its repository's secret and answered as client.deliveries
decides: 202 with the build id, or with the approval it waits for.
"""

from __future__ import annotations

from aiohttp import web

from client.access import TRIGGER
from client.actors import acting
from client.buildlogs import build_log_links
from client.deliveries import Answer, Held, Started, WebhookSettings, take_delivery
from client.forges import Ignored, Pong, forge_of, parse_delivery
from client.inputcheck import refused_inputs
from client.intake import WebhookError, parse_webhook
from client.keys import ACCESS_KEY, NAME_KEY, RECORDS_KEY, SERVICE_KEY
from client.outcome import Abandoned, Accepted, Disputed, Divergent, TimedOut, Verdict, disputed_result
from client.routes.answers import held, started
from client.records import records_path
from client.routes.params import config_of, read_capped, webhook_settings
from pbft.build import Result, combination_label
from pbft.messages import encode

routes = web.RouteTableDef()


@routes.post("/webHook")
async def webhook(request: web.Request) -> web.Response:
    config, settings = config_of(request), webhook_settings(request)
    # Forges are recognised by their headers and authenticated by the
    # repository's secret once the body is read; a plain call is checked
    # before its body is waited for.
    forge = forge_of(request.headers)
    caller = None if forge is not None else request.app[ACCESS_KEY].require(request.headers, TRIGGER)
    body = await read_capped(request, settings.max_body_bytes, settings.body_timeout_s)
    if forge is not None:
        delivery = parse_delivery(forge, body, request.headers, settings.repositories)
        return _delivery_answer(take_delivery(delivery, request.app[SERVICE_KEY], request.app[RECORDS_KEY], settings),
                                settings)
    assert caller is not None
    operation = parse_webhook(body, request.headers.get("Content-Type", ""),
                              [repository.name for repository in config.repositories])
    caller.check(TRIGGER, operation.repository)
    operation = acting(operation, caller.actor)
    service = request.app[SERVICE_KEY]
    if operation.inputs:
        # Pinned first, so that the spec the client reads is the one every node will.
        operation = await service.verbs.submit.pinned(operation)
        repository = next(repo for repo in config.repositories if repo.name == operation.repository)
        scratch = records_path(config.data_dir, request.app[NAME_KEY]).parent / "scratch"
        problem = await refused_inputs(repository, operation, scratch)
        if problem is not None:
            raise WebhookError(400, problem)
    verdict = await service.verbs.submit.wait(operation)
    match verdict.outcome:
        case Accepted() | Divergent() | Disputed():
            answer = {**_verdict_json(verdict, config.f), "logs": build_log_links(request.app, verdict.build_id)}
            if isinstance(verdict.outcome, Accepted) and verdict.outcome.matrix:
                # Answered once the expansion is certified, not when its builds end: up to
                # MAX_COMBINATIONS builds may take far longer than a caller waits on one call.
                answer["matrix"] = [
                    {"build_id": build_id, "combination": combination_label(combination),
                     "status_url": f"{settings.status_base_url}/builds/{build_id}"}
                    for build_id, combination in verdict.outcome.matrix
                ]
            return web.json_response(answer)
        case Abandoned():
            error, status = "client shutting down: the build is followed again when the client restarts", 503
        case TimedOut(progress=progress) if progress is not None:
            limit_s = service.core.settings.queue_limit_s
            error, status = f"still {progress} at f+1 nodes after client_queue_limit_s ({limit_s:g} s)", 504
        case TimedOut():
            error, status = "no quorum before the deadline", 504
    return web.json_response(
        {"error": error, "build_id": verdict.build_id, "replies": [encode(reply) for reply in verdict.replies]},
        status=status,
    )


def _delivery_answer(answer: Answer, settings: WebhookSettings) -> web.Response:
    match answer:
        case Ignored(reason=reason):
            return web.json_response({"ignored": True, "reason": reason}, status=202)
        case Pong(repository=repository):
            return web.json_response({"pong": True, "repository": repository})
        case Started(build_id=build_id, redelivery=True):
            return started(build_id, settings, redelivery=True)
        case Started(build_id=build_id):
            return started(build_id, settings)
        case Held(approval_id=approval_id, redelivery=redelivery):
            return held(approval_id, settings, redelivery=redelivery)
    raise AssertionError(f"no answer to a delivery: {answer}")


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
